//! The rollback state machine (docs/rollback-protocol.md). This file holds the map: the
//! transition table that `drive` executes, then the public entry point. Each step lives in a
//! file of its own, which reads as: what it requires, the ledger write, the call, what it
//! records: `stop.rs`, `preserve.rs` (the undo snapshot), `reset.rs`, `start.rs`,
//! `finish.rs` (the end, and the restore after a failure). Around them: `plan.rs` (from what
//! was read to a decision, the claim, the preflight), `dry_run.rs`, `ledger_io.rs` (phase
//! writes, the claim contest, the confirmation before a call), `read.rs` (ECS reads and polls),
//! `halt.rs` (how a run ends early, and the report's steps).
//!
//! Invariants, each enforced right before the call it guards:
//! - ResetDisk only after a fresh read shows the instance `Stopped`;
//! - never ResetDisk once the ledger says `starting` (or later) for the key;
//! - no state-changing call unless the ledger write before it succeeded (the StartInstance that
//!   brings an instance back excepted: it never harms the disk);
//! - StopInstance, CreateSnapshot and ResetDisk only after a ledger read shows the record is
//!   still this run's;
//! - the power state to restore, and the instance, come from the run record, never from what
//!   the instance or the disk look like now;
//! - any failure whose cause cannot pass brings a running instance back before reporting.

mod cadence;
mod dry_run;
mod finish;
mod group;
mod halt;
mod instance_hold;
mod lease;
mod ledger_io;
mod plan;
mod preserve;
mod read;
mod reset;
mod start;
mod stop;
mod verify;
mod whole_instance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use halt::{refuse_ledger, Halt, Res};
use lease::Lease;
pub use preserve::undo_client_token;

use crate::claim;
use crate::ecs::model::{Disk, Instance, Snapshot};
use crate::ecs::{
    DiskQuery, EcsClient, EcsError, InstanceQuery, Retry, SnapshotQuery, StopOptions,
};
use crate::errors::Code;
use crate::ledger::{self, Decision, History, Ledger, Phase, RunRecord};
use crate::poller::StatusCache;
use crate::preflight::{self, Plan};
use crate::report::{ErrorInfo, Outcome, Report, Step, StepStatus, Target};
use crate::request::{RollbackRequest, SnapshotChoice};
use crate::settings::Settings;

pub(crate) use crate::settings::DEADLINE_MARGIN;
/// No state-changing call (ECS, or a ledger tag write) leaves later than this before the
/// invocation's deadline: a claim lapses at the deadline (plus `claim::DEADLINE_GRACE_SECS`),
/// and another delivery may take the disk over then, so a run must have stopped changing
/// anything by that time, whether or not the platform kills it.
const SEND_GUARD: Duration = Duration::from_millis(500);
/// Tries of one idempotent ledger operation (a tag write or removal).
const LEDGER_ATTEMPTS: u32 = 10;
/// The tag that marks an undo snapshot with the key digest of the run that took it.
pub use crate::ledger::UNDO_TAG;
/// Internal: the ledger read after winning the claim contest decides otherwise than the read
/// the plan came from; `execute` plans again. Never reported as such.
const LEDGER_CHANGED: &str = "LedgerChanged";
/// Manual snapshots a disk may have (CreateSnapshot: "has reached 256").
pub const MAX_MANUAL_SNAPSHOTS: usize = 256;

/// Runs rollbacks with one client and one set of settings.
pub struct Rollback<'a> {
    pub ecs: &'a EcsClient,
    pub settings: &'a Settings,
    /// Shared polling, when the run is one of many (a drill).
    pub cache: Option<&'a StatusCache<'a>>,
}

