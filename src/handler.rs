//! The one handler every front door calls: an event in, one report per request out.
//! Today it understands the direct form (a request, or `{"requests": [...]}`); the trigger
//! adapters map other event sources onto the same requests.

use std::time::Instant;

use serde_json::Value;

use crate::ecs::EcsClient;
use crate::report::{ErrorInfo, Outcome, Report, Target};
use crate::request::{self, InvalidRequest, Trigger};
use crate::rollback::Rollback;
use crate::settings::Settings;

/// Requests in one event, at most.
pub const MAX_REQUESTS: usize = 100;

pub struct Handler {
    pub ecs: EcsClient,
    pub settings: Settings,
    pub default_region: Option<String>,
}

/// A report for input that never became a request: nothing was called.
pub fn rejected(trigger: &Trigger, e: &InvalidRequest) -> Report {
    Report {
        outcome: Outcome::Rejected,
        idempotency_key: None,
        trigger_kind: trigger.kind.clone(),
        trigger_id: trigger.id.clone(),
        target: Target::default(),
        steps: vec![],
        error: Some(ErrorInfo::new(
            "InvalidRequest",
            format!("{}: {}", e.field, e.message),
            false,
        )),
        total_ms: 0,
        downtime_ms: None,
        reason: None,
        warnings: vec![],
    }
}

/// The requests an event holds: itself, or each item of its `requests` list.
pub fn requests_of(event: &Value) -> Result<Vec<&Value>, InvalidRequest> {
    match event.get("requests") {
        Some(Value::Array(items)) if event.as_object().is_some_and(|o| o.len() == 1) => {
            if items.is_empty() || items.len() > MAX_REQUESTS {
                return Err(InvalidRequest::new(
                    "requests",
                    format!("1 to {MAX_REQUESTS} requests"),
                ));
            }
            Ok(items.iter().collect())
        }
        Some(Value::Array(_)) => Err(InvalidRequest::new(
            "requests",
            "a list of requests stands alone in its object",
        )),
        Some(_) => Err(InvalidRequest::new("requests", "must be a list")),
        None => Ok(vec![event]),
    }
}

impl Handler {
    /// Runs every request of `event`, one after the other, and reports each.
    pub async fn handle(&self, event: &Value, deadline: Option<Instant>) -> Vec<Report> {
        let trigger = Trigger::direct();
        let items = match requests_of(event) {
            Ok(items) => items,
            Err(e) => return vec![rejected(&trigger, &e)],
        };
        let mut reports = Vec::with_capacity(items.len());
        for item in items {
            match request::parse(item, self.default_region.as_deref(), trigger.clone()) {
                Ok(req) => {
                    let rollback = Rollback::new(&self.ecs, &self.settings);
                    reports.push(rollback.run(&req, deadline).await);
                }
                Err(e) => {
                    tracing::warn!(field = %e.field, message = %e.message, "request rejected");
                    reports.push(rejected(&trigger, &e));
                }
            }
        }
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_or_several() {
        let one = json!({"diskId": "d-bp1webapp0000sys01"});
        assert_eq!(requests_of(&one).expect("ok").len(), 1);
        let two = json!({"requests": [one.clone(), one.clone()]});
        assert_eq!(requests_of(&two).expect("ok").len(), 2);
        assert!(requests_of(&json!({"requests": []})).is_err());
        assert!(requests_of(&json!({"requests": {}})).is_err());
        assert!(requests_of(&json!({"requests": [one.clone()], "diskId": "x"})).is_err());
    }
}
