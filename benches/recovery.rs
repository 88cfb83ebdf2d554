//! `cargo bench --bench recovery`: time to recovery (issues 15 and 26), measured against the
//! simulator over loopback HTTP, side by side in one run. Prints figures; asserts nothing.
//!
//! - one rollback whose steps take stop/reset/start = 12/6/15 s and 2/2/2 s, with every ECS
//!   answer 0 ms and 150 ms late (the simulator's `latency_ms`, ±20 ms jitter at 150):
//!   ecs-rollback with its default settings (the first rollback of a disk, which knows nothing
//!   of its steps, and the next one, which waits from what the first measured), against a
//!   baseline written here: a plain client that polls DescribeInstances every second and asks
//!   StartInstance again every second until it is accepted (the 100-line script of the issue);
//!   for each: the time from the request to the instance Running again, the time the instance
//!   was out of service (not Running), wall time, overhead (wall minus the ECS work) and ECS
//!   calls. The instance's state is watched in process every 10 ms (not an ECS call);
//! - a delivery killed at its deadline after the stop (Lambda), redelivered right after: the
//!   time from the redelivery to Running, against the ECS work that was left;
//! - the 100-target drill of `benches/bench.rs` (steps 2/3/2 s, 10 at once, the whole API
//!   throttled at 20 requests per second), run by the binary (`invoke`) with every answer
//!   0 ms and 150 ms late: wall, calls per target, the throttled share of the calls.
//!
//! `ECS_ROLLBACK_BENCH_ONLY=drill` runs the drills alone, `=rollback` the one rollback alone.

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
    sim_at(stop, reset, start, 0)
}

