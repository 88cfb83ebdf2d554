//! Alibaba Cloud sources: CloudMonitor alarm callbacks (form or JSON), CloudMonitor alarms
//! written to MNS, ECS event notifications, EventBridge CloudEvents (system events, custom
//! events carrying a request, and MNS messages as Function Compute delivers them), and Function
//! Compute timer triggers.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{direct, drill_jobs, jobs, parse_when, request_of, str_at, Context, Job};
use crate::ids::{DiskId, InstanceId};
use crate::policy::{Signal, Source};
use crate::request::Trigger;

/// `{userId=1234567890123456, instanceId=i-bp1…}` (CloudMonitor writes dimensions as text).
pub fn parse_dimensions(text: &str) -> Vec<(String, String)> {
    text.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A threshold alarm callback (the form body decoded, or the JSON one). Acted on in `ALERT` /
/// `ALARM`; `OK` and `INSUFFICIENT_DATA` are ignored. Key: `transId`, else rule and time.
pub fn cms_callback(event: &Value) -> Vec<Job> {
    let rule = text(event, "ruleId").unwrap_or_default();
    let ts = text(event, "timestamp").unwrap_or_default();
    let id = text(event, "transId").unwrap_or_else(|| format!("{rule}|{ts}"));
    let trigger = Trigger {
        kind: "cloudmonitor".into(),
        key_basis: None,
        id,
        time: parse_when(event.get("timestamp")),
    };
    let name = text(event, "alertName").unwrap_or_default();
    let state = text(event, "alertState")
        .unwrap_or_default()
        .to_ascii_uppercase();
    if state != "ALERT" && state != "ALARM" {
        return vec![Job::ignored(
            trigger,
            format!("CloudMonitor alarm {name:?} is {state}, not ALERT"),
        )];
    }
    let dims = match event.get("dimensions") {
        Some(Value::String(s)) => parse_dimensions(s),
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect(),
        _ => vec![],
    };
    let dim = |k: &str| {
        dims.iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let instance = dim("instanceId");
    let disk = dim("diskId").filter(|d| DiskId::parse(d).is_ok());
    if instance.is_none() && disk.is_none() {
        return vec![Job::invalid(
            trigger,
            "dimensions",
            format!("CloudMonitor alarm {name:?} names no instanceId in its dimensions"),
        )];
    }
    let signal = Signal::new(Source::Alarm, Some(name.clone()), Some(state.clone()));
    vec![Job::request(
        trigger,
        request_of(&[
            ("regionId", text(event, "regionId")),
            ("instanceId", instance),
            ("diskId", disk),
            (
                "reason",
                Some(format!(
                    "CloudMonitor alarm {name} ({})",
                    text(event, "metricName").unwrap_or_default()
                )),
            ),
        ]),
    )
    .with_signal(signal)]
}

/// A CloudMonitor alarm written to an MNS queue. Acted on unless `curLevel` is `OK`.
/// `resources` is a JSON string holding the instance. `region` comes from the MNS envelope when
/// there is one. Key: the rule and the alarm time.
pub fn cms_mns(event: &Value, region: Option<String>) -> Vec<Job> {
    let rule = text(event, "ruleId").unwrap_or_default();
    let time = text(event, "time").unwrap_or_default();
    let trigger = Trigger {
        kind: "cloudmonitor-mns".into(),
        key_basis: None,
        id: format!("{rule}|{time}"),
        time: parse_when(event.get("time")),
    };
    let name = text(event, "ruleName").unwrap_or_default();
    let level = text(event, "curLevel").unwrap_or_default();
    if level.eq_ignore_ascii_case("OK") {
        return vec![Job::ignored(
            trigger,
            format!("CloudMonitor alarm {name:?} is back to OK"),
        )];
    }
    let resources: Value = event
        .get("resources")
        .and_then(Value::as_str)
        .and_then(|s| crate::strict_json::from_str(s).ok())
        .or_else(|| event.get("resources").filter(|r| r.is_object()).cloned())
        .unwrap_or(Value::Null);
    let instance = text(&resources, "instanceId")
        .or_else(|| event.get("metricData").and_then(|m| text(m, "instanceId")));
    if instance.is_none() {
        return vec![Job::invalid(
            trigger,
            "resources",
            format!("CloudMonitor alarm {name:?} names no instanceId"),
        )];
    }
    vec![Job::request(
        trigger,
        request_of(&[
            ("regionId", text(&resources, "regionId").or(region)),
            ("instanceId", instance),
            (
                "reason",
                Some(format!("CloudMonitor alarm {name} ({level})")),
            ),
        ]),
    )
    .with_signal(Signal::new(Source::Alarm, Some(name), Some(level)))]
}

/// An ECS event (CloudMonitor event-notification format, or the `data` of an `acs.ecs`
/// CloudEvent). Events about a disk at `WARN` or `CRITICAL` (a stalled disk) are acted on;
/// state changes and informational events are ignored.
fn ecs_content(
    name: &str,
    level: &str,
    content: &Value,
    region: Option<String>,
    trigger: Trigger,
) -> Job {
    let disk = text(content, "diskId");
    let instance = text(content, "ecsInstanceId").or_else(|| text(content, "instanceId"));
    let alarming = matches!(
        level.to_ascii_uppercase().as_str(),
        "CRITICAL" | "WARN" | "WARNING"
    );
    if name.contains("StateChange") || !alarming || disk.is_none() {
        return Job::ignored(
            trigger,
            format!("ECS event {name} ({level}) is not a disk alarm"),
        );
    }
    Job::request(
        trigger,
        request_of(&[
            ("regionId", region),
            ("instanceId", instance),
            ("diskId", disk),
            ("reason", Some(format!("ECS event {name}"))),
        ]),
    )
    .with_signal(Signal::new(
        Source::EcsEvent,
        Some(name.to_owned()),
        Some(level.to_owned()),
    ))
}

pub fn ecs_event(event: &Value) -> Vec<Job> {
    let name = text(event, "name").unwrap_or_default();
    let content = event.get("content").cloned().unwrap_or(Value::Null);
    let trigger = Trigger {
        kind: "ecs-event".into(),
        key_basis: None,
        id: text(event, "id").unwrap_or_default(),
        time: parse_when(content.get("executeStartTime")),
    };
    vec![ecs_content(
        &name,
        &text(event, "level").unwrap_or_default(),
        &content,
        text(event, "regionId"),
        trigger,
    )]
}

/// The instance in an ARN subject such as `acs:ecs:cn-hangzhou:123:instance/i-…`.
fn from_subject(subject: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = subject.split(':').collect();
    let region = parts
        .get(2)
        .map(|r| (*r).to_owned())
        .filter(|r| !r.is_empty());
    let instance = parts
        .last()
        .and_then(|r| r.strip_prefix("instance/"))
        .filter(|i| InstanceId::parse(i).is_ok())
        .map(str::to_owned);
    (region, instance)
}

/// An Alibaba EventBridge CloudEvent: an MNS message (Function Compute's MNS trigger), an
/// `acs.*` system event, or a custom event whose `data` is a request. Key: the message ID or the
/// event `id`.
pub fn cloud_event(event: &Value, ctx: &Context) -> Vec<Job> {
    let id = text(event, "id").unwrap_or_default();
    let kind = text(event, "type").unwrap_or_default();
    let source = text(event, "source").unwrap_or_default();
    let subject = text(event, "subject").unwrap_or_default();
    let time: Option<DateTime<Utc>> = parse_when(event.get("time"));
    let data = event.get("data").cloned().unwrap_or(Value::Null);
    let region = text(event, "aliyunregionid").or_else(|| from_subject(&subject).0);
    if kind == "mns:Queue:SendMessage" {
        let msg_id = text(&data, "messageId").unwrap_or(id);
        let trigger = Trigger {
            kind: "mns".into(),
            key_basis: None,
            id: msg_id,
            time,
        };
        let Some(body) = data.get("messageBody").and_then(Value::as_str) else {
            return vec![Job::invalid(
                trigger,
                "data.messageBody",
                "an MNS message without a body",
            )];
        };
        let inner: Value = match crate::strict_json::from_str(body) {
            Ok(v) => v,
            Err(e) => {
                return vec![Job::invalid(
                    trigger,
                    "data.messageBody",
                    format!("not JSON: {e}"),
                )]
            }
        };
        // A CloudMonitor alarm sent to MNS, or a request (keyed by the message).
        if inner.get("ruleId").is_some() && inner.get("curLevel").is_some() {
            return cms_mns(&inner, region);
        }
        return direct(&inner, trigger);
    }
    let trigger = Trigger {
        kind: "eventbridge-alibaba".into(),
        key_basis: None,
        id,
        time,
    };
    if source.starts_with("acs.") {
        if source == "acs.ecs" {
            let level = text(&data, "level").unwrap_or_else(|| {
                if kind.contains("Stalled") {
                    "CRITICAL".into()
                } else {
                    "INFO".into()
                }
            });
            return vec![ecs_content(&kind, &level, &data, region, trigger)];
        }
        // Another product's event delivered as is: see whether it is one we know.
        let inner = jobs(&data, ctx);
        if inner
            .iter()
            .all(|j| matches!(j.item, super::Item::Invalid(_)))
        {
            return vec![Job::ignored(
                trigger,
                format!("{source} event {kind} is not a rollback trigger"),
            )];
        }
        return inner;
    }
    let Value::Object(mut request) = data else {
        return vec![Job::invalid(
            trigger,
            "data",
            "a custom event's data must be a rollback request object",
        )];
    };
    // The subject ARN names the instance and the region when the data does not.
    let (subject_region, subject_instance) = from_subject(&subject);
    let names_target = [
        "diskId",
        "DiskId",
        "instanceId",
        "InstanceId",
        "requests",
        "drill",
    ]
    .iter()
    .any(|k| request.contains_key(*k));
    if let (false, Some(i)) = (names_target, subject_instance) {
        request.insert("instanceId".into(), Value::String(i));
    }
    let names_region = request.contains_key("regionId") || request.contains_key("RegionId");
    if let (false, Some(r)) = (names_region, region.or(subject_region)) {
        if !request.contains_key("requests") && !request.contains_key("drill") {
            request.insert("regionId".into(), Value::String(r));
        }
    }
    direct(&Value::Object(request), trigger)
}

/// A Function Compute timer trigger: its `payload` (a string) is a drill or a request.
pub fn fc_timer(event: &Value, _ctx: &Context) -> Vec<Job> {
    let name = text(event, "triggerName").unwrap_or_default();
    let when = text(event, "triggerTime").unwrap_or_default();
    let trigger = Trigger {
        kind: "fc-timer".into(),
        key_basis: None,
        id: format!("{name}|{when}"),
        time: parse_when(event.get("triggerTime")),
    };
    let payload: Value = match str_at(event, &["payload"]).map(crate::strict_json::from_str) {
        Some(Ok(v)) => v,
        Some(Err(e)) => return vec![Job::invalid(trigger, "payload", format!("not JSON: {e}"))],
        None => {
            return vec![Job::invalid(
                trigger,
                "payload",
                "a timer trigger without a payload",
            )]
        }
    };
    match payload.get("drill") {
        Some(d) => drill_jobs(
            d,
            Some(&when).filter(|w| !w.is_empty()).map(String::as_str),
            "fc-timer",
        ),
        None => direct(&payload, trigger),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::Item;
    use serde_json::json;

    use crate::triggers::test_support::sample;

    fn request(j: &Job) -> &Value {
        match &j.item {
            Item::Request(v) => v,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn dimensions_text() {
        assert_eq!(
            parse_dimensions("{userId=1234567890123456, instanceId=i-bp1ecr0000000005go2go}"),
            vec![
                ("userId".into(), "1234567890123456".into()),
                ("instanceId".into(), "i-bp1ecr0000000005go2go".into())
            ]
        );
    }

    #[test]
    fn reference_samples_map_onto_requests() {
        let j = cms_callback(&sample("cms-threshold-alert-callback.decoded.json"));
        assert_eq!(request(&j[0])["instanceId"], "i-bp1ecr0000000005go2go");
        assert_eq!(request(&j[0])["regionId"], "cn-hangzhou");
        assert_eq!(j[0].trigger.id, "2e0a0647-0064-11ee-b07f-00163e2e0000");
        let j = cms_mns(&sample("cms-alert-to-mns-message-body.json"), None);
        assert_eq!(request(&j[0])["instanceId"], "i-bp1ecr0000000005go2go");
        let j = ecs_event(&sample("ecs-event-notification-disk-stalled.json"));
        assert_eq!(request(&j[0])["diskId"], "d-t4ndyqve00000000n4ds");
        assert!(matches!(
            ecs_event(&sample("ecs-event-notification-instance-statechange.json"))[0].item,
            Item::Ignored(_)
        ));
        let ctx = Context::default();
        let j = cloud_event(&sample("eventbridge-custom-rollback-request.json"), &ctx);
        assert_eq!(request(&j[0])["dryRun"], true);
        assert_eq!(j[0].trigger.id, "rb-20240606-0001");
        assert!(matches!(
            cloud_event(&sample("eventbridge-ecs-instance-statechange.json"), &ctx)[0].item,
            Item::Ignored(_)
        ));
        let j = cloud_event(&sample("fc-mns-queue-trigger-cloudevent.json"), &ctx);
        assert_eq!(request(&j[0])["reason"], "ticket OPS-1234");
        assert_eq!(j[0].trigger.kind, "mns");
        assert_eq!(j[0].trigger.id, "C6DB60D1574661357FA2272774450000");
    }

    #[test]
    fn non_alarm_states_are_ignored() {
        let ok = json!({"alertState": "OK", "alertName": "x", "dimensions": "{instanceId=i-bp1webapp00000001}"});
        assert!(matches!(cms_callback(&ok)[0].item, Item::Ignored(_)));
        let ok = json!({"ruleId": "r", "curLevel": "OK", "resources": "{}"});
        assert!(matches!(cms_mns(&ok, None)[0].item, Item::Ignored(_)));
    }

    #[test]
    fn a_custom_event_takes_its_target_from_the_subject() {
        let ev = json!({"specversion": "1.0", "id": "e-1", "source": "ops.tools", "type": "ops:Rollback",
            "subject": "acs:ecs:cn-shanghai:1234567890123456:instance/i-bp1webapp00000001", "data": {"reason": "x"}});
        let j = cloud_event(&ev, &Context::default());
        assert_eq!(request(&j[0])["instanceId"], "i-bp1webapp00000001");
        assert_eq!(request(&j[0])["regionId"], "cn-shanghai");
    }

    #[test]
    fn subject_arn() {
        assert_eq!(
            from_subject("acs:ecs:cn-hangzhou:1234567890123456:instance/i-bp1ecr0000000005go2go"),
            (
                Some("cn-hangzhou".into()),
                Some("i-bp1ecr0000000005go2go".into())
            )
        );
    }
}
