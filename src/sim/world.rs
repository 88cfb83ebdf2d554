//! The simulated ECS region(s): instances, disks, snapshots and tags, and the documented rules
//! of each call. Transitions (Stopping → Stopped, Starting → Running, a reset in progress,
//! a snapshot being taken) complete lazily, when the world is next looked at.
//!
//! Error codes and HTTP statuses follow `shared/reference/ResetDisk-api.md` and `ecs-api.md`
//! §5. Where the reference has no fact, the choice is marked UNCONFIRMED here:
//! - the disk status during a reset (configurable: unchanged by default, see `SimConfig`);
//! - StartInstance while a disk of the instance is being reset: 403 `DiskError`;
//! - the tag quota error: 403 `OperationDenied.QuotaExceed`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ApiError;

/// How long things take, and what the world shows meanwhile.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Timings {
    pub stop_ms: u64,
    pub start_ms: u64,
    pub reset_ms: u64,
    pub snapshot_ms: u64,
    /// What DescribeDisks shows as `Status` while a reset runs. `None` (the default) shows the
    /// status unchanged: the completion signal of ResetDisk is not documented (ecs-api.md §4.5),
    /// so the rollback must not depend on seeing one.
    pub reset_disk_status: Option<String>,
    /// How far reads of disk tags (DescribeDisks `Tags`, ListTagResources) lag behind writes:
    /// a read shows the tags as they were this long ago, a consistent prefix of the writes.
    /// ECS documents its OpenAPI as eventually consistent after a create, modify or delete
    /// (help.aliyun.com, "final-consistency-of-alibaba-cloud-ecs-openapi-resources") and gives
    /// no bound; 0 (the default) is read-after-write.
    pub tag_read_lag_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            stop_ms: 1500,
            start_ms: 1500,
            reset_ms: 2000,
            snapshot_ms: 3000,
            reset_disk_status: None,
            tag_read_lag_ms: 0,
        }
    }
}

