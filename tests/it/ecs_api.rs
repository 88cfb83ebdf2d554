//! The ECS client against the simulator over real HTTP on loopback: a full stop, reset and
//! start by hand; the documented refusals; the gateway's checks; every fault kind as the client
//! observes it; pagination; tags; STS; and that no secret reaches a log line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use ecs_rollback::ecs::credentials::{parse_base_url, AssumeRole};
use ecs_rollback::ecs::{
    signer, CredentialSource, Credentials, DiskQuery, ErrorKind, InstanceQuery, Retry,
    SnapshotQuery, StopOptions,
};
use ecs_rollback::sim::world::{DiskSpec, InstanceSpec};
use ecs_rollback::sim::{FaultKind, Faults, FleetSpec, Scenario, ScriptedFault, Timings};

const T: Duration = Duration::from_secs(5);

async fn instance_status(c: &ecs_rollback::ecs::EcsClient, id: &str) -> String {
    let q = InstanceQuery {
        ids: vec![id.into()],
        ..Default::default()
    };
    let found = c.describe_instances(REGION, &q).await.expect("describe");
    assert_eq!(found.len(), 1);
    found[0].status.clone()
}

#[tokio::test]
async fn full_stop_reset_start_by_hand_over_http() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);

    assert_eq!(instance_status(&c, WEB).await, "Running");
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
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].disk_id, WEB_SYS);
    assert_eq!(disks[0].status, "In_use");
    let snaps = c
        .describe_snapshots(
            REGION,
            &SnapshotQuery {
                disk_id: Some(WEB_SYS.into()),
                ..Default::default()
            },
        )
        .await
        .expect("snapshots");
    assert_eq!(snaps.len(), 3);
    assert!(snaps.iter().all(|s| s.source_disk_id == WEB_SYS));

    // ResetDisk while Running is refused, as documented.
    let e = c
        .reset_disk(REGION, WEB_SYS, WEB_SNAP_TAGGED, false)
        .await
        .expect_err("running");
    assert_eq!(e.code(), Some("IncorrectInstanceStatus"));
    assert_eq!(e.status, Some(403));
    assert_eq!(e.retry, Retry::AfterStateChange);

    // Dry run of the stop: passes, changes nothing.
    let ack = c
        .stop_instance(
            REGION,
            WEB,
            &StopOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .expect("dry run passes");
    assert!(ack.dry_run && !ack.request_id.is_empty());
    assert_eq!(instance_status(&c, WEB).await, "Running");

    let ack = c
        .stop_instance(REGION, WEB, &StopOptions::default())
        .await
        .expect("stop");
    assert!(!ack.dry_run && !ack.request_id.is_empty());
    assert_eq!(instance_status(&c, WEB).await, "Stopping");
    // Stopping again while Stopping: IncorrectInstanceStatus.
    let e = c
        .stop_instance(REGION, WEB, &StopOptions::default())
        .await
        .expect_err("stopping");
    assert_eq!(e.code(), Some("IncorrectInstanceStatus"));
    let mut status = String::new();
    for _ in 0..100 {
        status = instance_status(&c, WEB).await;
        if status == "Stopped" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, "Stopped");

    c.reset_disk(REGION, WEB_SYS, WEB_SNAP_TAGGED, true)
        .await
        .expect("reset dry run passes");
    c.reset_disk(REGION, WEB_SYS, WEB_SNAP_TAGGED, false)
        .await
        .expect("reset");
    let e = c
        .reset_disk(REGION, WEB_SYS, WEB_SNAP_TAGGED, false)
        .await
        .expect_err("already resetting");
    assert_eq!(e.code(), Some("InvalidOperation.DiskResetInProgress"));
    // Start is refused while the reset runs, then accepted.
    let first = c.start_instance(REGION, WEB, false).await;
    let e = first.expect_err("reset still running");
    assert_eq!(e.code(), Some("DiskError"));
    let mut started = false;
    for _ in 0..100 {
        if c.start_instance(REGION, WEB, false).await.is_ok() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(started);
    let e = c
        .start_instance(REGION, WEB, false)
        .await
        .expect_err("starting");
    assert_eq!(e.code(), Some("IncorrectInstanceStatus"));
    assert!(eventually(T, || sim.instance_status(WEB).as_deref() == Some("Running")).await);

    let disk = sim.disk(WEB_SYS).expect("disk");
    assert_eq!(disk["content"], WEB_SNAP_TAGGED);
    assert_eq!(disk["resets"], 1);
    let actions: Vec<_> = sim
        .events()
        .into_iter()
        .map(|e| (e.action, e.instance_status))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("StopInstance".into(), "Running".into()),
            ("ResetDisk".into(), "Stopped".into()),
            ("StartInstance".into(), "Stopped".into()),
        ]
    );
}

