//! Disks: DescribeDisks (with tag reads that may lag writes), ResetDisk (ResetDisk-api.md:
//! its preconditions and error table) and the check it shares with CreateSnapshot.

use super::*;

impl World {
    pub(super) fn disk_status(&self, d: &SimDisk) -> String {
        if d.reset.is_some() {
            if let Some(s) = &self.timings.reset_disk_status {
                return s.clone();
            }
        }
        if d.spec.instance_id.is_some() {
            "In_use".into()
        } else {
            "Available".into()
        }
    }

    /// The status DescribeDisks shows: as it was `reset_status_lag_ms` ago.
    fn disk_status_seen(&self, d: &SimDisk) -> String {
        let lag = Duration::from_millis(self.timings.reset_status_lag_ms);
        if lag.is_zero() {
            return self.disk_status(d);
        }
        let then = self.now.checked_sub(lag);
        let resetting_then = match (d.reset_window, then) {
            (Some((from, to)), Some(then)) => from <= then && then < to,
            _ => false,
        };
        match &self.timings.reset_disk_status {
            Some(s) if resetting_then => s.clone(),
            _ if d.spec.instance_id.is_some() => "In_use".into(),
            _ => "Available".into(),
        }
    }

    pub(super) fn disk_json(&self, d: &SimDisk) -> Value {
        let attached = d.spec.instance_id.clone().unwrap_or_default();
        let device = if d.spec.disk_type == "system" {
            "/dev/xvda"
        } else {
            "/dev/xvdb"
        };
        let attachments: Vec<Value> = d
            .spec
            .instance_id
            .iter()
            .map(|i| json!({"InstanceId": i, "Device": device, "AttachedTime": seconds(d.created)}))
            .collect();
        let locks: Vec<Value> = d
            .spec
            .locks
            .iter()
            .map(|l| json!({ "LockReason": l }))
            .collect();
        json!({
            "DiskId": d.spec.id,
            "DiskName": d.spec.name,
            "RegionId": d.spec.region,
            "ZoneId": format!("{}-g", d.spec.region),
            "Status": self.disk_status_seen(d),
            "Type": d.spec.disk_type,
            "Category": d.spec.category.clone().unwrap_or_else(|| "cloud_essd".into()),
            "PerformanceLevel": "PL1",
            "Size": d.spec.size,
            "InstanceId": attached,
            "Device": if attached.is_empty() { "" } else { device },
            "Portable": d.spec.disk_type != "system",
            "DeleteWithInstance": true,
            "Encrypted": false,
            "KMSKeyId": "",
            "DiskChargeType": "PostPaid",
            "SourceSnapshotId": "",
            "CreationTime": seconds(d.created),
            "AttachedTime": if attached.is_empty() { String::new() } else { seconds(d.created) },
            "DetachedTime": "",
            "ExpiredTime": "2999-09-08T16:00Z",
            "OperationLocks": {"OperationLock": locks},
            "MountInstances": {"MountInstance": []},
            "Attachments": {"Attachment": attachments},
            "Tags": tag_list(self.disk_tags_seen(d)),
        })
    }

    /// How far the tag reads of the action being applied lag.
    fn tag_lag(&self) -> Duration {
        let t = &self.timings;
        Duration::from_millis(
            *t.tag_read_lag_by_action
                .get(&self.action)
                .unwrap_or(&t.tag_read_lag_ms),
        )
    }

