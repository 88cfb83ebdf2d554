//! Whole-instance requests (docs/rollback-protocol.md, "The instance as the unit"), end to end
//! over loopback HTTP: every disk of an instance back to one point in time with one stop and
//! one start; a request whose disks have no common point in time refused before anything
//! changes; one disk's reset refused for good leaves the instance stopped (or starts it when the
//! request allows a partial rollback); a redelivery rolls nothing back twice.

use crate::common::*;
use ecs_rollback::instance_hold;
use ecs_rollback::report::{Outcome, Report};
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::world::SnapshotSpec;
use ecs_rollback::sim::{
    default_fleet, Event, FaultKind, Faults, Scenario, ScriptedFault, Timings,
};
use serde_json::{json, Value};

fn whole(key: &str) -> Value {
    json!({"instanceId": WEB, "disks": "all", "snapshot": {"before": "2026-11-29T00:00:00Z"},
           "idempotencyKey": key})
}

async fn bench_faults(faults: Faults) -> Bench {
    bench_with(
        Scenario {
            timings: Timings::fast(),
            faults,
            ..Default::default()
        },
        Settings::fast(),
    )
    .await
}

fn applied(events: &[Event], action: &str) -> Vec<Event> {
    events
        .iter()
        .filter(|e| e.action == action)
        .cloned()
        .collect()
}

/// The instance never runs on disks from two points in time: no StartInstance applied between
/// the first and the last ResetDisk of the disks, and every reset while Stopped.
pub fn one_point_in_time(events: &[Event], disks: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    let resets: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == "ResetDisk" && disks.contains(&e.resource.as_str()))
        .collect();
    for r in &resets {
        if r.instance_status != "Stopped" {
            v.push(format!(
                "reset of {} while {}",
                r.resource, r.instance_status
            ));
        }
    }
    if let (Some(first), Some(last)) = (resets.first(), resets.last()) {
        for s in events
            .iter()
            .filter(|e| e.action == "StartInstance" && e.seq > first.seq && e.seq < last.seq)
        {
            v.push(format!(
                "StartInstance (seq {}) between the resets (seq {} .. {})",
                s.seq, first.seq, last.seq
            ));
        }
    }
    v
}

fn disk_result<'a>(r: &'a Report, disk: &str) -> &'a ecs_rollback::report::DiskResult {
    r.target
        .disks
        .as_ref()
        .and_then(|d| d.iter().find(|x| x.disk_id == disk))
        .unwrap_or_else(|| panic!("no result for {disk}: {r:?}"))
}

async fn holds(b: &Bench) -> Vec<String> {
    b.handler
        .ecs
        .list_tag_resources(REGION, "instance", &[WEB.to_owned()])
        .await
        .expect("instance tags")
        .into_iter()
        .filter(|t| instance_hold::is_hold_tag(&t.tag_key))
        .map(|t| t.tag_key)
        .collect()
}

#[tokio::test]
async fn every_disk_to_one_point_in_time_with_one_stop_and_one_start() {
    let b = bench().await;
    let r = b.run(whole("whole-1")).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    let events = b.changes();
    assert_eq!(applied(&events, "StopInstance").len(), 1, "{events:?}");
    assert_eq!(applied(&events, "StartInstance").len(), 1, "{events:?}");
    assert_eq!(b.resets(WEB_SYS), 1);
    assert_eq!(b.resets(WEB_DATA), 1);
    assert!(one_point_in_time(&events, &[WEB_SYS, WEB_DATA]).is_empty());
    assert_eq!(b.settled_status(WEB).await, "Running");
    // The result names each disk's snapshot, and what it holds.
    assert_eq!(
        disk_result(&r, WEB_SYS).snapshot_id.as_deref(),
        Some(WEB_SNAP_NEW)
    );
    assert_eq!(
        disk_result(&r, WEB_DATA).snapshot_id.as_deref(),
        Some(WEB_DATA_SNAP)
    );
    assert_eq!(
        disk_result(&r, WEB_DATA).holds,
        format!("rolled back to {WEB_DATA_SNAP}")
    );
    assert_eq!(b.disk(WEB_DATA)["content"], json!(WEB_DATA_SNAP));
    assert!(holds(&b).await.is_empty(), "the hold is released");
    // Redelivered: nothing rolled back twice.
    let again = b.run(whole("whole-1")).await;
    assert_eq!(again.outcome, Outcome::Duplicate, "{again:?}");
    assert_eq!(b.resets(WEB_SYS) + b.resets(WEB_DATA), 2);
}

