//! The one handler every front door calls (the CLI's `invoke`, the Lambda runtime): an event in,
//! one report per request out, in the shape its source expects back: an SQS partial batch
//! response, an HTTP status, or the list of results.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use crate::drill::DrillPlan;
use crate::ecs::EcsClient;
use crate::ecs::{DiskQuery, InstanceQuery};
use crate::errors::Code;
use crate::poller::StatusCache;
use crate::report::{ErrorInfo, Outcome, Report, Step, StepStatus, Target};
use crate::request::{self, InvalidRequest, Trigger};
use crate::rollback::Rollback;
use crate::settings::Settings;
use crate::triggers::{self, aws, webhook, Item, Job, Kind};

pub use crate::triggers::MAX_REQUESTS;
/// Runs of one drill target that failed in a way a retry can fix, at most.
const DRILL_TARGET_ATTEMPTS: u32 = 6;

pub struct Handler {
    pub ecs: EcsClient,
    pub settings: Settings,
    pub default_region: Option<String>,
    pub webhook: webhook::WebhookAuth,
    pub triggers: triggers::Context,
    /// Requests of one event (SQS message groups, drill targets, alerts) run at once, at most.
    pub concurrency: usize,
}

/// The shape of an invocation's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Results,
    /// SQS: the message IDs a retry can help, for `batchItemFailures`.
    Sqs {
        failures: Vec<String>,
    },
    Http {
        status: u16,
    },
}

/// What an invocation answers: one report per request, and a summary event per drill.
#[derive(Debug)]
pub struct Reply {
    pub shape: Shape,
    pub reports: Vec<Report>,
    pub summaries: Vec<Value>,
}

impl Reply {
    fn results(reports: Vec<Report>, summaries: Vec<Value>) -> Self {
        Self {
            shape: Shape::Results,
            reports,
            summaries,
        }
    }

    pub fn reports(&self) -> &[Report] {
        &self.reports
    }

    pub fn into_reports(self) -> Vec<Report> {
        self.reports
    }
}

fn bare(outcome: Outcome, trigger: &Trigger, error: Option<ErrorInfo>) -> Report {
    Report {
        outcome,
        idempotency_key: None,
        trigger_kind: trigger.kind.clone(),
        trigger_id: trigger.id.clone(),
        target: Target::default(),
        steps: vec![],
        error,
        total_ms: 0,
        downtime_ms: None,
        reason: None,
        warnings: vec![],
    }
}

/// A report for input that never became a request: nothing was called.
pub fn rejected(trigger: &Trigger, e: &InvalidRequest) -> Report {
    bare(
        Outcome::Rejected,
        trigger,
        Some(ErrorInfo::new(
            Code::InvalidRequest,
            format!("{}: {}", e.field, e.message),
            false,
        )),
    )
}

/// A report for an event that asks for nothing (a resolved alert, an OK state).
pub fn ignored(trigger: &Trigger, why: &str) -> Report {
    let now = chrono::Utc::now();
    let mut r = bare(Outcome::Ignored, trigger, None);
    r.steps.push(Step {
        name: "trigger".into(),
        status: StepStatus::Skipped,
        started_at: now,
        finished_at: now,
        request_id: None,
        detail: Some(why.to_owned()),
    });
    r
}

/// A payload that is not acceptable JSON: one `rejected` result, nothing run.
pub fn unparsable(e: impl std::fmt::Display) -> Reply {
    let trigger = crate::request::Trigger::direct();
    let invalid =
        crate::request::InvalidRequest::new("$", format!("the event is not acceptable JSON: {e}"));
    Reply {
        shape: Shape::Results,
        reports: vec![rejected(&trigger, &invalid)],
        summaries: vec![],
    }
}

/// A processed record: its place in the batch, its report, and its ID when a retry can help.
struct Processed {
    index: usize,
    report: Report,
    retry_id: Option<String>,
}

fn retryable_failure(r: &Report) -> bool {
    !r.outcome.is_ok() && r.error.as_ref().is_some_and(|e| e.retryable)
}

impl Handler {
    /// A handler with no webhook secrets, no drill fallback and the default concurrency.
    pub fn new(ecs: EcsClient, settings: Settings, default_region: Option<String>) -> Self {
        Self {
            ecs,
            settings,
            default_region,
            webhook: webhook::WebhookAuth::default(),
            triggers: triggers::Context::default(),
            concurrency: 10,
        }
    }

    pub async fn handle(&self, event: &Value, deadline: Option<Instant>) -> Reply {
        let kind = triggers::detect(event);
        tracing::info!(source = ?kind, "event received");
        match kind {
            Kind::Sqs => self.sqs(event, deadline).await,
            Kind::Http => self.http(event, deadline).await,
            _ => {
                let (reports, summaries) = self
                    .run_jobs(triggers::jobs(event, &self.triggers), deadline)
                    .await;
                Reply::results(reports, summaries)
            }
        }
    }

