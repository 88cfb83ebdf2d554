//! A drill run by a workflow engine (AWS Step Functions, Alibaba CloudFlow) instead of inside one
//! invocation: the three events the engine sends the function, and what it answers. Pure: the
//! handler resolves the selector, runs the target, and reads the ledgers.
//!
//! 1. plan: `{"workflow": "plan", "drill": {…the drill spec…}, "scheduledTime": "…"}` answers
//!    `{"drill": {context}, "targets": [{"instanceId": "i-…"}, …], "count": n,
//!    "maxConcurrency": c, "toleratedFailureCount": k, "toleratedFailurePercentage": p}`: each
//!    target as small as it can be (the drill's defaults travel once, in `drill`), so the map's
//!    input stays under the engine's payload limit.
//! 2. target: `{"workflow": "target", "drill": {context}, "target": {…}, "index": i}` runs the
//!    ordinary rollback of that target, keyed as the in-process drill keys it (drill name, slot,
//!    target), and answers a compact result ([`Compact`]), or fails with `Retryable`,
//!    `RollbackFailed` or `RollbackRejected` for the engine's `Retry` and failure tolerance.
//! 3. summary: `{"workflow": "summary", "drill": {context}, "targets": […], "results": [… or
//!    null], "mapError": {…}, "report": "html" | "svg" | "none"}` answers `{"summary": <the
//!    drill-summary event>, "report": "<html>…"}`. A target with no result (it failed, or the
//!    map stopped) is read from its disk's ledger: the history says whether its key finished and
//!    how, the run record whether it is still under way; neither means it never started.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::drill::{self, DrillPlan, MaxErrors};
use crate::ledger::{self, Ledger, Phase};
use crate::report::{ErrorInfo, Outcome, Report, Step, StepStatus, Target, TIMED_STEPS};
use crate::request::{IdempotencyKey, InvalidRequest, Trigger};

/// Targets in one workflow drill, at most: the plan's answer, about 40 bytes per target, and
/// the summary's input, about 130 bytes per succeeded target, stay under Step Functions' 256 KiB
/// per state (`cargo bench` measures both at 1,000 targets).
pub const MAX_TARGETS: usize = 1_500;

/// The engine's payload limit per state (Step Functions; CloudFlow's is smaller per state
/// input, see the README).
pub const PAYLOAD_LIMIT: usize = 256 * 1024;

/// What the engine asks.
#[derive(Debug, PartialEq)]
pub enum Ask {
    Plan(Box<DrillPlan>),
    Target {
        plan: Box<DrillPlan>,
        index: usize,
    },
    Summary {
        plan: Box<DrillPlan>,
        targets: Vec<Map<String, Value>>,
        results: BTreeMap<usize, Compact>,
        map_error: Option<Value>,
        report: Option<ReportFormat>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Html,
    Svg,
}

/// What a plan hands the targets and the summary: the drill less its targets, its slot fixed.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Context {
    name: String,
    slot: String,
    #[serde(default)]
    scheduled_time: Option<DateTime<Utc>>,
    #[serde(default)]
    region_id: Option<String>,
    #[serde(default)]
    defaults: Map<String, Value>,
    #[serde(default)]
    rto_seconds: Option<u64>,
}

fn context(plan: &DrillPlan) -> Value {
    json!(Context {
        name: plan.name.clone(),
        slot: plan.slot.clone(),
        scheduled_time: plan.when,
        region_id: plan.region.clone(),
        defaults: plan.defaults.clone(),
        rto_seconds: plan.rto_seconds,
    })
}

fn invalid(field: &str, m: impl Into<String>) -> InvalidRequest {
    InvalidRequest::new(field, m)
}

fn plan_of(ctx: &Value, targets: Vec<Map<String, Value>>) -> Result<DrillPlan, InvalidRequest> {
    let c: Context = serde_path_to_error::deserialize(ctx).map_err(|e| {
        let path = e.path().to_string();
        invalid(&format!("drill.{path}"), e.into_inner().to_string())
    })?;
    Ok(DrillPlan {
        name: c.name,
        when: c.scheduled_time,
        slot: c.slot,
        region: c.region_id,
        targets,
        selector: None,
        defaults: c.defaults,
        concurrency: 1,
        max_errors: None,
        rto_seconds: c.rto_seconds,
    })
}

