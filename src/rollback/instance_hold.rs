//! The instance hold's I/O (the rules: `crate::instance_hold`; docs/rollback-protocol.md, "The
//! instance hold"): before a run claims its disk it holds the disk's instance, waiting while
//! another key's live run holds it; the power state to restore is the first holder's. Released
//! when the run ends in a final state (`release_instance`), kept when it ends retryable part-way
//! (the next delivery, or whoever takes over, inherits the power state to restore).

use super::*;
use crate::instance_hold::{self as ih, Hold, HolderState, Verdict};

/// Internal: this run waited for another holder of the instance; `execute` plans again from a
/// new read, the hold now its own. Never reported as such.
pub(super) const INSTANCE_WAITED: &str = "InstanceWaited";

/// The hold this run has on its instance.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub(super) instance: String,
    pub(super) tag: String,
    /// The power state to restore, as the hold records it.
    pub(super) was_running: bool,
    /// Tags of holders gone or finished, removed with this run's own.
    pub(super) superseded: Vec<String>,
}

impl Run<'_> {
    /// Holds `instance` for this run (nothing to do without one, in a dry run, or if held).
    /// `record_w`: a resumed run's power state to restore, which wins; `stale_w`: the one of an
    /// abandoned run of the disk being taken over, used unless a gone holder of the instance
    /// recorded one. `Err(INSTANCE_WAITED)` after waiting for another holder (plan again);
    /// `InstanceHeld` (retryable) when the hold was not released in time.
    pub(super) async fn hold_instance(
        &mut self,
        instance: Option<&Instance>,
        seen_tags_clear: bool,
        record_w: Option<bool>,
        stale_w: Option<bool>,
    ) -> Res<()> {
        match self.group.clone() {
            Some(link) => {
                self.hold_for_group(&link, instance, seen_tags_clear, record_w, stale_w)
                    .await
            }
            None => {
                self.hold_instance_alone(instance, seen_tags_clear, record_w, stale_w)
                    .await
            }
        }
    }

    pub(super) async fn hold_instance_alone(
        &mut self,
        instance: Option<&Instance>,
        seen_tags_clear: bool,
        record_w: Option<bool>,
        stale_w: Option<bool>,
    ) -> Res<()> {
        let Some(instance) = instance else {
            return Ok(());
        };
        if self.hold.is_some() || self.req.dry_run {
            return Ok(());
        }
        let iid = instance.instance_id.clone();
        let (key, hold_disk) = self.hold_identity();
        let patience = self.s.heartbeat_timeout
            + self.s.stop_timeout
            + self.s.reset_timeout
            + self.s.start_timeout;
        let until = Instant::now() + self.wait_budget(patience);
        let mut pause = self.s.poll.initial;
        let mut waited = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // The first look is the one the instance was just read with (DescribeInstances
            // carries its tags, issue 26): it only decides whom to wait for and whose power
            // state to inherit. Two holders apart are kept apart by the write, the settle and
            // the read-back below (ListTagResources), not by this read; a gone holder's tag is
            // a heartbeat old, far older than any lag this protocol tolerates.
            let tags = if attempt == 1 && !waited {
                instance
                    .tags
                    .tag
                    .iter()
                    .map(|t| (t.tag_key.clone(), t.tag_value.clone()))
                    .collect()
            } else {
                self.instance_tags(&iid).await?
            };
            if let Err(own) = ih::room(tags.iter().map(|(k, _)| k.as_str())) {
                return Err(Halt {
                    outcome: self.failed_or_rejected(),
                    error: ErrorInfo::new(
                        Code::LedgerUnavailable,
                        format!(
                            "instance {iid} carries {own} tags of its own; its hold needs up to {} more of the {} an instance may carry, so nothing was touched. Remove {} of its tags",
                            ih::HOLD_TAGS,
                            ledger::MAX_TAGS,
                            own + ih::HOLD_TAGS - ledger::MAX_TAGS
                        ),
                        false,
                    ),
                });
            }
            let (holds, unreadable) = ih::holds(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut others = Vec::new();
            for h in holds
                .into_iter()
                .filter(|h| h.invocation != self.invocation)
            {
                let state = self.holder_state(&h).await;
                others.push((h, state));
            }
            let (inherit, superseded) = match ih::verdict(&others, &key, &unreadable) {
                Verdict::Wait(holder) => {
                    waited = true;
                    if Instant::now() + pause >= until {
                        return Err(self.instance_held(&iid, &holder));
                    }
                    tracing::info!(instance = %iid, holder_key = %holder.key, holder_disk = %holder.disk, "another rollback holds the instance; waiting for it");
                    self.sleep(pause).await?;
                    pause = self.s.poll.next(pause);
                    continue;
                }
                Verdict::Take {
                    inherit,
                    superseded,
                } => (inherit, superseded),
            };
            let inherited = inherit.is_some();
            let was_running = match (record_w, inherit, stale_w) {
                (Some(w), _, _) | (None, Some(w), _) | (None, None, Some(w)) => w,
                // Nobody held the instance when it was read with the tags just now, and no hold
                // was seen before: the status read with them is the one before anyone touched it.
                (None, None, None) if !waited && seen_tags_clear && others.is_empty() => {
                    instance.status == "Running"
                }
                (None, None, None) => self.read_instance(&iid).await?.status == "Running",
            };
            let hold = Hold {
                invocation: self.invocation.clone(),
                key: key.clone(),
                disk: hold_disk.clone(),
                was_running,
                at: unix(self.now()),
            };
            let tag = (ih::hold_tag(&self.invocation), hold.encode());
            let round_trip = Instant::now();
            // The disk's claim goes beside the hold's write when the contest follows at once,
            // and is read back with it: one settle for both (`ledger_io.rs`, BesideHold).
            let (written, ()) = tokio::join!(
                self.write_instance_tags(&iid, std::slice::from_ref(&tag)),
                self.write_claim_beside_hold(waited)
            );
            written.map_err(|e| self.hold_refused(&iid, &e))?;
            let (seen, ()) = tokio::join!(
                self.read_after_own_hold(&iid, &tag),
                self.read_claim_beside_hold()
            );
            let seen = seen?;
            let Some(rival) = ih::contested(&seen, &self.invocation, &key, &superseded).cloned()
            else {
                self.warnings.extend(inherited.then(|| {
                    format!(
                        "the power state to restore ({}) was recorded by an earlier holder of instance {iid}",
                        if was_running { "running" } else { "stopped" }
                    )
                }));
                tracing::info!(instance = %iid, was_running, inherited, "holding the instance");
                self.hold = Some(Held {
                    instance: iid,
                    tag: tag.0,
                    was_running,
                    superseded,
                });
                if waited {
                    return Err(Halt::fail(ErrorInfo::new(
                        INSTANCE_WAITED,
                        "waited for another holder of the instance",
                        true,
                    )));
                }
                return Ok(());
            };
            self.remove_instance_tags(&iid, std::slice::from_ref(&tag.0))
                .await;
            self.withdraw_claim_beside_hold().await;
            waited = true;
            if Instant::now() + pause >= until {
                return Err(self.instance_held(&iid, &rival));
            }
            // Both yielded: the contender with the smallest invocation ID retries first (as
            // for the disk's claim, `ledger_io.rs`).
            let first = seen
                .iter()
                .filter(|h| h.invocation != self.invocation && h.key != key)
                .all(|h| self.invocation < h.invocation);
            let share = if first {
                0.1 + 0.2 * fastrand::f64()
            } else {
                0.6 + 0.4 * fastrand::f64()
            };
            let ceiling = (self.s.poll.initial * 4).max(round_trip.elapsed() * 4) * attempt.min(8);
            tracing::info!(instance = %iid, rival = %rival.key, "two runs held the instance together; both yield, then retry");
            self.sleep(ceiling.mul_f64(share)).await?;
        }
    }

    /// The hold's power state to restore, when this run holds the instance.
    pub(super) fn held_power(&self) -> Option<bool> {
        self.hold.as_ref().map(|h| h.was_running)
    }

    fn instance_held(&self, iid: &str, holder: &Hold) -> Halt {
        Halt {
            outcome: self.failed_or_rejected(),
            error: ErrorInfo::new(
                Code::InstanceHeld,
                format!(
                    "another rollback (key digest {}, disk {}) holds instance {iid} and did not release it in time; nothing was touched by this delivery",
                    holder.key, holder.disk
                ),
                true,
            ),
        }
    }

    fn hold_refused(&self, iid: &str, e: &EcsError) -> Halt {
        let quota = e.is_code("OperationDenied.QuotaExceed") || e.is_code("QuotaExceed.Tags");
        let (code, retryable) = if quota {
            // Holds of concurrent contenders filled the room the budget left: they pass.
            (Code::InstanceHeld, true)
        } else {
            (Code::LedgerUnavailable, e.can_pass() || e.may_have_applied)
        };
        Halt {
            outcome: self.failed_or_rejected(),
            error: ErrorInfo::new(
                code,
                format!("could not write the hold on instance {iid}: {e}"),
                retryable,
            ),
        }
    }

    /// A holder's state, from its disk's ledger; a read that fails counts it live (ask again).
    async fn holder_state(&self, hold: &Hold) -> HolderState {
        let now = unix(self.now());
        let beat = self.s.heartbeat_timeout.as_secs().max(1) as i64;
        let read = self
            .ecs
            .list_tag_resources(&self.region, "disk", std::slice::from_ref(&hold.disk))
            .await;
        match read {
            Ok(tags) => {
                let ledger = Ledger::from_tags(
                    tags.iter()
                        .filter(|t| t.resource_id == hold.disk)
                        .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
                );
                ih::holder_state(hold, Some(&ledger), now, beat)
            }
            Err(e) if e.is_code("InvalidResourceId.NotFound") => {
                ih::holder_state(hold, None, now, beat)
            }
            Err(e) => {
                tracing::warn!(error = %e, disk = %hold.disk, "could not read the instance holder's disk; taking it as live");
                HolderState::Live
            }
        }
    }

    async fn instance_tags(&self, iid: &str) -> Res<Vec<(String, String)>> {
        let tags = self
            .ecs
            .list_tag_resources(&self.region, "instance", &[iid.to_owned()])
            .await
            .map_err(|e| Halt::ecs(self.failed_or_rejected(), &e))?;
        Ok(tags
            .into_iter()
            .filter(|t| t.resource_id == iid)
            .map(|t| (t.tag_key, t.tag_value))
            .collect())
    }

    /// Reads the instance's tags the settle time after this run's hold was written, and again
    /// until the hold itself shows (as for the disk's claim).
    async fn read_after_own_hold(&self, iid: &str, tag: &(String, String)) -> Res<Vec<Hold>> {
        const READS: u32 = 5;
        for _ in 0..READS {
            tokio::time::sleep(self.s.tag_settle).await;
            let tags = self.instance_tags(iid).await?;
            if tags.iter().any(|t| t == tag) {
                return Ok(ih::holds(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))).0);
            }
            tracing::warn!("this run's own hold on the instance is not visible yet");
        }
        self.remove_instance_tags(iid, std::slice::from_ref(&tag.0))
            .await;
        Err(Halt {
            outcome: self.failed_or_rejected(),
            error: ErrorInfo::new(
                Code::LedgerUnavailable,
                format!(
                    "the instance's tags did not show this run's own hold {READS} times {}ms after it was written: tag reads lag more than ECS_ROLLBACK_TAG_SETTLE_MS; nothing was done",
                    self.s.tag_settle.as_millis()
                ),
                true,
            ),
        })
    }

    async fn write_instance_tags(
        &self,
        iid: &str,
        tags: &[(String, String)],
    ) -> Result<(), EcsError> {
        if self.past_send_horizon() {
            return Err(EcsError::transport(
                "TagResources",
                crate::ecs::ErrorKind::PastDeadline,
                "not sent: the invocation's deadline is too close for a hold write".into(),
            ));
        }
        let ids = [iid.to_owned()];
        self.idempotent("hold", || {
            self.ecs.tag_resources(&self.region, "instance", &ids, tags)
        })
        .await
    }

    /// Best effort: a hold left behind is judged by its holder's disk (finished, or gone).
    async fn remove_instance_tags(&self, iid: &str, keys: &[String]) -> bool {
        if keys.is_empty() {
            return true;
        }
        if self.past_send_horizon() {
            return false;
        }
        let ids = [iid.to_owned()];
        let mut all = true;
        for chunk in keys.chunks(20) {
            let result = self
                .idempotent("release", || {
                    self.ecs
                        .untag_resources(&self.region, "instance", &ids, chunk)
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, tags = ?chunk, "could not remove the instance hold");
                all = false;
            }
        }
        all
    }

    /// At the end of the run: releases the hold once the instance is in its final power state
    /// (`finished`), or when this delivery changed nothing (it never took the disk, or its
    /// record never passed `claimed`): the holders it found gone keep their tags and their power
    /// state to restore. A delivery that took the disk and ended part-way (its stop may stand)
    /// keeps its tag, which carries the power state to restore for the next delivery, or for
    /// whoever takes it over once it is gone; the tags it superseded go. A release that fails is
    /// a warning.
    pub(super) async fn release_instance(&mut self, finished: bool) {
        let part_way = self.took_disk
            && self
                .record
                .as_ref()
                .is_some_and(|r| r.phase > Phase::Claimed);
        self.release_hold(finished, part_way).await;
    }

    /// The release, once whether the instance is in its final power state (`finished`) and
    /// whether something was changed (`part_way`) are known (a whole-instance request's: over
    /// all its disks).
    pub(super) async fn release_hold(&mut self, finished: bool, part_way: bool) {
        let Some(held) = self.hold.take() else {
            return;
        };
        let keys = if finished {
            let mut keys = vec![held.tag.clone()];
            keys.extend(held.superseded.iter().cloned());
            keys
        } else if part_way {
            tracing::info!(instance = %held.instance, "the run ended part-way: its hold on the instance stays for the next delivery");
            held.superseded.clone()
        } else {
            vec![held.tag.clone()]
        };
        if !self.remove_instance_tags(&held.instance, &keys).await {
            self.warnings.push(format!(
                "the hold on instance {} could not be removed; the next rollback of one of its disks finds it finished",
                held.instance
            ));
        }
    }
}