#[tokio::test]
async fn snapshots_apart_or_missing_on_one_disk_refuse_the_whole_request_untouched() {
    let mut fleet = default_fleet();
    fleet.snapshots.push(SnapshotSpec {
        id: "s-bp1webapp0dat00002".into(),
        disk_id: WEB_DATA.into(),
        name: "web-01-data-late".into(),
        status: "accomplished".into(),
        age_hours: 0.0,
        created_at: Some("2026-11-28T23:00:00Z".into()),
        tags: Default::default(),
        automatic: false,
    });
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            fleet: Some(fleet),
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    // The newest of each disk lie three hours apart.
    let r = b.run(whole("apart")).await;
    assert_eq!(r.outcome, Outcome::Rejected, "{r:?}");
    let e = r.error.as_ref().expect("error");
    assert_eq!(e.code, "SnapshotsApart", "{e:?}");
    assert!(e.message.contains("s-bp1webapp0dat00002"), "{}", e.message);
    // Allowed apart: both go.
    let mut wide = whole("apart-allowed");
    wide["maxSkewSeconds"] = json!(4 * 3600);
    // No snapshot of the data disk before the 27th: refused, naming the disk.
    let mut none = whole("none");
    none["snapshot"] = json!({"before": "2026-11-27T00:00:00Z"});
    let r = b.run(none).await;
    assert_eq!(r.outcome, Outcome::Rejected, "{r:?}");
    let e = r.error.as_ref().expect("error");
    assert!(e.message.contains(WEB_DATA), "{}", e.message);
    assert!(b.changes().is_empty(), "{:?}", b.changes());
    assert_eq!(b.status(WEB), "Running");
    let r = b.run(wide).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(b.disk(WEB_DATA)["content"], json!("s-bp1webapp0dat00002"));
}

