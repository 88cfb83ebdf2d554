//! Every event source the function understands, each detected explicitly by its own markers
//! (never by trying one type after another: an SNS event deserializes as an SQS one), and mapped
//! onto jobs: a rollback request in the direct form with the trigger it came from, an `ignored`
//! event (a resolved alert, an OK state), or input that cannot become a request.
//!
//! Nothing in here calls ECS, and nothing below `handler/` knows an event format.

pub mod alerts;
pub mod alibaba;
pub mod aws;
pub mod webhook;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::drill;
use crate::policy::Signal;
use crate::request::{InvalidRequest, Trigger};

/// What one event asks for, before validation.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A request in the direct form.
    Request(Value),
    /// Nothing to do, and why (a resolved alert, a non-alarm state).
    Ignored(String),
    /// Input that cannot become a request.
    Invalid(InvalidRequest),
    /// A drill: many requests, run together by the handler.
    Drill(Box<drill::DrillPlan>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub trigger: Trigger,
    pub item: Item,
    /// What the remediation policy (`crate::policy`) sees of the signal; `None`: what the
    /// trigger's kind says.
    pub signal: Option<Signal>,
}

impl Job {
    pub fn request(trigger: Trigger, value: Value) -> Self {
        Self {
            trigger,
            item: Item::Request(value),
            signal: None,
        }
    }

    /// The same job, with the signal the policy decides on.
    pub fn with_signal(mut self, signal: Signal) -> Self {
        self.signal = Some(signal);
        self
    }
    pub fn ignored(trigger: Trigger, why: impl Into<String>) -> Self {
        Self {
            trigger,
            item: Item::Ignored(why.into()),
            signal: None,
        }
    }
    pub fn invalid(trigger: Trigger, field: &str, why: impl Into<String>) -> Self {
        Self {
            trigger,
            item: Item::Invalid(InvalidRequest::new(field, why)),
            signal: None,
        }
    }
}

/// The sources, as detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqs,
    Sns,
    Http,
    AwsEventBridge,
    Drill,
    /// A step of a drill run by a workflow engine (`crate::workflow`).
    Workflow,
    SchedulerContext,
    Alertmanager,
    CmsCallback,
    CmsMns,
    EcsEventNotification,
    CloudEvent,
    CloudEventBatch,
    FcTimer,
    Direct,
    Unknown,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn has(v: &Value, keys: &[&str]) -> bool {
    keys.iter().all(|k| v.get(k).is_some())
}

/// Names the source of `event` from its own markers.
pub fn detect(event: &Value) -> Kind {
    if let Some(items) = event.as_array() {
        let all_cloudevents =
            !items.is_empty() && items.iter().all(|i| i.get("specversion").is_some());
        return if all_cloudevents {
            Kind::CloudEventBatch
        } else {
            Kind::Unknown
        };
    }
    if !event.is_object() {
        return Kind::Unknown;
    }
    if let Some(first) = event
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
    {
        if str_at(first, &["eventSource"]) == Some("aws:sqs") {
            return Kind::Sqs;
        }
        if str_at(first, &["EventSource"]) == Some("aws:sns") {
            return Kind::Sns;
        }
        return Kind::Unknown;
    }
    if str_at(event, &["requestContext", "http", "method"]).is_some() {
        return Kind::Http;
    }
    if event.get("specversion").is_some() {
        return Kind::CloudEvent;
    }
    if has(event, &["detail-type", "source"]) {
        return Kind::AwsEventBridge;
    }
    if event.get("workflow").is_some() {
        return Kind::Workflow;
    }
    if event.get("drill").is_some() {
        return Kind::Drill;
    }
    if str_at(event, &["source"]) == Some("scheduler") && event.get("scheduledTime").is_some() {
        return Kind::SchedulerContext;
    }
    if event.get("alerts").and_then(Value::as_array).is_some()
        && (event.get("receiver").is_some() || event.get("version").is_some())
    {
        return Kind::Alertmanager;
    }
    if event.get("alertState").is_some()
        && (event.get("dimensions").is_some() || event.get("metricName").is_some())
    {
        return Kind::CmsCallback;
    }
    if has(event, &["ruleId", "curLevel"]) {
        return Kind::CmsMns;
    }
    if str_at(event, &["product"]).is_some_and(|p| p.eq_ignore_ascii_case("ecs"))
        && has(event, &["name", "content"])
    {
        return Kind::EcsEventNotification;
    }
    if has(event, &["triggerTime", "triggerName", "payload"]) {
        return Kind::FcTimer;
    }
    Kind::Direct
}

