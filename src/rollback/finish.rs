//! The end of a run: `done` with the key in the history; or, after any failure whose cause
//! cannot pass, the instance brought back first and `failed` recorded.

use super::*;

impl Run<'_> {
    /// The rollback happened (the reset's end seen, the instance in the power state asked):
    /// `succeeded`, whether or not the ledger can record it. A final write that fails is a
    /// warning, never a `failed` for what happened: the record stays at `starting` (or, if
    /// even that could not be written, earlier, where every resume proves the instance has not
    /// run since this key stopped it before any reset: `stop.rs`), so no delivery of this key
    /// resets again.
    pub(super) async fn finish(&mut self) -> Res<Outcome> {
        let t = self.now();
        // A brownout of the tag service passes: the record is asked again for a while (a
        // record left unfinished holds the disk against other keys for the whole lease).
        let until = Instant::now() + self.wait_budget(self.s.heartbeat_timeout);
        let mut pause = self.s.poll.initial;
        // The claim's removal goes beside the first `done` when it can (`ledger_io.rs`).
        let mut written = match self.write_done_releasing_claim().await {
            Ok(true) => Ok(()),
            Ok(false) => self.write_final(Phase::Done, None).await,
            Err(h) => Err(h),
        };
        while written.is_err() && Instant::now() + pause < until {
            // A lease lost meanwhile ends the asking (nothing more is written), not the result:
            // the rollback happened.
            if self.sleep(pause).await.is_err() {
                break;
            }
            pause = self.s.poll.next(pause);
            written = self.write_final(Phase::Done, None).await;
        }
        let (status, detail) = match written {
            Ok(()) => (
                StepStatus::Done,
                "ledger: phase done, key added to the history".to_owned(),
            ),
            Err(h) => {
                let w = format!(
                    "the rollback is done, but the ledger could not record it ({}): the record stays at phase {}, so a redelivery of this key does not reset again; the disk's history lacks this key and the cooldown does not count this rollback",
                    h.error.message,
                    self.phase()
                );
                tracing::warn!("{w}");
                self.warnings.push(w.clone());
                (StepStatus::Failed, w)
            }
        };
        self.step("finish", status, t, None, Some(detail));
        Ok(Outcome::Succeeded)
    }

    /// The reset failed for good (or the run could not go on, whatever the cause: an unknown
    /// code, a permission, a ledger write refused) after the instance may have been stopped:
    /// bring it back first if it was running, then record the failure, then report it. Every
    /// ledger write here is best effort: none of them keeps the instance stopped.
    pub(super) async fn restore_after_failure(&mut self, error: ErrorInfo) -> Res<Outcome> {
        let record = self.record()?;
        let t = self.now();
        // An instance started again since this key stopped it has had its power state given
        // back (by whoever started it); if it is stopped now, someone stopped it after that,
        // and starting it would overrule them.
        let restore = record.was_running && error.code != Code::InstanceStartedAgain.as_str();
        if let (Some(iid), true) = (self.instance_id(), restore) {
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