    /// A disk's tags as a read sees them now: its action's lag ago.
    pub(super) fn disk_tags_seen<'d>(&self, d: &'d SimDisk) -> &'d BTreeMap<String, String> {
        let lag = self.tag_lag();
        let Some(seen_at) = self.now.checked_sub(lag).filter(|_| !lag.is_zero()) else {
            return &d.spec.tags;
        };
        // The newest earlier state that became current after `seen_at` is not visible yet:
        // the read shows the state before the oldest such change.
        match d.tag_versions.iter().position(|(at, _)| *at > seen_at) {
            Some(i) => &d.tag_versions[i].1,
            None => &d.spec.tags,
        }
    }

    /// Called after a disk's tags changed: keeps the state they replaced while a lagging read
    /// can still show it.
    pub(super) fn disk_tags_changed(&mut self, id: &str, before: BTreeMap<String, String>) {
        let t = &self.timings;
        let most = t
            .tag_read_lag_by_action
            .values()
            .copied()
            .max()
            .unwrap_or(0);
        let lag = Duration::from_millis(t.tag_read_lag_ms.max(most));
        if lag.is_zero() {
            return;
        }
        let now = self.now;
        if let Some(d) = self.disks.get_mut(id) {
            // `before` was current until now; versions store (replaced at, state).
            d.tag_versions.push((now, before));
            let horizon = now.checked_sub(lag);
            d.tag_versions
                .retain(|(at, _)| horizon.is_none_or(|h| *at > h));
        }
    }

    pub(super) fn describe_disks(&self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?;
        let ids = req.json_ids("DiskIds")?;
        let instance = req.get("InstanceId").filter(|s| !s.is_empty());
        let disk_type = match req.get("DiskType") {
            None | Some("") | Some("all") => None,
            Some(t @ ("system" | "data")) => Some(t),
            Some(_) => return Err(invalid("DiskType")),
        };
        let tags = req.tags()?;
        let max = req.max_results(10, 10, 500)?;
        if req.flag("DryRun")? {
            return Err(dry_run_passed());
        }
        let items: Vec<Value> = self
            .disks
            .values()
            .filter(|d| Self::region_ok(region.as_deref(), &d.spec.region))
            .filter(|d| ids.as_ref().is_none_or(|ids| ids.contains(&d.spec.id)))
            .filter(|d| instance.is_none_or(|i| d.spec.instance_id.as_deref() == Some(i)))
            .filter(|d| disk_type.is_none_or(|t| t == d.spec.disk_type))
            .filter(|d| {
                let seen = self.disk_tags_seen(d);
                tags.iter().all(|(k, v)| seen.get(k) == Some(v))
            })
            .map(|d| self.disk_json(d))
            .collect();
        let total = items.len();
        let (items, next) = page(items, req, max)?;
        Ok(json!({
            "TotalCount": total, "PageNumber": 1, "PageSize": max, "NextToken": next,
            "Disks": {"Disk": items}
        }))
    }

    pub(super) fn reset_disk(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
        let region = Self::check_region(req, false)?;
        let disk_id = req.required("DiskId")?.to_owned();
        let snap_id = req.required("SnapshotId")?.to_owned();
        let dry_run = req.flag("DryRun")?;
        let disk = match self.disks.get(&disk_id) {
            Some(d) if Self::region_ok(region.as_deref(), &d.spec.region) => d,
            _ => return Err(not_found("InvalidDiskId.NotFound", "disk")),
        };
        let snap = match self.snapshots.get(&snap_id) {
            Some(s) if s.spec.region_of(self) == disk.spec.region => s,
            _ => {
                // Source: ResetDisk-api.md (404 InvalidSnapshotId.NotFound).
                return Err(ApiError::new(
                    404,
                    "InvalidSnapshotId.NotFound",
                    "The specified SnapshotId does not exist.",
                ));
            }
        };
        if snap.spec.disk_id != disk_id {
            // Source: ResetDisk-api.md (403 InvalidParameter.Mismatch).
            return Err(ApiError::new(
                403,
                "InvalidParameter.Mismatch",
                "The specified snapshot is not created from the specified disk.",
            ));
        }
        if !self.usable(snap) {
            // Source: ResetDisk-api.md (403 InvalidSnapshotId.NotReady); a `progressing`
            // snapshot with instant access is usable (ecs-evidence.md §3, C8).
            return Err(ApiError::new(
                403,
                "InvalidSnapshotId.NotReady",
                "The specified snapshot has not completed yet.",
            ));
        }
        if disk.reset.is_some() {
            match self.timings.reset_dry_run.as_deref() {
                // The scenario's: a DryRun that does not look at resets passes on to the
                // other checks (and the call itself is refused below, as ever).
                Some("pass") if dry_run => {}
                Some(code) if dry_run && code != "pass" => {
                    // Source: the scenario (an answer nobody foresaw, for the DryRun only).
                    return Err(ApiError::new(403, code, "Injected by the simulator."));
                }
                _ => {
                    // Source: ecs-evidence.md §1 (DOC-RESET: 403 InvalidOperation.DiskResetInProgress).
                    return Err(ApiError::new(
                        403,
                        "InvalidOperation.DiskResetInProgress",
                        "The operation is not allowed because the disk has an ongoing reset task, please try again later.",
                    ));
                }
            }
        }
        // "No new snapshot is being created for the disk" (ecs-evidence.md §3), except the
        // target itself when instant access makes it usable: the IA doc says such a snapshot
        // can roll the disk back while it is being created. Whether other instant-access
        // snapshots in progress also pass is not stated (Medium): they are counted, the
        // stricter reading.
        let unfinished = self.snapshots.values().any(|s| {
            s.spec.disk_id == disk_id && s.status == "progressing" && s.spec.id != snap_id
        }) || (snap.status == "progressing" && !self.usable(snap));
        if unfinished {
            // Source: ResetDisk-api.md (403 IncorrectDiskStatus.HasUnfinishedSnapshot).
            return Err(ApiError::new(
                403,
                "IncorrectDiskStatus.HasUnfinishedSnapshot",
                "The current disk has unfinished snapshot.",
            ));
        }
        let instance_status = self.disk_operable(disk, &["Stopped"])?;
        if dry_run {
            return Err(dry_run_passed());
        }
        let done = now + Duration::from_millis(self.timings.reset_ms);
        if let Some(d) = self.disks.get_mut(&disk_id) {
            d.reset = Some((snap_id.clone(), done));
            d.reset_window = Some((now, done));
            d.resets += 1;
        }
        self.record(
            "ResetDisk",
            &disk_id,
            format!("SnapshotId={snap_id}"),
            instance_status,
        );
        Ok(json!({}))
    }

    /// The checks ResetDisk and CreateSnapshot share, in the order ResetDisk reports them: the
    /// disk `In_use` or `Available`, no lock on the disk, nor on its instance (an `In_use`
    /// disk's operations are its instance's), the instance in one of `allowed`. Returns the
    /// instance's status (empty for a detached disk).
    pub(super) fn disk_operable(
        &self,
        disk: &SimDisk,
        allowed: &[&str],
    ) -> Result<String, ApiError> {
        let status = self.disk_status(disk);
        if status != "In_use" && status != "Available" {
            return Err(incorrect_disk_status());
        }
        check_locks(&disk.spec.locks)?;
        let Some(inst) = disk
            .spec
            .instance_id
            .as_ref()
            .and_then(|iid| self.instances.get(iid))
        else {
            return Ok(String::new());
        };
        check_locks(&inst.spec.locks)?;
        if !allowed.contains(&inst.status.as_str()) {
            return Err(incorrect_instance_status());
        }
        Ok(inst.status.clone())
    }
}
