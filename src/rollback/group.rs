//! A whole-instance rollback (docs/rollback-protocol.md, "The instance as the unit"): the disks
//! are chosen and each given its snapshot at one point in time (`crate::instance_plan`), every
//! disk's preconditions checked by a dry run before anything changes, then one run per disk,
//! each with its own key and ledger, all in one invocation: one hold on the instance, and two
//! meetings. Before the stop, every disk's run has claimed its disk (a fresh run goes on only
//! if all did). Before the start, every disk's reset has ended or failed, and the verdict
//! (`instance_plan::verdict`) says whether the instance starts, is left stopped
//! (`PartialRollback`) or the delivery ends for the next one to go on.

use std::sync::Mutex;

use tokio::sync::watch;

use super::*;
use crate::instance_plan::{self, Arrival, Member, Pick, Verdict};
use crate::report::DiskResult;
use crate::request::InstanceScope;

/// Where the runs of one instance's disks meet: each fills its slot, and all go on once every
/// slot is filled. A run that ends early fills the slots it will not reach (`leave`).
pub(super) struct Meeting<T: Clone> {
    slots: Mutex<Vec<Option<T>>>,
    filled: watch::Sender<usize>,
}

impl<T: Clone> Meeting<T> {
    fn new(n: usize) -> Self {
        Self {
            slots: Mutex::new(vec![None; n]),
            filled: watch::Sender::new(0),
        }
    }

    fn put(&self, i: usize, v: T, overwrite: bool) {
        let count = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = slots.get_mut(i) {
                if overwrite || slot.is_none() {
                    *slot = Some(v);
                }
            }
            slots.iter().filter(|s| s.is_some()).count()
        };
        self.filled.send_replace(count);
    }

    fn all(&self) -> Option<Vec<T>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().cloned().collect()
    }

    /// Fills slot `i` and waits for the others.
    pub(super) async fn meet(&self, i: usize, v: T) -> Vec<T> {
        let mut rx = self.filled.subscribe();
        self.put(i, v, true);
        loop {
            if let Some(all) = self.all() {
                return all;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as the meeting: not reached.
                return self.all().unwrap_or_default();
            }
        }
    }

    /// Fills slot `i` unless the run was there already, without waiting.
    fn leave(&self, i: usize, v: T) {
        self.put(i, v, false);
    }
}

/// What a disk's run brings to the meeting before the stop.
#[derive(Clone, Debug)]
pub(super) enum Ready {
    /// Claimed (or resumed), ready to change things.
    Go,
    /// Its key had finished already (a duplicate): nothing to do, nothing in the way.
    Done,
    /// It ended before: refused, failed or retryable.
    Out(ErrorInfo),
}

/// The runs of one whole-instance request, and what they share.
pub(super) struct Group {
    pub(super) allow_partial: bool,
    /// The invocation every disk's run is (its claims and the one hold carry it).
    pub(super) invocation: String,
    /// The hold's identity: the first disk's key and the first disk (its claim is live while
    /// the group runs: every run keeps its claim until all have ended).
    pub(super) lead_key: String,
    pub(super) lead_disk: String,
    /// The hold, once one run took it for all (and whether that took a wait: every run plans
    /// again then).
    pub(super) hold: tokio::sync::Mutex<Option<(instance_hold::Held, bool)>>,
    pub(super) before_stop: Meeting<Ready>,
    pub(super) before_start: Meeting<Arrival>,
    /// After the undo (verdict `Undo`): every reset disk back on its undo snapshot before the
    /// start.
    pub(super) after_undo: Meeting<()>,
    /// `preserveCurrent` with every disk ESSD-series: the disks one snapshot-consistent group
    /// takes as they are (`None`: one undo snapshot per disk).
    pub(super) undo_group: Option<Vec<String>>,
    /// That group, once one run made it: each disk's snapshot in it.
    pub(super) undo_taken: tokio::sync::Mutex<Option<Vec<(String, String)>>>,
    /// The whole-instance request's key: the group's `ClientToken` derives from it.
    pub(super) key: String,
    /// At the end: whether each run finished (the hold is released when all did) and whether
    /// it changed something (part-way: the hold stays for the next delivery).
    pub(super) ended: Meeting<(bool, bool)>,
}

/// One disk's run's place in its group.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) group: Arc<Group>,
    pub(super) index: usize,
}

