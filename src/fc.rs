//! The Alibaba Cloud Function Compute front door: a custom runtime is an HTTP server, and
//! Function Compute calls it in one of two ways ("Web functions", custom runtime:
//! <https://www.alibabacloud.com/help/en/functioncompute/fc/user-guide/web-functions>):
//!
//! - API calls (InvokeFunction, event triggers, timers), [`Mode::Events`]: `POST /invoke`,
//!   the event as the body ("Event handlers": <https://www.alibabacloud.com/help/en/function-compute/latest/custom-runtime-event-functions>),
//!   with `x-fc-request-id`, `x-fc-function-timeout` (seconds) and the function role's
//!   temporary `x-fc-access-key-id`, `x-fc-access-key-secret`, `x-fc-security-token` as
//!   headers. The answer is the body; status and `x-fc-status` 200 for success, 404 for a
//!   failed invocation (what makes an asynchronous invocation retry or go to its failure
//!   destination; without `x-fc-status` FC takes every invocation as a success). `POST
//!   /initialize` is the Initializer hook: nothing to do, answered 200.
//! - HTTP calls (an HTTP trigger, a custom domain), [`Mode::Http`]: "passthrough", the
//!   caller's request as it came (method, path, query, headers, body) plus the same common
//!   `x-fc-*` headers, and our response goes back to the caller as it is (FC refuses `x-fc-*`
//!   headers from callers, so those are FC's own). Every path is the webhook: authenticated
//!   first, the same limits and answers as the Lambda Function URL; `x-fc-status` is 404 only
//!   when the answer is 503 (a retry can help: FC counts the invocation failed and retries an
//!   asynchronous HTTP invocation), else 200 (the request was answered, refusals included, as a
//!   Lambda Function URL invocation succeeds whatever its `statusCode`).
//!
//! An HTTP trigger on a function served in events mode would expose `POST /invoke` to the
//! caller, unauthenticated: in events mode a request that FC marks as an HTTP call
//! (`x-fc-control-path: /http-invoke`: <https://www.alibabacloud.com/help/doc-detail/191342.htm>) is handed to the
//! webhook instead, and any other path is refused. Deploy the webhook as its own function in
//! HTTP mode (`serve-fc --http`, `deploy/s.yaml`).
//!
//! `FC Invoke Start RequestId: …` / `FC Invoke End RequestId: …` on stdout around each call,
//! and between them one CloudWatch EMF metric line per result (`crate::metrics`), as on Lambda.
//! Bodies are read up to `MAX_ENVELOPE` (the web framework's own limit is off): over the one
//! limit, the project's own `rejected` answer, never a bare 413.
//!
//! A thin adapter, like `lambda.rs` (neither imports the other): the event goes to the same
//! handler, and `answer::Answer` gives the same failure types (`Retryable`,
//! `RollbackFailed`, `RollbackRejected`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::answer::Answer;
use crate::ecs::Credentials;
use crate::handler::{Handler, PayloadError, Reply, Shape, MAX_ENVELOPE};
use crate::triggers::webhook::HttpRequest;

/// The port unless `FC_SERVER_PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 9000;

/// Which calls of Function Compute the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// API calls: `POST /invoke` (and `/initialize`); an HTTP trigger's request is refused,
    /// or given to the webhook when FC marks it (`x-fc-control-path: /http-invoke`).
    Events,
    /// HTTP calls (an HTTP trigger, a custom domain): every request is the webhook's.
    Http,
}

impl Mode {
    /// `ECS_ROLLBACK_FC_MODE`: `events` (default) or `http`.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("ECS_ROLLBACK_FC_MODE").ok().as_deref() {
            None | Some("") | Some("events") => Ok(Mode::Events),
            Some("http") => Ok(Mode::Http),
            Some(other) => Err(format!(
                "ECS_ROLLBACK_FC_MODE is {other:?}; it is events or http"
            )),
        }
    }
}

