//! AWS sources: SQS records, SNS notifications (a request, or a CloudWatch alarm), and
//! EventBridge events (a scheduled rule, or a custom event whose `detail` is a request).

use serde_json::Value;

use super::{direct, drill_jobs, parse_when, request_of, str_at, Context, Job};
use crate::policy::{Signal, Source};
use crate::request::Trigger;

/// The records of one FIFO message group (or one standard-queue record), in batch order.
pub struct SqsGroup<'a> {
    pub id: Option<String>,
    pub records: Vec<(usize, &'a Value)>,
}

/// An SQS batch's records grouped by `MessageGroupId` (FIFO); a standard queue's records each
/// stand alone.
pub fn sqs_groups(event: &Value) -> Vec<SqsGroup<'_>> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut groups: Vec<SqsGroup> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let id = r
            .pointer("/attributes/MessageGroupId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match groups.iter_mut().find(|g| id.is_some() && g.id == id) {
            Some(g) => g.records.push((i, r)),
            None => groups.push(SqsGroup {
                id,
                records: vec![(i, r)],
            }),
        }
    }
    groups
}

/// One SQS record: its body is a request. Key: the body's own, else the message ID.
pub fn sqs_record(record: &Value) -> Job {
    let id = str_at(record, &["messageId"]).unwrap_or("").to_owned();
    let trigger = Trigger {
        kind: "sqs".into(),
        key_basis: None,
        id: id.clone(),
        time: parse_when(
            record
                .get("attributes")
                .and_then(|a| a.get("SentTimestamp")),
        ),
    };
    if id.is_empty() {
        return Job::invalid(trigger, "messageId", "an SQS record without a messageId");
    }
    let Some(body) = str_at(record, &["body"]) else {
        return Job::invalid(trigger, "body", "an SQS record without a body");
    };
    match crate::strict_json::from_str(body) {
        Ok(v) => {
            let mut jobs = direct(&v, trigger.clone());
            match (jobs.pop(), jobs.is_empty()) {
                (
                    Some(Job {
                        item: super::Item::Drill(_),
                        ..
                    }),
                    true,
                ) => Job::invalid(
                    trigger,
                    "body",
                    "an SQS message carries one request, not a drill",
                ),
                (Some(job), true) => job,
                _ => Job::invalid(
                    trigger,
                    "body",
                    "an SQS message carries exactly one request",
                ),
            }
        }
        Err(e) => Job::invalid(
            trigger,
            "body",
            format!("the message body is not JSON: {e}"),
        ),
    }
}

/// SNS: each record's message is a request, or a CloudWatch alarm (acted on in ALARM only).
pub fn sns(event: &Value) -> Vec<Job> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    records
        .iter()
        .flat_map(|r| {
            let sns = r.get("Sns").cloned().unwrap_or(Value::Null);
            let id = str_at(&sns, &["MessageId"]).unwrap_or("").to_owned();
            let trigger = Trigger {
                kind: "sns".into(),
                key_basis: None,
                id,
                time: parse_when(sns.get("Timestamp")),
            };
            let Some(message) = str_at(&sns, &["Message"]) else {
                return vec![Job::invalid(
                    trigger,
                    "Sns.Message",
                    "an SNS record without a message",
                )];
            };
            match crate::strict_json::from_str(message) {
                Ok(m) if m.get("AlarmName").is_some() && m.get("NewStateValue").is_some() => {
                    vec![cloudwatch_alarm(&m, trigger)]
                }
                Ok(m) => direct(&m, trigger),
                Err(e) => vec![Job::invalid(
                    trigger,
                    "Sns.Message",
                    format!("the message is not JSON: {e}"),
                )],
            }
        })
        .collect()
}

