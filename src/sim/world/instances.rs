//! Instances: DescribeInstances, StopInstance, StartInstance (ecs-api.md §3; StartInstance
//! while a disk of the instance is being reset: UNCONFIRMED, see the module doc).

use super::*;

impl World {
    pub(super) fn instance_json(&self, i: &SimInstance) -> Value {
        let locks: Vec<Value> = i
            .spec
            .locks
            .iter()
            .map(|l| json!({"LockReason": l, "LockMsg": format!("The specified instance is locked due to {l} reason.")}))
            .collect();
        json!({
            "InstanceId": i.spec.id,
            "InstanceName": i.spec.name,
            "RegionId": i.spec.region,
            "ZoneId": format!("{}-g", i.spec.region),
            "Status": i.status,
            "StoppedMode": if i.status == "Stopped" { i.stopped_mode.as_str() } else { "" },
            "InstanceType": "ecs.g7.large",
            "InstanceTypeFamily": "ecs.g7",
            "InstanceChargeType": "PostPaid",
            "InstanceNetworkType": "vpc",
            "Cpu": 2,
            "Memory": 8192,
            "OSType": "linux",
            "CreationTime": minutes(i.created),
            "StartTime": minutes(i.started),
            "ExpiredTime": "2099-12-31T15:59Z",
            "DeletionProtection": false,
            "Recyclable": false,
            "SpotStrategy": "NoSpot",
            "OperationLocks": {"LockReason": locks},
            "Tags": tag_list(&i.spec.tags),
            "SecurityGroupIds": {"SecurityGroupId": ["sg-bp1simulated0000001"]},
            "PublicIpAddress": {"IpAddress": []},
            "InnerIpAddress": {"IpAddress": []},
        })
    }

    pub(super) fn describe_instances(&self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?;
        let ids = req.json_ids("InstanceIds")?;
        let status = req.get("Status").filter(|s| !s.is_empty());
        let tags = req.tags()?;
        let max = req.max_results(10, 10, 100)?;
        let dry_run = req.flag("DryRun")?;
        if dry_run {
            return Err(dry_run_passed());
        }
        let items: Vec<Value> = self
            .instances
            .values()
            .filter(|i| Self::region_ok(region.as_deref(), &i.spec.region))
            .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.spec.id)))
            .filter(|i| status.is_none_or(|s| s == i.status))
            .filter(|i| tags.iter().all(|(k, v)| i.spec.tags.get(k) == Some(v)))
            .map(|i| self.instance_json(i))
            .collect();
        let total = items.len();
        let (items, next) = page(items, req, max)?;
        Ok(json!({
            "TotalCount": total, "PageNumber": 1, "PageSize": max, "NextToken": next,
            "Instances": {"Instance": items}
        }))
    }

    pub(super) fn find_instance(&self, req: &Req) -> Result<String, ApiError> {
        let region = Self::check_region(req, false)?;
        let id = req.required("InstanceId")?;
        match self.instances.get(id) {
            Some(i) if Self::region_ok(region.as_deref(), &i.spec.region) => Ok(id.to_owned()),
            _ => Err(not_found("InvalidInstanceId.NotFound", "InstanceId")),
        }
    }

    pub(super) fn stop_instance(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
        let id = self.find_instance(req)?;
        let force = req.flag("ForceStop")?;
        let mode = match req.get("StoppedMode") {
            None | Some("") => "KeepCharging",
            Some(m @ ("KeepCharging" | "StopCharging")) => m,
            Some(_) => return Err(invalid("StoppedMode")),
        };
        let dry_run = req.flag("DryRun")?;
        let inst = &self.instances[&id];
        check_locks(&inst.spec.locks)?;
        if inst.status != "Running" {
            return Err(incorrect_instance_status());
        }
        if dry_run {
            return Err(dry_run_passed());
        }
        let stop = Duration::from_millis(if force {
            self.timings.stop_ms / 2
        } else {
            self.timings.stop_ms
        });
        let before = inst.status.clone();
        if let Some(i) = self.instances.get_mut(&id) {
            i.status = "Stopping".into();
            i.stopped_mode = mode.into();
            i.transition = Some(("Stopped".into(), now + stop));
        }
        self.record(
            "StopInstance",
            &id,
            format!("ForceStop={force} StoppedMode={mode}"),
            before,
        );
        Ok(json!({}))
    }

    pub(super) fn start_instance(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
        let id = self.find_instance(req)?;
        let dry_run = req.flag("DryRun")?;
        let inst = &self.instances[&id];
        check_locks(&inst.spec.locks)?;
        if inst.status != "Stopped" {
            return Err(incorrect_instance_status());
        }
        // UNCONFIRMED: StartInstance while a disk of the instance is being reset.
        let resetting = self
            .disks
            .values()
            .any(|d| d.spec.instance_id.as_deref() == Some(&id) && d.reset.is_some());
        if resetting {
            return Err(ApiError::new(
                403,
                "DiskError",
                "IncorrectDiskStatus: a disk of the instance has an ongoing reset task.",
            ));
        }
        if inst.spec.no_stock && inst.stopped_mode == "StopCharging" {
            return Err(ApiError::new(
                403,
                "OperationDenied.NoStock",
                "The resource is out of stock in the specified zone.",
            ));
        }
        if dry_run {
            return Err(dry_run_passed());
        }
        let start = Duration::from_millis(self.timings.start_ms);
        if let Some(i) = self.instances.get_mut(&id) {
            i.status = "Starting".into();
            i.transition = Some(("Running".into(), now + start));
            i.started = Utc::now();
        }
        self.record("StartInstance", &id, String::new(), "Stopped".into());
        Ok(json!({}))
    }
}
