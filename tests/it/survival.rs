//! Proof that it survives the worst: the built binary killed with SIGKILL at random moments and
//! run again; fault storms (throttling, 5xx, latency, answers dropped after the change) over
//! many seeded runs; races of two invocations; hostile input; attacks on the webhook; and
//! secrets kept out of every log line. Each run checks the simulator's state, not only the
//! result. Budgets: `ECS_ROLLBACK_CRASH_RUNS` (default 50), `ECS_ROLLBACK_STORM_RUNS` (40).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use ecs_rollback::handler::{Handler, Reply, Shape};
use ecs_rollback::report::{Outcome, Report};
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::{Event, FaultStats, Faults, Scenario, Simulator, Timings};
use ecs_rollback::triggers::webhook;
use serde_json::{json, Value};

fn budget(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The invariants, from the simulator's log of applied calls, for one key's rollback of `disk`
/// on an instance that was running: resets only while Stopped, all to one snapshot, never after
/// the instance was started again; and the instance ends Running. A second reset to the same
/// snapshot while still stopped (a resumed run re-issuing ResetDisk whose answer was lost, once
/// no reset runs any more: ECS documents no completion signal) is counted by `reissued`.
fn violations(sim: &Simulator, disk: &str, instance: &str) -> Vec<String> {
    let mut v = crate::common::violations(&sim.events(), disk);
    if sim.instance_status(instance).as_deref() != Some("Running") {
        v.push(format!("instance ends {:?}", sim.instance_status(instance)));
    }
    v
}

/// Resets after the first: re-issued by a resumed run (see `violations`).
fn reissued(sim: &Simulator, disk: &str) -> usize {
    sim.events()
        .iter()
        .filter(|e| e.action == "ResetDisk" && e.resource == disk)
        .count()
        .saturating_sub(1)
}

fn outcome_of(line: &str) -> Option<(String, bool)> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some((
        v["data"]["outcome"].as_str()?.to_owned(),
        v["data"]["error"]["retryable"].as_bool().unwrap_or(false),
    ))
}

fn binary(base: &str) -> tokio::process::Command {
    let mut c = binary_async();
    c.envs(sim_env(base))
        .env("ECS_ROLLBACK_POLL_INITIAL_MS", "10")
        .env("ECS_ROLLBACK_POLL_MAX_MS", "40")
        .env("ECS_ROLLBACK_HEARTBEAT_TIMEOUT_MS", "1000")
        // The simulator's tag reads do not lag: a short settle keeps the claim's liveness
        // window (the heartbeat timeout above) several times longer than the settle.
        .env("ECS_ROLLBACK_TAG_SETTLE_MS", "20")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    c
}

