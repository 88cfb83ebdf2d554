//! A drill in one invocation: the tag selector resolved against ECS, the targets run with
//! bounded concurrency and shared polling, `maxErrors`, each target retried while its failure
//! can pass, the summary event.

use super::*;

/// The target a drill's request names, as given (for the result of a target that never ran:
/// skipped, or refused before its run), so every per-target event names its target.
fn target_of(request: &Value) -> Target {
    let field = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| request.get(*n).and_then(Value::as_str))
            .map(str::to_owned)
    };
    Target {
        region_id: field(["regionId", "RegionId"]),
        instance_id: field(["instanceId", "InstanceId"]),
        disk_id: field(["diskId", "DiskId"]),
        snapshot_id: field(["snapshotId", "SnapshotId"]),
        snapshot_status: None,
        undo_snapshot_id: None,
        disks: None,
    }
}

/// What the policy sees of a drill's target.
pub(super) fn drill_signal() -> crate::policy::Signal {
    crate::policy::Signal::new(crate::policy::Source::Drill, None, None)
}

/// Runs of one drill target that failed in a way a retry can fix, at most.
const DRILL_TARGET_ATTEMPTS: u32 = 6;

impl Handler {
    /// A drill: its selector resolved, its targets run at most `concurrency` at once with shared
    /// polling; once more than `maxErrors` have failed, no new target starts.
    pub async fn run_drill(
        &self,
        plan: &DrillPlan,
        deadline: Option<Instant>,
    ) -> (Vec<Report>, Value) {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let trigger = Trigger {
            kind: "drill".into(),
            key_basis: None,
            id: format!("{}|{}", plan.name, plan.slot),
            time: plan.when,
        };
        let selected = match self.select(plan).await {
            Ok(selected) => selected,
            Err(e) => {
                let mut r = bare(Outcome::Rejected, &trigger, Some(ErrorInfo::from_ecs(&e)));
                r.reason = Some(format!(
                    "drill {}: the selector could not be resolved",
                    plan.name
                ));
                return (vec![r], plan.summary(&[], 0, true));
            }
        };
        let requests = plan.requests(&selected);
        if requests.is_empty() {
            let r = rejected(
                &trigger,
                &InvalidRequest::new("drill.selector", "matched no target"),
            );
            return (vec![r], plan.summary(&[], 0, false));
        }
        let total = requests.len();
        // About one poll interval: polls of different targets then share a call. A stale read
        // only delays noticing a transition; every state-changing call re-reads fresh.
        let cache = StatusCache::new(
            &self.ecs,
            (self.settings.poll.max / 2).max(self.settings.poll.initial),
        );
        let failed = AtomicUsize::new(0);
        let stopped = AtomicBool::new(false);
        let results: Vec<(Report, bool)> = stream::iter(requests)
            .map(|(trigger, value)| {
                let (cache, failed, stopped) = (&cache, &failed, &stopped);
                async move {
                    if stopped.load(SeqCst) {
                        let mut r = ignored(
                            &trigger,
                            "not started: more targets failed than the drill's maxErrors allows",
                        );
                        r.target = target_of(&value);
                        return (r, true);
                    }
                    let report = match request::parse(
                        &value,
                        self.default_region.as_deref(),
                        trigger.clone(),
                    ) {
                        Ok(req) => match self.admit(&req, &drill_signal()).await {
                            Err(r) => *r,
                            Ok(gate_steps) => {
                                // A failure a retry can fix (throttling, a transient error) slows the
                                // target down, it does not fail it: run it again (same key: it resumes).
                                let mut pause =
                                    self.settings.poll.initial.max(Duration::from_millis(50));
                                let mut attempt = 0;
                                loop {
                                    attempt += 1;
                                    let r = Rollback::new(&self.ecs, &self.settings)
                                        .with_cache(cache)
                                        .run(&req, deadline)
                                        .await;
                                    let again = !r.outcome.is_ok()
                                        && r.error.as_ref().is_some_and(|e| {
                                            e.retryable && e.code != Code::DeadlineExceeded
                                        })
                                        && attempt < DRILL_TARGET_ATTEMPTS;
                                    if !again {
                                        let mut r = r;
                                        r.steps.splice(0..0, gate_steps);
                                        break r;
                                    }
                                    tokio::time::sleep(pause.mul_f64(0.5 + fastrand::f64() / 2.0))
                                        .await;
                                    pause = (pause * 2).min(self.settings.poll.max * 4);
                                }
                            }
                        },
                        Err(e) => {
                            let mut r = rejected(&trigger, &e);
                            r.target = target_of(&value);
                            r
                        }
                    };
                    // Out of time is not a failure of the target: the next delivery resumes it.
                    let out_of_time = report
                        .error
                        .as_ref()
                        .is_some_and(|e| e.code == Code::DeadlineExceeded);
                    if !report.outcome.is_ok() && !out_of_time {
                        let f = failed.fetch_add(1, SeqCst) + 1;
                        if plan.max_errors.is_some_and(|m| m.exceeded(f, total)) {
                            stopped.store(true, SeqCst);
                        }
                    }
                    (report, false)
                }
            })
            .buffered(plan.concurrency)
            .collect()
            .await;
        let skipped = results.iter().filter(|(_, s)| *s).count();
        let ran: Vec<Report> = results
            .iter()
            .filter(|(_, s)| !*s)
            .map(|(r, _)| r.clone())
            .collect();
        let summary = plan.summary(&ran, skipped, stopped.load(SeqCst));
        tracing::info!(drill = %plan.name, targets = total, skipped, "drill finished");
        (results.into_iter().map(|(r, _)| r).collect(), summary)
    }
}