pub fn router(handler: Arc<Handler>, mode: Mode) -> Router {
    let r = Router::new().route("/initialize", post(initialize));
    let r = match mode {
        Mode::Events => r.route("/invoke", post(invoke)).fallback(not_an_event),
        Mode::Http => r.fallback(http_call),
    };
    // Bodies are read by the handlers themselves, against the project's own limit.
    r.layer(DefaultBodyLimit::disable()).with_state(handler)
}

/// Serves Function Compute's calls on `listener` until the process ends.
pub async fn serve(
    handler: Handler,
    listener: tokio::net::TcpListener,
    mode: Mode,
) -> std::io::Result<()> {
    axum::serve(listener, router(Arc::new(handler), mode)).await
}

/// The body, read up to `MAX_ENVELOPE` bytes; past that, how large it says it is.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, PayloadError> {
    axum::body::to_bytes(body, MAX_ENVELOPE).await.map_err(|e| {
        match header(headers, "content-length").and_then(|l| l.parse::<usize>().ok()) {
            Some(len) if len > MAX_ENVELOPE => PayloadError::TooLarge { len },
            _ => PayloadError::Unreadable(e.to_string()),
        }
    })
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

/// The function's configured timeout (`x-fc-function-timeout`, seconds).
pub fn function_timeout(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = header(headers, "x-fc-function-timeout")?.parse().ok()?;
    (secs > 0).then(|| Duration::from_secs(secs.min(86_400)))
}

/// The deadline from the function's configured timeout, counted from when the call arrived.
pub fn deadline_of(headers: &HeaderMap, arrived: Instant) -> Option<Instant> {
    function_timeout(headers).map(|t| arrived + t)
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

/// The common part of every call: the start and end lines, the role's credentials, the span.
async fn call<F, Fut>(handler: &Handler, headers: &HeaderMap, run: F) -> (Answer, String)
where
    F: FnOnce(Option<Instant>) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let arrived = Instant::now();
    let id = request_id(headers);
    println!("FC Invoke Start RequestId: {id}");
    if let Some(c) = role_credentials(headers) {
        handler.ecs.provide_runtime_credentials(c);
    }
    let span = tracing::info_span!("invocation", fc_request_id = %id);
    if let Some(timeout) = function_timeout(headers) {
        // The first invocation tells the function's timeout: one that can never hold a
        // rollback is said once, loudly.
        let _enter = span.enter();
        crate::fit::check_once(&handler.settings, timeout);
    }
    let reply = run(deadline_of(headers, arrived))
        .instrument(span.clone())
        .await;
    let answer = {
        let _enter = span.enter();
        let answer = Answer::of(reply);
        answer.log();
        answer.emit_metrics();
        answer
    };
    println!("FC Invoke End RequestId: {id}");
    (answer, id)
}

fn json_response(status: StatusCode, fc_ok: bool, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "x-fc-status",
        HeaderValue::from_static(if fc_ok { "200" } else { "404" }),
    );
    response
}

/// Whether an HTTP call answered `status` is a successful invocation for Function Compute
/// (`x-fc-status`): yes unless a retry can help (503), refusals included.
pub fn http_invocation_ok(status: u16) -> bool {
    status != 503
}

/// The caller's request, as the webhook reads it: FC's own `x-fc-*` headers left out (they
/// carry the role's keys, and no caller can send them).
fn http_request(method: &Method, headers: &HeaderMap, body: Bytes) -> HttpRequest {
    HttpRequest::from_parts(
        method.as_str(),
        headers
            .iter()
            .filter(|(k, _)| !k.as_str().starts_with("x-fc-"))
            .map(|(k, v)| (k.as_str(), v.as_bytes())),
        body.to_vec(),
        header(headers, "x-fc-request-id").map(str::to_owned),
    )
}

