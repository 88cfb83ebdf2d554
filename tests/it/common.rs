//! Helpers shared by the integration tests: a simulator served on loopback, and clients for it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ecs_rollback::ecs::credentials::parse_base_url;
use ecs_rollback::ecs::{
    CredentialSource, Credentials, EcsClient, Endpoint, ReqwestTransport, RetryConfig,
};
use ecs_rollback::sim::{self, Scenario, SimTransport, Simulator, Timings};

pub const REGION: &str = "cn-hangzhou";
pub const WEB: &str = "i-bp1webapp00000001";
pub const WEB_SYS: &str = "d-bp1webapp0000sys01";
pub const WEB_DATA: &str = "d-bp1webapp0000dat01";
pub const WEB_SNAP_OLD: &str = "s-bp1webapp0sys00001";
pub const WEB_SNAP_TAGGED: &str = "s-bp1webapp0sys00002";
pub const WEB_SNAP_NEW: &str = "s-bp1webapp0sys00003";
pub const WEB_DATA_SNAP: &str = "s-bp1webapp0dat00001";
pub const BATCH: &str = "i-bp1batch000000002";
pub const BATCH_SYS: &str = "d-bp1batch00000sys02";
pub const BATCH_SNAP: &str = "s-bp1batch00sys00001";
pub const LEGACY: &str = "i-bp1legacy00000003";
pub const LEGACY_SYS: &str = "d-bp1legacy0000sys03";
pub const LEGACY_SNAP: &str = "s-bp1legacy0sys00001";
pub const LOCKED: &str = "i-bp1locked00000004";
pub const LOCKED_SYS: &str = "d-bp1locked0000sys04";
pub const LOCKED_SNAP: &str = "s-bp1locked0sys00001";

/// Faults of one scripted kind: the `nth` call of `action` (every caller's) meets `fault`.
pub fn scripted_fault(
    action: &str,
    nth: u32,
    fault: ecs_rollback::sim::FaultKind,
) -> ecs_rollback::sim::Faults {
    ecs_rollback::sim::Faults {
        scripted: vec![ecs_rollback::sim::ScriptedFault {
            caller: None,
            action: action.into(),
            nth,
            fault,
        }],
        ..Default::default()
    }
}

pub fn fast_sim() -> Simulator {
    Simulator::with_timings(Timings::fast())
}

pub fn sim_with(scenario: Scenario) -> Simulator {
    Simulator::new(scenario).expect("valid scenario")
}

pub fn sim_credentials() -> CredentialSource {
    CredentialSource::Static(Credentials::new(
        sim::SIM_ACCESS_KEY_ID,
        sim::SIM_ACCESS_KEY_SECRET,
    ))
}

/// Serves `sim` on a free loopback port; returns its base URL.
pub async fn serve(sim: &Simulator) -> String {
    let addr = sim::server::spawn(sim.clone(), 0)
        .await
        .expect("bind loopback");
    format!("http://{addr}/")
}

/// A client speaking real HTTP to `base`.
pub fn http_client(base: &str, source: CredentialSource, request_timeout: Duration) -> EcsClient {
    http_client_with(base, source, request_timeout, RetryConfig::fast())
}

/// A client speaking real HTTP to `base`, retrying as `retry` says.
pub fn http_client_with(
    base: &str,
    source: CredentialSource,
    request_timeout: Duration,
    retry: RetryConfig,
) -> EcsClient {
    EcsClient::new(
        Arc::new(ReqwestTransport::new(
            Duration::from_secs(2),
            request_timeout,
        )),
        Endpoint::Fixed(parse_base_url(base).expect("loopback URL")),
        source,
        retry,
    )
}

/// A client speaking to `sim` in process.
pub fn inproc_client(sim: &Simulator) -> EcsClient {
    EcsClient::new(
        Arc::new(SimTransport { sim: sim.clone() }),
        Endpoint::Regional,
        sim_credentials(),
        RetryConfig::fast(),
    )
}