impl Timings {
    /// Short transitions for tests.
    pub fn fast() -> Self {
        Self {
            stop_ms: 40,
            start_ms: 40,
            reset_ms: 60,
            snapshot_ms: 60,
            reset_disk_status: None,
            tag_read_lag_ms: 0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    pub id: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub name: String,
    /// `Running` or `Stopped`.
    #[serde(default = "default_running")]
    pub status: String,
    #[serde(default)]
    pub locks: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// StartInstance after a `StopCharging` stop fails with `OperationDenied.NoStock`.
    #[serde(default)]
    pub no_stock: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskSpec {
    pub id: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub name: String,
    /// The instance it is attached to (`In_use`); none means `Available`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// `system` or `data`.
    #[serde(default = "default_system")]
    pub disk_type: String,
    #[serde(default = "default_size")]
    pub size: u32,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub locks: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotSpec {
    pub id: String,
    pub disk_id: String,
    #[serde(default)]
    pub name: String,
    /// `accomplished`, `progressing` or `failed`.
    #[serde(default = "default_accomplished")]
    pub status: String,
    /// Hours before the simulator started (when `createdAt` is not given).
    #[serde(default)]
    pub age_hours: f64,
    /// When the snapshot was taken (RFC 3339); wins over `ageHours`.
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSpec {
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub snapshots: Vec<SnapshotSpec>,
}

fn default_region() -> String {
    "cn-hangzhou".into()
}
fn default_running() -> String {
    "Running".into()
}
fn default_system() -> String {
    "system".into()
}
fn default_accomplished() -> String {
    "accomplished".into()
}
fn default_size() -> u32 {
    40
}

#[derive(Clone, Debug)]
struct SimInstance {
    spec: InstanceSpec,
    status: String,
    stopped_mode: String,
    /// (status reached, when).
    transition: Option<(String, Instant)>,
    created: DateTime<Utc>,
    /// When StartInstance was last accepted (DescribeInstances `StartTime`, to the minute).
    started: DateTime<Utc>,
}

#[derive(Clone, Debug)]
struct SimDisk {
    spec: DiskSpec,
    /// (snapshot, done at) of a reset in progress.
    reset: Option<(String, Instant)>,
    /// What the disk holds: `original`, or the snapshot it was last reset to.
    content: String,
    resets: u32,
    created: DateTime<Utc>,
    /// Earlier states of the tags, oldest first, each with the moment it became current; kept
    /// only while `tag_read_lag_ms` can still show it.
    tag_versions: Vec<(Instant, BTreeMap<String, String>)>,
}

#[derive(Clone, Debug)]
struct SimSnapshot {
    spec: SnapshotSpec,
    status: String,
    ready_at: Option<Instant>,
    created: DateTime<Utc>,
    /// What the disk held when CreateSnapshot took it (`None` for the fleet's own snapshots).
    content: Option<String>,
}

/// One state-changing call the world applied, for tests that check what happened.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub seq: u64,
    pub at_ms: u64,
    pub action: String,
    pub resource: String,
    pub detail: String,
    /// The status of the instance concerned when the call was applied.
    pub instance_status: String,
}

/// A request, decoded: the parameters and what the caller is allowed to see.
pub struct Req<'a> {
    pub params: &'a BTreeMap<String, String>,
}

impl<'a> Req<'a> {
    pub fn get(&self, k: &str) -> Option<&'a str> {
        self.params.get(k).map(String::as_str)
    }
    fn required(&self, k: &str) -> Result<&'a str, ApiError> {
        match self.get(k) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::new(
                400,
                "MissingParameter",
                format!("The input parameter \"{k}\" that is mandatory for processing this request is not supplied."),
            )),
        }
    }
    fn flag(&self, k: &str) -> Result<bool, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(invalid(k)),
        }
    }
    /// A JSON-array parameter such as `InstanceIds`: at most 100 strings.
    fn json_ids(&self, k: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(raw) = self.get(k) else {
            return Ok(None);
        };
        let ids: Vec<String> = serde_json::from_str(raw).map_err(|_| invalid(k))?;
        if ids.len() > 100 {
            return Err(invalid(k));
        }
        Ok(Some(ids))
    }
    /// `Prefix.1`, `Prefix.2`, …: the values in N order, N from 1 to `max`.
    fn repeat_list(&self, prefix: &str, max: usize) -> Result<Vec<String>, ApiError> {
        let mut out: Vec<(usize, String)> = Vec::new();
        for (k, v) in self.params.iter() {
            if let Some(n) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) {
                let n: usize = n.parse().map_err(|_| invalid(k))?;
                if n == 0 || n > max {
                    return Err(invalid(k));
                }
                out.push((n, v.clone()));
            }
        }
        out.sort();
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }
    /// `Tag.N.Key` / `Tag.N.Value`, N from 1 to 20.
    fn tags(&self) -> Result<Vec<(String, String)>, ApiError> {
        let mut out: BTreeMap<usize, (String, String)> = BTreeMap::new();
        for (k, v) in self.params.iter() {
            let Some(rest) = k.strip_prefix("Tag.") else {
                continue;
            };
            let Some((n, field)) = rest.split_once('.') else {
                return Err(invalid(k));
            };
            let n: usize = n.parse().map_err(|_| invalid(k))?;
            if n == 0 || n > 20 {
                return Err(invalid(k));
            }
            let e = out.entry(n).or_default();
            match field {
                "Key" => e.0 = v.clone(),
                "Value" => e.1 = v.clone(),
                _ => return Err(invalid(k)),
            }
        }
        Ok(out.into_values().collect())
    }
    fn max_results(&self, default: usize, min: usize, max: usize) -> Result<usize, ApiError> {
        match self.get("MaxResults") {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map(|n| n.clamp(min, max))
                .map_err(|_| invalid("MaxResults")),
        }
    }
}

fn invalid(k: &str) -> ApiError {
    ApiError::new(
        400,
        "InvalidParameter",
        format!("The specified parameter \"{k}\" is not valid."),
    )
}

fn not_found(code: &str, what: &str) -> ApiError {
    ApiError::new(404, code, format!("The specified {what} does not exist."))
}

fn incorrect_instance_status() -> ApiError {
    ApiError::new(
        403,
        "IncorrectInstanceStatus",
        "The current status of the resource does not support this operation.",
    )
}

fn incorrect_disk_status() -> ApiError {
    ApiError::new(
        403,
        "IncorrectDiskStatus",
        "The current disk status does not support this operation.",
    )
}

fn dry_run_passed() -> ApiError {
    ApiError::new(
        400,
        "DryRunOperation",
        "Request validation has been passed with DryRun flag set.",
    )
}