#[tokio::test]
async fn documented_reset_disk_refusals() {
    // batch-02's disk without instant access (not ESSD), so a snapshot in progress is not ready
    // (ecs-evidence.md §3, C8).
    let mut fleet = ecs_rollback::sim::default_fleet();
    for d in fleet.disks.iter_mut().filter(|d| d.id == BATCH_SYS) {
        d.category = Some("cloud_efficiency".into());
    }
    let sim = sim_with(ecs_rollback::sim::Scenario {
        timings: Timings::fast(),
        fleet: Some(fleet),
        ..Default::default()
    });
    let c = inproc_client(&sim);
    // Stop batch-02 is already Stopped: good for reset preconditions.
    let cases: &[(&str, &str, &str, u16)] = &[
        (
            "d-bp1doesnotexist01",
            BATCH_SNAP,
            "InvalidDiskId.NotFound",
            404,
        ),
        (
            BATCH_SYS,
            "s-bp1doesnotexist01",
            "InvalidSnapshotId.NotFound",
            404,
        ),
        (BATCH_SYS, WEB_SNAP_OLD, "InvalidParameter.Mismatch", 403),
        (WEB_SYS, WEB_SNAP_OLD, "IncorrectInstanceStatus", 403),
        (LOCKED_SYS, LOCKED_SNAP, "InstanceLockedForSecurity", 403),
    ];
    for (disk, snap, code, status) in cases {
        let e = c
            .reset_disk(REGION, disk, snap, false)
            .await
            .expect_err(code);
        assert_eq!(e.code(), Some(*code), "{disk} {snap}");
        assert_eq!(e.status, Some(*status), "{code}");
        assert!(e.request_id.is_some());
        assert!(!e.may_have_applied);
    }
    assert!(sim.set_snapshot_progressing(BATCH_SNAP));
    let e = c
        .reset_disk(REGION, BATCH_SYS, BATCH_SNAP, false)
        .await
        .expect_err("not ready");
    assert_eq!(e.code(), Some("InvalidSnapshotId.NotReady"));
    // Wrong region: not found there.
    let e = c
        .reset_disk("cn-shanghai", BATCH_SYS, BATCH_SNAP, false)
        .await
        .expect_err("other region");
    assert_eq!(e.code(), Some("InvalidDiskId.NotFound"));
    let e = c
        .stop_instance(REGION, BATCH, &StopOptions::default())
        .await
        .expect_err("stopped");
    assert_eq!(e.code(), Some("IncorrectInstanceStatus"));
    let e = c
        .start_instance(REGION, WEB, false)
        .await
        .expect_err("running");
    assert_eq!(e.code(), Some("IncorrectInstanceStatus"));
    let e = c
        .stop_instance(REGION, LOCKED, &StopOptions::default())
        .await
        .expect_err("locked");
    assert_eq!(e.code(), Some("InstanceLockedForSecurity"));
    assert!(sim.events().is_empty(), "nothing was applied");
}

#[tokio::test]
async fn wrong_secret_is_refused_and_not_retried() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let c = http_client(
        &base,
        CredentialSource::Static(Credentials::new(
            ecs_rollback::sim::SIM_ACCESS_KEY_ID,
            "not-the-secret",
        )),
        T,
    );
    let e = c
        .describe_instances(REGION, &InstanceQuery::default())
        .await
        .expect_err("bad signature");
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(e.status, Some(400));
    assert_eq!(e.retry, Retry::NotRetryable);
    assert_eq!(e.attempts, 1);
    let c = http_client(
        &base,
        CredentialSource::Static(Credentials::new("unknown-key", "x")),
        T,
    );
    let e = c
        .describe_instances(REGION, &InstanceQuery::default())
        .await
        .expect_err("unknown key");
    assert_eq!(e.code(), Some("InvalidAccessKeyId.NotFound"));
}

