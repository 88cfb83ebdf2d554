//! How a run ends early (`Halt`: the outcome and the error it reports), and the bookkeeping
//! every step shares: the steps of the report, the deadline, the run record's phase.

use super::*;

/// Why a run ended early: the outcome it reports and the error.
#[derive(Debug)]
pub(super) struct Halt {
    pub(super) outcome: Outcome,
    pub(super) error: ErrorInfo,
}

impl Halt {
    pub(super) fn reject(
        code: impl AsRef<str>,
        message: impl Into<String>,
        retryable: bool,
    ) -> Self {
        Self {
            outcome: Outcome::Rejected,
            error: ErrorInfo::new(code, message, retryable),
        }
    }
    pub(super) fn fail(error: ErrorInfo) -> Self {
        Self {
            outcome: Outcome::Failed,
            error,
        }
    }
    pub(super) fn ecs(outcome: Outcome, e: &EcsError) -> Self {
        Self {
            outcome,
            error: ErrorInfo::from_ecs(e),
        }
    }
}

pub(super) type Res<T> = Result<T, Halt>;

/// The ledger could not be written before anything changed: refuse, saying why.
pub(super) fn refuse_ledger(e: &EcsError) -> Halt {
    // The 20-tag quota: 400 `OperationDenied.QuotaExceed` or 403 `QuotaExceed.Tags`
    // (ecs-evidence.md §2, C1).
    let quota = e.is_code("OperationDenied.QuotaExceed") || e.is_code("QuotaExceed.Tags");
    Halt::reject(
        Code::LedgerUnavailable,
        if quota {
            format!(
                "the disk carries too many tags for the ledger (up to 5 of its 20 are needed): {e}"
            )
        } else {
            format!("could not write the ledger tags on the disk: {e}")
        },
        e.can_pass() && !quota,
    )
}

impl Run<'_> {
    /// The time as ECS's clock reads it (`ecs::clock`): every time the ledger stores or
    /// compares, and the report's step times, come from it.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.ecs.now()
    }

    pub(super) fn step(
        &mut self,
        name: &str,
        status: StepStatus,
        started_at: DateTime<Utc>,
        request_id: Option<String>,
        detail: Option<String>,
    ) {
        tracing::info!(step = name, status = ?status, detail = detail.as_deref().unwrap_or(""), "step");
        self.steps.push(Step {
            name: name.into(),
            status,
            started_at,
            finished_at: self.now(),
            request_id: request_id.filter(|r| !r.is_empty()),
            detail,
        });
    }

    /// Time left before the deadline, margin kept; `None` without a deadline.
    pub(super) fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_MARGIN)
        })
    }

    /// Past the last moment a state-changing call may leave ([`SEND_GUARD`]).
    pub(super) fn past_send_horizon(&self) -> bool {
        self.lease.past_send_horizon()
    }

    /// Before a state-changing ECS call: refused (retryable, nothing sent) once the deadline is
    /// too close; the ledger keeps the phase and the next delivery, which may take the disk
    /// over as soon as this one's claim lapses, goes on from there.
    pub(super) fn before_change(&self, what: &str) -> Res<()> {
        if !self.past_send_horizon() {
            return Ok(());
        }
        Err(Halt {
            outcome: self.failed_or_rejected(),
            error: ErrorInfo::new(
                Code::DeadlineExceeded,
                format!("{what} was not asked: the invocation's deadline is too close, and a run changes nothing once its claim may lapse; the next delivery goes on from the ledger"),
                true,
            ),
        })
    }

    /// How long each step took in this delivery (the steps it finished itself), in ms.
    pub(super) fn measured(&self) -> ledger::Durations {
        let took = |name: &str| {
            self.steps
                .iter()
                .rev()
                .find(|s| s.name == name && s.status == StepStatus::Done)
                .map(|s| (s.finished_at - s.started_at).num_milliseconds().max(0) as u64)
        };
        ledger::Durations {
            stop: took("stop"),
            reset: took("reset").filter(|_| self.reset_end_seen),
            start: took("start"),
            snapshot: took("preserve"),
        }
    }

    /// A step's estimate for a deadline: the configured one, or less when this disk's last
    /// rollback measured the step (twice that, and 10 s more, is still expected to be enough).
    pub(super) fn estimate(&self, configured: Duration, learned: Option<u64>) -> Duration {
        match learned {
            Some(ms) => configured.min(Duration::from_millis(ms) * 2 + Duration::from_secs(10)),
            None => configured,
        }
    }

    /// Refuses to start work estimated at `need` that cannot finish before the deadline.
    pub(super) fn fits(&self, what: &str, need: Duration) -> Res<()> {
        match self.time_left() {
            Some(left) if left < need => Err(Halt {
                outcome: self.failed_or_rejected(),
                error: ErrorInfo::new(
                    Code::DeadlineExceeded,
                    format!(
                        "{what} needs about {}s and {}s are left; stopped at a step boundary, the next delivery resumes",
                        need.as_secs(),
                        left.as_secs()
                    ),
                    true,
                ),
            }),
            _ => Ok(()),
        }
    }

    /// How long a wait may last: its timeout, or less if the deadline is nearer.
    pub(super) fn wait_budget(&self, timeout: Duration) -> Duration {
        match self.time_left() {
            Some(left) => left.min(timeout),
            None => timeout,
        }
    }

    pub(super) fn timed_out(&self, what: &str, timeout: Duration) -> Halt {
        let deadline_first = self.time_left().is_some_and(|l| l < timeout);
        let code = if deadline_first {
            Code::DeadlineExceeded
        } else {
            Code::WaitTimeout
        };
        Halt::fail(ErrorInfo::new(
            code,
            format!(
                "{what}; the ledger keeps the phase, and the next run with this key resumes there"
            ),
            true,
        ))
    }

    /// Records `name` as failed with `h`'s message, and hands `h` back to be returned.
    pub(super) fn failed(
        &mut self,
        name: &str,
        t: DateTime<Utc>,
        request_id: Option<String>,
        h: Halt,
    ) -> Halt {
        self.step(
            name,
            StepStatus::Failed,
            t,
            request_id,
            Some(h.error.message.clone()),
        );
        h
    }

    /// Before this run holds the disk, a failure is a rejection: nothing was touched.
    pub(super) fn failed_or_rejected(&self) -> Outcome {
        // A record not written yet (`stop.rs`): nothing was changed.
        if self.record.is_some() && !self.record_unwritten {
            Outcome::Failed
        } else {
            Outcome::Rejected
        }
    }

    pub(super) fn phase(&self) -> Phase {
        self.record.as_ref().map_or(Phase::Claimed, |r| r.phase)
    }

    /// The run record; every step after the claim has one.
    pub(super) fn record(&self) -> Res<RunRecord> {
        self.record
            .clone()
            .ok_or_else(|| Halt::fail(ErrorInfo::new(Code::Internal, "no run record", false)))
    }
}
