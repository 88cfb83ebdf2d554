//! Snapshots: DescribeSnapshots and CreateSnapshot with its `ClientToken` (ecs-api.md; the
//! CreateSnapshot codes and messages from ecs-evidence.md §3), and instant access (ESSD).

use super::*;

impl World {
    /// Instant access: the snapshot of an ESSD-series disk is usable for a rollback while it is
    /// still `progressing`, and DescribeSnapshots says so with `Available` (ecs-evidence.md §3,
    /// C8; IA: "the snapshot can be used to roll back and create disks even when the snapshot is
    /// being created").
    pub(super) fn instant_access(&self, s: &SimSnapshot) -> bool {
        self.disks
            .get(&s.spec.disk_id)
            .is_some_and(|d| has_instant_access(d.spec.category.as_deref()))
    }

    /// Usable for ResetDisk: complete, or `progressing` with instant access.
    pub(super) fn usable(&self, s: &SimSnapshot) -> bool {
        s.status == "accomplished" || (s.status == "progressing" && self.instant_access(s))
    }

    pub(super) fn snapshot_json(&self, s: &SimSnapshot) -> Value {
        let disk = self.disks.get(&s.spec.disk_id);
        let done = s.status == "accomplished";
        let instant = self.instant_access(s);
        let progress = match (&s.status[..], s.ready_at) {
            ("accomplished", _) => "100%".to_owned(),
            ("progressing", Some(at)) => {
                let total = self.timings.snapshot_ms.max(1) as f64;
                let left = at.saturating_duration_since(Instant::now()).as_millis() as f64;
                format!(
                    "{}%",
                    (100.0 * (1.0 - left / total)).clamp(0.0, 99.0) as u32
                )
            }
            _ => "0%".to_owned(),
        };
        json!({
            "SnapshotId": s.spec.id,
            "SnapshotName": s.spec.name,
            "Status": s.status,
            "Progress": progress,
            "RemainTime": if done { 0 } else { 60 },
            "Available": self.usable(s),
            "InstantAccess": instant,
            "Category": if instant { "flash" } else { "standard" },
            "SnapshotType": if s.spec.automatic { "auto" } else { "user" },
            "Usage": "none",
            "Encrypted": false,
            "KMSKeyId": "",
            "SourceDiskId": s.spec.disk_id,
            // The model says string; the doc sample shows a number. Sent as the model says.
            "SourceDiskSize": disk.map(|d| d.spec.size.to_string()).unwrap_or_default(),
            "SourceDiskType": disk.map(|d| d.spec.disk_type.clone()).unwrap_or_default(),
            "SourceStorageType": "disk",
            "RegionId": s.spec.region_of(self),
            "CreationTime": seconds(s.created),
            "LastModifiedTime": seconds(s.created),
            "RetentionDays": 30,
            "Description": "",
            "Tags": tag_list(&s.spec.tags),
        })
    }

    pub(super) fn describe_snapshots(&self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?;
        let ids = req.json_ids("SnapshotIds")?;
        let disk = req.get("DiskId").filter(|s| !s.is_empty());
        let instance = req.get("InstanceId").filter(|s| !s.is_empty());
        let status = match req.get("Status") {
            None | Some("") | Some("all") => None,
            Some(s @ ("progressing" | "accomplished" | "failed")) => Some(s),
            Some(_) => return Err(invalid("Status")),
        };
        let tags = req.tags()?;
        let max = req.max_results(10, 1, 100)?;
        if req.flag("DryRun")? {
            return Err(dry_run_passed());
        }
        let mut snaps: Vec<&SimSnapshot> = self
            .snapshots
            .values()
            .filter(|s| Self::region_ok(region.as_deref(), &s.spec.region_of(self)))
            .filter(|s| ids.as_ref().is_none_or(|ids| ids.contains(&s.spec.id)))
            .filter(|s| disk.is_none_or(|d| d == s.spec.disk_id))
            .filter(|s| {
                instance.is_none_or(|i| {
                    self.disks
                        .get(&s.spec.disk_id)
                        .and_then(|d| d.spec.instance_id.as_deref())
                        == Some(i)
                })
            })
            .filter(|s| status.is_none_or(|st| st == s.status))
            .filter(|s| tags.iter().all(|(k, v)| s.spec.tags.get(k) == Some(v)))
            .collect();
        // Newest first, as the console lists them.
        snaps.sort_by(|a, b| b.created.cmp(&a.created).then(a.spec.id.cmp(&b.spec.id)));
        let items: Vec<Value> = snaps.into_iter().map(|s| self.snapshot_json(s)).collect();
        let total = items.len();
        let (items, next) = page(items, req, max)?;
        Ok(json!({
            "TotalCount": total, "PageNumber": 1, "PageSize": max, "NextToken": next,
            "Snapshots": {"Snapshot": items}
        }))
    }

