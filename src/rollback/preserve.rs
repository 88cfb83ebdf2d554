//! The undo snapshot (`preserveCurrent`): after the stop, before the reset. Writes
//! `preserving`, finds this key's snapshot (record, then its tag) or calls CreateSnapshot with a
//! `ClientToken` from the key, records its ID, waits until usable, records `preserved`. A disk
//! of a whole-instance request on ESSD-series disks takes its undo snapshot from the one
//! snapshot-consistent group the request makes of all its disks (`undo_from_group`).

use super::*;

/// CreateSnapshot's `ClientToken` for the undo snapshot of `key`: ASCII, 51 characters (the
/// limit is 64), the same for every delivery of the key.
pub fn undo_client_token(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("ecs-rollback undo snapshot\n{key}").as_bytes());
    let hex: String = hash.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("ecsrb-undo-{hex}")
}

impl Run<'_> {
    /// Labels of the undo snapshot: the tag that finds it again, and what it is for.
    pub(super) fn undo_tags(&self) -> Vec<(String, String)> {
        let cut = |s: &str| tag_value(s);
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
    pub(super) async fn find_undo(&self) -> Res<Option<String>> {
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
                    h.error.code = Code::UndoSnapshotFailed.into();
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
    pub(super) async fn preserve_current(&mut self) -> Res<()> {
        // The stop's read of Stopped is no evidence for a reset after this step (`reset.rs`).
        self.seen_stopped = None;
        let t = self.now();
        let record = self.record()?;
        if self.phase() < Phase::Preserving {
            let mut need = self.estimate(self.s.estimate_snapshot, self.learned.snapshot)
                + self.estimate(self.s.estimate_reset, self.learned.reset);
            if record.end_running || record.was_running {
                need += self.estimate(self.s.estimate_start, self.learned.start);
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
        let (undo, request_id) = match known {
            Some(id) => (id, None),
            // A whole-instance request on ESSD-series disks: one snapshot-consistent group.
            None => match self.undo_from_group(t, until).await? {
                Some(found) => found,
                None => self.create_undo(t, &record, until).await?,
            },
        };
        self.target.undo_snapshot_id = Some(undo.clone());
        if self.record.as_ref().and_then(|r| r.undo.as_deref()) != Some(undo.as_str()) {
            if let Some(r) = self.record.as_mut() {
                r.undo = Some(undo.clone());
            }
            // Rewrites the record with the snapshot's ID (and refreshes the lease).
            self.set_phase(Phase::Preserving).await?;
        }
        self.wait_undo_usable(t, &undo, until, budget).await?;
        let disk = self.disk_id();
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

    /// The undo snapshot of this disk from the snapshot-consistent group the request takes of
    /// all its disks (`None`: groups do not apply; one undo snapshot per disk). The first run
    /// here makes the group (its `ClientToken` from the request's key: a redelivery gets the
    /// same group), the others take their disk's snapshot in it. Taken after the stop and
    /// before any reset: no run resets before its own undo snapshot is usable.
    pub(super) async fn undo_from_group(
        &mut self,
        t: DateTime<Utc>,
        until: Instant,
    ) -> Res<Option<(String, Option<String>)>> {
        let Some(link) = self.group.clone() else {
            return Ok(None);
        };
        let Some(disks) = link.group.undo_group.clone() else {
            return Ok(None);
        };
        let mut taken = link.group.undo_taken.lock().await;
        let mut request_id = None;
        if taken.is_none() {
            let token = undo_client_token(&format!("group\n{}", link.group.key));
            let tags = vec![
                (
                    UNDO_TAG.to_owned(),
                    crate::request::IdempotencyKey::derived("group", &link.group.key)
                        .as_str()
                        .to_owned(),
                ),
                ("ecs-rollback:key".to_owned(), tag_value(&link.group.key)),
            ];
            let name: String = format!("ecs-rollback-undo-{}", link.group.key)
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(128)
                .collect();
            let description = format!(
                "Taken by ecs-rollback before rolling back the disks of {} together",
                self.instance_id().unwrap_or_default()
            );
            self.confirm_holder("CreateSnapshotGroup").await?;
            let mut pause = self.s.poll.initial;
            let ssg = loop {
                self.before_change("CreateSnapshotGroup")?;
                let ask = crate::ecs::SnapshotGroupRequest {
                    disks: crate::ecs::GroupDisks::Disks(&disks),
                    instant_access: None,
                    name: &name,
                    description: &description,
                    tags: &tags,
                    client_token: &token,
                };
                match self.ecs.create_snapshot_group(&self.region, &ask).await {
                    Ok(id) => break id,
                    Err(e) if e.retry == Retry::AfterStateChange && Instant::now() < until => {
                        tracing::warn!(error = %e, "CreateSnapshotGroup not accepted yet; waiting");
                    }
                    Err(e) if e.is_retryable() && Instant::now() < until => {
                        tracing::warn!(error = %e, "CreateSnapshotGroup failed; the same ClientToken is asked again");
                    }
                    Err(e) => {
                        request_id = e.request_id.clone();
                        let h = Halt::fail(ErrorInfo::new(
                            Code::UndoSnapshotFailed,
                            format!("the snapshot-consistent group of the instance's disks (the undo) could not be taken, so no disk was reset: {e}"),
                            false,
                        ));
                        return Err(self.failed("preserve", t, request_id, h));
                    }
                }
                self.wait_a_little(&mut pause).await?;
            };
            // Read until the group lists a snapshot of every disk (a read right after the
            // call may lag it); never kept incomplete.
            let mut members: Vec<(String, String)> = Vec::new();
            for attempt in 0..LEDGER_ATTEMPTS {
                if attempt > 0 {
                    self.wait_a_little(&mut pause).await?;
                }
                let groups = match self
                    .ecs
                    .describe_snapshot_groups(&self.region, std::slice::from_ref(&ssg), None)
                    .await
                {
                    Ok(g) => g,
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => return Err(Halt::ecs(Outcome::Failed, &e)),
                };
                members = groups
                    .iter()
                    .filter(|g| g.snapshot_group_id == ssg)
                    .flat_map(|g| g.snapshots.iter())
                    .map(|m| (m.source_disk_id.clone(), m.snapshot_id.clone()))
                    .collect();
                if disks.iter().all(|d| members.iter().any(|(m, _)| m == d)) {
                    break;
                }
            }
            if !disks.iter().all(|d| members.iter().any(|(m, _)| m == d)) {
                return Err(Halt::fail(ErrorInfo::new(
                    Code::UndoSnapshotFailed,
                    format!("the undo group {ssg} does not list a snapshot of every disk yet; the next delivery reads it again (same ClientToken)"),
                    true,
                )));
            }
            // The group's tags on its snapshots are not documented: each snapshot gets the undo
            // tag itself, so no rule ever picks it (only its ID does).
            let ids: Vec<String> = members.iter().map(|(_, s)| s.clone()).collect();
            if let Err(e) = self
                .ecs
                .tag_resources(&self.region, "snapshot", &ids, &tags)
                .await
            {
                tracing::warn!(error = %e, "could not tag the undo group's snapshots");
                self.warnings.push(format!(
                    "the undo group's snapshots could not be tagged {UNDO_TAG} ({e}): a snapshot rule might pick one of them later"
                ));
            }
            tracing::info!(group = %ssg, snapshots = members.len(), "undo: one snapshot-consistent group of the instance's disks");
            self.warnings.push(format!(
                "the undo is the snapshot-consistent group {ssg} of the instance's disks"
            ));
            *taken = Some(members);
        }
        let disk = self.disk_id();
        let mine = taken
            .as_ref()
            .and_then(|m| m.iter().find(|(d, _)| *d == disk))
            .map(|(_, s)| s.clone())
            .ok_or_else(|| {
                Halt::fail(ErrorInfo::new(
                    Code::UndoSnapshotFailed,
                    format!(
                        "the undo group holds no snapshot of {disk}, so the disk was not reset"
                    ),
                    false,
                ))
            })?;
        Ok(Some((mine, request_id)))
    }

    /// CreateSnapshot of the disk as it is, with the `ClientToken` of the key (asked again
    /// through "not yet" and transient answers until `until`): the snapshot's ID and the
    /// call's RequestId.
    async fn create_undo(
        &mut self,
        t: DateTime<Utc>,
        record: &RunRecord,
        until: Instant,
    ) -> Res<(String, Option<String>)> {
        let disk = self.disk_id();
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
        let mut pause = self.s.poll.initial;
        loop {
            self.before_change("CreateSnapshot")?;
            match self
                .ecs
                .create_snapshot(&self.region, &disk, &name, &description, &token, &tags)
                .await
            {
                Ok((id, rid)) => return Ok((id, Some(rid))),
                // Another snapshot of the disk, or a state on its way: wait and ask again.
                Err(e) if e.retry == Retry::AfterStateChange && Instant::now() < until => {
                    tracing::warn!(error = %e, "CreateSnapshot not accepted yet; waiting");
                }
                Err(e) if e.is_retryable() && Instant::now() < until => {
                    tracing::warn!(error = %e, "CreateSnapshot failed; the same ClientToken is asked again");
                }
                Err(e) => {
                    let h = give_up(
                        Code::UndoSnapshotFailed,
                        format!("the undo snapshot of {disk} could not be taken, so the disk was not reset: {e}"),
                    );
                    return Err(self.failed("preserve", t, e.request_id.clone(), h));
                }
            }
            self.wait_a_little(&mut pause).await?;
        }
    }

    /// Waits until the undo snapshot is complete (`accomplished`, and not `Available: false`),
    /// even with instant access: the start that follows the reset would change the instance's
    /// state while the snapshot is being created, and ECS says that fails the snapshot
    /// (ecs-evidence.md §3, C9; High for the SDK's warning). An undo snapshot that could fail
    /// after the rollback is not one to promise;
    /// gives up when it failed or outlived `snapshot_timeout` from its own creation (counted
    /// across deliveries); the deadline ends the delivery retryable.
    async fn wait_undo_usable(
        &mut self,
        t: DateTime<Utc>,
        undo: &str,
        until: Instant,
        budget: Duration,
    ) -> Res<()> {
        let cadence = self.cadence(self.learned.snapshot);
        let since = Instant::now();
        let mut last_write = Instant::now();
        loop {
            let q = SnapshotQuery {
                ids: vec![undo.to_owned()],
                ..Default::default()
            };
            match self.ecs.describe_snapshots(&self.region, &q).await {
                Ok(found) => match found.into_iter().find(|s| s.snapshot_id == undo) {
                    Some(s) if s.is_complete() => return Ok(()),
                    Some(s) if s.status.eq_ignore_ascii_case("failed") => {
                        let h = give_up(
                            Code::UndoSnapshotFailed,
                            format!("the undo snapshot {undo} failed, so the disk was not reset"),
                        );
                        return Err(self.failed("preserve", t, None, h));
                    }
                    Some(s) => {
                        // Timed from the snapshot's own creation, across deliveries.
                        let age = s.creation_time.map(|c| self.now() - c).unwrap_or_default();
                        if age.to_std().is_ok_and(|a| a > self.s.snapshot_timeout) {
                            let h = give_up(
                                Code::UndoSnapshotTimeout,
                                format!(
                                    "the undo snapshot {undo} is still {} after {}s (ECS_ROLLBACK_SNAPSHOT_TIMEOUT_SECONDS), so the disk was not reset; the snapshot goes on by itself unless the instance's start fails it (ECS fails a snapshot without instant access whose instance changes state)",
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
                    let h = give_up(Code::UndoSnapshotFailed, format!("the undo snapshot {undo} cannot be read, so the disk was not reset: {e}"));
                    return Err(self.failed("preserve", t, e.request_id.clone(), h));
                }
            }
            if Instant::now() >= until {
                // The deadline (or this delivery's share of the timeout): the next delivery
                // finds the snapshot in the ledger and waits on.
                return Err(self.timed_out("the undo snapshot is not usable yet", budget));
            }
            if last_write.elapsed() > self.s.lease / 3 {
                // A long snapshot must not make this run look abandoned.
                self.set_phase(Phase::Preserving).await?;
                last_write = Instant::now();
            }
            self.sleep(cadence.pause(since.elapsed())).await?;
        }
    }
}

/// A tag value every documented reading accepts: at most 128 characters, and not starting with
/// `aliyun` or `acs:` (the Tag service forbids both prefixes in values, the older ECS doc
/// `acs:`, the current SDK neither: ecs-evidence.md §2, C14, Medium; the strict reading is
/// kept), and without `http://` or `https://` anywhere (every source): a key such as
/// `aliyun-cms-…` is written with a leading `~`, a reason naming a URL with `:/ /`.
pub fn tag_value(s: &str) -> String {
    let s = &s.replace("://", ":/ /");
    let lower = s.to_ascii_lowercase();
    let v = if lower.starts_with("aliyun") || lower.starts_with("acs:") {
        format!("~{s}")
    } else {
        s.to_owned()
    };
    v.chars().take(128).collect()
}

/// Gives up on the undo snapshot for good: nothing is reset, and the instance comes back.
fn give_up(code: Code, message: String) -> Halt {
    Halt::fail(ErrorInfo::new(code, message, false))
}

#[cfg(test)]
mod tests {
    use super::tag_value;

    #[test]
    fn tag_values_avoid_the_reserved_prefixes() {
        assert_eq!(tag_value("aliyun-cms-alert-1"), "~aliyun-cms-alert-1");
        assert_eq!(tag_value("ACS:x"), "~ACS:x");
        assert_eq!(tag_value("deploy-42"), "deploy-42");
        assert_eq!(
            tag_value("see https://grafana/d/1"),
            "see https:/ /grafana/d/1"
        );
        assert_eq!(tag_value(&"a".repeat(200)).len(), 128);
    }
}
