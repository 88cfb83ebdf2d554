//! The answer to one invocation, whatever the front door (Lambda, Function Compute, the CLI):
//! the result events, each made once (so the event written to the log and the one returned are
//! the same event, `id` included), the drill summaries, and the failure type that tells a
//! platform to deliver again (`Retryable`) or to route the failure (`RollbackFailed`,
//! `RollbackRejected`). Pure but for the log lines; the front doors only shape it for their
//! platform.

use serde_json::{json, Value};

use crate::handler::{Reply, Shape};
use crate::report::Report;

/// A request that did not succeed makes the whole invocation a failure of this type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub error_type: &'static str,
    pub message: String,
}

/// One invocation's answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub shape: Shape,
    pub events: Vec<Value>,
    pub summaries: Vec<Value>,
    /// For results (not an SQS batch, not HTTP): set when any request did not succeed.
    pub failure: Option<Failure>,
    /// One CloudWatch EMF document per result event, in the same order (`crate::metrics`).
    pub metrics: Vec<Value>,
}

impl Answer {
    pub fn of(reply: Reply) -> Self {
        let Reply {
            shape,
            reports,
            summaries,
        } = reply;
        let events: Vec<Value> = reports.iter().map(Report::to_cloud_event).collect();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let metrics = reports
            .iter()
            .zip(&events)
            .map(|(r, e)| crate::metrics::emf(r, e["id"].as_str().unwrap_or(""), now_ms))
            .collect();
        let failure = match shape {
            Shape::Results | Shape::Workflow { .. } => failure(&reports),
            _ => None,
        };
        Self {
            shape,
            events,
            summaries,
            failure,
            metrics,
        }
    }

    /// The metric lines: each EMF document on stdout as a line of its own (not inside a log
    /// line: CloudWatch Logs extracts metrics only from a log event that is the document).
    /// One write per line, under stdout's lock, so no other output splits it.
    pub fn emit_metrics(&self) {
        use std::io::Write;
        for m in &self.metrics {
            let line = format!("{m}\n");
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                tracing::warn!(error = %e, "could not write the metric line");
            }
        }
    }

    /// One log line per result event and per drill summary, for log-based pipelines.
    pub fn log(&self) {
        for e in &self.events {
            tracing::info!(result_event = %e, outcome = e["data"]["outcome"].as_str().unwrap_or(""), "result event");
        }
        for s in &self.summaries {
            tracing::info!(result_event = %s, "drill summary");
        }
    }

    /// The body that carries the results: `{"results": [...], "summaries": [...]}`; for a
    /// workflow step, its output.
    pub fn results(&self) -> Value {
        if let Shape::Workflow { output } = &self.shape {
            return output.clone();
        }
        json!({"results": self.events, "summaries": self.summaries})
    }
}

/// The failure type of a set of results: `Retryable` when any failure can pass, else
/// `RollbackFailed` when any run failed, else `RollbackRejected`; `None` when all are fine.
fn failure(reports: &[Report]) -> Option<Failure> {
    let bad: Vec<&Report> = reports.iter().filter(|r| !r.outcome.is_ok()).collect();
    if bad.is_empty() {
        return None;
    }
    let error_type = if bad
        .iter()
        .any(|r| r.error.as_ref().is_some_and(|e| e.retryable))
    {
        "Retryable"
    } else if bad.iter().any(|r| r.outcome.is_failure()) {
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
                Some(e) => format!("{target}: {} {}: {}", r.outcome.as_str(), e.code, e.message),
                None => format!("{target}: {}", r.outcome.as_str()),
            }
        })
        .collect();
    Some(Failure {
        error_type,
        message: format!(
            "{} of {} requests did not succeed: {}",
            bad.len(),
            reports.len(),
            summary.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Code;
    use crate::report::{ErrorInfo, Outcome, Target};

    fn report(outcome: Outcome, error: Option<ErrorInfo>) -> Report {
        Report {
            outcome,
            idempotency_key: Some("k".into()),
            trigger_kind: "direct".into(),
            trigger_id: String::new(),
            target: Target {
                disk_id: Some("d-bp1webapp0000sys01".into()),
                ..Default::default()
            },
            steps: vec![],
            error,
            total_ms: 1,
            downtime_ms: None,
            reason: None,
            warnings: vec![],
            ecs_calls: None,
            verification: None,
        }
    }

    fn results(reports: Vec<Report>) -> Answer {
        Answer::of(Reply {
            shape: Shape::Results,
            reports,
            summaries: vec![],
        })
    }

    #[test]
    fn each_event_is_made_once() {
        let a = results(vec![report(Outcome::Succeeded, None)]);
        let id = a.events[0]["id"].clone();
        assert!(id.is_string());
        assert_eq!(a.results()["results"][0]["id"], id, "the same event, twice");
        assert_eq!(a.failure, None);
    }

    #[test]
    fn one_metric_document_per_result_event_naming_it() {
        let a = results(vec![
            report(Outcome::Succeeded, None),
            report(
                Outcome::Rejected,
                Some(ErrorInfo::new(Code::NotOptedIn, "no", false)),
            ),
        ]);
        assert_eq!(a.metrics.len(), a.events.len());
        for (m, e) in a.metrics.iter().zip(&a.events) {
            assert_eq!(m["resultEventId"], e["id"]);
            assert_eq!(m["Outcome"], e["data"]["outcome"]);
            assert!(m["_aws"]["CloudWatchMetrics"].is_array());
        }
    }

    #[test]
    fn the_failure_type_says_whether_to_deliver_again() {
        let retry = ErrorInfo::new("Throttling", "slow down", true);
        let broken = ErrorInfo::new("InvalidSnapshotId.NotFound", "gone", false);
        let a = results(vec![
            report(Outcome::Failed, Some(broken.clone())),
            report(Outcome::Rejected, Some(retry)),
        ]);
        assert_eq!(a.failure.as_ref().map(|f| f.error_type), Some("Retryable"));
        let a = results(vec![
            report(Outcome::Succeeded, None),
            report(Outcome::Failed, Some(broken.clone())),
        ]);
        let f = a.failure.expect("failure");
        assert_eq!(f.error_type, "RollbackFailed");
        assert!(
            f.message.starts_with("1 of 2 requests did not succeed"),
            "{}",
            f.message
        );
        assert!(f.message.contains("InvalidSnapshotId.NotFound"));
        let a = results(vec![report(
            Outcome::Rejected,
            Some(ErrorInfo::new(Code::NotOptedIn, "no", false)),
        )]);
        assert_eq!(a.failure.map(|f| f.error_type), Some("RollbackRejected"));
        let a = results(vec![report(Outcome::Superseded, None)]);
        assert_eq!(a.failure, None);
    }
}