fn unix(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

impl<'a> Rollback<'a> {
    pub fn new(ecs: &'a EcsClient, settings: &'a Settings) -> Self {
        Self {
            ecs,
            settings,
            cache: None,
        }
    }

    pub fn with_cache(mut self, cache: &'a StatusCache<'a>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Runs one request to its end and reports. `deadline` bounds the run (Lambda). A
    /// whole-instance request (`disks`) runs every disk together (`group.rs`).
    pub async fn run(&self, req: &RollbackRequest, deadline: Option<Instant>) -> Report {
        match &req.scope {
            Some(scope) => Box::pin(self.run_instance(req, scope, deadline)).await,
            None => self.run_one(req, deadline, None).await,
        }
    }

    /// One disk's run; `link`: its place in a whole-instance request.
    async fn run_one(
        &self,
        req: &RollbackRequest,
        deadline: Option<Instant>,
        link: Option<group::Link>,
    ) -> Report {
        let lease = Arc::new(Lease::new(self.settings, &req.key.digest(), deadline));
        let mut run = Run {
            ecs: self.ecs,
            s: self.settings,
            req,
            deadline,
            digest: req.key.digest(),
            region: req.region.as_str().to_owned(),
            target: Target {
                region_id: Some(req.region.to_string()),
                instance_id: req.instance.as_ref().map(ToString::to_string),
                disk_id: req.disk.as_ref().map(ToString::to_string),
                snapshot_id: match &req.snapshot {
                    SnapshotChoice::Id(id) => Some(id.to_string()),
                    SnapshotChoice::Newest { .. } => None,
                },
                snapshot_status: None,
                undo_snapshot_id: None,
                disks: None,
            },
            record: None,
            steps: Vec::new(),
            started: Instant::now(),
            downtime_ms: None,
            warnings: Vec::new(),
            invocation: match &link {
                Some(l) => l.group.invocation.clone(),
                None => format!("{:016x}", fastrand::u64(..)),
            },
            group: link.clone(),
            cache: self.cache,
            claimed: false,
            lease: lease.clone(),
            resumed_from: None,
            before: None,
            reset_unclear: false,
            reset_end_seen: false,
            learned: ledger::Durations::default(),
            stop_asked: None,
            verification: None,
            hold: None,
            took_disk: false,
            beside_hold: Default::default(),
            record_unwritten: false,
            history_read: None,
            seen_stopped: None,
            reset_accepted: None,
        };
        if self.settings.require_tag.is_none() {
            run.warnings
                .push("the opt-in check is off (ECS_ROLLBACK_REQUIRE_TAG=none)".into());
        }
        let span = tracing::info_span!(
            "rollback",
            idempotency_key = %req.key.as_str(),
            region = %req.region,
        );
        // `instrument`, not `enter`: a guard held across an await would lend this run's span
        // to whatever else the thread polls meanwhile (another target of a drill).
        // The run, and beside it the keeper of its claim; every state-changing request of either
        // passes the lease's fence first (`lease.rs`).
        let (tag, region) = (claim::claim_tag(&run.invocation), run.region.clone());
        let fence: crate::ecs::client::Fence = {
            let lease = lease.clone();
            Arc::new(move |action: &str| lease.fence(action))
        };
        // Boxed: the run's future is deep, and a drill holds many of them.
        let body = Box::pin(async {
            let result = run.execute().await;
            // A disk of a whole-instance request keeps its claim (its keeper renews it) until
            // every disk's run has ended: the instance's hold is judged live by it.
            let ended = match run.group.clone() {
                Some(l) => {
                    run.leave_group(&result);
                    let mine = (run.finished(&result), run.part_way());
                    Some(l.group.ended.meet(l.index, mine).await)
                }
                None => None,
            };
            lease.stop();
            (result, ended)
        });
        let keeper = lease.keep(self.ecs, &region, &tag);
        let (((mut result, ended), ()), ecs_calls) = crate::ecs::client::counting(
            crate::ecs::client::fenced(fence, futures_util::future::join(body, keeper))
                .instrument(span.clone()),
        )
        .await;
        if lease.is_lost() {
            // Whatever the step reported, the cause is the lapsed claim: nothing more was sent.
            // The outcome stays the step's (`rejected` if nothing had changed yet).
            result = result.map_err(|mut h| {
                h.error.message = format!(
                    "this delivery's claim on the disk could not be renewed within the heartbeat timeout ({} s), so it changed nothing more; the next delivery resumes from the ledger. What it was doing: {}: {}",
                    self.settings.heartbeat_timeout.as_secs(),
                    h.error.code,
                    h.error.message
                );
                h.error.code = Code::ClaimLapsed.into();
                h.error.retryable = true;
                h
            });
        }
        if run.claimed {
            // However the run ended, its claim has done its work.
            run.remove_tag(&claim::claim_tag(&run.invocation))
                .instrument(span.clone())
                .await;
        }
        // The instance's hold: released once the instance is in its final power state (or
        // nothing was changed); kept for the next delivery otherwise.
        match (&run.group, ended) {
            (None, _) => {
                let finished = run.finished(&result);
                run.release_instance(finished)
                    .instrument(span.clone())
                    .await;
            }
            // The group's one hold, released by its first disk's run over every disk's end.
            (Some(l), Some(all)) if l.index == 0 => {
                if let Some((held, _)) = l.group.hold.lock().await.clone() {
                    run.hold = Some(held);
                }
                let finished = all.iter().all(|(f, _)| *f);
                let part_way = all.iter().any(|(_, p)| *p);
                run.release_hold(finished, part_way)
                    .instrument(span.clone())
                    .await;
            }
            (Some(_), _) => run.hold = None,
        }
        if let (Some(cache), Some(iid)) = (run.cache, run.instance_id()) {
            cache.forget(&run.region, &iid).await;
        }
        let _enter = span.enter();
        let (outcome, error) = match result {
            Ok(outcome) => (outcome, None),
            Err(h) => (h.outcome, Some(h.error)),
        };
        let report = Report {
            outcome,
            idempotency_key: Some(req.key.as_str().to_owned()),
            trigger_kind: req.trigger.kind.clone(),
            trigger_id: req.trigger.id.clone(),
            target: run.target,
            steps: run.steps,
            error,
            total_ms: run.started.elapsed().as_millis() as u64,
            downtime_ms: run.downtime_ms,
            reason: req.reason.clone(),
            warnings: run.warnings,
            ecs_calls: Some(ecs_calls),
            verification: run.verification,
        };
        match &report.error {
            None => tracing::info!(
                outcome = outcome.as_str(),
                total_ms = report.total_ms,
                "rollback finished"
            ),
            Some(e) => tracing::warn!(
                outcome = outcome.as_str(),
                code = %e.code,
                retryable = e.retryable,
                error_message = %e.message,
                "rollback finished"
            ),
        }
        report
    }
}

struct Run<'a> {
    ecs: &'a EcsClient,
    s: &'a Settings,
    req: &'a RollbackRequest,
    deadline: Option<Instant>,
    digest: String,
    region: String,
    target: Target,
    /// The run record, once this run holds the disk.
    record: Option<RunRecord>,
    steps: Vec<Step>,
    started: Instant,
    downtime_ms: Option<u64>,
    warnings: Vec<String>,
    /// This invocation's ID: its claim tag on the disk.
    invocation: String,
    cache: Option<&'a StatusCache<'a>>,
    /// The claim tag is on the disk (removed when the run ends).
    claimed: bool,
    /// The claim as a lease: renewed beside the run, and fencing its requests.
    lease: Arc<Lease>,
    /// The phase this key's record was at when this delivery read it (a resume).
    resumed_from: Option<Phase>,
    /// The run record the claim contest's read showed: what this run's own record replaces
    /// (a lagging read may still show it).
    before: Option<RunRecord>,
    /// This delivery issued a ResetDisk whose answer did not say whether it was applied.
    reset_unclear: bool,
    /// Positive evidence that the reset ended was seen, and when (the reset step's end): a
    /// status that left `In_use` and came back, a DryRun that passed after saying a reset runs,
    /// or StartInstance accepted after refusing while it ran. The ledger learns a reset's
    /// duration only from such an end.
    reset_end_seen: bool,
    /// How long the steps took in the disk's last finished rollback (its ledger): where the
    /// waits and the estimates start from.
    learned: ledger::Durations,
    /// When this delivery asked StopInstance (to the millisecond): the downtime's start.
    stop_asked: Option<DateTime<Utc>>,
    /// What the service check found (`verify.rs`).
    verification: Option<crate::report::Verification>,
    /// This run's hold on the instance (`instance_hold.rs`).
    hold: Option<instance_hold::Held>,
    /// This delivery won the disk's claim contest at least once.
    took_disk: bool,
    /// Its place in a whole-instance request (`group.rs`).
    group: Option<group::Link>,
    /// The disk's claim written beside the instance hold (`ledger_io.rs`).
    beside_hold: ledger_io::BesideHold,
    /// The run record is this run's but not on the disk yet: a fresh run that will stop the
    /// instance writes it first as `stopping`, beside the stop's guard read (`stop.rs`).
    record_unwritten: bool,
    /// The disk read during the start's wait, for the final record's history and durations
    /// (`start.rs`, `ledger_io.rs`): one round trip less after Running.
    history_read: Option<Disk>,
    /// The stop's wait saw the instance Stopped in this read of its own (not a shared poll),
    /// answered then: the reset's guard evidence while it is recent (`reset.rs`).
    seen_stopped: Option<(Instance, Instant)>,
    /// When this delivery's ResetDisk was accepted: where the wait for its end anchors its reads.
    reset_accepted: Option<Instant>,
}

/// What one observation of the resources found.
struct Seen {
    disk: Disk,
    instance: Option<Instance>,
    snapshots: Vec<Snapshot>,
}

// ---- the transition table -----------------------------------------------------------------

/// A step of the protocol, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Stop,
    Preserve,
    Reset,
    Start,
    Verify,
    Finish,
}

