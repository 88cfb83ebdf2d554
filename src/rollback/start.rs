//! Start: writes `starting` (from here the key never resets again; beside the first read of the
//! instance), then StartInstance asked
//! through every answer that is not Running until the deadline; the reset's end when the
//! instance is to stay stopped; `InstanceLeftStopped` when even that fails.

use super::*;

/// StartInstance answers that mean "not yet: the reset (or another operation) still runs": the
/// codes the StartInstance table gives for a disk or instance status, the conflicts terraform
/// retries after disk operations, and throttling (ecs-evidence.md §1, §4; which one ECS gives
/// while a reset runs is not documented).
pub(super) fn start_not_yet(e: &EcsError) -> bool {
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

impl Run<'_> {
    /// The reset's end (DescribeDisks, as Alibaba's automation waits for it), then the start.
    /// An instance to bring back is started even when the reset's end could not be seen in
    /// time: StartInstance itself waits through every "not yet" answer.
    pub(super) async fn finish_reset_and_start(&mut self) -> Res<()> {
        let record = self.record()?;
        let t = self.now();
        match self.instance_id() {
            // From `starting` on (a resumed run) the instance may be Running already, where a
            // ResetDisk DryRun says nothing of the reset: StartInstance's own waiting suffices.
            Some(iid) if record.end_running && self.phase() >= Phase::Starting => {
                self.meet_before_start().await?;
                self.start(&iid, self.now()).await?;
            }
            Some(iid) if record.end_running => {
                if let Err(h) = self.wait_reset_done(false).await {
                    tracing::warn!(error = %h.error.message, "the reset's end was not seen; StartInstance waits for it");
                    self.warnings.push(format!(
                        "the end of the reset was not seen ({}); StartInstance waited for it",
                        h.error.message
                    ));
                }
                // A disk of a whole-instance request starts only once every disk's reset
                // ended, and only on disks of one point in time (`group.rs`).
                self.meet_before_start().await?;
                self.start(&iid, self.now()).await?;
            }
            _ => {
                if let Err(h) = self.wait_reset_done(true).await {
                    if h.error.retryable && h.error.code != Code::WaitTimeout.as_str() {
                        // The deadline, or a lapsed claim: the next delivery waits on.
                        return Err(h);
                    }
                    return Err(self.reset_end_unconfirmed(t, h).await);
                }
                self.meet_before_start().await?;
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

    /// Brings the instance to Running: StartInstance, retried through every answer that is not
    /// Running (the reset still running, a conflict, an unknown code, a permission refused
    /// once, a lost answer, a failed read) until the deadline or the reset and start timeouts.
    /// ECS refuses StartInstance while the reset runs, so the first acceptance marks the
    /// reset's end. `Err` only when the instance is still not Running then (see `left_stopped`),
    /// or when it no longer exists.
    pub(super) async fn start(&mut self, iid: &str, t: DateTime<Utc>) -> Res<()> {
        // The first read of the instance goes beside the `starting` write (neither needs the
        // other's answer); StartInstance is asked only after both answered.
        let mut first = if self.phase() < Phase::Starting {
            // From `starting` on, the key never resets again. If even that cannot be written,
            // the instance comes back all the same: ECS refuses ResetDisk on an instance that is
            // not Stopped, and a later run that reads it Running before its reset stops there.
            let (written, read) =
                tokio::join!(self.write_phase(Phase::Starting), self.read_instance(iid));
            match written {
                Ok(record) => self.phase_written(record),
                Err(h) => {
                    tracing::error!(error = %h.error.message, "could not record phase starting; starting the instance all the same");
                    self.warnings.push(format!(
                        "phase starting could not be recorded: {}",
                        h.error.message
                    ));
                }
            }
            if let (Some(cache), Ok(i)) = (self.cache, read.as_ref()) {
                cache.put(&self.region, i).await;
            }
            Some(read)
        } else {
            None
        };
        let budget = self.wait_budget(self.s.reset_timeout + self.s.start_timeout);
        let until = Instant::now() + budget;
        let cadence = self.cadence(self.learned.start);
        // The wait's grid (`cadence.rs`) is anchored where the start began at ECS: its acceptance.
        let mut since = Instant::now();
        let mut request_id = None;
        // When StartInstance was refused because the reset ran, and when it was accepted: the
        // reset's end, as far as the API shows it.
        let mut waited_for_reset = false;
        let mut accepted_at = None;
        let mut calls = 0u32;
        // The last answer that was neither Running nor "the reset still runs".
        let mut unexpected: Option<String> = None;
        loop {
            let read = match first.take() {
                Some(read) => read,
                // Once StartInstance is accepted, the disk (its history and durations, for the
                // final record) is read beside the next poll, not after Running (issue 26).
                // The run's lease keeps every other writer off the history meanwhile, as it
                // does until `done` is written.
                None if accepted_at.is_some()
                    && self.history_read.is_none()
                    && self.group.is_none()
                    && !self.applies(When::Verify)
                    && self.record.as_ref().is_some_and(|r| r.failure.is_none()) =>
                {
                    let disk = self.disk_id();
                    let (read, seen) =
                        tokio::join!(self.read_for_start(iid), self.read_disk(&disk));
                    self.history_read = seen.ok();
                    read
                }
                None => self.read_for_start(iid).await,
            };
            let inst = match read {
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
                    if self.past_send_horizon() {
                        // Nothing is sent once the claim may lapse: the next delivery starts it.
                        return Err(self.left_stopped(iid, t, calls, unexpected, budget));
                    }
                    calls += 1;
                    match self.ecs.start_instance(&self.region, iid, false).await {
                        Ok(ack) => {
                            request_id = Some(ack.request_id);
                            if accepted_at.is_none() {
                                since = Instant::now();
                            }
                            accepted_at.get_or_insert_with(Utc::now);
                        }
                        Err(e) if start_not_yet(&e) => {
                            // The reset's own refusals mark it as still running (the timeline).
                            waited_for_reset |= [
                                "DiskError",
                                "IncorrectDiskStatus",
                                "InvalidOperation.DiskResetInProgress",
                            ]
                            .iter()
                            .any(|c| e.is_code(c));
                            tracing::info!(code = %e.code_or_kind(), "not yet (the reset, or another operation, still runs); StartInstance waits");
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
            self.wait_on(&cadence, since).await?;
        }
        // From this delivery's own StopInstance, to the millisecond; a resumed run has only
        // the ledger's whole second of an earlier delivery's.
        let stopped_at_ms = match self.stop_asked {
            Some(at) => Some(at.timestamp_millis()),
            None => self
                .record
                .as_ref()
                // An instance found Stopped has its `d` too (the resume checks' reference),
                // but no downtime of this rollback's.
                .filter(|r| r.was_running)
                .and_then(|r| r.stop_at)
                .map(|s| s * 1000),
        };
        if let Some(from) = stopped_at_ms {
            let ms = (self.now().timestamp_millis() - from).max(0);
            self.downtime_ms = Some(ms as u64);
        }
        let mut t = t;
        if let (true, Some(at), false) = (waited_for_reset, accepted_at, self.reset_end_seen) {
            // StartInstance, refused while the reset ran, was accepted: the reset's measured end;
            // the reset step lasts until then, and the start step from then.
            self.reset_ended(
                at,
                "StartInstance, refused while it ran, was accepted".into(),
            );
            if let Some(reset) = self
                .steps
                .iter_mut()
                .rev()
                .find(|s| s.name == "reset" && s.status == StepStatus::Done)
            {
                reset.finished_at = at;
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

    /// ResetDisk was accepted and no evidence of its end came within the reset's budget, for an
    /// instance that stays stopped: the disk may still be being reset, so the result is not
    /// `succeeded`. Nothing more is done (starting it would be against the request, and ECS
    /// refuses a start while a reset runs); the ledger records the failure, so no delivery of
    /// this key resets again.
    async fn reset_end_unconfirmed(&mut self, t: DateTime<Utc>, h: Halt) -> Halt {
        let disk = self.disk_id();
        let mut error = ErrorInfo::new(
            Code::ResetEndUnconfirmed,
            format!(
                "ResetDisk of {disk} was accepted, but {}: the disk may still be being reset and may not hold the snapshot yet; the instance stays stopped, as asked. Check the disk (DescribeDisks, or ResetDisk with DryRun=true answering InvalidOperation.DiskResetInProgress) before starting the instance",
                h.error.message
            ),
            false,
        );
        if let Err(w) = self.write_final(Phase::Failed, Some(&error.code)).await {
            error.message = format!(
                "{}; the failure could not be recorded in the ledger ({})",
                error.message, w.error.message
            );
        }
        self.failed("wait-reset", t, None, Halt::fail(error))
    }

    /// The instance is not Running at the end of `start`. Retryable: the ledger says `starting`
    /// (or later), so the next delivery of this key starts it and never resets the disk again.
    /// Said loudly: an ERROR line, the phase, what was tried, and how to start it by hand.
    pub(super) fn left_stopped(
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
            Code::DeadlineExceeded
        } else {
            Code::InstanceLeftStopped
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
        if code == Code::InstanceLeftStopped {
            tracing::error!(instance = iid, phase = %phase, code = %code, "{message}");
        } else {
            tracing::warn!(instance = iid, phase = %phase, code = %code, "{message}");
        }
        self.failed(
            "start",
            t,
            None,
            Halt::fail(ErrorInfo::new(code, message, true)),
        )
    }
}
