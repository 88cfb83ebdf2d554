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