/// ResetDisk of one disk refused for good (after the dry runs): the other disk was reset, so
/// the instance is left stopped rather than run on two points in time, and the result says
/// which disk holds what. With `allowPartial` the instance starts. With undo snapshots
/// (`preserveCurrent`) the reset disk goes back to its undo snapshot and the instance starts
/// as it was before the request.
#[tokio::test]
async fn one_disk_refused_for_good_leaves_the_instance_stopped_unless_partial_is_allowed() {
    for (allow, undo) in [(false, false), (true, false), (false, true)] {
        let refuse = ScriptedFault {
            caller: None,
            action: "ResetDisk".into(),
            // Each disk's dry run calls ResetDisk with DryRun first (2 calls); the real
            // resets follow.
            nth: 3,
            fault: FaultKind::Error {
                status: 404,
                code: "InvalidSnapshotId.NotFound".into(),
                message: "refused for the test".into(),
            },
        };
        let b = bench_faults(Faults {
            scripted: vec![refuse],
            ..Default::default()
        })
        .await;
        let mut ev = whole(&format!("partial-{allow}-{undo}"));
        if allow {
            ev["allowPartial"] = json!(true);
        }
        if undo {
            ev["preserveCurrent"] = json!(true);
        }
        let r = b.run(ev).await;
        let events = b.changes();
        let resets = applied(&events, "ResetDisk");
        let reset_disk = resets[0].resource.clone();
        let other = if reset_disk == WEB_SYS {
            WEB_DATA
        } else {
            WEB_SYS
        };
        assert_eq!(b.resets(other), 0, "{events:?}");
        assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
        assert!(one_point_in_time(&events, &[WEB_SYS, WEB_DATA]).is_empty());
        if undo {
            // Reset to the snapshot, then back to the undo snapshot, both while Stopped.
            assert_eq!(resets.len(), 2, "{events:?}");
            assert!(resets.iter().all(|e| e.resource == reset_disk));
            // The disk holds what its undo snapshot holds.
            let undo_id = disk_result(&r, &reset_disk)
                .undo_snapshot_id
                .clone()
                .expect("undo snapshot");
            assert_eq!(b.disk(&reset_disk)["content"], json!(undo_id));
            let e = r.error.as_ref().expect("error");
            assert_eq!(e.code, "PartialRollback", "{e:?}");
            assert!(e.message.contains("undo snapshot"), "{}", e.message);
            assert!(disk_result(&r, &reset_disk).holds.contains("undo snapshot"));
            assert_eq!(b.settled_status(WEB).await, "Running");
            assert!(holds(&b).await.is_empty());
            let start = applied(&events, "StartInstance");
            assert_eq!(start.len(), 1);
            assert!(start[0].seq > resets[1].seq);
            continue;
        }
        assert_eq!(resets.len(), 1, "one disk reset: {events:?}");
        assert!(disk_result(&r, &reset_disk)
            .holds
            .starts_with("rolled back to"));
        assert!(
            disk_result(&r, other).holds.starts_with("not rolled back"),
            "{:?}",
            disk_result(&r, other)
        );
        if allow {
            assert_eq!(b.settled_status(WEB).await, "Running");
            assert!(
                r.warnings.iter().any(|w| w.contains("allowPartial")),
                "{r:?}"
            );
            assert!(holds(&b).await.is_empty());
        } else {
            let e = r.error.as_ref().expect("error");
            assert_eq!(e.code, "PartialRollback", "{e:?}");
            assert!(!e.retryable);
            assert!(
                e.message.contains(&reset_disk) && e.message.contains(other),
                "{}",
                e.message
            );
            assert!(e.message.contains("allowPartial"), "{}", e.message);
            assert_eq!(b.settled_status(WEB).await, "Stopped");
            assert!(applied(&events, "StartInstance").is_empty());
            // The hold stays, with the power state to restore, for whoever finishes it.
            assert_eq!(holds(&b).await.len(), 1);
            // Sent again: the reset disk is not reset twice; the refused one is tried again
            // (its cause passed), and the instance starts on one point in time.
            let r = b.run(whole("partial-false-false")).await;
            assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
            assert_eq!(b.resets(&reset_disk), 1);
            assert_eq!(b.resets(other), 1);
            assert_eq!(b.settled_status(WEB).await, "Running");
            assert!(one_point_in_time(&b.changes(), &[WEB_SYS, WEB_DATA]).is_empty());
        }
    }
}

const DB: &str = "i-bp1dbserv00000005";
const DB_DISKS: [&str; 3] = [
    "d-bp1dbserv0000sys05",
    "d-bp1dbserv0000dat05",
    "d-bp1dbserv0000dat15",
];

/// db-05's snapshots of group `n` (1: 2026-11-27, 2: 2026-11-28), disk by disk.
fn db_group(n: u8) -> [String; 3] {
    [
        format!("s-bp1dbserv0sys0000{n}"),
        format!("s-bp1dbserv0dat0000{n}"),
        format!("s-bp1dbserv0dat1000{n}"),
    ]
}

fn db_disks_hold(b: &Bench, snaps: &[String; 3]) {
    for (d, s) in DB_DISKS.iter().zip(snaps) {
        assert_eq!(b.disk(d)["content"], json!(s), "{d}");
        assert_eq!(b.resets(d), 1, "{d}");
    }
}

#[tokio::test]
async fn three_disks_to_a_snapshot_consistent_group_or_to_a_before_rule() {
    let b = bench().await;
    let r = b
        .run(
            json!({"instanceId": DB, "disks": "all", "snapshotGroupId": "ssg-bp1dbserv0000000001",
                    "idempotencyKey": "db-ssg"}),
        )
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    db_disks_hold(&b, &db_group(1));
    assert_eq!(r.target.disks.as_ref().map(Vec::len), Some(3));
    let events = b.changes();
    assert_eq!(applied(&events, "StopInstance").len(), 1);
    assert_eq!(applied(&events, "StartInstance").len(), 1);
    assert!(one_point_in_time(&events, &DB_DISKS).is_empty());
    assert_eq!(b.settled_status(DB).await, "Running");

    // A `before` rule on a fresh world picks, for every disk, the snapshot of the 28th's group.
    let b = bench().await;
    let r = b
        .run(
            json!({"instanceId": DB, "disks": "all", "snapshot": {"before": "2026-11-29T00:00:00Z"},
                    "idempotencyKey": "db-before"}),
        )
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    db_disks_hold(&b, &db_group(2));
    // A list: those disks only.
    let b = bench().await;
    let r = b
        .run(
            json!({"instanceId": DB, "disks": [DB_DISKS[1], DB_DISKS[2]],
                    "snapshotGroupId": "ssg-bp1dbserv0000000002", "idempotencyKey": "db-list"}),
        )
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(b.resets(DB_DISKS[0]), 0);
    assert_eq!(b.disk(DB_DISKS[1])["content"], json!(db_group(2)[1]));
    // A group that does not hold every disk named: refused, untouched.
    let b = bench().await;
    let r = b
        .run(
            json!({"instanceId": WEB, "disks": "all", "snapshotGroupId": "ssg-bp1dbserv0000000002",
                    "idempotencyKey": "web-wrong-group"}),
        )
        .await;
    assert_eq!(r.outcome, Outcome::Rejected, "{r:?}");
    assert!(b.changes().is_empty());
}

