//! Snapshot-consistent groups: CreateSnapshotGroup and DescribeSnapshotGroups, with the rules
//! and shapes of ecs-snapshot-groups-and-cloud-assistant.md §2 (help/doc-detail/210939). A
//! group's member snapshots are ordinary snapshots (DescribeSnapshots lists them; they complete
//! after `snapshot_ms` like any other), and the group's status follows theirs.

use super::*;

/// Disks a group may hold (§2: "at most 16 disks and 32 TiB in a group").
pub const MAX_GROUP_DISKS: usize = 16;
/// Their total size, in GiB (32 TiB).
pub const MAX_GROUP_GIB: u64 = 32 * 1024;

impl World {
    /// A group of the scenario's fleet: its members must be snapshots of the fleet (or marked
    /// `deleted`).
    pub(super) fn add_group(
        &mut self,
        g: &SnapshotGroupSpec,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        if !g.id.starts_with("ssg-") {
            return Err(format!("snapshot group {}: the ID starts with ssg-", g.id));
        }
        if let Some(s) = &g.status {
            if !matches!(s.as_str(), "progressing" | "accomplished" | "failed") {
                return Err(format!(
                    "snapshot group {}: status must be progressing, accomplished or failed",
                    g.id
                ));
            }
        }
        let created = match &g.created_at {
            Some(t) => DateTime::parse_from_rfc3339(t)
                .map_err(|e| format!("snapshot group {}: createdAt {t:?}: {e}", g.id))?
                .with_timezone(&Utc),
            None => now,
        };
        let mut members = Vec::new();
        for m in &g.members {
            if m.deleted {
                continue;
            }
            if !self.snapshots.contains_key(&m.snapshot_id) {
                return Err(format!(
                    "snapshot group {}: unknown snapshot {}",
                    g.id, m.snapshot_id
                ));
            }
            members.push(m.snapshot_id.clone());
        }
        let disks: Vec<&SimDisk> = members
            .iter()
            .filter_map(|s| self.snapshots.get(s))
            .filter_map(|s| self.disks.get(&s.spec.disk_id))
            .collect();
        let region = disks
            .first()
            .map(|d| d.spec.region.clone())
            .unwrap_or_else(fleet::default_region);
        let instance_id = g.instance_id.clone().or_else(|| one_instance(&disks));
        self.groups.insert(
            g.id.clone(),
            SimGroup {
                id: g.id.clone(),
                region,
                name: g.name.clone(),
                description: g.description.clone(),
                instance_id,
                status: g.status.clone(),
                created,
                members,
            },
        );
        Ok(())
    }

    /// The group's status: pinned by the scenario, else `failed` when a member failed,
    /// `progressing` while one is being taken, `accomplished` when all are done. Deleted
    /// members do not count. UNCONFIRMED: how ECS derives a group's status from its members
    /// is not in the reference (§2 lists the three values only).
    pub(super) fn group_status(&self, g: &SimGroup) -> String {
        if let Some(s) = &g.status {
            return s.clone();
        }
        let statuses: Vec<&str> = g
            .members
            .iter()
            .filter_map(|id| self.snapshots.get(id))
            .map(|s| s.status.as_str())
            .collect();
        if statuses.contains(&"failed") {
            "failed".into()
        } else if statuses.contains(&"progressing") {
            "progressing".into()
        } else {
            "accomplished".into()
        }
    }

    fn group_json(&self, g: &SimGroup) -> Value {
        let members: Vec<Value> = g
            .members
            .iter()
            .filter_map(|id| self.snapshots.get(id))
            .map(|s| {
                let row = self.snapshot_json(s);
                json!({
                    "SnapshotId": row["SnapshotId"],
                    "SourceDiskId": row["SourceDiskId"],
                    "SourceDiskType": row["SourceDiskType"],
                    "Progress": row["Progress"],
                    "Available": row["Available"],
                    "InstantAccess": row["InstantAccess"],
                    "Tags": row["Tags"],
                })
            })
            .collect();
        let mut row = json!({
            "SnapshotGroupId": g.id,
            "Name": g.name,
            "Description": g.description,
            "Status": self.group_status(g),
            "CreationTime": seconds(g.created),
            "Snapshots": {"Snapshot": members},
        });
        // §2: "The group's InstanceId is set only when every snapshot comes from one instance."
        if let (Some(i), Value::Object(m)) = (&g.instance_id, &mut row) {
            m.insert("InstanceId".into(), Value::String(i.clone()));
        }
        row
    }

