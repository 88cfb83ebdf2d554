//! An HTTP request (Lambda Function URL, API Gateway, Function Compute's HTTP trigger, or its
//! `version: v1` struct delivered as an event): authenticated before its body is parsed,
//! answered with a status and the result events.
//!
//! The idempotency key of a request whose body names none:
//! - signed (`X-Rollback-Signature`): the signed timestamp and the body's SHA-256, what the
//!   signature covers; a replay within the signature's window is the same key in every process
//!   (a `duplicate`), a request signed anew is a new rollback;
//! - bearer token: this HTTP request's own ID (the platform's request ID, or a fresh UUID when
//!   it gives none), so a repeat is never a silent `duplicate`: it is a new rollback, refused
//!   while the disk is held (`RollbackInProgress`) or cooling down (`CooldownActive`), each
//!   named in its result. A sender that retries sends an `idempotencyKey`.
//!
//! Bodies that are another source's event (Alertmanager, CloudMonitor) keep that source's key.

use super::*;

use crate::triggers::webhook::{Authenticated, HttpRequest, UnwrapError};

/// The trigger of an HTTP request: kind `http`, its request ID.
fn http_trigger(request_id: Option<String>) -> Trigger {
    Trigger {
        kind: "http".into(),
        key_basis: None,
        id: request_id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        time: None,
    }
}

/// A refusal before anything ran: one `rejected` result, with the HTTP status.
fn refuse(trigger: &Trigger, status: u16, code: &str, message: String) -> Reply {
    Reply {
        shape: Shape::Http { status },
        reports: vec![bare(
            Outcome::Rejected,
            trigger,
            Some(ErrorInfo::new(code, message, false)),
        )],
        summaries: vec![],
    }
}

impl Handler {
    /// An HTTP event (Function URL / API Gateway v2, or Function Compute's `version: v1`).
    pub(super) async fn http(&self, event: &Value, deadline: Option<Instant>) -> Reply {
        match webhook::unwrap(event) {
            Ok(req) => self.http_request(req, deadline).await,
            Err(e) => {
                let trigger = http_trigger(Some(webhook::request_id(event)));
                let status = match e {
                    UnwrapError::TooLarge { .. } => 413,
                    UnwrapError::Malformed(_) => 400,
                };
                refuse(
                    &trigger,
                    status,
                    Code::InvalidRequest.as_str(),
                    e.to_string(),
                )
            }
        }
    }

    /// An HTTP request however it arrived: authenticated before anything else, then its body
    /// is any other event. The status tells a retrying sender what to do: 200 done, 503 retry,
    /// 4xx do not.
    pub async fn http_request(&self, req: HttpRequest, deadline: Option<Instant>) -> Reply {
        let mut reply = self.http_answer(req, deadline).await;
        self.announce(&mut reply).await;
        reply
    }

    async fn http_answer(&self, req: HttpRequest, deadline: Option<Instant>) -> Reply {
        let trigger = http_trigger(req.request_id.clone());
        if req.body.len() > webhook::MAX_BODY {
            let e = UnwrapError::TooLarge {
                len: req.body.len(),
            };
            return refuse(&trigger, 413, Code::InvalidRequest.as_str(), e.to_string());
        }
        let auth = match webhook::authenticate(&req, &self.webhook, chrono::Utc::now().timestamp())
        {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(why = %why, request_id = %trigger.id, "HTTP request refused");
                return refuse(&trigger, 401, "Unauthenticated", why);
            }
        };
        if req.method != "POST" {
            return refuse(
                &trigger,
                405,
                Code::InvalidRequest.as_str(),
                format!("{} is not accepted; POST the event", req.method),
            );
        }
        let inner = match webhook::body_event(&req) {
            Ok(v) => v,
            Err(e) => return refuse(&trigger, 400, Code::InvalidRequest.as_str(), e),
        };
        // An approval of a proposed rollback: `{"approve": "<token>", "approvedBy": "<who>"}`.
        if let Some(token) = inner.get("approve").and_then(Value::as_str) {
            let by = inner
                .get("approvedBy")
                .and_then(Value::as_str)
                .unwrap_or("someone");
            let via = match auth {
                Authenticated::Signed { .. } => "webhook, signed",
                _ => "webhook, bearer token",
            };
            let report = self
                .approve(token, &format!("{by} ({via})"), deadline)
                .await;
            let status = if report.outcome.is_ok() {
                200
            } else if retryable_failure(&report) {
                503
            } else {
                422
            };
            return Reply {
                shape: Shape::Http { status },
                reports: vec![report],
                summaries: vec![],
            };
        }
        let jobs = match triggers::detect(&inner) {
            Kind::Http | Kind::Sqs => {
                return refuse(
                    &trigger,
                    400,
                    Code::InvalidRequest.as_str(),
                    "an SQS batch or an HTTP event is not accepted as a body".into(),
                )
            }
            // A request (or several, or a drill) in the body: the HTTP request is its trigger.
            Kind::Direct => {
                let mut t = trigger.clone();
                if let Authenticated::Signed { timestamp } = auth {
                    t.key_basis = Some(webhook::signed_key_basis(timestamp, &req.body));
                }
                triggers::direct(&inner, t)
            }
            _ => triggers::jobs(&inner, &self.triggers),
        };
        let (reports, summaries) = self.run_jobs(jobs, deadline).await;
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

/// An HTTP request whose body was not read whole because it is over the limit (`len` bytes,
/// or at least that many): the same 413 and result as a body refused after reading.
pub fn too_large(request_id: Option<String>, len: usize) -> Reply {
    refuse(
        &http_trigger(request_id),
        413,
        Code::InvalidRequest.as_str(),
        UnwrapError::TooLarge { len }.to_string(),
    )
}
