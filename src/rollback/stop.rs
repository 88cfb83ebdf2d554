//! Stop: requires the run record (phase `claimed` or later); writes `stopping` (with the
//! time), calls StopInstance only while a fresh read shows Running, waits for Stopped, records
//! `stopped` (in the reset's `resetting` when no undo snapshot comes between). A resumed run
//! at `stopping` never stops an instance started again since.

use super::*;

impl Run<'_> {
    pub(super) async fn stop(&mut self) -> Res<()> {
        let t = self.now();
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
        let cadence = self.cadence(self.learned.stop);
        // The wait's grid (`cadence.rs`) is anchored where the stop began at ECS: its acceptance.
        let mut since = Instant::now();
        // A fresh run's record goes on the disk as `stopping`, beside the guard's read.
        let (mut first, mut announced) = match self.record_unwritten {
            true => (self.announce_with_guard_read(&iid).await?, true),
            false => (None, false),
        };
        // The announcement stands for a StopInstance right after it only: a guard read that
        // did not show Running (or failed) leaves the stop to a later read, and `d` and the
        // confirmation are made again then, right before it.
        let mut new_d = false;
        if announced && first.as_ref().is_none_or(|(i, _)| i.status != "Running") {
            announced = false;
            new_d = true;
        }
        loop {
            // When the read was answered, if it was this run's own (not a shared poll).
            let (inst, answered) = match first.take() {
                Some((inst, at)) => (inst, Some(at)),
                None => {
                    let Some(inst) = self.poll_instance(&iid, until, &mut pause).await? else {
                        continue;
                    };
                    // The state that decides a call is read fresh, not taken from a shared
                    // poll.
                    if inst.status == "Running" && !self.still(&iid, "Running").await? {
                        continue;
                    }
                    (inst, self.cache.is_none().then(Instant::now))
                }
            };
            match inst.status.as_str() {
                "Stopped" => {
                    if let Some(at) = answered {
                        self.seen_stopped = Some((inst, at));
                    }
                    break;
                }
                "Running" => {
                    if attempts >= self.s.step_attempts {
                        return Err(Halt::fail(ErrorInfo::new(
                            Code::StopFailed,
                            format!(
                                "the instance is still Running after {attempts} StopInstance calls"
                            ),
                            true,
                        )));
                    }
                    if attempts == 0 && !announced {
                        if new_d {
                            if let Some(r) = self.record.as_mut() {
                                r.stop_at = None;
                            }
                        }
                        self.announce_stop(&inst).await?;
                    }
                    attempts += 1;
                    let opts = StopOptions {
                        force_stop: self.req.force_stop,
                        ..Default::default()
                    };
                    self.before_change("StopInstance")?;
                    self.stop_asked.get_or_insert_with(Utc::now);
                    match self.ecs.stop_instance(&self.region, &iid, &opts).await {
                        Ok(ack) => {
                            request_id = Some(ack.request_id);
                            since = Instant::now();
                        }
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
            self.wait_on(&cadence, since).await?;
        }
        if request_id.is_none() {
            // Found Stopped: from now on, a start is someone else's, and every resume checks
            // for one (StartTime) before it resets.
            let now = unix(self.now());
            if let Some(r) = self.record.as_mut() {
                r.stop_at.get_or_insert(now);
            }
        }
        let (status, detail) = match request_id {
            Some(_) => (StepStatus::Done, "Stopped (StoppedMode=KeepCharging)"),
            None => (StepStatus::Skipped, "already Stopped"),
        };
        self.step("stop", status, t, request_id, Some(detail.into()));
        if self.phase() == Phase::Stopping && !self.applies(When::UndoSnapshot) {
            // `stopped` would carry nothing that `resetting`, the reset step's first write,
            // does not (the record with its `D`), and a resume reads both the same way: the
            // instance found Stopped, then the reset's guard and StartTime check. So the two
            // are one write (issue 26). With an undo snapshot to take first, `stopped` stays.
            return Ok(());
        }
        self.set_phase(Phase::Stopped).await
    }

    /// A fresh run's first write (`claimed` deferred, `ledger_io.rs`): the record as `stopping`
    /// with the time the stop is asked, beside its confirmation and the guard's read of the
    /// instance. Neither read needs the write's answer, and StopInstance waits for all three,
    /// so the write still lands before the call; the read is the fresh one the guard needs
    /// (sent with the write, one round trip before the call at most, nothing of this run acting
    /// in between), with when it was answered. A read that failed is made again by the wait
    /// (`None`). Should it show the instance not Running, `stopping` was written for a stop not
    /// asked yet: a resume at `stopping` that finds it Stopped goes on as from `stopped`, with
    /// the StartTime check; and if the instance is to be stopped after a wait, `d` and the
    /// confirmation are made again right before StopInstance (`stop`).
    async fn announce_with_guard_read(&mut self, iid: &str) -> Res<Option<(Instance, Instant)>> {
        self.fits(
            "the stop",
            self.estimate(self.s.estimate_stop, self.learned.stop),
        )?;
        let now = unix(self.now());
        if let Some(r) = self.record.as_mut() {
            r.stop_at.get_or_insert(now);
        }
        let (written, confirmed, read) = tokio::join!(
            self.write_record_at(Phase::Stopping),
            self.confirm_holder("StopInstance"),
            async { (self.read_instance(iid).await, Instant::now()) }
        );
        // The record's first write, refused, is refused as the claim's `claimed` was: nothing
        // has changed (the claim is given back when the run ends).
        let (record, written) = written?;
        written.map_err(|e| refuse_ledger(&e))?;
        self.phase_written(record);
        confirmed?;
        let (read, answered) = read;
        let read = read.ok();
        if let (Some(cache), Some(inst)) = (self.cache, &read) {
            cache.put(&self.region, inst).await;
        }
        Ok(read.map(|inst| (inst, answered)))
    }

    /// Before the first StopInstance: never an instance started again since this key stopped
    /// it; the stop announced (with the time it was asked), then the record confirmed.
    async fn announce_stop(&mut self, inst: &Instance) -> Res<()> {
        if self.resumed_from == Some(Phase::Stopping) {
            self.refuse_if_started_again(inst)?;
        }
        if self.phase() < Phase::Stopping {
            self.fits(
                "the stop",
                self.estimate(self.s.estimate_stop, self.learned.stop),
            )?;
        }
        let now = unix(self.now());
        if let Some(r) = self.record.as_mut() {
            r.stop_at.get_or_insert(now);
        }
        // The confirmation reads beside the write: both are before StopInstance, and a read
        // that misses the write still shows this run's record (`claimed`).
        self.set_phase_and_confirm(Phase::Stopping, "StopInstance")
            .await
    }

    /// A resumed run that reads the instance (at phase `stopping`: Running; past it, before any
    /// reset: Stopped): either nothing happened since this key stopped it, or the instance was
    /// started again since (by a person, or by a delivery that brought it back and could not
    /// record so) and maybe stopped again. Stopping it again or resetting would destroy what it
    /// wrote since that start, so ECS's own `StartTime` (to the minute) decides: a start in or
    /// after the minute the stop was asked (ECS's clock, as `d` is) counts as "started again".
    pub(super) fn refuse_if_started_again(&self, inst: &Instance) -> Res<()> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        let asked = record.stop_at.unwrap_or(record.since);
        let minute = asked - asked.rem_euclid(60);
        match inst.start_time {
            Some(started) if started.timestamp() >= minute => Err(Halt::fail(ErrorInfo::new(
                Code::InstanceStartedAgain,
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
}