fn target_of(v: &Value, field: &str) -> Result<Map<String, Value>, InvalidRequest> {
    match v {
        Value::Object(m) if !m.is_empty() => Ok(m.clone()),
        _ => Err(invalid(field, "a target object (instanceId or diskId)")),
    }
}

/// Reads a workflow event. `None`: not one (no `workflow` field).
pub fn parse(event: &Value) -> Option<Result<Ask, InvalidRequest>> {
    let mode = event.get("workflow")?;
    Some(parse_mode(mode, event))
}

fn parse_mode(mode: &Value, event: &Value) -> Result<Ask, InvalidRequest> {
    let known = |keys: &[&str]| -> Result<(), InvalidRequest> {
        match event
            .as_object()
            .and_then(|o| o.keys().find(|k| !keys.contains(&k.as_str())))
        {
            Some(k) => Err(invalid(k, "unknown field")),
            None => Ok(()),
        }
    };
    let drill = event.get("drill").unwrap_or(&Value::Null);
    match mode.as_str() {
        Some("plan") => {
            known(&["workflow", "drill", "scheduledTime"])?;
            let when = event.get("scheduledTime").and_then(Value::as_str);
            drill::parse_limited(drill, when, MAX_TARGETS).map(|p| Ask::Plan(Box::new(p)))
        }
        Some("target") => {
            known(&["workflow", "drill", "target", "index"])?;
            let target = target_of(event.get("target").unwrap_or(&Value::Null), "target")?;
            let index = event
                .get("index")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid("index", "the target's index in the plan"))?
                as usize;
            Ok(Ask::Target {
                plan: Box::new(plan_of(drill, vec![target])?),
                index,
            })
        }
        Some("summary") => {
            known(&[
                "workflow", "drill", "targets", "results", "mapError", "report",
            ])?;
            let targets = event
                .get("targets")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("targets", "the plan's list of targets"))?
                .iter()
                .enumerate()
                .map(|(i, t)| target_of(t, &format!("targets[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            // A failed or unstarted target's slot holds null (or the engine's error object):
            // only compact results count, matched by their index.
            let results = event
                .get("results")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| serde_json::from_value::<Compact>(r.clone()).ok())
                        .filter(|c| c.i < targets.len())
                        .map(|c| (c.i, c))
                        .collect()
                })
                .unwrap_or_default();
            let report = match event.get("report").and_then(Value::as_str) {
                None | Some("none") => None,
                Some("html") => Some(ReportFormat::Html),
                Some("svg") => Some(ReportFormat::Svg),
                Some(_) => return Err(invalid("report", "html, svg or none")),
            };
            Ok(Ask::Summary {
                plan: Box::new(plan_of(drill, targets.clone())?),
                targets,
                results,
                map_error: event.get("mapError").filter(|e| !e.is_null()).cloned(),
                report,
            })
        }
        _ => Err(invalid("workflow", "plan, target or summary")),
    }
}

/// The tolerated failures of `maxErrors`, as the map's two thresholds: a count and a
/// percentage (the map fails when either is exceeded; without `maxErrors`, neither can be).
pub fn tolerated(max_errors: Option<MaxErrors>, total: usize) -> (usize, f64) {
    match max_errors {
        Some(MaxErrors::Count(n)) => (n.min(total), 100.0),
        Some(MaxErrors::Percent(p)) => (total, p),
        None => (total, 100.0),
    }
}

/// The plan's answer: `targets` are the drill's explicit ones and those its selector found,
/// each named once.
pub fn plan_output(plan: &DrillPlan, selected: &[Map<String, Value>]) -> Value {
    let mut seen = std::collections::BTreeSet::new();
    let targets: Vec<Value> = plan
        .targets
        .iter()
        .chain(selected)
        .filter(|t| seen.insert(who_of(t)))
        .map(|t| Value::Object(t.clone()))
        .collect();
    let (count, percent) = tolerated(plan.max_errors, targets.len());
    json!({
        "drill": context(plan),
        "count": targets.len(),
        "targets": targets,
        "maxConcurrency": plan.concurrency,
        "toleratedFailureCount": count,
        "toleratedFailurePercentage": percent,
    })
}

