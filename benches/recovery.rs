//! `cargo bench --bench recovery`: time to recovery (issue 15), measured against the simulator
//! over loopback HTTP, side by side in one run. Prints figures; asserts nothing.
//!
//! - one rollback whose steps take stop/reset/start = 12/6/15 s, 20/20/20 s and 2/2/2 s:
//!   ecs-rollback with its default settings (the first rollback of a disk, which knows nothing
//!   of its steps, and the next one, which waits from what the first measured), against a
//!   baseline written here: a plain client that polls DescribeInstances every second and asks
//!   StartInstance again every second until it is accepted (the 100-line script of the issue);
//!   wall time, overhead (wall minus the ECS work) and ECS calls of each;
//! - a delivery killed at its deadline after the stop (Lambda), redelivered right after: the
//!   time from the redelivery to Running, against the ECS work that was left.

#[path = "../tests/it/common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ecs_rollback::ecs::{EcsClient, InstanceQuery};
use ecs_rollback::request::{self, Trigger};
use ecs_rollback::rollback::Rollback;
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::{Scenario, Simulator, Timings};
use serde_json::json;

fn total_calls(sim: &Simulator) -> u64 {
    sim.call_counts().values().map(|c| u64::from(*c)).sum()
}

fn sim_of(stop: u64, reset: u64, start: u64) -> Simulator {
    sim_with(Scenario {
        timings: Timings {
            stop_ms: stop,
            reset_ms: reset,
            start_ms: start,
            ..Timings::default()
        },
        ..Default::default()
    })
}

fn client(base: &str) -> EcsClient {
    http_client(base, sim_credentials(), Duration::from_secs(20))
}

async fn ours(ecs: &EcsClient, key: &str, snapshot: &str) -> (Duration, bool) {
    let settings = Settings::default();
    let req = request::parse(
        &json!({"instanceId": WEB, "snapshotId": snapshot, "idempotencyKey": key}),
        Some(REGION),
        Trigger::direct(),
    )
    .expect("valid request");
    let t = Instant::now();
    let r = Rollback::new(ecs, &settings).run(&req, None).await;
    (t.elapsed(), r.outcome.is_ok())
}