fn sim_at(stop: u64, reset: u64, start: u64, latency_ms: u64) -> Simulator {
    sim_with(Scenario {
        timings: Timings {
            stop_ms: stop,
            reset_ms: reset,
            start_ms: start,
            ..Timings::default()
        },
        faults: ecs_rollback::sim::Faults {
            latency_ms: latency_ms.saturating_sub(latency_ms / 8),
            latency_jitter_ms: latency_ms / 4,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// When the instance left Running and when it was Running again, seen in process every 10 ms
/// from `t0` (both `None` if it never left Running).
struct Watch {
    left: Option<Instant>,
    back: Option<Instant>,
}

fn watch(
    sim: &Simulator,
) -> (
    tokio::task::JoinHandle<Watch>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sim, stop) = (sim.clone(), done.clone());
    let handle = tokio::spawn(async move {
        let mut w = Watch {
            left: None,
            back: None,
        };
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let running = sim.instance_status(WEB).as_deref() == Some("Running");
            match (running, w.left, w.back) {
                (false, None, _) => w.left = Some(Instant::now()),
                (true, Some(_), None) => w.back = Some(Instant::now()),
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w
    });
    (handle, done)
}

async fn watched<F: std::future::Future<Output = (Duration, bool)>>(
    sim: &Simulator,
    run: F,
) -> (Duration, bool, Option<Duration>, Option<Duration>) {
    let t0 = Instant::now();
    let (handle, done) = watch(sim);
    let (wall, ok) = run.await;
    // One more look after the answer: the start may be seen only now.
    tokio::time::sleep(Duration::from_millis(30)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let w = handle.await.unwrap_or(Watch {
        left: None,
        back: None,
    });
    let to_running = w.back.map(|b| b - t0);
    let out = match (w.left, w.back) {
        (Some(l), Some(b)) => Some(b - l),
        _ => None,
    };
    (wall, ok, to_running, out)
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
    let only = std::env::var("ECS_ROLLBACK_BENCH_ONLY").unwrap_or_default();
    if only != "drill" {
        one_rollback().await;
    }
    if only == "rollback" {
        return;
    }
    println!(
        "100-target drill at 20 requests/s (steps 2/3/2 s, 10 at once), by latency per ECS answer"
    );
    for latency in [0u64, 150] {
        drill(latency).await;
    }
}

/// The drill of `benches/bench.rs`, every ECS answer `latency_ms` late (±latency/8 jitter).
async fn drill(latency_ms: u64) {
    let n = 100;
    let sim = sim_with(Scenario {
        timings: Timings {
            stop_ms: 2000,
            start_ms: 2000,
            reset_ms: 3000,
            snapshot_ms: 2000,
            reset_disk_status: None,
            tag_read_lag_ms: 0,
            ..Timings::default()
        },
        fleet: Some(opted_in_fleet(n, "bench", &[], n, ("drill", "bench"))),
        faults: ecs_rollback::sim::Faults {
            rate_limit_rps: 20,
            latency_ms: latency_ms.saturating_sub(latency_ms / 8),
            latency_jitter_ms: latency_ms / 4,
            ..Default::default()
        },
        ..Default::default()
    });
    let base = serve(&sim).await;
    let dir = std::env::temp_dir().join(format!("ecs-rollback-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let ev = dir.join(format!("drill-{latency_ms}.json"));
    std::fs::write(
        &ev,
        json!({"drill": {"name": "bench", "selector": {"tags": {"drill": "bench"}}, "concurrency": 10, "rtoSeconds": 600},
               "scheduledTime": "2026-11-29T03:00:00Z"})
        .to_string(),
    )
    .expect("write");
    let t = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecs-rollback"))
        .env_clear()
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            ecs_rollback::sim::SIM_ACCESS_KEY_ID,
        )
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
        )
        .env("ALIBABA_CLOUD_REGION_ID", REGION)
        .env("ECS_ROLLBACK_ECS_ENDPOINT", &base)
        .env("ECS_ROLLBACK_COOLDOWN_SECONDS", "0")
        .env("RUST_LOG", "warn")
        .arg("invoke")
        .arg(&ev)
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .expect("run the drill");
    let wall = t.elapsed();
    let out = String::from_utf8_lossy(&out.stdout);
    let types: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    let succeeded = types
        .iter()
        .filter(|t| *t == "ecs-rollback.succeeded")
        .count();
    let total = total_calls(&sim);
    let throttled = sim.fault_stats().throttled;
    println!(
        "  {latency_ms:>3} ms  {:>6.1} s wall, {total} ECS calls ({:.1} per target), {throttled} throttled ({:.1}% of the calls), {succeeded}/{n} succeeded",
        wall.as_secs_f64(),
        total as f64 / n as f64,
        throttled as f64 * 100.0 / total.max(1) as f64
    );
}

async fn one_rollback() {
    println!("time to recovery: one rollback, ecs-rollback (default settings) vs a plain client");
    println!("  steps stop/reset/start, latency per ECS answer; to Running: from the request; out: not Running");
    for latency in [0u64, 150] {
        for (stop, reset, start) in [(12_000, 6_000, 15_000), (2_000, 2_000, 2_000)] {
            let work = Duration::from_millis(stop + reset + start);
            let line = |who: &str,
                        (wall, ok, to_running, out): (
                Duration,
                bool,
                Option<Duration>,
                Option<Duration>,
            ),
                        calls: u64| {
                let secs = |d: Option<Duration>| {
                    d.map_or("  -  ".to_owned(), |d| format!("{:>5.2}", d.as_secs_f64()))
                };
                println!(
                    "  {:>4.1}/{:>3.1}/{:>4.1} s {latency:>3} ms  {who:<32} to Running {} s, out {} s, {:>6.2} s wall, overhead {:>5.2} s, {:>3} calls{}",
                    stop as f64 / 1000.0,
                    reset as f64 / 1000.0,
                    start as f64 / 1000.0,
                    secs(to_running),
                    secs(out),
                    wall.as_secs_f64(),
                    wall.saturating_sub(work).as_secs_f64(),
                    calls,
                    if ok { "" } else { " (did not succeed!)" }
                )
            };
            // The first rollback of a disk: it knows nothing of its steps.
            let sim = sim_at(stop, reset, start, latency);
            let base = serve(&sim).await;
            let ecs = client(&base);
            let m = watched(&sim, ours(&ecs, "bench-first", WEB_SNAP_TAGGED)).await;
            line("ecs-rollback, first of the disk", m, total_calls(&sim));
            // The next rollback of a disk (the cooldown would refuse it here): a fresh
            // simulator whose disk carries the durations the first run measured.
            let sim2 = sim_at(stop, reset, start, latency);
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
            let m = watched(&sim2, ours(&ecs2, "bench-learned", WEB_SNAP_TAGGED)).await;
            line(
                "ecs-rollback, durations learned",
                m,
                total_calls(&sim2) - before,
            );
            let sim3 = sim_at(stop, reset, start, latency);
            let base3 = serve(&sim3).await;
            let ecs3 = client(&base3);
            let m = watched(&sim3, baseline(&ecs3, WEB_SNAP_TAGGED)).await;
            line("plain client, 1 s polls", m, total_calls(&sim3));
        }
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
