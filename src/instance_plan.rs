//! A whole-instance rollback (docs/rollback-protocol.md, "The instance as the unit"), pure:
//! which disks, each disk's snapshot at one point in time (a snapshot-consistent group, or a
//! rule per disk within a skew), and what the disks' runs do once each has reset or failed
//! (`verdict`): start, bring the reset disks back to their undo snapshots first, or leave the
//! instance stopped rather than run it on disks from two points in time. The I/O is
//! `rollback/group.rs`.

use chrono::{DateTime, Utc};

use crate::ecs::model::{Disk, Snapshot};
use crate::errors::Code;
use crate::preflight;
use crate::report::ErrorInfo;
use crate::request::{DiskSet, SnapshotChoice};

/// The disks a request names, among those attached to the instance, system disk first. A disk
/// named but not attached to the instance refuses the whole request.
pub fn disks<'a>(
    set: &DiskSet,
    instance: &str,
    attached: &'a [Disk],
) -> Result<Vec<&'a Disk>, ErrorInfo> {
    let on_instance = |d: &&Disk| d.instance_id == instance;
    let mut chosen: Vec<&Disk> = match set {
        DiskSet::All => attached.iter().filter(on_instance).collect(),
        DiskSet::List(ids) => {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let d = attached
                    .iter()
                    .filter(on_instance)
                    .find(|d| d.disk_id == id.as_str())
                    .ok_or_else(|| {
                        ErrorInfo::new(
                            Code::DiskNotAttached,
                            format!("disk {id} is not attached to instance {instance}: nothing was touched"),
                            false,
                        )
                    })?;
                out.push(d);
            }
            out
        }
    };
    if chosen.is_empty() {
        return Err(ErrorInfo::new(
            Code::DiskNotAttached,
            format!("instance {instance} has no disk attached: nothing to roll back"),
            false,
        ));
    }
    chosen.sort_by_key(|d| (d.disk_type != "system", d.disk_id.clone()));
    Ok(chosen)
}

/// The disk categories a snapshot-consistent group takes: the ESSD series
/// (ecs-snapshot-groups-and-cloud-assistant.md §2).
pub const GROUP_CATEGORIES: [&str; 3] = ["cloud_essd", "cloud_auto", "cloud_essd_entry"];
/// At most 16 disks and 32 TiB in a group (the same source).
pub const GROUP_MAX_DISKS: usize = 16;
pub const GROUP_MAX_GIB: i64 = 32 * 1024;

/// Whether a disk of this category can be in a snapshot-consistent group.
pub fn groupable(category: &str) -> bool {
    GROUP_CATEGORIES.contains(&category)
}

/// One disk and the snapshot it goes back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    pub disk: String,
    pub snapshot: String,
    pub created: Option<DateTime<Utc>>,
}

/// A group's member, as `DescribeSnapshotGroups` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub snapshot: String,
    pub source_disk: String,
    pub available: bool,
}

/// Every disk to its snapshot in the group (`status` the group's). A disk without a usable
/// member refuses the whole request, named.
pub fn from_group(
    group: &str,
    status: &str,
    members: &[Member],
    disks: &[&Disk],
) -> Result<Vec<Pick>, ErrorInfo> {
    if status.eq_ignore_ascii_case("failed") {
        return Err(ErrorInfo::new(
            "InvalidSnapshotGroup.Failed",
            format!(
                "snapshot-consistent group {group} failed: it holds no point in time to go back to"
            ),
            false,
        ));
    }
    let mut picks = Vec::with_capacity(disks.len());
    for d in disks {
        let m = members
            .iter()
            .find(|m| m.source_disk == d.disk_id)
            .ok_or_else(|| {
                ErrorInfo::new(
                    "InvalidSnapshotId.NotFound",
                    format!("snapshot-consistent group {group} has no snapshot of disk {} (deleted, or the disk was not in the group): nothing was touched", d.disk_id),
                    false,
                )
            })?;
        if !m.available && !status.eq_ignore_ascii_case("accomplished") {
            return Err(ErrorInfo::new(
                "InvalidSnapshotId.NotReady",
                format!("snapshot {} of disk {} in group {group} is not ready (group {status}, not Available)", m.snapshot, d.disk_id),
                status.eq_ignore_ascii_case("progressing"),
            ));
        }
        picks.push(Pick {
            disk: d.disk_id.clone(),
            snapshot: m.snapshot.clone(),
            created: None,
        });
    }
    Ok(picks)
}