/// When a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    Always,
    /// `preserveCurrent` asked, or an undo snapshot already begun by an earlier delivery.
    UndoSnapshot,
    /// A `verify` block (the request's or the deployment's), or a check already begun.
    Verify,
}

/// What a failure of the step leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnFailure {
    /// A cause that can pass (retryable) ends the delivery and the ledger keeps the phase; any
    /// other brings the instance back and records the failure (`finish.rs`).
    RetryOrRestore,
    /// The step has already done all that can be done (the start retries until the deadline
    /// and says `InstanceLeftStopped`; the final write says what it could not record).
    Report,
}

/// One row: the step runs while the record's phase is below `until`.
#[derive(Clone, Copy, Debug)]
struct Transition {
    action: Action,
    until: Phase,
    when: When,
    on_failure: OnFailure,
}

/// The protocol, as `drive` executes it. A run record that carries a failure code (`f=`) skips
/// the table: it was bringing the instance back, and goes on doing so.
const TRANSITIONS: [Transition; 6] = [
    // claimed | stopping -> stopped
    Transition {
        action: Action::Stop,
        until: Phase::Stopped,
        when: When::Always,
        on_failure: OnFailure::RetryOrRestore,
    },
    // stopped | preserving -> preserved
    Transition {
        action: Action::Preserve,
        until: Phase::Preserved,
        when: When::UndoSnapshot,
        on_failure: OnFailure::RetryOrRestore,
    },
    // stopped | preserved | resetting -> reset
    Transition {
        action: Action::Reset,
        until: Phase::Reset,
        when: When::Always,
        on_failure: OnFailure::RetryOrRestore,
    },
    // reset | starting -> (running, or the reset seen to end)
    Transition {
        action: Action::Start,
        until: Phase::Verifying,
        when: When::Always,
        on_failure: OnFailure::Report,
    },
    // (running) | verifying -> verified (or a final record saying otherwise: `verify.rs`)
    Transition {
        action: Action::Verify,
        until: Phase::Done,
        when: When::Verify,
        on_failure: OnFailure::Report,
    },
    // -> done, the key in the history
    Transition {
        action: Action::Finish,
        until: Phase::Done,
        when: When::Always,
        on_failure: OnFailure::Report,
    },
];

