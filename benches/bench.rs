//! `cargo bench`: the figures the README records, measured against the simulator over loopback
//! HTTP. Prints every figure; asserts nothing (targets are judged in the README and the notes).
//!
//! - cold start: process start to the first Runtime API `next` request, median of 20, in Lambda
//!   mode, beside a bare `lambda_runtime` echo function built here (the floor);
//! - peak RSS of one rollback and of a 100-target drill (getrusage of the child, via wait4);
//! - the stripped release binary's size;
//! - orchestration overhead of one rollback whose steps take 20 s each, and its ECS calls;
//! - a 100-target drill against a simulator that throttles at 20 requests per second.

#[path = "../tests/it/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use common::*;
use ecs_rollback::sim::{Faults, Scenario, Simulator, Timings};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-rollback");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs `cmd` to its end; returns (wall time, peak RSS in KiB, stdout). The child is reaped
/// with `wait4`, which reports its own resource usage (not `Child::wait`).
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: Command) -> (Duration, u64, String) {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let out = {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut o) = child.stdout {
            let _ = o.read_to_string(&mut s);
        }
        s
    };
    let mut status = 0;
    // SAFETY: rusage is plain data, and pid is our own child, not yet reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    (started.elapsed(), usage.ru_maxrss as u64, out)
}

/// A Runtime API that records when `next` is first asked for, and never answers it.
async fn time_to_first_next(bin: &Path, env: &[(&str, String)]) -> Duration {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(1);
    let app = Router::new().route(
        "/2018-06-01/runtime/invocation/next",
        get(move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Instant::now()).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .ok()
        .flatten();
    let _ = child.kill().await;
    server.abort();
    first
        .map(|t| t.duration_since(started))
        .unwrap_or(Duration::MAX)
}

/// Builds a bare `lambda_runtime` echo function (the floor of a cold start).
fn build_floor(root: &Path) -> Option<PathBuf> {
    let dir = root.join("target/bench-floor");
    std::fs::create_dir_all(dir.join("src")).ok()?;
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"echo-floor\"\nversion = \"0.0.0\"\nedition = \"2021\"\n[workspace]\n[dependencies]\nlambda_runtime = { version = \"1.5\", default-features = false, features = [\"tracing\"] }\ntokio = { version = \"1\", features = [\"macros\"] }\nserde_json = \"1\"\n[profile.release]\nstrip = true\nlto = \"thin\"\ncodegen-units = 4\n",
    )
    .ok()?;
    std::fs::write(
        dir.join("src/main.rs"),
        "use lambda_runtime::{service_fn, Error, LambdaEvent};\nuse serde_json::Value;\n#[tokio::main]\nasync fn main() -> Result<(), Error> {\n    lambda_runtime::run(service_fn(|e: LambdaEvent<Value>| async move { Ok::<Value, Error>(e.payload) })).await\n}\n",
    )
    .ok()?;
    let lock = root.join("Cargo.lock");
    let _ = std::fs::copy(lock, dir.join("Cargo.lock"));
    let ok = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .status()
        .ok()?
        .success();
    ok.then(|| dir.join("target/release/echo-floor"))
}

fn invoke_cmd(base: &str, event: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            ecs_rollback::sim::SIM_ACCESS_KEY_ID,
        )
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
        )
        .env("ALIBABA_CLOUD_REGION_ID", REGION)
        .env("ECS_ROLLBACK_ECS_ENDPOINT", base)
        .env("RUST_LOG", "warn")
        .arg("invoke")
        .arg(event);
    c
}

fn calls(sim: &Simulator) -> u64 {
    sim.call_counts().values().map(|c| u64::from(*c)).sum()
}

#[tokio::main]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = std::env::temp_dir().join(format!("ecs-rollback-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    println!(
        "ecs-rollback benchmark on {} cores ({})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::env::consts::ARCH
    );

    // `ECS_ROLLBACK_BENCH_ONLY=drill`: the 100-target drill alone.
    if std::env::var("ECS_ROLLBACK_BENCH_ONLY").as_deref() != Ok("drill") {
        figures_of_one_rollback(&root, &tmp).await;
    }
    drill_figures(&tmp).await;
}