    async fn run_job(&self, job: Job, deadline: Option<Instant>) -> Report {
        match job.item {
            // Drills run whole through `run_jobs`; the sources that reach here (SQS records)
            // carry one request each, and refuse drills before this point.
            Item::Drill(_) => rejected(
                &job.trigger,
                &InvalidRequest::new("drill", "a drill is not accepted here"),
            ),
            Item::Request(v) => {
                match request::parse(&v, self.default_region.as_deref(), job.trigger.clone()) {
                    Ok(req) => {
                        Rollback::new(&self.ecs, &self.settings)
                            .run(&req, deadline)
                            .await
                    }
                    Err(e) => {
                        tracing::warn!(field = %e.field, error_message = %e.message, trigger = %job.trigger.kind, "request rejected");
                        rejected(&job.trigger, &e)
                    }
                }
            }
            Item::Ignored(why) => {
                tracing::info!(trigger = %job.trigger.kind, why = %why, "event ignored");
                ignored(&job.trigger, &why)
            }
            Item::Invalid(e) => {
                tracing::warn!(field = %e.field, error_message = %e.message, trigger = %job.trigger.kind, "event rejected");
                rejected(&job.trigger, &e)
            }
        }
    }

    /// Runs jobs, at most `concurrency` at once, reporting in their order; a drill runs whole
    /// and adds its summary event.
    async fn run_jobs(
        &self,
        jobs: Vec<Job>,
        deadline: Option<Instant>,
    ) -> (Vec<Report>, Vec<Value>) {
        let done: Vec<(Vec<Report>, Option<Value>)> = stream::iter(jobs)
            .map(|job| async move {
                match job.item {
                    Item::Drill(plan) => {
                        let (reports, summary) = self.run_drill(&plan, deadline).await;
                        (reports, Some(summary))
                    }
                    _ => (vec![self.run_job(job, deadline).await], None),
                }
            })
            .buffered(self.concurrency.max(1))
            .collect()
            .await;
        let mut reports = Vec::new();
        let mut summaries = Vec::new();
        for (r, s) in done {
            reports.extend(r);
            summaries.extend(s);
        }
        (reports, summaries)
    }

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
            id: format!("{}|{}", plan.name, plan.slot),
            time: plan.when,
        };
        let mut selected = Vec::new();
        if let Some(sel) = &plan.selector {
            let region = plan
                .region
                .clone()
                .or_else(|| self.default_region.clone())
                .unwrap_or_default();
            let tags: Vec<(String, String)> = sel.tags.clone().into_iter().collect();
            let found: Result<Vec<String>, _> = if sel.resource == "disk" {
                let q = DiskQuery {
                    tags,
                    ..Default::default()
                };
                self.ecs
                    .describe_disks(&region, &q)
                    .await
                    .map(|d| d.into_iter().map(|d| d.disk_id).collect())
            } else {
                let q = InstanceQuery {
                    tags,
                    ..Default::default()
                };
                self.ecs
                    .describe_instances(&region, &q)
                    .await
                    .map(|i| i.into_iter().map(|i| i.instance_id).collect())
            };
            match found {
                Ok(ids) => {
                    let key = if sel.resource == "disk" {
                        "diskId"
                    } else {
                        "instanceId"
                    };
                    selected = ids
                        .into_iter()
                        .map(|id| serde_json::Map::from_iter([(key.to_owned(), Value::String(id))]))
                        .collect();
                }
                Err(e) => {
                    let mut r = bare(Outcome::Rejected, &trigger, Some(ErrorInfo::from_ecs(&e)));
                    r.reason = Some(format!(
                        "drill {}: the selector could not be resolved",
                        plan.name
                    ));
                    return (vec![r], plan.summary(&[], 0, true));
                }
            }
        }
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
                        return (ignored(&trigger, "not started: more targets failed than the drill's maxErrors allows"), true);
                    }
                    let report = match request::parse(&value, self.default_region.as_deref(), trigger.clone()) {
                        Ok(req) => {
                            // A failure a retry can fix (throttling, a transient error) slows the
                            // target down, it does not fail it: run it again (same key: it resumes).
                            let mut pause = self.settings.poll.initial.max(Duration::from_millis(50));
                            let mut attempt = 0;
                            loop {
                                attempt += 1;
                                let r = Rollback::new(&self.ecs, &self.settings).with_cache(cache).run(&req, deadline).await;
                                let again = !r.outcome.is_ok()
                                    && r.error.as_ref().is_some_and(|e| e.retryable && e.code != Code::DeadlineExceeded)
                                    && attempt < DRILL_TARGET_ATTEMPTS;
                                if !again {
                                    break r;
                                }
                                tokio::time::sleep(pause.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
                                pause = (pause * 2).min(self.settings.poll.max * 4);
                            }
                        }
                        Err(e) => rejected(&trigger, &e),
                    };
                    // Out of time is not a failure of the target: the next delivery resumes it.
                    let out_of_time = report.error.as_ref().is_some_and(|e| e.code == Code::DeadlineExceeded);
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

    /// An SQS batch: each record's body is a request. A record that failed in a way a retry can
    /// fix goes into `batchItemFailures`; one that can never succeed is reported, not retried.
    /// Records of one FIFO message group run in order, and after a retryable failure the rest
    /// of that group is returned unprocessed, so the queue keeps their order.
    async fn sqs(&self, event: &Value, deadline: Option<Instant>) -> Reply {
        // Boxed before the stream: a closure over the groups' borrowed records inside the
        // stream would make this future's `Send` depend on a lifetime rustc cannot prove
        // general (and axum, for the Function Compute front door, needs it `Send`).
        type GroupRun<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Processed>> + Send + 'a>>;
        let runs: Vec<GroupRun<'_>> = aws::sqs_groups(event)
            .into_iter()
            .map(|group| Box::pin(self.sqs_group(group, deadline)) as GroupRun<'_>)
            .collect();
        let done: Vec<Vec<Processed>> = stream::iter(runs)
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut flat: Vec<Processed> = done.into_iter().flatten().collect();
        flat.sort_by_key(|p| p.index);
        let failures = flat.iter().filter_map(|p| p.retry_id.clone()).collect();
        let reports = flat.into_iter().map(|p| p.report).collect();
        Reply {
            shape: Shape::Sqs { failures },
            reports,
            summaries: vec![],
        }
    }

    /// One SQS message group, in order (a standard queue's record is a group of one).
    async fn sqs_group(
        &self,
        group: aws::SqsGroup<'_>,
        deadline: Option<Instant>,
    ) -> Vec<Processed> {
        let mut out = Vec::with_capacity(group.records.len());
        let mut blocked = false;
        for (index, record) in group.records {
            let job = aws::sqs_record(record);
            let id = Some(job.trigger.id.clone()).filter(|id| !id.is_empty());
            let report = if blocked {
                bare(
                    Outcome::Rejected,
                    &job.trigger,
                    Some(ErrorInfo::new(
                        "NotProcessed",
                        "an earlier message of the same FIFO group failed; this one is returned to keep the order",
                        true,
                    )),
                )
            } else {
                self.run_job(job, deadline).await
            };
            let retry = retryable_failure(&report);
            blocked |= retry && group.id.is_some();
            out.push(Processed {
                index,
                report,
                retry_id: if retry { id } else { None },
            });
        }
        out
    }

    /// An HTTP request: authenticated before anything else, then its body is any other event.
    /// The status tells a retrying sender what to do: 200 done, 503 retry, 4xx do not.
    async fn http(&self, event: &Value, deadline: Option<Instant>) -> Reply {
        let trigger = Trigger {
            kind: "http".into(),
            id: webhook::request_id(event),
            time: None,
        };
        let refuse = |status: u16, code: &str, message: String| Reply {
            shape: Shape::Http { status },
            reports: vec![bare(
                Outcome::Rejected,
                &trigger,
                Some(ErrorInfo::new(code, message, false)),
            )],
            summaries: vec![],
        };
        let req = match webhook::unwrap(event) {
            Ok(r) => r,
            Err(e) => return refuse(400, Code::InvalidRequest.as_str(), e),
        };
        if let Err(why) = webhook::authenticate(&req, &self.webhook, chrono::Utc::now().timestamp())
        {
            tracing::warn!(why = %why, "HTTP request refused");
            return refuse(401, "Unauthenticated", why);
        }
        if req.method != "POST" {
            return refuse(
                405,
                Code::InvalidRequest.as_str(),
                format!("{} is not accepted; POST the event", req.method),
            );
        }
        let inner = match webhook::body_event(&req) {
            Ok(v) => v,
            Err(e) => return refuse(400, Code::InvalidRequest.as_str(), e),
        };
        if matches!(triggers::detect(&inner), Kind::Http | Kind::Sqs) {
            return refuse(
                400,
                Code::InvalidRequest.as_str(),
                "an SQS batch or an HTTP event is not accepted as a body".into(),
            );
        }
        let (reports, summaries) = self
            .run_jobs(triggers::jobs(&inner, &self.triggers), deadline)
            .await;
        let status = if reports.iter().all(|r| r.outcome.is_ok()) {
            200
        } else if reports.iter().any(retryable_failure) {
            503
        } else {
            422
        };
        Reply {
            shape: Shape::Http { status },
            reports,
            summaries,
        }
    }
}
