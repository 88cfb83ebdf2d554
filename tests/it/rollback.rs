//! The rollback end to end against the simulator over HTTP on loopback. Every test checks the
//! simulator's state at the end (instance power state, disk content, reset count, ledger tags,
//! the order of applied calls), not only the result event.

use std::time::{Duration, Instant};

use crate::common::*;
use ecs_rollback::claim;
use ecs_rollback::ledger::{self, Phase, RunRecord};
use ecs_rollback::report::{Outcome, Report, StepStatus};
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::{Event, FaultKind, Faults, Scenario, ScriptedFault, Timings};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

/// Resets of `disk` after the first, all to the same snapshot with no start in between: the
/// re-issue a resumed run makes when ResetDisk's answer was lost and no reset is running any
/// more (ECS documents no completion signal). The disk content is the same; they are counted.
fn reissued_resets(events: &[Event], disk: &str) -> usize {
    let resets: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == "ResetDisk" && e.resource == disk)
        .collect();
    if let Some(first) = resets.first() {
        for r in &resets {
            assert_eq!(
                r.detail, first.detail,
                "every reset of one run is to one snapshot: {events:?}"
            );
            let started_between = events
                .iter()
                .any(|e| e.action == "StartInstance" && e.seq > first.seq && e.seq < r.seq);
            assert!(!started_between, "a reset after a start: {events:?}");
        }
    }
    resets.len().saturating_sub(1)
}

/// Runs `event` and drops the run (a crash, mid-step) once the simulator has applied
/// `changes` state-changing calls (ledger writes included).
async fn kill_after(b: &Bench, event: &Value, changes: usize) {
    let sim = b.sim.clone();
    tokio::select! {
        _ = b.handler.handle(event, None) => {}
        _ = async {
            while sim.events().len() < changes {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } => {}
    }
}

fn nothing_changed(b: &Bench) {
    assert!(
        b.changes().is_empty(),
        "no state-changing call: {:?}",
        b.changes()
    );
}

fn web(extra: Value) -> Value {
    let mut v =
        json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "key-web"});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

/// The run's own steps (the operator's controls' `policy`, `cap` and `approval` steps that come
/// before them are `operators.rs`'s to check).
fn step_names(r: &Report) -> Vec<(String, StepStatus)> {
    r.steps
        .iter()
        .filter(|s| !matches!(s.name.as_str(), "policy" | "cap" | "approval"))
        .map(|s| (s.name.clone(), s.status))
        .collect()
}

#[tokio::test]
async fn happy_path() {
    let b = bench().await;
    let r = b.run(web(json!({"reason": "bad release"}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.target.disk_id.as_deref(), Some(WEB_SYS));
    assert_eq!(r.target.snapshot_id.as_deref(), Some(WEB_SNAP_TAGGED));
    assert_eq!(
        step_names(&r),
        vec![
            ("preflight".into(), StepStatus::Done),
            ("claim".into(), StepStatus::Done),
            ("stop".into(), StepStatus::Done),
            ("reset".into(), StepStatus::Done),
            ("start".into(), StepStatus::Done),
            ("finish".into(), StepStatus::Done),
        ]
    );
    assert!(r
        .steps
        .iter()
        .filter(|s| s.name == "stop" || s.name == "reset")
        .all(|s| s.request_id.is_some()));
    assert!(r.downtime_ms.is_some());
    let ev = r.to_cloud_event();
    assert_eq!(ev["type"], "ecs-rollback.succeeded");
    assert_eq!(ev["subject"], WEB_SYS);
    assert_eq!(ev["data"]["reason"], "bad release");
    // The simulator's state.
    assert_eq!(b.status(WEB), "Running");
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
    assert_eq!(b.disk(WEB_SYS)["resets"], 1);
    assert_eq!(b.disk(WEB_DATA)["resets"], 0);
    assert_eq!(
        b.power_and_disk_calls(),
        vec![
            ("StopInstance".into(), "Running".into()),
            ("ResetDisk".into(), "Stopped".into()),
            ("StartInstance".into(), "Stopped".into()),
        ]
    );
    let rec = b.run_record(WEB_SYS).expect("run record");
    assert_eq!(rec.phase, Phase::Done);
    assert!(rec.was_running && rec.end_running);
    let tags = b.disk(WEB_SYS)["tags"].clone();
    assert!(tags[ledger::HISTORY_TAG]
        .as_str()
        .is_some_and(|h| h.starts_with("t=")));
    assert!(
        tags.as_object()
            .expect("tags")
            .keys()
            .all(|k| !k.starts_with(claim::CLAIM_PREFIX)),
        "the claim tag was removed: {tags}"
    );
    assert_eq!(b.sim.state()["instances"][0]["stoppedMode"], "KeepCharging");
    assert_safe(&b.changes(), WEB_SYS);
}

#[tokio::test]
async fn the_default_snapshot_is_the_newest_before_the_trigger() {
    let b = bench().await;
    let r = b
        .run(json!({"instanceId": WEB, "idempotencyKey": "newest"}))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.target.snapshot_id.as_deref(), Some(WEB_SNAP_NEW));
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_NEW);
    assert_eq!(b.disk(WEB_DATA)["content"], "original");
}

