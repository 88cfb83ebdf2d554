//! The ledger's writes and reads as the run makes them: phases (each doubling as the claim's
//! heartbeat), the claim contest with its settle time, the confirmation before a
//! state-changing call, the final record with the history.

use super::*;

impl Run<'_> {
    /// Runs an idempotent ledger operation (writing or removing tags), repeating it with
    /// backoff when its answer was lost or refused for a reason a retry can fix.
    pub(super) async fn idempotent<F, Fut>(&self, what: &str, op: F) -> Result<(), EcsError>
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
    pub(super) async fn write_tags(&self, tags: &[(String, String)]) -> Result<(), EcsError> {
        if self.past_send_horizon() {
            return Err(EcsError::transport(
                "TagResources",
                crate::ecs::ErrorKind::PastDeadline,
                "not sent: the invocation's deadline is too close for a ledger write".into(),
            ));
        }
        let disk = vec![self.disk_id()];
        self.idempotent("write", || {
            self.ecs.tag_resources(&self.region, "disk", &disk, tags)
        })
        .await
    }

    /// Removes tags from the disk (best effort: a claim left behind goes stale by itself).
    pub(super) async fn remove_tags(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        if self.past_send_horizon() {
            // Nothing changes once the claim may lapse; what is left goes stale by itself.
            tracing::info!(tags = ?keys, "not removing ledger tags this close to the deadline");
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

    pub(super) async fn remove_tag(&self, key: &str) {
        self.remove_tags(&[key.to_owned()]).await;
    }

    /// Records the phase before the call it announces. If the write fails, the call is not made.
    pub(super) async fn set_phase(&mut self, phase: Phase) -> Res<()> {
        let record = self.write_phase(phase).await?;
        self.phase_written(record);
        Ok(())
    }

    /// The phase write alone (it changes nothing of the run): what `set_phase` writes, so a
    /// read that needs no order with it (the guard's, the confirmation's) can go beside it.
    /// The caller records the result with `phase_written` before the call it announces.
    pub(super) async fn write_phase(&self, phase: Phase) -> Res<RunRecord> {
        let (record, result) = self.write_record_at(phase).await?;
        result.map_err(|e| {
            let mut h = Halt::ecs(Outcome::Failed, &e);
            h.error.code = Code::LedgerWriteFailed.into();
            // Retryable only when its cause can pass (throttling, a transient error, a lost
            // answer); a refusal for good (quota, permission) is not, and the caller brings the
            // instance back instead of waiting for deliveries that would fail the same way.
            h.error.retryable = e.can_pass() || e.may_have_applied;
            h.error.message = format!(
                "could not record phase {phase} on the disk, so the next call was not made: {e}"
            );
            h
        })?;
        tracing::debug!(phase = %phase, "ledger written");
        Ok(record)
    }

    /// The record at `phase`, and the answer to its write (with the claim's renewal).
    pub(super) async fn write_record_at(
        &self,
        phase: Phase,
    ) -> Res<(RunRecord, Result<(), EcsError>)> {
        let mut record = self.record()?;
        record.phase = phase;
        record.since = unix(self.now());
        // The phase write doubles as the claim's renewal (serialized with the keeper's).
        let lease = self.lease.clone();
        let writing = lease.writing().await;
        let written = Instant::now();
        let tags = [
            (ledger::RUN_TAG.to_owned(), record.encode()),
            self.claim_tags(),
        ];
        let result = self.write_tags(&tags).await;
        if result.is_ok() {
            lease.renewed(written);
        }
        drop(writing);
        Ok((record, result))
    }

    /// A phase write acknowledged (`write_phase`): the run's record from now on.
    pub(super) fn phase_written(&mut self, record: RunRecord) {
        self.claimed = true;
        self.record_unwritten = false;
        self.record = Some(record);
    }

    /// The phase written beside the confirmation of the holder (both before the call they
    /// guard; neither needs the other's answer: the confirmation accepts this run's record at
    /// the phase before, which a read racing the write may show).
    pub(super) async fn set_phase_and_confirm(&mut self, phase: Phase, before: &str) -> Res<()> {
        let (written, confirmed) =
            tokio::join!(self.write_phase(phase), self.confirm_holder(before));
        self.phase_written(written?);
        confirmed
    }

    /// Gives the claim back (the run ends, or plans again).
    pub(super) async fn release_claim(&mut self) {
        if self.claimed {
            self.lease.give_back().await;
            self.remove_tag(&claim::claim_tag(&self.invocation)).await;
            self.claimed = false;
        }
    }

    /// The disk's tags, read as the ledger (one ListTagResources).
    async fn read_ledger(&self) -> Result<Ledger, EcsError> {
        let tags = self
            .ecs
            .list_tag_resources(&self.region, "disk", &[self.disk_id()])
            .await?;
        Ok(Ledger::from_tags(
            tags.iter()
                .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
        ))
    }

    /// Right before a state-changing call: reads the ledger and checks that the record this run
    /// acts on is still its own. What a lagging read may still show of the time before this
    /// run's own writes (the record it replaced) is accepted; another key's record, or this
    /// key's record finished by a twin, stops the run (retryable: whoever holds the disk now
    /// finishes; nothing more is done here).
    pub(super) async fn confirm_holder(&self, before: &str) -> Res<()> {
        let seen = self
            .read_ledger()
            .await
            .map_err(|e| Halt::ecs(Outcome::Failed, &e))?;
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
                    Code::RollbackInProgress,
                    format!("the ledger changed under this run before {before}: {p}; nothing more was done by this delivery"),
                    true,
                )))
            }
        }
    }

    pub(super) fn claim_tags(&self) -> (String, String) {
        (
            claim::claim_tag(&self.invocation),
            self.lease.claim_value(self.now()),
        )
    }

    /// Writes this invocation's claim tag, reads the tags back, and yields to any other live
    /// claim or other key's live run.
    ///
    /// Each invocation writes its own claim tag, waits the settle time, then reads the others
    /// back, so of two invocations (different keys, or twins of one key) at least one sees the
    /// other and yields: at most one proceeds. Both may yield; the one with the smallest
    /// invocation ID then retries first, so one gets through. The claim stays for the whole
    /// run, refreshed as a heartbeat, and is removed when the run ends.
    pub(super) async fn take_claim(&mut self) -> Res<Ledger> {
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
    pub(super) async fn contest(&mut self) -> Res<Ledger> {
        const ATTEMPTS: u32 = 6;
        let lease = self.s.lease.as_secs() as i64;
        let beat = self.s.heartbeat_timeout.as_secs().max(1) as i64;
        let mut attempt = 0;
        let mut beside = self.beside_hold_seen();
        loop {
            attempt += 1;
            let (tag, written, round_trip, seen) = match beside.take() {
                // Written beside the instance hold and read back with it, one settle for both:
                // the same write, wait and read as below.
                Some((tag, written, seen)) => (tag, written, written, seen),
                None => {
                    let written = Instant::now();
                    let tag = self.claim_tags();
                    let round_trip = Instant::now();
                    self.write_tags(std::slice::from_ref(&tag))
                        .await
                        .map_err(|e| refuse_ledger(&e))?;
                    self.claimed = true;
                    let seen = self.read_after_own_claim(&tag).await?;
                    (tag, written, round_trip, seen)
                }
            };
            // Claims of invocations that died (or could not remove theirs) are cleared away,
            // so they never fill the disk's 20 tags.
            let now = unix(self.now());
            let stale: Vec<String> = seen
                .claims
                .iter()
                .filter(|c| c.invocation != self.invocation && !c.live(now, beat))
                .map(|c| claim::claim_tag(&c.invocation))
                .collect();
            self.remove_tags(&stale).await;
            // An abandoned run being taken over is outside the lease, so it does not count here.
            let Some(other) = ledger::contested(
                &seen,
                &self.invocation,
                &self.digest,
                unix(self.now()),
                lease,
                beat,
            ) else {
                self.lease.taken(&self.disk_id(), written);
                self.took_disk = true;
                return Ok(seen);
            };
            self.remove_tag(&tag.0).await;
            self.claimed = false;
            let holds_run = seen.run.as_ref().is_some_and(|r| r.key == other.key);
            if holds_run || attempt >= ATTEMPTS {
                let when = DateTime::from_timestamp(other.expires_at, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let why = if other.by_deadline {
                    "its invocation's deadline"
                } else {
                    "its heartbeat timeout"
                };
                let message = if other.same_key {
                    format!("an earlier delivery of this key still holds the disk (its claim is live); it may be running, or dead: its claim lapses at {when} ({why}), and a delivery after that takes over")
                } else {
                    format!("another rollback (key digest {}) is running on the disk; its claim lapses at {when} ({why}) unless it is refreshed", other.key)
                };
                return Err(Halt {
                    outcome: self.failed_or_rejected(),
                    error: ErrorInfo::new(Code::RollbackInProgress, message, true),
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
                .filter(|c| c.invocation != self.invocation && c.live(unix(self.now()), beat))
                .all(|c| self.invocation < c.invocation);
            let share = if first {
                0.1 + 0.2 * fastrand::f64()
            } else {
                0.6 + 0.4 * fastrand::f64()
            };
            let pause = ceiling.mul_f64(share);
            tracing::info!(rival = %other.key, pause_ms = pause.as_millis() as u64, "two runs claimed the disk together; both yield, then retry");
            tokio::time::sleep(pause).await;
        }
    }

    /// Reads the disk's tags `tag_settle` after this run's claim was written, and again until
    /// the claim itself shows. Two runs that both wait the settle time before reading cannot
    /// both miss the other's claim while reads lag writes by less than it (each read then
    /// shows every write older than the settle time: if A misses B's claim, B wrote after A's
    /// read minus the lag, so after A's own write, and B's read, later still, shows A's).
    pub(super) async fn read_after_own_claim(&mut self, tag: &(String, String)) -> Res<Ledger> {
        const READS: u32 = 5;
        let mine = Ledger::from_tags([(tag.0.as_str(), tag.1.as_str())]).claims;
        for _ in 0..READS {
            tokio::time::sleep(self.s.tag_settle).await;
            let seen = match self.read_ledger().await {
                Ok(seen) => seen,
                Err(e) => return Err(Halt::ecs(self.failed_or_rejected(), &e)),
            };
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
                Code::LedgerUnavailable,
                format!(
                    "the disk's tags did not show this run's own claim {READS} times {}ms after it was written: tag reads lag more than ECS_ROLLBACK_TAG_SETTLE_MS, so no claim can be trusted; nothing was done",
                    self.s.tag_settle.as_millis()
                ),
                true,
            ),
        })
    }

    /// Takes the disk for a fresh run: the claim contest, then the run record.
    pub(super) async fn claim(
        &mut self,
        plan: &Plan,
        takeover: Option<&RunRecord>,
        instance: Option<String>,
        planned: &Decision,
        defer: bool,
    ) -> Res<()> {
        let t = self.now();
        let fresh = self.take_claim().await?;
        self.same_plan(&fresh, planned)?;
        let record = RunRecord {
            key: ledger::run_key(&self.digest),
            phase: Phase::Claimed,
            since: unix(self.now()),
            snapshot: plan.snapshot_id.clone(),
            was_running: plan.was_running,
            end_running: plan.end_running,
            stop_at: takeover.and_then(|r| r.stop_at),
            failure: None,
            undo: None,
            // A take-over inherits the instance the abandoned run stopped.
            instance: takeover.and_then(|r| r.instance.clone()).or(instance),
        };
        if defer {
            // Written as `stopping` beside the stop's guard read (`stop.rs`). Until then the
            // disk carries this run's live claim and nothing else of it: a crash leaves no
            // record, and the next delivery starts afresh (nothing was changed).
            self.record = Some(record);
            self.record_unwritten = true;
            self.step(
                "claim",
                StepStatus::Done,
                t,
                None,
                Some(format!(
                    "claim won; the run record ({}) is first written by the stop, as phase stopping",
                    ledger::RUN_TAG
                )),
            );
            return Ok(());
        }
        let mut tags = vec![
            (ledger::RUN_TAG.to_owned(), record.encode()),
            self.claim_tags(),
        ];
        if let Some(stale) = takeover.filter(|r| r.phase.reset_issued()) {
            // The abandoned run reset the disk (its final record may have failed to be written):
            // its key goes into the history with this record, so a redelivery of it is a
            // duplicate once its run tag is overwritten, never a second reset. The history is
            // the one the claim contest read.
            let mut history = fresh.history.clone();
            history.remember(&stale.key, stale.failure.is_some());
            tags.push((ledger::HISTORY_TAG.to_owned(), history.encode()));
        }
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

    pub(super) async fn write_final(&mut self, phase: Phase, failure: Option<&str>) -> Res<()> {
        let (record, mut tags) = self.final_tags(phase, failure).await?;
        let mut written = self.write_tags(&tags).await;
        if matches!(&written, Err(e) if e.is_code("OperationDenied.QuotaExceed") || e.is_code("QuotaExceed.Tags"))
            && tags.len() > 2
        {
            // No room for a new tag (the durations): the record and the history matter more.
            tags.truncate(2);
            self.warnings.push(
                "the step durations could not be recorded: the disk has no room for the tag".into(),
            );
            written = self.write_tags(&tags).await;
        }
        written.map_err(|e| final_refused(&e))?;
        self.record_unwritten = false;
        self.record = Some(record);
        Ok(())
    }

    /// The final record's tags: the record at `phase`, the history read again and this key
    /// pushed onto it, the durations learned (with `done`).
    async fn final_tags(
        &mut self,
        phase: Phase,
        failure: Option<&str>,
    ) -> Res<(RunRecord, Vec<(String, String)>)> {
        let mut record = self.record()?;
        let now = unix(self.now());
        record.phase = phase;
        record.since = now;
        record.failure = failure.map(str::to_owned);
        // The history must be read before it is rewritten: a failed read never becomes an
        // empty history (that would forget the cooldown and the keys that finished).
        let mut attempt = 0;
        let read_before = self.history_read.take().filter(|_| phase == Phase::Done);
        let disk = loop {
            if let Some(disk) = read_before {
                // Read during the start's wait, under this run's live claim (`start.rs`).
                break disk;
            }
            attempt += 1;
            match self.read_disk(&self.disk_id()).await {
                Ok(d) => break d,
                Err(h) if h.error.retryable && attempt < LEDGER_ATTEMPTS => {
                    tokio::time::sleep(self.s.poll.initial * attempt).await;
                }
                Err(mut h) => {
                    h.error.code = Code::LedgerWriteFailed.into();
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
        let mut tags = vec![
            (ledger::RUN_TAG.to_owned(), record.encode()),
            (ledger::HISTORY_TAG.to_owned(), history.encode()),
        ];
        // What this rollback measured, over what the disk had learned: the next run's waits
        // and estimates start from it (written with the record: no call of its own).
        let learned =
            ledger::Durations::decode(disk.tags.get(ledger::DURATIONS_TAG).unwrap_or_default())
                .merge(self.measured());
        if phase == Phase::Done && !learned.is_empty() {
            tags.push((ledger::DURATIONS_TAG.to_owned(), learned.encode()));
        }
        Ok((record, tags))
    }

    /// `done` with the claim's removal sent beside it (issue 26): the answer waits for one
    /// round trip, not two. Only while the record's phase was written less than half a
    /// heartbeat ago: until `done` lands, every reader counts this run's holder alive by its
    /// phase's time alone, claim or no claim (`ledger::decide`, the contest), so the removal
    /// landing first gives nobody the disk. No renewal of the claim is in flight or starts
    /// meanwhile (the lease's write lock), so none lands after the removal; once both are
    /// acknowledged the claim is given back. One attempt each: if `done` is not acknowledged,
    /// the claim is written again (the fallback holds the disk as before) and `Err` lets
    /// `finish` ask again as it always did. `Ok(false)`: not tried (the phase is older, or no
    /// claim is held); `finish` writes `done` alone.
    pub(super) async fn write_done_releasing_claim(&mut self) -> Res<bool> {
        let beat = self.s.heartbeat_timeout.as_secs().max(1) as i64;
        let fresh = self
            .record
            .as_ref()
            .is_some_and(|r| unix(self.now()) - r.since < beat / 2);
        // A disk of a whole-instance request keeps its claim until every disk's run has ended
        // (the instance's hold is judged live by it: `group.rs`).
        if !fresh || !self.claimed || self.past_send_horizon() || self.group.is_some() {
            return Ok(false);
        }
        let (record, tags) = self.final_tags(Phase::Done, None).await?;
        let lease = self.lease.clone();
        let writing = lease.writing().await;
        let disk = [self.disk_id()];
        let claim = [claim::claim_tag(&self.invocation)];
        // The instance's hold goes too: the instance is in its final power state and the run
        // succeeded whatever `done`'s answer (`finish`), the release `mod.rs` would make after
        // the run (issue 26). One call, asked once like the two beside it, so the lock is held
        // no longer than one round trip; one that fails is made there again (with retries).
        let hold = self.hold.clone();
        let release = async {
            match &hold {
                Some(held) if held.superseded.len() < 20 => {
                    let mut keys = vec![held.tag.clone()];
                    keys.extend(held.superseded.iter().cloned());
                    let ids = [held.instance.clone()];
                    self.ecs
                        .untag_resources(&self.region, "instance", &ids, &keys)
                        .await
                        .is_ok()
                }
                _ => false,
            }
        };
        let (written, removed, released) = tokio::join!(
            self.ecs.tag_resources(&self.region, "disk", &disk, &tags),
            self.ecs
                .untag_resources(&self.region, "disk", &disk, &claim),
            release
        );
        if released {
            self.hold = None;
        }
        match written {
            Ok(_) => {
                self.record = Some(record);
                if removed.is_ok() {
                    lease.give_back_held(&writing);
                    self.claimed = false;
                }
                // A removal that failed is made again when the run ends, as before.
                Ok(true)
            }
            Err(e) => {
                if removed.is_ok() {
                    // The record still says the phase before: the claim goes back on the disk
                    // (a renewal), so the retries hold it as a run always did.
                    let again = Instant::now();
                    if self.write_tags(&[self.claim_tags()]).await.is_ok() {
                        lease.renewed(again);
                    }
                }
                Err(final_refused(&e))
            }
        }
    }
}

/// A final record that could not be written.
fn final_refused(e: &EcsError) -> Halt {
    let mut h = Halt::ecs(Outcome::Failed, e);
    h.error.code = Code::LedgerWriteFailed.into();
    h.error.retryable = true;
    h.error.message = format!("the rollback ran, but its end could not be recorded ({e}); the next run with this key records it");
    h
}

/// The disk's claim written beside the instance hold, so that one settle time serves both
/// (issue 26): the hold's write and the claim's go out together, and after one settle both
/// are read back. Used only where the claim contest follows the hold at once (a fresh run once
/// its preflight passed, a resume) and only when the hold was taken without waiting; withdrawn
/// whenever the hold does not end `Ok` (a wait, a rival, a refusal) or yields.
#[derive(Default)]
pub(super) struct BesideHold(std::sync::Mutex<Beside>);

#[derive(Default)]
enum Beside {
    #[default]
    Off,
    /// The next hold write carries the disk's claim beside it.
    Wanted,
    /// The claim `tag` was sent (its write began at `written`), not yet seen read back.
    Written {
        tag: (String, String),
        written: Instant,
    },
    /// Refused for good: the run is refused as the contest would refuse it.
    Refused(Box<EcsError>),
    /// Read back at least the settle time after it was written, showing itself: the claim
    /// contest's first read.
    Seen {
        tag: (String, String),
        written: Instant,
        seen: Box<Ledger>,
    },
}

impl BesideHold {
    fn lock(&self) -> std::sync::MutexGuard<'_, Beside> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Run<'_> {
    /// Holds the instance (`instance_hold.rs`) with the disk's claim written beside the hold.
    /// On `Ok` the claim is this run's to contest (`contest` starts from the read made with the
    /// hold's); on `Err` it is withdrawn, so a run that waits, yields or is refused leaves no
    /// claim behind.
    pub(super) async fn hold_and_claim(
        &mut self,
        instance: Option<&Instance>,
        seen_tags_clear: bool,
        record_w: Option<bool>,
        stale_w: Option<bool>,
    ) -> Res<()> {
        if !self.req.dry_run && self.hold.is_none() && instance.is_some() {
            *self.beside_hold.lock() = Beside::Wanted;
        }
        let held = self
            .hold_instance(instance, seen_tags_clear, record_w, stale_w)
            .await;
        let beside = std::mem::take(&mut *self.beside_hold.lock());
        match (&held, beside) {
            (Ok(()), seen @ Beside::Seen { .. }) => {
                self.claimed = true;
                *self.beside_hold.lock() = seen;
            }
            // Sent, but not seen back: the contest writes it again and reads again.
            (Ok(()), Beside::Written { .. }) => self.claimed = true,
            (Err(_), Beside::Written { tag, .. } | Beside::Seen { tag, .. }) => {
                self.remove_tag(&tag.0).await;
            }
            (Ok(()), Beside::Refused(e)) => return Err(refuse_ledger(&e)),
            _ => {}
        }
        held
    }

    /// Beside the hold's write (`instance_hold.rs`): the disk's claim, when wanted and the hold
    /// is taken without a wait. A write that fails leaves it to the contest (which writes it
    /// again and reports a refusal); it is withdrawn all the same if the hold fails.
    pub(super) async fn write_claim_beside_hold(&self, waited: bool) {
        let wanted = matches!(*self.beside_hold.lock(), Beside::Wanted);
        if waited || !wanted {
            return;
        }
        let written = Instant::now();
        let tag = self.claim_tags();
        let result = self.write_tags(std::slice::from_ref(&tag)).await;
        let state = match result {
            // Refused for good (the tag quota, a permission): the claim contest would be, so
            // the run is refused as it would have been there.
            Err(e)
                if !e.may_have_applied
                    && (!e.can_pass()
                        || e.is_code("OperationDenied.QuotaExceed")
                        || e.is_code("QuotaExceed.Tags")) =>
            {
                Beside::Refused(Box::new(e))
            }
            Err(e) => {
                tracing::info!(error = %e, "the claim written beside the hold was not acknowledged; the claim contest writes it again");
                Beside::Written { tag, written }
            }
            Ok(()) => Beside::Written { tag, written },
        };
        *self.beside_hold.lock() = state;
    }

    /// Beside the hold's read-back: the disk's tags the settle time after the claim was
    /// written, and again until the claim shows (as `read_after_own_claim`; a claim that does
    /// not show, or a read that fails, leaves it to the contest).
    pub(super) async fn read_claim_beside_hold(&self) {
        const READS: u32 = 5;
        let sent = match &*self.beside_hold.lock() {
            Beside::Written { tag, written } => Some((tag.clone(), *written)),
            _ => None,
        };
        let Some((tag, written)) = sent else {
            return;
        };
        let mine = Ledger::from_tags([(tag.0.as_str(), tag.1.as_str())]).claims;
        for _ in 0..READS {
            tokio::time::sleep(self.s.tag_settle).await;
            let Ok(seen) = self.read_ledger().await else {
                return;
            };
            if mine.iter().all(|c| seen.claims.contains(c)) {
                *self.beside_hold.lock() = Beside::Seen {
                    tag,
                    written,
                    seen: Box::new(seen),
                };
                return;
            }
        }
    }

    /// The hold yielded to a rival: the claim beside it is withdrawn before the pause.
    pub(super) async fn withdraw_claim_beside_hold(&self) {
        let beside = std::mem::take(&mut *self.beside_hold.lock());
        if let Beside::Written { tag, .. } | Beside::Seen { tag, .. } = beside {
            self.remove_tag(&tag.0).await;
        }
    }

    /// The claim written beside the hold and its read-back, for the contest (taken once).
    fn beside_hold_seen(&self) -> Option<((String, String), Instant, Ledger)> {
        match std::mem::take(&mut *self.beside_hold.lock()) {
            Beside::Seen { tag, written, seen } => Some((tag, written, *seen)),
            _ => None,
        }
    }
}
