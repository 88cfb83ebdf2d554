//! `cargo bench --bench instance`: a whole-instance rollback of db-05's three disks (one
//! request: one stop, the resets in parallel, one start) against the same three disks rolled
//! back by three one-disk requests in a row, side by side in one run, over loopback HTTP, with
//! ECS's steps taking stop/reset/start = 2/2/2 s and 12/6/15 s and every answer 0 ms and 150 ms
//! late. Prints, for each: wall time, the time the instance was out of service (not Running),
//! the stops and starts applied, and ECS calls. Asserts nothing.

#[path = "../tests/it/common.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::{Scenario, Simulator, Timings};
use serde_json::json;

const DB: &str = "i-bp1dbserv00000005";
const DISKS: [(&str, &str); 3] = [
    ("d-bp1dbserv0000sys05", "s-bp1dbserv0sys00002"),
    ("d-bp1dbserv0000dat05", "s-bp1dbserv0dat00002"),
    ("d-bp1dbserv0000dat15", "s-bp1dbserv0dat10002"),
];

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

fn total_calls(sim: &Simulator) -> u64 {
    sim.call_counts().values().map(|c| u64::from(*c)).sum()
}

/// Sums the time the instance is not Running, watched in process every 10 ms.
fn watch_down(sim: &Simulator) -> (tokio::task::JoinHandle<Duration>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let (sim, stop) = (sim.clone(), done.clone());
    let h = tokio::spawn(async move {
        let mut down = Duration::ZERO;
        let mut last = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if sim.instance_status(DB).as_deref() != Some("Running") {
                down += now - last;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        down
    });
    (h, done)
}

struct Figures {
    wall: Duration,
    down: Duration,
    stops: usize,
    starts: usize,
    calls: u64,
    outcomes: Vec<String>,
}

async fn measure(
    (stop, reset, start): (u64, u64, u64),
    latency: u64,
    events: Vec<serde_json::Value>,
) -> Figures {
    let sim = sim_at(stop, reset, start, latency);
    let base = serve(&sim).await;
    let handler = ecs_rollback::handler::Handler::new(
        http_client(&base, sim_credentials(), Duration::from_secs(10)),
        Settings::default(),
        Some(REGION.into()),
    );
    let before = total_calls(&sim);
    let (watcher, done) = watch_down(&sim);
    let t0 = Instant::now();
    let mut outcomes = Vec::new();
    for e in &events {
        let r = run_on(&handler, e).await;
        outcomes.push(r.outcome.as_str().to_owned());
    }
    let wall = t0.elapsed();
    done.store(true, Ordering::SeqCst);
    let down = watcher.await.unwrap_or_default();
    let applied = |a: &str| sim.events().iter().filter(|e| e.action == a).count();
    Figures {
        wall,
        down,
        stops: applied("StopInstance"),
        starts: applied("StartInstance"),
        calls: total_calls(&sim) - before,
        outcomes,
    }
}

fn line(label: &str, f: &Figures) {
    println!(
        "  {label:<28} wall {:>6.2} s  out of service {:>6.2} s  stops {}  starts {}  ECS calls {:>4}  ({})",
        f.wall.as_secs_f64(),
        f.down.as_secs_f64(),
        f.stops,
        f.starts,
        f.calls,
        f.outcomes.join(", ")
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("db-05: three ESSD disks rolled back to the 28th's snapshot-consistent group");
        for steps in [(2_000, 2_000, 2_000), (12_000, 6_000, 15_000)] {
            for latency in [0, 150] {
                println!(
                    "steps {}/{}/{} s, {latency} ms per answer:",
                    steps.0 / 1000,
                    steps.1 / 1000,
                    steps.2 / 1000
                );
                let whole = measure(
                    steps,
                    latency,
                    vec![json!({"instanceId": DB, "disks": "all",
                                "snapshotGroupId": "ssg-bp1dbserv0000000002",
                                "idempotencyKey": "bench-whole"})],
                )
                .await;
                line("one whole-instance request", &whole);
                let each = measure(
                    steps,
                    latency,
                    DISKS
                        .iter()
                        .map(|(d, s)| {
                            json!({"diskId": d, "snapshotId": s,
                                   "idempotencyKey": format!("bench-{d}")})
                        })
                        .collect(),
                )
                .await;
                line("three one-disk requests", &each);
                println!(
                    "  ratio (one / three): wall {:.2}, out of service {:.2}, calls {:.2}",
                    whole.wall.as_secs_f64() / each.wall.as_secs_f64(),
                    whole.down.as_secs_f64() / each.down.as_secs_f64().max(1e-9),
                    whole.calls as f64 / each.calls.max(1) as f64
                );
            }
        }
    });
}