/// A request built and signed by hand, sent with plain reqwest.
fn hand_signed(secret: &str, nonce: &str, format: Option<&str>) -> String {
    let mut params: BTreeMap<String, String> = [
        ("AccessKeyId", ecs_rollback::sim::SIM_ACCESS_KEY_ID),
        ("Action", "DescribeInstances"),
        ("RegionId", REGION),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", nonce),
        ("SignatureVersion", "1.0"),
        ("Version", "2014-05-26"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    params.insert(
        "Timestamp".into(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    if let Some(f) = format {
        params.insert("Format".into(), f.into());
    }
    let sig = signer::signature("POST", &params, secret);
    signer::wire_query(&params, &sig)
}

#[tokio::test]
async fn the_simulate_command_refuses_a_hand_signed_request_with_a_wrong_secret() {
    use tokio::io::AsyncBufReadExt;
    let mut child = binary_async()
        .args(["simulate", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ecs-rollback simulate");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    tokio::time::timeout(T, tokio::io::BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("prints its URL in time")
        .expect("reads stdout");
    let base = line.trim().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let http = reqwest::Client::new();
    let send = |q: String| {
        let http = http.clone();
        let url = format!("{base}?{q}");
        async move {
            let r = http.post(url).send().await.expect("sent");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let (status, body) = send(hand_signed("wrong-secret", "n-1", Some("JSON"))).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("\"Code\":\"SignatureDoesNotMatch\""),
        "{body}"
    );
    assert!(
        body.contains("server string to sign is:POST&%2F&"),
        "{body}"
    );
    let (status, body) = send(hand_signed(
        ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
        "n-2",
        Some("JSON"),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"InstanceId\":\"i-bp1webapp00000001\""));
    // The same nonce again.
    let (status, body) = send(hand_signed(
        ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
        "n-2",
        Some("JSON"),
    ))
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("SignatureNonceUsed"), "{body}");
    // No Format: XML, as the real API answers.
    let (status, body) = send(hand_signed(
        ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
        "n-3",
        None,
    ))
    .await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("<?xml") && body.contains("<DescribeInstancesResponse>"),
        "{body}"
    );
    let _ = child.kill().await;
}

#[tokio::test]
async fn a_skewed_clock_is_refused() {
    let sim = fast_sim();
    let c = inproc_client(&sim).with_clock(|| chrono::Utc::now() - chrono::Duration::minutes(20));
    let e = c
        .describe_instances(REGION, &InstanceQuery::default())
        .await
        .expect_err("expired");
    assert_eq!(e.code(), Some("InvalidTimeStamp.Expired"));
    assert_eq!(e.attempts, 1);
    let c = inproc_client(&sim).with_clock(|| chrono::Utc::now() - chrono::Duration::minutes(10));
    assert!(c
        .describe_instances(REGION, &InstanceQuery::default())
        .await
        .is_ok());
}

#[tokio::test]
async fn throttled_reads_are_retried_until_they_pass() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        faults: Faults {
            // 30%: six attempts all throttled is 0.07% per call (and the seed is fixed).
            throttle_rate: 0.3,
            seed: 3,
            ..Default::default()
        },
        ..Default::default()
    });
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    for _ in 0..10 {
        let found = c
            .describe_instances(REGION, &InstanceQuery::default())
            .await
            .expect("retried past throttling");
        assert_eq!(found.len(), 5);
    }
    let calls = sim.call_counts()["DescribeInstances"];
    assert!(calls > 10, "throttled calls were repeated: {calls}");
}

#[tokio::test]
async fn a_throttled_write_is_retried_it_was_never_applied() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        faults: scripted_fault("StopInstance", 1, FaultKind::Throttle),
        ..Default::default()
    });
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    c.stop_instance(REGION, WEB, &StopOptions::default())
        .await
        .expect("second attempt");
    assert_eq!(sim.call_counts()["StopInstance"], 2);
    assert_eq!(sim.events().len(), 1);
}

#[tokio::test]
async fn a_5xx_is_retried_for_reads_and_reported_for_writes() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        faults: Faults {
            scripted: vec![
                ScriptedFault {
                    caller: None,
                    action: "DescribeDisks".into(),
                    nth: 1,
                    fault: FaultKind::Error {
                        status: 500,
                        code: "InternalError".into(),
                        message: String::new(),
                    },
                },
                ScriptedFault {
                    caller: None,
                    action: "StartInstance".into(),
                    nth: 1,
                    fault: FaultKind::Error {
                        status: 503,
                        code: "ServiceUnavailable".into(),
                        message: String::new(),
                    },
                },
            ],
            ..Default::default()
        },
        ..Default::default()
    });
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    let disks = c
        .describe_disks(REGION, &DiskQuery::default())
        .await
        .expect("read retried");
    assert_eq!(disks.len(), 8);
    assert_eq!(sim.call_counts()["DescribeDisks"], 2);
    let e = c
        .start_instance(REGION, BATCH, false)
        .await
        .expect_err("not retried blindly");
    assert_eq!(e.code(), Some("ServiceUnavailable"));
    assert!(e.is_retryable() && e.may_have_applied);
    assert_eq!(e.attempts, 1);
    assert_eq!(sim.call_counts()["StartInstance"], 1);
}

