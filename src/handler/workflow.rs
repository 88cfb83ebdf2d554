//! A drill's steps when a workflow engine runs it (`crate::workflow`): the plan (the selector
//! resolved against ECS), one target (the ordinary rollback, retried by the engine, not here),
//! and the summary (targets without a result read from their disks' ledgers).

use std::collections::BTreeMap;

use serde_json::{json, Map};

use super::*;
use crate::drill_report::DrillReport;
use crate::ecs::EcsError;
use crate::ledger::Ledger;
use crate::workflow::{self, Ask, Compact, FromLedger, ReportFormat};

/// Ledger reads of one summary in flight at once.
const SUMMARY_READS: usize = 10;

/// A report (HTML or SVG) larger than this is left out of the summary's output: the engine
/// would refuse the state (render it from the logs with `ecs-rollback report`).
const REPORT_MAX_BYTES: usize = 200 * 1024;

fn output(output: Value, reports: Vec<Report>, summaries: Vec<Value>) -> Reply {
    Reply {
        shape: Shape::Workflow { output },
        reports,
        summaries,
    }
}

fn ledger_of(d: &crate::ecs::model::Disk) -> Ledger {
    Ledger::from_tags(
        d.tags
            .tag
            .iter()
            .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
    )
}

fn workflow_trigger() -> Trigger {
    Trigger {
        kind: "workflow".into(),
        id: String::new(),
        time: None,
        key_basis: None,
    }
}

impl Handler {
    pub(super) async fn workflow(&self, event: &Value, deadline: Option<Instant>) -> Reply {
        let ask = match workflow::parse(event) {
            Some(Ok(ask)) => ask,
            Some(Err(e)) => {
                tracing::warn!(field = %e.field, error_message = %e.message, "workflow step rejected");
                return output(Value::Null, vec![rejected(&workflow_trigger(), &e)], vec![]);
            }
            None => {
                let e = InvalidRequest::new("workflow", "missing");
                return output(Value::Null, vec![rejected(&workflow_trigger(), &e)], vec![]);
            }
        };
        match ask {
            Ask::Plan(plan) => self.workflow_plan(&plan).await,
            Ask::Target { plan, index } => self.workflow_target(&plan, index, deadline).await,
            Ask::Summary {
                plan,
                targets,
                results,
                map_error,
                report,
            } => {
                self.workflow_summary(&plan, &targets, &results, map_error, report)
                    .await
            }
        }
    }

    /// The targets a selector picks (instances: `instanceId`; disks: `diskId`).
    /// The drill's selector resolved against ECS: one target object per matching disk or
    /// instance (none without a selector). Shared by the in-process drill and the plan step.
    pub(super) async fn select(
        &self,
        plan: &DrillPlan,
    ) -> Result<Vec<Map<String, Value>>, EcsError> {
        let Some(sel) = &plan.selector else {
            return Ok(vec![]);
        };
        let region = self.region_of(plan, &Map::new());
        let tags: Vec<(String, String)> = sel.tags.clone().into_iter().collect();
        let (key, ids) = if sel.resource == "disk" {
            let q = DiskQuery {
                tags,
                ..Default::default()
            };
            let found = self.ecs.describe_disks(&region, &q).await?;
            ("diskId", found.into_iter().map(|d| d.disk_id).collect())
        } else {
            let q = InstanceQuery {
                tags,
                ..Default::default()
            };
            let found = self.ecs.describe_instances(&region, &q).await?;
            let ids: Vec<String> = found.into_iter().map(|i| i.instance_id).collect();
            ("instanceId", ids)
        };
        Ok(ids
            .into_iter()
            .map(|id| Map::from_iter([(key.to_owned(), Value::String(id))]))
            .collect())
    }