    /// DescribeSnapshotGroups (§2): filters `SnapshotGroupId.N` (1-10), `Status.N`,
    /// `InstanceId`, `Name`; `MaxResults` 1-100 (default 10) and `NextToken`; newest first.
    pub(super) fn describe_snapshot_groups(&self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?;
        // Source: ecs-snapshot-groups-and-cloud-assistant.md §2 (`SnapshotGroupId.N`, N 1-10);
        // the code is ecs-api.md §5.2's 400 InvalidParameter.
        let ids = req.repeat_list("SnapshotGroupId", 10)?;
        let statuses = req.repeat_list("Status", 3)?;
        if statuses
            .iter()
            .any(|s| !matches!(s.as_str(), "progressing" | "accomplished" | "failed"))
        {
            // Source: §2 (progressing | accomplished | failed); ecs-api.md §5.2 (the code).
            return Err(invalid("Status.N"));
        }
        let instance = req.get("InstanceId").filter(|s| !s.is_empty());
        let name = req.get("Name").filter(|s| !s.is_empty());
        let max = req.max_results(10, 1, 100)?;
        let mut groups: Vec<&SimGroup> = self
            .groups
            .values()
            .filter(|g| Self::region_ok(region.as_deref(), &g.region))
            .filter(|g| ids.is_empty() || ids.contains(&g.id))
            .filter(|g| statuses.is_empty() || statuses.contains(&self.group_status(g)))
            .filter(|g| instance.is_none_or(|i| g.instance_id.as_deref() == Some(i)))
            .filter(|g| name.is_none_or(|n| g.name == n))
            .collect();
        groups.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        let items: Vec<Value> = groups.into_iter().map(|g| self.group_json(g)).collect();
        let (items, next) = page(items, req, max)?;
        Ok(json!({"NextToken": next, "SnapshotGroups": {"SnapshotGroup": items}}))
    }