#[tokio::test]
async fn a_response_dropped_after_the_change_reads_as_may_have_applied() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        faults: scripted_fault("StopInstance", 1, FaultKind::Drop),
        ..Default::default()
    });
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    let e = c
        .stop_instance(REGION, WEB, &StopOptions::default())
        .await
        .expect_err("answer lost");
    assert_eq!(e.kind, ErrorKind::ResponseLost);
    assert!(e.may_have_applied);
    assert_eq!(
        e.attempts, 1,
        "a write whose answer was lost is not repeated"
    );
    // It was applied: the state says so.
    let status = instance_status(&c, WEB).await;
    assert!(status == "Stopping" || status == "Stopped", "{status}");
    assert_eq!(sim.events().len(), 1);
}

#[tokio::test]
async fn a_slow_answer_times_out_a_write_is_reported_a_read_retried() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        faults: Faults {
            scripted: vec![
                ScriptedFault {
                    caller: None,
                    action: "StopInstance".into(),
                    nth: 1,
                    fault: FaultKind::Slow { ms: 1500 },
                },
                ScriptedFault {
                    caller: None,
                    action: "DescribeInstances".into(),
                    nth: 1,
                    fault: FaultKind::Slow { ms: 1500 },
                },
            ],
            ..Default::default()
        },
        ..Default::default()
    });
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), Duration::from_millis(300));
    let e = c
        .stop_instance(REGION, WEB, &StopOptions::default())
        .await
        .expect_err("timeout");
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.may_have_applied && e.attempts == 1);
    assert_eq!(sim.events().len(), 1, "the slow call was applied");
    let found = c
        .describe_instances(REGION, &InstanceQuery::default())
        .await
        .expect("second attempt is fast");
    assert_eq!(found.len(), 5);
    assert_eq!(sim.call_counts()["DescribeInstances"], 2);
}

#[tokio::test]
async fn a_refused_connection_was_never_sent() {
    // Bind and drop to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let c = http_client(&format!("http://127.0.0.1:{port}/"), sim_credentials(), T);
    let e = c
        .stop_instance(REGION, WEB, &StopOptions::default())
        .await
        .expect_err("nothing listens");
    assert_eq!(e.kind, ErrorKind::Connect);
    assert!(!e.may_have_applied);
    assert!(
        e.attempts > 1,
        "a write that was never sent may be repeated"
    );
}

fn big_fleet(n: usize) -> FleetSpec {
    let mut fleet = FleetSpec::default();
    for i in 0..n {
        fleet.instances.push(InstanceSpec {
            id: format!("i-bp1fleet{i:010}"),
            region: REGION.into(),
            name: format!("fleet-{i}"),
            status: "Running".into(),
            locks: vec![],
            tags: [("team".to_owned(), "drill".to_owned())].into(),
            no_stock: false,
        });
        fleet.disks.push(DiskSpec {
            id: format!("d-bp1fleet{i:010}"),
            region: REGION.into(),
            name: String::new(),
            instance_id: Some(format!("i-bp1fleet{i:010}")),
            disk_type: "system".into(),
            size: 40,
            category: None,
            locks: vec![],
            tags: [("team".to_owned(), "drill".to_owned())].into(),
        });
    }
    fleet
}

