//! The simulated ECS region(s): instances, disks, snapshots and tags, and the documented rules
//! of each call. Transitions (Stopping → Stopped, Starting → Running, a reset in progress,
//! a snapshot being taken) complete lazily, when the world is next looked at.
//!
//! Error codes and HTTP statuses follow `shared/reference/ResetDisk-api.md`, `ecs-api.md` §5
//! and `ecs-evidence.md` (public primary sources, each with a confidence). Every rule that
//! answers an error names its source in a `Source:` comment, or says UNCONFIRMED where no
//! source was found; `tests::every_rule_names_its_source` holds that, and counts the guesses.
//! The guesses that matter most:
//! - the disk status during a reset (a scenario option, unchanged by default: ecs-evidence §1);
//! - StartInstance while a disk of the instance is being reset: 403 `DiskError`;
//! - how long a `ClientToken` stays "still processing";
//! - Cloud Assistant (`assistant.rs`, facts from ecs-snapshot-groups-and-cloud-assistant.md §3):
//!   how long after Running the agent is ready, how long a command runs, and the codes of
//!   RunCommand's refusals (`InvalidParameter`, `IncorrectInstanceStatus`, as for other calls).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ApiError;

mod assistant;
mod disks;
mod fleet;
mod groups;
mod instances;
mod request;
mod snapshots;
mod tags;

pub use assistant::{encode_output, AssistantSpec, MAX_OUTPUT};
pub use fleet::{
    default_fleet, DiskSpec, FleetSpec, InstanceSpec, SnapshotGroupMemberSpec, SnapshotGroupSpec,
    SnapshotSpec,
};
pub use request::Req;
use request::*;

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
    /// How long after a CreateSnapshot a repeat with its `ClientToken` answers 403
    /// `IdempotentProcessing` ("The previous idempotent request(s) is still processing.",
    /// ecs-evidence.md §3). The code is documented; this length is UNCONFIRMED.
    pub client_token_processing_ms: u64,
    /// Tag reads' lag per API (`DescribeDisks`, `ListTagResources`), over `tag_read_lag_ms`:
    /// the two reads need not lag alike.
    pub tag_read_lag_by_action: BTreeMap<String, u64>,
    /// How far DescribeDisks' `Status` lags a reset: it shows the status as it was this long
    /// ago (with `reset_disk_status`), so a short reset may never show, or show late.
    pub reset_status_lag_ms: u64,
    /// What ResetDisk's DryRun answers while a reset runs. `None`: 403
    /// `InvalidOperation.DiskResetInProgress` (inferred, ecs-evidence.md §7); `"pass"`: it
    /// passes (a DryRun that does not check resets); any other: that code, with 403.
    pub reset_dry_run: Option<String>,
    /// How long after an instance reads Running its Cloud Assistant agent reports ready (and
    /// its simulated service answers): "some seconds" (ecs-snapshot-groups-and-cloud-assistant.md §3).
    pub agent_ready_ms: u64,
    /// How long a Cloud Assistant command runs once delivered.
    pub command_ms: u64,
    /// How long an invocation waits for an agent before `Aborted` / `DeliveryTimeout` (§3: one
    /// minute).
    pub delivery_timeout_ms: u64,
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
            client_token_processing_ms: 300,
            tag_read_lag_by_action: BTreeMap::new(),
            reset_status_lag_ms: 0,
            reset_dry_run: None,
            agent_ready_ms: 5000,
            command_ms: 1000,
            delivery_timeout_ms: 60_000,
        }
    }
}

impl Timings {
    /// Short transitions for tests.
    pub fn fast() -> Self {
        Self {
            stop_ms: 40,
            start_ms: 40,
            // A reset must run long enough to be seen running (the only evidence of its end
            // for an instance that stays stopped): on a loaded machine 60 ms could pass between
            // its acceptance and the first read. Real resets take seconds to minutes.
            reset_ms: 300,
            snapshot_ms: 60,
            reset_disk_status: None,
            tag_read_lag_ms: 0,
            client_token_processing_ms: 20,
            tag_read_lag_by_action: BTreeMap::new(),
            reset_status_lag_ms: 0,
            reset_dry_run: None,
            agent_ready_ms: 100,
            command_ms: 50,
            delivery_timeout_ms: 1500,
        }
    }
}

