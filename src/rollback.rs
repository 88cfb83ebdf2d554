//! The rollback state machine: preflight, claim, stop, reset, start, finish, with the ledger
//! written before and after every state-changing call (docs/rollback-protocol.md).
//!
//! Invariants, each enforced right before the call it guards:
//! - ResetDisk only after a fresh read shows the instance `Stopped`;
//! - never ResetDisk once the ledger says `starting` (or later) for the key;
//! - no state-changing call unless the ledger write before it succeeded;
//! - the power state to restore comes from the run record, never from what the instance looks
//!   like now;
//! - a failed reset after the stop brings a running instance back before reporting.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::ecs::model::{Disk, Instance, Snapshot};
use crate::ecs::{
    DiskQuery, EcsClient, EcsError, InstanceQuery, Retry, SnapshotQuery, StopOptions,
};
use crate::ledger::{self, Decision, History, Ledger, Phase, RunRecord};
use crate::poller::StatusCache;
use crate::preflight::{self, Plan};
use crate::report::{ErrorInfo, Outcome, Report, Step, StepStatus, Target};
use crate::request::{RollbackRequest, SnapshotChoice};
use crate::settings::Settings;

/// Margin kept before a deadline: the run must still write its ledger and report.
const DEADLINE_MARGIN: Duration = Duration::from_secs(2);
/// Tries of one idempotent ledger operation (a tag write or removal).
const LEDGER_ATTEMPTS: u32 = 10;
/// The tag that marks an undo snapshot with the key digest of the run that took it.
pub const UNDO_TAG: &str = "ecs-rollback:undo-of";
/// Internal: the ledger read after winning the claim contest decides otherwise than the read
/// the plan came from; `execute` plans again. Never reported as such.
const LEDGER_CHANGED: &str = "LedgerChanged";
/// Manual snapshots a disk may have (CreateSnapshot: "has reached 256").
pub const MAX_MANUAL_SNAPSHOTS: usize = 256;

/// CreateSnapshot's `ClientToken` for the undo snapshot of `key`: ASCII, 51 characters (the
/// limit is 64), the same for every delivery of the key.
pub fn undo_client_token(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("ecs-rollback undo snapshot\n{key}").as_bytes());
    let hex: String = hash.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("ecsrb-undo-{hex}")
}

/// Runs rollbacks with one client and one set of settings.
pub struct Rollback<'a> {
    pub ecs: &'a EcsClient,
    pub settings: &'a Settings,
    /// Shared polling, when the run is one of many (a drill).
    pub cache: Option<&'a StatusCache<'a>>,
}

/// Why a run ended early: the outcome it reports and the error.
#[derive(Debug)]
struct Halt {
    outcome: Outcome,
    error: ErrorInfo,
}

impl Halt {
    fn reject(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            outcome: Outcome::Rejected,
            error: ErrorInfo::new(code, message, retryable),
        }
    }
    fn fail(error: ErrorInfo) -> Self {
        Self {
            outcome: Outcome::Failed,
            error,
        }
    }
    fn ecs(outcome: Outcome, e: &EcsError) -> Self {
        Self {
            outcome,
            error: ErrorInfo::from_ecs(e),
        }
    }
}

type Res<T> = Result<T, Halt>;