#[tokio::test]
async fn pagination_is_followed_and_id_lists_are_chunked() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        fleet: Some(big_fleet(230)),
        ..Default::default()
    });
    let c = inproc_client(&sim);
    let all = c
        .describe_instances(REGION, &InstanceQuery::default())
        .await
        .expect("all pages");
    assert_eq!(all.len(), 230);
    assert_eq!(sim.call_counts()["DescribeInstances"], 3, "100 per page");
    let ids: Vec<String> = (0..150).map(|i| format!("i-bp1fleet{i:010}")).collect();
    let some = c
        .describe_instances(
            REGION,
            &InstanceQuery {
                ids: ids.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("two chunks");
    assert_eq!(some.len(), 150);
    let tagged = c
        .describe_disks(
            REGION,
            &DiskQuery {
                tags: vec![("team".into(), "drill".into())],
                ..Default::default()
            },
        )
        .await
        .expect("tag filter");
    assert_eq!(tagged.len(), 230);
    let disk_ids: Vec<String> = (0..120).map(|i| format!("d-bp1fleet{i:010}")).collect();
    let tags = c
        .list_tag_resources(REGION, "disk", &disk_ids)
        .await
        .expect("list tags");
    assert_eq!(tags.len(), 120);
}

#[tokio::test]
async fn tags_are_set_listed_removed_and_capped_at_twenty() {
    let sim = fast_sim();
    let c = inproc_client(&sim);
    let disk = vec![WEB_SYS.to_owned()];
    c.tag_resources(
        REGION,
        "disk",
        &disk,
        &[("ecs-rollback:run".into(), "a b*c~d/e+f=g&h 中文".into())],
    )
    .await
    .expect("tag");
    let listed = c
        .list_tag_resources(REGION, "disk", &disk)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tag_value, "a b*c~d/e+f=g&h 中文");
    let more: Vec<(String, String)> = (0..19).map(|i| (format!("k{i}"), "v".into())).collect();
    c.tag_resources(REGION, "disk", &disk, &more)
        .await
        .expect("20 in all");
    let e = c
        .tag_resources(
            REGION,
            "disk",
            &disk,
            &[("one-too-many".into(), "v".into())],
        )
        .await
        .expect_err("21st");
    assert_eq!(e.code(), Some("OperationDenied.QuotaExceed"));
    // Overwriting an existing key is not a new tag.
    c.tag_resources(REGION, "disk", &disk, &[("k0".into(), "w".into())])
        .await
        .expect("overwrite");
    c.untag_resources(REGION, "disk", &disk, &["ecs-rollback:run".into()])
        .await
        .expect("untag");
    let listed = c
        .list_tag_resources(REGION, "disk", &disk)
        .await
        .expect("list");
    assert_eq!(listed.len(), 19);
    let e = c
        .tag_resources(REGION, "disk", &disk, &[("acs:x".into(), "v".into())])
        .await
        .expect_err("reserved prefix");
    assert_eq!(e.code(), Some("InvalidTagKey.Malformed"));
}

#[tokio::test]
async fn assumed_role_credentials_are_cached() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let role = AssumeRole {
        role_arn: "acs:ram::1234567890123456:role/ecs-rollback".into(),
        session_name: "ecs-rollback-test".into(),
        endpoint: parse_base_url(&base).expect("url"),
        duration_seconds: 3600,
    };
    let source = CredentialSource::AssumeRole {
        base: Credentials::new(
            ecs_rollback::sim::SIM_ACCESS_KEY_ID,
            ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
        ),
        role,
    };
    let c = http_client(&base, source, T);
    for _ in 0..3 {
        c.describe_instances(REGION, &InstanceQuery::default())
            .await
            .expect("signed with the role's credentials and token");
    }
    assert_eq!(sim.call_counts()["AssumeRole"], 1);
    assert_eq!(sim.call_counts()["DescribeInstances"], 3);
}

/// Captures everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_token_or_signature_reaches_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secret = "the-static-secret-value";
    let token = "the-static-security-token";
    let sim = sim_with(Scenario {
        access_key_secret: secret.into(),
        timings: Timings::fast(),
        faults: Faults {
            throttle_rate: 0.3,
            seed: 11,
            ..Default::default()
        },
        ..Default::default()
    });
    let base = serve(&sim).await;
    let good = http_client(
        &base,
        CredentialSource::Static(Credentials::new(
            ecs_rollback::sim::SIM_ACCESS_KEY_ID,
            secret,
        )),
        T,
    );
    for _ in 0..5 {
        good.describe_instances(REGION, &InstanceQuery::default())
            .await
            .expect("ok");
    }
    // A token the server does not expect, and a wrong secret: errors are logged too.
    let bad = http_client(
        &base,
        CredentialSource::Static(
            Credentials::new(ecs_rollback::sim::SIM_ACCESS_KEY_ID, "wrong-secret")
                .with_token(token),
        ),
        T,
    );
    let e = bad
        .stop_instance(REGION, WEB, &StopOptions::default())
        .await
        .expect_err("bad signature");
    tracing::error!(error = %e, debug = ?e, client = ?bad, "logged as the orchestrator would");
    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf8");
    assert!(logs.contains("ECS call"), "the capture works: {logs}");
    for needle in [secret, "wrong-secret", token, "Signature="] {
        assert!(!logs.contains(needle), "{needle} leaked into the logs");
    }
    // The server's StringToSign was logged, with the token cut out of it.
    assert!(logs.contains("SecurityToken%3D<redacted>"), "{logs}");
    assert!(!format!("{e}").contains(token));
}