    /// CreateSnapshotGroup (§2): the disks of `InstanceId` less `ExcludeDiskId.N`, or
    /// `DiskId.N` (which may span instances of one zone); ESSD-series disks only, at most 16
    /// and 32 TiB; each `In_use` (its instance Running or Stopped) or `Available` after having
    /// been attached; none with a snapshot being taken. One member snapshot per disk, taken as
    /// CreateSnapshot takes one (`progressing` for `snapshot_ms`).
    pub(super) fn create_snapshot_group(
        &mut self,
        req: &Req,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?;
        let instance = req.get("InstanceId").filter(|s| !s.is_empty());
        let mut disk_ids = req.repeat_list("DiskId", 100)?;
        let excluded = req.repeat_list("ExcludeDiskId", 100)?;
        if !disk_ids.is_empty() && !excluded.is_empty() {
            // Source: ecs-snapshot-groups-and-cloud-assistant.md §2 (`ExcludeDiskId.N` "not
            // with `DiskId.N`"); the code is ecs-api.md §5.2's 400 InvalidParameter.
            return Err(invalid("ExcludeDiskId.N"));
        }
        if disk_ids.is_empty() && instance.is_none() {
            // Source: §2 (`InstanceId`, or `DiskId.N`): neither is MissingParameter
            // (ecs-api.md §5.2).
            req.required("InstanceId")?;
        }
        let instant_access = req.flag("InstantAccess")?;
        let retention = match req.get("InstantAccessRetentionDays") {
            None | Some("") => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Some(n),
                // Source: §2 (`InstantAccessRetentionDays` 1-65535); ecs-api.md §5.2 (the code).
                _ => return Err(invalid("InstantAccessRetentionDays")),
            },
        };
        let name = req.get("Name").unwrap_or("").to_owned();
        let description = req.get("Description").unwrap_or("").to_owned();
        let tags = req.tags()?;
        // UNCONFIRMED: §2 does not list `ClientToken`; Alibaba's own CLI (ecctl) calls the
        // operation idempotent through it. Handled as CreateSnapshot's (ecs-evidence.md §3).
        let token = req.get("ClientToken").filter(|t| !t.is_empty());
        let fingerprint = format!(
            "{instance:?}|{disk_ids:?}|{excluded:?}|{instant_access}|{retention:?}|{name}|{description}|{tags:?}"
        );
        if let Some(id) = self.client_token_seen("CreateSnapshotGroup", token, &fingerprint, now)? {
            return Ok(json!({"SnapshotGroupId": id}));
        }
        if let Some(i) = instance {
            match self.instances.get(i) {
                Some(inst) if Self::region_ok(region.as_deref(), &inst.spec.region) => {}
                _ => return Err(not_found("InvalidInstanceId.NotFound", "instance")),
            }
        }
        if disk_ids.is_empty() {
            disk_ids = self
                .disks
                .values()
                .filter(|d| d.spec.instance_id.as_deref() == instance)
                .map(|d| d.spec.id.clone())
                .filter(|id| !excluded.contains(id))
                .collect();
        }
        let mut seen = std::collections::BTreeSet::new();
        disk_ids.retain(|d| seen.insert(d.clone()));
        if disk_ids.is_empty() {
            // UNCONFIRMED: a group with no disk left (every disk excluded) is refused with
            // the generic 400 InvalidParameter (ecs-api.md §5.2).
            return Err(invalid("ExcludeDiskId.N"));
        }
        if disk_ids.len() > MAX_GROUP_DISKS {
            return Err(group_too_big("InvalidParameter.DiskCount", "16 disks"));
        }
        let mut instance_statuses = Vec::new();
        let mut total_gib = 0u64;
        for id in &disk_ids {
            let disk = match self.disks.get(id) {
                Some(d) if Self::region_ok(region.as_deref(), &d.spec.region) => d,
                _ => return Err(not_found("InvalidDiskId.NotFound", "disk")),
            };
            total_gib += u64::from(disk.spec.size);
            if !has_instant_access(disk.spec.category.as_deref()) {
                // Source: §2 ("ESSD-series disks only (ESSD, ESSD AutoPL, ESSD Entry)"). The
                // answer is UNCONFIRMED: ResetDisk-api.md's 400
                // DiskCategory.OperationNotSupported, a category refusal of another call.
                return Err(ApiError::new(
                    400,
                    "DiskCategory.OperationNotSupported",
                    "The operation is not supported to the specified disk due to its disk category",
                ));
            }
            if disk.reset.is_some() {
                // UNCONFIRMED, as for CreateSnapshot: a disk being reset is refused as a
                // disk status (ecs-evidence.md §7: not found).
                return Err(incorrect_disk_status());
            }
            // §2: "each disk `In_use` (instance Running or Stopped)"; the instance's status
            // answers as ResetDisk's (403 IncorrectInstanceStatus), locks as everywhere.
            instance_statuses.push(self.disk_operable(disk, &["Running", "Stopped"])?);
            if disk.spec.instance_id.is_none() && !disk.ever_attached {
                // Source: §2 ("or `Available` having been attached before"). The code is
                // CreateSnapshot's (ecs-evidence.md §3: 403 IncorrectDiskStatus.NeverAttached);
                // for this call and the message, UNCONFIRMED.
                return Err(ApiError::new(
                    403,
                    "IncorrectDiskStatus.NeverAttached",
                    "The specified disk has never been attached to an instance.",
                ));
            }
            if self
                .snapshots
                .values()
                .any(|s| s.spec.disk_id == *id && s.status == "progressing")
            {
                // Source: ecs-evidence.md §3 ("CreateSnapshotGroup adds
                // `IncorrectDiskStatus.TooManyCreatingSnapshots`"); the message is UNCONFIRMED.
                return Err(ApiError::new(
                    403,
                    "IncorrectDiskStatus.TooManyCreatingSnapshots",
                    "Too many snapshots are being created for the specified disk.",
                ));
            }
        }
        // §2: the disks in one zone. The simulator has one zone per region (`<region>-g`, as
        // DescribeDisks shows), so disks found in the request's region always share it.
        if total_gib > MAX_GROUP_GIB {
            return Err(group_too_big("InvalidParameter.DiskSize", "32 TiB"));
        }
        let region = match region {
            Some(r) => r,
            None => fleet::default_region(),
        };
        let group_id = self.new_group_id();
        let disks: Vec<&SimDisk> = disk_ids.iter().filter_map(|d| self.disks.get(d)).collect();
        let instance_id = one_instance(&disks);
        let taken: Vec<(String, String)> = disks
            .iter()
            .map(|d| (d.spec.id.clone(), d.content.clone()))
            .collect();
        let mut members = Vec::new();
        for ((disk_id, content), instance_status) in taken.into_iter().zip(instance_statuses) {
            let id = self.new_snapshot_id();
            self.snapshots.insert(
                id.clone(),
                SimSnapshot {
                    spec: SnapshotSpec {
                        id: id.clone(),
                        disk_id: disk_id.clone(),
                        // UNCONFIRMED: the members' names and tags. They are given the
                        // group's name and its tags (`Tag.N`), which §2 shows on each member
                        // (`Snapshots.Snapshot[].Tags`).
                        name: name.clone(),
                        status: "progressing".into(),
                        age_hours: 0.0,
                        created_at: None,
                        tags: tags.iter().cloned().collect(),
                        automatic: false,
                    },
                    status: "progressing".into(),
                    ready_at: Some(now + Duration::from_millis(self.timings.snapshot_ms)),
                    created: Utc::now(),
                    content: Some(content),
                },
            );
            self.record(
                "CreateSnapshotGroup",
                &disk_id,
                format!("SnapshotGroupId={group_id} SnapshotId={id}"),
                instance_status,
            );
            members.push(id);
        }
        self.groups.insert(
            group_id.clone(),
            SimGroup {
                id: group_id.clone(),
                region,
                name,
                description,
                instance_id,
                status: None,
                created: Utc::now(),
                members,
            },
        );
        self.remember_client_token("CreateSnapshotGroup", token, fingerprint, &group_id, now);
        Ok(json!({"SnapshotGroupId": group_id}))
    }

    /// `ssg-sim` and 16 hex digits and digits, like the simulator's snapshot IDs.
    fn new_group_id(&mut self) -> String {
        self.created_snapshots += 1;
        format!(
            "ssg-sim{:012x}{:04}",
            self.started.elapsed().as_nanos() as u64 & 0xffff_ffff_ffff,
            self.created_snapshots % 10_000
        )
    }
}