/// The ID a target is keyed by: its disk, else its instance (as `DrillPlan::requests` does).
pub fn who_of(t: &Map<String, Value>) -> String {
    ["diskId", "DiskId", "instanceId", "InstanceId"]
        .iter()
        .find_map(|k| t.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}

/// The trigger (hence the idempotency key) of one target: the in-process drill's, so a target
/// is never drilled twice in one slot whichever way the drill runs.
pub fn trigger_of(plan: &DrillPlan, target: &Map<String, Value>) -> Trigger {
    Trigger {
        kind: "drill".into(),
        id: format!("{}|{}|{}", plan.name, plan.slot, who_of(target)),
        time: plan.when,
        key_basis: None,
    }
}

/// The key digest the ledger keeps of a target's run (no `idempotencyKey` can be given to a
/// drill target, so the key is always the derived one).
pub fn digest_of(plan: &DrillPlan, target: &Map<String, Value>) -> String {
    let t = trigger_of(plan, target);
    IdempotencyKey::derived(&t.kind, &t.id).digest()
}

/// One target's result as the map collects it: `{"i": 3, "o": "succeeded", "r": 5200,
/// "s": [[0, 1796025600123, 1200], …]}`: the index, the outcome, the recovery time in ms, and
/// the steps that ran as `[index in TIMED_STEPS, start (Unix ms), duration ms]`. About 130
/// bytes with four steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compact {
    pub i: usize,
    pub o: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub s: Vec<(usize, i64, i64)>,
    /// The service check's result (`verified`, `unhealthy`, `unverified`), with a `verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<String>,
    /// Stop to the service verified, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u64>,
    /// A whole-instance target: how many disks it rolled back together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<usize>,
}

impl Compact {
    pub fn of(index: usize, r: &Report) -> Self {
        Compact {
            i: index,
            o: r.outcome.as_str().to_owned(),
            r: r.downtime_ms,
            s: r.steps
                .iter()
                .filter(|s| s.status == StepStatus::Done)
                .filter_map(|s| {
                    let kind = crate::report::step_kind(&s.name);
                    let n = TIMED_STEPS.iter().position(|t| *t == kind)?;
                    let start = s.started_at.timestamp_millis();
                    Some((n, start, s.finished_at.timestamp_millis() - start))
                })
                .collect(),
            c: r.verification.as_ref().map(|v| v.result.clone()),
            v: r.verified_ms(),
            d: r.target.disks.as_ref().map(Vec::len),
        }
    }
}

fn outcome_of(s: &str) -> Option<Outcome> {
    [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Rejected,
        Outcome::Duplicate,
        Outcome::Superseded,
        Outcome::DryRun,
        Outcome::Ignored,
        Outcome::VerificationFailed,
        Outcome::Unverified,
        Outcome::RolledBackToUndo,
    ]
    .into_iter()
    .find(|o| o.as_str() == s)
}

