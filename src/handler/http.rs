//! An HTTP request (Lambda Function URL, API Gateway): authenticated before its body is
//! parsed, answered with a status and the result events.

use super::*;

impl Handler {
    /// An HTTP request: authenticated before anything else, then its body is any other event.
    /// The status tells a retrying sender what to do: 200 done, 503 retry, 4xx do not.
    pub(super) async fn http(&self, event: &Value, deadline: Option<Instant>) -> Reply {
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
