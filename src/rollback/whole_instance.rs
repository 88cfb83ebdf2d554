//! A whole-instance request as the caller sees it (docs/rollback-protocol.md, "The instance as
//! the unit"): the disks and each one's snapshot (`crate::instance_plan`), whether the request
//! began already, every disk's dry run before anything changes, the disks' runs together
//! (`group.rs`: the meetings, the shared hold, the undo), and the one result naming each disk.

use super::group::{Group, Link};
use super::*;
use crate::instance_plan::{self, Member, Pick};
use crate::report::DiskResult;
use crate::request::InstanceScope;

impl<'a> Rollback<'a> {
    /// A whole-instance request: the disks and their snapshots, every disk's dry run, then
    /// every disk's run together; one result for the request, naming each disk's.
    pub(super) async fn run_instance(
        &self,
        req: &RollbackRequest,
        scope: &InstanceScope,
        deadline: Option<Instant>,
    ) -> Report {
        let started = Instant::now();
        let region = req.region.as_str();
        let iid = req
            .instance
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let base = Target {
            region_id: Some(region.to_owned()),
            instance_id: Some(iid.clone()),
            ..Default::default()
        };
        let (plan, plan_calls) =
            crate::ecs::client::counting(self.plan_instance(req, scope, &iid)).await;
        let members = match plan {
            Ok(m) => m,
            Err(error) => {
                return group_report(
                    plan_calls,
                    req,
                    base,
                    Outcome::Rejected,
                    Some(error),
                    vec![],
                    started,
                )
            }
        };
        let begun = members.iter().any(|m| m.begun);
        // Every disk's preconditions, before anything changes (a fresh request: one begun
        // goes on from its ledgers).
        if !begun || req.dry_run {
            let dry: Vec<RollbackRequest> = members
                .iter()
                .map(|m| {
                    let mut r = m.req.clone();
                    r.dry_run = true;
                    r
                })
                .collect();
            let reports = futures_util::future::join_all(
                dry.iter()
                    .map(|r| Box::pin(self.run_one(r, deadline, None))),
            )
            .await;
            let refused = reports.iter().find(|r| r.outcome != Outcome::DryRun);
            if req.dry_run || refused.is_some() {
                let error = refused.and_then(|r| r.error.clone()).map(|mut e| {
                    e.message = format!(
                        "disk {}: {}; every disk of the request must pass, so nothing was touched",
                        r_disk(refused),
                        e.message
                    );
                    e
                });
                let outcome = match refused {
                    None => Outcome::DryRun,
                    Some(r) if r.outcome == Outcome::Failed => Outcome::Failed,
                    Some(_) => Outcome::Rejected,
                };
                return group_report(plan_calls, req, base, outcome, error, reports, started);
            }
        }
        let lead = &members[0];
        let preserve = req
            .preserve_current
            .unwrap_or(self.settings.preserve_current);
        let essd = members
            .iter()
            .all(|m| instance_plan::groupable(&m.category))
            && members.len() <= instance_plan::GROUP_MAX_DISKS
            && members.iter().map(|m| m.size_gib).sum::<i64>() <= instance_plan::GROUP_MAX_GIB;
        let undo_group =
            (preserve && essd).then(|| members.iter().map(|m| m.disk.clone()).collect());
        let group = Arc::new(Group::new(
            members.len(),
            scope,
            req.key.as_str().to_owned(),
            (ledger::run_key(&lead.req.key.digest()), lead.disk.clone()),
            undo_group,
        ));
        for (index, m) in members.iter().enumerate() {
            if let Some(e) = &m.refused {
                let out = Err(Halt::reject(e.code.clone(), e.message.clone(), e.retryable));
                group.leave(index, &out, false);
                group.ended.leave(index, (true, false));
            }
        }
        let runs = members.iter().enumerate().map(|(index, m)| {
            let link = Link {
                group: group.clone(),
                index,
            };
            let refused = m.refused.clone();
            Box::pin(async move {
                match refused {
                    Some(e) => refused_report(&m.req, e),
                    None => self.run_one(&m.req, deadline, Some(link)).await,
                }
            })
        });
        let reports = futures_util::future::join_all(runs).await;
        let (outcome, error) = group_outcome(&reports, &members);
        let mut report = group_report(plan_calls, req, base, outcome, error, reports, started);
        if self.settings.verify.is_some() {
            report.warnings.push(
                "the deployment's verify block is not run for a whole-instance request yet: check the service yourself".into(),
            );
        }
        report
    }

