//! The Alibaba Cloud Function Compute front door: a custom runtime is an HTTP server, and
//! Function Compute calls it (custom runtime specification, event handlers):
//! - `POST /invoke`: the event as the body; `x-fc-request-id`, `x-fc-function-timeout`
//!   (seconds) and the function role's temporary `x-fc-access-key-id`,
//!   `x-fc-access-key-secret`, `x-fc-security-token` as headers. The answer is the body; status
//!   and `x-fc-status` 200 for success, 404 for a failed invocation (what makes an
//!   asynchronous invocation retry or go to its failure destination).
//! - `POST /initialize`: the Initializer hook; nothing to do, answered 200.
//! - `FC Invoke Start RequestId: …` / `FC Invoke End RequestId: …` on stdout around each call.
//!
//! A thin adapter, like `lambda.rs` (neither imports the other): the event goes to the same
//! handler, and `answer::Answer` gives the same failure types (`Retryable`,
//! `RollbackFailed`, `RollbackRejected`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::answer::Answer;
use crate::ecs::Credentials;
use crate::handler::{Handler, Shape};

/// The port unless `FC_SERVER_PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 9000;

pub fn router(handler: Arc<Handler>) -> Router {
    Router::new()
        .route("/invoke", post(invoke))
        .route("/initialize", post(initialize))
        .with_state(handler)
}

/// Serves Function Compute's calls on `listener` until the process ends.
pub async fn serve(handler: Handler, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(Arc::new(handler))).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The request id, cut to something safe to print on a log line.
fn request_id(headers: &HeaderMap) -> String {
    header(headers, "x-fc-request-id")
        .unwrap_or("-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(128)
        .collect()
}

/// The deadline from the function's configured timeout (`x-fc-function-timeout`, seconds),
/// counted from when the call arrived.
pub fn deadline_of(headers: &HeaderMap, arrived: Instant) -> Option<Instant> {
    let secs: u64 = header(headers, "x-fc-function-timeout")?.parse().ok()?;
    (secs > 0).then(|| arrived + Duration::from_secs(secs.min(86_400)))
}

/// The function role's temporary credentials, when Function Compute sends them.
pub fn role_credentials(headers: &HeaderMap) -> Option<Credentials> {
    let id = header(headers, "x-fc-access-key-id")?;
    let secret = header(headers, "x-fc-access-key-secret")?;
    let c = Credentials::new(id, secret);
    Some(match header(headers, "x-fc-security-token") {
        Some(token) => c.with_token(token),
        None => c,
    })
}

async fn initialize(headers: HeaderMap) -> Response {
    let id = request_id(&headers);
    println!("FC Initialize Start RequestId: {id}");
    println!("FC Initialize End RequestId: {id}");
    (StatusCode::OK, [("x-fc-status", "200")], "").into_response()
}

async fn invoke(State(handler): State<Arc<Handler>>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    let id = request_id(&headers);
    println!("FC Invoke Start RequestId: {id}");
    if let Some(c) = role_credentials(&headers) {
        handler.ecs.provide_runtime_credentials(c);
    }
    let span = tracing::info_span!("invocation", fc_request_id = %id);
    let reply = match std::str::from_utf8(&body)
        .map_err(|e| format!("the event is not UTF-8: {e}"))
        .and_then(|text| crate::strict_json::from_str(text).map_err(|e| e.to_string()))
    {
        Ok(event) => {
            handler
                .handle(&event, deadline_of(&headers, arrived))
                .instrument(span.clone())
                .await
        }
        Err(e) => crate::handler::unparsable(e),
    };
    let (status, body) = {
        let _enter = span.enter();
        let answer = Answer::of(reply);
        answer.log();
        respond(answer)
    };
    println!("FC Invoke End RequestId: {id}");
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "x-fc-status",
        HeaderValue::from_static(if status == StatusCode::OK {
            "200"
        } else {
            "404"
        }),
    );
    response
}

/// What Function Compute gets back: the result events (and drill summaries), with 200 when the
/// invocation succeeded and 404 (a failed invocation, with the failure type) when any request
/// did not: the same rule as the Lambda front door, both read off the neutral `Answer`.
pub fn respond(answer: Answer) -> (StatusCode, Value) {
    let mut body = answer.results();
    if let Shape::Http { status } = answer.shape {
        body["statusCode"] = json!(status);
    }
    match answer.failure {
        None => (StatusCode::OK, body),
        Some(f) => {
            body["errorType"] = json!(f.error_type);
            body["errorMessage"] = json!(f.message);
            (StatusCode::NOT_FOUND, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_deadline_is_the_configured_timeout_from_arrival() {
        let now = Instant::now();
        let d = deadline_of(&headers(&[("x-fc-function-timeout", "900")]), now);
        assert_eq!(d, Some(now + Duration::from_secs(900)));
        for bad in ["", "0", "-5", "ten", "1.5"] {
            assert_eq!(
                deadline_of(&headers(&[("x-fc-function-timeout", bad)]), now),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(deadline_of(&headers(&[]), now), None);
    }

    #[test]
    fn role_credentials_need_both_key_and_secret() {
        assert!(role_credentials(&headers(&[("x-fc-access-key-id", "STS.a")])).is_none());
        let c = role_credentials(&headers(&[
            ("x-fc-access-key-id", "STS.a"),
            ("x-fc-access-key-secret", "s"),
            ("x-fc-security-token", "CAIS"),
        ]))
        .expect("credentials");
        assert_eq!(c.access_key_id, "STS.a");
        assert!(c.security_token.is_some());
    }

    #[test]
    fn the_request_id_is_printable() {
        assert_eq!(
            request_id(&headers(&[("x-fc-request-id", "1-abc_D.e")])),
            "1-abc_D.e"
        );
        assert_eq!(request_id(&headers(&[])), "-");
    }
}