async fn figures_of_one_rollback(root: &Path, tmp: &Path) {
    // Peak RSS of one rollback (fast simulator), first: wait4 reports each child alone.
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        ..Default::default()
    });
    let base = serve(&sim).await;
    let one = tmp.join("one.json");
    std::fs::write(
        &one,
        json!({"instanceId": WEB, "idempotencyKey": "bench-rss"}).to_string(),
    )
    .expect("write");
    let (_, rss_one, out) = run_measured(invoke_cmd(&base, &one));
    println!(
        "peak RSS, one rollback:                {:.1} MB{}",
        rss_one as f64 / 1024.0,
        if out.contains("succeeded") {
            ""
        } else {
            " (the rollback did not succeed!)"
        }
    );

    // Binary size.
    let size = std::fs::metadata(BIN).map(|m| m.len()).unwrap_or(0);
    println!(
        "release binary (stripped):             {:.1} MB  ({BIN})",
        size as f64 / 1e6
    );

    // Cold start vs the floor.
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".to_owned(), "bench".to_owned()),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET".to_owned(),
            "bench".to_owned(),
        ),
        ("ALIBABA_CLOUD_REGION_ID".to_owned(), REGION.to_owned()),
    ];
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut ours = Vec::new();
    for _ in 0..20 {
        ours.push(time_to_first_next(Path::new(BIN), &env).await);
    }
    let ours = median(ours);
    match build_floor(root) {
        Some(floor_bin) => {
            let mut floor = Vec::new();
            for _ in 0..20 {
                floor.push(time_to_first_next(&floor_bin, &[]).await);
            }
            let floor = median(floor);
            println!(
                "cold start to first `next`, median/20: {:.2} ms (bare lambda_runtime echo: {:.2} ms, {:.2}x)",
                ours.as_secs_f64() * 1e3,
                floor.as_secs_f64() * 1e3,
                ours.as_secs_f64() / floor.as_secs_f64()
            );
        }
        None => println!(
            "cold start to first `next`, median/20: {:.2} ms (the floor could not be built)",
            ours.as_secs_f64() * 1e3
        ),
    }

    // Orchestration overhead: steps of 20 s each, default settings.
    let slow = Timings {
        stop_ms: 20_000,
        start_ms: 20_000,
        reset_ms: 20_000,
        snapshot_ms: 20_000,
        reset_disk_status: None,
        tag_read_lag_ms: 0,
        ..Timings::default()
    };
    let sim = sim_with(Scenario {
        timings: slow,
        ..Default::default()
    });
    let base = serve(&sim).await;
    let ev = tmp.join("slow.json");
    std::fs::write(
        &ev,
        json!({"instanceId": WEB, "idempotencyKey": "bench-overhead"}).to_string(),
    )
    .expect("write");
    let (wall, _, out) = run_measured(invoke_cmd(&base, &ev));
    let transitions = Duration::from_secs(60);
    let overhead = wall.saturating_sub(transitions);
    println!(
        "one rollback, 3 steps of 20 s:         {:.2} s wall, overhead {:.2} s ({:.1}% of 60 s), {} ECS calls{}",
        wall.as_secs_f64(),
        overhead.as_secs_f64(),
        overhead.as_secs_f64() / 60.0 * 100.0,
        calls(&sim),
        if out.contains("succeeded") { "" } else { " (did not succeed!)" }
    );
    println!("    calls by action: {:?}", sim.call_counts());
}

async fn drill_figures(tmp: &Path) {
    // A 100-target drill against 20 requests per second.
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
        faults: Faults {
            rate_limit_rps: 20,
            ..Default::default()
        },
        ..Default::default()
    });
    let base = serve(&sim).await;
    let ev = tmp.join("drill.json");
    std::fs::write(
        &ev,
        json!({"drill": {"name": "bench", "selector": {"tags": {"drill": "bench"}}, "concurrency": 10, "rtoSeconds": 600},
               "scheduledTime": "2026-11-29T03:00:00Z"})
        .to_string(),
    )
    .expect("write");
    let mut cmd = invoke_cmd(&base, &ev);
    cmd.env("ECS_ROLLBACK_COOLDOWN_SECONDS", "0");
    let (wall, rss_drill, out) = run_measured(cmd);
    // One result event per target (the drill summary, last, is not one of them).
    let types: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    let succeeded = types
        .iter()
        .filter(|t| *t == "ecs-rollback.succeeded")
        .count();
    let failed = types
        .iter()
        .filter(|t| *t == "ecs-rollback.failed" || *t == "ecs-rollback.rejected")
        .count();
    let resets = sim
        .events()
        .iter()
        .filter(|e| e.action == "ResetDisk")
        .count();
    let total = calls(&sim);
    println!(
        "100-target drill at 20 req/s:          {:.1} s wall, {} ECS calls ({:.1} per target), {} throttled ({:.1}% of the calls), {succeeded} succeeded, {failed} failed, {resets} resets applied",
        wall.as_secs_f64(),
        total,
        total as f64 / n as f64,
        sim.fault_stats().throttled,
        sim.fault_stats().throttled as f64 * 100.0 / total.max(1) as f64
    );
    println!("    calls by action: {:?}", sim.call_counts());
    println!(
        "peak RSS, 100-target drill:            {:.1} MB",
        rss_drill as f64 / 1024.0
    );
}
