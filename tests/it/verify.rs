//! Verified recovery end to end over loopback HTTP: the service checked after the start by a
//! Cloud Assistant command (the simulator's) and by a probe from the function to the instance's
//! own address (a health server on 127.0.0.1, which the simulator reports as the instance's
//! private IP and which answers as the simulated service is: up unless the disk holds a
//! snapshot the scenario marks bad).

use std::time::Duration;

use crate::common::*;
use ecs_rollback::ledger::{self, Phase};
use ecs_rollback::report::{Outcome, Report};
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::world::AssistantSpec;
use ecs_rollback::sim::{Scenario, Simulator, Timings};
use serde_json::{json, Value};

fn scenario(assistant: AssistantSpec) -> Scenario {
    Scenario {
        timings: Timings::fast(),
        cloud_assistant: assistant,
        ..Default::default()
    }
}

/// The web instance's private IP is loopback: its probe reaches the health server below.
fn loopback_web(bad: &[&str], agent_never: &[&str]) -> AssistantSpec {
    AssistantSpec {
        bad_snapshots: bad.iter().map(|s| (*s).to_owned()).collect(),
        agent_never: agent_never.iter().map(|s| (*s).to_owned()).collect(),
        private_ips: [(WEB.to_owned(), "127.0.0.1".to_owned())].into(),
        ..Default::default()
    }
}