/// The one instance every disk is attached to, if there is one.
fn one_instance(disks: &[&SimDisk]) -> Option<String> {
    let first = disks.first()?.spec.instance_id.clone()?;
    disks
        .iter()
        .all(|d| d.spec.instance_id.as_deref() == Some(first.as_str()))
        .then_some(first)
}

fn group_too_big(code: &str, limit: &str) -> ApiError {
    // Source: ecs-snapshot-groups-and-cloud-assistant.md §2 ("at most 16 disks and 32 TiB in a
    // group"); the codes and the message are UNCONFIRMED.
    ApiError::new(
        400,
        code,
        format!("A snapshot-consistent group holds at most {limit}."),
    )
}

/// One test per rule of §2, each naming its source (or UNCONFIRMED where the rule is a guess).
#[cfg(test)]
mod tests {
    use super::super::tests::{call, call_at, code, world, world_of};
    use super::*;

    const DB: &str = "i-bp1dbserv00000005";
    const DB_SYS: &str = "d-bp1dbserv0000sys05";
    const DB_DAT: &str = "d-bp1dbserv0000dat05";
    const WEB_SYS: &str = "d-bp1webapp0000sys01";
    const GROUP_1: &str = "ssg-bp1dbserv0000000001";
    const GROUP_2: &str = "ssg-bp1dbserv0000000002";

    fn create(w: &mut World, params: &[(&str, &str)]) -> Result<String, ApiError> {
        call(w, "CreateSnapshotGroup", params).map(|v| {
            v["SnapshotGroupId"]
                .as_str()
                .expect("SnapshotGroupId")
                .to_owned()
        })
    }