#[tokio::test]
async fn create_snapshot_follows_the_documented_rules_and_its_client_token() {
    // The snapshot progresses for 3 s: long enough for the four calls made meanwhile to see it
    // progressing on a loaded machine (60 ms was not).
    let sim = ecs_rollback::sim::Simulator::with_timings(ecs_rollback::sim::Timings {
        snapshot_ms: 3000,
        ..ecs_rollback::sim::Timings::fast()
    });
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    let tags = vec![(
        "ecs-rollback:undo-of".to_owned(),
        "0123456789abcdef".to_owned(),
    )];
    let make = |name: &'static str, token: &'static str| {
        let c = &c;
        let tags = tags.clone();
        async move {
            c.create_snapshot(REGION, WEB_SYS, name, "before the rollback", token, &tags)
                .await
        }
    };
    let (id, rid) = make("ecs-rollback-undo-a", "token-a")
        .await
        .expect("created");
    assert!(id.starts_with("s-") && !rid.is_empty());
    // The same token and parameters: the same snapshot, nothing new.
    let (again, _) = make("ecs-rollback-undo-a", "token-a")
        .await
        .expect("same token");
    assert_eq!(again, id);
    let created = || {
        sim.events()
            .iter()
            .filter(|e| e.action == "CreateSnapshot")
            .count()
    };
    assert_eq!(created(), 1);
    // The same token with other parameters.
    let e = make("ecs-rollback-undo-b", "token-a")
        .await
        .expect_err("mismatch");
    assert_eq!(e.code(), Some("IdempotentParameterMismatch"));
    assert_eq!(e.retry, Retry::NotRetryable);
    // Another snapshot while this one is being taken: refused, a state to wait for
    // (ecs-evidence.md §3, C2).
    let e = make("ecs-rollback-undo-c", "token-c")
        .await
        .expect_err("busy");
    assert_eq!(e.code(), Some("IncorrectDiskStatus.CreatingSnapshot"));
    assert_eq!(e.retry, Retry::AfterStateChange);
    // A reset to another snapshot is refused while it progresses (the rollback waits for it).
    let e = c
        .reset_disk(REGION, WEB_SYS, WEB_SNAP_TAGGED, true)
        .await
        .expect_err("unfinished snapshot");
    assert_eq!(e.code(), Some("IncorrectDiskStatus.HasUnfinishedSnapshot"));
    // It progresses, then is usable, with its tags.
    let q = SnapshotQuery {
        ids: vec![id.clone()],
        ..Default::default()
    };
    let mut ready = false;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < until {
        let s = c.describe_snapshots(REGION, &q).await.expect("describe");
        if s[0].is_complete() {
            assert_eq!(s[0].source_disk_id, WEB_SYS);
            assert_eq!(
                s[0].tags.get("ecs-rollback:undo-of"),
                Some("0123456789abcdef")
            );
            ready = true;
            break;
        }
        assert_eq!(s[0].status, "progressing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the snapshot completes");
    // Names: 2 to 128 characters, a letter first, not http(s):// or auto.
    for bad in ["auto-undo", "1undo", "x", "https://undo"] {
        let e = c
            .create_snapshot(REGION, WEB_SYS, bad, "", "token-name", &[])
            .await
            .expect_err(bad);
        assert_eq!(e.code(), Some("InvalidSnapshotName.Malformed"), "{bad}");
    }
    // An instance locked for security: no snapshot.
    assert!(sim.set_instance_locks(WEB, &["security"]));
    let e = make("ecs-rollback-undo-d", "token-d")
        .await
        .expect_err("locked");
    assert_eq!(e.code(), Some("InstanceLockedForSecurity"));
    assert!(sim.set_instance_locks(WEB, &[]));
    let e = c
        .create_snapshot(REGION, "d-bp1nosuchdisk00001", "undo", "", "token-e", &[])
        .await
        .expect_err("no disk");
    assert_eq!(e.code(), Some("InvalidDiskId.NotFound"));
    assert_eq!(created(), 1);
}
