//! Fleet drills against the simulator over loopback HTTP: `maxErrors` stops new targets, a tag
//! selector picks them, polling is shared across targets, and throttling slows a drill down
//! without failing it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ecs_rollback::handler::Handler;
use ecs_rollback::report::Outcome;
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::world::{DiskSpec, InstanceSpec, SnapshotSpec};
use ecs_rollback::sim::{Faults, FleetSpec, Scenario, Simulator, Timings};
use serde_json::{json, Value};

/// `n` opted-in running instances `i-bp1drill{i:010}`, each with a system disk and a snapshot;
/// `locked` of them locked for security; the first `tagged` tagged `drill=weekly`.
fn fleet(n: usize, locked: &[usize], tagged: usize) -> FleetSpec {
    let mut f = FleetSpec::default();
    for i in 0..n {
        let mut tags: BTreeMap<String, String> =
            [("ecs-rollback".to_owned(), "enabled".to_owned())].into();
        if i < tagged {
            tags.insert("drill".into(), "weekly".into());
        }
        f.instances.push(InstanceSpec {
            id: format!("i-bp1drill{i:010}"),
            region: REGION.into(),
            name: format!("drill-{i}"),
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
            id: format!("d-bp1drill{i:010}"),
            region: REGION.into(),
            name: String::new(),
            instance_id: Some(format!("i-bp1drill{i:010}")),
            disk_type: "system".into(),
            size: 40,
            category: None,
            locks: vec![],
            tags: BTreeMap::new(),
        });
        f.snapshots.push(SnapshotSpec {
            id: format!("s-bp1drill{i:010}"),
            disk_id: format!("d-bp1drill{i:010}"),
            name: "golden".into(),
            status: "accomplished".into(),
            age_hours: 0.0,
            created_at: Some("2026-11-28T00:00:00Z".into()),
            tags: BTreeMap::new(),
        });
    }
    f
}

async fn setup(fleet: FleetSpec, faults: Faults) -> (Simulator, Handler) {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        fleet: Some(fleet),
        faults,
        ..Default::default()
    });
    let base = serve(&sim).await;
    let h = Handler::new(
        http_client(&base, sim_credentials(), Duration::from_secs(5)),
        Settings::fast(),
        Some(REGION.into()),
    );
    (sim, h)
}

fn targets(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"instanceId": format!("i-bp1drill{i:010}")}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_errors_stops_new_targets() {
    let (sim, h) = setup(fleet(25, &[0, 1], 0), Faults::default()).await;
    let event = json!({"drill": {"name": "limits", "targets": targets(25), "concurrency": 3, "maxErrors": 1, "rtoSeconds": 60},
                       "scheduledTime": "2026-11-29T03:00:00Z"});
    let reply = h.handle(&event, None).await;
    assert_eq!(reply.reports.len(), 25, "one result per target");
    let summary = &reply.summaries[0]["data"];
    assert_eq!(summary["failed"], 2);
    assert_eq!(summary["stoppedEarly"], true);
    let skipped = summary["skipped"].as_u64().expect("skipped");
    let succeeded = summary["succeeded"].as_u64().expect("succeeded");
    assert!(
        skipped >= 18,
        "no new target starts once maxErrors is exceeded: {summary}"
    );
    assert_eq!(skipped + succeeded + 2, 25);
    let stops = sim
        .events()
        .iter()
        .filter(|e| e.action == "StopInstance")
        .count() as u64;
    assert_eq!(stops, succeeded, "the skipped targets were never touched");
    assert_eq!(summary["objectiveMet"], false);
    let skipped_reports = reply
        .reports
        .iter()
        .filter(|r| r.outcome == Outcome::Ignored)
        .count() as u64;
    assert_eq!(skipped_reports, skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_selected_drill_with_a_summary() {
    let (sim, h) = setup(fleet(25, &[], 10), Faults::default()).await;
    let event = json!({"drill": {"name": "by-tag", "selector": {"tags": {"drill": "weekly"}}, "concurrency": 10, "rtoSeconds": 60},
                       "scheduledTime": "2026-11-29T03:00:00Z"});
    let reply = h.handle(&event, None).await;
    assert_eq!(reply.reports.len(), 10);
    assert!(
        reply
            .reports
            .iter()
            .all(|r| r.outcome == Outcome::Succeeded),
        "{:?}",
        reply.reports.iter().map(|r| &r.error).collect::<Vec<_>>()
    );
    let s = &reply.summaries[0];
    assert_eq!(s["type"], "ecs-rollback.drill-summary");
    let d = &s["data"];
    assert_eq!(d["targets"], 10);
    assert_eq!(d["succeeded"], 10);
    assert_eq!(d["objectiveMet"], true);
    for k in ["min", "median", "p95", "max"] {
        assert!(d["recoveryMs"][k].as_u64().is_some(), "{k}: {d}");
    }
    assert!(d["recoveryMs"]["min"].as_u64() <= d["recoveryMs"]["max"].as_u64());
    let resets = sim
        .events()
        .iter()
        .filter(|e| e.action == "ResetDisk")
        .count();
    assert_eq!(resets, 10, "only the tagged instances");
    // Delivered again: every target is a duplicate.
    let again = h.handle(&event, None).await;
    assert!(again
        .reports
        .iter()
        .all(|r| r.outcome == Outcome::Duplicate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_is_shared_across_targets() {
    let n = 25;
    let (sim, h) = setup(fleet(n, &[], 0), Faults::default()).await;
    let event = json!({"drill": {"name": "batched", "targets": targets(n), "concurrency": 25}, "scheduledTime": "2026-11-29T03:00:00Z"});
    let reply = h.handle(&event, None).await;
    assert!(reply
        .reports
        .iter()
        .all(|r| r.outcome == Outcome::Succeeded));
    let describes = sim
        .call_counts()
        .get("DescribeInstances")
        .copied()
        .unwrap_or(0) as usize;
    // Per target: one read at the start and one fresh read before each of stop, reset and start;
    // the waits in between share one call per poll for all 25.
    println!(
        "batched polling: {describes} DescribeInstances calls for {n} targets ({:.1} per target)",
        describes as f64 / n as f64
    );
    assert!(
        describes <= n * 6,
        "{describes} DescribeInstances calls for {n} targets"
    );
    let counts = sim.call_counts();
    let total: u32 = counts.values().sum();
    println!(
        "all ECS calls: {total} ({:.1} per target): {counts:?}",
        total as f64 / n as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_slows_a_drill_without_failing_it() {
    // 12 targets keep CI short; `cargo bench` runs 100 against the same 20 rps limit.
    let n = 12;
    let (sim, h) = setup(
        fleet(n, &[], 0),
        Faults {
            rate_limit_rps: 20,
            ..Default::default()
        },
    )
    .await;
    let event = json!({"drill": {"name": "throttled", "targets": targets(n), "concurrency": 10}, "scheduledTime": "2026-11-29T03:00:00Z"});
    let started = std::time::Instant::now();
    let reply = h.handle(&event, None).await;
    let failed: Vec<_> = reply
        .reports
        .iter()
        .filter(|r| r.outcome != Outcome::Succeeded)
        .map(|r| (&r.target.instance_id, &r.error))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let throttled = sim.fault_stats().throttled;
    assert!(throttled > 0, "the simulator did throttle");
    println!(
        "throttled drill: {n} targets in {:?}, {throttled} calls throttled, 0 failures",
        started.elapsed()
    );
}
