//! From what was read to a plan: the decision on the ledger (`ledger::decide_request`), the
//! claim and the decision taken again from the claim contest's read, the preflight of a fresh
//! run and the checks of a resumed one.

use super::*;

impl Run<'_> {
    /// Runs the request; when the ledger read after winning the claim contest says something
    /// else than the read the plan was made from, plans again from a new read (a few times).
    pub(super) async fn execute(&mut self) -> Res<Outcome> {
        let (steps, warnings) = (self.steps.len(), self.warnings.len());
        let mut replans = 0;
        loop {
            match self.execute_once().await {
                Err(h) if h.error.code == instance_hold::INSTANCE_WAITED => {
                    // Another run held the instance while this one waited: what was read before
                    // is old. Nothing was changed by this delivery; the hold is its own now.
                    self.record = None;
                    self.resumed_from = None;
                    self.before = None;
                    // The warnings stay: the hold's (an inherited power state) still holds.
                    self.steps.truncate(steps);
                    tracing::info!("the instance is held by this run now; planning again");
                }
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
                            Code::RollbackInProgress,
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

    pub(super) async fn execute_once(&mut self) -> Res<Outcome> {
        let t0 = self.now();
        let mut seen = self.observe().await?;
        let ledger = Ledger::from_tags(
            seen.disk
                .tags
                .tag
                .iter()
                .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
        );
        let now = self.now();
        self.learned = ledger.durations;
        let decision = self.decide(&ledger);
        tracing::info!(decision = ?decision, "ledger read");
        let planned = decision.clone();
        match decision {
            Decision::Superseded { completed_at } => Ok(self.superseded(t0, completed_at)),
            Decision::Duplicate => Ok(self.duplicate(t0, &ledger)),
            Decision::Resume(record) => {
                if let Some(ended) = self.resume(t0, &mut seen, record, &planned).await? {
                    return Ok(ended);
                }
                self.drive().await
            }
            Decision::TakeOver(stale) => self.fresh(t0, now, &seen, Some(stale), &planned).await,
            Decision::Claim => self.fresh(t0, now, &seen, None, &planned).await,
            refused => Err(refusal(refused)),
        }
    }

    fn superseded(&mut self, t0: DateTime<Utc>, completed_at: i64) -> Outcome {
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
        Outcome::Superseded
    }

    fn duplicate(&mut self, t0: DateTime<Utc>, ledger: &Ledger) -> Outcome {
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
        Outcome::Duplicate
    }

    /// A run of this key stopped part-way: take the disk (a twin may be running), check what
    /// this run did not change itself, and go on from the record. `Some` when it ends here.
    async fn resume(
        &mut self,
        t0: DateTime<Utc>,
        seen: &mut Seen,
        record: RunRecord,
        planned: &Decision,
    ) -> Res<Option<Outcome>> {
        if self.req.dry_run {
            return Err(Halt::reject(
                Code::RollbackInProgress,
                "a run with this key is part-way; a dry run does not resume it",
                true,
            ));
        }
        self.target.snapshot_id = Some(record.snapshot.clone());
        self.target.undo_snapshot_id = record.undo.clone();
        self.record = Some(record.clone());
        self.resumed_from = Some(record.phase);
        // The instance this run stopped is the one to act on and bring back, wherever the disk
        // is attached now (detached meanwhile: still that one).
        let mut tags_clear = instance_tags_clear(seen.instance.as_ref());
        if let Some(iid) = record.instance.clone() {
            if seen.instance.as_ref().map(|i| i.instance_id.as_str()) != Some(iid.as_str()) {
                seen.instance = self.read_instance(&iid).await.ok();
                self.target.instance_id = Some(iid);
                tags_clear = false;
            }
        }
        // The instance before the disk: no other key's run of another of its disks is between
        // this run's stop and its start. The record's power state to restore is the hold's.
        let held = self
            .hold_and_claim(
                seen.instance.as_ref(),
                tags_clear,
                Some(record.was_running),
                None,
            )
            .await;
        match held {
            Ok(()) => {}
            Err(h) if h.error.retryable => return Err(h),
            Err(h) => {
                // The hold cannot be written for good (quota, permission): nothing more is
                // changed, but the instance this key stopped must not stay stopped.
                let h = self.failed("claim", t0, None, h);
                return self.group_failed(h.error).await.map(Some);
            }
        }
        // A twin of this key may be running right now: contest the disk like anyone else
        // before acting (the failure path below acts too).
        match self.take_claim().await {
            Ok(fresh) => self.same_plan(&fresh, planned)?,
            Err(h) if h.error.retryable || h.error.code == LEDGER_CHANGED => return Err(h),
            Err(h) => {
                // The ledger refuses this run for good (quota, permission): it cannot record
                // anything, but the instance it stopped must not stay stopped.
                let h = self.failed("claim", t0, None, h);
                return self.group_failed(h.error).await.map(Some);
            }
        }
        if let Err(h) = self.resume_checks(seen, &record) {
            let h = self.failed("preflight", t0, None, h);
            // A run that cannot go on brings the instance back, whatever its phase (a start
            // waits out a reset still running); only a cause that can pass is left to the next
            // delivery.
            if h.error.retryable {
                return Err(h);
            }
            return self.group_failed(h.error).await.map(Some);
        }
        self.step(
            "preflight",
            StepStatus::Done,
            t0,
            None,
            Some(format!("resuming at phase {}", record.phase)),
        );
        Ok(None)
    }

    /// A fresh run (a claim, or the take-over of an abandoned run): the whole preflight, then
    /// the dry run, or the claim and the transitions.
    async fn fresh(
        &mut self,
        t0: DateTime<Utc>,
        now: DateTime<Utc>,
        seen: &Seen,
        takeover: Option<RunRecord>,
        planned: &Decision,
    ) -> Res<Outcome> {
        if !instance_tags_clear(seen.instance.as_ref()) {
            // A hold on the instance: another rollback of one of its disks may be stopping or
            // starting it right now. Judge the instance once it is released (a wait plans
            // again from a new read).
            self.hold_instance(
                seen.instance.as_ref(),
                false,
                None,
                takeover.as_ref().map(|r| r.was_running),
            )
            .await?;
        }
        let waited = self.wait_other_snapshots(seen, now).await?;
        let seen = waited.as_ref().unwrap_or(seen);
        let mut plan = self.preflight(seen, now).await.inspect_err(|h| {
            self.steps.push(Step {
                name: "preflight".into(),
                status: StepStatus::Failed,
                started_at: t0,
                finished_at: self.now(),
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
        self.target.snapshot_status = Some(plan.snapshot_status.clone());
        if plan.snapshot_status.eq_ignore_ascii_case("progressing") {
            // Instant access (ecs-evidence.md §3, C8): usable, but not complete yet.
            self.warnings.push(format!(
                "snapshot {} is still progressing: the rollback uses instant access (Available while being created); ECS completes the snapshot by itself",
                plan.snapshot_id
            ));
        }
        let power = if plan.was_running {
            "running"
        } else {
            "stopped"
        };
        self.step(
            "preflight",
            StepStatus::Done,
            t0,
            None,
            Some(format!("snapshot {}, instance {power}", plan.snapshot_id)),
        );
        if self.req.dry_run {
            return self.dry_run(seen, &plan).await;
        }
        let stop_needed = seen
            .instance
            .as_ref()
            .is_some_and(|i| i.status == "Running");
        let mut need = self.estimate(self.s.estimate_reset, self.learned.reset);
        if stop_needed {
            need += self.estimate(self.s.estimate_stop, self.learned.stop);
        }
        if plan.end_running {
            need += self.estimate(self.s.estimate_start, self.learned.start);
        }
        self.fits("the rollback", need)?;
        // The instance before the disk (`instance_hold.rs`), once every check passed: the power
        // state to restore is the first holder's, whatever the instance looks like now (a
        // rollback of another of its disks may have it stopped right now). After a wait for
        // another holder, the run plans again from a new read. The disk's claim is written
        // beside the hold (one settle for both).
        self.hold_and_claim(
            seen.instance.as_ref(),
            instance_tags_clear(seen.instance.as_ref()),
            None,
            takeover.as_ref().map(|r| r.was_running),
        )
        .await?;
        if let Some(w) = self.held_power() {
            plan.was_running = w;
            if self.req.start_after_reset.is_none() {
                plan.end_running = w && seen.instance.is_some();
            }
        }
        let instance = seen.instance.as_ref().map(|i| i.instance_id.clone());
        // A lone disk's fresh run that will stop the instance writes its record first as
        // `stopping`, beside the stop's guard read: `claimed` would say nothing a resume needs
        // (issue 26; docs/rollback-protocol.md, "The critical path").
        let defer = stop_needed && takeover.is_none() && self.group.is_none();
        self.claim(&plan, takeover.as_ref(), instance, planned, defer)
            .await?;
        self.drive().await
    }

    /// Before anything changes: while another snapshot of the disk is being created (an
    /// automatic snapshot policy's, say), waits for it, reading again, up to the snapshot
    /// timeout or the deadline; the instance keeps running meanwhile (stopping it would fail a
    /// snapshot without instant access, ecs-evidence.md §3, C9). `Some` is the newer read; a
    /// snapshot still in progress then is the preflight's retryable refusal.
    async fn wait_other_snapshots(&mut self, seen: &Seen, now: DateTime<Utc>) -> Res<Option<Seen>> {
        let busy = |s: &Seen, run: &Self| matches!(run.preflight_check(s, now), Err(e) if e.code == preflight::UNFINISHED_SNAPSHOT);
        if self.req.dry_run || !busy(seen, self) {
            return Ok(None);
        }
        let budget = self.wait_budget(self.s.snapshot_timeout);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        let mut latest = None;
        while Instant::now() < until {
            tracing::info!("another snapshot of the disk is being created; waiting for it before anything changes");
            tokio::time::sleep(pause).await;
            pause = self.s.poll.next(pause);
            let s = self.observe().await?;
            let done = !busy(&s, self);
            latest = Some(s);
            if done {
                self.warnings.push(
                    "waited for another snapshot of the disk to be created before starting".into(),
                );
                break;
            }
        }
        Ok(latest)
    }

    /// The decision for this request on what `ledger` says.
    pub(super) fn decide(&self, ledger: &Ledger) -> Decision {
        ledger::decide_request(
            ledger,
            &self.digest,
            unix(self.now()),
            self.s.lease.as_secs() as i64,
            self.s.heartbeat_timeout.as_secs() as i64,
            self.s.cooldown.as_secs() as i64,
            self.req.trigger.time.map(|t| t.timestamp()),
        )
    }

    /// After winning the claim contest: the read the contest made is newer than the one the
    /// plan came from. If it decides otherwise (a twin finished meanwhile, another key rolled
    /// the disk back), the plan is void: `LEDGER_CHANGED`, and `execute` plans again.
    pub(super) fn same_plan(&mut self, fresh: &Ledger, planned: &Decision) -> Res<()> {
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
    pub(super) fn resume_checks(&self, seen: &Seen, record: &RunRecord) -> Res<()> {
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
                    Code::DiskNotAttached,
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
                    Code::NotOptedIn,
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
            .any(|s| s.snapshot_id == record.snapshot && s.is_usable());
        if !there {
            return Err(Halt::fail(ErrorInfo::new(
                "InvalidSnapshotId.NotFound",
                format!("snapshot {} is gone or no longer ready", record.snapshot),
                false,
            )));
        }
        Ok(())
    }

    fn preflight_check(&self, seen: &Seen, now: DateTime<Utc>) -> Result<Plan, ErrorInfo> {
        preflight::check(
            self.req,
            &seen.disk,
            seen.instance.as_ref(),
            &seen.snapshots,
            self.s.require_tag.as_ref(),
            self.verify_plan().is_some(),
            now,
        )
    }

    pub(super) async fn preflight(&mut self, seen: &Seen, now: DateTime<Utc>) -> Res<Plan> {
        let checked = self.preflight_check(seen, now);
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
}

/// Whether the instance, as read with the disk, carried no hold (`instance_hold.rs`).
fn instance_tags_clear(instance: Option<&Instance>) -> bool {
    instance.is_some_and(|i| {
        !i.tags
            .tag
            .iter()
            .any(|t| crate::instance_hold::is_hold_tag(&t.tag_key))
    })
}

/// The decisions that end a run before anything is touched, as the refusal each reports.
fn refusal(decision: Decision) -> Halt {
    match decision {
        Decision::AlreadyFailed { code } => Halt {
            // A recorded check's end is reported as the outcome it was (`verify.rs`).
            outcome: Outcome::of_recorded_failure(&code),
            error: ErrorInfo::new(
                &code,
                "this idempotency key already failed; nothing was touched this time (send a new key to try again)",
                false,
            ),
        },
        Decision::HeldByOther { key, phase, since } => Halt::reject(
            Code::RollbackInProgress,
            format!(
                "another rollback (key digest {key}) holds the disk, phase {phase} since {}",
                DateTime::from_timestamp(since, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
            true,
        ),
        Decision::Cooldown { remaining_secs } => Halt::reject(
            Code::CooldownActive,
            format!("the disk was rolled back recently; the cooldown has {remaining_secs}s left (ECS_ROLLBACK_COOLDOWN_SECONDS)"),
            false,
        ),
        Decision::BeyondHorizon { remembered } => Halt::reject(
            Code::KeyBeyondHorizon,
            format!("this request says nothing of when it was made, and the disk's history holds only its last {remembered} keys: a redelivery of a forgotten key cannot be told from a new one, so nothing was touched; send the request again with requestedAt (when it was made, RFC 3339), and it is decided by that time"),
            false,
        ),
        Decision::Unreadable(v) => Halt::reject(
            Code::LedgerUnavailable,
            format!("the tag {} holds {v:?}, which is not a run record; remove it by hand once no rollback runs", ledger::RUN_TAG),
            false,
        ),
        other => Halt::fail(ErrorInfo::new(
            Code::Internal,
            format!("{other:?} is not a refusal"),
            false,
        )),
    }
}
