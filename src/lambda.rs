//! The AWS Lambda front door: a thin adapter from `lambda_runtime` to the handler. The same
//! binary is the `bootstrap`; it serves invocations when `AWS_LAMBDA_RUNTIME_API` is set.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::answer::Answer;
use crate::handler::{Handler, Shape};

/// Serves invocations until the runtime stops.
pub async fn serve(handler: Handler) -> Result<(), lambda_runtime::Error> {
    let handler = Arc::new(handler);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let handler = Arc::clone(&handler);
        async move { invoke(&handler, event).await }
    }))
    .await
}

/// The time an invocation has left (the runtime gives its deadline in Unix milliseconds).
fn time_left(deadline: SystemTime) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// The invocation's deadline as an `Instant`.
fn deadline_of(deadline: SystemTime) -> Instant {
    Instant::now() + time_left(deadline)
}

/// The payload is taken raw, held to the one size limit and parsed strictly (no repeated
/// keys), so bad or oversized input becomes a `rejected` result rather than the runtime's own
/// deserialization error.
pub async fn invoke(
    handler: &Handler,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<Value, Diagnostic> {
    let (raw, ctx) = event.into_parts();
    let span = tracing::info_span!("invocation", lambda_request_id = %ctx.request_id);
    // The first invocation tells the function's timeout (the time it has left as it arrives):
    // one that can never hold a rollback is said once, loudly.
    {
        let _enter = span.enter();
        crate::fit::check_once(&handler.settings, time_left(ctx.deadline()));
    }
    let reply = match crate::handler::read_payload(raw.get().as_bytes()) {
        Ok(payload) => {
            handler
                .handle(&payload, Some(deadline_of(ctx.deadline())))
                .instrument(span.clone())
                .await
        }
        Err(e) => e.reply(),
    };
    let _enter = span.enter();
    let answer = Answer::of(reply);
    answer.log();
    answer.emit_metrics();
    respond(answer)
}

/// The answer Lambda expects for each source. An SQS batch answers its failures; an HTTP
/// request its status and the result events. Anything else: the result events, or an error
/// whose type says what happened, so asynchronous invocations are retried (`Retryable`) or
/// routed to the on-failure destination (`RollbackFailed`, `RollbackRejected`).
pub fn respond(answer: Answer) -> Result<Value, Diagnostic> {
    match answer.shape {
        Shape::Sqs { ref failures } => Ok(json!({
            "batchItemFailures": failures.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()
        })),
        Shape::Http { status } => Ok(json!({
            "statusCode": status,
            "headers": {"content-type": "application/json"},
            "body": answer.results().to_string(),
        })),
        Shape::Results | Shape::Workflow { .. } => match answer.failure {
            None => Ok(answer.results()),
            Some(f) => Err(Diagnostic {
                error_type: f.error_type.into(),
                error_message: f.message,
            }),
        },
    }
}