    /// CreateSnapshot, with the rules its doc lists (ecs-evidence.md §3): the disk `In_use` or
    /// `Available`, its instance `Running` or `Stopped` and not locked for security, no snapshot
    /// of the disk in progress, fewer than 256 manual snapshots; the name 2 to 128 characters
    /// starting with a letter and not with `http://`, `https://` or `auto`; the description 2 to
    /// 256 characters. A `ClientToken` seen before with the same parameters returns the same
    /// snapshot (after `client_token_processing_ms`; before, `IdempotentProcessing`); with
    /// others, `IdempotentParameterMismatch`. The snapshot is `progressing` for `snapshot_ms`.
    pub(super) fn create_snapshot(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
        let region = Self::check_region(req, false)?;
        let disk_id = req.required("DiskId")?.to_owned();
        let name = req.get("SnapshotName").unwrap_or("").to_owned();
        let description = req.get("Description").unwrap_or("").to_owned();
        let tags = req.tags()?;
        if !name.is_empty() {
            let lower = name.to_ascii_lowercase();
            let ok = (2..=128).contains(&name.chars().count())
                && name.chars().next().is_some_and(|c| c.is_alphabetic())
                && !lower.starts_with("http://")
                && !lower.starts_with("https://")
                && !lower.starts_with("auto");
            if !ok {
                // Source: ecs-evidence.md §3, C6 (DREPO CreateSnapshot.md: "400
                // InvalidSnapshotName.Malformed The specified SnapshotName is wrongly formed.").
                return Err(ApiError::new(
                    400,
                    "InvalidSnapshotName.Malformed",
                    "The specified SnapshotName is wrongly formed.",
                ));
            }
        }
        if !description.is_empty() {
            let lower = description.to_ascii_lowercase();
            if !(2..=256).contains(&description.chars().count())
                || lower.starts_with("http://")
                || lower.starts_with("https://")
            {
                // Source: ecs-evidence.md §3, C6 (DREPO CreateSnapshot.md lists it with 404, sic).
                return Err(ApiError::new(
                    404,
                    "InvalidDescription.Malformed",
                    "The specified description is wrongly formed.",
                ));
            }
        }
        let token = req.get("ClientToken").filter(|t| !t.is_empty());
        let fingerprint = format!("{disk_id}|{name}|{description}|{tags:?}");
        if let Some(id) = self.client_token_seen("CreateSnapshot", token, &fingerprint, now)? {
            return Ok(json!({"SnapshotId": id}));
        }
        let disk = match self.disks.get(&disk_id) {
            Some(d) if Self::region_ok(region.as_deref(), &d.spec.region) => d,
            _ => return Err(not_found("InvalidDiskId.NotFound", "disk")),
        };
        if disk.reset.is_some() {
            // UNCONFIRMED: a snapshot while the disk is being reset is refused as a disk status
            // (ecs-evidence.md §7: not found).
            return Err(incorrect_disk_status());
        }
        let instance_status = match self.disk_operable(disk, &["Running", "Stopped"]) {
            // Source: ecs-evidence.md §3, C5: CreateSnapshot's table lists
            // `IncorrectInstanceStatus` with 400 (2021 and 2025), not ResetDisk's 403.
            Err(e) if e.code == "IncorrectInstanceStatus" => {
                return Err(ApiError::new(400, &e.code, e.message))
            }
            other => other?,
        };
        let of_disk = || {
            self.snapshots
                .values()
                .filter(|s| s.spec.disk_id == disk_id)
        };
        if of_disk().any(|s| s.status == "progressing") {
            // Source: ecs-evidence.md §3, C2 (DOC-SNAP: "403
            // IncorrectDiskStatus.CreatingSnapshot A previous snapshot creation is in process.").
            return Err(ApiError::new(
                403,
                "IncorrectDiskStatus.CreatingSnapshot",
                "A previous snapshot creation is in process.",
            ));
        }
        if of_disk().filter(|s| !s.spec.automatic).count() >= MAX_MANUAL_SNAPSHOTS {
            // Source: ecs-evidence.md §3, C7 (DREPO Limits.md: 256 manual snapshots per disk,
            // automatic ones apart; DOC-SNAP: "403 QuotaExceed.Snapshot The snapshot quota
            // exceeds.").
            return Err(ApiError::new(
                403,
                "QuotaExceed.Snapshot",
                "The snapshot quota exceeds.",
            ));
        }
        let content = disk.content.clone();
        let id = self.new_snapshot_id();
        self.snapshots.insert(
            id.clone(),
            SimSnapshot {
                spec: SnapshotSpec {
                    id: id.clone(),
                    disk_id: disk_id.clone(),
                    name,
                    status: "progressing".into(),
                    age_hours: 0.0,
                    created_at: None,
                    tags: tags.into_iter().collect(),
                    automatic: false,
                },
                status: "progressing".into(),
                ready_at: Some(now + Duration::from_millis(self.timings.snapshot_ms)),
                created: Utc::now(),
                content: Some(content),
            },
        );
        self.remember_client_token("CreateSnapshot", token, fingerprint, &id, now);
        self.record(
            "CreateSnapshot",
            &disk_id,
            format!("SnapshotId={id}"),
            instance_status,
        );
        Ok(json!({"SnapshotId": id}))
    }
}