/// A health server on 127.0.0.1 answering for `instance` as the simulator says its service is.
async fn health_server(sim: Simulator, instance: &'static str) -> u16 {
    use axum::http::StatusCode;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let sim = sim.clone();
            async move {
                if sim.service_up(instance) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "down")
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

fn rollback(key: &str, snapshot: &str, verify: Value) -> Value {
    json!({"diskId": WEB_SYS, "snapshotId": snapshot, "idempotencyKey": key, "verify": verify})
}

fn command() -> Value {
    json!({"command": {"type": "RunShellScript", "content": "mount -a && systemctl is-active app", "timeoutSeconds": 30}, "agentWaitSeconds": 10})
}

fn verification(r: &Report) -> &ecs_rollback::report::Verification {
    r.verification.as_ref().expect("a verification")
}

fn verify_tag(b: &Bench) -> Option<String> {
    b.disk(WEB_SYS)["tags"][ledger::VERIFY_TAG]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn a_good_snapshot_is_verified_by_a_command() {
    let b = bench_with(scenario(AssistantSpec::default()), Settings::fast()).await;
    let r = b
        .run(rollback("verify-good-cmd", WEB_SNAP_TAGGED, command()))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    let v = verification(&r);
    assert_eq!(v.result, "verified");
    assert_eq!(v.checks.len(), 1);
    let c = &v.checks[0];
    assert_eq!(
        (c.kind.as_str(), c.verdict.as_str()),
        ("command", "healthy")
    );
    assert!(c.invoke_id.as_deref().is_some_and(|i| i.starts_with("t-")));
    assert!(
        c.output_tail
            .as_deref()
            .is_some_and(|o| o.contains("SERVICE_OK")),
        "{c:?}"
    );
    let verified = v.verified_ms.expect("time to verified recovery");
    assert!(verified >= r.downtime_ms.expect("downtime"), "{r:?}");
    assert_eq!(b.applied("RunCommand"), 1);
    assert_eq!(b.status(WEB), "Running");
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
    assert_eq!(b.run_record(WEB_SYS).map(|r| r.phase), Some(Phase::Done));
    assert_eq!(verify_tag(&b), None, "the mark is removed at the end");
    let event = r.to_cloud_event();
    assert_eq!(event["data"]["timings"]["verifiedMs"], verified);
    assert_eq!(event["data"]["verification"]["result"], "verified");
}

#[tokio::test]
async fn a_good_snapshot_is_verified_by_an_http_probe() {
    let b = bench_with(scenario(loopback_web(&[], &[])), Settings::fast()).await;
    let port = health_server(b.sim.clone(), WEB).await;
    let verify = json!({"probe": {"http": format!("http://{{privateIp}}:{port}/health"), "bodyContains": "ok"}, "windowSeconds": 20});
    let r = b
        .run(rollback("verify-good-http", WEB_SNAP_TAGGED, verify))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    let c = &verification(&r).checks[0];
    assert_eq!(c.kind, "http");
    assert_eq!(c.target, format!("http://127.0.0.1:{port}/health"));
    assert_eq!(c.verdict, "healthy");
    assert_eq!(b.applied("RunCommand"), 0, "a probe alone runs no command");
}

#[tokio::test]
async fn a_bad_snapshot_with_report_says_what_failed_and_leaves_the_instance_running() {
    let b = bench_with(
        scenario(loopback_web(&[WEB_SNAP_TAGGED], &[])),
        Settings::fast(),
    )
    .await;
    let port = health_server(b.sim.clone(), WEB).await;
    let mut verify = command();
    verify["probe"] = json!({"http": format!("http://{{privateIp}}:{port}/health")});
    verify["windowSeconds"] = json!(2);
    let event = rollback("verify-bad-report", WEB_SNAP_TAGGED, verify);
    let r = b.run(&event).await;
    assert_eq!(r.outcome, Outcome::VerificationFailed, "{r:?}");
    let e = r.error.as_ref().expect("error");
    assert_eq!(e.code, "VerificationFailed");
    assert!(!e.retryable);
    assert!(e.message.contains("ExitCodeNonzero"), "{}", e.message);
    assert!(e.message.contains("HTTP 503"), "{}", e.message);
    let v = verification(&r);
    assert_eq!(v.result, "unhealthy");
    assert!(v.checks.iter().all(|c| c.verdict == "unhealthy"), "{v:?}");
    assert!(v.checks[0]
        .output_tail
        .as_deref()
        .is_some_and(|o| o.contains("SERVICE_DOWN")));
    assert_eq!(v.verified_ms, None);
    assert_eq!(b.settled_status(WEB).await, "Running");
    let record = b.run_record(WEB_SYS).expect("record");
    assert_eq!(
        (record.phase, record.failure.as_deref()),
        (Phase::Failed, Some("VerificationFailed"))
    );
    // A redelivery reports it again and runs nothing.
    let again = b.run(&event).await;
    assert_eq!(again.outcome, Outcome::VerificationFailed, "{again:?}");
    assert_eq!(
        again.error.as_ref().map(|e| e.code.as_str()),
        Some("VerificationFailed")
    );
    assert_eq!(b.applied("RunCommand"), 1);
    assert_eq!(b.resets(WEB_SYS), 1);
}

#[tokio::test]
async fn a_bad_snapshot_with_undo_goes_back_to_the_undo_snapshot_verified() {
    let b = bench_with(
        scenario(loopback_web(&[WEB_SNAP_TAGGED], &[])),
        Settings::fast(),
    )
    .await;
    let port = health_server(b.sim.clone(), WEB).await;
    let mut verify = command();
    verify["probe"] = json!({"http": format!("http://{{privateIp}}:{port}/health")});
    verify["windowSeconds"] = json!(3);
    let mut event = rollback("verify-bad-undo", WEB_SNAP_TAGGED, verify);
    event["preserveCurrent"] = json!(true);
    event["onVerifyFailure"] = json!("undo");
    let r = b.run(&event).await;
    assert_eq!(r.outcome, Outcome::RolledBackToUndo, "{r:?}");
    let undo = r
        .target
        .undo_snapshot_id
        .clone()
        .expect("the undo snapshot");
    let v = verification(&r);
    assert!(v.undone);
    assert_eq!(v.result, "verified", "the undo is verified: {v:?}");
    assert!(v.verified_ms.is_some());
    let rounds: Vec<(u8, &str)> = v
        .checks
        .iter()
        .map(|c| (c.round, c.verdict.as_str()))
        .collect();
    assert_eq!(
        rounds,
        [
            (1, "unhealthy"),
            (1, "unhealthy"),
            (2, "healthy"),
            (2, "healthy")
        ]
    );
    let e = r.error.as_ref().expect("error");
    assert_eq!(e.code, "RolledBackToUndo");
    assert!(e.message.contains(&undo), "{}", e.message);
    assert_eq!(b.disk(WEB_SYS)["content"], undo.as_str());
    assert_eq!(b.settled_status(WEB).await, "Running");
    assert_eq!(b.applied("RunCommand"), 2, "one command per round");
    assert_eq!(b.resets(WEB_SYS), 2, "the rollback, then the undo: no loop");
    // The undo's reset is the one reset after a start: to the undo snapshot, instance Stopped.
    let resets: Vec<_> = b
        .changes()
        .into_iter()
        .filter(|e| e.action == "ResetDisk")
        .collect();
    assert!(
        resets.iter().all(|e| e.instance_status == "Stopped"),
        "{resets:?}"
    );
    assert!(resets[1].detail.contains(&undo), "{resets:?}");
    assert_eq!(verify_tag(&b), None);
}

#[tokio::test]
async fn an_agent_that_never_comes_up_leaves_the_run_unverified() {
    let b = bench_with(scenario(loopback_web(&[], &[WEB])), Settings::fast()).await;
    let mut verify = command();
    verify["agentWaitSeconds"] = json!(2);
    let r = b
        .run(rollback("verify-no-agent", WEB_SNAP_TAGGED, verify))
        .await;
    assert_eq!(r.outcome, Outcome::Unverified, "{r:?}");
    let e = r.error.as_ref().expect("error");
    assert_eq!(e.code, "Unverified");
    assert!(e.message.contains("did not report ready"), "{}", e.message);
    assert_eq!(verification(&r).checks[0].verdict, "could-not-verify");
    assert_eq!(
        b.applied("RunCommand"),
        0,
        "nothing was run without an agent"
    );
    assert_eq!(b.status(WEB), "Running");
    assert_eq!(b.disk(WEB_SYS)["content"], WEB_SNAP_TAGGED);
}

#[tokio::test]
async fn a_probe_address_that_is_not_the_instances_own_is_refused_before_anything() {
    let b = bench_with(scenario(AssistantSpec::default()), Settings::fast()).await;
    for address in [
        json!({"http": "http://169.254.169.254/latest/meta-data"}),
        json!({"http": "http://{privateIp}@evil.example/health"}),
        json!({"tcp": "10.0.0.5:22"}),
    ] {
        let r = b
            .run(rollback(
                "verify-refused",
                WEB_SNAP_TAGGED,
                json!({"probe": address}),
            ))
            .await;
        assert_eq!(r.outcome, Outcome::Rejected, "{r:?}");
        let e = r.error.as_ref().expect("error");
        assert_eq!(e.code, "InvalidRequest");
        assert!(e.message.contains("verify.probe"), "{}", e.message);
    }
    assert!(b.changes().is_empty(), "{:?}", b.changes());
}

#[tokio::test]
async fn a_run_dropped_while_verifying_resumes_on_the_same_invocation() {
    // The command runs long enough for the run to be dropped while it follows it.
    let b = bench_with(
        Scenario {
            timings: Timings {
                command_ms: 1500,
                ..Timings::fast()
            },
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    let event = rollback("verify-crash", WEB_SNAP_TAGGED, command());
    let sim = b.sim.clone();
    tokio::select! {
        r = b.handler.handle(&event, None) => panic!("the run ended before the crash: {:?}", r.into_reports()),
        _ = async {
            while !sim.events().iter().any(|e| e.action == "RunCommand") {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Let the invocation be recorded (or not: its ClientToken leads back to it).
            tokio::time::sleep(Duration::from_millis(50)).await;
        } => {}
    }
    assert_eq!(
        b.run_record(WEB_SYS).map(|r| r.phase),
        Some(Phase::Verifying)
    );
    let r = b.redeliver_until_done(&event).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(verification(&r).result, "verified");
    assert_eq!(b.applied("RunCommand"), 1, "the command ran once");
    assert_eq!(b.resets(WEB_SYS), 1);
    assert_safe(&b.changes(), WEB_SYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_of_20_with_2_bad_snapshots_reports_verified_rto_and_the_two() {
    let fleet = opted_in_fleet(20, "verif", &[], 0, ("", ""));
    let bad = ["s-bp1verif0000000003", "s-bp1verif0000000011"];
    let b = bench_with(
        Scenario {
            timings: Timings::fast(),
            fleet: Some(fleet),
            cloud_assistant: AssistantSpec {
                bad_snapshots: bad.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            },
            ..Default::default()
        },
        Settings::fast(),
    )
    .await;
    let targets: Vec<Value> = (0..20)
        .map(|i| json!({"instanceId": format!("i-bp1verif{i:010}")}))
        .collect();
    let event = json!({"drill": {"name": "verified", "targets": targets, "concurrency": 10,
        "rtoSeconds": 120, "verify": command()}, "scheduledTime": "2026-11-29T03:00:00Z"});
    let reply = b.handler.handle(&event, None).await;
    assert_eq!(reply.reports.len(), 20);
    let failed: Vec<String> = reply
        .reports
        .iter()
        .filter(|r| r.outcome == Outcome::VerificationFailed)
        .filter_map(|r| r.target.snapshot_id.clone())
        .collect();
    assert_eq!(failed.len(), 2, "{:?}", reply.reports);
    for s in bad {
        assert!(failed.contains(&s.to_owned()), "{failed:?}");
    }
    let summary = &reply.summaries[0]["data"];
    assert_eq!(summary["succeeded"], 18, "{summary}");
    assert_eq!(summary["verificationFailed"], 2, "{summary}");
    assert_eq!(summary["measuredTo"], "verified");
    assert_eq!(summary["recovered"], 18, "only verified targets recovered");
    assert_eq!(summary["objectiveMet"], true);
    let per: &Vec<Value> = summary["perTarget"].as_array().expect("per target");
    for t in per {
        let verified = t["verification"] == "verified";
        assert_eq!(t["verifiedMs"].is_u64(), verified, "{t}");
        if verified {
            assert!(t["verifiedMs"].as_u64() >= t["recoveryMs"].as_u64(), "{t}");
        }
    }
    // The HTML report, from the JSON lines `invoke` prints.
    let mut lines: Vec<String> = reply
        .reports
        .iter()
        .map(|r| r.to_cloud_event().to_string())
        .collect();
    lines.push(reply.summaries[0].to_string());
    let report =
        ecs_rollback::drill_report::DrillReport::from_jsonl(&lines.join("\n")).expect("a report");
    assert!(report.to_verified);
    let html = report.html();
    assert!(html.contains("<th>verified recovery</th>"), "{html}");
    assert!(html.contains("stop asked → service verified"));
    assert!(
        html.contains("service verified on 18, check failed on 2"),
        "{html}"
    );
    assert_eq!(html.matches("<td>VerificationFailed</td>").count(), 2);
    for i in [3, 11] {
        let disk = format!("d-bp1verif{i:010}");
        assert!(
            html.contains(&format!(
                "<tr class=\"target\" data-outcome=\"verification-failed\"><td>{disk}</td>"
            )),
            "{disk}"
        );
    }
}

/// Drops the run once the simulator applied the `nth` call of `action`, then delivers the
/// event again until it ends: the undo resumes from its mark, never loops, never resets a
/// started instance, and runs one command per round.
async fn undo_crash(action: &str, nth: usize, key: &str) {
    let b = bench_with(
        scenario(loopback_web(&[WEB_SNAP_TAGGED], &[])),
        Settings::fast(),
    )
    .await;
    let mut event = rollback(key, WEB_SNAP_TAGGED, command());
    event["preserveCurrent"] = json!(true);
    event["onVerifyFailure"] = json!("undo");
    let sim = b.sim.clone();
    let dropped = tokio::select! {
        _ = b.handler.handle(&event, None) => false,
        _ = async {
            while sim.events().iter().filter(|e| e.action == action).count() < nth {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } => true,
    };
    assert!(dropped, "the run ended before the {nth}th {action}");
    let r = b.redeliver_until_done(&event).await;
    assert_eq!(
        r.outcome,
        Outcome::RolledBackToUndo,
        "{action} #{nth}: {r:?}"
    );
    let undo: Vec<String> = b.sim.state()["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .filter(|s| s["tags"][ledger::UNDO_TAG].is_string())
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(undo.len(), 1, "{undo:?}");
    assert_eq!(b.disk(WEB_SYS)["content"], undo[0].as_str());
    assert_eq!(b.settled_status(WEB).await, "Running");
    assert_eq!(b.applied("RunCommand"), 2, "one command per round");
    let events = b.changes();
    let first_start = events
        .iter()
        .find(|e| e.action == "StartInstance")
        .map(|e| e.seq)
        .expect("a start");
    for e in events.iter().filter(|e| e.action == "ResetDisk") {
        assert_eq!(e.instance_status, "Stopped", "{events:?}");
        if e.seq > first_start {
            assert!(
                e.detail.contains(&undo[0]),
                "after the start, only the undo: {events:?}"
            );
        }
    }
    // Every reset to the undo comes before the start that follows it: none after round 2 began.
    let last_reset = events
        .iter()
        .filter(|e| e.action == "ResetDisk")
        .map(|e| e.seq)
        .max();
    let last_start = events
        .iter()
        .filter(|e| e.action == "StartInstance")
        .map(|e| e.seq)
        .max();
    assert!(last_reset < last_start, "{events:?}");
    assert_eq!(verify_tag(&b), None);
}

#[tokio::test]
async fn a_run_dropped_during_the_undo_resumes_it_once() {
    // After the undo's stop was applied, and after its reset was applied.
    undo_crash("StopInstance", 2, "verify-undo-crash-stop").await;
    undo_crash("ResetDisk", 2, "verify-undo-crash-reset").await;
}

#[tokio::test]
async fn a_tcp_probe_passes_on_a_listening_port_and_fails_on_a_closed_one() {
    let b = bench_with(scenario(loopback_web(&[], &[])), Settings::fast()).await;
    let port = health_server(b.sim.clone(), WEB).await;
    let r = b
        .run(rollback(
            "verify-tcp-open",
            WEB_SNAP_TAGGED,
            json!({"probe": {"tcp": format!("{{privateIp}}:{port}")}, "windowSeconds": 5}),
        ))
        .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(
        verification(&r).checks[0].target,
        format!("tcp://127.0.0.1:{port}")
    );
    // A port nothing listens on (bound, then closed): the connection is refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let b = bench_with(scenario(loopback_web(&[], &[])), Settings::fast()).await;
    let r = b
        .run(rollback(
            "verify-tcp-closed",
            WEB_SNAP_TAGGED,
            json!({"probe": {"tcp": format!("{{privateIp}}:{closed}")}, "windowSeconds": 2}),
        ))
        .await;
    assert_eq!(r.outcome, Outcome::VerificationFailed, "{r:?}");
    assert!(verification(&r).checks[0]
        .detail
        .contains("connection refused"));
    assert_eq!(b.settled_status(WEB).await, "Running");
}

#[tokio::test]
async fn the_deployment_default_applies_and_undo_without_an_undo_snapshot_reports() {
    let settings = Settings {
        verify: Some(ecs_rollback::verify::parse(&command()).expect("a valid block")),
        on_verify_failure: ecs_rollback::verify::OnVerifyFailure::Undo,
        ..Settings::fast()
    };
    let b = bench_with(scenario(loopback_web(&[WEB_SNAP_TAGGED], &[])), settings).await;
    let r = b
        .run(json!({"diskId": WEB_SYS, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "verify-default"}))
        .await;
    assert_eq!(r.outcome, Outcome::VerificationFailed, "{r:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("undo needs preserveCurrent")),
        "{r:?}"
    );
    assert_eq!(b.resets(WEB_SYS), 1, "no undo without an undo snapshot");
    assert_eq!(b.applied("RunCommand"), 1);
}

#[tokio::test]
async fn an_instance_that_stays_stopped_is_not_checked() {
    let b = bench_with(scenario(AssistantSpec::default()), Settings::fast()).await;
    let mut event = rollback("verify-stays-stopped", WEB_SNAP_TAGGED, command());
    event["startAfterReset"] = json!(false);
    let r = b.run(&event).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    let step = r
        .steps
        .iter()
        .find(|s| s.name == "verify")
        .expect("a verify step");
    assert_eq!(step.status, ecs_rollback::report::StepStatus::Skipped);
    assert!(r.verification.is_none());
    assert_eq!(b.applied("RunCommand"), 0);
    assert_eq!(b.settled_status(WEB).await, "Stopped");
}