/// Polls until `f` is true or `timeout` passes.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// `n` opted-in running instances `i-bp1{prefix}{i:010}`, each with a system disk
/// `d-bp1{prefix}{i:010}` and an accomplished snapshot `s-bp1{prefix}{i:010}`; the ones in
/// `locked` locked for security; the first `tagged` carrying `tag` as well.
pub fn opted_in_fleet(
    n: usize,
    prefix: &str,
    locked: &[usize],
    tagged: usize,
    tag: (&str, &str),
) -> ecs_rollback::sim::FleetSpec {
    use ecs_rollback::sim::world::{DiskSpec, InstanceSpec, SnapshotSpec};
    use std::collections::BTreeMap;
    let mut f = ecs_rollback::sim::FleetSpec::default();
    for i in 0..n {
        let mut tags: BTreeMap<String, String> =
            [("ecs-rollback".to_owned(), "enabled".to_owned())].into();
        if i < tagged {
            tags.insert(tag.0.into(), tag.1.into());
        }
        let (iid, did, sid) = (
            format!("i-bp1{prefix}{i:010}"),
            format!("d-bp1{prefix}{i:010}"),
            format!("s-bp1{prefix}{i:010}"),
        );
        f.instances.push(InstanceSpec {
            id: iid.clone(),
            region: REGION.into(),
            name: format!("{prefix}-{i}"),
            status: "Running".into(),
            locks: if locked.contains(&i) {
                vec!["security".into()]
            } else {
                vec![]
            },
            tags,
            no_stock: false,
        });
        f.disks.push(DiskSpec {
            id: did.clone(),
            region: REGION.into(),
            name: String::new(),
            instance_id: Some(iid),
            disk_type: "system".into(),
            size: 40,
            category: None,
            locks: vec![],
            tags: BTreeMap::new(),
        });
        f.snapshots.push(SnapshotSpec {
            id: sid,
            disk_id: did,
            name: "golden".into(),
            status: "accomplished".into(),
            age_hours: 0.0,
            created_at: Some("2026-11-28T00:00:00Z".into()),
            tags: BTreeMap::new(),
            automatic: false,
        });
    }
    f
}

/// The environment that points the built binary at the simulator served on `base`.
pub fn sim_env(base: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            sim::SIM_ACCESS_KEY_ID.to_owned(),
        ),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            sim::SIM_ACCESS_KEY_SECRET.to_owned(),
        ),
        ("ALIBABA_CLOUD_REGION_ID", REGION.to_owned()),
        ("ECS_ROLLBACK_ECS_ENDPOINT", base.to_owned()),
    ]
}

/// `events/README.md`'s table: sample file -> the outcomes it must produce, in order.
pub fn event_outcomes() -> std::collections::BTreeMap<String, Vec<String>> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("events/README.md")).expect("events/README.md");
    readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let file = cells[1].trim_matches('`').to_owned();
            let outcomes = cells[3]
                .trim_matches('`')
                .split(',')
                .map(str::to_owned)
                .collect();
            (file, outcomes)
        })
        .collect()
}

/// A simulator served on loopback and a handler speaking HTTP to it: what most end-to-end
/// tests start from.
pub struct Bench {
    pub sim: Simulator,
    pub base: String,
    pub handler: ecs_rollback::handler::Handler,
}

/// A second client's access key, which the simulator tells apart (scripted faults can aim at
/// it): `Bench::other` signs with it.
pub const OTHER_KEY: &str = "sim-other-access-key";
pub const OTHER_SECRET: &str = "sim-other-secret";

pub async fn bench_with(
    mut scenario: Scenario,
    settings: ecs_rollback::settings::Settings,
) -> Bench {
    scenario
        .extra_access_keys
        .insert(OTHER_KEY.to_owned(), OTHER_SECRET.to_owned());
    let sim = sim_with(scenario);
    let base = serve(&sim).await;
    Bench {
        handler: ecs_rollback::handler::Handler::new(
            http_client(&base, sim_credentials(), Duration::from_secs(5)),
            settings,
            Some(REGION.into()),
        ),
        base,
        sim,
    }
}

/// The default fleet, fast transitions, fast settings.
pub async fn bench() -> Bench {
    bench_with(
        Scenario {
            timings: Timings::fast(),
            ..Default::default()
        },
        ecs_rollback::settings::Settings::fast(),
    )
    .await
}

/// The one report of a direct event.
pub async fn run_on(
    handler: &ecs_rollback::handler::Handler,
    event: &serde_json::Value,
) -> ecs_rollback::report::Report {
    let mut reports = handler.handle(event, None).await.into_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    reports.remove(0)
}

impl Bench {
    /// A second invocation environment: the same settings, its own access key.
    pub fn other(&self) -> ecs_rollback::handler::Handler {
        ecs_rollback::handler::Handler::new(
            http_client(
                &self.base,
                CredentialSource::Static(Credentials::new(OTHER_KEY, OTHER_SECRET)),
                Duration::from_secs(5),
            ),
            self.handler.settings.clone(),
            Some(REGION.into()),
        )
    }

    pub async fn run(
        &self,
        event: impl std::borrow::Borrow<serde_json::Value>,
    ) -> ecs_rollback::report::Report {
        run_on(&self.handler, event.borrow()).await
    }

    pub async fn run_with_deadline(
        &self,
        event: serde_json::Value,
        deadline: std::time::Instant,
    ) -> ecs_rollback::report::Report {
        let req = ecs_rollback::request::parse(
            &event,
            Some(REGION),
            ecs_rollback::request::Trigger::direct(),
        )
        .expect("valid");
        ecs_rollback::rollback::Rollback::new(&self.handler.ecs, &self.handler.settings)
            .run(&req, Some(deadline))
            .await
    }