    /// The disks and each one's snapshot, and whether a run of the request already began on it.
    async fn plan_instance(
        &self,
        req: &RollbackRequest,
        scope: &InstanceScope,
        iid: &str,
    ) -> Result<Vec<MemberPlan>, ErrorInfo> {
        let region = req.region.as_str();
        let q = DiskQuery {
            instance_id: Some(iid.to_owned()),
            ..Default::default()
        };
        let attached = self
            .ecs
            .describe_disks(region, &q)
            .await
            .map_err(|e| ErrorInfo::from_ecs(&e))?;
        let disks = instance_plan::disks(&scope.disks, iid, &attached)?;
        let begun: Vec<bool> = disks
            .iter()
            .map(|d| {
                let digest = req.member_key(&d.disk_id).digest();
                let ledger = Ledger::from_tags(
                    d.tags
                        .tag
                        .iter()
                        .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
                );
                ledger
                    .run
                    .as_ref()
                    .is_some_and(|r| r.key == ledger::run_key(&digest))
                    || ledger.history.find(&digest).is_some()
            })
            .collect();
        // A request begun goes on from its ledgers (the snapshot is each record's); a disk it
        // had not begun and can give no snapshot now is refused, and counts as not reset.
        let mut picks: Vec<Result<Pick, ErrorInfo>> = match self.pick(req, scope, iid, &disks).await
        {
            Ok(p) => p.into_iter().map(Ok).collect(),
            Err(e) if !begun.iter().any(|b| *b) => return Err(e),
            Err(e) => vec![Err(e); disks.len()],
        };
        if begun.iter().any(|b| *b) && scope.snapshot_group.is_none() {
            // A rule picks again at each delivery ("newest before now" moves): a disk not begun
            // goes only to a snapshot within the skew of those the begun disks' records hold.
            self.hold_to_begun(req, scope, iid, &disks, &begun, &mut picks)
                .await;
        }
        let mut out = Vec::with_capacity(disks.len());
        for ((d, pick), begun) in disks.iter().zip(picks).zip(begun) {
            let disk = crate::ids::DiskId::parse(&d.disk_id)
                .map_err(|m| ErrorInfo::new(Code::Internal, m, false))?;
            let (snapshot, refused) = match pick {
                Ok(p) => (
                    Some(
                        crate::ids::SnapshotId::parse(&p.snapshot)
                            .map_err(|m| ErrorInfo::new(Code::Internal, m, false))?,
                    ),
                    None,
                ),
                Err(_) if begun => (None, None),
                Err(e) => (None, Some(e)),
            };
            out.push(MemberPlan {
                category: d.category.clone(),
                size_gib: d.size.unwrap_or(0),
                disk: d.disk_id.clone(),
                req: req.member(disk, snapshot),
                begun,
                refused,
            });
        }
        Ok(out)
    }

    /// The picks of disks not begun held to the point in time of the begun disks' records: one
    /// further apart than `maxSkewSeconds` from any of them is refused (`SnapshotsApart`).
    async fn hold_to_begun(
        &self,
        req: &RollbackRequest,
        scope: &InstanceScope,
        iid: &str,
        disks: &[&Disk],
        begun: &[bool],
        picks: &mut [Result<Pick, ErrorInfo>],
    ) {
        let q = SnapshotQuery {
            instance_id: Some(iid.to_owned()),
            ..Default::default()
        };
        let snapshots = match self.ecs.describe_snapshots(req.region.as_str(), &q).await {
            Ok(s) => s,
            Err(e) => {
                for (p, b) in picks.iter_mut().zip(begun) {
                    if !*b {
                        *p = Err(ErrorInfo::from_ecs(&e));
                    }
                }
                return;
            }
        };
        let created = |id: &str| {
            snapshots
                .iter()
                .find(|s| s.snapshot_id == id)
                .and_then(|s| s.creation_time)
        };
        let anchors: Vec<DateTime<Utc>> = disks
            .iter()
            .zip(begun)
            .filter(|(_, b)| **b)
            .filter_map(|(d, _)| {
                let ledger = Ledger::from_tags(
                    d.tags
                        .tag
                        .iter()
                        .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
                );
                created(&ledger.run?.snapshot)
            })
            .collect();
        for (p, b) in picks.iter_mut().zip(begun) {
            let Ok(pick) = p else { continue };
            if *b {
                continue;
            }
            let apart = pick.created.is_none_or(|t| {
                anchors
                    .iter()
                    .any(|a| (t - *a).num_seconds().unsigned_abs() > scope.max_skew_secs)
            });
            if apart {
                *p = Err(ErrorInfo::new(
                    Code::SnapshotsApart,
                    format!(
                        "disk {}: its snapshot {} is not within {} s of those the disks already rolled back by this request hold: not touched",
                        pick.disk, pick.snapshot, scope.max_skew_secs
                    ),
                    false,
                ));
            }
        }
    }

