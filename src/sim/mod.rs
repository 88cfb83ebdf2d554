//! A simulator of the ECS RPC API (and STS AssumeRole) that follows the documented rules, so
//! the client and the rollback can be tested where Alibaba Cloud cannot be reached.
//!
//! One [`Simulator`] serves two ways: in process through [`SimTransport`] (no sockets, the same
//! signed URL the real client builds), and over HTTP on loopback through [`server`]
//! (`ecs-rollback simulate`). Both go through [`Simulator::handle`]: gateway checks, faults,
//! the action, then the answer in JSON or (without `Format`) XML.

pub mod auth;
pub mod faults;
pub mod server;
pub mod world;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ecs::{HttpRequest, HttpResponse, Transport, TransportError};
pub use faults::{Brownout, FaultKind, FaultStats, Faults, ScriptedFault, ThrottleCode};
pub use world::{default_fleet, Event, FleetSpec, Timings};

/// The access key the simulator accepts unless a scenario names another.
pub const SIM_ACCESS_KEY_ID: &str = "sim-access-key-id";
pub const SIM_ACCESS_KEY_SECRET: &str = "sim-access-key-secret";

/// An error answer: HTTP status, `Code`, `Message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything a simulator starts from: a scenario file is this, as JSON.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// When set, the key is temporary: every request must carry this `SecurityToken`.
    pub security_token: Option<String>,
    pub timings: Timings,
    pub faults: Faults,
    /// The fleet; absent means [`default_fleet`].
    pub fleet: Option<FleetSpec>,
    /// Tags per resource (the API allows 20).
    pub max_tags: usize,
    /// More access keys the gateway accepts (ID -> secret): several clients told apart, e.g.
    /// by a scripted fault's `caller`.
    pub extra_access_keys: BTreeMap<String, String>,
    /// The account has economical mode on: StopInstance without `StoppedMode` stops with
    /// `StopCharging` (ecs-evidence.md §4, PY-SDK `StopInstanceRequest`).
    pub economical_mode: bool,
    /// How far each caller's own clock (by access key) runs ahead of ECS's, in ms (behind, if
    /// negative): a laptop, a VM after suspend. ECS cannot set a caller's clock; the clients a
    /// test builds for that key take it (`EcsClient::with_clock_offset`), and the gateway
    /// refuses a `Timestamp` more than 15 minutes off, as ECS does.
    pub clock_offsets_ms: BTreeMap<String, i64>,
    /// Cloud Assistant: agents that never come up, snapshots that fail the check after a
    /// rollback to them, the instances' addresses (`world::AssistantSpec`).
    pub cloud_assistant: world::AssistantSpec,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            access_key_id: SIM_ACCESS_KEY_ID.into(),
            access_key_secret: SIM_ACCESS_KEY_SECRET.into(),
            security_token: None,
            timings: Timings::default(),
            faults: Faults::default(),
            fleet: None,
            max_tags: 20,
            extra_access_keys: BTreeMap::new(),
            economical_mode: false,
            clock_offsets_ms: BTreeMap::new(),
            cloud_assistant: world::AssistantSpec::default(),
        }
    }
}

/// The answer to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// The request ran, and its answer is to be lost.
    pub drop: bool,
    pub delay: Duration,
    /// Sent as `x-acs-retry-after` (milliseconds) with a throttled answer.
    pub retry_after_ms: Option<u64>,
    /// Sent as `Date` (whole seconds): ECS's clock when it answered.
    pub date: DateTime<Utc>,
}

struct Inner {
    world: world::World,
    gateway: auth::Gateway,
    injector: faults::Injector,
    /// Calls of each action that asked for a DryRun (counted in `call_counts` as well).
    dry_runs: HashMap<String, u32>,
}

/// The simulator: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Mutex<Inner>>,
}