/// `ecs-rollback invoke EVENT` against `base`, to its end; its stdout.
async fn invoke_once(base: &str, event: &std::path::Path) -> String {
    let out = binary(base)
        .arg("invoke")
        .arg(event)
        .output()
        .await
        .expect("runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn crash_timings() -> Timings {
    Timings {
        stop_ms: 60,
        start_ms: 60,
        reset_ms: 90,
        snapshot_ms: 60,
        reset_disk_status: None,
        tag_read_lag_ms: 0,
        agent_ready_ms: 60,
        command_ms: 150,
        ..Timings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_at_random_moments_it_resumes_safely() {
    let runs = budget("ECS_ROLLBACK_CRASH_RUNS", 50);
    let base_seed = budget("ECS_ROLLBACK_CRASH_SEED", 20_261_129);
    crash_campaign(
        "crash campaign",
        json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "crash-test"}),
        runs,
        base_seed,
        |_| Vec::new(),
    )
    .await;
}

/// The same with `preserveCurrent`: besides the invariants above, exactly one undo snapshot,
/// taken while the instance was stopped and before the reset, holding the disk as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_around_the_undo_snapshot_it_takes_one() {
    let runs = budget("ECS_ROLLBACK_CRASH_UNDO_RUNS", 30);
    let base_seed = budget("ECS_ROLLBACK_CRASH_SEED", 20_261_129) + 1000;
    crash_campaign(
        "undo-snapshot crash campaign",
        json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "crash-undo", "preserveCurrent": true}),
        runs,
        base_seed,
        |sim| {
            let events = sim.events();
            let mut v = Vec::new();
            let created: Vec<&Event> = events.iter().filter(|e| e.action == "CreateSnapshot").collect();
            if created.len() != 1 {
                v.push(format!("{} CreateSnapshot calls applied", created.len()));
            }
            if created.iter().any(|e| e.instance_status != "Stopped") {
                v.push("an undo snapshot while the instance was not Stopped".into());
            }
            let first_reset = events.iter().find(|e| e.action == "ResetDisk");
            if let (Some(c), Some(r)) = (created.first(), first_reset) {
                if c.seq > r.seq {
                    v.push("the reset came before the undo snapshot".into());
                }
            }
            let undo: Vec<Value> = sim.state()["snapshots"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|s| s["tags"]["ecs-rollback:undo-of"].is_string())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if undo.len() != 1 || undo[0]["content"] != "original" {
                v.push(format!("undo snapshots: {undo:?}"));
            }
            v
        },
    )
    .await;
}

/// Whole-instance runs: db-05's three disks to a snapshot-consistent group, with the undo
/// (`preserveCurrent`) taken as one group. Besides each disk's invariants: the instance never
/// runs on disks from two points in time, it is stopped and started once each, and one undo
/// group is taken, while Stopped, before any reset, whatever the kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_during_whole_instance_runs_every_disk_ends_on_one_point_in_time() {
    const DB: &str = "i-bp1dbserv00000005";
    const DISKS: [&str; 3] = [
        "d-bp1dbserv0000sys05",
        "d-bp1dbserv0000dat05",
        "d-bp1dbserv0000dat15",
    ];
    let runs = budget("ECS_ROLLBACK_CRASH_INSTANCE_RUNS", 44);
    let base_seed = budget("ECS_ROLLBACK_CRASH_SEED", 20_261_129) + 3000;
    crash_campaign_on(
        "whole-instance crash campaign",
        json!({"instanceId": DB, "disks": "all", "snapshotGroupId": "ssg-bp1dbserv0000000001",
               "preserveCurrent": true, "idempotencyKey": "crash-instance"}),
        runs,
        base_seed,
        (
            DB,
            &[
                (DISKS[0], "s-bp1dbserv0sys00001"),
                (DISKS[1], "s-bp1dbserv0dat00001"),
                (DISKS[2], "s-bp1dbserv0dat10001"),
            ],
        ),
        |sim| {
            let events = sim.events();
            let mut v = crate::whole_instance::one_point_in_time(&events, &DISKS);
            for action in ["StopInstance", "StartInstance"] {
                let n = events.iter().filter(|e| e.action == action).count();
                if n != 1 {
                    v.push(format!("{n} {action} applied"));
                }
            }
            let groups: Vec<&Event> = events
                .iter()
                .filter(|e| e.action == "CreateSnapshotGroup")
                .collect();
            let ids: std::collections::BTreeSet<&str> = groups
                .iter()
                .filter_map(|e| e.detail.split_whitespace().next())
                .collect();
            if ids.len() != 1 {
                v.push(format!("{} undo groups taken", ids.len()));
            }
            if events.iter().any(|e| e.action == "CreateSnapshot") {
                v.push("a per-disk undo snapshot besides the group".into());
            }
            let first_reset = events
                .iter()
                .find(|e| e.action == "ResetDisk")
                .map(|e| e.seq);
            if groups
                .iter()
                .any(|g| g.instance_status != "Stopped" || Some(g.seq) > first_reset)
            {
                v.push("the undo group was not taken while Stopped before any reset".into());
            }
            v
        },
    )
    .await;
}