#[tokio::test]
async fn preflight_refusals_touch_nothing() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"instanceId": LEGACY, "snapshotId": LEGACY_SNAP}),
            "NotOptedIn",
        ),
        (
            json!({"instanceId": LOCKED, "snapshotId": LOCKED_SNAP}),
            "InstanceLockedForSecurity",
        ),
        (
            json!({"diskId": WEB_SYS, "snapshotId": BATCH_SNAP}),
            "InvalidParameter.Mismatch",
        ),
        (
            json!({"diskId": WEB_SYS, "snapshotId": "s-bp1doesnotexist01"}),
            "InvalidSnapshotId.NotFound",
        ),
        (
            json!({"diskId": "d-bp1doesnotexist01"}),
            "InvalidDiskId.NotFound",
        ),
        (
            json!({"instanceId": "i-bp1doesnotexist01"}),
            "InvalidInstanceId.NotFound",
        ),
        (
            json!({"diskId": WEB_SYS, "instanceId": BATCH}),
            "InvalidRequest",
        ),
        (
            json!({"diskId": WEB_SYS, "snapshot": {"name": "no-such-name"}}),
            "InvalidSnapshotId.NotFound",
        ),
        (
            json!({"diskId": WEB_SYS, "snapshot": {"before": "2000-01-01T00:00:00Z"}}),
            "InvalidSnapshotId.NotFound",
        ),
        (json!({"diskId": "not-a-disk"}), "InvalidRequest"),
        (
            json!({"diskId": WEB_SYS, "colour": "red"}),
            "InvalidRequest",
        ),
    ];
    for (event, code) in cases {
        let b = bench().await;
        let r = b.run(event.clone()).await;
        assert_eq!(r.outcome, Outcome::Rejected, "{event}");
        let e = r.error.clone().expect("error");
        assert_eq!(e.code, code, "{event}: {}", e.message);
        nothing_changed(&b);
        assert_eq!(b.status(WEB), "Running");
        assert_eq!(b.status(LEGACY), "Running");
    }
    // Another snapshot still being taken after the snapshot timeout the run waits for it
    // (ecs-evidence.md §3: ResetDisk would refuse, a stop could fail it): refused, retryable.
    let b = bench_with(
        Scenario {
            timings: Timings {
                snapshot_ms: 600_000,
                ..Timings::fast()
            },
            ..Default::default()
        },
        Settings {
            snapshot_timeout: Duration::from_millis(300),
            ..Settings::fast()
        },
    )
    .await;
    assert!(b.sim.set_snapshot_progressing(WEB_SNAP_NEW));
    let r = b.run(web(json!({}))).await;
    let e = r.error.expect("refused");
    assert_eq!(
        (e.code.as_str(), e.retryable),
        ("IncorrectDiskStatus.HasUnfinishedSnapshot", true)
    );
    nothing_changed(&b);
    // A lock that appears on the disk's instance.
    let b = bench().await;
    assert!(b.sim.set_instance_locks(WEB, &["financial"]));
    let r = b.run(web(json!({}))).await;
    assert_eq!(
        r.error.map(|e| e.code).as_deref(),
        Some("InstanceExpiredOrInArrears")
    );
    nothing_changed(&b);
    // Malformed input never reaches ECS at all.
    let b = bench().await;
    let r = b.run(json!({"diskId": "d-\"; rm -rf"})).await;
    assert_eq!(r.outcome, Outcome::Rejected);
    assert!(b.sim.call_counts().is_empty(), "{:?}", b.sim.call_counts());
}

#[tokio::test]
async fn the_opt_in_check_can_be_turned_off_and_says_so() {
    let settings = Settings {
        require_tag: None,
        ..Settings::fast()
    };
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            ..Default::default()
        },
        settings,
    )
    .await;
    let r = b
        .run(json!({"instanceId": LEGACY, "idempotencyKey": "legacy"}))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert!(r.warnings.iter().any(|w| w.contains("opt-in check is off")));
    assert_eq!(b.disk(LEGACY_SYS)["content"], LEGACY_SNAP);
    assert_eq!(b.status(LEGACY), "Running");
}

#[tokio::test]
async fn an_instance_already_stopped_is_not_stopped_and_stays_stopped() {
    let b = bench().await;
    let r = b
        .run(json!({"instanceId": BATCH, "idempotencyKey": "batch"}))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.status(BATCH), "Stopped");
    assert_eq!(b.disk(BATCH_SYS)["content"], BATCH_SNAP);
    assert_eq!(
        b.power_and_disk_calls(),
        vec![("ResetDisk".into(), "Stopped".into())]
    );
    assert!(r.downtime_ms.is_none());
    // startAfterReset starts it.
    let b = bench().await;
    let r = b
        .run(json!({"instanceId": BATCH, "idempotencyKey": "batch-2", "startAfterReset": true}))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.status(BATCH), "Running");
    assert_safe(&b.changes(), BATCH_SYS);
    // And startAfterReset=false leaves a running instance stopped, as asked.
    let b = bench().await;
    let r = b.run(web(json!({"startAfterReset": false}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.status(WEB), "Stopped");
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
}

#[tokio::test]
async fn throttling_and_5xx_on_every_call() {
    for seed in 1..=4 {
        let b = bench_with(
            Scenario {
                timings: Timings::fast(),
                faults: Faults {
                    throttle_rate: 0.2,
                    error_rate: 0.15,
                    seed,
                    ..Default::default()
                },
                ..Default::default()
            },
            Settings::fast(),
        )
        .await;
        let r = b.run(web(json!({}))).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "seed {seed}: {:?}", r.error);
        assert_eq!(b.status(WEB), "Running", "seed {seed}");
        assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
        assert_eq!(b.disk(WEB_SYS)["resets"], 1, "seed {seed}");
        assert_safe(&b.changes(), WEB_SYS);
    }
}

