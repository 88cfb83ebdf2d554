//! Fleet drills against the simulator over loopback HTTP: `maxErrors` stops new targets, a tag
//! selector picks them, polling is shared across targets, and throttling slows a drill down
//! without failing it.

use std::time::Duration;

use crate::common::*;
use ecs_rollback::ecs::RetryConfig;
use ecs_rollback::handler::Handler;
use ecs_rollback::report::Outcome;
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::{Faults, FleetSpec, Scenario, Simulator, Timings};
use serde_json::{json, Value};

fn fleet(n: usize, locked: &[usize], tagged: usize) -> FleetSpec {
    opted_in_fleet(n, "drill", locked, tagged, ("drill", "weekly"))
}

async fn setup(fleet: FleetSpec, faults: Faults) -> (Simulator, Handler) {
    setup_with(fleet, faults, Timings::fast()).await
}

async fn setup_with(fleet: FleetSpec, faults: Faults, timings: Timings) -> (Simulator, Handler) {
    setup_client(
        fleet,
        faults,
        timings,
        Settings::fast(),
        RetryConfig::fast(),
    )
    .await
}

async fn setup_client(
    fleet: FleetSpec,
    faults: Faults,
    timings: Timings,
    settings: Settings,
    retry: RetryConfig,
) -> (Simulator, Handler) {
    let sim = sim_with(Scenario {
        timings,
        fleet: Some(fleet),
        faults,
        ..Default::default()
    });
    let base = serve(&sim).await;
    let h = Handler::new(
        http_client_with(&base, sim_credentials(), Duration::from_secs(5), retry),
        settings,
        Some(REGION.into()),
    );
    (sim, h)
}