/// The same with a `verify` command: a kill while the service check runs resumes on the same
/// Cloud Assistant invocation, so the command runs exactly once, and the run ends verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_while_verifying_it_runs_the_check_once() {
    let runs = budget("ECS_ROLLBACK_CRASH_VERIFY_RUNS", 20);
    let base_seed = budget("ECS_ROLLBACK_CRASH_SEED", 20_261_129) + 2000;
    crash_campaign(
        "verify crash campaign",
        json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "crash-verify",
               "verify": {"command": {"content": "systemctl is-active app"}, "agentWaitSeconds": 10}}),
        runs,
        base_seed,
        |sim| {
            let events = sim.events();
            let runs = events.iter().filter(|e| e.action == "RunCommand").count();
            let mut v = Vec::new();
            if runs != 1 {
                v.push(format!("{runs} RunCommand calls applied"));
            }
            if events
                .iter()
                .any(|e| e.action == "RunCommand" && e.instance_status != "Running")
            {
                v.push("a RunCommand while the instance was not Running".into());
            }
            v
        },
    )
    .await;
}

/// Kills the built binary with SIGKILL at a random moment of the rollback `request`, then
/// delivers it again until it finishes; checks the invariants and `extra` after each run.
async fn crash_campaign(
    label: &str,
    request: Value,
    runs: u64,
    base_seed: u64,
    extra: impl Fn(&Simulator) -> Vec<String>,
) {
    crash_campaign_on(
        label,
        request,
        runs,
        base_seed,
        (WEB, &[(WEB_SYS, WEB_SNAP_TAGGED)]),
        extra,
    )
    .await
}