#[tokio::test]
async fn responses_lost_after_the_change() {
    for seed in 1..=4 {
        let b = bench_with(
            Scenario {
                timings: Timings {
                    reset_ms: 300,
                    ..Timings::fast()
                },
                faults: Faults {
                    drop_rate: 0.3,
                    seed,
                    ..Default::default()
                },
                ..Default::default()
            },
            Settings::fast(),
        )
        .await;
        let r = b.run(web(json!({}))).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "seed {seed}: {:?}", r.error);
        assert_eq!(b.status(WEB), "Running", "seed {seed}");
        assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
        assert_eq!(
            b.disk(WEB_SYS)["resets"],
            1,
            "seed {seed}: {:?}",
            b.changes()
        );
        assert_safe(&b.changes(), WEB_SYS);
    }
    // The reset's own answer lost: resolved by reading, not by repeating.
    let b = bench_with(
        Scenario {
            timings: Timings {
                reset_ms: 300,
                ..Timings::fast()
            },
            faults: Faults {
                scripted: vec![
                    ScriptedFault {
                        caller: None,
                        action: "ResetDisk".into(),
                        nth: 1,
                        fault: FaultKind::Drop,
                    },
                    ScriptedFault {
                        caller: None,
                        action: "StopInstance".into(),
                        nth: 1,
                        fault: FaultKind::Drop,
                    },
                    ScriptedFault {
                        caller: None,
                        action: "StartInstance".into(),
                        nth: 1,
                        fault: FaultKind::Drop,
                    },
                ],
                ..Default::default()
            },
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    let r = b.run(web(json!({}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.disk(WEB_SYS)["resets"], 1);
    assert_eq!(
        b.sim.call_counts()["StopInstance"],
        1,
        "the stop was not repeated"
    );
    assert_eq!(b.status(WEB), "Running");
    assert_safe(&b.changes(), WEB_SYS);
}

#[tokio::test]
async fn a_reset_that_fails_after_the_stop_brings_the_instance_back() {
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            faults: Faults {
                scripted: vec![ScriptedFault {
                    caller: None,
                    action: "ResetDisk".into(),
                    nth: 1,
                    fault: FaultKind::Error {
                        status: 403,
                        code: "OperationDenied".into(),
                        message: "The specified snapshot dees not support ResetDisk.".into(),
                    },
                }],
                ..Default::default()
            },
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    let r = b.run(web(json!({}))).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.clone().expect("error");
    assert_eq!(e.code, "OperationDenied");
    assert!(!e.retryable && e.request_id.is_some());
    assert_eq!(b.status(WEB), "Running", "brought back");
    assert_eq!(b.disk(WEB_SYS)["content"], "original");
    assert_eq!(b.disk(WEB_SYS)["resets"], 0);
    assert_eq!(
        b.power_and_disk_calls(),
        vec![
            ("StopInstance".into(), "Running".into()),
            ("StartInstance".into(), "Stopped".into())
        ]
    );
    let rec = b.run_record(WEB_SYS).expect("record");
    assert_eq!(rec.phase, Phase::Failed);
    assert_eq!(rec.failure.as_deref(), Some("OperationDenied"));
    // The same key again: reported as failed, nothing touched.
    let before = b.changes().len();
    let again = b.run(web(json!({}))).await;
    assert_eq!(again.outcome, Outcome::Failed);
    assert_eq!(
        again.error.map(|e| e.code).as_deref(),
        Some("OperationDenied")
    );
    assert_eq!(b.changes().len(), before);
}

#[tokio::test]
async fn a_slow_stop_is_waited_for() {
    let b = bench_with(
        Scenario {
            timings: Timings {
                stop_ms: 700,
                ..Timings::fast()
            },
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    let r = b.run(web(json!({}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert!(r.total_ms >= 700);
    assert_eq!(b.status(WEB), "Running");
    assert_eq!(b.disk(WEB_SYS)["resets"], 1);
    // Slower than the stop timeout: the run ends retryable and the next one resumes.
    let b = bench_with(
        Scenario {
            timings: Timings {
                stop_ms: 1500,
                ..Timings::fast()
            },
            ..Default::default()
        },
        Settings {
            stop_timeout: Duration::from_millis(300),
            ..Settings::fast()
        },
    )
    .await;
    let r = b.run(web(json!({}))).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.expect("error");
    assert_eq!(e.code, "WaitTimeout");
    assert!(e.retryable);
    assert_eq!(
        b.run_record(WEB_SYS).map(|r| r.phase),
        Some(Phase::Stopping)
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = b.run(web(json!({}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.status(WEB), "Running");
    assert_eq!(b.disk(WEB_SYS)["resets"], 1);
    assert_eq!(b.sim.call_counts()["StopInstance"], 1);
}

#[tokio::test]
async fn a_reset_whose_progress_is_or_is_not_visible() {
    for shown in [None, Some("ReIniting".to_owned())] {
        let b = bench_with(
            Scenario {
                timings: Timings {
                    reset_ms: 400,
                    reset_disk_status: shown.clone(),
                    ..Timings::fast()
                },
                ..Default::default()
            },
            Settings::fast(),
        )
        .await;
        let r = b.run(web(json!({}))).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{shown:?}: {:?}", r.error);
        assert_eq!(b.status(WEB), "Running");
        assert_eq!(
            b.disk(WEB_SYS)["content"],
            WEB_SNAP_TAGGED,
            "the start waited for the reset"
        );
        assert_eq!(b.disk(WEB_SYS)["resets"], 1);
        // The reset's end is waited for (DescribeDisks, or its DryRun): one StartInstance
        // (ecs-evidence.md §1; tests/it/evidence.rs checks the order in time).
        assert_eq!(b.sim.call_counts()["StartInstance"], 1);
        // And an instance that stays stopped waits for the reset through its DryRun.
        let b = bench_with(
            Scenario {
                timings: Timings {
                    reset_ms: 400,
                    reset_disk_status: shown.clone(),
                    ..Timings::fast()
                },
                ..Default::default()
            },
            Settings::fast(),
        )
        .await;
        let r = b
            .run(json!({"instanceId": BATCH, "idempotencyKey": "batch"}))
            .await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
        assert_eq!(
            b.disk(BATCH_SYS)["resetting"],
            false,
            "finished before the result"
        );
        assert_eq!(b.disk(BATCH_SYS)["content"], BATCH_SNAP);
    }
}

#[tokio::test]
async fn a_duplicate_touches_nothing() {
    let b = bench().await;
    let first = b.run(web(json!({}))).await;
    assert_eq!(first.outcome, Outcome::Succeeded, "{:?}", first.error);
    let changes = b.changes().len();
    let second = b.run(web(json!({}))).await;
    assert_eq!(second.outcome, Outcome::Duplicate);
    assert!(second.error.is_none());
    assert_eq!(b.changes().len(), changes);
    assert_eq!(b.disk(WEB_SYS)["resets"], 1);
    // A derived key: the same request body twice.
    let b = bench().await;
    let body = json!({"instanceId": BATCH});
    assert_eq!(b.run(body.clone()).await.outcome, Outcome::Succeeded);
    assert_eq!(b.run(body).await.outcome, Outcome::Duplicate);
    assert_eq!(b.disk(BATCH_SYS)["resets"], 1);
}

#[tokio::test]
async fn a_second_key_racing_for_the_disk() {
    for round in 0..3 {
        let b = bench().await;
        let (x, y) = tokio::join!(
            b.run(web(json!({"idempotencyKey": format!("race-a-{round}")}))),
            b.run(web(json!({"idempotencyKey": format!("race-b-{round}")}))),
        );
        let outcomes = [x.outcome, y.outcome];
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == Outcome::Succeeded)
                .count(),
            1,
            "{x:?} {y:?}"
        );
        let loser = if x.outcome == Outcome::Succeeded {
            &y
        } else {
            &x
        };
        assert_eq!(loser.outcome, Outcome::Rejected);
        let code = loser.error.as_ref().map(|e| e.code.as_str());
        assert!(
            matches!(code, Some("RollbackInProgress" | "CooldownActive")),
            "{code:?}"
        );
        if code == Some("RollbackInProgress") {
            assert!(loser.error.as_ref().is_some_and(|e| e.retryable));
        }
        assert_eq!(b.disk(WEB_SYS)["resets"], 1);
        assert_eq!(b.status(WEB), "Running");
        assert_safe(&b.changes(), WEB_SYS);
    }
}

#[tokio::test]
async fn two_invocations_of_one_key_racing_for_the_disk() {
    for round in 0..3 {
        let b = bench().await;
        let event = web(json!({"idempotencyKey": format!("twin-{round}")}));
        let (x, y) = tokio::join!(b.run(event.clone()), b.run(event.clone()));
        let outcomes = [x.outcome, y.outcome];
        assert!(outcomes.contains(&Outcome::Succeeded), "{x:?} {y:?}");
        let other = if x.outcome == Outcome::Succeeded {
            &y
        } else {
            &x
        };
        match other.outcome {
            Outcome::Duplicate => {}
            Outcome::Rejected | Outcome::Failed => {
                let e = other.error.as_ref().expect("error");
                assert_eq!(e.code, "RollbackInProgress");
                assert!(e.retryable);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(b.disk(WEB_SYS)["resets"], 1, "{:?}", b.changes());
        assert_eq!(
            b.calls_for_real("ResetDisk"),
            1,
            "the twin never called ResetDisk (the winner's DryRuns watch the reset's end)"
        );
        assert_eq!(b.status(WEB), "Running");
        assert_safe(&b.changes(), WEB_SYS);
        // The twin, delivered again, is a duplicate.
        assert_eq!(b.run(event).await.outcome, Outcome::Duplicate);
    }
    // A twin that arrives while the first is part-way reads "resume" and must still yield.
    for wait_for in ["StopInstance", "ResetDisk"] {
        let b = bench_with(
            Scenario {
                timings: Timings {
                    stop_ms: 200,
                    reset_ms: 300,
                    ..Timings::fast()
                },
                ..Default::default()
            },
            Settings::fast(),
        )
        .await;
        let event = web(json!({"idempotencyKey": format!("late-twin-{wait_for}")}));
        let sim = b.sim.clone();
        let late = async {
            while !sim.events().iter().any(|e| e.action == wait_for) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            b.run(event.clone()).await
        };
        let (first, twin) = tokio::join!(b.run(event.clone()), late);
        assert_eq!(first.outcome, Outcome::Succeeded, "{:?}", first.error);
        assert_ne!(twin.outcome, Outcome::Succeeded, "{twin:?}");
        assert_eq!(
            twin.error.as_ref().map(|e| e.code.as_str()),
            Some("RollbackInProgress")
        );
        assert_eq!(b.calls_for_real("ResetDisk"), 1);
        assert_eq!(b.sim.call_counts()["StopInstance"], 1);
        assert_safe(&b.changes(), WEB_SYS);
    }
}

#[tokio::test]
async fn the_cooldown_guards_against_alert_loops() {
    let b = bench().await;
    assert_eq!(
        b.run(web(json!({"idempotencyKey": "alert-1"})))
            .await
            .outcome,
        Outcome::Succeeded
    );
    let changes = b.changes().len();
    let r = b.run(web(json!({"idempotencyKey": "alert-2"}))).await;
    assert_eq!(r.outcome, Outcome::Rejected);
    assert_eq!(r.error.map(|e| e.code).as_deref(), Some("CooldownActive"));
    assert_eq!(b.changes().len(), changes);
    // Off with 0.
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            ..Default::default()
        },
        Settings {
            cooldown: Duration::ZERO,
            ..Settings::fast()
        },
    )
    .await;
    assert_eq!(
        b.run(web(json!({"idempotencyKey": "alert-1"})))
            .await
            .outcome,
        Outcome::Succeeded
    );
    assert_eq!(
        b.run(web(json!({"idempotencyKey": "alert-2"})))
            .await
            .outcome,
        Outcome::Succeeded
    );
    assert_eq!(b.disk(WEB_SYS)["resets"], 2);
    // Two rollbacks, each reset made while Stopped.
    let once = [
        ("StopInstance".to_owned(), "Running".to_owned()),
        ("ResetDisk".to_owned(), "Stopped".to_owned()),
        ("StartInstance".to_owned(), "Stopped".to_owned()),
    ];
    assert_eq!(b.power_and_disk_calls(), [once.clone(), once].concat());
}

#[tokio::test]
async fn a_run_killed_at_each_step_resumes_safely() {
    // A full run applies 12 changes (tags included); kill it after each of them in turn.
    let full = {
        let b = bench().await;
        assert_eq!(b.run(web(json!({}))).await.outcome, Outcome::Succeeded);
        b.changes().len()
    };
    assert!(full >= 10, "{full} changes in a full run");
    for changes in 1..=full {
        let b = bench().await;
        let event = web(json!({}));
        kill_after(&b, &event, changes).await;
        let r = b.redeliver_until_done(&event).await;
        assert!(
            matches!(r.outcome, Outcome::Succeeded | Outcome::Duplicate),
            "killed after {changes}: {:?} {:?}",
            r.outcome,
            r.error
        );
        assert!(
            eventually(T, || b.status(WEB) == "Running").await,
            "killed after {changes}"
        );
        assert_eq!(
            b.disk(WEB_SYS)["content"],
            WEB_SNAP_TAGGED,
            "killed after {changes}"
        );
        let reissued = reissued_resets(&b.changes(), WEB_SYS);
        if reissued > 0 {
            println!("killed after change {changes}: ResetDisk re-issued {reissued}x (same snapshot, instance still stopped)");
        }
        assert_eq!(b.run_record(WEB_SYS).map(|r| r.phase), Some(Phase::Done));
        assert_safe(&b.changes(), WEB_SYS);
    }
}

/// A dry run of a running instance sends every call ECS lets DryRun, ResetDisk and
/// StartInstance included: a refusal for the state alone says they are authorized (planned); a
/// policy that does not allow one (`Forbidden.RAM`, refused before the state is looked at)
/// rejects the dry run. On the main branch of issue 25 only StopInstance was dry-run there.
#[tokio::test]
async fn a_dry_run_of_a_running_instance_tries_every_call_ecs_lets_dry_run() {
    let b = bench().await;
    let r = b.run(web(json!({"dryRun": true}))).await;
    assert_eq!(r.outcome, Outcome::DryRun, "{:?}", r.error);
    for step in ["reset", "start"] {
        let s = r.steps.iter().find(|s| s.name == step).expect(step);
        assert_eq!(s.status, StepStatus::Planned, "{step}");
        assert!(
            s.detail
                .as_deref()
                .is_some_and(|d| d.contains("its parameters and authorization passed")),
            "{step}: {:?}",
            s.detail
        );
        assert!(s.request_id.is_some(), "{step}: ECS answered the DryRun");
    }
    nothing_changed(&b);
    for action in ["ResetDisk", "StartInstance"] {
        let b = bench_with(
            Scenario {
                timings: Timings::fast(),
                faults: scripted_fault(
                    action,
                    1,
                    FaultKind::Error {
                        status: 403,
                        code: "Forbidden.RAM".into(),
                        message: "User not authorized to operate on the specified resource.".into(),
                    },
                ),
                ..Default::default()
            },
            Settings::fast(),
        )
        .await;
        let r = b.run(web(json!({"dryRun": true}))).await;
        assert_eq!(r.outcome, Outcome::Rejected, "{action}: {:?}", r.steps);
        assert_eq!(
            r.error.as_ref().map(|e| e.code.as_str()),
            Some("Forbidden.RAM"),
            "{action}"
        );
        nothing_changed(&b);
    }
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_lists_the_plan() {
    let b = bench().await;
    let r = b.run(web(json!({"dryRun": true}))).await;
    assert_eq!(r.outcome, Outcome::DryRun, "{:?}", r.error);
    assert_eq!(
        step_names(&r),
        vec![
            ("preflight".into(), StepStatus::Done),
            ("stop".into(), StepStatus::DryRun),
            ("reset".into(), StepStatus::Planned),
            ("start".into(), StepStatus::Planned),
        ]
    );
    nothing_changed(&b);
    assert_eq!(b.status(WEB), "Running");
    // A stopped instance: the reset itself can be dry-run.
    let r = b
        .run(json!({"instanceId": BATCH, "dryRun": true, "startAfterReset": true}))
        .await;
    assert_eq!(r.outcome, Outcome::DryRun, "{:?}", r.error);
    assert_eq!(
        step_names(&r),
        vec![
            ("preflight".into(), StepStatus::Done),
            ("stop".into(), StepStatus::Skipped),
            ("reset".into(), StepStatus::DryRun),
            ("start".into(), StepStatus::DryRun),
        ]
    );
    nothing_changed(&b);
    assert_eq!(b.disk(BATCH_SYS)["resets"], 0);
    // A dry run is refused like the real thing.
    let r = b.run(json!({"instanceId": LEGACY, "dryRun": true})).await;
    assert_eq!(r.error.map(|e| e.code).as_deref(), Some("NotOptedIn"));
    nothing_changed(&b);
}

#[tokio::test]
async fn a_deadline_too_close_starts_nothing() {
    let b = bench().await;
    let r = b
        .run_with_deadline(web(json!({})), Instant::now() + Duration::from_millis(500))
        .await;
    assert_eq!(r.outcome, Outcome::Rejected);
    let e = r.error.expect("error");
    assert_eq!(e.code, "DeadlineExceeded");
    assert!(e.retryable);
    nothing_changed(&b);
    let r = b
        .run_with_deadline(web(json!({})), Instant::now() + Duration::from_secs(30))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(b.status(WEB), "Running");
}

#[tokio::test]
async fn an_abandoned_run_of_another_key_is_taken_over_with_its_power_state() {
    let b = bench().await;
    // Another key stopped web-01 long ago and died: the ledger says so, the instance is Stopped.
    let stale = RunRecord {
        key: "0123456789abcdef".into(),
        phase: Phase::Stopped,
        since: chrono::Utc::now().timestamp() - 7200,
        snapshot: WEB_SNAP_OLD.into(),
        was_running: true,
        end_running: true,
        stop_at: Some(chrono::Utc::now().timestamp() - 7200),
        failure: None,
        undo: None,
        instance: None,
    };
    let c = inproc_client(&b.sim);
    c.tag_resources(
        REGION,
        "disk",
        &[WEB_SYS.to_owned()],
        &[(ledger::RUN_TAG.into(), stale.encode())],
    )
    .await
    .expect("tag");
    c.stop_instance(REGION, WEB, &Default::default())
        .await
        .expect("stop");
    assert!(eventually(T, || b.status(WEB) == "Stopped").await);
    let r = b.run(web(json!({}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert!(r.warnings.iter().any(|w| w.contains("took over")));
    assert_eq!(
        b.status(WEB),
        "Running",
        "the power state from before the abandoned run"
    );
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
    assert_eq!(b.disk(WEB_SYS)["resets"], 1);
    assert_safe(&b.changes(), WEB_SYS);
}

#[tokio::test]
async fn a_disk_full_of_tags_is_refused_before_anything_changes() {
    let b = bench().await;
    let c = inproc_client(&b.sim);
    let tags: Vec<(String, String)> = (0..20).map(|i| (format!("user-{i}"), "v".into())).collect();
    c.tag_resources(REGION, "disk", &[WEB_SYS.to_owned()], &tags)
        .await
        .expect("20 tags");
    let before = b.changes().len();
    let r = b
        .run(json!({"diskId": WEB_SYS, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "full"}))
        .await;
    // The disk carries no opt-in tag now, but its instance does.
    assert_eq!(r.outcome, Outcome::Rejected);
    assert_eq!(
        r.error.map(|e| e.code).as_deref(),
        Some("LedgerUnavailable")
    );
    assert_eq!(b.changes().len(), before);
    assert_eq!(b.status(WEB), "Running");
}

// ---- preserveCurrent: the undo snapshot ---------------------------------------------------

/// The simulator's snapshots of `disk` that this tool took as undo snapshots.
fn undo_snapshots(b: &Bench, disk: &str) -> Vec<Value> {
    b.sim.state()["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .filter(|s| s["diskId"] == disk && s["tags"]["ecs-rollback:undo-of"].is_string())
        .cloned()
        .collect()
}

fn created_snapshots(b: &Bench) -> usize {
    b.changes()
        .iter()
        .filter(|e| e.action == "CreateSnapshot")
        .count()
}

fn scripted_bench_faults(action: &str, nth: u32, fault: FaultKind) -> Scenario {
    Scenario {
        timings: Timings::fast(),
        faults: scripted_fault(action, nth, fault),
        ..Default::default()
    }
}

#[tokio::test]
async fn preserve_current_snapshots_the_disk_before_the_reset() {
    let b = bench().await;
    let r = b
        .run(web(
            json!({"preserveCurrent": true, "reason": "release 42 broke it"}),
        ))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let undo = r
        .target
        .undo_snapshot_id
        .clone()
        .expect("the result names the undo snapshot");
    assert_eq!(
        step_names(&r),
        vec![
            ("preflight".into(), StepStatus::Done),
            ("claim".into(), StepStatus::Done),
            ("stop".into(), StepStatus::Done),
            ("preserve".into(), StepStatus::Done),
            ("reset".into(), StepStatus::Done),
            ("start".into(), StepStatus::Done),
            ("finish".into(), StepStatus::Done),
        ]
    );
    assert_eq!(
        r.to_cloud_event()["data"]["target"]["undoSnapshotId"],
        undo.as_str()
    );
    // The snapshot: of this disk, taken while the instance was stopped, before the reset,
    // holding what the disk held, usable, labelled with the key and the reason.
    let snaps = undo_snapshots(&b, WEB_SYS);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let s = &snaps[0];
    assert_eq!(s["id"], undo.as_str());
    assert_eq!(s["status"], "accomplished");
    assert_eq!(
        s["content"], "original",
        "the disk as it was before the reset"
    );
    assert_eq!(s["tags"]["ecs-rollback:key"], "key-web");
    assert_eq!(s["tags"]["ecs-rollback:reason"], "release 42 broke it");
    assert_eq!(s["tags"]["ecs-rollback:rolled-back-to"], WEB_SNAP_TAGGED);
    assert!(
        s["name"].as_str().is_some_and(|n| n.contains("key-web")),
        "{s}"
    );
    let order: Vec<(String, String)> = b
        .changes()
        .into_iter()
        .filter(|e| e.action != "TagResources" && e.action != "UntagResources")
        .map(|e| (e.action, e.instance_status))
        .collect();
    assert_eq!(
        order,
        vec![
            ("StopInstance".into(), "Running".into()),
            ("CreateSnapshot".into(), "Stopped".into()),
            ("ResetDisk".into(), "Stopped".into()),
            ("StartInstance".into(), "Stopped".into()),
        ]
    );
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
    assert_eq!(b.status(WEB), "Running");
    let rec = b.run_record(WEB_SYS).expect("record");
    assert_eq!(
        (rec.phase, rec.undo.as_deref()),
        (Phase::Done, Some(undo.as_str()))
    );
    // Redelivered: a duplicate that still names the undo snapshot, and takes no other.
    let again = b.run(web(json!({"preserveCurrent": true}))).await;
    assert_eq!(again.outcome, Outcome::Duplicate);
    assert_eq!(
        again.target.undo_snapshot_id.as_deref(),
        Some(undo.as_str())
    );
    assert_eq!(created_snapshots(&b), 1);
    assert_safe(&b.changes(), WEB_SYS);
}

#[tokio::test]
async fn the_setting_turns_it_on_and_the_request_can_turn_it_off() {
    let on = Settings {
        preserve_current: true,
        ..Settings::fast()
    };
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            ..Default::default()
        },
        on.clone(),
    )
    .await;
    let r = b.run(web(json!({}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert!(r.target.undo_snapshot_id.is_some());
    assert_eq!(created_snapshots(&b), 1);
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            ..Default::default()
        },
        on,
    )
    .await;
    let r = b.run(web(json!({"preserveCurrent": false}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.target.undo_snapshot_id, None);
    assert_eq!(created_snapshots(&b), 0);
}

#[tokio::test]
async fn an_undo_snapshot_that_cannot_be_taken_resets_nothing_and_restarts_the_instance() {
    let b = bench_with(
        scripted_bench_faults(
            "CreateSnapshot",
            1,
            FaultKind::Error {
                status: 403,
                code: "QuotaExceed.Snapshot".into(),
                message: "The snapshot quota of the disk is exceeded.".into(),
            },
        ),
        Settings::fast(),
    )
    .await;
    let r = b.run(web(json!({"preserveCurrent": true}))).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.clone().expect("error");
    assert_eq!(e.code, "UndoSnapshotFailed");
    assert!(!e.retryable);
    assert!(e.message.contains("QuotaExceed.Snapshot"), "{}", e.message);
    assert_eq!(b.status(WEB), "Running", "brought back");
    assert_eq!(b.disk(WEB_SYS)["content"], "original");
    assert_eq!(b.disk(WEB_SYS)["resets"], 0);
    assert_eq!(
        b.power_and_disk_calls(),
        vec![
            ("StopInstance".into(), "Running".into()),
            ("StartInstance".into(), "Stopped".into())
        ]
    );
    let rec = b.run_record(WEB_SYS).expect("record");
    assert_eq!(rec.phase, Phase::Failed);
    assert_eq!(rec.failure.as_deref(), Some("UndoSnapshotFailed"));
}

#[tokio::test]
async fn an_undo_snapshot_slower_than_its_timeout_resets_nothing() {
    let b = bench_with(
        Scenario {
            timings: Timings {
                snapshot_ms: 60_000,
                ..Timings::fast()
            },
            ..Default::default()
        },
        Settings {
            snapshot_timeout: Duration::from_millis(300),
            ..Settings::fast()
        },
    )
    .await;
    let r = b.run(web(json!({"preserveCurrent": true}))).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("UndoSnapshotTimeout")
    );
    assert_eq!(b.status(WEB), "Running");
    assert_eq!(b.disk(WEB_SYS)["resets"], 0);
    // The snapshot goes on by itself, and the result says which it is.
    let snaps = undo_snapshots(&b, WEB_SYS);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["status"], "progressing");
    assert_eq!(
        r.target.undo_snapshot_id.as_deref(),
        snaps[0]["id"].as_str()
    );
}

#[tokio::test]
async fn a_lost_create_snapshot_answer_makes_one_snapshot() {
    let b = bench_with(
        scripted_bench_faults("CreateSnapshot", 1, FaultKind::Drop),
        Settings::fast(),
    )
    .await;
    let r = b.run(web(json!({"preserveCurrent": true}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    // The client asked again with the same ClientToken (through `IdempotentProcessing` while
    // ECS still processed the first): the same snapshot came back.
    assert!(b.sim.call_counts()["CreateSnapshot"] >= 2);
    assert_eq!(created_snapshots(&b), 1);
    assert_eq!(undo_snapshots(&b, WEB_SYS).len(), 1);
    assert_safe(&b.changes(), WEB_SYS);
}

#[tokio::test]
async fn a_run_killed_around_the_undo_snapshot_resumes_without_a_second_one() {
    let event = web(json!({"preserveCurrent": true}));
    // Kill points from the stop to the reset: the changes around the undo snapshot (ledger
    // writes included). `a_run_killed_at_each_step_resumes_safely` covers the others.
    let (first, last) = {
        let b = bench().await;
        assert_eq!(b.run(event.clone()).await.outcome, Outcome::Succeeded);
        let ev = b.changes();
        let at = |action: &str| {
            ev.iter()
                .position(|e| e.action == action)
                .expect("in a full run")
                + 1
        };
        (at("StopInstance"), at("ResetDisk"))
    };
    assert!(
        last > first + 2,
        "ledger writes between the stop and the reset"
    );
    for kill_at in first..=last {
        let b = bench().await;
        kill_after(&b, &event, kill_at).await;
        let r = b.redeliver_until_done(&event).await;
        assert!(
            matches!(r.outcome, Outcome::Succeeded | Outcome::Duplicate),
            "killed after {kill_at}: {:?} {:?}",
            r.outcome,
            r.error
        );
        assert_eq!(
            created_snapshots(&b),
            1,
            "killed after {kill_at}: one undo snapshot: {:?}",
            b.changes()
        );
        let snaps = undo_snapshots(&b, WEB_SYS);
        assert_eq!(snaps.len(), 1, "killed after {kill_at}");
        assert_eq!(snaps[0]["content"], "original", "killed after {kill_at}");
        assert_eq!(
            r.target.undo_snapshot_id.as_deref(),
            snaps[0]["id"].as_str(),
            "killed after {kill_at}: the result names it"
        );
        // The reset came after the snapshot was taken.
        let ev = b.changes();
        let snap_at = ev.iter().position(|e| e.action == "CreateSnapshot");
        let reset_at = ev.iter().position(|e| e.action == "ResetDisk");
        assert!(snap_at < reset_at, "killed after {kill_at}: {ev:?}");
        assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
        assert!(eventually(T, || b.status(WEB) == "Running").await);
        assert_safe(&ev, WEB_SYS);
    }
}

#[tokio::test]
async fn a_disk_without_room_for_the_undo_snapshot_is_refused_before_anything_changes() {
    use ecs_rollback::sim::world::SnapshotSpec;
    let mut fleet = ecs_rollback::sim::default_fleet();
    for i in 0..256 {
        fleet.snapshots.push(SnapshotSpec {
            id: format!("s-bp1filler{i:010}"),
            disk_id: WEB_SYS.into(),
            name: format!("filler-{i}"),
            status: "accomplished".into(),
            age_hours: 1000.0,
            created_at: None,
            tags: Default::default(),
            automatic: false,
        });
    }
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            fleet: Some(fleet),
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    let r = b.run(web(json!({"preserveCurrent": true}))).await;
    assert_eq!(r.outcome, Outcome::Rejected);
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("QuotaExceed.Snapshot")
    );
    nothing_changed(&b);
    // Without the option the same disk rolls back.
    let r = b.run(web(json!({"idempotencyKey": "key-web-2"}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
}

#[tokio::test]
async fn an_undo_snapshot_is_never_chosen_as_the_newest() {
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            ..Default::default()
        },
        Settings {
            cooldown: Duration::ZERO,
            ..Settings::fast()
        },
    )
    .await;
    let r = b.run(web(json!({"preserveCurrent": true}))).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    // A later request for "the newest snapshot" skips the undo snapshot, newer as it is.
    let later = json!({"instanceId": WEB, "idempotencyKey": "key-web-newest", "dryRun": true});
    let r2 = b.run(later).await;
    assert_eq!(r2.outcome, Outcome::DryRun, "{:?}", r2.error);
    assert_ne!(r2.target.snapshot_id, r.target.undo_snapshot_id);
    assert_eq!(r2.target.snapshot_id.as_deref(), Some(WEB_SNAP_NEW));
}
