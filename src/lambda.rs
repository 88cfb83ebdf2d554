//! The AWS Lambda front door: a thin adapter from `lambda_runtime` to the handler. The same
//! binary is the `bootstrap`; it serves invocations when `AWS_LAMBDA_RUNTIME_API` is set.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::handler::{Handler, Reply, Shape};
use crate::report::Outcome;

/// Serves invocations until the runtime stops.
pub async fn serve(handler: Handler) -> Result<(), lambda_runtime::Error> {
    let handler = Arc::new(handler);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let handler = Arc::clone(&handler);
        async move { invoke(&handler, event).await }
    }))
    .await
}

/// The invocation's deadline as an `Instant` (the runtime gives Unix milliseconds).
fn deadline_of(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// The payload is taken raw and parsed strictly (no repeated keys), so bad input becomes a
/// `rejected` result rather than the runtime's own deserialization error.
pub async fn invoke(
    handler: &Handler,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<Value, Diagnostic> {
    let (raw, ctx) = event.into_parts();
    let span = tracing::info_span!("invocation", lambda_request_id = %ctx.request_id);
    let reply = match crate::strict_json::from_str(raw.get()) {
        Ok(payload) => {
            handler
                .handle(&payload, Some(deadline_of(ctx.deadline())))
                .instrument(span.clone())
                .await
        }
        Err(e) => unparsable(e),
    };
    let _enter = span.enter();
    log_reply(&reply);
    respond(reply)
}

/// A payload that is not acceptable JSON: one `rejected` result, nothing run.
pub fn unparsable(e: impl std::fmt::Display) -> Reply {
    let trigger = crate::request::Trigger::direct();
    let invalid =
        crate::request::InvalidRequest::new("$", format!("the event is not acceptable JSON: {e}"));
    Reply {
        shape: Shape::Results,
        reports: vec![crate::handler::rejected(&trigger, &invalid)],
        summaries: vec![],
    }
}

/// One log line per result event and per drill summary, for log-based pipelines.
pub fn log_reply(reply: &Reply) {
    for r in reply.reports() {
        tracing::info!(result_event = %r.to_cloud_event(), outcome = r.outcome.as_str(), "result event");
    }
    for s in &reply.summaries {
        tracing::info!(result_event = %s, "drill summary");
    }
}

/// The answer Lambda expects for each source. An SQS batch answers its failures; an HTTP
/// request its status and the result events. Anything else: the result events, or an error
/// whose type says what happened, so asynchronous invocations are retried (`Retryable`) or
/// routed to the on-failure destination (`RollbackFailed`, `RollbackRejected`).
pub fn respond(reply: Reply) -> Result<Value, Diagnostic> {
    let Reply {
        shape,
        reports,
        summaries,
    } = reply;
    let events: Vec<Value> = reports.iter().map(|r| r.to_cloud_event()).collect();
    match shape {
        Shape::Sqs { failures } => Ok(json!({
            "batchItemFailures": failures.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()
        })),
        Shape::Http { status } => Ok(json!({
            "statusCode": status,
            "headers": {"content-type": "application/json"},
            "body": json!({"results": events, "summaries": summaries}).to_string(),
        })),
        Shape::Results => {
            let bad: Vec<_> = reports.iter().filter(|r| !r.outcome.is_ok()).collect();
            if bad.is_empty() {
                return Ok(json!({"results": events, "summaries": summaries}));
            }
            let error_type = if bad
                .iter()
                .any(|r| r.error.as_ref().is_some_and(|e| e.retryable))
            {
                "Retryable"
            } else if bad.iter().any(|r| r.outcome == Outcome::Failed) {
                "RollbackFailed"
            } else {
                "RollbackRejected"
            };
            let summary: Vec<String> = bad
                .iter()
                .map(|r| {
                    let target = r
                        .target
                        .disk_id
                        .as_deref()
                        .or(r.target.instance_id.as_deref())
                        .unwrap_or("-");
                    match &r.error {
                        Some(e) => {
                            format!("{target}: {} {}: {}", r.outcome.as_str(), e.code, e.message)
                        }
                        None => format!("{target}: {}", r.outcome.as_str()),
                    }
                })
                .collect();
            Err(Diagnostic {
                error_type: error_type.into(),
                error_message: format!(
                    "{} of {} requests did not succeed: {}",
                    bad.len(),
                    reports.len(),
                    summary.join("; ")
                ),
            })
        }
    }
}
