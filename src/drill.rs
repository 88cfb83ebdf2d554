//! Recovery drills: a scheduled event names a set of targets (explicit, or a tag selector), and
//! each becomes an ordinary rollback request whose idempotency key is derived from the drill's
//! name, its scheduled time and the target, so a redelivered schedule never drills a target
//! twice. `concurrency` bounds how many run at once; once more than `maxErrors` have failed, no
//! new target starts (running ones finish). The drill ends with a summary event.
//!
//! ```json
//! {"drill": {"name": "weekly", "regionId": "cn-hangzhou",
//!            "targets": [{"instanceId": "i-…"}, {"diskId": "d-…"}],
//!            "selector": {"tags": {"drill": "weekly"}, "resource": "instance"},
//!            "snapshot": {"tag": {"key": "golden", "value": "true"}}, "startAfterReset": true,
//!            "concurrency": 10, "maxErrors": "10%", "rtoSeconds": 600},
//!  "scheduledTime": "2026-11-29T03:00:00Z"}
//! ```
//! `regionId`, `snapshot`, `dryRun`, `forceStop`, `startAfterReset`, `preserveCurrent` and `reason` at the drill
//! level are defaults for every target; `disks` (`"all"` or a list), `maxSkewSeconds` and
//! `allowPartial` for every instance target, which is then rolled back whole. Pure: the selector is resolved by the handler.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::report::{Outcome, Report};
use crate::request::{InvalidRequest, Trigger};

/// Targets in one drill, at most.
pub const MAX_TARGETS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DrillSpec {
    name: String,
    #[serde(default)]
    targets: Vec<Map<String, Value>>,
    #[serde(default)]
    selector: Option<Selector>,
    #[serde(default)]
    region_id: Option<String>,
    #[serde(default)]
    snapshot: Option<Value>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    force_stop: Option<bool>,
    #[serde(default)]
    start_after_reset: Option<bool>,
    #[serde(default)]
    preserve_current: Option<bool>,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    max_errors: Option<Value>,
    #[serde(default)]
    rto_seconds: Option<u64>,
    #[serde(default)]
    scheduled_time: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// The service check of every target (`crate::verify`): the drill's RTO is then measured
    /// to the service verified.
    #[serde(default)]
    verify: Option<Value>,
    #[serde(default)]
    on_verify_failure: Option<Value>,
    /// Every instance target rolled back whole (`"all"`, or a list): its disks to one point in
    /// time (`crate::request::InstanceScope`); disk targets are not affected.
    #[serde(default)]
    disks: Option<Value>,
    #[serde(default)]
    max_skew_seconds: Option<Value>,
    #[serde(default)]
    allow_partial: Option<bool>,
}

/// Targets chosen by tags: every instance (its system disk) or every disk carrying all of them.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    pub tags: BTreeMap<String, String>,
    #[serde(default = "instance")]
    pub resource: String,
}

fn instance() -> String {
    "instance".into()
}

/// How many failed targets stop the drill from starting new ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxErrors {
    Count(usize),
    Percent(f64),
}

impl MaxErrors {
    /// More failures than allowed, out of `total` targets.
    pub fn exceeded(self, failed: usize, total: usize) -> bool {
        match self {
            MaxErrors::Count(n) => failed > n,
            MaxErrors::Percent(p) => (failed as f64) > p / 100.0 * total as f64,
        }
    }
}

/// A drill, ready to run once its selector (if any) is resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct DrillPlan {
    pub name: String,
    pub when: Option<DateTime<Utc>>,
    /// What keys the drill's run: the scheduled time, else the day.
    pub slot: String,
    pub region: Option<String>,
    pub targets: Vec<Map<String, Value>>,
    pub selector: Option<Selector>,
    pub defaults: Map<String, Value>,
    pub concurrency: usize,
    pub max_errors: Option<MaxErrors>,
    pub rto_seconds: Option<u64>,
}

