//! The checks made before anything changes, over what was read from ECS. Pure: the
//! orchestrator reads, this decides. A refusal uses the ECS error code for the condition when
//! ResetDisk has one (ResetDisk-api.md), so a preflight refusal and an API refusal read the same.

use chrono::{DateTime, Utc};

use crate::ecs::model::{Disk, Instance, Snapshot};
use crate::errors::Code;
use crate::ledger;
use crate::report::ErrorInfo;
use crate::request::{RollbackRequest, SnapshotChoice};

/// What a fresh run will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub snapshot_id: String,
    /// The snapshot's `Status` when chosen: `progressing` means instant access.
    pub snapshot_status: String,
    pub was_running: bool,
    pub end_running: bool,
}

/// Is the opt-in tag on the disk or on its instance?
pub fn opted_in(tag: &(String, String), disk: &Disk, instance: Option<&Instance>) -> bool {
    let on = |v: Option<&str>| v == Some(tag.1.as_str());
    on(disk.tags.get(&tag.0)) || instance.is_some_and(|i| on(i.tags.get(&tag.0)))
}

/// Refuses for any lock, naming the most serious: `security`, then `financial` (each with its
/// ECS code), then any other as a status.
pub fn check_locks(what: &str, locks: &[String]) -> Result<(), ErrorInfo> {
    if locks.iter().any(|l| l == "security") {
        return Err(ErrorInfo::new(
            "InstanceLockedForSecurity",
            format!("the {what} is locked for security reasons (OperationLocks: security)"),
            false,
        ));
    }
    if let Some(l) = locks
        .iter()
        .find(|l| *l == "financial" || *l == "dedicatedhostfinancial")
    {
        return Err(ErrorInfo::new(
            "InstanceExpiredOrInArrears",
            format!("the {what} is locked for an overdue payment (OperationLocks: {l})"),
            false,
        ));
    }
    match locks.first() {
        Some(other) => Err(ErrorInfo::new(
            "IncorrectInstanceStatus",
            format!("the {what} is locked (OperationLocks: {other})"),
            false,
        )),
        None => Ok(()),
    }
}

/// The code of "another snapshot of the disk is being created" (ResetDisk's own).
pub const UNFINISHED_SNAPSHOT: &str = "IncorrectDiskStatus.HasUnfinishedSnapshot";

/// Picks the snapshot. Only snapshots whose source is `disk_id` are candidates; with no ID, the
/// newest usable one (`accomplished`, or `progressing` with instant access) that matches the
/// filters and was created before `cutoff`.
pub fn select_snapshot<'a>(
    choice: &SnapshotChoice,
    snapshots: &'a [Snapshot],
    disk_id: &str,
    trigger_time: DateTime<Utc>,
) -> Result<&'a Snapshot, ErrorInfo> {
    let of_disk = snapshots.iter().filter(|s| s.source_disk_id == disk_id);
    match choice {
        SnapshotChoice::Id(id) => {
            let s = of_disk
                .clone()
                .find(|s| s.snapshot_id == id.as_str())
                .ok_or_else(|| {
                    ErrorInfo::new(
                        "InvalidSnapshotId.NotFound",
                        format!("{id} is not a snapshot of {disk_id}"),
                        false,
                    )
                })?;
            if !s.is_usable() {
                return Err(ErrorInfo::new(
                    "InvalidSnapshotId.NotReady",
                    format!(
                        "{id} is {} ({}) and not Available (no instant access), not ready to roll back to",
                        s.status, s.progress
                    ),
                    s.status == "progressing",
                ));
            }
            Ok(s)
        }
        SnapshotChoice::Newest { tag, name, before } => {
            let cutoff = before.unwrap_or(trigger_time);
            of_disk
                .filter(|s| s.is_usable())
                // An undo snapshot holds a state a rollback moved away from: only ever chosen
                // by its ID.
                .filter(|s| s.tags.get(crate::ledger::UNDO_TAG).is_none())
                .filter(|s| s.creation_time.is_some_and(|t| t < cutoff))
                .filter(|s| name.as_ref().is_none_or(|n| &s.snapshot_name == n))
                .filter(|s| {
                    tag.as_ref().is_none_or(|(k, v)| match (s.tags.get(k), v) {
                        (Some(have), Some(want)) => have == want,
                        (Some(_), None) => true,
                        (None, _) => false,
                    })
                })
                .max_by_key(|s| s.creation_time)
                .ok_or_else(|| {
                    let mut what = format!(
                        "no usable snapshot (accomplished, or Available while progressing) of {disk_id} created before {}",
                        cutoff.to_rfc3339()
                    );
                    if let Some(n) = name {
                        what.push_str(&format!(" named {n:?}"));
                    }
                    if let Some((k, v)) = tag {
                        what.push_str(&format!(" tagged {k}={}", v.as_deref().unwrap_or("*")));
                    }
                    ErrorInfo::new("InvalidSnapshotId.NotFound", what, false)
                })
        }
    }
}

