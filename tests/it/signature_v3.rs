//! Signature V3 (`ECS_ROLLBACK_SIGNATURE=v3`) end to end over loopback HTTP: the client signs
//! with ACS3-HMAC-SHA256 in headers, the simulator verifies it with its own code (which accepts
//! the official SDK's requests: src/sim/auth.rs), and a whole rollback runs on it, by hand, with
//! STS credentials, and through the built binary.

use std::path::PathBuf;

use std::time::Duration;

use crate::common::*;
use ecs_rollback::ecs::credentials::{parse_base_url, AssumeRole};
use ecs_rollback::ecs::{
    CredentialSource, Credentials, DiskQuery, EcsClient, InstanceQuery, Retry, Signing, StopOptions,
};
use ecs_rollback::sim::{self, Scenario, Simulator};

const T: Duration = Duration::from_secs(5);

fn v3(base: &str, source: CredentialSource) -> EcsClient {
    http_client(base, source, T).with_signing(Signing::V3)
}

fn is_v3_signature(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

async fn status(c: &EcsClient, id: &str) -> String {
    let q = InstanceQuery {
        ids: vec![id.into()],
        ..Default::default()
    };
    let found = c.describe_instances(REGION, &q).await.expect("describe");
    found[0].status.clone()
}

#[tokio::test]
async fn stop_reset_start_by_hand_signed_with_v3() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let c = v3(&base, sim_credentials());
    let disks = c
        .describe_disks(
            REGION,
            &DiskQuery {
                instance_id: Some(WEB.into()),
                disk_type: Some("system".into()),
                ..Default::default()
            },
        )
        .await
        .expect("disks");
    assert_eq!(disks[0].disk_id, WEB_SYS);
    c.stop_instance(REGION, WEB, &StopOptions::default())
        .await
        .expect("stop");
    assert!(
        eventually(T, || sim.instance_status(WEB).as_deref() == Some("Stopped")).await,
        "stopped"
    );
    assert_eq!(status(&c, WEB).await, "Stopped");
    c.reset_disk(REGION, WEB_SYS, WEB_SNAP_TAGGED, false)
        .await
        .expect("reset");
    let mut started = false;
    for _ in 0..200 {
        if c.start_instance(REGION, WEB, false).await.is_ok() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(started, "started after the reset");
    assert!(eventually(T, || sim.instance_status(WEB).as_deref() == Some("Running")).await);
    let disk = sim.disk(WEB_SYS).expect("disk");
    assert_eq!(disk["content"], WEB_SNAP_TAGGED);
    assert_eq!(disk["resets"], 1);
    let seen = sim.signatures_seen();
    assert!(seen.len() >= 6, "{} requests", seen.len());
    assert!(
        seen.iter().all(|s| is_v3_signature(s)),
        "every request carried a V3 signature: {seen:?}"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_not_retried_under_v3() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let c = v3(
        &base,
        CredentialSource::Static(Credentials::new(sim::SIM_ACCESS_KEY_ID, "not-the-secret")),
    );
    let e = c
        .describe_instances(REGION, &InstanceQuery::default())
        .await
        .expect_err("bad signature");
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(e.retry, Retry::NotRetryable);
    assert_eq!(e.attempts, 1);
    // A V1 request to the same server still passes: the gateway speaks both.
    let v1 = http_client(&base, sim_credentials(), T);
    v1.describe_instances(REGION, &InstanceQuery::default())
        .await
        .expect("V1 still accepted");
}

#[tokio::test]
async fn assumed_role_credentials_sign_v3_with_the_token_header() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let source = CredentialSource::AssumeRole {
        base: Credentials::new(sim::SIM_ACCESS_KEY_ID, sim::SIM_ACCESS_KEY_SECRET),
        role: AssumeRole {
            role_arn: "acs:ram::1234567890123456:role/ecs-rollback".into(),
            session_name: "ecs-rollback-v3".into(),
            endpoint: parse_base_url(&base).expect("url"),
            duration_seconds: 3600,
        },
    };
    let c = v3(&base, source);
    for _ in 0..3 {
        c.describe_instances(REGION, &InstanceQuery::default())
            .await
            .expect("signed with the role's key, its token in x-acs-security-token");
    }
    assert_eq!(sim.call_counts()["AssumeRole"], 1);
    assert_eq!(sim.call_counts()["DescribeInstances"], 3);
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_binary(base: &str, signature: &str) -> (i32, String, String) {
    let mut cmd = binary();
    cmd.arg("invoke")
        .arg(root().join("events/rollback.json"))
        .env("ECS_ROLLBACK_SIGNATURE", signature)
        .env("ECS_ROLLBACK_POLL_INITIAL_MS", "20")
        .env("ECS_ROLLBACK_POLL_MAX_MS", "100");
    for (k, v) in sim_env(base) {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_binary_rolls_back_over_http_signing_v3() {
    let scenario: Scenario = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/fast-scenario.json")).expect("scenario"),
    )
    .expect("scenario JSON");
    let sim = Simulator::new(scenario).expect("scenario");
    let base = serve(&sim).await;
    let b = base.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_binary(&b, "v3"))
        .await
        .expect("joined");
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one result event");
    assert_eq!(result["data"]["outcome"], "succeeded", "{result}");
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 1);
    let seen = sim.signatures_seen();
    assert!(!seen.is_empty() && seen.iter().all(|s| is_v3_signature(s)));

    let b = base.clone();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || run_binary(&b, "v2"))
        .await
        .expect("joined");
    assert_ne!(code, 0);
    assert!(stderr.contains("ECS_ROLLBACK_SIGNATURE"), "{stderr}");
}