/// `crash_campaign` over the disks of one request, each to end on its snapshot.
async fn crash_campaign_on(
    label: &str,
    request: Value,
    runs: u64,
    base_seed: u64,
    (instance, disks): (&str, &[(&str, &str)]),
    extra: impl Fn(&Simulator) -> Vec<String>,
) {
    let dir = std::env::temp_dir().join(format!(
        "ecs-rollback-crash-{}-{base_seed}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("tmp");
    let event = dir.join("event.json");
    std::fs::write(&event, request.to_string()).expect("write");

    // How long one uninterrupted run takes: kills land anywhere in it, and a bit past it.
    let sim = sim_with(Scenario {
        timings: crash_timings(),
        ..Default::default()
    });
    let base = serve(&sim).await;
    let t0 = Instant::now();
    let stdout = invoke_once(&base, &event).await;
    let full = t0.elapsed();
    assert!(stdout.contains("\"outcome\":\"succeeded\""));

    let (mut killed_mid, mut reruns, mut found, mut reissues) = (0, 0, Vec::new(), 0);
    for i in 0..runs {
        let seed = base_seed + i;
        let mut rng = fastrand::Rng::with_seed(seed);
        let sim = sim_with(Scenario {
            timings: crash_timings(),
            ..Default::default()
        });
        let base = serve(&sim).await;
        let delay = Duration::from_micros(rng.u64(0..(full.as_micros() as u64 * 13 / 10)));
        let mut child = binary(&base)
            .arg("invoke")
            .arg(&event)
            .spawn()
            .expect("spawn");
        tokio::time::sleep(delay).await;
        let _ = child.start_kill(); // SIGKILL
        let status = child.wait().await.expect("waited");
        if status.code().is_none() {
            killed_mid += 1;
        }
        // Deliver the same event again until it finishes.
        let mut last = None;
        let mut last_line = String::new();
        for _ in 0..60 {
            reruns += 1;
            let stdout = invoke_once(&base, &event).await;
            last_line = stdout.lines().last().unwrap_or_default().to_owned();
            let result = stdout.lines().last().and_then(outcome_of);
            let done = matches!(&result, Some((o, _)) if o == "succeeded" || o == "duplicate");
            let retry = matches!(&result, Some((_, true)));
            last = result;
            if done || !retry {
                break;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let mut v = Vec::new();
        for (disk, _) in disks {
            v.extend(violations(&sim, disk, instance));
        }
        v.dedup();
        v.extend(extra(&sim));
        match &last {
            Some((o, _)) if o == "succeeded" || o == "duplicate" => {}
            other => v.push(format!("final result {other:?}: {last_line}")),
        }
        for (disk, snap) in disks {
            if sim.disk(disk).map(|d| d["content"].clone()) != Some(json!(snap)) {
                v.push(format!("disk {disk} was not rolled back to {snap}"));
            }
        }
        if !v.is_empty() {
            found.push(format!("seed {seed} (kill after {delay:?}): {v:?}"));
        }
        let r: usize = disks.iter().map(|(d, _)| reissued(&sim, d)).sum();
        if r > 0 {
            println!("seed {seed}: killed after {delay:?}, ResetDisk re-issued {r}x (same snapshot, instance still stopped)");
        }
        reissues += r;
    }
    println!(
        "{label}: {runs} runs (seeds {base_seed}..{}), {killed_mid} killed mid-run by SIGKILL, {reruns} re-deliveries, full run {full:?}, re-issued resets (same snapshot, still stopped): {reissues}, invariant violations: {}",
        base_seed + runs - 1,
        found.len()
    );
    assert!(found.is_empty(), "{found:#?}");
}

async fn handler_for(sim: &Simulator, settings: Settings) -> Handler {
    let base = serve(sim).await;
    let mut h = Handler::new(
        http_client(&base, sim_credentials(), Duration::from_secs(2)),
        settings,
        Some(REGION.into()),
    );
    h.webhook.token = Some(ecs_rollback::ecs::credentials::Secret::new("hostile-token"));
    h.webhook.secret = Some(ecs_rollback::ecs::credentials::Secret::new(
        "hostile-secret",
    ));
    h
}

async fn deliver_until_done(h: &Handler, event: &Value) -> (Report, u32) {
    let mut n = 0;
    loop {
        n += 1;
        let r = h.handle(event, None).await.into_reports().remove(0);
        let retry = r.error.as_ref().is_some_and(|e| e.retryable);
        if matches!(r.outcome, Outcome::Succeeded | Outcome::Duplicate) || !retry || n >= 200 {
            return (r, n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_storms_up_to_fifty_percent() {
    let runs = budget("ECS_ROLLBACK_STORM_RUNS", 40);
    let mut total = FaultStats::default();
    let (mut deliveries, mut calls, mut found) = (0, 0u64, Vec::new());
    for seed in 0..runs {
        let mut rng = fastrand::Rng::with_seed(seed);
        let faults = Faults {
            throttle_rate: rng.f64() * 0.5,
            error_rate: rng.f64() * 0.5,
            slow_rate: rng.f64() * 0.3,
            slow_ms: 30,
            drop_rate: rng.f64() * 0.5,
            seed,
            ..Default::default()
        };
        let sim = sim_with(Scenario {
            timings: Timings {
                reset_ms: 150,
                ..Timings::fast()
            },
            faults: faults.clone(),
            ..Default::default()
        });
        let h = handler_for(&sim, Settings::fast()).await;
        let event = json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": format!("storm-{seed}")});
        let (r, n) = deliver_until_done(&h, &event).await;
        deliveries += n;
        let mut v = violations(&sim, WEB_SYS, WEB);
        if !matches!(r.outcome, Outcome::Succeeded | Outcome::Duplicate) {
            v.push(format!("final {:?} {:?}", r.outcome, r.error));
        }
        if !v.is_empty() {
            found.push(format!(
                "seed {seed} (throttle {:.2} 5xx {:.2} slow {:.2} drop {:.2}): {v:?}",
                faults.throttle_rate, faults.error_rate, faults.slow_rate, faults.drop_rate
            ));
        }
        let s = sim.fault_stats();
        total.throttled += s.throttled;
        total.errors += s.errors;
        total.slowed += s.slowed;
        total.dropped += s.dropped;
        calls += sim
            .call_counts()
            .values()
            .map(|c| u64::from(*c))
            .sum::<u64>();
    }
    println!(
        "fault storms: {runs} seeded runs, {deliveries} deliveries, {calls} ECS calls, {} faults injected ({} throttled, {} 5xx, {} slow, {} dropped after the change), invariant violations: {}",
        total.total(), total.throttled, total.errors, total.slowed, total.dropped, found.len()
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_invocations_on_one_disk_under_faults_roll_back_once() {
    for (round, same_key) in [
        (0, true),
        (1, false),
        (2, true),
        (3, false),
        (4, true),
        (5, false),
    ] {
        let faults = Faults {
            throttle_rate: 0.2,
            drop_rate: 0.2,
            seed: round,
            ..Default::default()
        };
        let sim = sim_with(Scenario {
            timings: Timings::fast(),
            faults,
            ..Default::default()
        });
        let h = handler_for(&sim, Settings::fast()).await;
        let a = json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": format!("race-{round}-a")});
        let b = json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": format!("race-{round}-{}", if same_key { "a" } else { "b" })});
        let ((ra, _), (rb, _)) =
            tokio::join!(deliver_until_done(&h, &a), deliver_until_done(&h, &b));
        // One rollback: one stop, and resets only before the first start (`violations`).
        // A reset re-issued after a lost ResetDisk answer whose reset had already finished
        // (the documented limit: ECS gives no completion signal) is the same rollback: same
        // snapshot, instance Stopped throughout. Which call a seeded drop lands on depends on
        // how the two invocations interleave, so such a re-issue happens in some runs only.
        let events = sim.events();
        let count = |action: &str| events.iter().filter(|e| e.action == action).count();
        assert_eq!(
            count("StopInstance"),
            1,
            "round {round} same_key={same_key}: {ra:?} {rb:?} {events:#?}"
        );
        assert!(count("ResetDisk") >= 1, "round {round}: {events:#?}");
        if reissued(&sim, WEB_SYS) > 0 {
            println!(
                "round {round}: {} reset(s) re-issued after a lost answer",
                reissued(&sim, WEB_SYS)
            );
        }
        assert!(
            violations(&sim, WEB_SYS, WEB).is_empty(),
            "round {round}: {:?}",
            violations(&sim, WEB_SYS, WEB)
        );
        let ok = [ra.outcome, rb.outcome]
            .iter()
            .filter(|o| matches!(o, Outcome::Succeeded | Outcome::Duplicate))
            .count();
        if same_key {
            assert_eq!(
                ok, 2,
                "both deliveries of one key end succeeded or duplicate"
            );
        } else {
            assert!(ok >= 1);
        }
    }
}

fn hostile_corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut items: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("tests/hostile")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    items.sort();
    let bad = |i: usize| json!({"eventSource": "aws:sqs", "messageId": format!("m-{i}"), "body": format!("{{\"diskId\": \"d-{i}\"}}")});
    items.push((
        "generated: SQS batch of 10000 records".into(),
        json!({"Records": (0..10_000).map(bad).collect::<Vec<_>>()}).to_string(),
    ));
    items.push((
        "generated: 5 MB reason".into(),
        json!({"diskId": "d-bp1webapp0000sys01", "reason": "x".repeat(5 << 20)}).to_string(),
    ));
    items.push((
        "generated: 5 MB key name".into(),
        format!("{{\"{}\": 1}}", "k".repeat(5 << 20)),
    ));
    items.push((
        "generated: nested 100000 deep".into(),
        "[".repeat(100_000) + &"]".repeat(100_000),
    ));
    items.push((
        "generated: nested objects 200 deep".into(),
        "{\"a\":".repeat(200) + "1" + &"}".repeat(200),
    ));
    items.push(("generated: 101 requests".into(), json!({"requests": (0..101).map(|_| json!({"diskId": "d-bp1webapp0000sys01"})).collect::<Vec<_>>()}).to_string()));
    items.push(("generated: 1 MB of NUL".into(), "\u{0}".repeat(1 << 20)));
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_rejected_cleanly_and_never_reaches_ecs() {
    let sim = fast_sim();
    let h = handler_for(&sim, Settings::fast()).await;
    let mut rejected_results = 0;
    let mut clean_errors = 0;
    let items = hostile_corpus();
    let count = items.len();
    for (name, text) in items {
        let started = Instant::now();
        match ecs_rollback::strict_json::from_str(&text) {
            Err(_) => clean_errors += 1,
            Ok(event) => {
                let reply = tokio::time::timeout(Duration::from_secs(30), h.handle(&event, None))
                    .await
                    .unwrap_or_else(|_| panic!("{name}: no answer in 30 s"));
                if let Shape::Http { status } = &reply.shape {
                    assert!(*status >= 400, "{name}: HTTP {status}");
                }
                let reports = reply.into_reports();
                assert!(!reports.is_empty(), "{name}: no report");
                for r in &reports {
                    assert!(
                        matches!(r.outcome, Outcome::Rejected | Outcome::Ignored),
                        "{name}: {:?} {:?}",
                        r.outcome,
                        r.error
                    );
                }
                rejected_results += reports.len();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name}: took {:?}",
            started.elapsed()
        );
        assert!(
            sim.call_counts().is_empty(),
            "{name} reached ECS: {:?}",
            sim.call_counts()
        );
    }
    println!("hostile input: {count} events, {clean_errors} refused as JSON, {rejected_results} rejected results, 0 ECS calls");
}

#[tokio::test]
async fn webhook_attacks_never_reach_a_rollback() {
    let sim = fast_sim();
    let h = handler_for(&sim, Settings::fast()).await;
    let body = json!({"diskId": WEB_DATA, "idempotencyKey": "webhook-1"}).to_string();
    let now = chrono::Utc::now().timestamp();
    let http = |headers: Value, body: &str| {
        json!({"version": "2.0", "rawPath": "/", "headers": headers, "requestContext": {"http": {"method": "POST"}, "requestId": "w"},
               "body": body, "isBase64Encoded": false})
    };
    let status = |reply: Reply| match reply.shape {
        Shape::Http { status } => status,
        other => panic!("{other:?}"),
    };
    let attacks = [
        (
            "missing signature",
            json!({"content-type": "application/json"}),
        ),
        (
            "wrong secret",
            json!({"x-rollback-timestamp": now.to_string(), "x-rollback-signature": webhook::sign("guess", now, body.as_bytes())}),
        ),
        (
            "expired",
            json!({"x-rollback-timestamp": (now - 600).to_string(), "x-rollback-signature": webhook::sign("hostile-secret", now - 600, body.as_bytes())}),
        ),
        (
            "from the future",
            json!({"x-rollback-timestamp": (now + 600).to_string(), "x-rollback-signature": webhook::sign("hostile-secret", now + 600, body.as_bytes())}),
        ),
        (
            "signature of another body",
            json!({"x-rollback-timestamp": now.to_string(), "x-rollback-signature": webhook::sign("hostile-secret", now, b"{}")}),
        ),
        (
            "timestamp not signed",
            json!({"x-rollback-timestamp": (now + 1).to_string(), "x-rollback-signature": webhook::sign("hostile-secret", now, body.as_bytes())}),
        ),
        (
            "malformed signature",
            json!({"x-rollback-timestamp": now.to_string(), "x-rollback-signature": "sha256=zzzz"}),
        ),
        (
            "wrong token",
            json!({"authorization": "Bearer hostile-tokeN"}),
        ),
        (
            "token prefix",
            json!({"authorization": "Bearer hostile-toke"}),
        ),
        (
            "token without scheme",
            json!({"authorization": "hostile-token"}),
        ),
    ];
    for (what, headers) in attacks {
        assert_eq!(
            status(h.handle(&http(headers, &body), None).await),
            401,
            "{what}"
        );
    }
    assert!(sim.call_counts().is_empty(), "{:?}", sim.call_counts());
    // The genuine request, then the same bytes replayed.
    let genuine = json!({"x-rollback-timestamp": now.to_string(), "x-rollback-signature": webhook::sign("hostile-secret", now, body.as_bytes())});
    let dry =
        json!({"diskId": WEB_DATA, "idempotencyKey": "webhook-1", "dryRun": true}).to_string();
    let genuine_dry = json!({"x-rollback-timestamp": now.to_string(), "x-rollback-signature": webhook::sign("hostile-secret", now, dry.as_bytes())});
    assert_eq!(
        status(h.handle(&http(genuine_dry.clone(), &dry), None).await),
        200
    );
    let calls = sim.call_counts();
    assert_eq!(
        status(h.handle(&http(genuine_dry, &dry), None).await),
        401,
        "replayed"
    );
    assert_eq!(sim.call_counts(), calls, "the replay touched nothing");
    assert!(sim.events().is_empty(), "a dry run changes nothing");
    let _ = genuine;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_token_or_signature_in_the_most_verbose_json_logs() {
    let secret = "sEcReT-value-9f8e7d";
    let token = "ToKeN-value-1a2b3c4d";
    let sim = sim_with(Scenario {
        access_key_secret: secret.into(),
        security_token: Some(token.into()),
        timings: Timings::fast(),
        faults: Faults {
            throttle_rate: 0.2,
            drop_rate: 0.1,
            seed: 5,
            ..Default::default()
        },
        ..Default::default()
    });
    let base = serve(&sim).await;
    let dir = std::env::temp_dir().join(format!("ecs-rollback-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        json!({"instanceId": WEB, "idempotencyKey": "secrets-1"}).to_string(),
    )
    .expect("write");
    let mut logs = String::new();
    for (secret_given, token_given) in [
        (secret, token),
        ("wrong-secret-value", token),
        (secret, "wrong-token-value"),
    ] {
        let out = binary_async()
            .env(
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
                ecs_rollback::sim::SIM_ACCESS_KEY_ID,
            )
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret_given)
            .env("ALIBABA_CLOUD_SECURITY_TOKEN", token_given)
            .env("ALIBABA_CLOUD_REGION_ID", REGION)
            .env("ECS_ROLLBACK_ECS_ENDPOINT", &base)
            .env("ECS_ROLLBACK_POLL_INITIAL_MS", "10")
            .env("RUST_LOG", "trace")
            .args(["--log-format", "json", "invoke"])
            .arg(&event)
            .output()
            .await
            .expect("runs");
        logs.push_str(&String::from_utf8_lossy(&out.stdout));
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        logs.contains("\"outcome\":\"succeeded\""),
        "the rollback ran"
    );
    assert!(
        logs.contains("SignatureDoesNotMatch"),
        "the failures were logged too"
    );
    assert!(
        logs.lines().count() > 50,
        "TRACE logging is on: {} lines",
        logs.lines().count()
    );
    for needle in [secret, token, "wrong-secret-value", "wrong-token-value"] {
        assert!(!logs.contains(needle), "{needle} leaked");
    }
    let signatures = sim.signatures_seen();
    assert!(signatures.len() > 10);
    for sig in &signatures {
        let encoded = sig
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        assert!(
            !logs.contains(sig.as_str()) && !logs.contains(&encoded),
            "signature {sig} leaked"
        );
    }
    println!(
        "secrets: {} log lines at TRACE, {} signatures checked, none leaked",
        logs.lines().count(),
        signatures.len()
    );
}