impl Run<'_> {
    /// Runs the transitions from where the record is.
    async fn drive(&mut self) -> Res<Outcome> {
        let record = self.record()?;
        if let Some(code) = record.failure.clone() {
            // A run that was bringing the instance back after a failure.
            // A disk of a whole-instance request meets the others first (`group.rs`).
            return self
                .group_failed(ErrorInfo::new(
                    &code,
                    "the run failed (recorded by an earlier delivery)",
                    false,
                ))
                .await;
        }
        // A disk of a whole-instance request meets the others before anything changes.
        self.meet_before_stop().await?;
        for t in TRANSITIONS {
            if self.phase() >= t.until || !self.applies(t.when) {
                continue;
            }
            let done = match t.action {
                Action::Stop => self.stop().await,
                Action::Preserve => self.preserve_current().await,
                Action::Reset => self.reset().await,
                Action::Start => self.finish_reset_and_start().await,
                // Boxed: the check is a deep future of its own (and a drill holds many runs).
                Action::Verify => Box::pin(self.verify()).await,
                Action::Finish => return self.finish().await,
            };
            match (done, t.on_failure) {
                (Ok(()), _) => {}
                // A run that may no longer hold the disk brings nothing back either.
                (Err(h), _) if self.lease.is_lost() => return Err(h),
                // Its record never reached the disk (`stop.rs`): nothing was changed, and the
                // refusal is reported as it is.
                (Err(h), _) if self.record_unwritten => return Err(h),
                (Err(h), OnFailure::RetryOrRestore) if !h.error.retryable => {
                    // A disk of a whole-instance request brings the instance back only when
                    // no other disk is left reset against it (`group.rs`).
                    return self.group_failed(h.error).await;
                }
                (Err(h), _) => return Err(h),
            }
        }
        Err(Halt::fail(ErrorInfo::new(
            Code::Internal,
            "the transition table ended without finishing",
            false,
        )))
    }

    /// Whether the instance is in its final power state at the run's end (its hold can go).
    fn finished(&self, result: &Res<Outcome>) -> bool {
        match result {
            Ok(outcome) => *outcome == Outcome::Succeeded,
            // A whole-instance request that left the instance stopped on disks from two
            // points in time keeps the hold (with the power state to restore) for whoever
            // finishes it.
            Err(h) if h.error.code == Code::PartialRollback.as_str() => false,
            // A record never written: nothing was changed, the holds found stay.
            Err(h) => !h.error.retryable && self.record.is_some() && !self.record_unwritten,
        }
    }

    /// This delivery took the disk and its record passed `claimed`: something may have changed.
    fn part_way(&self) -> bool {
        self.took_disk
            && self
                .record
                .as_ref()
                .is_some_and(|r| r.phase > Phase::Claimed)
    }

    fn applies(&self, when: When) -> bool {
        match when {
            When::Always => true,
            // A run that began the undo snapshot finishes it, whatever this delivery asks.
            When::UndoSnapshot => {
                self.req.preserve_current.unwrap_or(self.s.preserve_current)
                    || self.phase() == Phase::Preserving
            }
            // A disk of a whole-instance request: the deployment's check is not run per disk
            // (it would check one instance once per disk, and undo one disk alone).
            When::Verify if self.group.is_some() => self.phase() == Phase::Verifying,
            When::Verify => self.verify_plan().is_some() || self.phase() == Phase::Verifying,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_runs_the_steps_in_the_order_of_the_phases() {
        let untils: Vec<Phase> = TRANSITIONS.iter().map(|t| t.until).collect();
        assert!(untils.windows(2).all(|w| w[0] <= w[1]), "{untils:?}");
        let actions: Vec<Action> = TRANSITIONS.iter().map(|t| t.action).collect();
        assert_eq!(
            actions,
            [
                Action::Stop,
                Action::Preserve,
                Action::Reset,
                Action::Start,
                Action::Verify,
                Action::Finish
            ]
        );
        // Every step that can fail with the instance stopped and the disk not yet reset goes
        // through the restore when the cause cannot pass.
        for t in TRANSITIONS.iter().filter(|t| t.until <= Phase::Reset) {
            assert_eq!(t.on_failure, OnFailure::RetryOrRestore, "{t:?}");
        }
        // Only the undo snapshot and the service check depend on the request.
        for t in TRANSITIONS {
            assert_eq!(t.when == When::UndoSnapshot, t.action == Action::Preserve);
            assert_eq!(t.when == When::Verify, t.action == Action::Verify);
        }
    }
}