impl Group {
    fn new(
        n: usize,
        scope: &InstanceScope,
        key: String,
        (lead_key, lead_disk): (String, String),
        undo_group: Option<Vec<String>>,
    ) -> Self {
        Self {
            undo_group,
            undo_taken: tokio::sync::Mutex::new(None),
            key,
            allow_partial: scope.allow_partial,
            invocation: format!("{:016x}", fastrand::u64(..)),
            lead_key,
            lead_disk,
            hold: tokio::sync::Mutex::new(None),
            before_stop: Meeting::new(n),
            before_start: Meeting::new(n),
            after_undo: Meeting::new(n),
            ended: Meeting::new(n),
        }
    }
}

impl Run<'_> {
    /// The hold's key and disk: the group's for a disk of a whole-instance request.
    pub(super) fn hold_identity(&self) -> (String, String) {
        match &self.group {
            Some(l) => (l.group.lead_key.clone(), l.group.lead_disk.clone()),
            None => (ledger::run_key(&self.digest), self.disk_id()),
        }
    }

    /// A disk of a whole-instance request: the first of its runs to get here holds the
    /// instance for all; the others share that hold. After a wait for another holder every run
    /// plans again (`INSTANCE_WAITED`).
    pub(super) async fn hold_for_group(
        &mut self,
        link: &Link,
        instance: Option<&Instance>,
        seen_tags_clear: bool,
        record_w: Option<bool>,
        stale_w: Option<bool>,
    ) -> Res<()> {
        if self.hold.is_some() {
            return Ok(());
        }
        let mut slot = link.group.hold.lock().await;
        if let Some((held, waited)) = slot.as_ref() {
            self.hold = Some(held.clone());
            if *waited {
                return Err(Halt::fail(ErrorInfo::new(
                    instance_hold::INSTANCE_WAITED,
                    "another run of this request waited for the instance",
                    true,
                )));
            }
            return Ok(());
        }
        let r = self
            .hold_instance_alone(instance, seen_tags_clear, record_w, stale_w)
            .await;
        if let Some(held) = &self.hold {
            let waited = r
                .as_ref()
                .err()
                .is_some_and(|h| h.error.code == instance_hold::INSTANCE_WAITED);
            *slot = Some((held.clone(), waited));
        }
        r
    }

    /// At the start of the transitions: every disk's run meets the others. A run that has
    /// changed nothing yet (phase `claimed`) goes on only if every other run is ready too; a
    /// resumed run past that goes on whatever (its end is decided before the start).
    pub(super) async fn meet_before_stop(&mut self) -> Res<()> {
        let Some(link) = self.group.clone() else {
            return Ok(());
        };
        let all = link.group.before_stop.meet(link.index, Ready::Go).await;
        if self.phase() > Phase::Claimed {
            return Ok(());
        }
        let out = all.iter().enumerate().find_map(|(i, r)| match r {
            Ready::Out(e) => Some((i, e.clone())),
            _ => None,
        });
        let Some((i, e)) = out else {
            return Ok(());
        };
        let error = ErrorInfo::new(
            e.code.clone(),
            format!(
                "another disk of the instance (the request's disk {}) cannot be rolled back ({}: {}), so this disk's run changed nothing",
                i + 1,
                e.code,
                e.message
            ),
            e.retryable,
        );
        // Nothing changed by this run. For good: the record says so (the key failed, the
        // instance untouched). A cause that can pass: the record stays at `claimed`, and the
        // next delivery goes on from it.
        if !error.retryable {
            let _ = self.write_final(Phase::Failed, Some(&error.code)).await;
        }
        Err(Halt {
            outcome: Outcome::Rejected,
            error,
        })
    }

    /// Before the start: every disk's reset has ended (or failed, or the run ended), and the
    /// verdict says what this run does. `Ok(())`: start as planned.
    pub(super) async fn meet_before_start(&mut self) -> Res<()> {
        let Some(link) = self.group.clone() else {
            return Ok(());
        };
        let has_undo = self.record.as_ref().is_some_and(|r| r.undo.is_some());
        let all = link
            .group
            .before_start
            .meet(link.index, Arrival::Ready { has_undo })
            .await;
        match instance_plan::verdict(&all, link.group.allow_partial) {
            Verdict::Start | Verdict::Restore => Ok(()),
            Verdict::StartPartial => {
                self.warnings.push(format!(
                    "another disk of the instance could not be rolled back ({}); the request allows it (allowPartial), so the instance starts on disks from two points in time",
                    first_failure(&all)
                ));
                Ok(())
            }
            Verdict::Retry => {
                let e = first_retry(&all);
                Err(Halt::fail(ErrorInfo::new(
                    e.code.clone(),
                    format!(
                        "this disk is reset, but another disk of the instance ended this delivery ({}: {}); the instance stays stopped until the next delivery goes on",
                        e.code, e.message
                    ),
                    true,
                )))
            }
            Verdict::Undo => self.undo_for_group(&link, &all).await,
            Verdict::LeaveStopped => Err(Halt::fail(ErrorInfo::new(
                Code::PartialRollback,
                format!(
                    "this disk was reset, but another disk of the instance could not be ({}): the instance is left stopped rather than run on disks from two points in time",
                    first_failure(&all)
                ),
                false,
            ))),
        }
    }

    /// A disk's run that cannot go on, for good: its instance is brought back only when the
    /// verdict says no disk of the instance is left reset against the others (or the request
    /// allows it); otherwise the instance stays stopped and the record says where the run is.
    pub(super) async fn group_failed(&mut self, error: ErrorInfo) -> Res<Outcome> {
        let Some(link) = self.group.clone() else {
            return self.restore_after_failure(error).await;
        };
        // A run recorded failed (`f=`) was bringing the instance back, never past a reset.
        let reset = self.phase() >= Phase::Reset
            && self.record.as_ref().is_some_and(|r| r.failure.is_none());
        link.group
            .before_stop
            .leave(link.index, Ready::Out(error.clone()));
        let all = link
            .group
            .before_start
            .meet(
                link.index,
                Arrival::Failed {
                    error: error.clone(),
                    reset,
                },
            )
            .await;
        match instance_plan::verdict(&all, link.group.allow_partial) {
            Verdict::Restore | Verdict::StartPartial | Verdict::Start => {
                self.restore_after_failure(error).await
            }
            Verdict::Undo => {
                // From `starting` with the failure, this key never resets its disk: a crash
                // resumes the restore, which meets the others' undo first.
                if let Some(r) = self.record.as_mut() {
                    r.failure = Some(error.code.clone());
                }
                if self.phase() < Phase::Starting {
                    if let Err(h) = self.set_phase(Phase::Starting).await {
                        self.warnings.push(format!(
                            "phase starting could not be recorded: {}",
                            h.error.message
                        ));
                    }
                }
                link.group.after_undo.meet(link.index, ()).await;
                self.restore_after_failure(error).await
            }
            Verdict::Retry | Verdict::LeaveStopped => Err(Halt::fail(error)),
        }
    }

    /// Verdict `Undo`: this disk back to its undo snapshot (the disk as it was before the
    /// request) while the instance is Stopped, the mark saying `undoing` before the call and
    /// `undo reset` after it (a crash repeats the reset to the undo snapshot, never once it says
    /// so), then, with every disk back, the start; the result says what was undone.
    async fn undo_for_group(&mut self, link: &Link, all: &[Arrival]) -> Res<()> {
        let t = self.now();
        let undo = self
            .record
            .as_ref()
            .and_then(|r| r.undo.clone())
            .ok_or_else(|| Halt::fail(ErrorInfo::new(Code::Internal, "no undo snapshot", false)))?;
        let iid = self.instance_id().unwrap_or_default();
        let disk = self.disk_id();
        let done = self
            .read_mark()
            .await?
            .is_some_and(|m| m.stage == crate::verify::Stage::UndoReset);
        if !done {
            self.write_mark(1, crate::verify::Stage::Undoing, None)
                .await?;
            self.before_change("ResetDisk")?;
            self.confirm_holder("ResetDisk (undo)").await?;
            if self.read_instance(&iid).await?.status != "Stopped" {
                return Err(Halt::fail(ErrorInfo::new(
                    Code::RollbackInProgress,
                    "the instance is not Stopped before the undo's reset; nothing was reset",
                    true,
                )));
            }
            let request_id = match self.ecs.reset_disk(&self.region, &disk, &undo, false).await {
                Ok(ack) => Some(ack.request_id),
                Err(e) if e.is_code("InvalidOperation.DiskResetInProgress") => None,
                Err(e) => {
                    let mut h = Halt::ecs(Outcome::Failed, &e);
                    h.error.retryable = e.can_pass() || e.may_have_applied;
                    return Err(h);
                }
            };
            self.write_mark(1, crate::verify::Stage::UndoReset, None)
                .await?;
            self.step(
                "undo-reset",
                StepStatus::Done,
                t,
                request_id,
                Some(format!("disk {disk} reset to the undo snapshot {undo}")),
            );
        }
        if let Err(h) = self.wait_reset_done(false).await {
            self.warnings.push(format!(
                "the end of the undo's reset was not seen ({}); StartInstance waited for it",
                h.error.message
            ));
        }
        link.group.after_undo.meet(link.index, ()).await;
        let record = self.record()?;
        if record.end_running {
            self.start(&iid, self.now()).await?;
        }
        let error = ErrorInfo::new(
            Code::RolledBackToUndo,
            format!(
                "another disk of the instance could not be rolled back ({}), so this disk was rolled back to its undo snapshot {undo} (as it was before the request) and the instance {}",
                first_failure(all),
                if record.end_running { "started again" } else { "left stopped, as it was" }
            ),
            false,
        );
        let _ = self.write_final(Phase::Failed, Some(&error.code)).await;
        Err(Halt::fail(error))
    }

    /// The undo snapshot of this disk from the snapshot-consistent group the request takes of
    /// all its disks (`None`: groups do not apply; one undo snapshot per disk). The first run
    /// here makes the group (its `ClientToken` from the request's key: a redelivery gets the
    /// same group), the others take their disk's snapshot in it. Taken after the stop and
    /// before any reset: no run resets before its own undo snapshot is usable.
    pub(super) async fn undo_from_group(
        &mut self,
        t: DateTime<Utc>,
        until: Instant,
    ) -> Res<Option<(String, Option<String>)>> {
        let Some(link) = self.group.clone() else {
            return Ok(None);
        };
        let Some(disks) = link.group.undo_group.clone() else {
            return Ok(None);
        };
        let mut taken = link.group.undo_taken.lock().await;
        let mut request_id = None;
        if taken.is_none() {
            let token = preserve::undo_client_token(&format!("group\n{}", link.group.key));
            let tags = vec![
                (
                    UNDO_TAG.to_owned(),
                    crate::request::IdempotencyKey::derived("group", &link.group.key)
                        .as_str()
                        .to_owned(),
                ),
                (
                    "ecs-rollback:key".to_owned(),
                    preserve::tag_value(&link.group.key),
                ),
            ];
            let name: String = format!("ecs-rollback-undo-{}", link.group.key)
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(128)
                .collect();
            let description = format!(
                "Taken by ecs-rollback before rolling back the disks of {} together",
                self.instance_id().unwrap_or_default()
            );
            self.confirm_holder("CreateSnapshotGroup").await?;
            let mut pause = self.s.poll.initial;
            let ssg = loop {
                self.before_change("CreateSnapshotGroup")?;
                let ask = crate::ecs::SnapshotGroupRequest {
                    disks: crate::ecs::GroupDisks::Disks(&disks),
                    instant_access: None,
                    name: &name,
                    description: &description,
                    tags: &tags,
                    client_token: &token,
                };
                match self.ecs.create_snapshot_group(&self.region, &ask).await {
                    Ok(id) => break id,
                    Err(e) if e.retry == Retry::AfterStateChange && Instant::now() < until => {
                        tracing::warn!(error = %e, "CreateSnapshotGroup not accepted yet; waiting");
                    }
                    Err(e) if e.is_retryable() && Instant::now() < until => {
                        tracing::warn!(error = %e, "CreateSnapshotGroup failed; the same ClientToken is asked again");
                    }
                    Err(e) => {
                        request_id = e.request_id.clone();
                        let h = Halt::fail(ErrorInfo::new(
                            Code::UndoSnapshotFailed,
                            format!("the snapshot-consistent group of the instance's disks (the undo) could not be taken, so no disk was reset: {e}"),
                            false,
                        ));
                        return Err(self.failed("preserve", t, request_id, h));
                    }
                }
                self.wait_a_little(&mut pause).await?;
            };
            let groups = self
                .ecs
                .describe_snapshot_groups(&self.region, std::slice::from_ref(&ssg), None)
                .await
                .map_err(|e| Halt::ecs(Outcome::Failed, &e))?;
            let members: Vec<(String, String)> = groups
                .iter()
                .filter(|g| g.snapshot_group_id == ssg)
                .flat_map(|g| g.snapshots.iter())
                .map(|m| (m.source_disk_id.clone(), m.snapshot_id.clone()))
                .collect();
            // The group's tags on its snapshots are not documented: each snapshot gets the undo
            // tag itself, so no rule ever picks it (only its ID does).
            let ids: Vec<String> = members.iter().map(|(_, s)| s.clone()).collect();
            if let Err(e) = self
                .ecs
                .tag_resources(&self.region, "snapshot", &ids, &tags)
                .await
            {
                tracing::warn!(error = %e, "could not tag the undo group's snapshots");
                self.warnings.push(format!(
                    "the undo group's snapshots could not be tagged {UNDO_TAG} ({e}): a snapshot rule might pick one of them later"
                ));
            }
            tracing::info!(group = %ssg, snapshots = members.len(), "undo: one snapshot-consistent group of the instance's disks");
            self.warnings.push(format!(
                "the undo is the snapshot-consistent group {ssg} of the instance's disks"
            ));
            *taken = Some(members);
        }
        let disk = self.disk_id();
        let mine = taken
            .as_ref()
            .and_then(|m| m.iter().find(|(d, _)| *d == disk))
            .map(|(_, s)| s.clone())
            .ok_or_else(|| {
                Halt::fail(ErrorInfo::new(
                    Code::UndoSnapshotFailed,
                    format!(
                        "the undo group holds no snapshot of {disk}, so the disk was not reset"
                    ),
                    false,
                ))
            })?;
        Ok(Some((mine, request_id)))
    }

    /// When the run ends: the meetings it will not reach are filled with how it ended.
    pub(super) fn leave_group(&self, result: &Res<Outcome>) {
        if let Some(link) = &self.group {
            link.group
                .leave(link.index, result, self.phase() >= Phase::Resetting);
        }
    }
}

