//! ECS as `shared/reference/ecs-evidence.md` says it behaves (issue 14): each test names the
//! row of its section 6 (C1..C16) or the section it checks, and drives the client and the
//! orchestrator over loopback HTTP against the simulator that follows the evidence.

use std::time::Instant;

use crate::common::*;
use ecs_rollback::report::{Outcome, Report};
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::{FaultKind, Faults, Scenario, ThrottleCode, Timings};
use serde_json::{json, Value};

fn web(key: &str, extra: Value) -> Value {
    let mut e = json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": key});
    if let (Some(m), Value::Object(x)) = (e.as_object_mut(), extra) {
        m.extend(x);
    }
    e
}

fn code(r: &Report) -> &str {
    r.error.as_ref().map_or("", |e| e.code.as_str())
}

fn scenario(timings: Timings, faults: Faults) -> Scenario {
    Scenario {
        timings,
        faults,
        ..Default::default()
    }
}

/// The default fleet with the web server's system disk of `category`.
fn fleet_with_category(category: &str) -> ecs_rollback::sim::FleetSpec {
    let mut fleet = ecs_rollback::sim::default_fleet();
    for d in fleet.disks.iter_mut().filter(|d| d.id == WEB_SYS) {
        d.category = Some(category.into());
    }
    fleet
}

// ---- C2: the undo snapshot and a snapshot already being created -----------------------------

/// C2, C9: an automatic snapshot of the disk is being created when the rollback starts. The
/// run waits for it before anything changes: stopping the instance would fail it (C9, a disk
/// without instant access here), ResetDisk and CreateSnapshot would refuse while it runs. Then
/// it takes its undo snapshot and resets only once that is complete. Before issue 14 the run
/// was refused (retryable) until a later delivery.
#[tokio::test]
async fn a_rollback_waits_for_an_automatic_snapshot_in_progress() {
    let b = bench_with(
        Scenario {
            timings: Timings {
                snapshot_ms: 400,
                ..Timings::fast()
            },
            fleet: Some(fleet_with_category("cloud_efficiency")),
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    // The automatic snapshot policy's snapshot, being created.
    assert!(b.sim.set_snapshot_progressing(WEB_SNAP_OLD));
    let r = b
        .run(web("auto-window", json!({"preserveCurrent": true})))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("waited for another snapshot")),
        "{:?}",
        r.warnings
    );
    let snaps = b.sim.state()["snapshots"].clone();
    let find = |id: &str| {
        snaps
            .as_array()
            .expect("snapshots")
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .expect("snapshot")
    };
    assert_eq!(
        find(WEB_SNAP_OLD)["status"],
        "accomplished",
        "the stop did not fail the automatic snapshot"
    );
    let undo = r.target.undo_snapshot_id.clone().expect("an undo snapshot");
    assert_eq!(
        (
            find(&undo)["status"].clone(),
            find(&undo)["content"].clone()
        ),
        (json!("accomplished"), json!("original"))
    );
    let events = b.changes();
    let at = |action: &str| {
        events
            .iter()
            .find(|e| e.action == action)
            .map(|e| e.at_ms)
            .expect(action)
    };
    assert!(
        at("ResetDisk") >= at("CreateSnapshot") + 400,
        "the reset waited for the undo snapshot to complete: {events:?}"
    );
    assert_eq!(b.status(WEB), "Running");
    assert_safe(&b.changes(), WEB_SYS);
}

/// C2 (DOC-SNAP: 403 `IncorrectDiskStatus.CreatingSnapshot`, and the 2025 table's
/// `QuotaExceed.ConcurrentSnapshotQuota`): a snapshot that began after the stop makes
/// CreateSnapshot refuse; the undo snapshot is asked again until it is accepted. Before issue
/// 14 the code was unknown, classified as permanent: the rollback failed (`UndoSnapshotFailed`).
#[tokio::test]
async fn the_undo_snapshot_is_asked_again_while_another_is_being_created() {
    for code in [
        "IncorrectDiskStatus.CreatingSnapshot",
        "QuotaExceed.ConcurrentSnapshotQuota",
    ] {
        let faults = scripted_fault(
            "CreateSnapshot",
            1,
            FaultKind::Error {
                status: 403,
                code: code.into(),
                message: String::new(),
            },
        );
        let b = bench_with(scenario(Timings::fast(), faults), Settings::fast()).await;
        let r = b
            .run(web("undo-busy", json!({"preserveCurrent": true})))
            .await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{code}: {:?}", r.error);
        assert_eq!(b.calls("CreateSnapshot"), 2, "{code}");
        assert_eq!(b.applied("CreateSnapshot"), 1, "{code}");
        assert_safe(&b.changes(), WEB_SYS);
    }
}

// ---- C8: instant access ---------------------------------------------------------------------

