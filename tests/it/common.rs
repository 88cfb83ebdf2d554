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
    EcsClient::new(
        Arc::new(ReqwestTransport::new(
            Duration::from_secs(2),
            request_timeout,
        )),
        Endpoint::Fixed(parse_base_url(base).expect("loopback URL")),
        source,
        RetryConfig::fast(),
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