/// Every precondition of a fresh run (a claim or a take-over), in order: attachment, opt-in,
/// locks, disk status, instance status, snapshot. `require_tag` of `None` skips the opt-in.
pub fn check(
    req: &RollbackRequest,
    disk: &Disk,
    instance: Option<&Instance>,
    snapshots: &[Snapshot],
    require_tag: Option<&(String, String)>,
    verifying: bool,
    now: DateTime<Utc>,
) -> Result<Plan, ErrorInfo> {
    if let Some(want) = &req.instance {
        if disk.instance_id != want.as_str() {
            let attached = if disk.instance_id.is_empty() {
                "no instance".to_owned()
            } else {
                disk.instance_id.clone()
            };
            return Err(ErrorInfo::new(
                Code::InvalidRequest,
                format!(
                    "instanceId: {} is attached to {attached}, not {want}",
                    disk.disk_id
                ),
                false,
            ));
        }
    }
    if let Some(tag) = require_tag {
        if !opted_in(tag, disk, instance) {
            return Err(ErrorInfo::new(
                Code::NotOptedIn,
                format!(
                    "neither {} nor its instance carries the tag {}={}",
                    disk.disk_id, tag.0, tag.1
                ),
                false,
            ));
        }
    }
    if let Some(i) = instance {
        check_locks("instance", &i.lock_reasons())?;
    }
    check_locks("disk", &disk.lock_reasons())?;
    let tags = disk.tags.tag.iter().map(|t| t.tag_key.as_str());
    if let Err(own) = ledger::tag_room(tags, verifying) {
        let need = ledger::ledger_tags(verifying);
        let mark = if verifying {
            ", the service check's mark"
        } else {
            ""
        };
        return Err(ErrorInfo::new(
            Code::LedgerUnavailable,
            format!(
                "{} carries {own} tags of its own; its ledger needs up to {need} more of the {} a disk may carry (the run record, the history, the durations{mark}, this run's claim and one for a concurrent delivery), so the rollback could not record its end: nothing was touched. Remove {} of its tags",
                disk.disk_id,
                ledger::MAX_TAGS,
                own + need - ledger::MAX_TAGS
            ),
            false,
        ));
    }
    if disk.status != "In_use" && disk.status != "Available" {
        return Err(ErrorInfo::new(
            "IncorrectDiskStatus",
            format!(
                "{} is {}, not In_use or Available",
                disk.disk_id, disk.status
            ),
            true,
        ));
    }
    let was_running = match instance.map(|i| i.status.as_str()) {
        None => false,
        Some("Running") => true,
        Some("Stopped") => false,
        Some(other) => {
            return Err(ErrorInfo::new(
                "IncorrectInstanceStatus",
                format!("the instance is {other}; a rollback starts from Running or Stopped"),
                true,
            ))
        }
    };
    let trigger_time = req.trigger.time.unwrap_or(now);
    let snapshot = select_snapshot(&req.snapshot, snapshots, &disk.disk_id, trigger_time)?;
    // Another snapshot of the disk being created: ResetDisk refuses while it runs
    // (`HasUnfinishedSnapshot`), CreateSnapshot too (`CreatingSnapshot`), and stopping the
    // instance would fail it (ecs-evidence.md §3, C2, C9). The target itself, usable with
    // instant access, is no obstacle (C8). Retryable: the run waits for it, nothing touched.
    if let Some(busy) = snapshots.iter().find(|s| {
        s.source_disk_id == disk.disk_id
            && s.status == "progressing"
            && s.snapshot_id != snapshot.snapshot_id
    }) {
        return Err(ErrorInfo::new(
            UNFINISHED_SNAPSHOT,
            format!(
                "snapshot {} of the disk is still being taken",
                busy.snapshot_id
            ),
            true,
        ));
    }
    let end_running = instance.is_some() && req.start_after_reset.unwrap_or(was_running);
    Ok(Plan {
        snapshot_id: snapshot.snapshot_id.clone(),
        snapshot_status: snapshot.status.clone(),
        was_running,
        end_running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse, Trigger};
    use serde_json::json;

    fn disk(tags: &[(&str, &str)]) -> Disk {
        let tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
            .collect();
        serde_json::from_value(json!({"DiskId": "d-bp1webapp0000sys01", "Status": "In_use",
            "InstanceId": "i-bp1webapp00000001", "Type": "system", "Tags": {"Tag": tags}}))
        .expect("disk")
    }

    fn instance(status: &str, locks: &[&str], tags: &[(&str, &str)]) -> Instance {
        let locks: Vec<_> = locks.iter().map(|l| json!({"LockReason": l})).collect();
        let tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
            .collect();
        serde_json::from_value(
            json!({"InstanceId": "i-bp1webapp00000001", "Status": status,
            "OperationLocks": {"LockReason": locks}, "Tags": {"Tag": tags}}),
        )
        .expect("instance")
    }

    fn snap(id: &str, disk: &str, status: &str, created: &str, tags: &[(&str, &str)]) -> Snapshot {
        let tags: Vec<_> = tags
            .iter()
            .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
            .collect();
        serde_json::from_value(
            json!({"SnapshotId": id, "SourceDiskId": disk, "Status": status,
            "Available": status == "accomplished", "CreationTime": created, "SnapshotName": id,
            "Tags": {"Tag": tags}}),
        )
        .expect("snapshot")
    }

    fn snaps() -> Vec<Snapshot> {
        vec![
            snap(
                "s-bp1webapp0sys00001",
                "d-bp1webapp0000sys01",
                "accomplished",
                "2026-11-01T00:00:00Z",
                &[],
            ),
            snap(
                "s-bp1webapp0sys00002",
                "d-bp1webapp0000sys01",
                "accomplished",
                "2026-11-10T00:00:00Z",
                &[("purpose", "pre-release")],
            ),
            snap(
                "s-bp1webapp0sys00003",
                "d-bp1webapp0000sys01",
                "accomplished",
                "2026-11-20T00:00Z",
                &[],
            ),
            snap(
                "s-bp1otherdisk000001",
                "d-bp1other00000sys09",
                "accomplished",
                "2026-11-25T00:00:00Z",
                &[],
            ),
        ]
    }

    fn req(v: serde_json::Value) -> RollbackRequest {
        parse(&v, Some("cn-hangzhou"), Trigger::direct()).expect("valid")
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T00:00:00Z")
            .expect("t")
            .with_timezone(&Utc)
    }

    const TAG: (&str, &str) = ("ecs-rollback", "enabled");

    fn tag() -> (String, String) {
        (TAG.0.into(), TAG.1.into())
    }

    #[test]
    fn newest_before_the_trigger_and_only_of_this_disk() {
        let r = req(json!({"diskId": "d-bp1webapp0000sys01"}));
        let plan = check(
            &r,
            &disk(&[TAG]),
            Some(&instance("Running", &[], &[])),
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect("ok");
        assert_eq!(plan.snapshot_id, "s-bp1webapp0sys00003");
        assert!(plan.was_running && plan.end_running);
        let mut r = req(json!({"diskId": "d-bp1webapp0000sys01"}));
        r.trigger.time = Some(
            DateTime::parse_from_rfc3339("2026-11-15T00:00:00Z")
                .expect("t")
                .with_timezone(&Utc),
        );
        let plan = check(
            &r,
            &disk(&[TAG]),
            None,
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect("ok");
        assert_eq!(
            plan.snapshot_id, "s-bp1webapp0sys00002",
            "taken before the incident began"
        );
        let r =
            req(json!({"diskId": "d-bp1webapp0000sys01", "snapshot": {"tag": {"key": "purpose"}}}));
        let plan = check(
            &r,
            &disk(&[TAG]),
            None,
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect("ok");
        assert_eq!(plan.snapshot_id, "s-bp1webapp0sys00002");
        let r =
            req(json!({"diskId": "d-bp1webapp0000sys01", "snapshotId": "s-bp1otherdisk000001"}));
        let e = check(
            &r,
            &disk(&[TAG]),
            None,
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect_err("other disk");
        assert_eq!(e.code, "InvalidSnapshotId.NotFound");
        let r = req(json!({"diskId": "d-bp1webapp0000sys01", "snapshot": {"name": "nope"}}));
        let e = check(
            &r,
            &disk(&[TAG]),
            None,
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect_err("no match");
        assert_eq!(e.code, "InvalidSnapshotId.NotFound");
    }

    #[test]
    fn refusals_in_order_with_ecs_codes() {
        let r = req(json!({"diskId": "d-bp1webapp0000sys01"}));
        let run = instance("Running", &[], &[]);
        let code = |d: &Disk, i: &Instance, s: &[Snapshot], t: Option<&(String, String)>| {
            check(&r, d, Some(i), s, t, false, now())
                .expect_err("refused")
                .code
        };
        assert_eq!(
            code(&disk(&[]), &run, &snaps(), Some(&tag())),
            Code::NotOptedIn
        );
        assert!(
            check(
                &r,
                &disk(&[]),
                Some(&instance("Running", &[], &[TAG])),
                &snaps(),
                Some(&tag()),
                false,
                now()
            )
            .is_ok(),
            "the instance's tag counts"
        );
        assert!(
            check(&r, &disk(&[]), Some(&run), &snaps(), None, false, now()).is_ok(),
            "check off"
        );
        assert_eq!(
            code(
                &disk(&[TAG]),
                &instance("Running", &["security"], &[]),
                &snaps(),
                Some(&tag())
            ),
            "InstanceLockedForSecurity"
        );
        assert_eq!(
            code(
                &disk(&[TAG]),
                &instance("Running", &["financial"], &[]),
                &snaps(),
                Some(&tag())
            ),
            "InstanceExpiredOrInArrears"
        );
        assert_eq!(
            code(
                &disk(&[TAG]),
                &instance("Running", &["Recycling"], &[]),
                &snaps(),
                Some(&tag())
            ),
            "IncorrectInstanceStatus"
        );
        assert_eq!(
            code(
                &disk(&[TAG]),
                &instance("Stopping", &[], &[]),
                &snaps(),
                Some(&tag())
            ),
            "IncorrectInstanceStatus"
        );
        let mut busy = disk(&[TAG]);
        busy.status = "Attaching".into();
        assert_eq!(
            code(&busy, &run, &snaps(), Some(&tag())),
            "IncorrectDiskStatus"
        );
        let mut s = snaps();
        s.push(snap(
            "s-bp1webapp0sys00009",
            "d-bp1webapp0000sys01",
            "progressing",
            "2026-11-28T00:00:00Z",
            &[],
        ));
        assert_eq!(
            code(&disk(&[TAG]), &run, &s, Some(&tag())),
            "IncorrectDiskStatus.HasUnfinishedSnapshot"
        );
        let wrong =
            req(json!({"diskId": "d-bp1webapp0000sys01", "instanceId": "i-bp1batch000000002"}));
        let e = check(
            &wrong,
            &disk(&[TAG]),
            Some(&run),
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect_err("not attached");
        assert_eq!(e.code, Code::InvalidRequest);
    }

    #[test]
    fn power_state_to_end_in() {
        let stopped = instance("Stopped", &[], &[]);
        let r = req(json!({"diskId": "d-bp1webapp0000sys01"}));
        let p = check(
            &r,
            &disk(&[TAG]),
            Some(&stopped),
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect("ok");
        assert!(!p.was_running && !p.end_running);
        let r = req(json!({"diskId": "d-bp1webapp0000sys01", "startAfterReset": true}));
        let p = check(
            &r,
            &disk(&[TAG]),
            Some(&stopped),
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect("ok");
        assert!(p.end_running);
        let r = req(json!({"diskId": "d-bp1webapp0000sys01", "startAfterReset": false}));
        let p = check(
            &r,
            &disk(&[TAG]),
            Some(&instance("Running", &[], &[])),
            &snaps(),
            Some(&tag()),
            false,
            now(),
        )
        .expect("ok");
        assert!(p.was_running && !p.end_running);
    }
}