    fn region_of(&self, plan: &DrillPlan, target: &Map<String, Value>) -> String {
        target
            .get("regionId")
            .or_else(|| target.get("RegionId"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| plan.region.clone())
            .or_else(|| self.default_region.clone())
            .unwrap_or_default()
    }

    async fn workflow_plan(&self, plan: &DrillPlan) -> Reply {
        let trigger = Trigger {
            kind: "drill".into(),
            id: format!("{}|{}", plan.name, plan.slot),
            time: plan.when,
            key_basis: None,
        };
        let selected = match self.select(plan).await {
            Ok(s) => s,
            Err(e) => {
                // Retryable when ECS throttled or failed for a while: the engine plans again.
                let mut r = bare(Outcome::Rejected, &trigger, Some(ErrorInfo::from_ecs(&e)));
                r.reason = Some(format!(
                    "drill {}: the selector could not be resolved",
                    plan.name
                ));
                return output(Value::Null, vec![r], vec![]);
            }
        };
        let out = workflow::plan_output(plan, &selected);
        let count = out["count"].as_u64().unwrap_or(0) as usize;
        if count == 0 {
            let r = rejected(
                &trigger,
                &InvalidRequest::new("drill.selector", "matched no target"),
            );
            return output(Value::Null, vec![r], vec![]);
        }
        if count > workflow::MAX_TARGETS {
            let r = rejected(
                &trigger,
                &InvalidRequest::new(
                    "drill.selector",
                    format!(
                        "matched {count} targets; a workflow drill takes at most {}",
                        workflow::MAX_TARGETS
                    ),
                ),
            );
            return output(Value::Null, vec![r], vec![]);
        }
        tracing::info!(drill = %plan.name, targets = count, "workflow drill planned");
        output(out, vec![], vec![])
    }

    /// One target, run once: a failure a retry can fix is the engine's to retry (`Retryable`).
    async fn workflow_target(
        &self,
        plan: &DrillPlan,
        index: usize,
        deadline: Option<Instant>,
    ) -> Reply {
        let Some((trigger, value)) = plan.requests(&[]).into_iter().next() else {
            let e = InvalidRequest::new("target", "no target");
            return output(Value::Null, vec![rejected(&workflow_trigger(), &e)], vec![]);
        };
        let report = match request::parse(&value, self.default_region.as_deref(), trigger.clone()) {
            Ok(req) => {
                self.gated(req, &super::drill::drill_signal(), deadline)
                    .await
            }
            Err(e) => rejected(&trigger, &e),
        };
        let compact = json!(Compact::of(index, &report));
        output(compact, vec![report], vec![])
    }

    /// Reads the ledger of each target's disk: disks by ID, 100 a call; an instance's system
    /// disk by its instance, one call each.
    async fn ledgers(
        &self,
        plan: &DrillPlan,
        wanted: &[(usize, &Map<String, Value>)],
    ) -> BTreeMap<usize, Result<Ledger, String>> {
        let mut out = BTreeMap::new();
        let mut by_disk: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        let mut by_instance = Vec::new();
        for (i, t) in wanted {
            let region = self.region_of(plan, t);
            match ["diskId", "DiskId"]
                .iter()
                .find_map(|k| t.get(*k).and_then(Value::as_str))
            {
                Some(d) => by_disk.entry((region, d.to_owned())).or_default().push(*i),
                None => by_instance.push((*i, region, workflow::who_of(t))),
            }
        }
        let mut regions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (region, disk) in by_disk.keys() {
            regions
                .entry(region.clone())
                .or_default()
                .push(disk.clone());
        }
        for (region, disks) in regions {
            for chunk in disks.chunks(100) {
                let q = DiskQuery {
                    ids: chunk.to_vec(),
                    ..Default::default()
                };
                let read = self.ecs.describe_disks(&region, &q).await;
                for d in chunk {
                    let ledger = match &read {
                        Ok(found) => found
                            .iter()
                            .find(|x| &x.disk_id == d)
                            .map(ledger_of)
                            .ok_or_else(|| format!("disk {d} not found in {region}")),
                        Err(e) => Err(format!("reading {d}: {e}")),
                    };
                    for i in by_disk
                        .get(&(region.clone(), d.clone()))
                        .into_iter()
                        .flatten()
                    {
                        out.insert(*i, ledger.clone());
                    }
                }
            }
        }
        let read: Vec<(usize, Result<Ledger, String>)> = stream::iter(by_instance)
            .map(|(i, region, instance)| async move {
                let q = DiskQuery {
                    instance_id: Some(instance.clone()),
                    disk_type: Some("system".into()),
                    ..Default::default()
                };
                let ledger = match self.ecs.describe_disks(&region, &q).await {
                    Ok(found) => found
                        .first()
                        .map(ledger_of)
                        .ok_or_else(|| format!("no system disk of {instance} in {region}")),
                    Err(e) => Err(format!("reading the system disk of {instance}: {e}")),
                };
                (i, ledger)
            })
            .buffer_unordered(SUMMARY_READS)
            .collect()
            .await;
        out.extend(read);
        out
    }

    /// A target with neither a result nor a ledger trace, dry-run: `Some` (rejected, with its
    /// reason) when it is refused before anything would change, `None` when it would run (it
    /// never started).
    async fn refused(&self, plan: &DrillPlan, t: &Map<String, Value>) -> Option<Report> {
        let one = DrillPlan {
            targets: vec![t.clone()],
            name: plan.name.clone(),
            when: plan.when,
            slot: plan.slot.clone(),
            region: plan.region.clone(),
            selector: None,
            defaults: plan.defaults.clone(),
            concurrency: 1,
            max_errors: None,
            rto_seconds: plan.rto_seconds,
        };
        let (trigger, mut value) = one.requests(&[]).into_iter().next()?;
        if let Some(o) = value.as_object_mut() {
            o.insert("dryRun".into(), Value::Bool(true));
        }
        let mut r = match request::parse(&value, self.default_region.as_deref(), trigger.clone()) {
            Ok(req) => {
                Rollback::new(&self.ecs, &self.settings)
                    .run(&req, None)
                    .await
            }
            Err(e) => rejected(&trigger, &e),
        };
        if r.outcome != Outcome::Rejected {
            return None;
        }
        r.trigger_id = trigger.id;
        r.steps.clear();
        r.reason = Some("refused before anything changed (no result from the workflow; checked again by the summary with a dry run)".into());
        Some(r)
    }

    async fn workflow_summary(
        &self,
        plan: &DrillPlan,
        targets: &[Map<String, Value>],
        results: &BTreeMap<usize, Compact>,
        map_error: Option<Value>,
        report: Option<ReportFormat>,
    ) -> Reply {
        let wanted: Vec<(usize, &Map<String, Value>)> = targets
            .iter()
            .enumerate()
            .filter(|(i, _)| !results.contains_key(i))
            .collect();
        let ledgers = self.ledgers(plan, &wanted).await;
        let mut ran = Vec::new();
        let mut unseen = Vec::new();
        let mut skipped = 0;
        for (i, t) in targets.iter().enumerate() {
            if let Some(c) = results.get(&i) {
                ran.push(workflow::from_compact(plan, t, c));
                continue;
            }
            let read = match ledgers.get(&i) {
                Some(Ok(l)) => Ok(l),
                Some(Err(e)) => Err(e.as_str()),
                None => Err("not read"),
            };
            match workflow::from_ledger(plan, t, read) {
                FromLedger::Ran(r) => ran.push(*r),
                FromLedger::NotStarted => unseen.push(i),
            }
        }
        // No result and no trace in the ledger: never started, or refused before it touched
        // anything (a refusal writes no ledger). A dry run of the target tells which.
        let unseen: Vec<Map<String, Value>> = unseen.iter().map(|i| targets[*i].clone()).collect();
        let checked: Vec<Option<Report>> = stream::iter(unseen)
            .map(|t| async move { self.refused(plan, &t).await })
            .buffered(SUMMARY_READS)
            .collect()
            .await;
        for r in checked {
            match r {
                Some(r) => ran.push(r),
                None => skipped += 1,
            }
        }
        let summary = plan.summary(&ran, skipped, map_error.is_some());
        tracing::info!(drill = %plan.name, targets = targets.len(), with_result = results.len(), read_from_ledgers = wanted.len(), skipped, "workflow drill summarized");
        let mut out = json!({"summary": workflow::fit(&summary, REPORT_MAX_BYTES)});
        if let Some(map_error) = map_error {
            out["mapError"] = map_error;
        }
        if let Some(format) = report {
            let mut lines: Vec<String> =
                ran.iter().map(|r| r.to_cloud_event().to_string()).collect();
            lines.push(summary.to_string());
            match DrillReport::from_jsonl(&lines.join("\n")) {
                Ok(d) => {
                    let text = match format {
                        ReportFormat::Html => d.html(),
                        ReportFormat::Svg => d.svg(),
                    };
                    if text.len() <= REPORT_MAX_BYTES {
                        out["report"] = Value::String(text);
                    } else {
                        out["reportError"] = Value::String(format!(
                            "the report has {} bytes, over the {REPORT_MAX_BYTES} this output keeps under the engine's payload limit: render it from the logs with `ecs-rollback report`",
                            text.len()
                        ));
                    }
                }
                Err(e) => out["reportError"] = Value::String(e),
            }
        }
        output(out, vec![], vec![summary])
    }
}