fn unix(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// StartInstance answers that mean "not yet: the reset (or another operation) still runs".
fn start_not_yet(e: &EcsError) -> bool {
    [
        "DiskError",
        "IncorrectDiskStatus",
        "InvalidOperation.DiskResetInProgress",
        "IncorrectInstanceStatus",
        "InvalidOperation.Conflict",
        "Operation.Conflict",
        "OperationConflict",
    ]
    .iter()
    .any(|c| e.is_code(c))
        || e.is_throttling()
}

/// The ledger could not be written before anything changed: refuse, saying why.
fn refuse_ledger(e: &EcsError) -> Halt {
    let quota = e.is_code("OperationDenied.QuotaExceed");
    Halt::reject(
        "LedgerUnavailable",
        if quota {
            format!("the disk carries too many tags for the ledger (3 of its 20 are needed): {e}")
        } else {
            format!("could not write the ledger tags on the disk: {e}")
        },
        e.is_retryable() && !quota,
    )
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

    /// Runs one request to its end and reports. `deadline` bounds the run (Lambda).
    pub async fn run(&self, req: &RollbackRequest, deadline: Option<Instant>) -> Report {
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
                undo_snapshot_id: None,
            },
            record: None,
            steps: Vec::new(),
            started: Instant::now(),
            downtime_ms: None,
            warnings: Vec::new(),
            invocation: format!("{:016x}", fastrand::u64(..)),
            cache: self.cache,
            claimed: false,
            last_heartbeat: Instant::now(),
            resumed_from: None,
            before: None,
            reset_unclear: false,
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
        let result = run.execute().instrument(span.clone()).await;
        if run.claimed {
            // However the run ended, its claim has done its work.
            run.remove_tag(&ledger::claim_tag(&run.invocation))
                .instrument(span.clone())
                .await;
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
    last_heartbeat: Instant,
    /// The phase this key's record was at when this delivery read it (a resume).
    resumed_from: Option<Phase>,
    /// The run record the claim contest's read showed: what this run's own record replaces
    /// (a lagging read may still show it).
    before: Option<RunRecord>,
    /// This delivery issued a ResetDisk whose answer did not say whether it was applied.
    reset_unclear: bool,
}

/// What one observation of the resources found.
struct Seen {
    disk: Disk,
    instance: Option<Instance>,
    snapshots: Vec<Snapshot>,
}

impl<'a> Run<'a> {
    fn step(
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
            finished_at: Utc::now(),
            request_id: request_id.filter(|r| !r.is_empty()),
            detail,
        });
    }

    fn disk_id(&self) -> String {
        self.target.disk_id.clone().unwrap_or_default()
    }

    fn instance_id(&self) -> Option<String> {
        self.target.instance_id.clone()
    }

    /// Time left before the deadline, margin kept; `None` without a deadline.
    fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_MARGIN)
        })
    }

    /// Refuses to start work estimated at `need` that cannot finish before the deadline.
    fn fits(&self, what: &str, need: Duration) -> Res<()> {
        match self.time_left() {
            Some(left) if left < need => Err(Halt {
                outcome: if self.record.is_some() { Outcome::Failed } else { Outcome::Rejected },
                error: ErrorInfo::new(
                    "DeadlineExceeded",
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
    fn wait_budget(&self, timeout: Duration) -> Duration {
        match self.time_left() {
            Some(left) => left.min(timeout),
            None => timeout,
        }
    }

    fn timed_out(&self, what: &str, timeout: Duration) -> Halt {
        let deadline_first = self.time_left().is_some_and(|l| l < timeout);
        let code = if deadline_first {
            "DeadlineExceeded"
        } else {
            "WaitTimeout"
        };
        Halt::fail(ErrorInfo::new(
            code,
            format!(
                "{what}; the ledger keeps the phase, and the next run with this key resumes there"
            ),
            true,
        ))
    }

    // ---- reading --------------------------------------------------------------------

    async fn read_instance(&self, id: &str) -> Res<Instance> {
        let q = InstanceQuery {
            ids: vec![id.to_owned()],
            ..Default::default()
        };
        let found = self
            .ecs
            .describe_instances(&self.region, &q)
            .await
            .map_err(|e| Halt::ecs(self.failed_or_rejected(), &e))?;
        found
            .into_iter()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| Halt {
                outcome: self.failed_or_rejected(),
                error: ErrorInfo::new(
                    "InvalidInstanceId.NotFound",
                    format!("instance {id} not found in {}", self.region),
                    false,
                ),
            })
    }

    async fn read_disk(&self, id: &str) -> Res<Disk> {
        let q = DiskQuery {
            ids: vec![id.to_owned()],
            ..Default::default()
        };
        let found = self
            .ecs
            .describe_disks(&self.region, &q)
            .await
            .map_err(|e| Halt::ecs(self.failed_or_rejected(), &e))?;
        found
            .into_iter()
            .find(|d| d.disk_id == id)
            .ok_or_else(|| Halt {
                outcome: self.failed_or_rejected(),
                error: ErrorInfo::new(
                    "InvalidDiskId.NotFound",
                    format!("disk {id} not found in {}", self.region),
                    false,
                ),
            })
    }

    /// Reads the instance inside a wait: a failure a retry can fix only costs one poll
    /// (`Ok(None)`: it slept, read again), until the wait's end.
    async fn poll_instance(
        &mut self,
        id: &str,
        until: Instant,
        pause: &mut Duration,
    ) -> Res<Option<Instance>> {
        let read = match self.cache {
            Some(cache) => match cache.get(&self.region, id).await {
                Ok(Some(i)) => Ok(i),
                Ok(None) => Err(Halt {
                    outcome: self.failed_or_rejected(),
                    error: ErrorInfo::new(
                        "InvalidInstanceId.NotFound",
                        format!("instance {id} not found in {}", self.region),
                        false,
                    ),
                }),
                Err(e) => Err(Halt::ecs(self.failed_or_rejected(), &e)),
            },
            None => self.read_instance(id).await,
        };
        match read {
            Ok(i) => Ok(Some(i)),
            Err(h) if h.error.retryable && Instant::now() < until => {
                tracing::warn!(error = %h.error.message, "reading the instance failed; waiting, then reading again");
                self.heartbeat().await;
                tokio::time::sleep(*pause).await;
                *pause = self.s.poll.next(*pause);
                Ok(None)
            }
            Err(h) => Err(h),
        }
    }

    /// Between two polls: refresh the claim if due, sleep `pause`, then grow it.
    async fn wait_a_little(&mut self, pause: &mut Duration) {
        self.heartbeat().await;
        tokio::time::sleep(*pause).await;
        *pause = self.s.poll.next(*pause);
    }

    /// Records `name` as failed with `h`'s message, and hands `h` back to be returned.
    fn failed(
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

    /// Right before a state-changing call: a fresh read when the poll may have been served from
    /// the shared cache (it is stored back for the others). `true` when `status` still holds.
    async fn still(&mut self, id: &str, status: &str) -> Res<bool> {
        let Some(cache) = self.cache else {
            return Ok(true);
        };
        let fresh = self.read_instance(id).await?;
        cache.put(&self.region, &fresh).await;
        Ok(fresh.status == status)
    }

    /// Before this run holds the disk, a failure is a rejection: nothing was touched.
    fn failed_or_rejected(&self) -> Outcome {
        if self.record.is_some() {
            Outcome::Failed
        } else {
            Outcome::Rejected
        }
    }

    /// Reads the disk (with its tags, the ledger), its instance and its snapshots.
    async fn observe(&mut self) -> Res<Seen> {
        let disk = match &self.req.disk {
            Some(id) => self.read_disk(id.as_str()).await?,
            None => {
                let Some(instance) = &self.req.instance else {
                    return Err(Halt::reject("InvalidRequest", "diskId: missing", false));
                };
                let q = DiskQuery {
                    instance_id: Some(instance.to_string()),
                    disk_type: Some("system".into()),
                    ..Default::default()
                };
                let disks = self
                    .ecs
                    .describe_disks(&self.region, &q)
                    .await
                    .map_err(|e| Halt::ecs(Outcome::Rejected, &e))?;
                disks
                    .into_iter()
                    .find(|d| d.disk_type == "system")
                    .ok_or_else(|| {
                        Halt::reject(
                            "InvalidInstanceId.NotFound",
                            format!(
                                "instance {instance} has no system disk in {} (does it exist?)",
                                self.region
                            ),
                            false,
                        )
                    })?
            }
        };
        self.target.disk_id = Some(disk.disk_id.clone());
        let instance_id = if disk.instance_id.is_empty() {
            self.req.instance.as_ref().map(ToString::to_string)
        } else {
            Some(disk.instance_id.clone())
        };
        let instance = match &instance_id {
            Some(id) if !disk.instance_id.is_empty() => Some(self.read_instance(id).await?),
            _ => None,
        };
        self.target.instance_id = instance_id;
        let q = SnapshotQuery {
            disk_id: Some(disk.disk_id.clone()),
            ..Default::default()
        };
        let snapshots = self
            .ecs
            .describe_snapshots(&self.region, &q)
            .await
            .map_err(|e| Halt::ecs(self.failed_or_rejected(), &e))?;
        Ok(Seen {
            disk,
            instance,
            snapshots,
        })
    }

    // ---- the run --------------------------------------------------------------------

    /// Runs the request; when the ledger read after winning the claim contest says something
    /// else than the read the plan was made from, plans again from a new read (a few times).
    async fn execute(&mut self) -> Res<Outcome> {
        let (steps, warnings) = (self.steps.len(), self.warnings.len());
        let mut replans = 0;
        loop {
            match self.execute_once().await {
                Err(h) if h.error.code == LEDGER_CHANGED => {
                    // Nothing was changed yet by this delivery: give the claim back, read again.
                    self.release_claim().await;
                    self.record = None;
                    self.resumed_from = None;
                    self.before = None;
                    self.steps.truncate(steps);
                    self.warnings.truncate(warnings);
                    replans += 1;
                    if replans >= 3 {
                        return Err(Halt::reject(
                            "RollbackInProgress",
                            format!("the disk's ledger kept changing while this run claimed it ({}); nothing was done", h.error.message),
                            true,
                        ));
                    }
                    tracing::info!(reason = %h.error.message, "the ledger changed before the claim was won; planning again");
                }
                other => return other,
            }
        }
    }

    async fn execute_once(&mut self) -> Res<Outcome> {
        let t0 = Utc::now();
        let mut seen = self.observe().await?;
        let ledger = Ledger::from_tags(
            seen.disk
                .tags
                .tag
                .iter()
                .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
        );
        let now = Utc::now();
        let decision = self.decide(&ledger);
        tracing::info!(decision = ?decision, "ledger read");
        let planned = decision.clone();
        let takeover = match decision {
            Decision::Superseded { completed_at } => {
                let when = |t: i64| {
                    DateTime::from_timestamp(t, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                };
                let detail = format!(
                    "superseded: the disk's last rollback completed at {}, after this request was made ({}); rolling back now would undo it, so nothing was touched",
                    when(completed_at),
                    self.req.trigger.time.map(|t| t.to_rfc3339()).unwrap_or_default()
                );
                self.warnings.push(detail.clone());
                self.step("preflight", StepStatus::Skipped, t0, None, Some(detail));
                return Ok(Outcome::Superseded);
            }
            Decision::Duplicate => {
                self.step(
                    "preflight",
                    StepStatus::Skipped,
                    t0,
                    None,
                    Some("this key already rolled the disk back".into()),
                );
                if let Some(run) = &ledger.run {
                    if run.key == ledger::run_key(&self.digest) {
                        self.target.snapshot_id = Some(run.snapshot.clone());
                        self.target.undo_snapshot_id = run.undo.clone();
                    }
                }
                return Ok(Outcome::Duplicate);
            }
            Decision::AlreadyFailed { code } => {
                return Err(Halt::fail(ErrorInfo::new(
                    &code,
                    "this idempotency key already failed; nothing was touched this time (send a new key to try again)",
                    false,
                )));
            }
            Decision::HeldByOther { key, phase, since } => {
                return Err(Halt::reject(
                    "RollbackInProgress",
                    format!(
                        "another rollback (key digest {key}) holds the disk, phase {phase} since {}",
                        DateTime::from_timestamp(since, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
                    ),
                    true,
                ));
            }
            Decision::Cooldown { remaining_secs } => {
                return Err(Halt::reject(
                    "CooldownActive",
                    format!("the disk was rolled back recently; the cooldown has {remaining_secs}s left (ECS_ROLLBACK_COOLDOWN_SECONDS)"),
                    false,
                ));
            }
            Decision::Unreadable(v) => {
                return Err(Halt::reject(
                    "LedgerUnavailable",
                    format!("the tag {} holds {v:?}, which is not a run record; remove it by hand once no rollback runs", ledger::RUN_TAG),
                    false,
                ));
            }
            Decision::Resume(record) => {
                if self.req.dry_run {
                    return Err(Halt::reject(
                        "RollbackInProgress",
                        "a run with this key is part-way; a dry run does not resume it",
                        true,
                    ));
                }
                self.target.snapshot_id = Some(record.snapshot.clone());
                self.target.undo_snapshot_id = record.undo.clone();
                self.record = Some(record.clone());
                self.resumed_from = Some(record.phase);
                // The instance this run stopped is the one to act on and bring back, wherever
                // the disk is attached now (detached meanwhile: still that one).
                if let Some(iid) = record.instance.clone() {
                    if seen.instance.as_ref().map(|i| i.instance_id.as_str()) != Some(iid.as_str())
                    {
                        seen.instance = self.read_instance(&iid).await.ok();
                        self.target.instance_id = Some(iid);
                    }
                }
                // A twin of this key may be running right now: contest the disk like anyone
                // else before acting (the failure path below acts too).
                match self.take_claim().await {
                    Ok(fresh) => self.same_plan(&fresh, &planned)?,
                    Err(h) if h.error.retryable || h.error.code == LEDGER_CHANGED => return Err(h),
                    Err(h) => {
                        // The ledger refuses this run for good (quota, permission): it cannot
                        // record anything, but the instance it stopped must not stay stopped.
                        self.step(
                            "claim",
                            StepStatus::Failed,
                            t0,
                            None,
                            Some(h.error.message.clone()),
                        );
                        return self.restore_after_failure(h.error).await;
                    }
                }
                if let Err(h) = self.resume_checks(&seen, &record) {
                    self.step(
                        "preflight",
                        StepStatus::Failed,
                        t0,
                        None,
                        Some(h.error.message.clone()),
                    );
                    // A run that cannot go on brings the instance back, whatever its phase
                    // (a start waits out a reset still running); only a cause that can pass
                    // is left to the next delivery.
                    if h.error.retryable {
                        return Err(h);
                    }
                    return self.restore_after_failure(h.error).await;
                }
                self.step(
                    "preflight",
                    StepStatus::Done,
                    t0,
                    None,
                    Some(format!("resuming at phase {}", record.phase)),
                );
                None
            }
            Decision::TakeOver(stale) => Some(stale),
            Decision::Claim => None,
        };
        if self.record.is_none() {
            let mut plan = self.preflight(&seen, now).await.inspect_err(|h| {
                self.steps.push(Step {
                    name: "preflight".into(),
                    status: StepStatus::Failed,
                    started_at: t0,
                    finished_at: Utc::now(),
                    request_id: h.error.request_id.clone(),
                    detail: Some(h.error.message.clone()),
                });
            })?;
            if let Some(stale) = &takeover {
                // The truth about the instance before anyone touched it is in the stale record.
                plan.was_running = stale.was_running;
                if self.req.start_after_reset.is_none() {
                    plan.end_running = stale.was_running && seen.instance.is_some();
                }
                self.warnings.push(format!(
                    "took over an abandoned run (key digest {}, phase {})",
                    stale.key, stale.phase
                ));
            }
            self.target.snapshot_id = Some(plan.snapshot_id.clone());
            self.step(
                "preflight",
                StepStatus::Done,
                t0,
                None,
                Some(format!(
                    "snapshot {}, instance {}",
                    plan.snapshot_id,
                    if plan.was_running {
                        "running"
                    } else {
                        "stopped"
                    }
                )),
            );
            if self.req.dry_run {
                return self.dry_run(&seen, &plan).await;
            }
            let stop_needed = seen
                .instance
                .as_ref()
                .is_some_and(|i| i.status == "Running");
            let mut need = self.s.estimate_reset;
            if stop_needed {
                need += self.s.estimate_stop;
            }
            if plan.end_running {
                need += self.s.estimate_start;
            }
            self.fits("the rollback", need)?;
            let instance = seen.instance.as_ref().map(|i| i.instance_id.clone());
            self.claim(&plan, takeover.as_ref(), instance, &planned)
                .await?;
        }
        self.drive().await
    }

    /// The decision for this request on what `ledger` says.
    fn decide(&self, ledger: &Ledger) -> Decision {
        ledger::decide_request(
            ledger,
            &self.digest,
            unix(Utc::now()),
            self.s.lease.as_secs() as i64,
            self.s.cooldown.as_secs() as i64,
            self.req.trigger.time.map(|t| t.timestamp()),
        )
    }

    /// After winning the claim contest: the read the contest made is newer than the one the
    /// plan came from. If it decides otherwise (a twin finished meanwhile, another key rolled
    /// the disk back), the plan is void: `LEDGER_CHANGED`, and `execute` plans again.
    fn same_plan(&mut self, fresh: &Ledger, planned: &Decision) -> Res<()> {
        self.before = fresh.run.clone();
        let now = self.decide(fresh);
        if &now == planned {
            return Ok(());
        }
        Err(Halt::fail(ErrorInfo::new(
            LEDGER_CHANGED,
            format!("planned {planned:?}, the ledger now says {now:?}"),
            true,
        )))
    }

    /// A resumed run checks only what it did not change itself: locks, and, before its reset,
    /// the opt-in tag and the snapshot. Its own stop is why the instance is Stopped, its own
    /// reset why the disk is busy.
    fn resume_checks(&self, seen: &Seen, record: &RunRecord) -> Res<()> {
        if let Some(i) = &seen.instance {
            preflight::check_locks("instance", &i.lock_reasons()).map_err(Halt::fail)?;
        }
        // Until a reset is known accepted, the disk must still be where the run found it: one
        // detached meanwhile (or moved) is someone else's business now. Its instance, the one
        // the run stopped, is brought back by the caller.
        if let Some(iid) = record
            .instance
            .as_ref()
            .filter(|_| record.phase < Phase::Reset)
        {
            if seen.disk.instance_id != *iid {
                let reset = if record.phase == Phase::Resetting {
                    "an earlier delivery of this key had announced its reset, which may have run; it is not issued again"
                } else {
                    "it is not reset"
                };
                return Err(Halt::fail(ErrorInfo::new(
                    "DiskNotAttached",
                    format!(
                        "the disk was detached from instance {iid} while the run was part-way (now attached to {:?}); {reset}",
                        seen.disk.instance_id
                    ),
                    false,
                )));
            }
        }
        if record.phase.reset_issued() {
            return Ok(());
        }
        if let Some(tag) = &self.s.require_tag {
            if !preflight::opted_in(tag, &seen.disk, seen.instance.as_ref()) {
                return Err(Halt::fail(ErrorInfo::new(
                    "NotOptedIn",
                    format!(
                        "the opt-in tag {}={} was removed while the run was part-way",
                        tag.0, tag.1
                    ),
                    false,
                )));
            }
        }
        let there = seen
            .snapshots
            .iter()
            .any(|s| s.snapshot_id == record.snapshot && s.is_ready());
        if !there {
            return Err(Halt::fail(ErrorInfo::new(
                "InvalidSnapshotId.NotFound",
                format!("snapshot {} is gone or no longer ready", record.snapshot),
                false,
            )));
        }
        Ok(())
    }

    async fn preflight(&mut self, seen: &Seen, now: DateTime<Utc>) -> Res<Plan> {
        let checked = preflight::check(
            self.req,
            &seen.disk,
            seen.instance.as_ref(),
            &seen.snapshots,
            self.s.require_tag.as_ref(),
            now,
        );
        match checked {
            Ok(plan) => {
                let manual = seen
                    .snapshots
                    .iter()
                    .filter(|s| !s.snapshot_type.eq_ignore_ascii_case("auto"))
                    .count();
                if self.req.preserve_current.unwrap_or(self.s.preserve_current)
                    && manual >= MAX_MANUAL_SNAPSHOTS
                {
                    // CreateSnapshot would refuse after the stop: refuse before touching anything.
                    return Err(Halt::reject(
                        "QuotaExceed.Snapshot",
                        format!("the disk has {manual} manual snapshots, the most it may have ({MAX_MANUAL_SNAPSHOTS}): no room for the undo snapshot (preserveCurrent)"),
                        false,
                    ));
                }
                Ok(plan)
            }
            Err(e) if e.code == "InvalidSnapshotId.NotFound" => {
                // Tell "not of this disk" (the API's Mismatch) from "does not exist".
                if let SnapshotChoice::Id(id) = &self.req.snapshot {
                    let q = SnapshotQuery {
                        ids: vec![id.to_string()],
                        ..Default::default()
                    };
                    if let Ok(found) = self.ecs.describe_snapshots(&self.region, &q).await {
                        if let Some(s) = found.iter().find(|s| s.snapshot_id == id.as_str()) {
                            return Err(Halt::reject(
                                "InvalidParameter.Mismatch",
                                format!(
                                    "snapshot {id} was taken of {}, not of {}",
                                    s.source_disk_id, seen.disk.disk_id
                                ),
                                false,
                            ));
                        }
                    }
                }
                Err(Halt {
                    outcome: Outcome::Rejected,
                    error: e,
                })
            }
            Err(e) => Err(Halt {
                outcome: Outcome::Rejected,
                error: e,
            }),
        }
    }

    /// Every check, plus the DryRun of each call that can be dry-run now. Nothing changes.
    async fn dry_run(&mut self, seen: &Seen, plan: &Plan) -> Res<Outcome> {
        let disk = self.disk_id();
        let running = seen
            .instance
            .as_ref()
            .is_some_and(|i| i.status == "Running");
        let opts = StopOptions {
            force_stop: self.req.force_stop,
            dry_run: true,
            ..Default::default()
        };
        if let Some(iid) = self.instance_id().filter(|_| running) {
            let t = Utc::now();
            let ack = self
                .ecs
                .stop_instance(&self.region, &iid, &opts)
                .await
                .map_err(|e| Halt::ecs(Outcome::Rejected, &e))?;
            self.step(
                "stop",
                StepStatus::DryRun,
                t,
                Some(ack.request_id),
                Some("StopInstance DryRun passed (StoppedMode=KeepCharging)".into()),
            );
            let t = Utc::now();
            self.step(
                "reset",
                StepStatus::Planned,
                t,
                None,
                Some(format!(
                    "ResetDisk {disk} to {} once Stopped (cannot be dry-run while Running)",
                    plan.snapshot_id
                )),
            );
        } else {
            let t = Utc::now();
            self.step(
                "stop",
                StepStatus::Skipped,
                t,
                None,
                Some("the instance is not running".into()),
            );
            let t = Utc::now();
            let ack = self
                .ecs
                .reset_disk(&self.region, &disk, &plan.snapshot_id, true)
                .await
                .map_err(|e| Halt::ecs(Outcome::Rejected, &e))?;
            self.step(
                "reset",
                StepStatus::DryRun,
                t,
                Some(ack.request_id),
                Some(format!(
                    "ResetDisk {disk} to {} DryRun passed",
                    plan.snapshot_id
                )),
            );
        }
        if self.req.preserve_current.unwrap_or(self.s.preserve_current) {
            // CreateSnapshot has no DryRun: said, not tried.
            self.step(
                "preserve",
                StepStatus::Skipped,
                Utc::now(),
                None,
                Some(format!(
                    "would snapshot {disk} after the stop and before the reset (preserveCurrent); CreateSnapshot has no dry run"
                )),
            );
        }
        let t = Utc::now();
        match self.instance_id() {
            Some(iid) if plan.end_running && !running => {
                let ack = self
                    .ecs
                    .start_instance(&self.region, &iid, true)
                    .await
                    .map_err(|e| Halt::ecs(Outcome::Rejected, &e))?;
                self.step(
                    "start",
                    StepStatus::DryRun,
                    t,
                    Some(ack.request_id),
                    Some("StartInstance DryRun passed".into()),
                );
            }
            Some(_) if plan.end_running => {
                self.step(
                    "start",
                    StepStatus::Planned,
                    t,
                    None,
                    Some("StartInstance after the reset".into()),
                );
            }
            _ => self.step(
                "start",
                StepStatus::Skipped,
                t,
                None,
                Some("the instance stays stopped".into()),
            ),
        }
        Ok(Outcome::DryRun)
    }

    // ---- the ledger -----------------------------------------------------------------

    /// Runs an idempotent ledger operation (writing or removing tags), repeating it with
    /// backoff when its answer was lost or refused for a reason a retry can fix.
    async fn idempotent<F, Fut>(&self, what: &str, op: F) -> Result<(), EcsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<crate::ecs::model::Ack, EcsError>>,
    {
        let mut pause = self.s.poll.initial;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(_) => return Ok(()),
                Err(e) if (e.is_retryable() || e.may_have_applied) && attempt < LEDGER_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, what, "ledger operation failed; repeating it");
                    tokio::time::sleep(pause).await;
                    pause = self.s.poll.next(pause);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes tags on the disk.
    async fn write_tags(&self, tags: &[(String, String)]) -> Result<(), EcsError> {
        let disk = vec![self.disk_id()];
        self.idempotent("write", || {
            self.ecs.tag_resources(&self.region, "disk", &disk, tags)
        })
        .await
    }

    /// Removes tags from the disk (best effort: a claim left behind goes stale by itself).
    async fn remove_tags(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let disk = vec![self.disk_id()];
        for chunk in keys.chunks(20) {
            let result = self
                .idempotent("remove", || {
                    self.ecs.untag_resources(&self.region, "disk", &disk, chunk)
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, tags = ?chunk, "could not remove ledger tags; a claim goes stale by itself");
            }
        }
    }

    async fn remove_tag(&self, key: &str) {
        self.remove_tags(&[key.to_owned()]).await;
    }

    /// Records the phase before the call it announces. If the write fails, the call is not made.
    async fn set_phase(&mut self, phase: Phase) -> Res<()> {
        let mut record = self.record()?;
        record.phase = phase;
        record.since = unix(Utc::now());
        // The phase write doubles as the claim's heartbeat.
        let tags = [
            (ledger::RUN_TAG.to_owned(), record.encode()),
            self.claim_tags(),
        ];
        self.write_tags(&tags).await.map_err(|e| {
            let mut h = Halt::ecs(Outcome::Failed, &e);
            h.error.code = "LedgerWriteFailed".into();
            // Retryable only when its cause can pass (throttling, a transient error, a lost
            // answer); a refusal for good (quota, permission) is not, and the caller brings the
            // instance back instead of waiting for deliveries that would fail the same way.
            h.error.retryable = e.is_retryable() || e.may_have_applied;
            h.error.message = format!(
                "could not record phase {phase} on the disk, so the next call was not made: {e}"
            );
            h
        })?;
        tracing::debug!(phase = %phase, "ledger written");
        self.claimed = true;
        self.last_heartbeat = Instant::now();
        self.record = Some(record);
        Ok(())
    }

    /// Gives the claim back (the run ends, or plans again).
    async fn release_claim(&mut self) {
        if self.claimed {
            self.remove_tag(&ledger::claim_tag(&self.invocation)).await;
            self.claimed = false;
        }
    }

    /// Right before a state-changing call: reads the ledger and checks that the record this run
    /// acts on is still its own. What a lagging read may still show of the time before this
    /// run's own writes (the record it replaced) is accepted; another key's record, or this
    /// key's record finished by a twin, stops the run (retryable: whoever holds the disk now
    /// finishes; nothing more is done here).
    async fn confirm_holder(&mut self, before: &str) -> Res<()> {
        let tags = self
            .ecs
            .list_tag_resources(&self.region, "disk", &[self.disk_id()])
            .await
            .map_err(|e| Halt::ecs(Outcome::Failed, &e))?;
        let seen = Ledger::from_tags(
            tags.iter()
                .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
        );
        let me = ledger::run_key(&self.digest);
        let problem = match &seen.run {
            _ if seen.history.find(&self.digest).is_some() => Some(
                "this key is already in the disk's history (another delivery finished it)"
                    .to_owned(),
            ),
            Some(r) if r.key == me && r.phase.is_final() => Some(format!(
                "this key's record says {} (another delivery finished it)",
                r.phase
            )),
            Some(r) if r.key == me => None,
            other if other.as_ref() == self.before.as_ref() => None,
            Some(r) => Some(format!(
                "another rollback (key digest {}) now holds the disk, phase {}",
                r.key, r.phase
            )),
            None => Some("the run record is gone (released by hand?)".to_owned()),
        };
        match problem {
            None => Ok(()),
            Some(p) => {
                tracing::error!(problem = %p, before, "the ledger changed under this run; it stops here");
                Err(Halt::fail(ErrorInfo::new(
                    "RollbackInProgress",
                    format!("the ledger changed under this run before {before}: {p}; nothing more was done by this delivery"),
                    true,
                )))
            }
        }
    }

    fn claim_tags(&self) -> (String, String) {
        (
            ledger::claim_tag(&self.invocation),
            ledger::claim_value(unix(Utc::now()), &self.digest),
        )
    }

    /// Writes this invocation's claim tag, reads the tags back, and yields to any other live
    /// claim or other key's live run.
    ///
    /// Each invocation writes its own claim tag before reading the others back, so of two
    /// invocations (different keys, or twins of one key) at least one sees the other and
    /// yields: at most one proceeds. Both may yield; each then waits a random time and tries
    /// again, which makes it likely that one gets through. The claim stays for the whole run,
    /// refreshed as a heartbeat, and is removed when the run ends.
    async fn take_claim(&mut self) -> Res<Ledger> {
        // A run that already holds the disk (a resume) never gives up for good here for a cause
        // that can pass: its instance may be stopped, and the next delivery tries again. A
        // refusal for good is the caller's to handle (it brings the instance back).
        let resuming = self.record.is_some();
        self.contest().await.map_err(|mut h| {
            if resuming {
                h.outcome = Outcome::Failed;
            }
            h
        })
    }

    /// Writes the claim, waits `tag_settle` (the read lag tolerated), reads the tags until its
    /// own claim shows, and yields to any rival. Returns what that read showed.
    async fn contest(&mut self) -> Res<Ledger> {
        const ATTEMPTS: u32 = 6;
        let lease = self.s.lease.as_secs() as i64;
        let beat = self.s.heartbeat_timeout.as_secs().max(1) as i64;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tag = self.claim_tags();
            let round_trip = Instant::now();
            self.write_tags(std::slice::from_ref(&tag))
                .await
                .map_err(|e| refuse_ledger(&e))?;
            self.claimed = true;
            self.last_heartbeat = Instant::now();
            let seen = self.read_after_own_claim(&tag).await?;
            // Claims of invocations that died (or could not remove theirs) are cleared away,
            // so they never fill the disk's 20 tags.
            let now = unix(Utc::now());
            let stale: Vec<String> = seen
                .claims
                .iter()
                .filter(|c| c.invocation != self.invocation && now - c.at > beat)
                .map(|c| ledger::claim_tag(&c.invocation))
                .collect();
            self.remove_tags(&stale).await;
            // An abandoned run being taken over is outside the lease, so it does not count here.
            let Some(other) = ledger::contested(
                &seen,
                &self.invocation,
                &self.digest,
                unix(Utc::now()),
                lease,
                beat,
            ) else {
                return Ok(seen);
            };
            self.remove_tag(&tag.0).await;
            self.claimed = false;
            let holds_run = seen.run.as_ref().is_some_and(|r| r.key == other);
            if holds_run || attempt >= ATTEMPTS {
                return Err(Halt {
                    outcome: self.failed_or_rejected(),
                    error: ErrorInfo::new(
                        "RollbackInProgress",
                        format!("another rollback (key digest {other}) is running on the disk"),
                        true,
                    ),
                });
            }
            // Both yielded. Who retries first is not left to chance: the contender with the
            // smallest invocation ID waits 10-30% of a window of four claim round trips (write,
            // settle, list), the others 60-100%, so its next write and read are over before
            // theirs begin and it gets through (random pauses let two twins collide on every
            // retry, both yielding for good: safe, but no progress).
            let ceiling = (self.s.poll.initial * 4).max(round_trip.elapsed() * 4) * attempt;
            let first = seen
                .claims
                .iter()
                .filter(|c| c.invocation != self.invocation && unix(Utc::now()) - c.at <= beat)
                .all(|c| self.invocation < c.invocation);
            let share = if first {
                0.1 + 0.2 * fastrand::f64()
            } else {
                0.6 + 0.4 * fastrand::f64()
            };
            let pause = ceiling.mul_f64(share);
            tracing::info!(rival = %other, pause_ms = pause.as_millis() as u64, "two runs claimed the disk together; both yield, then retry");
            tokio::time::sleep(pause).await;
        }
    }

    /// Reads the disk's tags `tag_settle` after this run's claim was written, and again until
    /// the claim itself shows. Two runs that both wait the settle time before reading cannot
    /// both miss the other's claim while reads lag writes by less than it (each read then
    /// shows every write older than the settle time: if A misses B's claim, B wrote after A's
    /// read minus the lag, so after A's own write, and B's read, later still, shows A's).
    async fn read_after_own_claim(&mut self, tag: &(String, String)) -> Res<Ledger> {
        const READS: u32 = 5;
        let mine = Ledger::from_tags([(tag.0.as_str(), tag.1.as_str())]).claims;
        for _ in 0..READS {
            tokio::time::sleep(self.s.tag_settle).await;
            let tags = match self
                .ecs
                .list_tag_resources(&self.region, "disk", &[self.disk_id()])
                .await
            {
                Ok(tags) => tags,
                Err(e) => return Err(Halt::ecs(self.failed_or_rejected(), &e)),
            };
            let seen = Ledger::from_tags(
                tags.iter()
                    .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
            );
            if mine.iter().all(|c| seen.claims.contains(c)) {
                return Ok(seen);
            }
            tracing::warn!(
                settle_ms = self.s.tag_settle.as_millis() as u64,
                "this run's own claim is not visible yet: tag reads lag more than the settle time"
            );
        }
        self.release_claim().await;
        Err(Halt {
            outcome: self.failed_or_rejected(),
            error: ErrorInfo::new(
                "LedgerUnavailable",
                format!(
                    "the disk's tags did not show this run's own claim {READS} times {}ms after it was written: tag reads lag more than ECS_ROLLBACK_TAG_SETTLE_MS, so no claim can be trusted; nothing was done",
                    self.s.tag_settle.as_millis()
                ),
                true,
            ),
        })
    }

    /// Takes the disk for a fresh run: the claim contest, then the run record.
    async fn claim(
        &mut self,
        plan: &Plan,
        takeover: Option<&RunRecord>,
        instance: Option<String>,
        planned: &Decision,
    ) -> Res<()> {
        let t = Utc::now();
        let fresh = self.take_claim().await?;
        self.same_plan(&fresh, planned)?;
        let record = RunRecord {
            key: ledger::run_key(&self.digest),
            phase: Phase::Claimed,
            since: unix(Utc::now()),
            snapshot: plan.snapshot_id.clone(),
            was_running: plan.was_running,
            end_running: plan.end_running,
            stop_at: takeover.and_then(|r| r.stop_at),
            failure: None,
            undo: None,
            // A take-over inherits the instance the abandoned run stopped.
            instance: takeover.and_then(|r| r.instance.clone()).or(instance),
        };
        let tags = [
            (ledger::RUN_TAG.to_owned(), record.encode()),
            self.claim_tags(),
        ];
        self.write_tags(&tags)
            .await
            .map_err(|e| refuse_ledger(&e))?;
        self.record = Some(record);
        self.step(
            "claim",
            StepStatus::Done,
            t,
            None,
            Some(format!("ledger: {} = phase claimed", ledger::RUN_TAG)),
        );
        Ok(())
    }

    /// Refreshes this invocation's claim when a third of the heartbeat timeout has passed.
    async fn heartbeat(&mut self) {
        if !self.claimed || self.last_heartbeat.elapsed() < self.s.heartbeat_timeout / 3 {
            return;
        }
        match self.write_tags(&[self.claim_tags()]).await {
            Ok(()) => self.last_heartbeat = Instant::now(),
            Err(e) => tracing::warn!(error = %e, "could not refresh the claim's heartbeat"),
        }
    }

    /// Runs the phases from where the record is.
    async fn drive(&mut self) -> Res<Outcome> {
        let Some(record) = self.record.clone() else {
            return Err(Halt::fail(ErrorInfo::new(
                "Internal",
                "no run record",
                false,
            )));
        };
        if let Some(code) = record.failure.clone() {
            // A run that was bringing the instance back after a failed reset.
            return self
                .restore_after_failure(ErrorInfo::new(
                    &code,
                    "the reset failed (recorded by an earlier run)",
                    false,
                ))
                .await;
        }
        if record.phase < Phase::Stopped {
            if let Err(h) = self.stop().await {
                return self.after_early_failure(h).await;
            }
        }
        // A run that began the undo snapshot finishes it, whatever this delivery asks.
        let preserve = self.req.preserve_current.unwrap_or(self.s.preserve_current)
            || self.phase() == Phase::Preserving;
        if preserve && self.phase() < Phase::Preserved {
            if let Err(h) = self.preserve_current().await {
                // Only the deadline and the ledger are worth another delivery; whatever else
                // stops the snapshot, the disk is not reset and the instance comes back.
                if h.error.retryable {
                    return Err(h);
                }
                return self.restore_after_failure(h.error).await;
            }
        }
        if self.phase() < Phase::Reset {
            match self.reset().await {
                Ok(()) => {}
                Err(h) if h.error.retryable && h.error.code != "ResetGaveUp" => return Err(h),
                Err(h) => return self.restore_after_failure(h.error).await,
            }
        }
        self.finish_reset_and_start().await?;
        self.finish().await
    }

    fn phase(&self) -> Phase {
        self.record.as_ref().map_or(Phase::Claimed, |r| r.phase)
    }

    /// The run record; every step after the claim has one.
    fn record(&self) -> Res<RunRecord> {
        self.record
            .clone()
            .ok_or_else(|| Halt::fail(ErrorInfo::new("Internal", "no run record", false)))
    }

    /// A stop that failed for good: nothing was reset. Restore and record the failure.
    async fn after_early_failure(&mut self, h: Halt) -> Res<Outcome> {
        if h.error.retryable {
            return Err(h);
        }
        self.restore_after_failure(h.error).await
    }

    // ---- stop -----------------------------------------------------------------------

    async fn stop(&mut self) -> Res<()> {
        let t = Utc::now();
        let Some(iid) = self.instance_id() else {
            self.step(
                "stop",
                StepStatus::Skipped,
                t,
                None,
                Some("the disk is not attached".into()),
            );
            return self.set_phase(Phase::Stopped).await;
        };
        let mut request_id = None;
        let mut attempts = 0;
        let budget = self.wait_budget(self.s.stop_timeout);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        loop {
            let Some(inst) = self.poll_instance(&iid, until, &mut pause).await? else {
                continue;
            };
            // The state that decides a call is read fresh, not taken from a shared poll.
            if inst.status == "Running" && !self.still(&iid, "Running").await? {
                continue;
            }
            match inst.status.as_str() {
                "Stopped" => break,
                "Running" => {
                    if attempts >= self.s.step_attempts {
                        return Err(Halt::fail(ErrorInfo::new(
                            "StopFailed",
                            format!(
                                "the instance is still Running after {attempts} StopInstance calls"
                            ),
                            true,
                        )));
                    }
                    if attempts == 0 {
                        if self.resumed_from == Some(Phase::Stopping) {
                            self.refuse_if_started_again(&inst)?;
                        }
                        // Announce the stop (and when it was asked) before the first call.
                        if self.phase() < Phase::Stopping {
                            self.fits("the stop", self.s.estimate_stop)?;
                        }
                        if let Some(r) = self.record.as_mut() {
                            r.stop_at.get_or_insert(unix(Utc::now()));
                        }
                        self.set_phase(Phase::Stopping).await?;
                        self.confirm_holder("StopInstance").await?;
                    }
                    attempts += 1;
                    let opts = StopOptions {
                        force_stop: self.req.force_stop,
                        ..Default::default()
                    };
                    match self.ecs.stop_instance(&self.region, &iid, &opts).await {
                        Ok(ack) => request_id = Some(ack.request_id),
                        // Re-read decides: Stopping/Stopped means it took.
                        Err(e)
                            if e.is_code("IncorrectInstanceStatus")
                                || e.may_have_applied
                                || e.is_retryable() =>
                        {
                            tracing::warn!(error = %e, "StopInstance answer unclear; re-reading the instance");
                        }
                        Err(e) => return Err(Halt::ecs(Outcome::Failed, &e)),
                    }
                }
                "Stopping" | "Starting" | "Pending" => {}
                other => {
                    return Err(Halt::fail(ErrorInfo::new(
                        "IncorrectInstanceStatus",
                        format!("the instance is {other}"),
                        true,
                    )))
                }
            }
            if Instant::now() >= until {
                return Err(self.timed_out("the instance did not reach Stopped in time", budget));
            }
            self.wait_a_little(&mut pause).await;
        }
        let detail = if request_id.is_some() {
            "Stopped (StoppedMode=KeepCharging)".to_owned()
        } else {
            "already Stopped".to_owned()
        };
        self.step(
            "stop",
            if request_id.is_some() {
                StepStatus::Done
            } else {
                StepStatus::Skipped
            },
            t,
            request_id,
            Some(detail),
        );
        self.set_phase(Phase::Stopped).await
    }

    /// A resumed run at phase `stopping` that reads the instance Running: either its stop
    /// never took, or the instance was stopped and started again since (by a person, or by a
    /// delivery that brought it back and could not record so). Stopping it again and resetting
    /// would destroy what it wrote since that start, so ECS's own `StartTime` (to the minute)
    /// decides: a start in or after the minute the stop was asked counts as "started again".
    fn refuse_if_started_again(&self, inst: &Instance) -> Res<()> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        let asked = record.stop_at.unwrap_or(record.since);
        let minute = asked - asked.rem_euclid(60);
        match inst.start_time {
            Some(started) if started.timestamp() >= minute => Err(Halt::fail(ErrorInfo::new(
                "InstanceStartedAgain",
                format!(
                    "the instance was started at {} (StartTime), after this key asked to stop it at {}: it is not stopped again and the disk is not reset",
                    started.to_rfc3339(),
                    DateTime::from_timestamp(asked, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                ),
                false,
            ))),
            _ => Ok(()),
        }
    }

    // ---- reset ----------------------------------------------------------------------

    async fn reset(&mut self) -> Res<()> {
        let t = Utc::now();
        let record = self.record()?;
        let mut need = self.s.estimate_reset;
        if record.end_running || record.was_running {
            need += self.s.estimate_start;
        }
        self.fits("the reset", need)?;
        if self.phase() != Phase::Resetting {
            self.set_phase(Phase::Resetting).await?;
        }
        self.confirm_holder("ResetDisk").await?;
        let disk = self.disk_id();
        let snapshot = record.snapshot.clone();
        let budget = self.wait_budget(self.s.reset_timeout);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        let mut issued = 0;
        let accepted_id = loop {
            // The guard: ResetDisk only right after a read shows the instance Stopped.
            if let Some(iid) = self.instance_id() {
                let Some(inst) = self.poll_instance(&iid, until, &mut pause).await? else {
                    continue;
                };
                if inst.status == "Stopped" && !self.still(&iid, "Stopped").await? {
                    continue;
                }
                match inst.status.as_str() {
                    "Stopped" => {}
                    "Stopping" => {
                        self.wait_a_little(&mut pause).await;
                        continue;
                    }
                    other => {
                        // Someone started it: resetting now would destroy what it writes.
                        let (code, what) = if self.resumed_from == Some(Phase::Resetting) {
                            ("InstanceStartedAgain", "an earlier delivery of this key had announced the reset, so it may have run before that start; it is not issued again")
                        } else {
                            ("IncorrectInstanceStatus", "the disk was not reset")
                        };
                        return Err(Halt::fail(ErrorInfo::new(
                            code,
                            format!("the instance is {other} before the reset (started again since this key stopped it); {what}"),
                            false,
                        )));
                    }
                }
            }
            issued += 1;
            let result = self
                .ecs
                .reset_disk(&self.region, &disk, &snapshot, false)
                .await;
            let e = match result {
                Ok(ack) => break Some(ack.request_id),
                Err(e) => e,
            };
            if e.is_code("InvalidOperation.DiskResetInProgress") {
                // Ours only when the ledger proves it: an earlier delivery of this key had
                // announced the reset, or this one issued a ResetDisk whose answer was unclear.
                if self.resumed_from == Some(Phase::Resetting) || self.reset_unclear {
                    break None;
                }
                let h = Halt::fail(ErrorInfo {
                    code: "InvalidOperation.DiskResetInProgress".into(),
                    message: format!("a reset this run did not issue is running on {disk}: the disk was not reset by this key"),
                    retryable: false,
                    request_id: e.request_id.clone(),
                });
                return Err(self.failed("reset", t, e.request_id.clone(), h));
            }
            if e.may_have_applied {
                self.reset_unclear = true;
                // Lost answer: ask, without changing anything, whether a reset is running.
                match self
                    .ecs
                    .reset_disk(&self.region, &disk, &snapshot, true)
                    .await
                {
                    Err(p) if p.is_code("InvalidOperation.DiskResetInProgress") => break None,
                    // Not running: never applied, or applied and already done. The instance has
                    // stayed Stopped, so a second reset to the same snapshot gives the same disk.
                    _ => {
                        tracing::warn!(error = %e, "ResetDisk answer lost; no reset is running; issuing it again")
                    }
                }
            } else {
                match e.retry {
                    Retry::Retryable | Retry::AfterStateChange => {
                        tracing::warn!(error = %e, "ResetDisk not accepted yet; waiting");
                    }
                    Retry::NotRetryable | Retry::DryRunSuccess => {
                        self.step(
                            "reset",
                            StepStatus::Failed,
                            t,
                            e.request_id.clone(),
                            Some(e.to_string()),
                        );
                        return Err(Halt::ecs(Outcome::Failed, &e));
                    }
                }
            }
            if Instant::now() >= until || issued >= self.s.step_attempts * 4 {
                let mut h = Halt::ecs(Outcome::Failed, &e);
                h.error.code = "ResetGaveUp".into();
                h.error.retryable = false;
                h.error.message = format!("ResetDisk was not accepted after {issued} tries: {e}");
                return Err(self.failed("reset", t, e.request_id.clone(), h));
            }
            self.wait_a_little(&mut pause).await;
        };
        self.step(
            "reset",
            StepStatus::Done,
            t,
            accepted_id,
            Some(format!("ResetDisk {disk} to {snapshot} accepted")),
        );
        // The reset is accepted: whatever the ledger says now, it happened, and the run goes on
        // to the start (whose `starting` write says the same). A record left at `resetting`
        // only makes a later delivery check the instance before anything else.
        if let Err(h) = self.set_phase(Phase::Reset).await {
            tracing::warn!(error = %h.error.message, "could not record phase reset; going on to the start");
            self.warnings.push(format!(
                "phase reset could not be recorded: {}",
                h.error.message
            ));
        }
        Ok(())
    }

    // ---- the undo snapshot (preserveCurrent) ------------------------------------------

    /// Labels of the undo snapshot: the tag that finds it again, and what it is for.
    fn undo_tags(&self) -> Vec<(String, String)> {
        let cut = |s: &str| s.chars().take(128).collect::<String>();
        let mut tags = vec![
            (UNDO_TAG.to_owned(), self.digest.clone()),
            ("ecs-rollback:key".to_owned(), cut(self.req.key.as_str())),
            (
                "ecs-rollback:rolled-back-to".to_owned(),
                self.record
                    .as_ref()
                    .map(|r| r.snapshot.clone())
                    .unwrap_or_default(),
            ),
        ];
        if let Some(reason) = self.req.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            tags.push(("ecs-rollback:reason".to_owned(), cut(reason.trim())));
        }
        tags
    }

    /// An undo snapshot this key already asked for (a crash after CreateSnapshot answered and
    /// before the ledger said so): found by its tag.
    async fn find_undo(&self) -> Res<Option<String>> {
        let q = SnapshotQuery {
            disk_id: Some(self.disk_id()),
            tags: vec![(UNDO_TAG.to_owned(), self.digest.clone())],
            ..Default::default()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.ecs.describe_snapshots(&self.region, &q).await {
                Ok(found) => {
                    return Ok(found
                        .into_iter()
                        .max_by_key(|s| s.creation_time)
                        .map(|s| s.snapshot_id))
                }
                Err(e) if e.is_retryable() && attempt < LEDGER_ATTEMPTS => {
                    tokio::time::sleep(self.s.poll.initial * attempt).await;
                }
                Err(e) => {
                    let mut h = Halt::ecs(Outcome::Failed, &e);
                    h.error.code = "UndoSnapshotFailed".into();
                    h.error.retryable = false;
                    h.error.message = format!("could not look for this key's undo snapshot: {e}");
                    return Err(h);
                }
            }
        }
    }

    /// After the stop, before the reset: CreateSnapshot of the disk as it is (its `ClientToken`
    /// derived from the idempotency key, so a repeated call makes one snapshot), recorded in
    /// the ledger, then waited for until usable. Failures that a retry cannot fix, or that
    /// outlast `snapshot_timeout`, end the run before the reset (the caller restores).
    async fn preserve_current(&mut self) -> Res<()> {
        let t = Utc::now();
        let record = self.record()?;
        let disk = self.disk_id();
        let give_up =
            |code: &str, message: String| Halt::fail(ErrorInfo::new(code, message, false));
        if self.phase() < Phase::Preserving {
            let mut need = self.s.estimate_snapshot + self.s.estimate_reset;
            if record.end_running || record.was_running {
                need += self.s.estimate_start;
            }
            self.fits("the undo snapshot", need)?;
            self.set_phase(Phase::Preserving).await?;
        }
        let known = match self.record()?.undo {
            Some(id) => Some(id),
            None => self.find_undo().await?,
        };
        let budget = self.wait_budget(self.s.snapshot_timeout);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        let (undo, request_id) = match known {
            Some(id) => (id, None),
            None => {
                let name: String = format!("ecs-rollback-undo-{}", self.req.key.as_str())
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':' {
                            c
                        } else {
                            '-'
                        }
                    })
                    .take(128)
                    .collect();
                let description: String = format!(
                    "Taken by ecs-rollback before resetting {disk} to {}; key {}{}",
                    record.snapshot,
                    self.req.key.as_str(),
                    self.req
                        .reason
                        .as_deref()
                        .map(|r| format!("; reason: {r}"))
                        .unwrap_or_default()
                )
                .chars()
                .take(256)
                .collect();
                self.confirm_holder("CreateSnapshot").await?;
                let token = undo_client_token(self.req.key.as_str());
                let tags = self.undo_tags();
                loop {
                    match self
                        .ecs
                        .create_snapshot(&self.region, &disk, &name, &description, &token, &tags)
                        .await
                    {
                        Ok((id, rid)) => break (id, Some(rid)),
                        // Another snapshot of the disk, or a state on its way: wait and ask again.
                        Err(e) if e.retry == Retry::AfterStateChange && Instant::now() < until => {
                            tracing::warn!(error = %e, "CreateSnapshot not accepted yet; waiting");
                        }
                        Err(e) if e.is_retryable() && Instant::now() < until => {
                            tracing::warn!(error = %e, "CreateSnapshot failed; the same ClientToken is asked again");
                        }
                        Err(e) => {
                            let h = give_up(
                                "UndoSnapshotFailed",
                                format!("the undo snapshot of {disk} could not be taken, so the disk was not reset: {e}"),
                            );
                            return Err(self.failed("preserve", t, e.request_id.clone(), h));
                        }
                    }
                    self.wait_a_little(&mut pause).await;
                }
            }
        };
        self.target.undo_snapshot_id = Some(undo.clone());
        if self.record.as_ref().and_then(|r| r.undo.as_deref()) != Some(undo.as_str()) {
            if let Some(r) = self.record.as_mut() {
                r.undo = Some(undo.clone());
            }
            // Rewrites the record with the snapshot's ID (and refreshes the lease).
            self.set_phase(Phase::Preserving).await?;
        }
        let mut pause = self.s.poll.initial;
        let mut last_write = Instant::now();
        loop {
            let q = SnapshotQuery {
                ids: vec![undo.clone()],
                ..Default::default()
            };
            match self.ecs.describe_snapshots(&self.region, &q).await {
                Ok(found) => match found.into_iter().find(|s| s.snapshot_id == undo) {
                    Some(s) if s.is_ready() => break,
                    Some(s) if s.status.eq_ignore_ascii_case("failed") => {
                        let h = give_up(
                            "UndoSnapshotFailed",
                            format!("the undo snapshot {undo} failed, so the disk was not reset"),
                        );
                        return Err(self.failed("preserve", t, None, h));
                    }
                    Some(s) => {
                        // Timed from the snapshot's own creation, across deliveries.
                        let age = s.creation_time.map(|c| Utc::now() - c).unwrap_or_default();
                        if age.to_std().is_ok_and(|a| a > self.s.snapshot_timeout) {
                            let h = give_up(
                                "UndoSnapshotTimeout",
                                format!(
                                    "the undo snapshot {undo} is still {} after {}s (ECS_ROLLBACK_SNAPSHOT_TIMEOUT_SECONDS), so the disk was not reset; the snapshot goes on by itself",
                                    s.progress, age.num_seconds()
                                ),
                            );
                            return Err(self.failed("preserve", t, None, h));
                        }
                    }
                    None => {}
                },
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "reading the undo snapshot failed; reading again");
                }
                Err(e) => {
                    let h = give_up("UndoSnapshotFailed", format!("the undo snapshot {undo} cannot be read, so the disk was not reset: {e}"));
                    return Err(self.failed("preserve", t, e.request_id.clone(), h));
                }
            }
            if Instant::now() >= until {
                // The deadline (or this delivery's share of the timeout): the next delivery
                // finds the snapshot in the ledger and waits on.
                return Err(self.timed_out("the undo snapshot is not usable yet", budget));
            }
            self.heartbeat().await;
            if last_write.elapsed() > self.s.lease / 3 {
                // A long snapshot must not make this run look abandoned.
                self.set_phase(Phase::Preserving).await?;
                last_write = Instant::now();
            }
            tokio::time::sleep(pause).await;
            pause = self.s.poll.next(pause);
        }
        self.step(
            "preserve",
            StepStatus::Done,
            t,
            request_id,
            Some(format!(
                "snapshot {undo} holds {disk} as it was before the reset"
            )),
        );
        self.set_phase(Phase::Preserved).await
    }

    // ---- wait for the reset, start --------------------------------------------------

    async fn finish_reset_and_start(&mut self) -> Res<()> {
        let record = self.record()?;
        let t = Utc::now();
        match self.instance_id() {
            Some(iid) if record.end_running => {
                self.start(&iid, t).await?;
            }
            _ => {
                self.wait_reset_done().await?;
                self.step(
                    "start",
                    StepStatus::Skipped,
                    t,
                    None,
                    Some("the instance stays stopped, as it was (or as asked)".into()),
                );
            }
        }
        Ok(())
    }

    /// Without a start to tell us, the reset's end is seen by its DryRun no longer answering
    /// `InvalidOperation.DiskResetInProgress` (inferred; ecs-api.md §4.5).
    async fn wait_reset_done(&mut self) -> Res<()> {
        let t = Utc::now();
        let record = self.record()?;
        let disk = self.disk_id();
        let budget = self.wait_budget(self.s.reset_timeout);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        loop {
            match self
                .ecs
                .reset_disk(&self.region, &disk, &record.snapshot, true)
                .await
            {
                Err(e) if e.is_code("InvalidOperation.DiskResetInProgress") || e.is_retryable() => {
                }
                Ok(_) => break,
                Err(e) => {
                    self.warnings
                        .push(format!("the end of the reset could not be confirmed: {e}"));
                    break;
                }
            }
            if Instant::now() >= until {
                return Err(self.timed_out("the reset did not finish in time", budget));
            }
            self.wait_a_little(&mut pause).await;
        }
        self.step(
            "wait-reset",
            StepStatus::Done,
            t,
            None,
            Some("no reset running on the disk".into()),
        );
        Ok(())
    }

    /// Brings the instance to Running: StartInstance, retried through every answer that is not
    /// Running (the reset still running, a conflict, an unknown code, a permission refused
    /// once, a lost answer, a failed read) until the deadline or the reset and start timeouts.
    /// ECS refuses StartInstance while the reset runs, so the first acceptance marks the
    /// reset's end. `Err` only when the instance is still not Running then (see `left_stopped`),
    /// or when it no longer exists.
    async fn start(&mut self, iid: &str, t: DateTime<Utc>) -> Res<()> {
        if self.phase() < Phase::Starting {
            // From `starting` on, the key never resets again. If even that cannot be written,
            // the instance comes back all the same: ECS refuses ResetDisk on an instance that is
            // not Stopped, and a later run that reads it Running before its reset stops there.
            if let Err(h) = self.set_phase(Phase::Starting).await {
                tracing::error!(error = %h.error.message, "could not record phase starting; starting the instance all the same");
                self.warnings.push(format!(
                    "phase starting could not be recorded: {}",
                    h.error.message
                ));
            }
        }
        let budget = self.wait_budget(self.s.reset_timeout + self.s.start_timeout);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        let mut request_id = None;
        // When StartInstance was refused because the reset ran, and when it was accepted: the
        // reset's end, as far as the API shows it.
        let mut waited_for_reset = false;
        let mut accepted_at = None;
        let mut calls = 0u32;
        // The last answer that was neither Running nor "the reset still runs".
        let mut unexpected: Option<String> = None;
        loop {
            let inst = match self.read_for_start(iid).await {
                Ok(i) => Some(i),
                Err(h) if h.error.code == "InvalidInstanceId.NotFound" => {
                    return Err(self.failed("start", t, None, h));
                }
                Err(h) => {
                    tracing::warn!(error = %h.error.message, "reading the instance failed; reading again");
                    unexpected = Some(format!("reading the instance: {}", h.error.message));
                    None
                }
            };
            match inst.as_ref().map(|i| i.status.as_str()) {
                Some("Running") => break,
                Some("Stopped") => {
                    calls += 1;
                    match self.ecs.start_instance(&self.region, iid, false).await {
                        Ok(ack) => {
                            request_id = Some(ack.request_id);
                            accepted_at.get_or_insert_with(Utc::now);
                        }
                        Err(e) if start_not_yet(&e) => {
                            waited_for_reset = true;
                            tracing::info!(code = %e.code_or_kind(), "the reset is still running; StartInstance waits");
                        }
                        Err(e) => {
                            // Unknown or unforeseen: the instance must not stay stopped, so the
                            // answer is taken as "not now" and StartInstance asked again.
                            tracing::warn!(error = %e, "StartInstance refused; re-reading and asking again");
                            unexpected = Some(e.to_string());
                        }
                    }
                }
                _ => {}
            }
            if Instant::now() >= until {
                return Err(self.left_stopped(iid, t, calls, unexpected, budget));
            }
            self.wait_a_little(&mut pause).await;
        }
        if let Some(stop_at) = self.record.as_ref().and_then(|r| r.stop_at) {
            let ms = (Utc::now().timestamp_millis() - stop_at * 1000).max(0);
            self.downtime_ms = Some(ms as u64);
        }
        let mut t = t;
        if let (true, Some(at)) = (waited_for_reset, accepted_at) {
            // The reset step lasts until the reset ended (StartInstance accepted), and the start
            // step from then: the timeline shows the reset's real length.
            if let Some(reset) = self
                .steps
                .iter_mut()
                .rev()
                .find(|s| s.name == "reset" && s.status == StepStatus::Done)
            {
                reset.finished_at = at;
                if let Some(d) = reset.detail.as_mut() {
                    d.push_str("; finished when StartInstance was accepted");
                }
            }
            t = at;
        }
        self.step(
            "start",
            StepStatus::Done,
            t,
            request_id,
            Some("Running".into()),
        );
        Ok(())
    }

    /// One read of the instance for `start`: fresh when a shared poll could have served it.
    async fn read_for_start(&mut self, iid: &str) -> Res<Instance> {
        if let Some(cache) = self.cache {
            if let Ok(Some(i)) = cache.get(&self.region, iid).await {
                if i.status != "Stopped" {
                    return Ok(i);
                }
            }
        }
        let fresh = self.read_instance(iid).await?;
        if let Some(cache) = self.cache {
            cache.put(&self.region, &fresh).await;
        }
        Ok(fresh)
    }

    /// The instance is not Running at the end of `start`. Retryable: the ledger says `starting`
    /// (or later), so the next delivery of this key starts it and never resets the disk again.
    /// Said loudly: an ERROR line, the phase, what was tried, and how to start it by hand.
    fn left_stopped(
        &mut self,
        iid: &str,
        t: DateTime<Utc>,
        calls: u32,
        unexpected: Option<String>,
        budget: Duration,
    ) -> Halt {
        let deadline_first = self
            .time_left()
            .is_some_and(|l| l < budget + DEADLINE_MARGIN);
        // The deadline cut an ordinary wait for the reset: the next delivery goes on.
        let code = if deadline_first && unexpected.is_none() {
            "DeadlineExceeded"
        } else {
            "InstanceLeftStopped"
        };
        let phase = self.phase();
        let message = format!(
            "instance {iid} is not Running after {calls} StartInstance calls in {}s{}; the ledger says phase {phase}, so the next delivery of this key starts it (and never resets the disk again); to start it by hand: aliyun ecs StartInstance --RegionId {} --InstanceId {iid}",
            budget.as_secs(),
            unexpected
                .map(|u| format!(" (last answer: {u})"))
                .unwrap_or_default(),
            self.region,
        );
        if code == "InstanceLeftStopped" {
            tracing::error!(instance = iid, phase = %phase, code, "{message}");
        } else {
            tracing::warn!(instance = iid, phase = %phase, code, "{message}");
        }
        self.failed(
            "start",
            t,
            None,
            Halt::fail(ErrorInfo::new(code, message, true)),
        )
    }

    // ---- finish ---------------------------------------------------------------------

    async fn finish(&mut self) -> Res<Outcome> {
        let t = Utc::now();
        self.write_final(Phase::Done, None).await?;
        self.step(
            "finish",
            StepStatus::Done,
            t,
            None,
            Some("ledger: phase done, key added to the history".into()),
        );
        Ok(Outcome::Succeeded)
    }

    async fn write_final(&mut self, phase: Phase, failure: Option<&str>) -> Res<()> {
        let mut record = self.record()?;
        let now = unix(Utc::now());
        record.phase = phase;
        record.since = now;
        record.failure = failure.map(str::to_owned);
        // The history must be read before it is rewritten: a failed read never becomes an
        // empty history (that would forget the cooldown and the keys that finished).
        let mut attempt = 0;
        let disk = loop {
            attempt += 1;
            match self.read_disk(&self.disk_id()).await {
                Ok(d) => break d,
                Err(h) if h.error.retryable && attempt < LEDGER_ATTEMPTS => {
                    tokio::time::sleep(self.s.poll.initial * attempt).await;
                }
                Err(mut h) => {
                    h.error.code = "LedgerWriteFailed".into();
                    h.error.retryable = true;
                    return Err(h);
                }
            }
        };
        let mut history = disk
            .tags
            .get(ledger::HISTORY_TAG)
            .map(History::decode)
            .unwrap_or_default();
        history.push(&self.digest, phase == Phase::Failed, now);
        let tags = [
            (ledger::RUN_TAG.to_owned(), record.encode()),
            (ledger::HISTORY_TAG.to_owned(), history.encode()),
        ];
        self.write_tags(&tags).await.map_err(|e| {
            let mut h = Halt::ecs(Outcome::Failed, &e);
            h.error.code = "LedgerWriteFailed".into();
            h.error.retryable = true;
            h.error.message = format!("the rollback ran, but its end could not be recorded ({e}); the next run with this key records it");
            h
        })?;
        self.record = Some(record);
        Ok(())
    }

    /// The reset failed for good (or the run could not go on, whatever the cause: an unknown
    /// code, a permission, a ledger write refused) after the instance may have been stopped:
    /// bring it back first if it was running, then record the failure, then report it. Every
    /// ledger write here is best effort: none of them keeps the instance stopped.
    async fn restore_after_failure(&mut self, error: ErrorInfo) -> Res<Outcome> {
        let record = self.record()?;
        let t = Utc::now();
        if let (Some(iid), true) = (self.instance_id(), record.was_running) {
            // `starting` with a failure code: a crash from here resumes the restart, never a
            // reset (written by `start`, best effort).
            if let Some(r) = self.record.as_mut() {
                r.failure = Some(error.code.clone());
            }
            let running = self
                .read_instance(&iid)
                .await
                .is_ok_and(|i| i.status == "Running");
            if !running {
                if let Err(mut h) = self.start(&iid, t).await {
                    h.error.message = format!(
                        "{}: {}; and bringing the instance back failed: {}",
                        error.code, error.message, h.error.message
                    );
                    return Err(h);
                }
            }
        }
        match self.write_final(Phase::Failed, Some(&error.code)).await {
            Ok(()) => Err(Halt::fail(error)),
            Err(h) => {
                let mut error = error;
                error.message = format!(
                    "{}; the failure could not be recorded in the ledger ({}), so the next delivery of this key records it",
                    error.message, h.error.message
                );
                error.retryable = true;
                Err(Halt::fail(error))
            }
        }
    }
}