fn target_field(t: &Map<String, Value>) -> Target {
    let get = |a: &str, b: &str| {
        t.get(a)
            .or_else(|| t.get(b))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Target {
        region_id: get("regionId", "RegionId"),
        instance_id: get("instanceId", "InstanceId"),
        disk_id: get("diskId", "DiskId"),
        ..Default::default()
    }
}

fn report(plan: &DrillPlan, t: &Map<String, Value>, outcome: Outcome) -> Report {
    let trigger = trigger_of(plan, t);
    Report {
        outcome,
        idempotency_key: None,
        trigger_kind: trigger.kind,
        trigger_id: trigger.id,
        target: target_field(t),
        steps: vec![],
        error: None,
        total_ms: 0,
        downtime_ms: None,
        reason: None,
        warnings: vec![],
        ecs_calls: None,
        verification: None,
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A target's report rebuilt from its compact result.
pub fn from_compact(plan: &DrillPlan, t: &Map<String, Value>, c: &Compact) -> Report {
    let mut r = report(plan, t, outcome_of(&c.o).unwrap_or(Outcome::Failed));
    r.downtime_ms = c.r;
    // The disks of a whole-instance target, counted (their IDs are in its own result).
    r.target.disks = c.d.map(|n| vec![crate::report::DiskResult::default(); n]);
    r.steps =
        c.s.iter()
            .filter_map(|(n, start, dur)| {
                Some(Step {
                    name: (*TIMED_STEPS.get(*n)?).to_owned(),
                    status: StepStatus::Done,
                    started_at: at(*start),
                    finished_at: at(start + dur),
                    request_id: None,
                    detail: None,
                })
            })
            .collect();
    r.verification = c.c.as_ref().map(|result| crate::report::Verification {
        result: result.clone(),
        verified_ms: c.v,
        ..Default::default()
    });
    r
}

/// What a disk's ledger says of a target without a result.
#[derive(Clone, Debug, PartialEq)]
pub enum FromLedger {
    /// A report for the summary.
    Ran(Box<Report>),
    /// The key never ran on the disk: the map stopped before the target.
    NotStarted,
}

/// A target without a compact result, judged from its disk's ledger (or the error reading it).
pub fn from_ledger(
    plan: &DrillPlan,
    t: &Map<String, Value>,
    read: Result<&Ledger, &str>,
) -> FromLedger {
    let ledger = match read {
        Ok(l) => l,
        Err(why) => {
            let mut r = report(plan, t, Outcome::Failed);
            r.error = Some(ErrorInfo::new(
                crate::errors::Code::LedgerUnavailable,
                format!("no result from the workflow, and its ledger could not be read: {why}"),
                true,
            ));
            return FromLedger::Ran(Box::new(r));
        }
    };
    let digest = digest_of(plan, t);
    let ours = ledger
        .run
        .as_ref()
        .filter(|run| run.key == ledger::run_key(&digest));
    match (ledger.history.find(&digest), ours) {
        (Some(false), run) => {
            let mut r = report(plan, t, Outcome::Succeeded);
            // Whole seconds: the ledger keeps Unix times.
            r.downtime_ms = run
                .filter(|run| run.phase == Phase::Done)
                .and_then(|run| Some(((run.since - run.stop_at?).max(0) * 1000) as u64));
            r.reason = Some("read from the disk's ledger".into());
            FromLedger::Ran(Box::new(r))
        }
        (Some(true), run) => {
            let mut r = report(plan, t, Outcome::Failed);
            let code = run
                .and_then(|run| run.failure.clone())
                .unwrap_or_else(|| crate::errors::Code::Failed.to_string());
            r.error = Some(ErrorInfo::new(
                code,
                "failed (read from the disk's ledger)",
                false,
            ));
            FromLedger::Ran(Box::new(r))
        }
        (None, Some(run)) => {
            let mut r = report(plan, t, Outcome::Failed);
            r.error = Some(ErrorInfo::new(
                crate::errors::Code::RollbackInProgress,
                format!(
                    "unfinished: the ledger holds this target's run at phase {} (the engine gave up on it; its next delivery resumes it)",
                    run.phase
                ),
                true,
            ));
            FromLedger::Ran(Box::new(r))
        }
        (None, None) => FromLedger::NotStarted,
    }
}

/// The summary event as the engine's output can carry it: whole when it fits in `budget`
/// bytes; else without each target's step times (`perTargetSteps: "in the log"`); else without
/// the per-target list. The whole event is always in the function's log line.
pub fn fit(summary: &Value, budget: usize) -> Value {
    if summary.to_string().len() <= budget {
        return summary.clone();
    }
    let mut s = summary.clone();
    if let Some(per) = s["data"]["perTarget"].as_array_mut() {
        for p in per.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("steps");
        }
    }
    s["data"]["perTargetSteps"] = Value::String("in the log".into());
    if s.to_string().len() > budget {
        if let Some(d) = s["data"].as_object_mut() {
            d.remove("perTarget");
        }
        s["data"]["perTarget"] = Value::String("in the log".into());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{History, RunRecord};

    fn plan_event(n: usize, max_errors: Value) -> Value {
        let targets: Vec<Value> = (0..n)
            .map(|i| json!({"instanceId": format!("i-bp1drill{i:010}")}))
            .collect();
        json!({"workflow": "plan", "drill": {"name": "weekly", "regionId": "cn-hangzhou", "targets": targets,
            "snapshot": {"tag": {"key": "golden", "value": "true"}}, "startAfterReset": true,
            "concurrency": 7, "maxErrors": max_errors, "rtoSeconds": 600},
            "scheduledTime": "2026-11-29T03:00:00Z"})
    }

    fn planned(n: usize, max_errors: Value) -> (DrillPlan, Value) {
        let Some(Ok(Ask::Plan(p))) = parse(&plan_event(n, max_errors)) else {
            panic!("a plan")
        };
        let out = plan_output(&p, &[]);
        (*p, out)
    }

    #[test]
    fn the_plan_carries_the_map_settings_and_bare_targets() {
        let (_, out) = planned(3, json!(2));
        assert_eq!(out["count"], 3);
        assert_eq!(out["maxConcurrency"], 7);
        assert_eq!(out["toleratedFailureCount"], 2);
        assert_eq!(out["toleratedFailurePercentage"], 100.0);
        assert_eq!(
            out["targets"][1],
            json!({"instanceId": "i-bp1drill0000000001"})
        );
        assert_eq!(out["drill"]["defaults"]["startAfterReset"], true);
        let (_, out) = planned(3, json!("10%"));
        assert_eq!(out["toleratedFailureCount"], 3);
        assert_eq!(out["toleratedFailurePercentage"], 10.0);
    }

    #[test]
    fn a_target_is_keyed_as_the_in_process_drill_keys_it() {
        let (p, out) = planned(3, json!(1));
        let ev = json!({"workflow": "target", "drill": out["drill"], "target": out["targets"][2], "index": 2});
        let Some(Ok(Ask::Target { plan, index })) = parse(&ev) else {
            panic!("a target")
        };
        assert_eq!(index, 2);
        let (t, req) = plan.requests(&[]).remove(0);
        let (t0, req0) = p.requests(&[]).remove(2);
        assert_eq!(t, t0, "the same trigger, hence the same key");
        assert_eq!(req, req0, "the same request, defaults included");
    }

    #[test]
    fn rejections_name_the_field() {
        let f = |v: Value| match parse(&v) {
            Some(Err(e)) => e.field,
            other => panic!("{other:?}"),
        };
        assert_eq!(f(json!({"workflow": "go"})), "workflow");
        assert_eq!(
            f(json!({"workflow": "plan", "drill": {"name": "x"}})),
            "drill.targets"
        );
        assert_eq!(
            f(
                json!({"workflow": "target", "drill": {"name": "x", "slot": "s"}, "target": {}, "index": 0})
            ),
            "target"
        );
        assert_eq!(
            f(
                json!({"workflow": "target", "drill": {"name": "x", "slot": "s", "when": 1}, "target": {"diskId": "d-x"}, "index": 0})
            ),
            "drill.when"
        );
        assert_eq!(
            f(json!({"workflow": "summary", "drill": {}, "extra": 1})),
            "extra"
        );
        assert!(parse(&json!({"drill": {}})).is_none());
        let many = plan_event(MAX_TARGETS + 1, Value::Null);
        assert_eq!(f(many), "drill.targets");
    }

    #[test]
    fn compact_results_round_trip_and_stay_small() {
        let (p, out) = planned(1, Value::Null);
        let t = out["targets"][0].as_object().cloned().unwrap_or_default();
        let start = 1_796_025_600_123;
        let c = Compact {
            i: 999,
            o: "succeeded".into(),
            r: Some(41_250),
            s: vec![
                (0, start, 11_000),
                (1, start + 11_000, 9_000),
                (2, start + 20_000, 12_000),
                (3, start + 32_000, 9_250),
            ],
            c: None,
            v: None,
            d: None,
        };
        let text = serde_json::to_string(&c).expect("json");
        assert!(text.len() <= 140, "{} bytes: {text}", text.len());
        let back: Compact = serde_json::from_str(&text).expect("back");
        let r = from_compact(&p, &t, &back);
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.steps.len(), 4);
        assert_eq!(r.steps[2].name, "reset");
        assert_eq!(Compact::of(999, &r), c);
        let verified = Compact {
            c: Some("verified".into()),
            v: Some(47_000),
            ..c
        };
        let r = from_compact(&p, &t, &verified);
        assert_eq!(r.verified_ms(), Some(47_000));
        assert_eq!(Compact::of(999, &r), verified);
        // A whole-instance target keeps its count of disks.
        let whole = Compact {
            d: Some(3),
            ..verified
        };
        let r = from_compact(&p, &t, &whole);
        assert_eq!(r.target.disks.as_ref().map(Vec::len), Some(3));
        assert_eq!(Compact::of(999, &r), whole);
    }

    #[test]
    fn a_summary_too_large_for_the_engine_sheds_step_times_first() {
        let per: Vec<Value> = (0..3)
            .map(|i| json!({"target": format!("d-{i}"), "outcome": "succeeded", "steps": [{"name": "stop"}]}))
            .collect();
        let s = json!({"data": {"succeeded": 3, "perTarget": per}});
        assert_eq!(fit(&s, 10_000), s);
        let len = s.to_string().len();
        let f = fit(&s, len - 1);
        assert_eq!(f["data"]["perTarget"][0].get("steps"), None);
        assert_eq!(f["data"]["perTarget"][2]["outcome"], "succeeded");
        assert_eq!(f["data"]["succeeded"], 3);
        assert_eq!(fit(&s, 40)["data"]["perTarget"], "in the log");
    }

    #[test]
    fn a_target_without_a_result_is_read_from_its_ledger() {
        let (p, out) = planned(1, Value::Null);
        let t = out["targets"][0].as_object().cloned().unwrap_or_default();
        let digest = digest_of(&p, &t);
        let mut l = Ledger::default();
        assert_eq!(from_ledger(&p, &t, Ok(&l)), FromLedger::NotStarted);
        l.run = Some(RunRecord {
            key: ledger::run_key(&digest),
            phase: Phase::Stopped,
            since: 100,
            snapshot: "s-x".into(),
            was_running: true,
            end_running: true,
            stop_at: Some(90),
            failure: None,
            undo: None,
            instance: None,
        });
        let FromLedger::Ran(r) = from_ledger(&p, &t, Ok(&l)) else {
            panic!("ran")
        };
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.error.as_ref().is_some_and(|e| e.retryable));
        let mut h = History::default();
        h.push(&digest, true, 120);
        l.history = h.clone();
        if let Some(run) = l.run.as_mut() {
            run.phase = Phase::Failed;
            run.failure = Some("OperationDenied.LockedInstance".into());
        }
        let FromLedger::Ran(r) = from_ledger(&p, &t, Ok(&l)) else {
            panic!("ran")
        };
        assert_eq!(
            r.error.map(|e| e.code),
            Some("OperationDenied.LockedInstance".into())
        );
        let mut h = History::default();
        h.push(&digest, false, 130);
        l.history = h;
        if let Some(run) = l.run.as_mut() {
            run.phase = Phase::Done;
            run.since = 130;
            run.failure = None;
        }
        let FromLedger::Ran(r) = from_ledger(&p, &t, Ok(&l)) else {
            panic!("ran")
        };
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.downtime_ms, Some(40_000));
        // Another key's history entry says nothing of ours.
        let mut other = Ledger::default();
        other.history.push("ffff0000", false, 1);
        assert_eq!(from_ledger(&p, &t, Ok(&other)), FromLedger::NotStarted);
    }
}