    /// Delivers `event` again until it ends for good (a dead claim holds the disk until its
    /// heartbeat times out), as redelivery would; bounded by time, well past the heartbeat
    /// timeout of `Settings::fast()` (4 s).
    pub async fn redeliver_until_done(
        &self,
        event: &serde_json::Value,
    ) -> ecs_rollback::report::Report {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.run(event).await;
            let again = !r.outcome.is_ok() && r.error.as_ref().is_some_and(|e| e.retryable);
            if !again || std::time::Instant::now() > until {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn status(&self, instance: &str) -> String {
        self.sim.instance_status(instance).unwrap_or_default()
    }

    /// The instance's status once a transition under way (Starting, Stopping) has ended.
    pub async fn settled_status(&self, instance: &str) -> String {
        eventually(Duration::from_secs(5), || {
            !matches!(self.status(instance).as_str(), "Starting" | "Stopping")
        })
        .await;
        self.status(instance)
    }

    pub fn disk(&self, disk: &str) -> serde_json::Value {
        self.sim.disk(disk).expect("disk")
    }

    pub fn resets(&self, disk: &str) -> u64 {
        self.disk(disk)["resets"].as_u64().unwrap_or_default()
    }

    pub fn run_record(&self, disk: &str) -> Option<ecs_rollback::ledger::RunRecord> {
        self.disk(disk)["tags"][ecs_rollback::ledger::RUN_TAG]
            .as_str()
            .and_then(ecs_rollback::ledger::RunRecord::decode)
    }

    pub fn history(&self, disk: &str) -> ecs_rollback::ledger::History {
        self.disk(disk)["tags"][ecs_rollback::ledger::HISTORY_TAG]
            .as_str()
            .map(ecs_rollback::ledger::History::decode)
            .unwrap_or_default()
    }

    /// State-changing calls applied so far, in order.
    pub fn changes(&self) -> Vec<ecs_rollback::sim::Event> {
        self.sim.events()
    }

    /// Calls of `action` that reached the simulator (applied or refused).
    pub fn calls(&self, action: &str) -> u32 {
        self.sim
            .call_counts()
            .get(action)
            .copied()
            .unwrap_or_default()
    }

    /// Calls of `action` that reached the simulator without asking for a DryRun.
    pub fn calls_for_real(&self, action: &str) -> u32 {
        let dry = self
            .sim
            .dry_run_counts()
            .get(action)
            .copied()
            .unwrap_or_default();
        self.calls(action) - dry
    }

    /// Calls of `action` the simulator applied.
    pub fn applied(&self, action: &str) -> usize {
        self.sim
            .events()
            .iter()
            .filter(|e| e.action == action)
            .count()
    }

    /// Calls that change an instance or a disk (not the ledger's tag writes), with the status
    /// of the instance when each was applied.
    pub fn power_and_disk_calls(&self) -> Vec<(String, String)> {
        self.changes()
            .into_iter()
            .filter(|e| {
                matches!(
                    e.action.as_str(),
                    "StopInstance" | "StartInstance" | "ResetDisk"
                )
            })
            .map(|e| (e.action, e.instance_status))
            .collect()
    }
}

/// The safety invariants of one key's rollback, from the simulator's log of applied calls:
/// ResetDisk only while the instance is Stopped, never after the instance was started (no
/// reset follows any StartInstance), every reset to one snapshot. Each broken rule, said.
pub fn violations(events: &[ecs_rollback::sim::Event], disk: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut started = false;
    let mut first: Option<&ecs_rollback::sim::Event> = None;
    for e in events {
        match e.action.as_str() {
            "StartInstance" => started = true,
            "ResetDisk" if e.resource == disk => {
                if e.instance_status != "Stopped" {
                    v.push(format!("reset #{} while {}", e.seq, e.instance_status));
                }
                if started {
                    v.push(format!(
                        "reset #{} after the instance was started again",
                        e.seq
                    ));
                }
                match first {
                    Some(f) if f.detail != e.detail => v.push(format!(
                        "reset #{} to another snapshot ({})",
                        e.seq, e.detail
                    )),
                    Some(_) => {}
                    None => first = Some(e),
                }
            }
            _ => {}
        }
    }
    v
}

/// [`violations`], as assertions. Returns the resets beyond the first (a re-issue after a lost
/// answer, to the same snapshot, the one documented exception).
pub fn assert_safe(events: &[ecs_rollback::sim::Event], disk: &str) -> usize {
    let v = violations(events, disk);
    assert!(v.is_empty(), "{v:?}: {events:#?}");
    events
        .iter()
        .filter(|e| e.action == "ResetDisk" && e.resource == disk)
        .count()
        .saturating_sub(1)
}

/// The built binary, with an empty environment: each test gives it exactly the variables it
/// means (a variable of the machine or of CI never leaks into a run).
pub fn binary() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ecs-rollback"));
    c.env_clear();
    c
}

/// [`binary`], for async tests: killed when dropped.
pub fn binary_async() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecs-rollback"));
    c.env_clear().kill_on_drop(true);
    c
}

/// The built-in simulator's scenario with fast transitions, for runs of the binary.
pub fn fast_scenario_file() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fast-scenario.json")
}
