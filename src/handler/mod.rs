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

mod drill;
pub mod gate;
mod http;

pub use http::too_large as http_too_large;
mod sqs;
mod workflow;

pub use crate::triggers::{MAX_ENVELOPE, MAX_PAYLOAD, MAX_REQUESTS};

pub struct Handler {
    pub ecs: EcsClient,
    pub settings: Settings,
    pub default_region: Option<String>,
    pub webhook: webhook::WebhookAuth,
    pub triggers: triggers::Context,
    /// Requests of one event (SQS message groups, drill targets, alerts) run at once, at most.
    pub concurrency: usize,
    /// The operator's controls: the remediation policy, approvals, the pause switch and caps.
    pub controls: gate::Controls,
    /// Where results are announced (`crate::notify`); `None`: nowhere.
    pub notifier: Option<crate::notify::Notifier>,
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
    /// A workflow step (`crate::workflow`): what the engine gets when it succeeds; a failed
    /// target answers its failure type instead.
    Workflow {
        output: Value,
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
        ecs_calls: None,
        verification: None,
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

/// Why what a front door received never became an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Over the one limit (`triggers::MAX_PAYLOAD`): an event, or an HTTP event's body.
    #[error("the event is {len} bytes, more than the limit of {MAX_PAYLOAD} bytes")]
    TooLarge { len: usize },
    #[error("the event could not be read: {0}")]
    Unreadable(String),
    #[error("the event is not UTF-8")]
    NotUtf8,
    #[error("the event is not acceptable JSON: {0}")]
    NotJson(String),
}

impl PayloadError {
    /// One `rejected` result, nothing run.
    pub fn reply(&self) -> Reply {
        let trigger = crate::request::Trigger::direct();
        let invalid = crate::request::InvalidRequest::new("$", self.to_string());
        Reply {
            shape: Shape::Results,
            reports: vec![rejected(&trigger, &invalid)],
            summaries: vec![],
        }
    }
}

/// What a front door received, as an event: the one size limit first (nothing over
/// `MAX_ENVELOPE` is parsed), then strict JSON. An HTTP event is measured by its body (its
/// handling refuses a body over the limit with 413); any other event whole.
pub fn read_payload(bytes: &[u8]) -> Result<Value, PayloadError> {
    let too_large = PayloadError::TooLarge { len: bytes.len() };
    if bytes.len() > MAX_ENVELOPE {
        return Err(too_large);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8)?;
    let event =
        crate::strict_json::from_str(text).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    if bytes.len() > MAX_PAYLOAD && triggers::detect(&event) != Kind::Http {
        return Err(too_large);
    }
    Ok(event)
}

/// A payload that is not acceptable JSON: one `rejected` result, nothing run.
pub fn unparsable(e: impl std::fmt::Display) -> Reply {
    PayloadError::NotJson(e.to_string()).reply()
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
            controls: gate::Controls::default(),
            notifier: None,
        }
    }

    pub async fn handle(&self, event: &Value, deadline: Option<Instant>) -> Reply {
        let kind = triggers::detect(event);
        tracing::info!(source = ?kind, "event received");
        let mut reply = match kind {
            Kind::Sqs => self.sqs(event, deadline).await,
            // Announced by `http_request` itself (Function Compute's HTTP mode calls it directly).
            Kind::Http => return self.http(event, deadline).await,
            Kind::Workflow => self.workflow(event, deadline).await,
            _ => {
                let (reports, summaries) = self
                    .run_jobs(triggers::jobs(event, &self.triggers), deadline)
                    .await;
                Reply::results(reports, summaries)
            }
        };
        self.announce(&mut reply).await;
        reply
    }

    /// Sends the results the notifier wants (`crate::notify`), within its time budget; a
    /// platform that could not be told is a warning in each result it was to carry.
    pub(crate) async fn announce(&self, reply: &mut Reply) {
        let Some(n) = &self.notifier else {
            return;
        };
        let mut carried = Vec::new();
        let mut events = Vec::new();
        for (i, r) in reply.reports.iter().enumerate() {
            let e = r.to_cloud_event();
            if n.wanted(&e) {
                carried.push(i);
                events.push(e);
            }
        }
        events.extend(reply.summaries.iter().filter(|s| n.wanted(s)).cloned());
        for (platform, why) in n.send(&events).await {
            for &i in &carried {
                reply.reports[i].warnings.push(format!(
                    "the {} notification could not be sent: {why}",
                    platform.as_str()
                ));
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
                        self.gated(req, &job.signal.unwrap_or_default(), deadline)
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
}