    async fn pick(
        &self,
        req: &RollbackRequest,
        scope: &InstanceScope,
        iid: &str,
        disks: &[&Disk],
    ) -> Result<Vec<Pick>, ErrorInfo> {
        let region = req.region.as_str();
        if let Some(ssg) = &scope.snapshot_group {
            let groups = self
                .ecs
                .describe_snapshot_groups(region, &[ssg.to_string()], None)
                .await
                .map_err(|e| ErrorInfo::from_ecs(&e))?;
            let g = groups
                .iter()
                .find(|g| g.snapshot_group_id == ssg.as_str())
                .ok_or_else(|| {
                    ErrorInfo::new(
                        "InvalidSnapshotGroupId.NotFound",
                        format!("snapshot-consistent group {ssg} not found in {region}"),
                        false,
                    )
                })?;
            let members: Vec<Member> = g
                .snapshots
                .iter()
                .map(|s| Member {
                    snapshot: s.snapshot_id.clone(),
                    source_disk: s.source_disk_id.clone(),
                    available: s.available,
                })
                .collect();
            let status = g.status.clone();
            return instance_plan::from_group(ssg.as_str(), &status, &members, disks);
        }
        let q = SnapshotQuery {
            instance_id: Some(iid.to_owned()),
            ..Default::default()
        };
        let snapshots = self
            .ecs
            .describe_snapshots(region, &q)
            .await
            .map_err(|e| ErrorInfo::from_ecs(&e))?;
        let now = self.ecs.now();
        instance_plan::by_rule(
            &req.snapshot,
            &snapshots,
            disks,
            req.trigger.time.unwrap_or(now),
            scope.max_skew_secs,
        )
    }
}

struct MemberPlan {
    disk: String,
    category: String,
    size_gib: i64,
    req: RollbackRequest,
    /// A run of this request's key began on the disk (a record, or the key in its history).
    begun: bool,
    /// The disk's snapshot could not be chosen (a request begun on other disks): its run is
    /// not made, and counts as refused before its reset.
    refused: Option<ErrorInfo>,
}

fn r_disk(r: Option<&Report>) -> String {
    r.and_then(|r| r.target.disk_id.clone()).unwrap_or_default()
}

/// The request's outcome from its disks': `succeeded` only when every disk's run did (or had);
/// a start refused on disks from two points in time is `PartialRollback`, naming each disk.
fn group_outcome(reports: &[Report], members: &[MemberPlan]) -> (Outcome, Option<ErrorInfo>) {
    let ok = |r: &Report| matches!(r.outcome, Outcome::Succeeded | Outcome::Duplicate);
    if reports.iter().all(ok) {
        let outcome = if reports.iter().all(|r| r.outcome == Outcome::Duplicate) {
            Outcome::Duplicate
        } else {
            Outcome::Succeeded
        };
        return (outcome, None);
    }
    let err = |r: &Report| r.error.clone();
    // What each disk holds now, for the two messages below.
    let holds = reports
        .iter()
        .zip(members)
        .map(|(r, m)| format!("{}: {}", m.disk, disk_holds(r)))
        .collect::<Vec<_>>()
        .join("; ");
    if reports
        .iter()
        .filter_map(err)
        .any(|e| e.code == Code::RolledBackToUndo.as_str())
    {
        let cause = reports
            .iter()
            .filter_map(err)
            .find(|e| e.code != Code::RolledBackToUndo.as_str())
            .map(|e| format!("{}: {}", e.code, e.message))
            .unwrap_or_default();
        return (
            Outcome::Failed,
            Some(ErrorInfo::new(
                Code::PartialRollback,
                format!("one disk of the instance could not be rolled back ({cause}); the disks that were are back on their undo snapshots, so the instance is as it was before the request. The disks: {holds}"),
                false,
            )),
        );
    }
    if let Some(p) = reports
        .iter()
        .filter_map(err)
        .find(|e| e.code == Code::PartialRollback.as_str())
    {
        let undo: Vec<String> = reports
            .iter()
            .filter(|r| r.outcome != Outcome::Rejected)
            .filter_map(|r| {
                Some(format!(
                    "{} -> {}",
                    r.target.disk_id.clone()?,
                    r.target.undo_snapshot_id.clone()?
                ))
            })
            .collect();
        let undo = if undo.is_empty() {
            String::new()
        } else {
            format!(
                "; to undo, roll each reset disk back to its undo snapshot ({}) and start the instance",
                undo.join(", ")
            )
        };
        let mut e = ErrorInfo::new(
            Code::PartialRollback,
            format!(
                "{}. The disks: {holds}. To finish, send the request again (a disk whose cause passed is reset then), or with \"allowPartial\": true to start the instance as it is{undo}",
                p.message
            ),
            p.retryable,
        );
        e.request_id = p.request_id;
        return (Outcome::Failed, Some(e));
    }
    // Otherwise the first error a disk's run ended with; retryable if any is (the next
    // delivery goes on from the ledgers).
    let retry = reports
        .iter()
        .filter_map(err)
        .find(|e| e.retryable && e.code != Code::Failed.as_str());
    let first = reports.iter().filter(|r| !ok(r)).find_map(err);
    let error = retry.or(first);
    let outcome = if reports
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Rejected | Outcome::Duplicate))
    {
        Outcome::Rejected
    } else {
        Outcome::Failed
    };
    (outcome, error)
}

