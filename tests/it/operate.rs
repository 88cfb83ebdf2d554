//! `ecs-rollback status` and `release`, the built binary against the simulator over loopback
//! HTTP (and the built-in one): what a hold looks like, and clearing one a dead run left, with
//! every refusal on the way, and nothing but the ledger ever touched.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use ecs_rollback::claim;
use ecs_rollback::handler::Handler;
use ecs_rollback::ledger::{self, History, Phase, RunRecord};
use ecs_rollback::report::Outcome;
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::Simulator;
use serde_json::{json, Value};

fn cli(base: &str, args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = binary();
    c.args(args).stdin(Stdio::null());
    for (k, v) in sim_env(base) {
        c.env(k, v);
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn digest(key: &str) -> String {
    ecs_rollback::request::IdempotencyKey::parse(key)
        .expect("key")
        .digest()
}

fn tags_of(sim: &Simulator, disk: &str) -> Value {
    sim.disk(disk).expect("disk")["tags"].clone()
}

/// A rollback of web-01 killed right after its StopInstance: the instance is Stopped, the
/// ledger says the run holds the disk, and its claim's heartbeat is fresh.
async fn killed_after_stop(sim: &Simulator, base: &str) {
    let handler = Handler::new(
        http_client(base, sim_credentials(), Duration::from_secs(5)),
        Settings::fast(),
        Some(REGION.into()),
    );
    let event = json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "incident-4711"});
    tokio::select! {
        _ = handler.handle(&event, None) => panic!("the run was to be killed"),
        _ = async {
            while !sim.events().iter().any(|e| e.action == "StopInstance") {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } => {}
    }
    assert!(
        eventually(Duration::from_secs(10), || sim
            .instance_status(WEB)
            .as_deref()
            == Some("Stopped"))
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_hold_and_release_clears_it_only_when_told_to() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    killed_after_stop(&sim, &base).await;
    let held_key = &digest("incident-4711")[..16];

    let (code, out, err) = cli(&base, &["status", WEB_SYS], &[]);
    assert_eq!(code, 0, "{err}");
    for want in [
        format!("HELD by key {held_key}"),
        "power state to restore: running".into(),
        "lease: live".into(),
        format!("attached to {WEB} (Stopped)"),
        // The instance's hold (issue 22): who holds it, the power state to restore.
        format!("instance {WEB}: HELD by key {held_key} (disk {WEB_SYS}"),
    ] {
        assert!(out.contains(&want), "{want:?} in:\n{out}");
    }
    let (code, out, _) = cli(&base, &["status", WEB_SYS, "--json"], &[]);
    assert_eq!(code, 0);
    let s: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(s["hold"]["keyDigest"], held_key);
    assert_eq!(s["hold"]["restorePower"], "running");
    assert_eq!(s["hold"]["resetIssued"], false);
    assert_eq!(s["hold"]["liveClaims"], 1);
    assert_eq!(s["instanceHolds"][0]["keyDigest"], held_key);
    assert_eq!(s["instanceHolds"][0]["restorePower"], "running");

    let before = tags_of(&sim, WEB_SYS);
    let changes = sim.events().len();
    // The wrong key.
    let (code, _, err) = cli(
        &base,
        &["release", WEB_SYS, "--key", "incident-0000", "--yes"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains(&format!("held by key {held_key}")), "{err}");
    // The right key, but the lease is live.
    let (code, out, err) = cli(
        &base,
        &["release", WEB_SYS, "--key", "incident-4711", "--yes"],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("the hold is live"), "{err}");
    // Forced, but not confirmed (stdin is not a terminal): shows the plan, changes nothing.
    let (code, out, err) = cli(
        &base,
        &["release", WEB_SYS, "--key", "incident-4711", "--force"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(out.contains("remove tags: ecs-rollback:run"), "{out}");
    assert!(out.contains("start it yourself"), "{out}");
    assert!(err.contains("pass --yes"), "{err}");
    assert_eq!(tags_of(&sim, WEB_SYS), before, "nothing changed yet");
    assert_eq!(sim.events().len(), changes);

    // Forced and confirmed.
    let (code, out, err) = cli(
        &base,
        &[
            "release",
            WEB_SYS,
            "--key",
            "incident-4711",
            "--force",
            "--yes",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("FORCED") && out.contains("released"), "{out}");
    assert!(
        out.contains(&format!("released: the key's hold on instance {WEB}")),
        "{out}"
    );
    let tags = tags_of(&sim, WEB_SYS);
    let keys: Vec<&String> = tags.as_object().expect("tags").keys().collect();
    assert!(
        !keys
            .iter()
            .any(|k| *k == ledger::RUN_TAG || k.starts_with(claim::CLAIM_PREFIX)),
        "{tags}"
    );
    let history = History::decode(tags[ledger::HISTORY_TAG].as_str().expect("history"));
    assert_eq!(
        history.find(&digest("incident-4711")),
        Some(true),
        "the key is ended"
    );
    assert!(history.released.is_some(), "the release is recorded");
    // Only tags changed: the instance stays as it was, the disk was never reset.
    let after: Vec<String> = sim
        .events()
        .into_iter()
        .skip(changes)
        .map(|e| e.action)
        .collect();
    assert!(
        after
            .iter()
            .all(|a| a == "TagResources" || a == "UntagResources"),
        "{after:?}"
    );
    assert_eq!(sim.instance_status(WEB).as_deref(), Some("Stopped"));
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 0);

    let (_, out, _) = cli(&base, &["status", WEB_SYS], &[]);
    assert!(
        out.contains("not held") && out.contains("last released by hand"),
        "{out}"
    );
    assert!(out.contains(&format!("instance {WEB}: not held")), "{out}");
    // A redelivery of the released key touches nothing; a new key rolls the disk back.
    let handler = Handler::new(
        http_client(&base, sim_credentials(), Duration::from_secs(5)),
        Settings::fast(),
        Some(REGION.into()),
    );
    let again = handler
        .handle(&json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "incident-4711"}), None)
        .await
        .into_reports();
    assert_eq!(again[0].outcome, Outcome::Failed);
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 0);
    let fresh = handler
        .handle(&json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "incident-4712", "startAfterReset": true}), None)
        .await
        .into_reports();
    assert_eq!(fresh[0].outcome, Outcome::Succeeded, "{:?}", fresh[0].error);
    assert_eq!(sim.instance_status(WEB).as_deref(), Some("Running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_hold_is_released_without_force_and_keeps_the_cooldown() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let now = chrono::Utc::now().timestamp();
    // A run that died past its reset two hours ago, its claim long dead.
    let stale = RunRecord {
        key: digest("incident-1")[..16].to_owned(),
        phase: Phase::Starting,
        since: now - 7200,
        snapshot: WEB_SNAP_OLD.into(),
        was_running: true,
        end_running: true,
        stop_at: Some(now - 7300),
        failure: None,
        undo: None,
        instance: None,
    };
    let c = inproc_client(&sim);
    c.tag_resources(
        REGION,
        "disk",
        &[WEB_SYS.to_owned()],
        &[
            (ledger::RUN_TAG.to_owned(), stale.encode()),
            (
                claim::claim_tag("00000000deadbeef"),
                claim::claim_value(now - 7000, &ledger::run_key(&digest("incident-1")), None),
            ),
        ],
    )
    .await
    .expect("tags");
    let (_, out, _) = cli(&base, &["status", WEB_SYS], &[]);
    assert!(
        out.contains("lease: EXPIRED") && out.contains("may already be reset"),
        "{out}"
    );
    assert!(out.contains("dead"), "the claim is dead: {out}");
    let (code, out, err) = cli(
        &base,
        &["release", WEB_SYS, "--key", "incident-1", "--yes"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("FORCED"));
    assert!(out.contains("may already hold"), "{out}");
    let tags = tags_of(&sim, WEB_SYS);
    assert!(
        tags.get(ledger::RUN_TAG).is_none()
            && tags.get(claim::claim_tag("00000000deadbeef")).is_none(),
        "{tags}"
    );
    let history = History::decode(tags[ledger::HISTORY_TAG].as_str().expect("history"));
    assert_eq!(
        history.last_success,
        Some(now - 7200),
        "the cooldown counts from the run's reset"
    );
    // Released twice: nothing to release.
    let (code, out, _) = cli(
        &base,
        &["release", WEB_SYS, "--key", "incident-1", "--yes"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("nothing to release"), "{out}");
}

#[test]
fn status_and_release_work_against_the_built_in_simulator() {
    let run = |args: &[&str], scenario: Option<&std::path::Path>| {
        let mut c = binary();
        c.args(args).stdin(Stdio::null());
        match scenario {
            Some(p) => c.env("ECS_ROLLBACK_SIM_SCENARIO", p),
            None => c.env_remove("ECS_ROLLBACK_SIM_SCENARIO"),
        };
        let out = c.output().expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["status", WEB_SYS], None);
    assert_eq!(code, 0);
    assert!(out.contains("no ledger"), "{out}");
    // A scenario whose disk carries an abandoned run.
    let mut fleet = ecs_rollback::sim::default_fleet();
    let now = chrono::Utc::now().timestamp();
    let stale = RunRecord {
        key: digest("drill-7")[..16].to_owned(),
        phase: Phase::Stopped,
        since: now - 5000,
        snapshot: WEB_SNAP_OLD.into(),
        was_running: true,
        end_running: true,
        stop_at: Some(now - 5000),
        failure: None,
        undo: None,
        instance: None,
    };
    for d in &mut fleet.disks {
        if d.id == WEB_SYS {
            d.tags.insert(ledger::RUN_TAG.into(), stale.encode());
        }
    }
    let path =
        std::env::temp_dir().join(format!("ecs-rollback-operate-{}.json", std::process::id()));
    std::fs::write(&path, json!({"fleet": fleet}).to_string()).expect("scenario");
    let (code, out) = run(&["status", WEB_SYS, "--json"], Some(&path));
    assert_eq!(code, 0);
    let s: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(s["hold"]["phase"], "stopped");
    assert!(s["hold"]["leaseLeftSecs"].as_i64().is_some_and(|l| l < 0));
    let (code, out) = run(
        &["release", WEB_SYS, "--key", "drill-7", "--yes"],
        Some(&path),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("released"), "{out}");
    let _ = std::fs::remove_file(path);
}

/// The release's plan and writes, in process (no binary): the only state-changing calls outside a
/// rollback, held to what they may write.
#[tokio::test]
async fn the_release_writes_only_tags_and_never_over_a_hold_that_changed() {
    use ecs_rollback::operate::{apply_release, read_disk_with, rules, ReleaseError};
    let b = bench().await;
    let now = chrono::Utc::now().timestamp();
    let stale = |since: i64| RunRecord {
        key: digest("incident-9")[..16].to_owned(),
        phase: Phase::Stopped,
        since,
        snapshot: WEB_SNAP_OLD.into(),
        was_running: true,
        end_running: true,
        stop_at: Some(since),
        failure: None,
        undo: None,
        instance: Some(WEB.into()),
    };
    let ecs = &b.handler.ecs;
    let write = |r: RunRecord| async move {
        ecs.tag_resources(
            REGION,
            "disk",
            &[WEB_SYS.to_owned()],
            &[(ledger::RUN_TAG.to_owned(), r.encode())],
        )
        .await
        .expect("tag")
    };
    write(stale(now - 7200)).await;
    let plan = || async {
        let (disk, status) = read_disk_with(ecs, REGION, WEB_SYS).await.expect("read");
        let tags: Vec<(String, String)> = disk
            .tags
            .tag
            .iter()
            .map(|t| (t.tag_key.clone(), t.tag_value.clone()))
            .collect();
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ecs_rollback::hold::plan_release(
            &tags,
            &digest("incident-9"),
            status.as_deref(),
            rules(&b.handler.settings),
            now,
            false,
        )
        .expect("a plan")
    };
    // A run writes the ledger between the plan and the release: nothing is changed.
    let p = plan().await;
    write(stale(now - 10)).await;
    let before = b.changes().len();
    assert_eq!(
        apply_release(ecs, REGION, WEB_SYS, &p).await,
        Err(ReleaseError::Changed)
    );
    assert_eq!(b.changes().len(), before, "nothing written");
    // The hold as planned: history first, then the run tag removed; only tags, nothing else.
    write(stale(now - 7200)).await;
    let p = plan().await;
    let before = b.changes().len();
    apply_release(ecs, REGION, WEB_SYS, &p)
        .await
        .expect("released");
    let written: Vec<String> = b.changes()[before..]
        .iter()
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(written, ["TagResources", "UntagResources"]);
    assert!(b.run_record(WEB_SYS).is_none());
    let history = b.history(WEB_SYS);
    assert_eq!(
        history.find(&digest("incident-9")),
        Some(true),
        "ended, as failed"
    );
    assert!(history.released.is_some());
    assert_eq!(b.status(WEB), "Running", "the instance is never touched");
}