    fn groups_at(w: &mut World, params: &[(&str, &str)], at: Instant) -> Vec<Value> {
        let v = call_at(w, "DescribeSnapshotGroups", params, at).expect("described");
        v["SnapshotGroups"]["SnapshotGroup"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn groups(w: &mut World, params: &[(&str, &str)]) -> Vec<Value> {
        groups_at(w, params, Instant::now())
    }

    fn ids(groups: &[Value]) -> Vec<String> {
        groups
            .iter()
            .map(|g| g["SnapshotGroupId"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn member_ids(group: &Value) -> Vec<String> {
        group["Snapshots"]["Snapshot"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|s| s["SnapshotId"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The default fleet plus `n` ESSD data disks of `size` GiB on instance `i-bp1bigdb0000000009`.
    fn world_with_big_instance(n: usize, size: u32) -> World {
        let mut fleet = default_fleet();
        fleet.instances.push(InstanceSpec {
            id: "i-bp1bigdb0000000009".into(),
            region: "cn-hangzhou".into(),
            name: "bigdb".into(),
            status: "Running".into(),
            locks: vec![],
            tags: BTreeMap::new(),
            no_stock: false,
        });
        for i in 0..n {
            fleet.disks.push(DiskSpec {
                id: format!("d-bp1bigdb00000{i:05}"),
                region: "cn-hangzhou".into(),
                name: String::new(),
                instance_id: Some("i-bp1bigdb0000000009".into()),
                disk_type: if i == 0 { "system" } else { "data" }.into(),
                size,
                category: Some("cloud_auto".into()),
                locks: vec![],
                tags: BTreeMap::new(),
            });
        }
        world_of(&fleet)
    }

    #[test]
    fn the_default_fleet_has_db_05s_two_groups() {
        // The default fleet (fleet.rs): db-05's groups, accomplished, newest first.
        let mut w = world();
        let found = groups(&mut w, &[("InstanceId", DB)]);
        assert_eq!(ids(&found), [GROUP_2, GROUP_1]);
        let g1 = &found[1];
        assert_eq!(g1["Name"], "db-05-before-migration");
        assert_eq!(g1["Status"], "accomplished");
        assert_eq!(g1["InstanceId"], DB);
        assert_eq!(g1["CreationTime"], "2026-11-27T02:00:00Z");
        assert_eq!(
            member_ids(g1),
            [
                "s-bp1dbserv0sys00001",
                "s-bp1dbserv0dat00001",
                "s-bp1dbserv0dat10001"
            ]
        );
        let m = &g1["Snapshots"]["Snapshot"][0];
        assert_eq!(
            (
                &m["SourceDiskId"],
                &m["SourceDiskType"],
                &m["Progress"],
                &m["Available"],
                &m["InstantAccess"]
            ),
            (
                &json!(DB_SYS),
                &json!("system"),
                &json!("100%"),
                &json!(true),
                &json!(true)
            )
        );
        assert_eq!(
            found[0]["Snapshots"]["Snapshot"][2]["SourceDiskType"],
            "data"
        );
    }

    #[test]
    fn a_group_of_an_instance_takes_one_snapshot_per_disk() {
        // ecs-snapshot-groups-and-cloud-assistant.md §2: `InstanceId`, `Tag.N`, an `ssg-` ID;
        // members listed by DescribeSnapshots like any snapshot (their tags: UNCONFIRMED).
        let mut w = world();
        let id = create(
            &mut w,
            &[
                ("InstanceId", DB),
                ("Name", "db-05-test"),
                ("Description", "before the upgrade"),
                ("InstantAccess", "true"),
                ("InstantAccessRetentionDays", "1"),
                ("Tag.1.Key", "purpose"),
                ("Tag.1.Value", "upgrade"),
            ],
        )
        .expect("created");
        assert!(id.starts_with("ssg-") && id.len() >= 20, "{id}");
        let found = groups(&mut w, &[("SnapshotGroupId.1", &id)]);
        assert_eq!(found.len(), 1);
        let g = &found[0];
        assert_eq!(
            (&g["Name"], &g["Description"], &g["InstanceId"]),
            (
                &json!("db-05-test"),
                &json!("before the upgrade"),
                &json!(DB)
            )
        );
        let members = member_ids(g);
        assert_eq!(members.len(), 3);
        assert_eq!(
            g["Snapshots"]["Snapshot"][0]["Tags"]["Tag"][0],
            json!({"TagKey": "purpose", "TagValue": "upgrade"})
        );
        let listed = call(
            &mut w,
            "DescribeSnapshots",
            &[(
                "SnapshotIds",
                &serde_json::to_string(&members).expect("json"),
            )],
        )
        .expect("described");
        assert_eq!(listed["TotalCount"], 3, "{listed}");
        let made: Vec<&Event> = w
            .events()
            .iter()
            .filter(|e| e.action == "CreateSnapshotGroup")
            .collect();
        assert_eq!(made.len(), 3, "one event per disk");
        assert!(made.iter().all(|e| e.instance_status == "Running"));
    }

    #[test]
    fn a_group_is_progressing_until_its_snapshots_are_done() {
        // §2 (progressing | accomplished | failed); the members take `snapshot_ms` like any
        // snapshot; the group's status from its members' is UNCONFIRMED.
        let mut w = world();
        let t0 = Instant::now();
        let id = create(&mut w, &[("InstanceId", DB)]).expect("created");
        let g = &groups_at(&mut w, &[("SnapshotGroupId.1", &id)], t0)[0];
        assert_eq!(g["Status"], "progressing");
        // ESSD: instant access, usable while being taken (ecs-evidence.md §3, C8).
        assert_eq!(g["Snapshots"]["Snapshot"][0]["Available"], true);
        let later = t0 + Duration::from_millis(w.timings.snapshot_ms + 1000);
        let g = &groups_at(&mut w, &[("SnapshotGroupId.1", &id)], later)[0];
        assert_eq!(g["Status"], "accomplished");
        assert_eq!(g["Snapshots"]["Snapshot"][1]["Progress"], "100%");
    }

    #[test]
    fn only_essd_series_disks_join_a_group() {
        // §2: "ESSD-series disks only (ESSD, ESSD AutoPL, ESSD Entry)"; the answer UNCONFIRMED.
        let mut fleet = default_fleet();
        for d in fleet.disks.iter_mut().filter(|d| d.id == WEB_SYS) {
            d.category = Some("cloud_efficiency".into());
        }
        let mut w = world_of(&fleet);
        let r = create(&mut w, &[("DiskId.1", WEB_SYS), ("DiskId.2", DB_SYS)]);
        assert_eq!(
            code(r.map(Value::String)),
            (400, "DiskCategory.OperationNotSupported".into())
        );
        assert!(w.events().is_empty());
        for category in ["cloud_essd", "cloud_auto", "cloud_essd_entry"] {
            assert!(has_instant_access(Some(category)), "{category}");
        }
    }

    #[test]
    fn a_group_holds_16_disks_and_32_tib_at_most() {
        // §2: "at most 16 disks and 32 TiB in a group"; the codes UNCONFIRMED.
        let mut w = world_with_big_instance(17, 100);
        let r = create(&mut w, &[("InstanceId", "i-bp1bigdb0000000009")]);
        assert_eq!(
            code(r.map(Value::String)),
            (400, "InvalidParameter.DiskCount".into())
        );
        create(
            &mut w,
            &[
                ("InstanceId", "i-bp1bigdb0000000009"),
                ("ExcludeDiskId.1", "d-bp1bigdb0000000016"),
            ],
        )
        .expect("16 disks");
        let mut w = world_with_big_instance(3, 12_000);
        let r = create(&mut w, &[("InstanceId", "i-bp1bigdb0000000009")]);
        assert_eq!(
            code(r.map(Value::String)),
            (400, "InvalidParameter.DiskSize".into())
        );
    }

    #[test]
    fn exclude_disk_id_does_not_go_with_disk_id() {
        // §2: `ExcludeDiskId.N` "not with `DiskId.N`"; neither `InstanceId` nor `DiskId.N` is
        // a missing parameter (ecs-api.md §5.2).
        let mut w = world();
        let r = create(&mut w, &[("DiskId.1", DB_SYS), ("ExcludeDiskId.1", DB_DAT)]);
        assert_eq!(code(r.map(Value::String)), (400, "InvalidParameter".into()));
        let r = create(&mut w, &[("Name", "nothing")]);
        assert_eq!(code(r.map(Value::String)), (400, "MissingParameter".into()));
        let r = create(
            &mut w,
            &[("InstanceId", DB), ("InstantAccessRetentionDays", "0")],
        );
        assert_eq!(code(r.map(Value::String)), (400, "InvalidParameter".into()));
        let id =
            create(&mut w, &[("InstanceId", DB), ("ExcludeDiskId.1", DB_DAT)]).expect("two disks");
        let g = &groups(&mut w, &[("SnapshotGroupId.1", &id)])[0];
        assert_eq!(member_ids(g).len(), 2);
    }

    #[test]
    fn disks_of_two_instances_make_a_group_without_instance_id() {
        // §2: `DiskId.N` may span instances in one zone; the group's `InstanceId` only when
        // every snapshot comes from one instance.
        let mut w = world();
        let id = create(&mut w, &[("DiskId.1", WEB_SYS), ("DiskId.2", DB_SYS)]).expect("made");
        let g = &groups(&mut w, &[("SnapshotGroupId.1", &id)])[0];
        assert!(g.get("InstanceId").is_none(), "{g}");
        assert_eq!(member_ids(g).len(), 2);
    }

    #[test]
    fn a_disk_with_a_snapshot_being_taken_is_refused() {
        // ecs-evidence.md §3: CreateSnapshotGroup's 403 IncorrectDiskStatus.TooManyCreatingSnapshots.
        let mut w = world();
        call(&mut w, "CreateSnapshot", &[("DiskId", DB_DAT)]).expect("snapshot");
        let r = create(&mut w, &[("InstanceId", DB)]);
        assert_eq!(
            code(r.map(Value::String)),
            (403, "IncorrectDiskStatus.TooManyCreatingSnapshots".into())
        );
    }

    #[test]
    fn an_available_disk_joins_only_after_it_was_attached() {
        // §2: "`Available` having been attached before"; a never-attached disk's answer is
        // CreateSnapshot's code (ecs-evidence.md §3), UNCONFIRMED for this call.
        let mut fleet = default_fleet();
        fleet.disks.push(DiskSpec {
            id: "d-bp1spare00000000001".into(),
            region: "cn-hangzhou".into(),
            name: String::new(),
            instance_id: None,
            disk_type: "data".into(),
            size: 100,
            category: Some("cloud_essd".into()),
            locks: vec![],
            tags: BTreeMap::new(),
        });
        let mut w = world_of(&fleet);
        let r = create(&mut w, &[("DiskId.1", "d-bp1spare00000000001")]);
        assert_eq!(
            code(r.map(Value::String)),
            (403, "IncorrectDiskStatus.NeverAttached".into())
        );
        assert!(w.detach_disk(DB_DAT));
        create(&mut w, &[("DiskId.1", DB_DAT)]).expect("detached, attached before");
    }

    #[test]
    fn a_transitional_instance_is_refused() {
        // §2: each disk `In_use` with its instance Running or Stopped; ResetDisk-api.md's 403
        // IncorrectInstanceStatus.
        let mut w = world();
        call(&mut w, "StopInstance", &[("InstanceId", DB)]).expect("stopping");
        let r = create(&mut w, &[("InstanceId", DB)]);
        assert_eq!(
            code(r.map(Value::String)),
            (403, "IncorrectInstanceStatus".into())
        );
    }

    #[test]
    fn a_client_token_makes_one_group() {
        // UNCONFIRMED (§2 does not list `ClientToken`): as CreateSnapshot's (ecs-evidence.md
        // §3, C3): the first result again, IdempotentProcessing meanwhile, and
        // IdempotentParameterMismatch with other parameters.
        let mut w = world();
        let t0 = Instant::now();
        let ask = |w: &mut World, name: &str, at: Instant| {
            call_at(
                w,
                "CreateSnapshotGroup",
                &[("InstanceId", DB), ("Name", name), ("ClientToken", "tok-1")],
                at,
            )
        };
        let first = ask(&mut w, "one", t0).expect("created");
        assert_eq!(
            code(ask(&mut w, "one", t0 + Duration::from_millis(1))),
            (403, "IdempotentProcessing".into())
        );
        let again = ask(&mut w, "one", t0 + Duration::from_secs(1)).expect("the same");
        assert_eq!(first["SnapshotGroupId"], again["SnapshotGroupId"]);
        assert_eq!(
            code(ask(&mut w, "two", t0 + Duration::from_secs(1))),
            (403, "IdempotentParameterMismatch".into())
        );
        let made = groups(&mut w, &[("InstanceId", DB)]);
        assert_eq!(made.len(), 3, "the fleet's two and one more");
        // Tokens are kept per action: CreateSnapshot's own is another.
        call_at(
            &mut w,
            "CreateSnapshot",
            &[("DiskId", WEB_SYS), ("ClientToken", "tok-1")],
            t0 + Duration::from_secs(1),
        )
        .expect("another action's token");
    }

    #[test]
    fn describe_filters_and_pages() {
        // §2: `SnapshotGroupId.N` (1-10), `Status.N`, `InstanceId`, `Name`; `MaxResults` and
        // `NextToken`.
        let mut w = world();
        let new = create(&mut w, &[("DiskId.1", WEB_SYS), ("Name", "web")]).expect("made");
        assert_eq!(ids(&groups(&mut w, &[])), [new.as_str(), GROUP_2, GROUP_1]);
        assert_eq!(
            ids(&groups(&mut w, &[("InstanceId", DB)])),
            [GROUP_2, GROUP_1]
        );
        assert_eq!(
            ids(&groups(&mut w, &[("InstanceId", "i-bp1webapp00000001")])),
            [new.as_str()]
        );
        assert_eq!(
            ids(&groups(&mut w, &[("Name", "db-05-nightly")])),
            [GROUP_2]
        );
        assert_eq!(
            ids(&groups(&mut w, &[("Status.1", "progressing")])),
            [new.as_str()]
        );
        assert_eq!(
            ids(&groups(
                &mut w,
                &[("Status.1", "accomplished"), ("Status.2", "failed")]
            )),
            [GROUP_2, GROUP_1]
        );
        assert_eq!(
            ids(&groups(
                &mut w,
                &[
                    ("SnapshotGroupId.1", GROUP_1),
                    ("SnapshotGroupId.2", "ssg-nope")
                ]
            )),
            [GROUP_1]
        );
        let r = call(
            &mut w,
            "DescribeSnapshotGroups",
            &[("SnapshotGroupId.11", GROUP_1)],
        );
        assert_eq!(code(r), (400, "InvalidParameter".into()));
        let r = call(&mut w, "DescribeSnapshotGroups", &[("Status.1", "done")]);
        assert_eq!(code(r), (400, "InvalidParameter".into()));
        // One a page, to the end.
        let (mut seen, mut token) = (Vec::new(), String::new());
        for _ in 0..5 {
            let mut params = vec![("MaxResults", "1")];
            if !token.is_empty() {
                params.push(("NextToken", token.as_str()));
            }
            let v = call(&mut w, "DescribeSnapshotGroups", &params).expect("page");
            seen.extend(ids(v["SnapshotGroups"]["SnapshotGroup"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()));
            token = v["NextToken"].as_str().unwrap_or("").to_owned();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(seen, [new.as_str(), GROUP_2, GROUP_1]);
        // Default 10 a page.
        let v = call(&mut w, "DescribeSnapshotGroups", &[]).expect("page");
        assert_eq!(v["NextToken"], "");
    }

    #[test]
    fn a_deleted_member_leaves_the_rest_and_a_failed_one_fails_the_group() {
        // §2: the group's `Snapshots` are its snapshots still there; a failed member failing
        // the group is UNCONFIRMED.
        let mut w = world();
        assert!(w.delete_snapshot("s-bp1dbserv0dat00001"));
        let g = &groups(&mut w, &[("SnapshotGroupId.1", GROUP_1)])[0];
        assert_eq!(
            member_ids(g),
            ["s-bp1dbserv0sys00001", "s-bp1dbserv0dat10001"]
        );
        assert_eq!(g["Status"], "accomplished");
        assert!(w.fail_snapshot("s-bp1dbserv0sys00002"));
        let g = &groups(&mut w, &[("SnapshotGroupId.1", GROUP_2)])[0];
        assert_eq!(g["Status"], "failed");
        assert_eq!(g["Snapshots"]["Snapshot"][0]["Available"], false);
        assert_eq!(ids(&groups(&mut w, &[("Status.1", "failed")])), [GROUP_2]);
    }

    #[test]
    fn a_scenario_names_groups_with_deleted_or_failed_members() {
        // A scenario's fleet (fleet.rs): members by snapshot ID, `deleted` ones left out, a
        // pinned status; unknown snapshots refused.
        let mut fleet = default_fleet();
        let g = &mut fleet.snapshot_groups[0];
        g.members[1].deleted = true;
        g.status = Some("failed".into());
        fleet.snapshots.retain(|s| s.id != "s-bp1dbserv0dat00001");
        let mut w = world_of(&fleet);
        let g = &groups(&mut w, &[("SnapshotGroupId.1", GROUP_1)])[0];
        assert_eq!(member_ids(g).len(), 2);
        assert_eq!(g["Status"], "failed");
        let json = serde_json::json!({
            "snapshotGroups": [{"id": "ssg-x00000000000000001", "members": [{"snapshotId": "s-nope"}]}]
        });
        let fleet: FleetSpec = serde_json::from_value(json).expect("spec");
        assert!(World::new(&fleet, Timings::fast()).is_err());
    }
}