/// What a disk holds after its run, as the result says it.
fn disk_holds(r: &Report) -> String {
    let snap = r.target.snapshot_id.clone().unwrap_or_default();
    let reset = r
        .steps
        .iter()
        .any(|s| s.name == "reset" && s.status == StepStatus::Done);
    let undone = r
        .steps
        .iter()
        .any(|s| s.name == "undo-reset" && s.status == StepStatus::Done)
        || r.error
            .as_ref()
            .is_some_and(|e| e.code == Code::RolledBackToUndo.as_str());
    match r.outcome {
        _ if undone => format!(
            "back on its undo snapshot {} (as before the request)",
            r.target.undo_snapshot_id.clone().unwrap_or_default()
        ),
        Outcome::Succeeded | Outcome::Duplicate => format!("rolled back to {snap}"),
        _ if reset => format!("rolled back to {snap}"),
        Outcome::Rejected => "as before (not touched)".into(),
        _ => match &r.error {
            Some(e) => format!("not rolled back ({})", e.code),
            None => "not rolled back".into(),
        },
    }
}

fn group_report(
    plan_calls: u64,
    req: &RollbackRequest,
    mut target: Target,
    outcome: Outcome,
    error: Option<ErrorInfo>,
    reports: Vec<Report>,
    started: Instant,
) -> Report {
    let mut steps = Vec::new();
    let mut warnings = Vec::new();
    let mut calls = plan_calls;
    let mut downtime: Option<u64> = None;
    let mut disks = Vec::with_capacity(reports.len());
    for r in reports {
        let disk = r.target.disk_id.clone().unwrap_or_default();
        for mut s in r.steps.clone() {
            s.name = format!("{}:{disk}", s.name);
            steps.push(s);
        }
        warnings.extend(r.warnings.iter().map(|w| format!("{disk}: {w}")));
        calls += r.ecs_calls.unwrap_or(0);
        downtime = downtime.max(r.downtime_ms);
        disks.push(DiskResult {
            holds: disk_holds(&r),
            disk_id: disk,
            snapshot_id: r.target.snapshot_id.clone(),
            undo_snapshot_id: r.target.undo_snapshot_id.clone(),
            outcome: r.outcome.as_str().to_owned(),
            error: r.error.clone(),
        });
    }
    target.disks = Some(disks);
    Report {
        outcome,
        idempotency_key: Some(req.key.as_str().to_owned()),
        trigger_kind: req.trigger.kind.clone(),
        trigger_id: req.trigger.id.clone(),
        target,
        steps,
        error,
        total_ms: started.elapsed().as_millis() as u64,
        downtime_ms: downtime,
        reason: req.reason.clone(),
        warnings,
        ecs_calls: Some(calls),
        verification: None,
    }
}

/// The result of a disk's run that was not made.
fn refused_report(req: &RollbackRequest, error: ErrorInfo) -> Report {
    Report {
        outcome: Outcome::Rejected,
        idempotency_key: Some(req.key.as_str().to_owned()),
        trigger_kind: req.trigger.kind.clone(),
        trigger_id: req.trigger.id.clone(),
        target: Target {
            region_id: Some(req.region.to_string()),
            instance_id: req.instance.as_ref().map(ToString::to_string),
            disk_id: req.disk.as_ref().map(ToString::to_string),
            ..Default::default()
        },
        steps: vec![],
        error: Some(error),
        total_ms: 0,
        downtime_ms: None,
        reason: req.reason.clone(),
        warnings: vec![],
        ecs_calls: Some(0),
        verification: None,
    }
}