impl Group {
    /// Run `index` ended (`reset`: its disk may have been reset): the meetings it will not
    /// reach are filled with how.
    pub(super) fn leave(&self, index: usize, result: &Res<Outcome>, reset: bool) {
        let (ready, arrival) = match result {
            Ok(Outcome::Duplicate | Outcome::Succeeded) => {
                (Ready::Done, Arrival::Ready { has_undo: false })
            }
            Ok(_) => {
                let e = ErrorInfo::new(Code::Failed, "the run ended without a rollback", false);
                (Ready::Out(e.clone()), Arrival::Failed { error: e, reset })
            }
            Err(h) if h.error.retryable => (
                Ready::Out(h.error.clone()),
                Arrival::Retry {
                    error: h.error.clone(),
                },
            ),
            Err(h) => (
                Ready::Out(h.error.clone()),
                Arrival::Failed {
                    error: h.error.clone(),
                    reset,
                },
            ),
        };
        self.before_stop.leave(index, ready);
        self.before_start.leave(index, arrival);
        self.after_undo.leave(index, ());
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

fn first_failure(all: &[Arrival]) -> String {
    all.iter()
        .find_map(|a| match a {
            Arrival::Failed { error, .. } => Some(format!("{}: {}", error.code, error.message)),
            _ => None,
        })
        .unwrap_or_default()
}

fn first_retry(all: &[Arrival]) -> ErrorInfo {
    all.iter()
        .find_map(|a| match a {
            Arrival::Retry { error } => Some(error.clone()),
            _ => None,
        })
        .unwrap_or_else(|| ErrorInfo::new(Code::Failed, "another disk's run ended", true))
}

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
        let picks = match self.pick(req, scope, iid, &disks).await {
            Ok(p) => p.into_iter().map(Ok).collect(),
            Err(e) if !begun.iter().any(|b| *b) => return Err(e),
            Err(e) => vec![Err(e); disks.len()],
        };
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
    if reports
        .iter()
        .filter_map(err)
        .any(|e| e.code == Code::RolledBackToUndo.as_str())
    {
        let holds = reports
            .iter()
            .zip(members)
            .map(|(r, m)| format!("{}: {}", m.disk, disk_holds(r)))
            .collect::<Vec<_>>()
            .join("; ");
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
        let holds = reports
            .iter()
            .zip(members)
            .map(|(r, m)| format!("{}: {}", m.disk, disk_holds(r)))
            .collect::<Vec<_>>()
            .join("; ");
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
            false,
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
