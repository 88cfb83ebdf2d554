//! `cargo bench --bench workflow`: a drill run by a workflow engine, measured in process against
//! the built-in simulator. Prints figures, asserts nothing about time:
//! - a 1,000-target drill planned (selector resolved) and summarized, the time of each step and
//!   the payload sizes the engine carries against Step Functions' 256 KiB per state: the plan's
//!   answer, one target's input and result, the summary's input with every result, and with
//!   none (a stopped map: every target read from its ledger, or dry-run);
//! - a 100-target drill's wall time through the workflow steps (plan, each target as its own
//!   invocation, at most 10 at once as the map runs them, summary) against the same drill in
//!   one invocation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecs_rollback::ecs::{CredentialSource, Credentials, EcsClient, Endpoint, RetryConfig};
use ecs_rollback::handler::{Handler, Shape};
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::{self, Scenario, SimTransport, Simulator};
use ecs_rollback::workflow::PAYLOAD_LIMIT;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

fn fleet(n: usize, prefix: &str, step_ms: u64) -> Simulator {
    let (mut instances, mut disks, mut snapshots) = (vec![], vec![], vec![]);
    for i in 0..n {
        let (iid, did, sid) = (
            format!("i-bp1{prefix}{i:010}"),
            format!("d-bp1{prefix}{i:010}"),
            format!("s-bp1{prefix}{i:010}"),
        );
        instances.push(json!({"id": iid, "tags": {"ecs-rollback": "enabled", "drill": "weekly"}}));
        disks.push(json!({"id": did, "instanceId": iid}));
        snapshots.push(json!({"id": sid, "diskId": did, "name": "golden", "createdAt": "2026-11-28T00:00:00Z"}));
    }
    let scenario: Scenario = serde_json::from_value(json!({
        "timings": {"stopMs": step_ms, "startMs": step_ms, "resetMs": step_ms, "snapshotMs": step_ms},
        "fleet": {"instances": instances, "disks": disks, "snapshots": snapshots}}))
    .expect("a scenario");
    Simulator::new(scenario).expect("a simulator")
}

fn handler(sim: &Simulator) -> Handler {
    let ecs = EcsClient::new(
        Arc::new(SimTransport { sim: sim.clone() }),
        Endpoint::Regional,
        CredentialSource::Static(Credentials::new(
            sim::SIM_ACCESS_KEY_ID,
            sim::SIM_ACCESS_KEY_SECRET,
        )),
        RetryConfig::fast(),
    );
    let mut settings = Settings::fast();
    settings.cooldown = Duration::ZERO;
    Handler::new(ecs, settings, Some("cn-hangzhou".into()))
}

fn output(reply: &ecs_rollback::handler::Reply) -> Value {
    match &reply.shape {
        Shape::Workflow { output } => output.clone(),
        other => panic!("not a workflow answer: {other:?}"),
    }
}

fn size(v: &Value) -> usize {
    v.to_string().len()
}

fn kib(n: usize) -> String {
    format!(
        "{:.1} KiB ({:.0}% of 256 KiB)",
        n as f64 / 1024.0,
        100.0 * n as f64 / PAYLOAD_LIMIT as f64
    )
}

fn drill(name: &str) -> Value {
    json!({"name": name, "regionId": "cn-hangzhou", "startAfterReset": true, "concurrency": 10,
           "maxErrors": "10%", "rtoSeconds": 600, "selector": {"tags": {"drill": "weekly"}}})
}

async fn workflow_drill(h: &Handler, name: &str) -> (Value, Value) {
    let plan = output(&h.handle(&json!({"workflow": "plan", "drill": drill(name), "scheduledTime": "2026-11-29T03:00:00Z"}), None).await);
    let targets = plan["targets"].as_array().cloned().unwrap_or_default();
    let results: Vec<Value> = stream::iter(targets.into_iter().enumerate())
        .map(|(i, t)| {
            let ev = json!({"workflow": "target", "drill": plan["drill"], "target": t, "index": i});
            async move { output(&h.handle(&ev, None).await) }
        })
        .buffered(10)
        .collect()
        .await;
    let summary = output(&h.handle(&json!({"workflow": "summary", "drill": plan["drill"], "targets": plan["targets"], "results": results, "mapError": null}), None).await);
    (plan, summary)
}