/// `preserveCurrent` on ESSD disks: one snapshot-consistent group of the disks as they are,
/// taken while Stopped and before any reset; each disk's undo snapshot is its member.
#[tokio::test]
async fn preserve_current_takes_one_snapshot_consistent_group_before_any_reset() {
    let b = bench().await;
    let r = b
        .run(
            json!({"instanceId": DB, "disks": "all", "snapshotGroupId": "ssg-bp1dbserv0000000001",
                    "preserveCurrent": true, "idempotencyKey": "db-undo"}),
        )
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    let events = b.changes();
    // The simulator logs one event per disk of the call, each naming the group.
    let groups = applied(&events, "CreateSnapshotGroup");
    let ids: std::collections::BTreeSet<&str> = groups
        .iter()
        .filter_map(|e| e.detail.split_whitespace().next())
        .collect();
    assert_eq!(ids.len(), 1, "{events:?}");
    assert_eq!(groups.len(), 3, "{events:?}");
    assert!(applied(&events, "CreateSnapshot").is_empty());
    assert!(groups.iter().all(|g| g.instance_status == "Stopped"));
    let first_reset = applied(&events, "ResetDisk")[0].seq;
    assert!(groups[0].seq < first_reset);
    let state = b.sim.state();
    for d in DB_DISKS {
        let undo = disk_result(&r, d)
            .undo_snapshot_id
            .clone()
            .unwrap_or_else(|| panic!("{d}: {r:?}"));
        let snap = state["snapshots"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == json!(undo)).cloned())
            .unwrap_or_default();
        assert_eq!(snap["diskId"], json!(d), "{snap}");
        assert!(snap["tags"]["ecs-rollback:undo-of"].is_string(), "{snap}");
    }
    db_disks_hold(&b, &db_group(1));
}

/// A drill with instance targets taken whole (the drill's `disks`): each instance's disks to one
/// point in time, one result per instance, the summary counting instances and disks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_takes_instance_targets_whole_and_counts_instances_and_disks() {
    let b = bench().await;
    let event = json!({"drill": {"name": "whole-instances", "regionId": REGION, "disks": "all",
                                 "snapshot": {"before": "2026-11-29T00:00:00Z"},
                                 "targets": [{"instanceId": WEB}, {"instanceId": DB},
                                             {"diskId": BATCH_SYS, "snapshotId": BATCH_SNAP}]},
                       "scheduledTime": "2026-11-29T03:00:00Z"});
    let reply = b.handler.handle(&event, None).await;
    assert_eq!(reply.reports.len(), 3);
    assert!(
        reply
            .reports
            .iter()
            .all(|r| r.outcome == Outcome::Succeeded),
        "{:?}",
        reply.reports
    );
    let d = &reply.summaries[0]["data"];
    assert_eq!(d["targets"], 3, "{d}");
    assert_eq!(d["instances"], 3, "{d}");
    assert_eq!(d["disks"], 6, "{d}");
    assert_eq!(d["perTarget"][1]["disks"].as_array().map(Vec::len), Some(3));
    db_disks_hold(&b, &db_group(2));
    assert_eq!(b.resets(WEB_DATA), 1);
    assert!(one_point_in_time(&b.changes(), &DB_DISKS).is_empty());
}