fn invalid(field: &str, m: impl Into<String>) -> InvalidRequest {
    InvalidRequest::new(format!("drill.{field}"), m)
}

/// Validates a drill spec. `scheduled` is the event's scheduled time (a `scheduledTime` inside
/// the spec wins).
pub fn parse(spec: &Value, scheduled: Option<&str>) -> Result<DrillPlan, InvalidRequest> {
    parse_limited(spec, scheduled, MAX_TARGETS)
}

/// [`parse`] with another bound on the named targets (a workflow drill takes more).
pub fn parse_limited(
    spec: &Value,
    scheduled: Option<&str>,
    max_targets: usize,
) -> Result<DrillPlan, InvalidRequest> {
    let spec: DrillSpec = serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        invalid(&crate::request::field_in(&message).unwrap_or(path), message)
    })?;
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err(invalid("name", "1 to 64 letters, digits, - _ ."));
    }
    match (&spec.selector, spec.targets.len()) {
        (None, 0) => return Err(invalid("targets", "name targets, or a selector")),
        (_, n) if n > max_targets => {
            return Err(invalid("targets", format!("at most {max_targets} targets")))
        }
        (Some(sel), _) if sel.tags.is_empty() || sel.tags.len() > 20 => {
            return Err(invalid("selector.tags", "1 to 20 tags"))
        }
        (Some(sel), _) if sel.resource != "instance" && sel.resource != "disk" => {
            return Err(invalid("selector.resource", "instance or disk"))
        }
        _ => {}
    }
    for (i, t) in spec.targets.iter().enumerate() {
        if t.contains_key("idempotencyKey") || t.contains_key("requestId") {
            return Err(invalid(
                &format!("targets[{i}].idempotencyKey"),
                "a drill target's key comes from the drill",
            ));
        }
    }
    let max_errors = match spec.max_errors {
        None => None,
        Some(Value::Number(n)) => Some(MaxErrors::Count(
            n.as_u64()
                .ok_or_else(|| invalid("maxErrors", "a whole number or a percentage"))?
                as usize,
        )),
        Some(Value::String(s)) => {
            let p: f64 = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse().ok())
                .filter(|p: &f64| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    invalid(
                        "maxErrors",
                        "a whole number, or a percentage such as \"10%\"",
                    )
                })?;
            Some(MaxErrors::Percent(p))
        }
        Some(_) => return Err(invalid("maxErrors", "a whole number or a percentage")),
    };
    let when_raw = spec.scheduled_time.as_deref().or(scheduled).unwrap_or("");
    let when = if when_raw.is_empty() {
        None
    } else {
        Some(
            DateTime::parse_from_rfc3339(when_raw)
                .map_err(|e| invalid("scheduledTime", format!("not RFC 3339: {e}")))?
                .with_timezone(&Utc),
        )
    };
    // Without a scheduled time the drill runs once per day (keyed by date), never twice a day
    // from a redelivery.
    let slot = match when {
        Some(t) => t.to_rfc3339(),
        None => Utc::now().format("%Y-%m-%d").to_string(),
    };
    let mut defaults = Map::new();
    if let Some(v) = &spec.verify {
        crate::verify::parse(v).map_err(|e| invalid(&e.field, e.message))?;
    }
    let fields: [(&str, Option<Value>); 11] = [
        ("disks", spec.disks),
        ("maxSkewSeconds", spec.max_skew_seconds),
        ("allowPartial", spec.allow_partial.map(Value::Bool)),
        ("verify", spec.verify),
        ("onVerifyFailure", spec.on_verify_failure),
        ("snapshot", spec.snapshot),
        ("dryRun", spec.dry_run.map(Value::Bool)),
        ("forceStop", spec.force_stop.map(Value::Bool)),
        ("startAfterReset", spec.start_after_reset.map(Value::Bool)),
        ("preserveCurrent", spec.preserve_current.map(Value::Bool)),
        (
            "reason",
            Some(Value::String(
                spec.reason
                    .unwrap_or_else(|| format!("recovery drill {}", spec.name)),
            )),
        ),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            defaults.insert(k.to_owned(), v);
        }
    }
    Ok(DrillPlan {
        name: spec.name,
        when,
        slot,
        region: spec.region_id,
        targets: spec.targets,
        selector: spec.selector,
        defaults,
        concurrency: spec.concurrency.unwrap_or(10).clamp(1, 50),
        max_errors,
        rto_seconds: spec.rto_seconds,
    })
}