/// C8 (IA): an ESSD snapshot is usable while still `progressing` (`Available: true`). Named,
/// it is rolled back to, and the result says so. Before issue 14 the rollback was refused with
/// `InvalidSnapshotId.NotReady` until the snapshot was complete.
#[tokio::test]
async fn an_essd_snapshot_being_created_can_be_rolled_back_to() {
    let timings = Timings {
        snapshot_ms: 600_000,
        ..Timings::fast()
    };
    let b = bench_with(scenario(timings, Faults::default()), Settings::fast()).await;
    assert!(b.sim.set_snapshot_progressing(WEB_SNAP_TAGGED));
    let r = b.run(web("instant", json!({}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.target.snapshot_status.as_deref(), Some("progressing"));
    assert!(
        r.warnings.iter().any(|w| w.contains("instant access")),
        "{:?}",
        r.warnings
    );
    let event = r.to_cloud_event();
    assert_eq!(event["data"]["target"]["snapshotStatus"], "progressing");
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
    assert_eq!(b.status(WEB), "Running");
}

/// C8: a rule (the newest snapshot) chooses an instant-access snapshot being created too.
#[tokio::test]
async fn a_rule_chooses_an_essd_snapshot_being_created() {
    let timings = Timings {
        snapshot_ms: 600_000,
        ..Timings::fast()
    };
    let b = bench_with(scenario(timings, Faults::default()), Settings::fast()).await;
    assert!(b.sim.set_snapshot_progressing(WEB_SNAP_NEW));
    let r = b
        .run(json!({"instanceId": WEB, "idempotencyKey": "newest", "snapshot": {"before": "2099-01-01T00:00:00Z"}}))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.target.snapshot_id.as_deref(), Some(WEB_SNAP_NEW));
    assert_eq!(r.target.snapshot_status.as_deref(), Some("progressing"));
}

/// C8: without instant access (a disk that is not ESSD), a snapshot being created is still
/// refused, before anything changes.
#[tokio::test]
async fn a_snapshot_being_created_without_instant_access_is_refused() {
    let b = bench_with(
        Scenario {
            timings: Timings {
                snapshot_ms: 600_000,
                ..Timings::fast()
            },
            fleet: Some(fleet_with_category("cloud_efficiency")),
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    assert!(b.sim.set_snapshot_progressing(WEB_SNAP_TAGGED));
    let r = b.run(web("no-instant", json!({}))).await;
    assert_eq!(r.outcome, Outcome::Rejected);
    assert_eq!(code(&r), "InvalidSnapshotId.NotReady");
    assert!(b.power_and_disk_calls().is_empty());
}

// ---- §1: the end of the reset ---------------------------------------------------------------

/// §1 (OOS `ACS::ECS::ResetDisk`): after ResetDisk, DescribeDisks until the disk is `In_use`,
/// then one StartInstance. Both ways ECS may show a reset: the disk status unchanged (the
/// simulator's default; the DryRun fallback tells the end) and a status of its own while the
/// reset runs. Either way StartInstance is called once, after the reset ended. Before issue 14,
/// StartInstance probed the reset's end: refused (`DiskError`) until it was over.
#[tokio::test]
async fn the_end_of_the_reset_is_waited_for_before_one_start() {
    for status in [None, Some("ReIniting")] {
        let timings = Timings {
            reset_ms: 500,
            reset_disk_status: status.map(str::to_owned),
            ..Timings::fast()
        };
        let b = bench_with(scenario(timings, Faults::default()), Settings::fast()).await;
        let r = b.run(web("reset-end", json!({}))).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{status:?}: {:?}", r.error);
        assert_eq!(b.calls("StartInstance"), 1, "{status:?}: no probing");
        let events = b.changes();
        let at = |action: &str| events.iter().find(|e| e.action == action).map(|e| e.at_ms);
        let (reset, start) = (
            at("ResetDisk").expect("reset"),
            at("StartInstance").expect("start"),
        );
        assert!(
            start >= reset + 500,
            "{status:?}: started after the reset's end"
        );
        let detail = r
            .steps
            .iter()
            .find(|s| s.name == "reset")
            .and_then(|s| s.detail.clone())
            .unwrap_or_default();
        let how = if status.is_some() {
            "DescribeDisks"
        } else {
            "DryRun"
        };
        assert!(detail.contains(how), "{status:?}: {detail}");
        assert_eq!(b.status(WEB), "Running");
    }
}

/// §1 "client-side": whatever StartInstance answers while something still runs
/// (`IncorrectInstanceStatus`, `InvalidOperation.Conflict`, `OperationConflict`, `DiskError`,
/// throttling) is "not yet", and it is asked again.
#[tokio::test]
async fn every_not_yet_answer_of_start_instance_is_retried() {
    for (status, code) in [
        (403, "InvalidOperation.Conflict"),
        (403, "OperationConflict"),
        (403, "IncorrectInstanceStatus"),
        (403, "DiskError"),
        (403, "Throttling"),
    ] {
        let faults = scripted_fault(
            "StartInstance",
            1,
            FaultKind::Error {
                status,
                code: code.into(),
                message: String::new(),
            },
        );
        let b = bench_with(scenario(Timings::fast(), faults), Settings::fast()).await;
        let r = b.run(web("not-yet", json!({}))).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{code}: {:?}", r.error);
        assert_eq!(b.status(WEB), "Running", "{code}");
    }
}

// ---- C10: throttling ------------------------------------------------------------------------

/// C10 (§5): ECS counts calls per action per window and answers `Throttling` (403),
/// `Throttling.User` or `Throttling.Api` (400). A rollback passes under each, and when the
/// answer carries `x-acs-retry-after`, the client waits that long before calling the action
/// again: at most one throttled DescribeInstances per window (plus one per request in flight).
/// Before issue 14 the client retried at once (2 to 20 ms apart) and was throttled again and
/// again within the same window.
#[tokio::test]
async fn throttling_is_per_action_per_window_and_retry_after_is_honoured() {
    for code in [
        ThrottleCode::Throttling,
        ThrottleCode::User,
        ThrottleCode::Api,
    ] {
        let window_ms = 1_000;
        let faults = Faults {
            rate_limits: [("DescribeInstances".to_owned(), 2)].into_iter().collect(),
            rate_window_ms: window_ms,
            throttle_code: code,
            ..Default::default()
        };
        let b = bench_with(scenario(Timings::fast(), faults), Settings::fast()).await;
        let t0 = Instant::now();
        let r = b.run(web("throttled", json!({}))).await;
        let elapsed = t0.elapsed();
        assert_eq!(r.outcome, Outcome::Succeeded, "{code:?}: {:?}", r.error);
        assert_eq!(b.status(WEB), "Running");
        let throttled = b.sim.fault_stats().throttled;
        let windows = elapsed.as_millis() as u64 / window_ms + 2;
        assert!(throttled >= 1, "{code:?}: the limit was reached");
        assert!(
            throttled <= windows,
            "{code:?}: {throttled} throttled answers in {} windows",
            windows
        );
        assert_safe(&b.changes(), WEB_SYS);
    }
}

// ---- C1: the tag quota ----------------------------------------------------------------------

/// C1 (§2): the tag quota may also answer 403 `QuotaExceed.Tags`; it is read as the quota
/// (refused for good, saying why), like 400 `OperationDenied.QuotaExceed`.
#[tokio::test]
async fn both_tag_quota_answers_refuse_the_ledger_for_good() {
    for (status, quota) in [
        (400, "OperationDenied.QuotaExceed"),
        (403, "QuotaExceed.Tags"),
    ] {
        // TagResources 1 and 2 are the instance's hold (issue 22) and the disk's claim, sent
        // together (issue 26: either may arrive first), 3 the run record, first written as
        // `stopping` beside the stop's guard read (issue 26).
        let faults = scripted_fault(
            "TagResources",
            3,
            FaultKind::Error {
                status,
                code: quota.into(),
                message: String::new(),
            },
        );
        let b = bench_with(scenario(Timings::fast(), faults), Settings::fast()).await;
        let r = b.run(web("quota", json!({}))).await;
        assert_eq!(r.outcome, Outcome::Rejected, "{quota}");
        let e = r.error.clone().expect("error");
        assert_eq!(e.code, "LedgerUnavailable", "{quota}");
        assert!(!e.retryable, "{quota}");
        assert!(
            e.message.contains("too many tags"),
            "{quota}: {}",
            e.message
        );
        assert!(b.power_and_disk_calls().is_empty(), "{quota}");
    }
}

// ---- C3: ClientToken still being processed --------------------------------------------------

/// C3 (§3): the undo snapshot's CreateSnapshot answer is lost; asked again with the same
/// ClientToken while ECS still processes the first, it answers 403 `IdempotentProcessing`,
/// which means "ask again". One snapshot is made and the rollback goes on. Before issue 14 the
/// code was unknown (permanent): the undo snapshot failed and nothing was rolled back.
#[tokio::test]
async fn a_client_token_still_being_processed_is_asked_again() {
    let timings = Timings {
        client_token_processing_ms: 300,
        ..Timings::fast()
    };
    let faults = scripted_fault("CreateSnapshot", 1, FaultKind::Drop);
    let b = bench_with(scenario(timings, faults), Settings::fast()).await;
    let r = b
        .run(web("processing", json!({"preserveCurrent": true})))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.applied("CreateSnapshot"), 1);
    assert!(b.calls("CreateSnapshot") >= 2);
    assert_safe(&b.changes(), WEB_SYS);
}

// ---- C14: tag values ------------------------------------------------------------------------

/// C14 (§2): the sources disagree on whether a tag value may start with `aliyun` or `acs:`;
/// the simulator keeps the strict reading, and the undo snapshot's labels pass it. A
/// CloudMonitor-style key `aliyun-cms-…` and a reason naming a URL used to make CreateSnapshot
/// refuse the labels (`InvalidTagValue.Malformed`), so the rollback failed.
#[tokio::test]
async fn the_undo_snapshot_labels_pass_every_reading_of_the_tag_rules() {
    let b = bench().await;
    let r = b
        .run(web(
            "aliyun-cms-alert-42",
            json!({"preserveCurrent": true, "reason": "see https://grafana.example/d/1"}),
        ))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
}

// ---- issue 15: waits that learn -------------------------------------------------------------

/// Issue 15: a finished rollback records how long its steps took in the disk's ledger
/// (`ecs-rollback:durations`, written with the record), and the next rollback of the disk waits
/// from it: few reads while a step cannot be over, dense ones near its end. The first run knows
/// nothing and reads densely throughout. Its downtime is measured to the millisecond, so it never
/// exceeds the run's own total.
#[tokio::test]
async fn the_next_rollback_waits_from_what_the_last_one_measured() {
    let settings = Settings {
        cooldown: std::time::Duration::ZERO,
        poll: ecs_rollback::settings::Poll {
            initial: std::time::Duration::from_millis(50),
            max: std::time::Duration::from_secs(2),
        },
        ..Settings::fast()
    };
    let timings = Timings {
        stop_ms: 1_500,
        // Long enough to be seen running (a reset's duration is learned only from its end
        // seen): 60 ms could pass unseen between two reads on a loaded machine.
        reset_ms: 1_500,
        start_ms: 1_500,
        ..Timings::fast()
    };
    let b = bench_with(scenario(timings, Faults::default()), settings).await;
    let reads = |b: &Bench| b.calls("DescribeInstances");
    let first = b.run(web("learn-1", json!({}))).await;
    assert_eq!(first.outcome, Outcome::Succeeded, "{:?}", first.error);
    let first_reads = reads(&b);
    let learned = b.disk(WEB_SYS)["tags"][ecs_rollback::ledger::DURATIONS_TAG]
        .as_str()
        .map(ecs_rollback::ledger::Durations::decode)
        .expect("the durations tag");
    assert!(learned.stop.is_some_and(|ms| ms >= 1_500), "{learned:?}");
    assert!(learned.start.is_some_and(|ms| ms >= 1_500), "{learned:?}");
    assert!(learned.reset.is_some(), "{learned:?}");
    let downtime = first.downtime_ms.expect("downtime");
    assert!(
        downtime <= first.total_ms,
        "{downtime} > {}",
        first.total_ms
    );
    let second = b
        .run(json!({"instanceId": WEB, "snapshotId": WEB_SNAP_OLD, "idempotencyKey": "learn-2"}))
        .await;
    assert_eq!(second.outcome, Outcome::Succeeded, "{:?}", second.error);
    let second_reads = reads(&b) - first_reads;
    assert!(
        second_reads < first_reads,
        "the second rollback read the instance {second_reads} times, the first {first_reads}"
    );
    assert_eq!(b.status(WEB), "Running");
}

// ---- §5: ResetDisk's own rate limit, with `x-acs-retry-after` ---------------------------------

/// ResetDisk is throttled per minute (500 calls, ecs-evidence.md §5; here 4 in a window of
/// 7 s), and the answer says how long to wait (`x-acs-retry-after`, UNCONFIRMED for ECS). Past
/// what one of its retries may wait (5 s) the client holds ResetDisk back without sending it;
/// the reset waits that out within its budget (20 s here) and resets once. Before, each held-back call counted as a try: twenty of them in a
/// few milliseconds, then `ResetGaveUp` for good on an instance already stopped.
#[tokio::test]
async fn a_reset_held_back_for_retry_after_is_waited_out_not_given_up() {
    let mut faults = Faults {
        rate_window_ms: 7_000,
        ..Faults::default()
    };
    faults.rate_limits.insert("ResetDisk".into(), 4);
    let timings = Timings {
        reset_ms: 600,
        ..Timings::fast()
    };
    let mut settings = Settings::fast();
    settings.reset_timeout = std::time::Duration::from_secs(20);
    let b = bench_with(scenario(timings, faults), settings).await;
    // Another caller's DryRun probes use up the window just before the run.
    for _ in 0..4 {
        let _ = b
            .handler
            .ecs
            .reset_disk(REGION, WEB_SYS, WEB_SNAP_TAGGED, true)
            .await;
    }
    let r = b.run(web("held-back", json!({}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.resets(WEB_SYS), 1);
    assert_eq!(b.settled_status(WEB).await, "Running");
}