impl Simulator {
    pub fn new(scenario: Scenario) -> Result<Self, String> {
        let fleet = scenario.fleet.clone().unwrap_or_else(default_fleet);
        let mut world = world::World::new(&fleet, scenario.timings.clone())?;
        world.max_tags = scenario.max_tags;
        world.economical_mode = scenario.economical_mode;
        world.set_assistant(scenario.cloud_assistant.clone());
        let mut gateway = auth::Gateway::new(&scenario.access_key_id, &scenario.access_key_secret);
        for (id, secret) in &scenario.extra_access_keys {
            gateway.add_key(id, secret);
        }
        if let Some(token) = &scenario.security_token {
            if let Some(k) = gateway.keys.get_mut(&scenario.access_key_id) {
                k.token = Some(token.clone());
            }
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                world,
                gateway,
                injector: faults::Injector::new(scenario.faults),
                dry_runs: HashMap::new(),
            })),
        })
    }

    /// The default fleet with the given timings.
    pub fn with_timings(timings: Timings) -> Self {
        match Self::new(Scenario {
            timings,
            ..Scenario::default()
        }) {
            Ok(sim) => sim,
            Err(e) => unreachable!("the default fleet is valid: {e}"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent world (every change is one
        // assignment), so a poisoned lock is taken over.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles one request: `raw_query` as it arrived, plus a form body when there is one.
    /// One API request. `headers` have lower-case names. A request with an
    /// `Authorization: ACS3-HMAC-SHA256 ...` header is checked as signature V3 (action and
    /// version from `x-acs-*` headers, JSON answers); any other as signature 1.0.
    pub fn handle(&self, req: &SimRequest<'_>) -> Reply {
        let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
        let mut pairs = match auth::decode_pairs(req.query) {
            Ok(p) => p,
            Err(e) => return error_reply(&e, &request_id, true, ""),
        };
        let form = String::from_utf8_lossy(req.body);
        match auth::decode_pairs(&form) {
            Ok(p) => pairs.extend(p),
            Err(e) => return error_reply(&e, &request_id, true, ""),
        }
        let mut params: BTreeMap<String, String> = pairs.into_iter().collect();
        let v3 = req.headers.contains_key("authorization");
        let json = v3
            || match params.get("Format") {
                None => false,
                Some(f) => f.eq_ignore_ascii_case("json"),
            };
        let region = params.get("RegionId").cloned().unwrap_or_default();
        let mut inner = self.lock();
        let now = Utc::now();
        let verified = if v3 {
            inner
                .gateway
                .verify_v3(req.method, req.path, &params, req.headers, req.body, now)
                .map(|(ak, action, version)| {
                    params.insert("Action".into(), action);
                    params.insert("Version".into(), version);
                    ak
                })
        } else {
            inner.gateway.verify(req.method, &params, now)
        };
        let caller = match verified {
            Ok(ak) => ak,
            Err(e) => return error_reply(&e, &request_id, json, &region),
        };
        let action = params.get("Action").cloned().unwrap_or_default();
        let want_version = if action == "AssumeRole" {
            "2015-04-01"
        } else {
            "2014-05-26"
        };
        if params.get("Version").map(String::as_str) != Some(want_version) {
            // Source: ecs-api.md §5.2 (400 InvalidVersion); the message is UNCONFIRMED.
            let e = ApiError::new(
                400,
                "InvalidVersion",
                "Specified parameter Version is not valid.",
            );
            return error_reply(&e, &request_id, json, &region);
        }
        let fate = inner.injector.decide(&region, &action, &caller);
        if params
            .get("DryRun")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            *inner.dry_runs.entry(action.clone()).or_default() += 1;
        }
        if let Some(e) = &fate.refuse {
            let mut r = error_reply(e, &request_id, json, &region);
            r.delay = fate.delay;
            r.retry_after_ms = fate.retry_after_ms;
            return r;
        }
        let result = if action == "AssumeRole" {
            inner.gateway.assume_role(&params, &caller, now)
        } else {
            let req = world::Req { params: &params };
            let from = inner.world.events().len();
            let applied = inner.world.apply(&action, &req, Instant::now());
            inner.world.set_caller(from, &caller);
            applied
        };
        let mut reply = match result {
            Ok(mut body) => {
                if let Value::Object(m) = &mut body {
                    m.insert("RequestId".into(), Value::String(request_id.clone()));
                }
                Reply {
                    status: 200,
                    content_type: if json { "application/json" } else { "text/xml" },
                    body: if json {
                        body.to_string()
                    } else {
                        to_xml(&format!("{action}Response"), &body)
                    },
                    drop: false,
                    delay: Duration::ZERO,
                    retry_after_ms: None,
                    date: Utc::now(),
                }
            }
            Err(e) => error_reply(&e, &request_id, json, &region),
        };
        reply.drop = fate.drop;
        reply.delay = fate.delay;
        reply
    }

    /// Replaces the fault settings; their random sequence restarts from the new seed, and call
    /// counts carry on (scripted faults count from the simulator's start).
    pub fn set_faults(&self, faults: Faults) {
        self.lock().injector.replace(faults);
    }

    /// Faults injected so far.
    pub fn fault_stats(&self) -> FaultStats {
        self.lock().injector.stats
    }

    /// Every `Signature` the gateway received (the last 10 000).
    pub fn signatures_seen(&self) -> Vec<String> {
        self.lock().gateway.signatures.iter().cloned().collect()
    }

    /// Calls of each action that passed the gateway.
    pub fn call_counts(&self) -> HashMap<String, u32> {
        self.lock().injector.counts().clone()
    }

    /// Of those, the calls that asked for a DryRun.
    pub fn dry_run_counts(&self) -> HashMap<String, u32> {
        self.lock().dry_runs.clone()
    }

    /// State-changing calls applied so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().world.events().to_vec()
    }

    /// The whole world as JSON.
    pub fn state(&self) -> Value {
        self.lock().world.state(Instant::now())
    }

    /// Status of an instance now (`None` if unknown).
    pub fn instance_status(&self, id: &str) -> Option<String> {
        let state = self.state();
        state["instances"]
            .as_array()?
            .iter()
            .find(|i| i["id"] == id)
            .and_then(|i| i["status"].as_str().map(str::to_owned))
    }

    /// A disk's entry of [`Simulator::state`].
    pub fn disk(&self, id: &str) -> Option<Value> {
        let state = self.state();
        state["disks"]
            .as_array()?
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
    }

    pub fn set_instance_locks(&self, id: &str, locks: &[&str]) -> bool {
        self.lock()
            .world
            .set_instance_locks(id, locks.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Detaches a disk from its instance, between two calls (a person or another tool did it).
    pub fn detach_disk(&self, id: &str) -> bool {
        self.lock().world.detach_disk(id)
    }

    /// Deletes a snapshot between two calls (as DeleteSnapshot would): a snapshot-consistent
    /// group it belonged to lists the rest.
    pub fn delete_snapshot(&self, id: &str) -> bool {
        self.lock().world.delete_snapshot(id)
    }

    /// Fails a snapshot between two calls (a member of a group fails the group).
    pub fn fail_snapshot(&self, id: &str) -> bool {
        self.lock().world.fail_snapshot(id)
    }

    pub fn set_snapshot_progressing(&self, id: &str) -> bool {
        self.lock()
            .world
            .set_snapshot_progressing(id, Instant::now())
    }

    /// Someone else (an operator, a schedule) stops or starts an instance between two
    /// deliveries, through the API's own rules (`StopInstance`/`StartInstance` as the caller
    /// `operator`): `Err` is ECS's refusal.
    pub fn operate(&self, instance: &str, start: bool) -> Result<(), String> {
        let mut inner = self.lock();
        let params: BTreeMap<String, String> = [
            ("RegionId", "cn-hangzhou"),
            ("InstanceId", instance),
            ("StoppedMode", "KeepCharging"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let action = if start {
            "StartInstance"
        } else {
            "StopInstance"
        };
        let from = inner.world.events().len();
        let applied = inner
            .world
            .apply(action, &world::Req { params: &params }, Instant::now());
        inner.world.set_caller(from, "operator");
        applied
            .map(|_| ())
            .map_err(|e| format!("{}: {}", e.code, e.message))
    }

    /// Whether an instance's simulated service answers now (Running, booted, no disk holding
    /// a snapshot the scenario marks bad): what a test's loopback health server reports.
    pub fn service_up(&self, instance_id: &str) -> bool {
        self.lock().world.service_up(instance_id, Instant::now())
    }

    /// Lets a test move the gateway's tolerance for clock skew.
    pub fn set_skew_limit(&self, secs: i64) {
        self.lock().gateway.skew_limit_secs = secs;
    }
}

fn error_reply(e: &ApiError, request_id: &str, json: bool, region: &str) -> Reply {
    let host = if region.is_empty() {
        "ecs.aliyuncs.com".to_owned()
    } else {
        format!("ecs.{region}.aliyuncs.com")
    };
    let body = json!({
        "RequestId": request_id,
        "HostId": host,
        "Code": e.code,
        "Message": e.message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product=Ecs&requestId={request_id}", e.code),
    });
    Reply {
        status: e.status,
        content_type: if json { "application/json" } else { "text/xml" },
        body: if json {
            body.to_string()
        } else {
            to_xml("Error", &body)
        },
        drop: false,
        delay: Duration::ZERO,
        retry_after_ms: None,
        date: Utc::now(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The XML form of a JSON answer: objects are elements, a list repeats its element.
pub fn to_xml(root: &str, v: &Value) -> String {
    fn write(out: &mut String, name: &str, v: &Value) {
        match v {
            Value::Array(items) => {
                for item in items {
                    write(out, name, item);
                }
            }
            Value::Object(m) => {
                out.push_str(&format!("<{name}>"));
                for (k, v) in m {
                    write(out, k, v);
                }
                out.push_str(&format!("</{name}>"));
            }
            Value::Null => out.push_str(&format!("<{name}/>")),
            Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", xml_escape(s))),
            other => out.push_str(&format!("<{name}>{other}</{name}>")),
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    write(&mut out, root, v);
    out
}

/// One request as the simulator receives it.
pub struct SimRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string, still percent-encoded.
    pub query: &'a str,
    /// A form body (`application/x-www-form-urlencoded`), or empty.
    pub body: &'a [u8],
    /// Header names in lower case.
    pub headers: &'a BTreeMap<String, String>,
}

/// The in-process transport: hands the signed URL to the simulator, honours its delays and
/// drops, and never opens a socket.
#[derive(Clone)]
pub struct SimTransport {
    pub sim: Simulator,
}

#[async_trait]
impl Transport for SimTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let mut headers: BTreeMap<String, String> = request
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        // What an HTTP client writes from the URL.
        if let Some(host) = request.url.host_str() {
            let host = match request.url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            headers.insert("host".into(), host);
        }
        let reply = self.sim.handle(&SimRequest {
            method: request.method,
            path: request.url.path(),
            query: request.url.query().unwrap_or(""),
            body: &[],
            headers: &headers,
        });
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if reply.drop {
            return Err(TransportError::ResponseLost(
                "connection closed before the response was complete (simulated)".into(),
            ));
        }
        Ok(HttpResponse {
            status: reply.status,
            body: reply.body.into_bytes(),
            retry_after: reply.retry_after_ms.map(Duration::from_millis),
            date: Some(reply.date),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_shape() {
        let v = json!({"RequestId": "R", "Instances": {"Instance": [{"InstanceId": "i-1"}, {"InstanceId": "i-2"}]}});
        assert_eq!(
            to_xml("DescribeInstancesResponse", &v),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeInstancesResponse><Instances><Instance><InstanceId>i-1</InstanceId></Instance><Instance><InstanceId>i-2</InstanceId></Instance></Instances><RequestId>R</RequestId></DescribeInstancesResponse>"
        );
    }

    /// Guesses among the simulator's rules (an error answer whose code, status or message has
    /// no public source). Lower it when a guess gets a source; it must never grow.
    /// Raised from 20 to 24 for CreateSnapshotGroup (sim/world/groups.rs), whose rules are in
    /// the reference (§2 of ecs-snapshot-groups-and-cloud-assistant.md) but not its answers:
    /// the category refusal, the 16-disk / 32 TiB limit, a never-attached disk, and the message
    /// of `TooManyCreatingSnapshots` (its code is sourced).
    const UNCONFIRMED_RULES: usize = 24;

    /// Every error the simulator answers names where it comes from: a `Source:` comment, or
    /// the word UNCONFIRMED, in the comments just above the `ApiError::new(` that makes it.
    /// The rules a test of the client trusts are only as good as these sources.
    #[test]
    fn every_rule_names_its_source() {
        let files = [
            ("sim/mod.rs", include_str!("mod.rs")),
            ("sim/auth.rs", include_str!("auth.rs")),
            ("sim/faults.rs", include_str!("faults.rs")),
            ("sim/world/mod.rs", include_str!("world/mod.rs")),
            ("sim/world/disks.rs", include_str!("world/disks.rs")),
            ("sim/world/instances.rs", include_str!("world/instances.rs")),
            ("sim/world/snapshots.rs", include_str!("world/snapshots.rs")),
            ("sim/world/groups.rs", include_str!("world/groups.rs")),
            ("sim/world/tags.rs", include_str!("world/tags.rs")),
            ("sim/world/request.rs", include_str!("world/request.rs")),
            ("sim/world/assistant.rs", include_str!("world/assistant.rs")),
        ];
        let needle = concat!("ApiError::", "new(");
        let (mut rules, mut unconfirmed, mut missing) = (0, 0, Vec::new());
        for (name, text) in files {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.contains("#[cfg(test)]") {
                    break;
                }
                if !line.contains(needle) || line.trim_start().starts_with("//") {
                    continue;
                }
                rules += 1;
                // The comments of the 8 lines above, back to the previous rule.
                let mut notes = String::new();
                for above in lines[i.saturating_sub(8)..i].iter().rev() {
                    if above.contains(needle) {
                        break;
                    }
                    let t = above.trim_start();
                    if t.starts_with("//") {
                        notes.push_str(t);
                    }
                }
                if notes.contains("UNCONFIRMED") {
                    unconfirmed += 1;
                } else if !notes.contains("Source:") {
                    missing.push(format!("{name}:{}", i + 1));
                }
            }
        }
        assert!(rules > 40, "the scan found only {rules} rules");
        assert!(
            missing.is_empty(),
            "rules without a `Source:` or UNCONFIRMED note: {missing:?}"
        );
        assert!(
            unconfirmed <= UNCONFIRMED_RULES,
            "{unconfirmed} UNCONFIRMED rules, more than the {UNCONFIRMED_RULES} allowed: find a source, or say why the guess is needed and raise the count in review"
        );
        eprintln!("{rules} rules, {unconfirmed} UNCONFIRMED");
    }

    #[test]
    fn default_fleet_is_valid() {
        let sim = Simulator::new(Scenario::default()).expect("valid");
        assert_eq!(
            sim.instance_status("i-bp1webapp00000001").as_deref(),
            Some("Running")
        );
        assert_eq!(
            sim.instance_status("i-bp1batch000000002").as_deref(),
            Some("Stopped")
        );
    }
}