async fn status(ecs: &EcsClient) -> String {
    let q = InstanceQuery {
        ids: vec![WEB.to_owned()],
        ..Default::default()
    };
    match ecs.describe_instances(REGION, &q).await {
        Ok(found) => found
            .into_iter()
            .next()
            .map(|i| i.status)
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The plain script: stop, poll every second until Stopped, reset, ask StartInstance every
/// second until it is accepted, poll every second until Running.
async fn baseline(ecs: &EcsClient, snapshot: &str) -> (Duration, bool) {
    let t = Instant::now();
    let second = Duration::from_secs(1);
    let stop = ecs_rollback::ecs::StopOptions::default();
    if ecs.stop_instance(REGION, WEB, &stop).await.is_err() {
        return (t.elapsed(), false);
    }
    while status(ecs).await != "Stopped" {
        tokio::time::sleep(second).await;
    }
    if ecs
        .reset_disk(REGION, WEB_SYS, snapshot, false)
        .await
        .is_err()
    {
        return (t.elapsed(), false);
    }
    while ecs.start_instance(REGION, WEB, false).await.is_err() {
        tokio::time::sleep(second).await;
    }
    while status(ecs).await != "Running" {
        tokio::time::sleep(second).await;
    }
    (t.elapsed(), true)
}

#[tokio::main]
async fn main() {
    println!("time to recovery: one rollback, ecs-rollback (default settings) vs a plain client");
    for (stop, reset, start) in [
        (12_000, 6_000, 15_000),
        (20_000, 20_000, 20_000),
        (2_000, 2_000, 2_000),
    ] {
        let work = Duration::from_millis(stop + reset + start);
        let line = |who: &str, wall: Duration, calls: u64, ok: bool| {
            println!(
                "  {:>5.1}/{:>4.1}/{:>4.1} s  {who:<34} {:>6.2} s wall, overhead {:>5.2} s, {:>3} ECS calls{}",
                stop as f64 / 1000.0,
                reset as f64 / 1000.0,
                start as f64 / 1000.0,
                wall.as_secs_f64(),
                wall.saturating_sub(work).as_secs_f64(),
                calls,
                if ok { "" } else { " (did not succeed!)" }
            )
        };
        // The same simulator for both of ours: the second run learns from the first.
        let sim = sim_of(stop, reset, start);
        let base = serve(&sim).await;
        let ecs = client(&base);
        let (wall, ok) = ours(&ecs, "bench-first", WEB_SNAP_TAGGED).await;
        let first_calls = total_calls(&sim);
        line("ecs-rollback, first of the disk", wall, first_calls, ok);
        // The next rollback of a disk (the cooldown would refuse it here): a fresh simulator
        // whose disk carries the durations the first run measured.
        let sim2 = sim_of(stop, reset, start);
        let base2 = serve(&sim2).await;
        let ecs2 = client(&base2);
        let learned = ecs_rollback::ledger::Durations {
            stop: Some(stop),
            reset: Some(reset),
            start: Some(start),
            snapshot: None,
        };
        let tags = [(
            ecs_rollback::ledger::DURATIONS_TAG.to_owned(),
            learned.encode(),
        )];
        ecs2.tag_resources(REGION, "disk", &[WEB_SYS.to_owned()], &tags)
            .await
            .expect("seed the learned durations");
        let before = total_calls(&sim2);
        let (wall, ok) = ours(&ecs2, "bench-learned", WEB_SNAP_TAGGED).await;
        line(
            "ecs-rollback, durations learned",
            wall,
            total_calls(&sim2) - before,
            ok,
        );
        let sim3 = sim_of(stop, reset, start);
        let base3 = serve(&sim3).await;
        let ecs3 = client(&base3);
        let (wall, ok) = baseline(&ecs3, WEB_SNAP_TAGGED).await;
        line("plain client, 1 s polls", wall, total_calls(&sim3), ok);
    }

    // Killed at its deadline right after the stop, redelivered at once (Lambda).
    println!("crash at the deadline, then the redelivery (steps 12/6/15 s)");
    let sim = sim_of(12_000, 6_000, 15_000);
    let base = serve(&sim).await;
    let ecs = Arc::new(client(&base));
    let settings = Settings {
        estimate_stop: Duration::from_secs(15),
        estimate_reset: Duration::from_secs(10),
        estimate_start: Duration::from_secs(20),
        ..Settings::default()
    };
    let req = request::parse(
        &json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "bench-crash"}),
        Some(REGION),
        Trigger::direct(),
    )
    .expect("valid request");
    // A 50 s invocation: enough to begin (stop+reset+start estimates), killed while the
    // instance stops (the platform ends the process at its deadline).
    let deadline = Instant::now() + Duration::from_secs(50);
    let killed_at = Instant::now() + Duration::from_secs(6);
    let cut = tokio::time::timeout_at(
        killed_at.into(),
        Rollback::new(&ecs, &settings).run(&req, Some(deadline)),
    )
    .await;
    println!(
        "  first delivery: {}",
        if cut.is_err() {
            "killed mid-stop"
        } else {
            "ended before the kill"
        }
    );
    // The platform redelivers after the deadline; the work left from then on is what the
    // simulator still has to do: the rest of the stop (if any), the reset and the start.
    tokio::time::sleep_until((deadline + Duration::from_secs(4)).into()).await;
    let stopped_early = sim.instance_status(WEB).as_deref() == Some("Stopped");
    let left = if stopped_early {
        Duration::from_millis(6_000 + 15_000)
    } else {
        Duration::from_millis(12_000 + 6_000 + 15_000)
    };
    let t = Instant::now();
    let r = Rollback::new(&ecs, &settings).run(&req, None).await;
    let took = t.elapsed();
    println!(
        "  redelivery {:.1} s after the kill: {} in {:.2} s, ECS work left {:.1} s: {:.2}x",
        (t - killed_at).as_secs_f64(),
        r.outcome.as_str(),
        took.as_secs_f64(),
        left.as_secs_f64(),
        took.as_secs_f64() / left.as_secs_f64()
    );
}