/// Defaults the mapping needs from the environment.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// `ECS_ROLLBACK_DRILL`: the drill a bare scheduled event runs.
    pub drill_fallback: Option<Value>,
}

/// The jobs of any event but an SQS batch or an HTTP request (the handler answers those in
/// their own shapes, and calls this for each record or body).
pub fn jobs(event: &Value, ctx: &Context) -> Vec<Job> {
    match detect(event) {
        Kind::Sns => aws::sns(event),
        Kind::AwsEventBridge => aws::eventbridge(event, ctx),
        Kind::Drill => drill_jobs(
            event.get("drill").unwrap_or(&Value::Null),
            event.get("scheduledTime").and_then(Value::as_str),
            "scheduler",
        ),
        Kind::SchedulerContext => match &ctx.drill_fallback {
            Some(d) => drill_jobs(
                d,
                event.get("scheduledTime").and_then(Value::as_str),
                "scheduler",
            ),
            None => vec![Job::invalid(
                Trigger {
                    kind: "scheduler".into(),
                    key_basis: None,
                    id: String::new(),
                    time: None,
                },
                "drill",
                "the schedule's Input carries no drill, and ECS_ROLLBACK_DRILL is not set",
            )],
        },
        Kind::Alertmanager => alerts::webhook(event),
        Kind::CmsCallback => alibaba::cms_callback(event),
        Kind::CmsMns => alibaba::cms_mns(event, None),
        Kind::EcsEventNotification => alibaba::ecs_event(event),
        Kind::CloudEvent => alibaba::cloud_event(event, ctx),
        Kind::CloudEventBatch => event
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .flat_map(|i| alibaba::cloud_event(i, ctx))
                    .collect()
            })
            .unwrap_or_default(),
        Kind::FcTimer => alibaba::fc_timer(event, ctx),
        Kind::Direct => direct(event, Trigger::direct()),
        Kind::Workflow => vec![Job::invalid(
            Trigger::direct(),
            "workflow",
            "a workflow step is an invocation of its own, not part of another event",
        )],
        Kind::Sqs | Kind::Http => vec![Job::invalid(
            Trigger::direct(),
            "$",
            "an SQS batch or an HTTP request inside another event is not accepted",
        )],
        Kind::Unknown => vec![Job::invalid(
            Trigger::direct(),
            "$",
            format!("unrecognised event: {}", describe(event)),
        )],
    }
}

/// A request, or `{"requests": [...]}`, or a drill, with `trigger`.
pub fn direct(event: &Value, trigger: Trigger) -> Vec<Job> {
    if let Some(d) = event.get("drill") {
        let when = event.get("scheduledTime").and_then(Value::as_str);
        return drill_jobs(d, when, &trigger.kind);
    }
    match requests_of(event) {
        Ok(items) if items.len() == 1 => vec![Job::request(trigger, items[0].clone())],
        Ok(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let mut t = trigger.clone();
                if !t.id.is_empty() {
                    t.id = format!("{}#{i}", t.id);
                }
                if let Some(basis) = &mut t.key_basis {
                    *basis = format!("{basis}#{i}");
                }
                Job::request(t, v.clone())
            })
            .collect(),
        Err(e) => vec![Job {
            trigger,
            item: Item::Invalid(e),
            signal: None,
        }],
    }
}

pub fn drill_jobs(spec: &Value, scheduled: Option<&str>, via: &str) -> Vec<Job> {
    match drill::parse(spec, scheduled) {
        Ok(plan) => vec![Job {
            trigger: Trigger {
                kind: "drill".into(),
                key_basis: None,
                id: format!("{}|{}", plan.name, plan.slot),
                time: plan.when,
            },
            item: Item::Drill(Box::new(plan)),
            signal: None,
        }],
        Err(e) => vec![Job {
            trigger: Trigger {
                kind: format!("{via}-drill"),
                key_basis: None,
                id: String::new(),
                time: None,
            },
            item: Item::Invalid(e),
            signal: None,
        }],
    }
}

/// A short description of an event nobody recognised: its type and top-level keys.
pub fn describe(event: &Value) -> String {
    match event {
        Value::Object(m) => {
            let keys: Vec<&str> = m.keys().take(12).map(String::as_str).collect();
            format!("an object with keys [{}]", keys.join(", "))
        }
        Value::Array(a) => format!("a list of {} items", a.len()),
        Value::String(_) => "a JSON string".into(),
        Value::Number(_) => "a number".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Null => "null".into(),
    }
}

/// Builds a direct-form request from the fields an adapter found.
pub fn request_of(fields: &[(&str, Option<String>)]) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            m.insert((*k).to_owned(), Value::String(v.clone()));
        }
    }
    Value::Object(m)
}