/// The webhook's reply to an HTTP call, to send back as it is.
async fn webhook(handler: &Handler, method: &Method, headers: &HeaderMap, body: Body) -> Response {
    let bytes = read_body(headers, body).await;
    let (answer, _) = call(handler, headers, |deadline| async move {
        match bytes {
            Ok(b) => {
                handler
                    .http_request(http_request(method, headers, b), deadline)
                    .await
            }
            Err(e) => crate::handler::http_too_large(
                header(headers, "x-fc-request-id").map(str::to_owned),
                match e {
                    PayloadError::TooLarge { len } => len,
                    _ => MAX_ENVELOPE + 1,
                },
            ),
        }
    })
    .await;
    let status = match answer.shape {
        Shape::Http { status } => status,
        _ => 500,
    };
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        http_invocation_ok(status),
        &answer.results(),
    )
}

/// An HTTP trigger's call, in HTTP mode: whatever the method and path, the webhook's.
async fn http_call(
    State(handler): State<Arc<Handler>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    webhook(&handler, &method, &headers, body).await
}

/// In events mode, anything but `/invoke` and `/initialize`: an HTTP trigger pointed at the
/// events function. Refused, nothing read or run.
async fn not_an_event(headers: HeaderMap) -> Response {
    let id = request_id(&headers);
    tracing::warn!(fc_request_id = %id, "an HTTP call reached the events runtime; refused");
    let body = json!({"errorType": "NotFound", "errorMessage":
        "this runtime serves Function Compute events (POST /invoke); the webhook is served by `serve-fc --http` (ECS_ROLLBACK_FC_MODE=http) behind an HTTP trigger"});
    json_response(StatusCode::NOT_FOUND, true, &body)
}

async fn invoke(State(handler): State<Arc<Handler>>, headers: HeaderMap, body: Body) -> Response {
    // An HTTP trigger's call that reached /invoke (FC marks HTTP calls so): the webhook's,
    // authenticated, never an event.
    if header(&headers, "x-fc-control-path") == Some("/http-invoke") {
        return webhook(&handler, &Method::POST, &headers, body).await;
    }
    let bytes = read_body(&headers, body).await;
    let (answer, _) = call(&handler, &headers, |deadline| {
        let handler = &handler;
        async move {
            match bytes.and_then(|b| crate::handler::read_payload(&b)) {
                Ok(event) => handler.handle(&event, deadline).await,
                Err(e) => e.reply(),
            }
        }
    })
    .await;
    let (status, body) = respond(answer);
    json_response(status, status == StatusCode::OK, &body)
}

/// What Function Compute gets back for an API call: the result events (and drill summaries),
/// with 200 when the invocation succeeded and 404 (a failed invocation, with the failure type)
/// when any request did not: the same rule as the Lambda front door, both read off the neutral
/// `Answer`. An HTTP event given as the payload (FC's `version: v1` HTTP trigger struct, or a
/// Function URL's) is answered with the HTTP response struct FC's HTTP trigger maps
/// (`statusCode`, `headers`, `isBase64Encoded`, `body`: the results, as the Lambda Function URL
/// answers); the invocation fails (404) only when that status is 503 (a retry can help).
pub fn respond(answer: Answer) -> (StatusCode, Value) {
    let mut body = answer.results();
    if let Shape::Http { status } = answer.shape {
        let response = json!({
            "statusCode": status,
            "headers": {"content-type": "application/json"},
            "isBase64Encoded": false,
            "body": body.to_string(),
        });
        let invocation = if http_invocation_ok(status) {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        return (invocation, response);
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
    fn an_http_answer_fails_the_invocation_only_when_a_retry_can_help() {
        let answer = |status| Answer {
            shape: Shape::Http { status },
            events: vec![],
            summaries: vec![],
            failure: None,
            metrics: vec![],
        };
        for (status, ok) in [
            (200, true),
            (401, true),
            (413, true),
            (422, true),
            (503, false),
        ] {
            assert_eq!(http_invocation_ok(status), ok, "{status}");
            let (invocation, body) = respond(answer(status));
            assert_eq!(invocation == StatusCode::OK, ok, "{status}");
            assert_eq!(body["statusCode"], status);
            assert!(body["body"].as_str().is_some_and(|b| b.contains("results")));
        }
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