impl DrillPlan {
    /// One request per target (the explicit ones, then those the selector found), each with
    /// the drill's defaults and a key of its own.
    pub fn requests(&self, selected: &[Map<String, Value>]) -> Vec<(Trigger, Value)> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for target in self.targets.iter().chain(selected) {
            let mut req = target.clone();
            if let (Some(r), false) = (
                &self.region,
                req.contains_key("regionId") || req.contains_key("RegionId"),
            ) {
                req.insert("regionId".into(), Value::String(r.clone()));
            }
            // The whole-instance fields go to a target taken whole only: an instance target
            // with `disks` of its own or from the drill (a disk target is one disk).
            let names_disk = req.contains_key("diskId") || req.contains_key("DiskId");
            let whole =
                !names_disk && (req.contains_key("disks") || self.defaults.contains_key("disks"));
            for (k, v) in &self.defaults {
                let instance_only =
                    ["disks", "maxSkewSeconds", "allowPartial"].contains(&k.as_str());
                let taken = req.contains_key(k)
                    || (instance_only && !whole)
                    || (k == "snapshot"
                        && (req.contains_key("snapshotId") || req.contains_key("SnapshotId")));
                if !taken {
                    req.insert(k.clone(), v.clone());
                }
            }
            let who = ["diskId", "DiskId", "instanceId", "InstanceId"]
                .iter()
                .find_map(|k| req.get(*k).and_then(Value::as_str))
                .unwrap_or("")
                .to_owned();
            if !seen.insert(who.clone()) {
                continue;
            }
            out.push((
                Trigger {
                    kind: "drill".into(),
                    key_basis: None,
                    id: format!("{}|{}|{who}", self.name, self.slot),
                    time: self.when,
                },
                Value::Object(req),
            ));
        }
        out
    }

    /// The drill's summary event (CloudEvents 1.0): targets; what this delivery did
    /// (`succeeded`, `dryRun`, `failed`, `skipped`, `ignored`) apart from what had already
    /// happened (`alreadyRolledBack`: an earlier delivery of this drill rolled the target back;
    /// `superseded`: a later rollback of the disk exists, not undone); the recovery time of
    /// each target that recovered in this delivery (stop asked to Running again) with min,
    /// median, p95 and max; and the objective.
    ///
    /// `objectiveMet`: every target that recovered in this delivery did so within
    /// `rtoSeconds` (`null` without `rtoSeconds`, or when none recovered). Failed and skipped
    /// targets did not recover, so they are counted beside it, not in it: "met" with failures
    /// reads "broken, not slow"; `overObjective` counts the slow ones.
    pub fn summary(&self, reports: &[Report], skipped: usize, stopped_early: bool) -> Value {
        let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count();
        let failed = count(Outcome::Failed) + count(Outcome::Rejected);
        // With a service check, a target has recovered once its service was verified, and the
        // objective is measured to that moment (stop to verified); without one, to Running.
        let verified = reports.iter().any(|r| r.verification.is_some());
        let recovery = |r: &Report| {
            if verified {
                r.verified_ms()
            } else {
                r.downtime_ms
            }
        };
        let mut times: Vec<u64> = reports
            .iter()
            .filter(|r| verified || matches!(r.outcome, Outcome::Succeeded | Outcome::Failed))
            .filter_map(recovery)
            .collect();
        times.sort_unstable();
        let pick = |q: f64| -> Option<u64> {
            if times.is_empty() {
                return None;
            }
            let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            Some(times[i])
        };
        let objective_ms = self.rto_seconds.map(|s| s * 1000);
        let over = objective_ms.map(|o| times.iter().filter(|t| **t > o).count());
        let met = over.filter(|_| !times.is_empty()).map(|n| n == 0);
        let per_target: Vec<Value> = reports
            .iter()
            .map(|r| {
                json!({
                    "target": r.target.disk_id.clone().or_else(|| r.target.instance_id.clone()),
                    "outcome": r.outcome,
                    "disks": r.target.disks.as_ref().map(|d| d.iter().filter(|x| !x.disk_id.is_empty()).map(|x| json!({"diskId": x.disk_id, "snapshotId": x.snapshot_id, "holds": x.holds})).collect::<Vec<_>>()),
                    "recoveryMs": r.downtime_ms,
                    "verifiedMs": r.verified_ms(),
                    "verification": r.verification.as_ref().map(|v| v.result.clone()),
                    "error": r.error.as_ref().map(|e| e.code.clone()),
                    "withinObjective": objective_ms.zip(recovery(r)).map(|(o, t)| t <= o),
                    // The report's timeline: when each step that ran began and ended.
                    "steps": r.steps.iter()
                        .filter(|s| crate::report::TIMED_STEPS.contains(&crate::report::step_kind(&s.name)))
                        .map(|s| json!({"name": s.name, "status": s.status, "startedAt": s.started_at, "finishedAt": s.finished_at}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "specversion": "1.0",
            "id": uuid::Uuid::new_v4().to_string(),
            "source": "ecs-rollback",
            "type": "ecs-rollback.drill-summary",
            "subject": self.name,
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "datacontenttype": "application/json",
            "data": {
                "drill": self.name,
                "scheduledTime": self.when.map(|t| t.to_rfc3339()),
                "targets": reports.len() + skipped,
                // Whole-instance targets count every disk they name.
                "instances": reports
                    .iter()
                    .filter_map(|r| r.target.instance_id.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                "disks": reports
                    .iter()
                    .map(|r| r.target.disks.as_ref().map_or(usize::from(r.target.disk_id.is_some() || r.target.instance_id.is_some()), Vec::len))
                    .sum::<usize>(),
                "succeeded": count(Outcome::Succeeded),
                "dryRun": count(Outcome::DryRun),
                "failed": failed,
                "skipped": skipped,
                "ignored": count(Outcome::Ignored),
                "alreadyRolledBack": count(Outcome::Duplicate),
                "superseded": count(Outcome::Superseded),
                "stoppedEarly": stopped_early,
                "recovered": times.len(),
                "recoveryMs": {"min": times.first(), "median": pick(0.5), "p95": pick(0.95), "max": times.last()},
                // What the recovery times and the objective measure: `running` (stop to
                // Running) or `verified` (stop to the service verified: a `verify` block).
                "measuredTo": if verified { "verified" } else { "running" },
                "verificationFailed": count(Outcome::VerificationFailed),
                "unverified": count(Outcome::Unverified),
                "rolledBackToUndo": count(Outcome::RolledBackToUndo),
                "rtoSeconds": self.rto_seconds,
                "objectiveMet": met,
                "overObjective": over,
                "perTarget": per_target,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_targets_are_taken_whole_when_the_drill_says_disks() {
        let spec = json!({"name": "whole", "regionId": "cn-hangzhou", "disks": "all",
            "maxSkewSeconds": 600, "snapshot": {"before": "2026-11-29T00:00:00Z"},
            "targets": [{"instanceId": "i-bp1webapp00000001"}, {"diskId": "d-bp1batch00000sys02"}]});
        let d = parse(&spec, Some("2026-11-29T03:00:00Z")).expect("valid");
        let reqs = d.requests(&[]);
        assert_eq!(reqs[0].1["disks"], "all");
        assert_eq!(reqs[0].1["maxSkewSeconds"], 600);
        assert!(reqs[1].1.get("disks").is_none() && reqs[1].1.get("maxSkewSeconds").is_none());
        // Each parses: the instance whole, the disk alone.
        for (t, r) in &reqs {
            crate::request::parse(r, None, t.clone()).expect("valid request");
        }
        // Without the drill's `disks`, an instance target is its system disk, and the
        // whole-instance fields stay off it.
        let spec = json!({"name": "one", "regionId": "cn-hangzhou", "allowPartial": true,
            "targets": [{"instanceId": "i-bp1webapp00000001"}, {"instanceId": "i-bp1dbserv00000005", "disks": "all"}]});
        let reqs = parse(&spec, None).expect("valid").requests(&[]);
        assert!(reqs[0].1.get("allowPartial").is_none());
        assert_eq!(reqs[1].1["allowPartial"], true);
    }

    #[test]
    fn targets_take_the_drill_defaults_and_a_stable_key() {
        let spec = json!({"name": "weekly", "regionId": "cn-hangzhou", "startAfterReset": true,
            "snapshot": {"tag": {"key": "golden"}},
            "targets": [{"instanceId": "i-bp1webapp00000001"}, {"diskId": "d-bp1batch00000sys02", "snapshotId": "s-bp1batch00sys00001"}]});
        let d = parse(&spec, Some("2026-11-29T03:00:00Z")).expect("valid");
        let reqs = d.requests(&[]);
        assert_eq!(reqs.len(), 2);
        let (t0, r0) = &reqs[0];
        assert_eq!(t0.kind, "drill");
        assert_eq!(
            t0.id,
            "weekly|2026-11-29T03:00:00+00:00|i-bp1webapp00000001"
        );
        assert_eq!(r0["snapshot"]["tag"]["key"], "golden");
        assert_eq!(r0["startAfterReset"], true);
        assert_eq!(r0["regionId"], "cn-hangzhou");
        assert!(
            reqs[1].1.get("snapshot").is_none(),
            "an explicit snapshotId wins over the default selector"
        );
        let again = parse(&spec, Some("2026-11-29T03:00:00Z"))
            .expect("valid")
            .requests(&[]);
        assert_eq!(again[0].0.id, t0.id);
        // A target named twice (explicitly and by the selector) is drilled once.
        let mut sel = Map::new();
        sel.insert("instanceId".into(), json!("i-bp1webapp00000001"));
        assert_eq!(d.requests(&[sel]).len(), 2);
    }

    #[test]
    fn rejections_name_the_field() {
        let f = |v: Value| parse(&v, None).expect_err("invalid").field;
        assert_eq!(f(json!({"name": "x", "targets": []})), "drill.targets");
        assert_eq!(f(json!({"name": "x y", "targets": [{}]})), "drill.name");
        assert_eq!(
            f(json!({"name": "x", "targets": [{}], "when": 1})),
            "drill.when"
        );
        assert_eq!(
            f(
                json!({"name": "x", "targets": [{"diskId": "d-bp1batch00000sys02", "idempotencyKey": "k"}]})
            ),
            "drill.targets[0].idempotencyKey"
        );
        assert_eq!(
            f(json!({"name": "x", "targets": [{}], "maxErrors": "lots"})),
            "drill.maxErrors"
        );
        assert_eq!(
            f(json!({"name": "x", "selector": {"tags": {}}})),
            "drill.selector.tags"
        );
        assert_eq!(
            f(json!({"name": "x", "selector": {"tags": {"a": "b"}, "resource": "vpc"}})),
            "drill.selector.resource"
        );
    }

    #[test]
    fn max_errors() {
        assert!(!MaxErrors::Count(1).exceeded(1, 25));
        assert!(MaxErrors::Count(1).exceeded(2, 25));
        assert!(!MaxErrors::Percent(10.0).exceeded(2, 25));
        assert!(MaxErrors::Percent(10.0).exceeded(3, 25));
    }
}