/// The rule applied to every disk (`preflight::select_snapshot`), then the picks held to one
/// point in time: their creation times at most `max_skew_secs` apart.
pub fn by_rule(
    choice: &SnapshotChoice,
    snapshots: &[Snapshot],
    disks: &[&Disk],
    trigger_time: DateTime<Utc>,
    max_skew_secs: u64,
) -> Result<Vec<Pick>, ErrorInfo> {
    let mut picks = Vec::with_capacity(disks.len());
    for d in disks {
        let s = preflight::select_snapshot(choice, snapshots, &d.disk_id, trigger_time).map_err(
            |mut e| {
                e.message = format!(
                    "disk {}: {}; every disk of the request needs one, so nothing was touched",
                    d.disk_id, e.message
                );
                e
            },
        )?;
        picks.push(Pick {
            disk: d.disk_id.clone(),
            snapshot: s.snapshot_id.clone(),
            created: s.creation_time,
        });
    }
    let times: Vec<DateTime<Utc>> = picks.iter().filter_map(|p| p.created).collect();
    if let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) {
        let spread = (*last - *first).num_seconds().unsigned_abs();
        if spread > max_skew_secs {
            let list = picks
                .iter()
                .map(|p| {
                    format!(
                        "{} -> {} ({})",
                        p.disk,
                        p.snapshot,
                        p.created.map(|t| t.to_rfc3339()).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ErrorInfo::new(
                Code::SnapshotsApart,
                format!("the snapshots the rule picks lie {spread} s apart, more than the {max_skew_secs} s allowed (maxSkewSeconds): {list}; nothing was touched. Name a snapshot-consistent group (snapshotGroupId) or a rule that picks one point in time"),
                false,
            ));
        }
    }
    Ok(picks)
}

/// Where one disk's run stands when it meets the others before the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Its reset ended (or its key had finished already). `undoing`: an earlier delivery's
    /// verdict sent it back to its undo snapshot (its mark says so): that verdict stands.
    Ready { has_undo: bool, undoing: bool },
    /// It cannot go on, for good; `reset`: its disk may have been reset.
    Failed { error: ErrorInfo, reset: bool },
    /// It ended this delivery for a cause that can pass (the ledger keeps its phase).
    Retry { error: ErrorInfo },
}

/// What every disk's run does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every disk reset: start (if the instance is to run).
    Start,
    /// No disk was reset: bring the instance back, as one disk's failure does.
    Restore,
    /// Some disks reset and one cannot be: the request allows it (`allowPartial`): start.
    StartPartial,
    /// Some disks reset and one cannot be: the reset ones go back to their undo snapshots,
    /// then the instance starts, on disks as they were before the request.
    Undo,
    /// Some disks reset, one cannot be, no undo: the instance stays stopped (`PartialRollback`).
    LeaveStopped,
    /// A cause that can pass: nobody starts; the next delivery goes on from the ledgers.
    Retry,
}