/// Parses a time given as RFC 3339 or as Unix milliseconds (a number or a numeric string).
pub fn parse_when(v: Option<&Value>) -> Option<DateTime<Utc>> {
    match v? {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                s.parse::<i64>()
                    .ok()
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            }),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        _ => None,
    }
}

/// Reference samples for the triggers' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;

    /// A file of `tests/data/events/` (the reference samples), parsed.
    pub(crate) fn sample(name: &str) -> Value {
        let path = format!("{}/tests/data/events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).expect("sample");
        serde_json::from_str(&text).expect("json")
    }
}

/// Requests in one direct event, at most.
pub const MAX_REQUESTS: usize = 100;

/// The one size limit of every front door (`invoke`, Lambda, Function Compute's `/invoke` and
/// its HTTP trigger): what the sender wrote, an event or an HTTP request's body, of more than
/// this many bytes is refused with one `rejected` result that says so (HTTP: status 413).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// No front door reads or parses more than this. An HTTP event (a Function URL's, or FC's
/// `version: v1` struct) is measured by its body, and its envelope (headers, base64) may be
/// larger than the body: up to here it is parsed to find the body. Lambda's own limit for a
/// synchronous payload is 6 MB, so on Lambda every over-limit body gets its 413.
pub const MAX_ENVELOPE: usize = 6 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::test_support::sample;

    #[test]
    fn each_reference_sample_is_detected_as_itself() {
        let cases = [
            ("aws-sqs-event.json", Kind::Sqs),
            ("aws-sns-event.json", Kind::Sns),
            ("aws-eventbridge-scheduled-event.json", Kind::AwsEventBridge),
            ("alertmanager-webhook-v4.json", Kind::Alertmanager),
            ("arms-alertmanager-webhook.json", Kind::Alertmanager),
            (
                "cms-threshold-alert-callback.decoded.json",
                Kind::CmsCallback,
            ),
            ("cms-alert-to-mns-message-body.json", Kind::CmsMns),
            (
                "ecs-event-notification-disk-stalled.json",
                Kind::EcsEventNotification,
            ),
            (
                "ecs-event-notification-instance-statechange.json",
                Kind::EcsEventNotification,
            ),
            ("eventbridge-custom-rollback-request.json", Kind::CloudEvent),
            (
                "eventbridge-ecs-instance-statechange.json",
                Kind::CloudEvent,
            ),
            ("fc-mns-queue-trigger-cloudevent.json", Kind::CloudEvent),
            ("fc-mns-queue-trigger-batch.json", Kind::CloudEventBatch),
            ("fc-timer-trigger-drill.json", Kind::FcTimer),
            ("sns-notification.json", Kind::Sns),
            ("sqs-receive-message.json", Kind::Sqs),
            ("derived-sqs-fifo-receive-message.json", Kind::Sqs),
            ("cloudwatch-scheduled-event.json", Kind::AwsEventBridge),
            ("apigateway-http-api-proxy.json", Kind::Http),
            (
                "derived-eventbridge-scheduler-input.json",
                Kind::SchedulerContext,
            ),
        ];
        for (name, kind) in cases {
            assert_eq!(detect(&sample(name)), kind, "{name}");
        }
        assert_eq!(detect(&json!({"diskId": "d-x"})), Kind::Direct);
        assert_eq!(
            detect(&json!({"workflow": "plan", "drill": {}})),
            Kind::Workflow
        );
        assert_eq!(detect(&json!("text")), Kind::Unknown);
        assert_eq!(detect(&json!([1, 2])), Kind::Unknown);
        assert_eq!(detect(&json!({"Records": [{"x": 1}]})), Kind::Unknown);
    }

    #[test]
    fn unknown_input_names_what_was_seen() {
        let j = jobs(&json!(42), &Context::default());
        match &j[0].item {
            Item::Invalid(e) => assert!(e.message.contains("a number"), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_when(Some(&json!(1717660800000i64)))
                .map(|t| t.to_rfc3339())
                .as_deref(),
            Some("2024-06-06T08:00:00+00:00")
        );
        assert_eq!(
            parse_when(Some(&json!("1717660800000"))).map(|t| t.timestamp()),
            Some(1717660800)
        );
        assert_eq!(
            parse_when(Some(&json!("2024-06-06T08:00:00.000000000Z"))).map(|t| t.timestamp()),
            Some(1717660800)
        );
        assert_eq!(
            parse_when(Some(&json!("0001-01-01T00:00:00Z"))).map(|t| t.timestamp()),
            Some(-62135596800)
        );
        assert_eq!(parse_when(Some(&json!("soon"))), None);
    }

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