fn targets(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"instanceId": format!("i-bp1drill{i:010}")}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_errors_stops_new_targets() {
    let (sim, h) = setup(fleet(25, &[0, 1], 0), Faults::default()).await;
    let event = json!({"drill": {"name": "limits", "targets": targets(25), "concurrency": 3, "maxErrors": 1, "rtoSeconds": 60},
                       "scheduledTime": "2026-11-29T03:00:00Z"});
    let reply = h.handle(&event, None).await;
    assert_eq!(reply.reports.len(), 25, "one result per target");
    let summary = &reply.summaries[0]["data"];
    assert_eq!(summary["failed"], 2);
    assert_eq!(summary["stoppedEarly"], true);
    let skipped = summary["skipped"].as_u64().expect("skipped");
    let succeeded = summary["succeeded"].as_u64().expect("succeeded");
    assert!(
        skipped >= 18,
        "no new target starts once maxErrors is exceeded: {summary}"
    );
    assert_eq!(skipped + succeeded + 2, 25);
    let stops = sim
        .events()
        .iter()
        .filter(|e| e.action == "StopInstance")
        .count() as u64;
    assert_eq!(stops, succeeded, "the skipped targets were never touched");
    // The objective is about the targets that recovered; the failures are counted beside it.
    let want = if succeeded > 0 {
        json!(true)
    } else {
        Value::Null
    };
    assert_eq!(summary["objectiveMet"], want, "{summary}");
    let skipped_reports: Vec<_> = reply
        .reports
        .iter()
        .filter(|r| r.outcome == Outcome::Ignored)
        .collect();
    assert_eq!(skipped_reports.len() as u64, skipped);
    assert!(
        skipped_reports
            .iter()
            .all(|r| r.target.instance_id.is_some()),
        "every skipped target is named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_selected_drill_with_a_summary() {
    let (sim, h) = setup(fleet(25, &[], 10), Faults::default()).await;
    let event = json!({"drill": {"name": "by-tag", "selector": {"tags": {"drill": "weekly"}}, "concurrency": 10, "rtoSeconds": 60},
                       "scheduledTime": "2026-11-29T03:00:00Z"});
    let reply = h.handle(&event, None).await;
    assert_eq!(reply.reports.len(), 10);
    assert!(
        reply
            .reports
            .iter()
            .all(|r| r.outcome == Outcome::Succeeded),
        "{:?}",
        reply.reports.iter().map(|r| &r.error).collect::<Vec<_>>()
    );
    let s = &reply.summaries[0];
    assert_eq!(s["type"], "ecs-rollback.drill-summary");
    let d = &s["data"];
    assert_eq!(d["targets"], 10);
    assert_eq!(d["succeeded"], 10);
    assert_eq!(d["objectiveMet"], true);
    for k in ["min", "median", "p95", "max"] {
        assert!(d["recoveryMs"][k].as_u64().is_some(), "{k}: {d}");
    }
    assert!(d["recoveryMs"]["min"].as_u64() <= d["recoveryMs"]["max"].as_u64());
    let resets = sim
        .events()
        .iter()
        .filter(|e| e.action == "ResetDisk")
        .count();
    assert_eq!(resets, 10, "only the tagged instances");
    // Delivered again: every target is a duplicate.
    let again = h.handle(&event, None).await;
    assert!(again
        .reports
        .iter()
        .all(|r| r.outcome == Outcome::Duplicate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_is_shared_across_targets() {
    let n = 25;
    let describes = |sim: &Simulator| {
        sim.call_counts()
            .get("DescribeInstances")
            .copied()
            .unwrap_or(0)
    };
    // The same 25 rollbacks, all at once: as a drill (shared polling), and as 25 requests.
    // The stop and the start take long enough that waiting for them, which sharing batches,
    // outweighs the reads every run makes on its own (the first look, and the fresh read right
    // before each call) however slow the machine: on fast transitions the share of waiting, and
    // so the saving, depended on the machine's load (131 vs 159 calls once, under load).
    let slow_power = Timings {
        stop_ms: 400,
        start_ms: 400,
        ..Timings::fast()
    };
    let (shared, h) = setup_with(fleet(n, &[], 0), Faults::default(), slow_power.clone()).await;
    let event = json!({"drill": {"name": "batched", "targets": targets(n), "concurrency": 25}, "scheduledTime": "2026-11-29T03:00:00Z"});
    let reply = h.handle(&event, None).await;
    assert!(reply
        .reports
        .iter()
        .all(|r| r.outcome == Outcome::Succeeded));
    let (alone, mut h) = setup_with(fleet(n, &[], 0), Faults::default(), slow_power).await;
    h.concurrency = 25;
    let requests: Vec<Value> = (0..n).map(|i| json!({"instanceId": format!("i-bp1drill{i:010}"), "idempotencyKey": format!("alone-{i}")})).collect();
    let reply = h.handle(&json!({"requests": requests}), None).await;
    assert!(reply
        .reports
        .iter()
        .all(|r| r.outcome == Outcome::Succeeded));
    let (with, without) = (describes(&shared), describes(&alone));
    println!(
        "DescribeInstances for {n} rollbacks: {with} shared in a drill, {without} without sharing"
    );
    assert!(
        with * 4 <= without * 3,
        "shared polling saves at least a quarter: {with} vs {without}"
    );
    let counts = shared.call_counts();
    let total: u32 = counts.values().sum();
    println!(
        "all ECS calls in the drill: {total} ({:.1} per target): {counts:?}",
        total as f64 / n as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_slows_a_drill_without_failing_it() {
    // 12 targets keep CI short; `cargo bench` runs 100 against the same 20 rps limit.
    let n = 12;
    let (sim, h) = setup_client(
        fleet(n, &[], 0),
        Faults {
            rate_limit_rps: 20,
            ..Default::default()
        },
        Timings::fast(),
        // The heartbeat in proportion to the run, as deployed (120 s against runs of a minute
        // or two): `fast()`'s 4 s would renew every claim every 1.3 s, a third of the budget.
        Settings {
            heartbeat_timeout: Duration::from_secs(30),
            ..Settings::fast()
        },
        // The client as deployed: its pace may space calls up to 500 ms apart (the tests'
        // `fast()` retries bound it to 20 ms, under this 20 requests/s limit's 50 ms).
        RetryConfig::default(),
    )
    .await;
    let event = json!({"drill": {"name": "throttled", "targets": targets(n), "concurrency": 10}, "scheduledTime": "2026-11-29T03:00:00Z"});
    let started = std::time::Instant::now();
    let reply = h.handle(&event, None).await;
    let failed: Vec<_> = reply
        .reports
        .iter()
        .filter(|r| r.outcome != Outcome::Succeeded)
        .map(|r| (&r.target.instance_id, &r.error))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let throttled = sim.fault_stats().throttled;
    let calls: u32 = sim.call_counts().values().sum();
    assert!(throttled > 0, "the simulator did throttle");
    println!(
        "throttled drill: {n} targets in {:?}, {throttled} of {calls} calls throttled ({:.1}%), 0 failures",
        started.elapsed(),
        throttled as f64 * 100.0 / f64::from(calls.max(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_describe_call_answers_many_waiting_runs() {
    let n = 60;
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        fleet: Some(fleet(n, &[], 0)),
        ..Default::default()
    });
    // Over loopback HTTP, as in a drill: the first call yields while in flight, and the others
    // register and queue behind it.
    let base = serve(&sim).await;
    let client = http_client(&base, sim_credentials(), Duration::from_secs(5));
    let cache = ecs_rollback::poller::StatusCache::new(&client, Duration::from_secs(5));
    let asks = (0..n).map(|i| {
        let cache = &cache;
        async move { cache.get(REGION, &format!("i-bp1drill{i:010}")).await }
    });
    let answers = futures_util::future::join_all(asks).await;
    assert!(answers
        .iter()
        .all(|a| matches!(a, Ok(Some(i)) if i.status == "Running")));
    let calls = sim
        .call_counts()
        .get("DescribeInstances")
        .copied()
        .unwrap_or(0);
    // The first asker's call holds only its own ID; the next ones, everyone queued behind it
    // (how many queue before each refresh depends on how the executor polls them): a handful of
    // calls, not one per waiting run.
    assert!(
        calls as usize * 10 <= n,
        "{calls} DescribeInstances calls for {n} waiting runs"
    );
}

/// `ecs-rollback invoke` on `event`, against the simulator served on `base`: the result events
/// and the drill summary, in the order printed, and the exit code.
fn invoke_drill(base: &str, event: &Value) -> (Vec<Value>, Option<i32>) {
    use std::io::Write;
    let mut child = binary()
        .arg("invoke")
        .envs(sim_env(base))
        .env("ECS_ROLLBACK_COOLDOWN_SECONDS", "0")
        .env("ECS_ROLLBACK_POLL_INITIAL_MS", "20")
        .env("ECS_ROLLBACK_POLL_MAX_MS", "100")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn invoke");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(event.to_string().as_bytes())
        .expect("write the event");
    let out = child.wait_with_output().expect("invoke ends");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    (lines, out.status.code())
}

fn summary_of(lines: &[Value]) -> Value {
    lines
        .iter()
        .find(|e| e["type"] == "ecs-rollback.drill-summary")
        .map(|e| e["data"].clone())
        .expect("a drill summary")
}

/// Through the built binary: a skipped target's result names its target; a redelivered drill's
/// summary counts what this delivery did apart from what had already happened; `objectiveMet`
/// is about the targets that recovered, with failures counted beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_results_say_what_happened() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        ..Default::default()
    });
    let base = serve(&sim).await;
    // legacy-03 is not opted in: it fails first, and maxErrors 0 skips the two after it.
    let stopped = json!({"drill": {"name": "stop-early", "regionId": REGION, "concurrency": 1, "maxErrors": 0,
        "targets": [{"instanceId": LEGACY}, {"instanceId": WEB}, {"diskId": BATCH_SYS}]},
        "scheduledTime": "2026-11-29T03:00:00Z"});
    let b = base.clone();
    let (lines, code) = tokio::task::spawn_blocking(move || invoke_drill(&b, &stopped))
        .await
        .expect("joined");
    assert_eq!(code, Some(1));
    let skipped: Vec<&Value> = lines
        .iter()
        .filter(|e| e["data"]["outcome"] == "ignored")
        .collect();
    assert_eq!(skipped.len(), 2, "{lines:#?}");
    assert_eq!(
        skipped[0]["data"]["target"]["instanceId"], WEB,
        "{}",
        skipped[0]
    );
    assert_eq!(skipped[0]["subject"], WEB, "{}", skipped[0]);
    assert_eq!(
        skipped[1]["data"]["target"]["diskId"], BATCH_SYS,
        "{}",
        skipped[1]
    );
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 0);

    // One target fails (not opted in), the others recover well inside the objective: met.
    let weekly = json!({"drill": {"name": "weekly", "regionId": REGION, "concurrency": 3, "rtoSeconds": 600,
        "startAfterReset": true,
        "targets": [{"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED}, {"diskId": BATCH_SYS}, {"instanceId": LEGACY}]},
        "scheduledTime": "2026-11-30T03:00:00Z"});
    let (b, w) = (base.clone(), weekly.clone());
    let (lines, _) = tokio::task::spawn_blocking(move || invoke_drill(&b, &w))
        .await
        .expect("joined");
    let s = summary_of(&lines);
    assert_eq!(
        (s["succeeded"].as_u64(), s["failed"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    // batch-02 was stopped and is started after its reset: it had no downtime to recover from.
    assert_eq!(s["recovered"], 1, "{s}");
    assert_eq!(s["objectiveMet"], true, "slow is not broken: {s}");
    assert_eq!(s["overObjective"], 0, "{s}");
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 1);

    // The same schedule delivered again: nothing happens now, and the summary says so.
    let b = base.clone();
    let (lines, _) = tokio::task::spawn_blocking(move || invoke_drill(&b, &weekly))
        .await
        .expect("joined");
    let s = summary_of(&lines);
    assert_eq!(s["succeeded"], 0, "{s}");
    assert_eq!(s["alreadyRolledBack"], 2, "{s}");
    assert_eq!(s["failed"], 1, "{s}");
    assert_eq!(s["recovered"], 0, "{s}");
    assert_eq!(
        s["objectiveMet"],
        Value::Null,
        "nothing recovered in this delivery: {s}"
    );
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 1);
    assert_eq!(sim.disk(BATCH_SYS).expect("disk")["resets"], 1);
}
