//! Reset: requires the instance Stopped (read right before) and, with `preserveCurrent`, the
//! undo snapshot usable; writes `resetting` (beside the confirmation of the record and the
//! guard's read), calls ResetDisk, records `reset`. A `DiskResetInProgress` is ours only when the ledger proves it.

use super::*;

impl Run<'_> {
    pub(super) async fn reset(&mut self) -> Res<()> {
        let t = self.now();
        let record = self.record()?;
        let mut need = self.estimate(self.s.estimate_reset, self.learned.reset);
        if record.end_running || record.was_running {
            need += self.estimate(self.s.estimate_start, self.learned.start);
        }
        self.fits("the reset", need)?;
        // The write-ahead, the confirmation of the holder and the guard's read of the instance
        // go out together: none needs another's answer, and ResetDisk waits for all three. The
        // guard's read is begun with the write, so it is at most one round trip older than a
        // read after it would be; nothing of this run acts in between, and ResetDisk is sent
        // only if it shows Stopped (else the loop reads again).
        let iid = self.instance_id();
        // One read per guard (issue 26): the stop's wait that just saw the instance Stopped,
        // in a read of its own answered less than a poll's pause ago with nothing of this run
        // between, is the guard's evidence; else the guard reads. Either way the instance was
        // Stopped at most about two round trips before ResetDisk arrives, under this run's
        // hold, and ECS refuses ResetDisk on an instance that is not Stopped
        // (ResetDisk-api.md), which the loop below reads again after.
        let recent = self
            .seen_stopped
            .take()
            .filter(|(_, at)| at.elapsed() < self.s.poll.initial)
            .map(|(inst, _)| inst);
        let reused = recent.is_some();
        let guard_read = async {
            match (&iid, recent) {
                (Some(_), Some(inst)) => Some(inst),
                (Some(id), None) => self.read_instance(id).await.ok(),
                (None, _) => None,
            }
        };
        let mut fresh = if self.phase() != Phase::Resetting {
            let (written, confirmed, fresh) = tokio::join!(
                self.write_phase(Phase::Resetting),
                self.confirm_holder("ResetDisk"),
                guard_read
            );
            self.phase_written(written?);
            confirmed?;
            fresh
        } else {
            let (confirmed, fresh) = tokio::join!(self.confirm_holder("ResetDisk"), guard_read);
            confirmed?;
            fresh
        };
        if let (Some(cache), Some(i), false) = (self.cache, fresh.as_ref(), reused) {
            cache.put(&self.region, i).await;
        }
        let disk = self.disk_id();
        let snapshot = record.snapshot.clone();
        let budget = self.wait_budget(self.s.reset_timeout);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        let mut issued = 0;
        let accepted_id = loop {
            // The guard: ResetDisk only right after a read shows the instance Stopped.
            if !self
                .stopped_right_now(until, &mut pause, fresh.take())
                .await?
            {
                continue;
            }
            self.before_change("ResetDisk")?;
            issued += 1;
            let e = match self
                .ecs
                .reset_disk(&self.region, &disk, &snapshot, false)
                .await
            {
                Ok(ack) => break Some(ack.request_id),
                Err(e) => e,
            };
            if e.kind == crate::ecs::ErrorKind::Held && Instant::now() < until {
                // Not sent: ECS asked (`x-acs-retry-after`) that ResetDisk wait. That is no try:
                // the wait is waited out within the reset's budget, then the guard reads again.
                issued -= 1;
                let left = until.saturating_duration_since(Instant::now());
                let wait = e.retry_after.unwrap_or(pause).max(pause).min(left);
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "ECS asked that ResetDisk wait; waiting"
                );
                self.sleep(wait).await?;
                continue;
            }
            if let Answered::Accepted(id) = self.after_refusal(t, &e, &disk, &snapshot).await? {
                break id;
            }
            if Instant::now() >= until || issued >= self.s.step_attempts * 4 {
                let mut h = Halt::ecs(Outcome::Failed, &e);
                h.error.code = Code::ResetGaveUp.into();
                h.error.retryable = false;
                h.error.message = format!("ResetDisk was not accepted after {issued} tries: {e}");
                return Err(self.failed("reset", t, e.request_id.clone(), h));
            }
            self.wait_a_little(&mut pause).await?;
        };
        self.reset_accepted = Some(Instant::now());
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

    /// The guard before ResetDisk: `true` when a fresh read shows the instance Stopped (or the
    /// disk is not attached), `false` to read again (a failed poll, Stopping); an instance
    /// started again since this key stopped it ends the run.
    /// `fresh`: a read of the instance made right before (not from the shared poll).
    async fn stopped_right_now(
        &mut self,
        until: Instant,
        pause: &mut Duration,
        fresh: Option<Instance>,
    ) -> Res<bool> {
        let Some(iid) = self.instance_id() else {
            return Ok(true);
        };
        let inst = match fresh {
            Some(inst) => inst,
            None => {
                let Some(inst) = self.poll_instance(&iid, until, pause).await? else {
                    return Ok(false);
                };
                if inst.status == "Stopped" && !self.still(&iid, "Stopped").await? {
                    return Ok(false);
                }
                inst
            }
        };
        match inst.status.as_str() {
            "Stopped" if self.resumed_from.is_some_and(|p| p >= Phase::Stopping) => {
                // An earlier delivery stopped it. Whatever phase it recorded last, the instance
                // may have run since (its start not recorded: a ledger write refused, then an
                // operator or a schedule stopped it again): ECS's StartTime decides.
                self.refuse_if_started_again(&inst)?;
                Ok(true)
            }
            "Stopped" => Ok(true),
            "Stopping" => {
                self.wait_a_little(pause).await?;
                Ok(false)
            }
            other => {
                // Someone started it: resetting now would destroy what it writes.
                let (code, what) = if self.resumed_from == Some(Phase::Resetting) {
                    (Code::InstanceStartedAgain.as_str(), "an earlier delivery of this key had announced the reset, so it may have run before that start; it is not issued again")
                } else {
                    ("IncorrectInstanceStatus", "the disk was not reset")
                };
                Err(Halt::fail(ErrorInfo::new(
                    code,
                    format!("the instance is {other} before the reset (started again since this key stopped it); {what}"),
                    false,
                )))
            }
        }
    }

    /// What a ResetDisk error means: accepted after all (a reset of this key runs), or try
    /// again (a lost answer with no reset running, a state on its way, throttling); a refusal
    /// for good, or a reset that is not this key's, ends the step.
    async fn after_refusal(
        &mut self,
        t: DateTime<Utc>,
        e: &EcsError,
        disk: &str,
        snapshot: &str,
    ) -> Res<Answered> {
        if e.is_code("InvalidOperation.DiskResetInProgress") {
            // Ours only when the ledger proves it: an earlier delivery of this key had
            // announced the reset, or this one issued a ResetDisk whose answer was unclear.
            if self.resumed_from == Some(Phase::Resetting) || self.reset_unclear {
                return Ok(Answered::Accepted(None));
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
                .reset_disk(&self.region, disk, snapshot, true)
                .await
            {
                Err(p) if p.is_code("InvalidOperation.DiskResetInProgress") => {
                    return Ok(Answered::Accepted(None))
                }
                // Not running: never applied, or applied and already done. The instance has
                // stayed Stopped, so a second reset to the same snapshot gives the same disk.
                _ => {
                    tracing::warn!(error = %e, "ResetDisk answer lost; no reset is running; issuing it again")
                }
            }
            return Ok(Answered::Again);
        }
        match e.retry {
            Retry::Retryable | Retry::AfterStateChange => {
                tracing::warn!(error = %e, "ResetDisk not accepted yet; waiting");
                Ok(Answered::Again)
            }
            Retry::NotRetryable | Retry::DryRunSuccess | Retry::NextDelivery => {
                self.step(
                    "reset",
                    StepStatus::Failed,
                    t,
                    e.request_id.clone(),
                    Some(e.to_string()),
                );
                Err(Halt::ecs(Outcome::Failed, e))
            }
        }
    }

    /// After ResetDisk is accepted, waits for positive evidence that the reset ended, the way
    /// Alibaba's own automation waits for it: DescribeDisks until the disk's `Status` is
    /// `In_use` again after it left it (OOS `ACS::ECS::ResetDisk` `untilDiskIdReady`, added in
    /// 2019 between ResetDisk and StartInstance: ecs-evidence.md §1, High). No status during a
    /// reset is documented, so a disk that never leaves `In_use` cannot say the reset ended;
    /// then ResetDisk's DryRun: `InvalidOperation.DiskResetInProgress` while a reset runs
    /// (inferred: DryRun checks "resource state limits", ecs-api.md §3.1; ecs-evidence.md §7),
    /// and its passing *after it said so* is the end. What is not evidence: a DryRun that
    /// passes without ever having said a reset runs (a view that lags the reset, or an ECS whose
    /// DryRun does not check resets), a code nobody foresaw, a status that never moved (a
    /// DescribeDisks that lags). Those are read again until the reset's budget ends; then
    /// `Err`, and the caller decides: StartInstance, whose acceptance is evidence too, or, for
    /// an instance that stays stopped, `ResetEndUnconfirmed` (never `succeeded`). The end seen
    /// here is the reset's measured end, the only one the ledger learns a duration from.
    ///
    /// `strict` (an instance that stays stopped): only evidence ends the wait. Otherwise (a
    /// start follows) a passing DryRun also ends it, without counting as evidence: the start
    /// is tried, and only its acceptance says the reset ended.
    pub(super) async fn wait_reset_done(&mut self, strict: bool) -> Res<()> {
        let t = self.now();
        let record = self.record()?;
        let disk = self.disk_id();
        let budget = self.wait_budget(self.s.reset_timeout);
        let until = Instant::now() + budget;
        let cadence = self.cadence(self.learned.reset);
        // The wait's grid (`cadence.rs`) is anchored where the reset began at ECS: its
        // acceptance, when this delivery asked it.
        let since = self.reset_accepted.take().unwrap_or_else(Instant::now);
        // What this ECS shows during a reset: `Some(true)` the disk left `In_use` (its return is
        // the end), `Some(false)` the DryRun said a reset runs (its passing is the end).
        let mut status_moves: Option<bool> = None;
        // The last answer that said nothing (for the message when no end is seen).
        let mut unclear: Option<String> = None;
        let seen_end = loop {
            let ask_dry_run = status_moves != Some(true);
            if status_moves != Some(false) {
                match self.read_disk(&disk).await {
                    Ok(d) if !matches!(d.status.as_str(), "In_use" | "Available") => {
                        status_moves = Some(true);
                    }
                    Ok(d) if status_moves == Some(true) => {
                        break format!("DescribeDisks shows it {} again", d.status);
                    }
                    Ok(_) => {}
                    Err(h) => {
                        tracing::warn!(error = %h.error.message, "reading the disk failed; reading again");
                        unclear = Some(format!("reading the disk: {}", h.error.message));
                    }
                }
            }
            if ask_dry_run && status_moves != Some(true) {
                match self
                    .ecs
                    .reset_disk(&self.region, &disk, &record.snapshot, true)
                    .await
                {
                    Err(e) if e.is_code("InvalidOperation.DiskResetInProgress") => {
                        status_moves = Some(false);
                    }
                    Ok(_) if status_moves == Some(false) => {
                        break "its DryRun, which had said the reset runs, passes".into();
                    }
                    Ok(_) if !strict => return Ok(()),
                    Ok(_) if self.resumed_from >= Some(Phase::Resetting) && !self.reset_unclear => {
                        // An earlier delivery's reset: if it ran, it ended before this delivery
                        // looked, and no evidence of its end can come any more.
                        return Err(self.timed_out(
                            "an earlier delivery's reset was not seen to run or to end (ResetDisk's DryRun passes)",
                            Duration::ZERO,
                        ));
                    }
                    Ok(_) => {
                        unclear = Some("ResetDisk's DryRun passes, but never said a reset runs (a view that lags the reset?)".into());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ResetDisk's DryRun answered something that says nothing of the reset; asking again");
                        unclear = Some(format!("ResetDisk's DryRun: {e}"));
                    }
                }
            }
            if Instant::now() >= until {
                return Err(self.timed_out(
                    &format!(
                        "no evidence that the reset ended was seen in {} s{}",
                        budget.as_secs(),
                        unclear.map(|u| format!(" (last: {u})")).unwrap_or_default()
                    ),
                    budget,
                ));
            }
            self.wait_on(&cadence, since).await?;
        };
        self.reset_ended(t, seen_end);
        Ok(())
    }

    /// Positive evidence that the reset ended, seen now: the reset step lasts until then (the
    /// timeline shows its real length, and the ledger learns it).
    pub(super) fn reset_ended(&mut self, t: DateTime<Utc>, how: String) {
        let end = self.now();
        self.reset_end_seen = true;
        match self
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.name == "reset" && s.status == StepStatus::Done)
        {
            Some(reset) => {
                reset.finished_at = end;
                if let Some(d) = reset.detail.as_mut() {
                    d.push_str(&format!("; ended: {how}"));
                }
            }
            None => {
                let disk = self.disk_id();
                self.step(
                    "wait-reset",
                    StepStatus::Done,
                    t,
                    None,
                    Some(format!("reset of {disk} ended: {how}")),
                )
            }
        }
    }
}

/// A ResetDisk error, read.
enum Answered {
    /// A reset of this key runs (the RequestId, when the call that started it answered).
    Accepted(Option<String>),
    Again,
}