impl World {
    /// A new snapshot's ID: `s-sim` and 16 hex digits and digits, as unique as the calls.
    pub(super) fn new_snapshot_id(&mut self) -> String {
        self.created_snapshots += 1;
        format!(
            "s-sim{:012x}{:04}",
            self.started.elapsed().as_nanos() as u64 & 0xffff_ffff_ffff,
            self.created_snapshots % 10_000
        )
    }

    /// A `ClientToken` of `action` (ecs-evidence.md §3, C3/C4): malformed, refused; seen before
    /// with other parameters (`fingerprint`), refused; with the same ones, `Some` of what the
    /// first call made (once `client_token_processing_ms` has passed; before, refused as still
    /// processing). `None`: a token not seen, or none.
    pub(super) fn client_token_seen(
        &self,
        action: &str,
        token: Option<&str>,
        fingerprint: &str,
        now: Instant,
    ) -> Result<Option<String>, ApiError> {
        let Some(t) = token else {
            return Ok(None);
        };
        if t.len() > 64 || !t.is_ascii() {
            // Source: ecs-evidence.md §3, C4 (DOC-SNAP: 403 InvalidClientToken.Malformed;
            // the message is UNCONFIRMED).
            return Err(ApiError::new(
                403,
                "InvalidClientToken.Malformed",
                "The specified ClientToken is wrongly formed.",
            ));
        }
        let Some((seen, id, at)) = self.client_tokens.get(&format!("{action}|{t}")) else {
            return Ok(None);
        };
        if seen != fingerprint {
            // Source: ecs-evidence.md §3, C3 (DOC-SNAP: "403 IdempotentParameterMismatch
            // The specified clientToken is used.").
            return Err(ApiError::new(
                403,
                "IdempotentParameterMismatch",
                "The specified clientToken is used.",
            ));
        }
        let processing = Duration::from_millis(self.timings.client_token_processing_ms);
        if now.saturating_duration_since(*at) < processing {
            // Source: ecs-evidence.md §3, C3 (DOC-SNAP: "403 IdempotentProcessing The
            // previous idempotent request(s) is still processing."); how long is
            // UNCONFIRMED (`Timings::client_token_processing_ms`).
            return Err(ApiError::new(
                403,
                "IdempotentProcessing",
                "The previous idempotent request(s) is still processing.",
            ));
        }
        Ok(Some(id.clone()))
    }

    /// Remembers what a call with a `ClientToken` made (tokens are kept per action).
    pub(super) fn remember_client_token(
        &mut self,
        action: &str,
        token: Option<&str>,
        fingerprint: String,
        id: &str,
        now: Instant,
    ) {
        if let Some(t) = token {
            self.client_tokens
                .insert(format!("{action}|{t}"), (fingerprint, id.to_owned(), now));
        }
    }
}

impl SnapshotSpec {
    /// A snapshot lives in the region of its source disk.
    pub(super) fn region_of(&self, w: &World) -> String {
        w.disks
            .get(&self.disk_id)
            .map(|d| d.spec.region.clone())
            .unwrap_or_default()
    }
}