/// Disk categories whose snapshots have instant access by default: "Instant access is enabled by
/// default when you create a snapshot for an ESSD series disk" (ecs-evidence.md §3, IA 2026).
/// `cloud_essd` is named; AutoPL (`cloud_auto`) and Entry (`cloud_essd_entry`) are counted as
/// ESSD series by their product names (Medium). A disk without a category is `cloud_essd`, the
/// default category.
pub fn has_instant_access(category: Option<&str>) -> bool {
    matches!(
        category.unwrap_or("cloud_essd"),
        "cloud_essd" | "cloud_auto" | "cloud_essd_entry"
    )
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
    /// When it last became Running (what its Cloud Assistant agent counts from).
    up_since: Option<Instant>,
}

#[derive(Clone, Debug)]
struct SimDisk {
    spec: DiskSpec,
    /// (snapshot, done at) of a reset in progress.
    reset: Option<(String, Instant)>,
    /// When the last reset began and ends (kept after it ended, for a status read that lags).
    reset_window: Option<(Instant, Instant)>,
    /// What the disk holds: `original`, or the snapshot it was last reset to.
    content: String,
    resets: u32,
    created: DateTime<Utc>,
    /// Attached to an instance at some time (the fleet's disks with an instance, and those
    /// detached since): an `Available` disk may join a snapshot-consistent group only then.
    ever_attached: bool,
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

/// A snapshot-consistent group: its member snapshots live in `World::snapshots` (a member
/// deleted since is left out of the answers).
#[derive(Clone, Debug)]
struct SimGroup {
    id: String,
    region: String,
    name: String,
    description: String,
    /// Set only when every member came from this one instance.
    instance_id: Option<String>,
    /// Pinned by a scenario; `None`: the members' statuses decide.
    status: Option<String>,
    created: DateTime<Utc>,
    members: Vec<String>,
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
    /// The access key that signed the call.
    pub caller: String,
}

pub struct World {
    instances: BTreeMap<String, SimInstance>,
    disks: BTreeMap<String, SimDisk>,
    snapshots: BTreeMap<String, SimSnapshot>,
    /// Snapshot-consistent groups by ID.
    groups: BTreeMap<String, SimGroup>,
    /// Key pairs (`<region>/<name>` -> tags): only their tags are served. Every region of the
    /// fleet has `ecs-rollback-control`, the resource the pause switch and the caps are kept on.
    key_pairs: BTreeMap<String, BTreeMap<String, String>>,
    pub timings: Timings,
    pub max_tags: usize,
    started: Instant,
    events: Vec<Event>,
    /// The `ClientToken`s of CreateSnapshot and CreateSnapshotGroup: `<action>|<token>` ->
    /// (the call's parameters, what it made, when it was first asked).
    client_tokens: BTreeMap<String, (String, String, Instant)>,
    /// StopInstance without `StoppedMode` stops with `StopCharging` (`Scenario::economical_mode`).
    pub economical_mode: bool,
    created_snapshots: u64,
    /// When the call being applied arrived (what a lagging tag read is measured from).
    now: Instant,
    /// The action being applied (whose tag-read lag applies).
    action: String,
    /// Cloud Assistant: agents, invocations, the scenario's bad snapshots and addresses.
    assistant: assistant::Assistant,
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
            groups: BTreeMap::new(),
            key_pairs: BTreeMap::new(),
            timings,
            max_tags: 20,
            started: Instant::now(),
            events: Vec::new(),
            client_tokens: BTreeMap::new(),
            economical_mode: false,
            created_snapshots: 0,
            now: Instant::now(),
            action: String::new(),
            assistant: assistant::Assistant::default(),
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
                    // Up long before the world began: its agent is ready.
                    up_since: (i.status == "Running").then(|| {
                        let now = Instant::now();
                        now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
                    }),
                },
            );
        }
        for region in fleet.instances.iter().map(|i| i.region.clone()) {
            w.key_pairs
                .entry(format!("{region}/ecs-rollback-control"))
                .or_default();
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
                    reset_window: None,
                    content: "original".into(),
                    resets: 0,
                    created: now - chrono::Duration::days(30),
                    ever_attached: d.instance_id.is_some(),
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
        for g in &fleet.snapshot_groups {
            w.add_group(g, now)?;
        }
        Ok(w)
    }

    /// Completes every transition whose time has come.
    pub fn tick(&mut self, now: Instant) {
        for i in self.instances.values_mut() {
            if let Some((to, at)) = &i.transition {
                if now >= *at {
                    if to == "Running" {
                        i.up_since = Some(*at);
                    }
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
            caller: String::new(),
        });
    }

    /// Names the caller of the events recorded from `from` on (the call just applied).
    pub fn set_caller(&mut self, from: usize, caller: &str) {
        for e in self.events.iter_mut().skip(from) {
            e.caller = caller.to_owned();
        }
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    fn region_ok(region: Option<&str>, of: &str) -> bool {
        region.is_none_or(|r| r == of)
    }

    fn check_region(req: &Req, required: bool) -> Result<Option<String>, ApiError> {
        match req.get("RegionId") {
            // Source: ecs-api.md §5.2 (400 MissingParameter).
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
                    // Source: ecs-api.md §5.3 (400 InvalidRegionId.MalFormed).
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
        self.action = action.to_owned();
        match action {
            "DescribeInstances" => self.describe_instances(req),
            "DescribeDisks" => self.describe_disks(req),
            "DescribeSnapshots" => self.describe_snapshots(req),
            "StopInstance" => self.stop_instance(req, now),
            "StartInstance" => self.start_instance(req, now),
            "ResetDisk" => self.reset_disk(req, now),
            "CreateSnapshot" => self.create_snapshot(req, now),
            "CreateSnapshotGroup" => self.create_snapshot_group(req, now),
            "DescribeSnapshotGroups" => self.describe_snapshot_groups(req),
            "TagResources" => self.tag_resources(req),
            "UntagResources" => self.untag_resources(req),
            "ListTagResources" => self.list_tag_resources(req),
            "DescribeCloudAssistantStatus" => self.describe_cloud_assistant_status(req, now),
            "RunCommand" => self.run_command(req, now),
            "DescribeInvocations" => self.describe_invocations(req, now),
            "DescribeInvocationResults" => self.describe_invocation_results(req, now),
            // UNCONFIRMED: the gateway's answer to an unknown action is not in the reference.
            _ => Err(ApiError::new(
                404,
                "InvalidAction.NotFound",
                format!("Specified api is not found, please check your url and method. ({action})"),
            )),
        }
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
        let groups: Vec<Value> = self
            .groups
            .values()
            .map(|g| {
                json!({"id": g.id, "name": g.name, "status": self.group_status(g),
                       "instanceId": g.instance_id, "members": g.members})
            })
            .collect();
        json!({"instances": instances, "disks": disks, "snapshots": snapshots,
               "snapshotGroups": groups, "events": self.events})
    }

    /// The scenario's Cloud Assistant (bad snapshots, agents that never come up, addresses).
    pub fn set_assistant(&mut self, spec: AssistantSpec) {
        self.assistant = assistant::Assistant::new(spec);
    }

    /// Test and scenario hooks.
    /// Detaches a disk from its instance (as DetachDisk would): it becomes `Available`.
    pub fn detach_disk(&mut self, id: &str) -> bool {
        match self.disks.get_mut(id) {
            Some(d) => {
                d.ever_attached |= d.spec.instance_id.is_some();
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

    /// Deletes a snapshot (as DeleteSnapshot would): a group it was a member of lists the rest.
    pub fn delete_snapshot(&mut self, id: &str) -> bool {
        self.snapshots.remove(id).is_some()
    }

    /// Fails a snapshot (`failed`, no longer usable), e.g. one member of a group.
    pub fn fail_snapshot(&mut self, id: &str) -> bool {
        self.snapshots
            .get_mut(id)
            .map(|s| {
                s.status = "failed".into();
                s.ready_at = None;
            })
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

/// One test per rule, each naming where the rule comes from (`shared/reference/`), or that it
/// is a guess (UNCONFIRMED). The end-to-end tests trust these rules; here they are held alone.
#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn world() -> World {
        world_of(&default_fleet())
    }

    pub(super) fn world_of(fleet: &FleetSpec) -> World {
        // Resets and snapshots outlast any stall of a loaded machine between two calls; stops
        // and starts are quick (and waited out with a sleep longer than they take).
        let timings = Timings {
            reset_ms: 600_000,
            snapshot_ms: 600_000,
            ..Timings::fast()
        };
        World::new(fleet, timings).expect("the fleet")
    }

    /// One call at a given moment (the world's clock is the caller's).
    pub(super) fn call_at(
        w: &mut World,
        action: &str,
        params: &[(&str, &str)],
        at: Instant,
    ) -> Result<Value, ApiError> {
        let mut p: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        p.entry("RegionId".into()).or_insert("cn-hangzhou".into());
        w.apply(action, &Req { params: &p }, at)
    }

    pub(super) fn call(
        w: &mut World,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        call_at(w, action, params, Instant::now())
    }

    pub(super) fn code(r: Result<Value, ApiError>) -> (u16, String) {
        match r {
            Ok(v) => panic!("accepted: {v}"),
            Err(e) => (e.status, e.code),
        }
    }

    const WEB: &str = "i-bp1webapp00000001";
    const WEB_SYS: &str = "d-bp1webapp0000sys01";
    const SNAP: &str = "s-bp1webapp0sys00002";
    const OTHER_DISKS_SNAP: &str = "s-bp1batch00sys00001";

    fn stop_web(w: &mut World) {
        call(w, "StopInstance", &[("InstanceId", WEB)]).expect("stop");
        std::thread::sleep(Duration::from_millis(60));
    }

    #[test]
    fn reset_disk_needs_the_instance_stopped() {
        // ResetDisk-api.md: "the instance must be in the Stopped state"; 403 IncorrectInstanceStatus.
        let mut w = world();
        let r = call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", SNAP)],
        );
        assert_eq!(code(r), (403, "IncorrectInstanceStatus".into()));
        stop_web(&mut w);
        call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", SNAP)],
        )
        .expect("reset");
        assert_eq!(
            w.events().last().map(|e| e.instance_status.as_str()),
            Some("Stopped")
        );
    }

    #[test]
    fn reset_disk_refuses_a_snapshot_of_another_disk_and_a_second_reset() {
        // ResetDisk-api.md error table: 403 InvalidParameter.Mismatch; ecs-evidence.md §1
        // (DOC-RESET): 403 InvalidOperation.DiskResetInProgress while one runs.
        let mut w = world();
        stop_web(&mut w);
        let r = call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", OTHER_DISKS_SNAP)],
        );
        assert_eq!(code(r), (403, "InvalidParameter.Mismatch".into()));
        call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", SNAP)],
        )
        .expect("reset");
        let r = call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", SNAP)],
        );
        assert_eq!(
            code(r),
            (403, "InvalidOperation.DiskResetInProgress".into())
        );
    }

    #[test]
    fn a_security_lock_refuses_state_changes() {
        // ResetDisk-api.md: 403 InstanceLockedForSecurity.
        let mut w = world();
        let r = call(
            &mut w,
            "StopInstance",
            &[("InstanceId", "i-bp1locked00000004")],
        );
        assert_eq!(code(r).1, "InstanceLockedForSecurity");
    }

    #[test]
    fn stop_instance_on_a_stopped_instance_is_incorrect_status() {
        // ecs-evidence.md C16: 403 IncorrectInstanceStatus (confirmed by a real error body).
        let mut w = world();
        let r = call(
            &mut w,
            "StopInstance",
            &[("InstanceId", "i-bp1batch000000002")],
        );
        assert_eq!(code(r), (403, "IncorrectInstanceStatus".into()));
    }

    #[test]
    fn start_instance_sets_start_time() {
        // ecs-api.md: DescribeInstances `StartTime`, the last start, to the minute.
        let mut w = world();
        stop_web(&mut w);
        let before = Utc::now();
        call(&mut w, "StartInstance", &[("InstanceId", WEB)]).expect("start");
        let v = call(
            &mut w,
            "DescribeInstances",
            &[("InstanceIds", &format!("[\"{WEB}\"]"))],
        )
        .expect("describe");
        let started = v["Instances"]["Instance"][0]["StartTime"]
            .as_str()
            .unwrap_or("");
        assert_eq!(started, minutes(before), "{v}");
    }

    #[test]
    fn start_instance_while_a_disk_resets_is_refused() {
        // UNCONFIRMED (ecs-evidence.md §1: the code is not documented): 403 DiskError.
        let mut w = world();
        stop_web(&mut w);
        call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", SNAP)],
        )
        .expect("reset");
        let r = call(&mut w, "StartInstance", &[("InstanceId", WEB)]);
        assert_eq!(code(r), (403, "DiskError".into()));
    }

    #[test]
    fn twenty_tags_at_most() {
        // ecs-api.md §5: 20 tags per resource; the code and status from ecs-evidence.md §2 (C1)
        // (OperationDenied.QuotaExceed, 400).
        let mut w = world();
        for i in 0..20 {
            let k = format!("k{i}");
            call(
                &mut w,
                "TagResources",
                &[
                    ("ResourceType", "disk"),
                    ("ResourceId.1", WEB_SYS),
                    ("Tag.1.Key", &k),
                    ("Tag.1.Value", "v"),
                ],
            )
            .expect("tag");
        }
        let r = call(
            &mut w,
            "TagResources",
            &[
                ("ResourceType", "disk"),
                ("ResourceId.1", WEB_SYS),
                ("Tag.1.Key", "k20"),
                ("Tag.1.Value", "v"),
            ],
        );
        // ecs-evidence.md §2, C1: 400.
        assert_eq!(code(r), (400, "OperationDenied.QuotaExceed".into()));
    }

    #[test]
    fn a_dry_run_passes_without_changing_anything() {
        // ResetDisk-api.md (DryRun): 400 DryRunOperation when the request would pass.
        let mut w = world();
        let r = call(
            &mut w,
            "StopInstance",
            &[("InstanceId", WEB), ("DryRun", "true")],
        );
        assert_eq!(code(r), (400, "DryRunOperation".into()));
        assert!(w.events().is_empty());
    }

    /// The default fleet with the web server's system disk of another category.
    fn world_with_category(category: &str) -> World {
        let mut fleet = default_fleet();
        for d in fleet.disks.iter_mut().filter(|d| d.id == WEB_SYS) {
            d.category = Some(category.into());
        }
        world_of(&fleet)
    }

    fn snapshot_row(w: &mut World, id: &str) -> Value {
        let ids = format!("[\"{id}\"]");
        let r = call(w, "DescribeSnapshots", &[("SnapshotIds", &ids)]).expect("describe");
        r["Snapshots"]["Snapshot"][0].clone()
    }

    #[test]
    fn reset_disk_waits_for_a_snapshot_in_progress() {
        // ResetDisk-api.md: 403 IncorrectDiskStatus.HasUnfinishedSnapshot (ecs-evidence.md:
        // confirmed for ResetDisk) and 403 InvalidSnapshotId.NotReady for the snapshot itself,
        // on a disk without instant access.
        let mut w = world_with_category("cloud_efficiency");
        stop_web(&mut w);
        assert!(w.set_snapshot_progressing(SNAP, Instant::now()));
        let row = snapshot_row(&mut w, SNAP);
        assert_eq!(
            (row["Available"].clone(), row["InstantAccess"].clone()),
            (json!(false), json!(false))
        );
        let r = call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", SNAP)],
        );
        assert_eq!(code(r), (403, "InvalidSnapshotId.NotReady".into()));
        let r = call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", "s-bp1webapp0sys00001")],
        );
        assert_eq!(
            code(r),
            (403, "IncorrectDiskStatus.HasUnfinishedSnapshot".into())
        );
    }

    #[test]
    fn an_essd_snapshot_in_progress_is_usable_for_a_rollback() {
        // ecs-evidence.md §3, C8 (IA): ESSD snapshots have instant access by default: Available
        // while progressing, usable "to roll back … disks even when the snapshot is being
        // created". Another snapshot in progress still blocks ResetDisk (the stricter reading).
        let mut w = world();
        stop_web(&mut w);
        assert!(w.set_snapshot_progressing(SNAP, Instant::now()));
        let row = snapshot_row(&mut w, SNAP);
        assert_eq!(row["Status"], "progressing");
        assert_eq!(
            (row["Available"].clone(), row["InstantAccess"].clone()),
            (json!(true), json!(true))
        );
        let r = call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", "s-bp1webapp0sys00001")],
        );
        assert_eq!(
            code(r),
            (403, "IncorrectDiskStatus.HasUnfinishedSnapshot".into())
        );
        call(
            &mut w,
            "ResetDisk",
            &[("DiskId", WEB_SYS), ("SnapshotId", SNAP)],
        )
        .expect("the snapshot itself rolls the disk back");
    }

    #[test]
    fn a_second_snapshot_waits_for_the_first() {
        // ecs-evidence.md §3, C2 (DOC-SNAP): 403 IncorrectDiskStatus.CreatingSnapshot "A previous
        // snapshot creation is in process." (HasUnfinishedSnapshot is ResetDisk's code).
        let mut w = world();
        call(&mut w, "CreateSnapshot", &[("DiskId", WEB_SYS)]).expect("first");
        let r = call(&mut w, "CreateSnapshot", &[("DiskId", WEB_SYS)]);
        assert_eq!(
            code(r),
            (403, "IncorrectDiskStatus.CreatingSnapshot".into())
        );
    }

    #[test]
    fn create_snapshot_answers_a_wrong_instance_status_with_400() {
        // ecs-evidence.md §3, C5: CreateSnapshot's table lists 400 IncorrectInstanceStatus.
        let mut w = world();
        call(&mut w, "StopInstance", &[("InstanceId", WEB)]).expect("stop");
        let r = call(&mut w, "CreateSnapshot", &[("DiskId", WEB_SYS)]);
        assert_eq!(code(r), (400, "IncorrectInstanceStatus".into()));
    }

    #[test]
    fn a_state_change_fails_a_snapshot_without_instant_access() {
        // ecs-evidence.md §3, C9 (TS-SDK): stopping or restarting the instance during snapshot
        // creation fails the snapshot; an instant-access snapshot is kept (Medium).
        for (category, after) in [
            ("cloud_efficiency", "failed"),
            ("cloud_essd", "progressing"),
        ] {
            let mut w = world_with_category(category);
            let made = call(&mut w, "CreateSnapshot", &[("DiskId", WEB_SYS)]).expect("created");
            let id = made["SnapshotId"].as_str().expect("id").to_owned();
            call(&mut w, "StopInstance", &[("InstanceId", WEB)]).expect("stop");
            assert_eq!(snapshot_row(&mut w, &id)["Status"], after, "{category}");
        }
    }

    #[test]
    fn stop_instance_says_which_status_it_expected() {
        // ecs-evidence.md §4, C16 (CBSPIDER): "Status of the specified instance is Stopped but
        // the expected status is in (Running)."
        let mut w = world();
        stop_web(&mut w);
        let e = call(&mut w, "StopInstance", &[("InstanceId", WEB)]).expect_err("stopped");
        assert_eq!(
            (e.status, e.code.as_str()),
            (403, "IncorrectInstanceStatus")
        );
        assert!(
            e.message.contains("Status of the specified instance is Stopped but the expected status is in (Running)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn economical_mode_makes_stop_charging_the_default() {
        // ecs-evidence.md §4, C15 (PY-SDK StopInstanceRequest).
        for (economical, want) in [(false, "KeepCharging"), (true, "StopCharging")] {
            let mut w = world();
            w.economical_mode = economical;
            stop_web(&mut w);
            let row = call(
                &mut w,
                "DescribeInstances",
                &[("InstanceIds", &format!("[\"{WEB}\"]"))],
            )
            .expect("describe");
            assert_eq!(row["Instances"]["Instance"][0]["StoppedMode"], want);
        }
    }

    #[test]
    fn tag_requests_are_checked_as_documented() {
        // ecs-evidence.md §2, C11-C13.
        let mut w = world();
        let tag = |w: &mut World, extra: &[(&str, &str)]| {
            let mut p = vec![("ResourceType", "disk"), ("ResourceId.1", WEB_SYS)];
            p.extend_from_slice(extra);
            call(w, "TagResources", &p)
        };
        let dup = tag(
            &mut w,
            &[
                ("Tag.1.Key", "k"),
                ("Tag.1.Value", "1"),
                ("Tag.2.Key", "k"),
                ("Tag.2.Value", "2"),
            ],
        );
        assert_eq!(code(dup), (400, "Duplicate.TagKey".into()));
        let many = tag(&mut w, &[("Tag.21.Key", "k"), ("Tag.21.Value", "v")]);
        assert_eq!(code(many), (400, "NumberExceed.Tags".into()));
        assert_eq!(
            code(tag(&mut w, &[])),
            (404, "MissingParameter.Tags".into())
        );
        let r = call(
            &mut w,
            "TagResources",
            &[
                ("ResourceType", "disk"),
                ("ResourceId.51", WEB_SYS),
                ("Tag.1.Key", "k"),
            ],
        );
        assert_eq!(code(r), (400, "NumberExceed.ResourceIds".into()));
        let r = call(
            &mut w,
            "TagResources",
            &[
                ("ResourceType", "disk"),
                ("ResourceId.1", "d-nope"),
                ("Tag.1.Key", "k"),
            ],
        );
        let e = r.expect_err("unknown disk");
        assert_eq!(
            (e.status, e.code.as_str()),
            (404, "InvalidResourceId.NotFound")
        );
        assert_eq!(
            e.message,
            "The specified ResourceIds are not found in our records."
        );
        let r = call(
            &mut w,
            "TagResources",
            &[
                ("ResourceType", "vpc"),
                ("ResourceId.1", WEB_SYS),
                ("Tag.1.Key", "k"),
            ],
        );
        assert_eq!(code(r), (404, "InvalidResourceType.NotFound".into()));
    }

    #[test]
    fn a_client_token_makes_one_snapshot() {
        // ecs-evidence.md §3, C3 (DOC-SNAP, DREPO "How to ensure idempotence"): the same
        // ClientToken with the same parameters returns the first result, 403
        // IdempotentProcessing while the first is still being processed, and 403
        // IdempotentParameterMismatch "The specified clientToken is used." with others.
        let mut w = world();
        let t0 = Instant::now();
        let ask = |w: &mut World, name: &str, at: Instant| {
            call_at(
                w,
                "CreateSnapshot",
                &[
                    ("DiskId", WEB_SYS),
                    ("SnapshotName", name),
                    ("ClientToken", "token-1"),
                ],
                at,
            )
        };
        let first = ask(&mut w, "undo-one", t0).expect("created");
        assert_eq!(
            code(ask(&mut w, "undo-one", t0 + Duration::from_millis(1))),
            (403, "IdempotentProcessing".into())
        );
        let again = ask(&mut w, "undo-one", t0 + Duration::from_secs(1)).expect("the same");
        assert_eq!(first["SnapshotId"], again["SnapshotId"]);
        assert_eq!(
            w.events()
                .iter()
                .filter(|e| e.action == "CreateSnapshot")
                .count(),
            1
        );
        let e = ask(&mut w, "undo-two", t0 + Duration::from_secs(1)).expect_err("mismatch");
        assert_eq!(
            (e.status, e.code.as_str()),
            (403, "IdempotentParameterMismatch")
        );
        assert_eq!(e.message, "The specified clientToken is used.");
        let long = "x".repeat(65);
        let r = call(
            &mut w,
            "CreateSnapshot",
            &[("DiskId", WEB_SYS), ("ClientToken", &long)],
        );
        assert_eq!(code(r), (403, "InvalidClientToken.Malformed".into()));
    }

    #[test]
    fn a_disk_holds_256_manual_snapshots_at_most() {
        // ecs-evidence.md: CreateSnapshot "has reached 256" answers 403 QuotaExceed.Snapshot.
        let mut fleet = default_fleet();
        for i in 0..MAX_MANUAL_SNAPSHOTS {
            fleet.snapshots.push(SnapshotSpec {
                id: format!("s-bp1quota{i:011}"),
                disk_id: WEB_SYS.into(),
                name: "old".into(),
                status: "accomplished".into(),
                age_hours: 1.0,
                created_at: None,
                tags: BTreeMap::new(),
                automatic: false,
            });
        }
        let mut w = World::new(&fleet, Timings::fast()).expect("fleet");
        let e = call(&mut w, "CreateSnapshot", &[("DiskId", WEB_SYS)]).expect_err("full");
        assert_eq!((e.status, e.code.as_str()), (403, "QuotaExceed.Snapshot"));
        assert_eq!(e.message, "The snapshot quota exceeds.");
        // C7: automatic snapshots have a quota of their own.
        for s in fleet.snapshots.iter_mut().filter(|s| s.name == "old") {
            s.automatic = true;
        }
        let mut w = World::new(&fleet, Timings::fast()).expect("fleet");
        call(&mut w, "CreateSnapshot", &[("DiskId", WEB_SYS)]).expect("room for a manual one");
    }

    #[test]
    fn snapshot_names_follow_the_rules() {
        // ecs-evidence.md §3, C6 (DREPO CreateSnapshot.md: 400 InvalidSnapshotName.Malformed): names of
        // 2-128 characters starting with a letter, not `http(s)://` nor `auto`.
        let mut w = world();
        for bad in ["x", "1abc", "auto-snap", "http://x"] {
            let r = call(
                &mut w,
                "CreateSnapshot",
                &[("DiskId", WEB_SYS), ("SnapshotName", bad)],
            );
            assert_eq!(code(r).1, "InvalidSnapshotName.Malformed", "{bad}");
        }
    }

    #[test]
    fn tag_reads_can_lag_writes() {
        // help.aliyun.com "final-consistency-of-alibaba-cloud-ecs-openapi-resources": reads are
        // eventually consistent after a write, no bound given; the lag here is a knob. The
        // moments are given, not measured: the test does not depend on the machine's speed.
        let mut w = World::new(
            &default_fleet(),
            Timings {
                tag_read_lag_ms: 200,
                ..Timings::fast()
            },
        )
        .expect("fleet");
        let at = |w: &mut World, action: &str, params: &[(&str, &str)], t: Instant| {
            call_at(w, action, params, t).expect("accepted")
        };
        let t0 = Instant::now();
        let tag = [
            ("ResourceType", "disk"),
            ("ResourceId.1", WEB_SYS),
            ("Tag.1.Key", "x"),
            ("Tag.1.Value", "1"),
        ];
        at(&mut w, "TagResources", &tag, t0);
        let list = [("ResourceType", "disk"), ("ResourceId.1", WEB_SYS)];
        let early = at(
            &mut w,
            "ListTagResources",
            &list,
            t0 + Duration::from_millis(100),
        );
        assert!(
            !early.to_string().contains("\"TagKey\":\"x\""),
            "not yet: {early}"
        );
        let late = at(
            &mut w,
            "ListTagResources",
            &list,
            t0 + Duration::from_millis(300),
        );
        assert!(late.to_string().contains("\"TagKey\":\"x\""), "now: {late}");
        // The true state shows at once.
        let state = w.state(t0);
        let disk = state["disks"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] == WEB_SYS))
            .cloned()
            .unwrap_or_default();
        assert_eq!(disk["tags"]["x"], "1");
    }
}
