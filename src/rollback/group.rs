//! The disks' runs of a whole-instance request together (docs/rollback-protocol.md, "The
//! instance as the unit"; the request's side, from the plan to the one result, is
//! `whole_instance.rs`): one run per disk, each with its own key and ledger, all in one
//! invocation: one hold on the instance, and two meetings. Before the stop, every disk's run has claimed its disk (a fresh run goes on only
//! if all did). Before the start, every disk's reset has ended or failed, and the verdict
//! (`instance_plan::verdict`) says whether the instance starts, is left stopped
//! (`PartialRollback`) or the delivery ends for the next one to go on.

use std::sync::Mutex;

use tokio::sync::watch;

use super::*;
use crate::instance_plan::{self, Arrival, Verdict};
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
    pub(super) fn leave(&self, i: usize, v: T) {
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
    /// Each run's undo confirmed (`false`: it could not be made, or the run ended): the
    /// instance starts only when every one is.
    pub(super) after_undo: Meeting<bool>,
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
    pub(super) fn new(
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
        // An undo an earlier delivery began (its mark): the verdict stands (`verdict`).
        let undoing = has_undo
            && self.read_mark().await?.is_some_and(|m| {
                matches!(
                    m.stage,
                    crate::verify::Stage::Undoing | crate::verify::Stage::UndoReset
                )
            });
        let all = link
            .group
            .before_start
            .meet(link.index, Arrival::Ready { has_undo, undoing })
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
        let reset =
            self.may_have_reset() && self.record.as_ref().is_some_and(|r| r.failure.is_none());
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
                let undone = link.group.after_undo.meet(link.index, true).await;
                if undone.iter().all(|u| *u) {
                    self.restore_after_failure(error).await
                } else {
                    // A disk could not go back: the instance stays stopped (the undone disks
                    // and the others are not one point in time).
                    Err(Halt::fail(error))
                }
            }
            Verdict::Retry | Verdict::LeaveStopped => Err(Halt::fail(error)),
        }
    }

    /// Verdict `Undo`: this disk back to its undo snapshot (the disk as it was before the
    /// request) while the instance is Stopped, the mark saying `undoing` before the call and
    /// `undo reset` after it (a crash repeats the reset to the undo snapshot, never once it says
    /// so), then, with every disk back, the start; the result says what was undone.
    async fn undo_for_group(&mut self, link: &Link, all: &[Arrival]) -> Res<()> {
        let undone = self.undo_reset_for_group().await;
        let all_undone = link.group.after_undo.meet(link.index, undone.is_ok()).await;
        undone?;
        if !all_undone.iter().all(|u| *u) {
            return Err(Halt::fail(ErrorInfo::new(
                Code::PartialRollback,
                format!(
                    "another disk of the instance could not be rolled back ({}), and the undo of another disk could not be completed: the instance is left stopped; this disk is back on its undo snapshot. Send the request again to go on with the undo",
                    first_failure(all)
                ),
                true,
            )));
        }
        let iid = self.instance_id().unwrap_or_default();
        let undo = self
            .record
            .as_ref()
            .and_then(|r| r.undo.clone())
            .unwrap_or_default();
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

    /// This disk back to its undo snapshot, while Stopped, once the reset to the target is seen
    /// to have ended (a `DiskResetInProgress` is the undo's own only when an earlier delivery's
    /// mark says it was asked).
    async fn undo_reset_for_group(&mut self) -> Res<()> {
        let t = self.now();
        let undo = self
            .record
            .as_ref()
            .and_then(|r| r.undo.clone())
            .ok_or_else(|| Halt::fail(ErrorInfo::new(Code::Internal, "no undo snapshot", false)))?;
        let iid = self.instance_id().unwrap_or_default();
        let disk = self.disk_id();
        let mark = self.read_mark().await?.map(|m| m.stage);
        if mark != Some(crate::verify::Stage::UndoReset) {
            let asked_before = mark == Some(crate::verify::Stage::Undoing);
            self.write_mark(1, crate::verify::Stage::Undoing, None)
                .await?;
            let until = Instant::now() + self.wait_budget(self.s.reset_timeout);
            let mut pause = self.s.poll.initial;
            let request_id = loop {
                self.before_change("ResetDisk")?;
                self.confirm_holder("ResetDisk (undo)").await?;
                if self.read_instance(&iid).await?.status != "Stopped" {
                    return Err(Halt::fail(ErrorInfo::new(
                        Code::RollbackInProgress,
                        "the instance is not Stopped before the undo's reset; nothing was reset",
                        true,
                    )));
                }
                match self.ecs.reset_disk(&self.region, &disk, &undo, false).await {
                    Ok(ack) => break Some(ack.request_id),
                    // Ours only when an earlier delivery had asked it (its mark); otherwise the
                    // reset to the target still runs: asked again once it ended.
                    Err(e) if e.is_code("InvalidOperation.DiskResetInProgress") && asked_before => {
                        break None
                    }
                    Err(e)
                        if e.is_code("InvalidOperation.DiskResetInProgress")
                            && Instant::now() < until =>
                    {
                        tracing::info!("the reset to the target still runs; the undo waits for it");
                    }
                    Err(e) => {
                        let mut h = Halt::ecs(Outcome::Failed, &e);
                        h.error.retryable = e.can_pass()
                            || e.may_have_applied
                            || e.is_code("InvalidOperation.DiskResetInProgress");
                        return Err(h);
                    }
                }
                self.wait_a_little(&mut pause).await?;
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
        Ok(())
    }

    /// When the run ends: the meetings it will not reach are filled with how it ended.
    pub(super) fn leave_group(&self, result: &Res<Outcome>) {
        if let Some(link) = &self.group {
            link.group.leave(link.index, result, self.may_have_reset());
        }
    }

    /// Whether this disk may have been reset by its key: its record past `resetting`, or, once
    /// final, a reset asked by this delivery or an earlier one (a record that went from
    /// `claimed` to `failed` reset nothing).
    fn may_have_reset(&self) -> bool {
        // At `resetting`, a ResetDisk refused outright reset nothing; one whose answer was
        // unclear, or asked by an earlier delivery, may have.
        let asked = self.reset_unclear
            || self.resumed_from.is_some_and(|p| p >= Phase::Resetting)
            || self
                .steps
                .iter()
                .any(|s| s.name == "reset" && s.status == StepStatus::Done);
        match self.phase() {
            Phase::Failed | Phase::Done | Phase::Resetting => asked,
            p => p > Phase::Resetting,
        }
    }
}

impl Group {
    /// Run `index` ended (`reset`: its disk may have been reset): the meetings it will not
    /// reach are filled with how.
    pub(super) fn leave(&self, index: usize, result: &Res<Outcome>, reset: bool) {
        let (ready, arrival) = match result {
            Ok(Outcome::Duplicate | Outcome::Succeeded) => (
                Ready::Done,
                Arrival::Ready {
                    has_undo: false,
                    undoing: false,
                },
            ),
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
        self.after_undo.leave(index, false);
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