/// The verdict over every disk's arrival. Never a start on disks from two points in time
/// unless the request allows it.
pub fn verdict(arrivals: &[Arrival], allow_partial: bool) -> Verdict {
    let undoing = arrivals
        .iter()
        .any(|a| matches!(a, Arrival::Ready { undoing: true, .. }));
    let failed = arrivals.iter().any(|a| matches!(a, Arrival::Failed { .. }));
    let retry = arrivals.iter().any(|a| matches!(a, Arrival::Retry { .. }));
    let reset = arrivals.iter().any(|a| match a {
        Arrival::Ready { .. } => true,
        Arrival::Failed { reset, .. } => *reset,
        // Retry: whether its reset ran is its ledger's to say at the next delivery.
        Arrival::Retry { .. } => false,
    });
    // An undo begun by an earlier delivery is never answered with a start on the target: the
    // others go back too, or the instance stays stopped.
    if !failed && !retry && !undoing {
        return Verdict::Start;
    }
    if failed && !reset && !retry {
        return Verdict::Restore;
    }
    if retry {
        return Verdict::Retry;
    }
    if allow_partial && !undoing {
        return Verdict::StartPartial;
    }
    let undo_all = arrivals.iter().all(|a| match a {
        Arrival::Ready { has_undo, .. } => *has_undo,
        Arrival::Failed { reset, .. } => !*reset,
        Arrival::Retry { .. } => false,
    });
    if undo_all {
        Verdict::Undo
    } else {
        Verdict::LeaveStopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DiskId;

    fn disk(id: &str, kind: &str, instance: &str) -> Disk {
        serde_json::from_value(serde_json::json!({
            "DiskId": id, "Type": kind, "InstanceId": instance, "Status": "In_use"
        }))
        .expect("disk")
    }

    fn snap(id: &str, disk: &str, at: &str) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "SnapshotId": id, "SourceDiskId": disk, "Status": "accomplished",
            "Progress": "100%", "CreationTime": at
        }))
        .expect("snapshot")
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn all_means_the_attached_disks_system_first_and_a_list_must_be_attached() {
        let attached = [
            disk("d-data00000002", "data", "i-inst00000001"),
            disk("d-sys000000001", "system", "i-inst00000001"),
            disk("d-other0000003", "data", "i-inst00000009"),
        ];
        let all = disks(&DiskSet::All, "i-inst00000001", &attached).expect("all");
        let ids: Vec<&str> = all.iter().map(|d| d.disk_id.as_str()).collect();
        assert_eq!(ids, ["d-sys000000001", "d-data00000002"]);
        let list = DiskSet::List(vec![DiskId::parse("d-other0000003").expect("id")]);
        let e = disks(&list, "i-inst00000001", &attached).expect_err("not attached");
        assert_eq!(e.code, Code::DiskNotAttached.as_str());
        assert!(e.message.contains("d-other0000003"), "{}", e.message);
        assert!(disks(&DiskSet::All, "i-empty0000001", &attached).is_err());
    }

    #[test]
    fn a_rule_picks_one_point_in_time_or_refuses_naming_the_spread() {
        let attached = [
            disk("d-sys000000001", "system", "i-inst00000001"),
            disk("d-data00000002", "data", "i-inst00000001"),
        ];
        let ds: Vec<&Disk> = attached.iter().collect();
        let snaps = [
            snap("s-sys00000001", "d-sys000000001", "2026-11-28T20:00:00Z"),
            snap("s-data0000001", "d-data00000002", "2026-11-28T20:01:00Z"),
            snap("s-data0000002", "d-data00000002", "2026-11-28T23:00:00Z"),
        ];
        let newest = SnapshotChoice::Newest {
            tag: None,
            name: None,
            before: None,
        };
        // The newest of each is 3 hours apart: refused, with the list.
        let e = by_rule(&newest, &snaps, &ds, t("2026-11-29T00:00:00Z"), 300).expect_err("apart");
        assert_eq!(e.code, Code::SnapshotsApart.as_str());
        assert!(e.message.contains("s-data0000002"), "{}", e.message);
        // Before 22:00: one point in time, a minute apart.
        let picks =
            by_rule(&newest, &snaps, &ds, t("2026-11-28T22:00:00Z"), 300).expect("within skew");
        let got: Vec<(&str, &str)> = picks
            .iter()
            .map(|p| (p.disk.as_str(), p.snapshot.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("d-sys000000001", "s-sys00000001"),
                ("d-data00000002", "s-data0000001")
            ]
        );
        // A disk without a snapshot refuses the whole request, named.
        let e = by_rule(&newest, &snaps, &ds, t("2026-11-28T20:00:30Z"), 300).expect_err("none");
        assert!(e.message.contains("d-data00000002"), "{}", e.message);
    }

    #[test]
    fn a_group_gives_every_disk_its_member_or_refuses() {
        let attached = [
            disk("d-sys000000001", "system", "i-inst00000001"),
            disk("d-data00000002", "data", "i-inst00000001"),
        ];
        let ds: Vec<&Disk> = attached.iter().collect();
        let m = |s: &str, d: &str| Member {
            snapshot: s.into(),
            source_disk: d.into(),
            available: true,
        };
        let members = [
            m("s-sys00000001", "d-sys000000001"),
            m("s-data0000001", "d-data00000002"),
        ];
        let picks = from_group("ssg-g0000001", "accomplished", &members, &ds).expect("ok");
        assert_eq!(picks[1].snapshot, "s-data0000001");
        let e = from_group("ssg-g0000001", "accomplished", &members[..1], &ds)
            .expect_err("member deleted");
        assert!(e.message.contains("d-data00000002"), "{}", e.message);
        assert!(from_group("ssg-g0000001", "failed", &members, &ds).is_err());
    }

    #[test]
    fn never_a_start_on_two_points_in_time_unless_allowed() {
        let ready = |u| Arrival::Ready {
            has_undo: u,
            undoing: false,
        };
        let failed = |reset| Arrival::Failed {
            error: ErrorInfo::new("X", "x", false),
            reset,
        };
        let retry = Arrival::Retry {
            error: ErrorInfo::new("Y", "y", true),
        };
        assert_eq!(
            verdict(&[ready(false), ready(false)], false),
            Verdict::Start
        );
        assert_eq!(
            verdict(&[failed(false), failed(false)], false),
            Verdict::Restore
        );
        assert_eq!(
            verdict(&[ready(false), failed(false)], false),
            Verdict::LeaveStopped
        );
        assert_eq!(verdict(&[ready(true), failed(false)], false), Verdict::Undo);
        assert_eq!(
            verdict(&[ready(true), failed(true)], false),
            Verdict::LeaveStopped
        );
        assert_eq!(
            verdict(&[ready(false), failed(false)], true),
            Verdict::StartPartial
        );
        assert_eq!(
            verdict(&[ready(true), retry.clone()], false),
            Verdict::Retry
        );
        assert_eq!(verdict(&[failed(false), retry], true), Verdict::Retry);
        // An undo under way stands, whatever the others now say.
        let undoing = Arrival::Ready {
            has_undo: true,
            undoing: true,
        };
        assert_eq!(
            verdict(&[undoing.clone(), ready(true)], false),
            Verdict::Undo
        );
        assert_eq!(
            verdict(&[undoing.clone(), ready(true)], true),
            Verdict::Undo
        );
        assert_eq!(
            verdict(&[undoing, ready(false)], false),
            Verdict::LeaveStopped
        );
        // Exhaustively over three disks: a start (plain or restore) with some disk reset and
        // another not is only ever the allowed partial one.
        let kinds = [ready(false), ready(true), failed(false), failed(true)];
        for a in &kinds {
            for b in &kinds {
                for c in &kinds {
                    for allow in [false, true] {
                        let arr = [a.clone(), b.clone(), c.clone()];
                        let v = verdict(&arr, allow);
                        let reset = arr
                            .iter()
                            .filter(|x| {
                                matches!(
                                    x,
                                    Arrival::Ready { .. } | Arrival::Failed { reset: true, .. }
                                )
                            })
                            .count();
                        let mixed = reset > 0 && reset < arr.len();
                        if mixed && matches!(v, Verdict::Start | Verdict::Restore) {
                            panic!("{arr:?} -> {v:?}");
                        }
                        if mixed && v == Verdict::StartPartial {
                            assert!(allow);
                        }
                    }
                }
            }
        }
    }
}