fn check_locks(locks: &[String]) -> Result<(), ApiError> {
    for l in locks {
        if l.eq_ignore_ascii_case("security") {
            return Err(ApiError::new(
                403,
                "InstanceLockedForSecurity",
                "The instance is locked due to security.",
            ));
        }
        if l.eq_ignore_ascii_case("financial") {
            return Err(ApiError::new(
                403,
                "InstanceExpiredOrInArrears",
                "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).",
            ));
        }
    }
    Ok(())
}

fn tag_list(tags: &BTreeMap<String, String>) -> Value {
    json!({ "Tag": tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>() })
}

fn minutes(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

fn seconds(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Pages a sorted list: returns the page and the next token (empty on the last page).
fn page(items: Vec<Value>, req: &Req, max: usize) -> Result<(Vec<Value>, String), ApiError> {
    let start = match req.get("NextToken") {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("sim-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| invalid("NextToken"))?,
    };
    let end = (start + max).min(items.len());
    let next = if end < items.len() {
        format!("sim-{end}")
    } else {
        String::new()
    };
    Ok((items[start..end].to_vec(), next))
}

pub struct World {
    instances: BTreeMap<String, SimInstance>,
    disks: BTreeMap<String, SimDisk>,
    snapshots: BTreeMap<String, SimSnapshot>,
    pub timings: Timings,
    pub max_tags: usize,
    started: Instant,
    events: Vec<Event>,
    /// CreateSnapshot's `ClientToken`s: token -> (the call's parameters, the snapshot made).
    client_tokens: BTreeMap<String, (String, String)>,
    created_snapshots: u64,
    /// When the call being applied arrived (what a lagging tag read is measured from).
    now: Instant,
}

/// Manual snapshots a disk may have (CreateSnapshot doc: "has reached 256").
pub const MAX_MANUAL_SNAPSHOTS: usize = 256;

impl World {
    pub fn new(fleet: &FleetSpec, timings: Timings) -> Result<Self, String> {
        let now = Utc::now();
        let mut w = World {
            instances: BTreeMap::new(),
            disks: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            timings,
            max_tags: 20,
            started: Instant::now(),
            events: Vec::new(),
            client_tokens: BTreeMap::new(),
            created_snapshots: 0,
            now: Instant::now(),
        };
        for i in &fleet.instances {
            if !matches!(i.status.as_str(), "Running" | "Stopped") {
                return Err(format!(
                    "instance {}: status must be Running or Stopped",
                    i.id
                ));
            }
            w.instances.insert(
                i.id.clone(),
                SimInstance {
                    spec: i.clone(),
                    status: i.status.clone(),
                    stopped_mode: if i.status == "Stopped" {
                        "KeepCharging".into()
                    } else {
                        String::new()
                    },
                    transition: None,
                    created: now - chrono::Duration::days(30),
                    started: now - chrono::Duration::days(30),
                },
            );
        }
        for d in &fleet.disks {
            if let Some(i) = &d.instance_id {
                if !w.instances.contains_key(i) {
                    return Err(format!("disk {}: unknown instance {i}", d.id));
                }
            }
            w.disks.insert(
                d.id.clone(),
                SimDisk {
                    spec: d.clone(),
                    reset: None,
                    content: "original".into(),
                    resets: 0,
                    created: now - chrono::Duration::days(30),
                    tag_versions: Vec::new(),
                },
            );
        }
        for s in &fleet.snapshots {
            if !w.disks.contains_key(&s.disk_id) {
                return Err(format!("snapshot {}: unknown disk {}", s.id, s.disk_id));
            }
            let created = match &s.created_at {
                Some(t) => DateTime::parse_from_rfc3339(t)
                    .map_err(|e| format!("snapshot {}: createdAt {t:?}: {e}", s.id))?
                    .with_timezone(&Utc),
                None => now - chrono::Duration::seconds((s.age_hours * 3600.0) as i64),
            };
            w.snapshots.insert(
                s.id.clone(),
                SimSnapshot {
                    spec: s.clone(),
                    status: s.status.clone(),
                    ready_at: None,
                    created,
                    content: None,
                },
            );
        }
        Ok(w)
    }

    /// Completes every transition whose time has come.
    pub fn tick(&mut self, now: Instant) {
        for i in self.instances.values_mut() {
            if let Some((to, at)) = &i.transition {
                if now >= *at {
                    i.status = to.clone();
                    i.transition = None;
                }
            }
        }
        for d in self.disks.values_mut() {
            if let Some((snap, at)) = &d.reset {
                if now >= *at {
                    d.content = snap.clone();
                    d.reset = None;
                }
            }
        }
        for s in self.snapshots.values_mut() {
            if let Some(at) = s.ready_at {
                if now >= at {
                    s.status = "accomplished".into();
                    s.ready_at = None;
                }
            }
        }
    }

    fn record(&mut self, action: &str, resource: &str, detail: String, instance_status: String) {
        let seq = self.events.len() as u64 + 1;
        self.events.push(Event {
            seq,
            at_ms: self.started.elapsed().as_millis() as u64,
            action: action.into(),
            resource: resource.into(),
            detail,
            instance_status,
        });
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    fn region_ok(region: Option<&str>, of: &str) -> bool {
        region.is_none_or(|r| r == of)
    }

    fn check_region(req: &Req, required: bool) -> Result<Option<String>, ApiError> {
        match req.get("RegionId") {
            None | Some("") if required => Err(ApiError::new(
                400,
                "MissingParameter",
                "The input parameter \"RegionId\" that is mandatory for processing this request is not supplied.",
            )),
            None | Some("") => Ok(None),
            Some(r) => {
                let ok = r.len() <= 64
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if ok {
                    Ok(Some(r.to_owned()))
                } else {
                    Err(ApiError::new(
                        400,
                        "InvalidRegionId.MalFormed",
                        "The specified RegionId is not valid",
                    ))
                }
            }
        }
    }

    /// Applies one ECS action. `Ok` is the success body (without RequestId).
    pub fn apply(&mut self, action: &str, req: &Req, now: Instant) -> Result<Value, ApiError> {
        self.tick(now);
        self.now = now;
        match action {
            "DescribeInstances" => self.describe_instances(req),
            "DescribeDisks" => self.describe_disks(req),
            "DescribeSnapshots" => self.describe_snapshots(req),
            "StopInstance" => self.stop_instance(req, now),
            "StartInstance" => self.start_instance(req, now),
            "ResetDisk" => self.reset_disk(req, now),
            "CreateSnapshot" => self.create_snapshot(req, now),
            "TagResources" => self.tag_resources(req),
            "UntagResources" => self.untag_resources(req),
            "ListTagResources" => self.list_tag_resources(req),
            _ => Err(ApiError::new(
                404,
                "InvalidAction.NotFound",
                format!("Specified api is not found, please check your url and method. ({action})"),
            )),
        }
    }

    fn instance_json(&self, i: &SimInstance) -> Value {
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

    fn describe_instances(&self, req: &Req) -> Result<Value, ApiError> {
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

    fn disk_status(&self, d: &SimDisk) -> String {
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

    fn disk_json(&self, d: &SimDisk) -> Value {
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
            "Status": self.disk_status(d),
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

    /// A disk's tags as a read sees them now: `tag_read_lag_ms` ago.
    fn disk_tags_seen<'d>(&self, d: &'d SimDisk) -> &'d BTreeMap<String, String> {
        let lag = Duration::from_millis(self.timings.tag_read_lag_ms);
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
    fn disk_tags_changed(&mut self, id: &str, before: BTreeMap<String, String>) {
        let lag = Duration::from_millis(self.timings.tag_read_lag_ms);
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

    fn describe_disks(&self, req: &Req) -> Result<Value, ApiError> {
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

    fn snapshot_json(&self, s: &SimSnapshot) -> Value {
        let disk = self.disks.get(&s.spec.disk_id);
        let done = s.status == "accomplished";
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
            "Available": done,
            "InstantAccess": false,
            "Category": "standard",
            "SnapshotType": "user",
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

    fn describe_snapshots(&self, req: &Req) -> Result<Value, ApiError> {
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

    fn find_instance(&self, req: &Req) -> Result<String, ApiError> {
        let region = Self::check_region(req, false)?;
        let id = req.required("InstanceId")?;
        match self.instances.get(id) {
            Some(i) if Self::region_ok(region.as_deref(), &i.spec.region) => Ok(id.to_owned()),
            _ => Err(not_found("InvalidInstanceId.NotFound", "InstanceId")),
        }
    }

    fn stop_instance(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
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

    fn start_instance(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
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

    fn reset_disk(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
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
                return Err(ApiError::new(
                    404,
                    "InvalidSnapshotId.NotFound",
                    "The specified SnapshotId does not exist.",
                ))
            }
        };
        if snap.spec.disk_id != disk_id {
            return Err(ApiError::new(
                403,
                "InvalidParameter.Mismatch",
                "The specified snapshot is not created from the specified disk.",
            ));
        }
        if snap.status != "accomplished" {
            return Err(ApiError::new(
                403,
                "InvalidSnapshotId.NotReady",
                "The specified snapshot has not completed yet.",
            ));
        }
        if disk.reset.is_some() {
            return Err(ApiError::new(
                403,
                "InvalidOperation.DiskResetInProgress",
                "The operation is not allowed because the disk has an ongoing reset task, please try again later.",
            ));
        }
        let unfinished = self
            .snapshots
            .values()
            .any(|s| s.spec.disk_id == disk_id && s.status == "progressing");
        if unfinished {
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
    fn disk_operable(&self, disk: &SimDisk, allowed: &[&str]) -> Result<String, ApiError> {
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

    /// CreateSnapshot, with the rules its doc lists: the disk `In_use` or `Available`, its
    /// instance `Running` or `Stopped` and not locked for security, no snapshot of the disk in
    /// progress, fewer than 256 manual snapshots; the name 2 to 128 characters starting with a
    /// letter and not with `http://`, `https://` or `auto`; the description 2 to 256 characters.
    /// A `ClientToken` seen before with the same parameters returns the same snapshot; with
    /// others, `IdempotentParameterMismatch`. The snapshot is `progressing` for `snapshot_ms`.
    fn create_snapshot(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
        let region = Self::check_region(req, false)?;
        let disk_id = req.required("DiskId")?.to_owned();
        let name = req.get("SnapshotName").unwrap_or("").to_owned();
        let description = req.get("Description").unwrap_or("").to_owned();
        let tags = req.tags()?;
        // UNCONFIRMED codes: the CreateSnapshot error table is not in the reference; these
        // follow the ECS naming of the same checks elsewhere.
        if !name.is_empty() {
            let lower = name.to_ascii_lowercase();
            let ok = (2..=128).contains(&name.chars().count())
                && name.chars().next().is_some_and(|c| c.is_alphabetic())
                && !lower.starts_with("http://")
                && !lower.starts_with("https://")
                && !lower.starts_with("auto");
            if !ok {
                return Err(ApiError::new(
                    400,
                    "InvalidSnapshotName.Malformed",
                    "Specified snapshot name is not valid.",
                ));
            }
        }
        if !description.is_empty() {
            let lower = description.to_ascii_lowercase();
            if !(2..=256).contains(&description.chars().count())
                || lower.starts_with("http://")
                || lower.starts_with("https://")
            {
                return Err(ApiError::new(
                    400,
                    "InvalidDescription.Malformed",
                    "Specified description is not valid.",
                ));
            }
        }
        let token = req.get("ClientToken").filter(|t| !t.is_empty());
        if let Some(t) = token {
            if t.len() > 64 || !t.is_ascii() {
                return Err(invalid("ClientToken"));
            }
        }
        let fingerprint = format!("{disk_id}|{name}|{description}|{tags:?}");
        if let Some(t) = token {
            if let Some((seen, id)) = self.client_tokens.get(t) {
                if *seen != fingerprint {
                    return Err(ApiError::new(
                        400,
                        "IdempotentParameterMismatch",
                        "The request uses the same client token as a previous, but non-identical request.",
                    ));
                }
                return Ok(json!({"SnapshotId": id}));
            }
        }
        let disk = match self.disks.get(&disk_id) {
            Some(d) if Self::region_ok(region.as_deref(), &d.spec.region) => d,
            _ => return Err(not_found("InvalidDiskId.NotFound", "disk")),
        };
        if disk.reset.is_some() {
            // UNCONFIRMED: a snapshot while the disk is being reset is refused as a disk status.
            return Err(incorrect_disk_status());
        }
        let instance_status = self.disk_operable(disk, &["Running", "Stopped"])?;
        let of_disk = || {
            self.snapshots
                .values()
                .filter(|s| s.spec.disk_id == disk_id)
        };
        if of_disk().any(|s| s.status == "progressing") {
            return Err(ApiError::new(
                403,
                "IncorrectDiskStatus.HasUnfinishedSnapshot",
                "The current disk has unfinished snapshot.",
            ));
        }
        if of_disk().count() >= MAX_MANUAL_SNAPSHOTS {
            return Err(ApiError::new(
                403,
                "QuotaExceed.Snapshot",
                "The snapshot quota of the disk is exceeded.",
            ));
        }
        let content = disk.content.clone();
        self.created_snapshots += 1;
        let id = format!(
            "s-sim{:012x}{:04}",
            self.started.elapsed().as_nanos() as u64 & 0xffff_ffff_ffff,
            self.created_snapshots % 10_000
        );
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
                },
                status: "progressing".into(),
                ready_at: Some(now + Duration::from_millis(self.timings.snapshot_ms)),
                created: Utc::now(),
                content: Some(content),
            },
        );
        if let Some(t) = token {
            self.client_tokens
                .insert(t.to_owned(), (fingerprint, id.clone()));
        }
        self.record(
            "CreateSnapshot",
            &disk_id,
            format!("SnapshotId={id}"),
            instance_status,
        );
        Ok(json!({"SnapshotId": id}))
    }

    fn tags_of(
        &mut self,
        rtype: &str,
        id: &str,
        region: &str,
    ) -> Option<&mut BTreeMap<String, String>> {
        match rtype {
            "instance" => self
                .instances
                .get_mut(id)
                .filter(|i| i.spec.region == region)
                .map(|i| &mut i.spec.tags),
            "disk" => self
                .disks
                .get_mut(id)
                .filter(|d| d.spec.region == region)
                .map(|d| &mut d.spec.tags),
            "snapshot" => {
                let region_ok = self
                    .snapshots
                    .get(id)
                    .is_some_and(|s| s.spec.region_of(self) == region);
                self.snapshots
                    .get_mut(id)
                    .filter(|_| region_ok)
                    .map(|s| &mut s.spec.tags)
            }
            _ => None,
        }
    }

    fn resource_type(req: &Req) -> Result<String, ApiError> {
        let t = req.required("ResourceType")?;
        match t.to_ascii_lowercase().as_str() {
            t @ ("instance" | "disk" | "snapshot") => Ok(t.to_owned()),
            _ => Err(ApiError::new(
                400,
                "InvalidResourceType.NotSupported",
                "The specified resource type is not supported.",
            )),
        }
    }

    fn resource_ids(req: &Req) -> Result<Vec<String>, ApiError> {
        let ids = req.repeat_list("ResourceId", 50)?;
        if ids.is_empty() {
            return Err(ApiError::new(
                400,
                "MissingParameter",
                "The input parameter \"ResourceId\" that is mandatory for processing this request is not supplied.",
            ));
        }
        Ok(ids)
    }

    fn tag_resources(&mut self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?.unwrap_or_default();
        let rtype = Self::resource_type(req)?;
        let ids = Self::resource_ids(req)?;
        let tags = req.tags()?;
        if tags.is_empty() {
            return Err(ApiError::new(
                400,
                "MissingParameter",
                "The input parameter \"Tag\" that is mandatory for processing this request is not supplied.",
            ));
        }
        for (k, v) in &tags {
            let lower = k.to_ascii_lowercase();
            if k.is_empty()
                || k.chars().count() > 128
                || lower.starts_with("aliyun")
                || lower.starts_with("acs:")
                || lower.contains("http://")
                || lower.contains("https://")
            {
                return Err(ApiError::new(
                    400,
                    "InvalidTagKey.Malformed",
                    "The specified Tag.n.Key is not valid.",
                ));
            }
            let vl = v.to_ascii_lowercase();
            if v.chars().count() > 128
                || vl.starts_with("aliyun")
                || vl.starts_with("acs:")
                || vl.contains("http://")
                || vl.contains("https://")
            {
                return Err(ApiError::new(
                    400,
                    "InvalidTagValue.Malformed",
                    "The specified Tag.n.Value is not valid.",
                ));
            }
        }
        // Check every resource before changing any.
        let max_tags = self.max_tags;
        for id in &ids {
            let Some(existing) = self.tags_of(&rtype, id, &region) else {
                return Err(not_found("InvalidResourceId.NotFound", "resource"));
            };
            let new_keys = tags
                .iter()
                .filter(|(k, _)| !existing.contains_key(k))
                .count();
            if existing.len() + new_keys > max_tags {
                // UNCONFIRMED code for the 20-tag quota.
                return Err(ApiError::new(
                    403,
                    "OperationDenied.QuotaExceed",
                    "The quota of tags on resource is beyond permitted range.",
                ));
            }
        }
        for id in &ids {
            let mut before = None;
            if let Some(existing) = self.tags_of(&rtype, id, &region) {
                before = Some(existing.clone());
                for (k, v) in &tags {
                    existing.insert(k.clone(), v.clone());
                }
            }
            if let (Some(before), "disk") = (before, rtype.as_str()) {
                self.disk_tags_changed(id, before);
            }
            let detail = tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            self.record("TagResources", id, detail, String::new());
        }
        Ok(json!({}))
    }

    fn untag_resources(&mut self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?.unwrap_or_default();
        let rtype = Self::resource_type(req)?;
        let ids = Self::resource_ids(req)?;
        let keys = req.repeat_list("TagKey", 20)?;
        let all = req.flag("All")?;
        if keys.is_empty() && !all {
            return Err(ApiError::new(
                400,
                "MissingParameter",
                "The input parameter \"TagKey\" that is mandatory for processing this request is not supplied.",
            ));
        }
        for id in &ids {
            if self.tags_of(&rtype, id, &region).is_none() {
                return Err(not_found("InvalidResourceId.NotFound", "resource"));
            }
        }
        for id in &ids {
            let mut before = None;
            if let Some(existing) = self.tags_of(&rtype, id, &region) {
                before = Some(existing.clone());
                if all && keys.is_empty() {
                    existing.clear();
                } else {
                    for k in &keys {
                        existing.remove(k);
                    }
                }
            }
            if let (Some(before), "disk") = (before, rtype.as_str()) {
                self.disk_tags_changed(id, before);
            }
            self.record("UntagResources", id, keys.join(" "), String::new());
        }
        Ok(json!({}))
    }

    fn list_tag_resources(&mut self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?.unwrap_or_default();
        let rtype = Self::resource_type(req)?;
        let ids = req.repeat_list("ResourceId", 50)?;
        let filter = req.tags()?;
        let mut rows = Vec::new();
        let candidates: Vec<String> = if ids.is_empty() {
            match rtype.as_str() {
                "instance" => self.instances.keys().cloned().collect(),
                "disk" => self.disks.keys().cloned().collect(),
                _ => self.snapshots.keys().cloned().collect(),
            }
        } else {
            ids
        };
        for id in candidates {
            let lagged = match (rtype.as_str(), self.disks.get(&id)) {
                ("disk", Some(d)) if d.spec.region == region => {
                    Some(self.disk_tags_seen(d).clone())
                }
                _ => None,
            };
            let tags = match lagged {
                Some(t) => t,
                None => match self.tags_of(&rtype, &id, &region) {
                    Some(t) => t.clone(),
                    None => continue,
                },
            };
            if !filter.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                continue;
            }
            for (k, v) in tags.iter() {
                rows.push(
                    json!({"ResourceType": rtype, "ResourceId": id, "TagKey": k, "TagValue": v}),
                );
            }
        }
        let (items, next) = page(rows, req, 50)?;
        Ok(json!({"NextToken": next, "TagResources": {"TagResource": items}}))
    }

    /// The whole world as JSON, for tests and `GET /_sim/state`.
    pub fn state(&mut self, now: Instant) -> Value {
        self.tick(now);
        let instances: Vec<Value> = self
            .instances
            .values()
            .map(|i| {
                json!({"id": i.spec.id, "status": i.status, "stoppedMode": i.stopped_mode,
                       "tags": i.spec.tags, "locks": i.spec.locks})
            })
            .collect();
        let disks: Vec<Value> = self
            .disks
            .values()
            .map(|d| {
                json!({"id": d.spec.id, "instanceId": d.spec.instance_id, "status": self.disk_status(d),
                       "resetting": d.reset.is_some(), "content": d.content, "resets": d.resets,
                       "tags": d.spec.tags})
            })
            .collect();
        let snapshots: Vec<Value> = self
            .snapshots
            .values()
            .map(|s| {
                json!({"id": s.spec.id, "diskId": s.spec.disk_id, "status": s.status,
                       "name": s.spec.name, "tags": s.spec.tags, "content": s.content})
            })
            .collect();
        json!({"instances": instances, "disks": disks, "snapshots": snapshots, "events": self.events})
    }

    /// Test and scenario hooks.
    /// Detaches a disk from its instance (as DetachDisk would): it becomes `Available`.
    pub fn detach_disk(&mut self, id: &str) -> bool {
        match self.disks.get_mut(id) {
            Some(d) => {
                d.spec.instance_id = None;
                true
            }
            None => false,
        }
    }

    pub fn set_instance_locks(&mut self, id: &str, locks: Vec<String>) -> bool {
        self.instances
            .get_mut(id)
            .map(|i| i.spec.locks = locks)
            .is_some()
    }

    pub fn set_snapshot_progressing(&mut self, id: &str, now: Instant) -> bool {
        let ms = self.timings.snapshot_ms;
        self.snapshots
            .get_mut(id)
            .map(|s| {
                s.status = "progressing".into();
                s.ready_at = Some(now + Duration::from_millis(ms));
            })
            .is_some()
    }
}

impl SnapshotSpec {
    /// A snapshot lives in the region of its source disk.
    fn region_of(&self, w: &World) -> String {
        w.disks
            .get(&self.disk_id)
            .map(|d| d.spec.region.clone())
            .unwrap_or_default()
    }
}

/// The fleet the simulator starts with when no scenario says otherwise, and that the sample
/// events in `events/` refer to. All in `cn-hangzhou`.
pub fn default_fleet() -> FleetSpec {
    let opt_in: BTreeMap<String, String> =
        [("ecs-rollback".to_owned(), "enabled".to_owned())].into();
    let inst =
        |id: &str, name: &str, status: &str, tags: &BTreeMap<String, String>, locks: &[&str]| {
            InstanceSpec {
                id: id.into(),
                region: default_region(),
                name: name.into(),
                status: status.into(),
                locks: locks.iter().map(|s| (*s).to_owned()).collect(),
                tags: tags.clone(),
                no_stock: false,
            }
        };
    let disk = |id: &str, instance: &str, kind: &str, tags: &BTreeMap<String, String>| DiskSpec {
        id: id.into(),
        region: default_region(),
        name: String::new(),
        instance_id: Some(instance.into()),
        disk_type: kind.into(),
        size: if kind == "system" { 40 } else { 100 },
        category: None,
        locks: vec![],
        tags: tags.clone(),
    };
    // Fixed dates, not "hours ago": sample events with fixed trigger times keep finding a
    // snapshot taken before them.
    let snap =
        |id: &str, disk: &str, name: &str, created: &str, tags: &[(&str, &str)]| SnapshotSpec {
            id: id.into(),
            disk_id: disk.into(),
            name: name.into(),
            status: "accomplished".into(),
            age_hours: 0.0,
            created_at: Some(created.into()),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
    let none = BTreeMap::new();
    FleetSpec {
        instances: vec![
            // Running, opted in on the instance: the main demo target.
            inst("i-bp1webapp00000001", "web-01", "Running", &opt_in, &[]),
            // Stopped, opted in on its disk.
            inst("i-bp1batch000000002", "batch-02", "Stopped", &none, &[]),
            // Running, not opted in: every rollback is refused.
            inst("i-bp1legacy00000003", "legacy-03", "Running", &none, &[]),
            // Opted in but locked for security: refused.
            inst(
                "i-bp1locked00000004",
                "locked-04",
                "Running",
                &opt_in,
                &["security"],
            ),
        ],
        disks: vec![
            disk(
                "d-bp1webapp0000sys01",
                "i-bp1webapp00000001",
                "system",
                &none,
            ),
            disk("d-bp1webapp0000dat01", "i-bp1webapp00000001", "data", &none),
            disk(
                "d-bp1batch00000sys02",
                "i-bp1batch000000002",
                "system",
                &opt_in,
            ),
            disk(
                "d-bp1legacy0000sys03",
                "i-bp1legacy00000003",
                "system",
                &none,
            ),
            disk(
                "d-bp1locked0000sys04",
                "i-bp1locked00000004",
                "system",
                &none,
            ),
        ],
        snapshots: vec![
            snap(
                "s-bp1webapp0sys00001",
                "d-bp1webapp0000sys01",
                "web-01-weekly",
                "2026-11-20T02:00:00Z",
                &[],
            ),
            snap(
                "s-bp1webapp0sys00002",
                "d-bp1webapp0000sys01",
                "before-release-42",
                "2026-11-26T10:00:00Z",
                &[("purpose", "pre-release")],
            ),
            snap(
                "s-bp1webapp0sys00003",
                "d-bp1webapp0000sys01",
                "web-01-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
            snap(
                "s-bp1webapp0dat00001",
                "d-bp1webapp0000dat01",
                "web-01-data-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
            snap(
                "s-bp1batch00sys00001",
                "d-bp1batch00000sys02",
                "batch-02-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
            snap(
                "s-bp1legacy0sys00001",
                "d-bp1legacy0000sys03",
                "legacy-03-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
            snap(
                "s-bp1locked0sys00001",
                "d-bp1locked0000sys04",
                "locked-04-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
        ],
    }
}