#[tokio::main]
async fn main() {
    println!("== a 1,000-target drill: plan and summary");
    let sim = fleet(1000, "wf", 40);
    let h = handler(&sim);
    let t = Instant::now();
    let plan = output(&h.handle(&json!({"workflow": "plan", "drill": drill("big"), "scheduledTime": "2026-11-29T03:00:00Z"}), None).await);
    let plan_time = t.elapsed();
    let n = plan["count"].as_u64().unwrap_or(0);
    println!(
        "plan: {n} targets in {:.1} ms; its answer {}",
        plan_time.as_secs_f64() * 1000.0,
        kib(size(&plan))
    );
    let one = json!({"workflow": "target", "drill": plan["drill"], "target": plan["targets"][0], "index": 999});
    let t = Instant::now();
    let result = output(&h.handle(&one, None).await);
    println!("one target: its input {} bytes, its result {} bytes, {:.0} ms against the simulator (40 ms steps)",
        size(&one), size(&result), t.elapsed().as_secs_f64() * 1000.0);
    // Every target succeeded: the result of target 0, as every target's (same size).
    let results: Vec<Value> = (0..n)
        .map(|i| {
            let mut r = result.clone();
            r["i"] = json!(i);
            r
        })
        .collect();
    let full = json!({"workflow": "summary", "drill": plan["drill"], "targets": plan["targets"], "results": results, "mapError": null});
    let t = Instant::now();
    let s = output(&h.handle(&full, None).await);
    println!(
        "summary with every result: input {}, {:.1} ms, output {} (counts: {} succeeded)",
        kib(size(&full)),
        t.elapsed().as_secs_f64() * 1000.0,
        kib(size(&s)),
        s["summary"]["data"]["succeeded"]
    );
    let calls_before: u64 = sim
        .call_counts()
        .values()
        .map(|c| u64::from(*c))
        .sum::<u64>();
    let stopped = json!({"workflow": "summary", "drill": plan["drill"], "targets": plan["targets"], "results": [], "mapError": {"Error": "States.ExceedToleratedFailureThreshold"}});
    let t = Instant::now();
    let s = output(&h.handle(&stopped, None).await);
    let calls: u64 = sim
        .call_counts()
        .values()
        .map(|c| u64::from(*c))
        .sum::<u64>()
        - calls_before;
    println!("summary of a stopped map (no results: {n} ledgers read, the unstarted dry-run): input {}, {:.1} s, {calls} ECS calls ({:.1} per target), {} succeeded, {} skipped",
        kib(size(&stopped)), t.elapsed().as_secs_f64(), calls as f64 / n as f64, s["summary"]["data"]["succeeded"], s["summary"]["data"]["skipped"]);

    println!(
        "== a 100-target drill: workflow steps vs one invocation (steps of 200 ms, 10 at once)"
    );
    let sim = fleet(100, "wa", 200);
    let h = handler(&sim);
    let t = Instant::now();
    let (_, summary) = workflow_drill(&h, "via-workflow").await;
    let wf = t.elapsed();
    let wf_calls: u64 = sim.call_counts().values().map(|c| u64::from(*c)).sum();
    println!(
        "workflow path: {:.1} s wall, {wf_calls} ECS calls, {} succeeded",
        wf.as_secs_f64(),
        summary["summary"]["data"]["succeeded"]
    );
    let sim = fleet(100, "wb", 200);
    let h = handler(&sim);
    let t = Instant::now();
    let reply = h
        .handle(
            &json!({"drill": drill("in-process"), "scheduledTime": "2026-11-29T03:00:00Z"}),
            None,
        )
        .await;
    let inproc = t.elapsed();
    let ip_calls: u64 = sim.call_counts().values().map(|c| u64::from(*c)).sum();
    println!(
        "in process:    {:.1} s wall, {ip_calls} ECS calls, {} succeeded (shared polling)",
        inproc.as_secs_f64(),
        reply.summaries[0]["data"]["succeeded"]
    );
}