/// A CloudWatch alarm notification. The request is the alarm description when that is a JSON
/// object, else the alarm's dimensions (`InstanceId`, `DiskId`, `RegionId`, any case).
/// Key: the alarm and the time of its change to ALARM.
fn cloudwatch_alarm(m: &Value, mut trigger: Trigger) -> Job {
    let name = str_at(m, &["AlarmName"]).unwrap_or("");
    let state = str_at(m, &["NewStateValue"]).unwrap_or("");
    let changed = str_at(m, &["StateChangeTime"]).unwrap_or("");
    trigger.kind = "cloudwatch-alarm".into();
    trigger.id = format!("{name}|{changed}");
    trigger.time = parse_when(m.get("StateChangeTime")).or(trigger.time);
    if state != "ALARM" {
        return Job::ignored(trigger, format!("alarm {name} is {state}, not ALARM"));
    }
    if let Some(desc) = str_at(m, &["AlarmDescription"]) {
        if let Ok(v @ Value::Object(_)) = crate::strict_json::from_str(desc) {
            return Job::request(trigger, v).with_signal(Signal::new(
                Source::Alarm,
                Some(name.to_owned()),
                Some(state.to_owned()),
            ));
        }
    }
    let dims = m
        .get("Trigger")
        .and_then(|t| t.get("Dimensions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let dim = |names: &[&str]| {
        dims.iter().find_map(|d| {
            let n = d
                .get("name")
                .or_else(|| d.get("Name"))
                .and_then(Value::as_str)?;
            names
                .iter()
                .any(|x| n.eq_ignore_ascii_case(x))
                .then(|| {
                    d.get("value")
                        .or_else(|| d.get("Value"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .flatten()
        })
    };
    let instance = dim(&["InstanceId", "instance_id"]);
    let disk = dim(&["DiskId", "disk_id"]);
    if instance.is_none() && disk.is_none() {
        return Job::invalid(
            trigger,
            "AlarmDescription",
            format!("alarm {name} names no disk: put a request in its description, or an InstanceId/DiskId dimension"),
        );
    }
    Job::request(
        trigger,
        request_of(&[
            ("regionId", dim(&["RegionId", "region_id"])),
            ("instanceId", instance),
            ("diskId", disk),
            ("reason", Some(format!("CloudWatch alarm {name}"))),
        ]),
    )
    .with_signal(Signal::new(
        Source::Alarm,
        Some(name.to_owned()),
        Some(state.to_owned()),
    ))
}

/// EventBridge: a scheduled rule runs the drill in `ECS_ROLLBACK_DRILL` (a rule with an Input
/// delivers the Input itself, not this envelope); a custom event's `detail` is a request or a
/// drill. Key: the event `id`.
pub fn eventbridge(event: &Value, ctx: &Context) -> Vec<Job> {
    let id = str_at(event, &["id"]).unwrap_or("").to_owned();
    let time = str_at(event, &["time"]);
    let trigger = Trigger {
        kind: "eventbridge".into(),
        key_basis: None,
        id,
        time: parse_when(event.get("time")),
    };
    let scheduled = str_at(event, &["detail-type"]) == Some("Scheduled Event");
    let detail = event
        .get("detail")
        .filter(|d| d.as_object().is_some_and(|o| !o.is_empty()));
    match (scheduled, detail) {
        (true, None) => match &ctx.drill_fallback {
            Some(d) => drill_jobs(d, time, "eventbridge"),
            None => vec![Job::invalid(
                trigger,
                "detail",
                "a scheduled event without a drill: set the rule's Input to {\"drill\": …}, or ECS_ROLLBACK_DRILL",
            )],
        },
        (_, Some(d)) => direct(d, trigger),
        (false, None) => vec![Job::invalid(trigger, "detail", "an EventBridge event with an empty detail")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::Item;
    use serde_json::json;

    #[test]
    fn sqs_body_key_else_message_id() {
        let r = json!({"messageId": "m-1", "eventSource": "aws:sqs", "body": "{\"diskId\":\"d-bp1webapp0000sys01\"}"});
        let j = sqs_record(&r);
        assert_eq!(j.trigger.id, "m-1");
        assert!(matches!(j.item, Item::Request(_)));
        let bad = json!({"messageId": "m-2", "body": "not json"});
        assert!(matches!(sqs_record(&bad).item, Item::Invalid(_)));
    }

    #[test]
    fn cloudwatch_alarm_states() {
        let alarm = |state: &str| {
            let m = json!({"AlarmName": "disk-errors", "NewStateValue": state, "StateChangeTime": "2026-11-29T08:00:00.000+0000",
                "Trigger": {"Dimensions": [{"name": "InstanceId", "value": "i-bp1webapp00000001"}]}});
            json!({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "x", "Message": m.to_string()}}]})
        };
        let j = sns(&alarm("ALARM"));
        match &j[0].item {
            Item::Request(v) => assert_eq!(v["instanceId"], "i-bp1webapp00000001"),
            other => panic!("{other:?}"),
        }
        assert_eq!(j[0].trigger.kind, "cloudwatch-alarm");
        assert!(matches!(sns(&alarm("OK"))[0].item, Item::Ignored(_)));
    }
}
