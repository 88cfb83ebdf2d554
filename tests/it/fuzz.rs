//! Property-based fuzzing of everything that reads outside input: event detection and mapping,
//! request validation, strict JSON, drills, the webhook's unwrap/authenticate/body parsing. The
//! property: no panic, and every job is a request, an ignored event or a rejection.
//! `PROPTEST_CASES` sets the budget (CI uses the default below; a long run sets it high).

use std::path::PathBuf;

use ecs_rollback::request::{self, Trigger};
use ecs_rollback::triggers::{self, webhook, Context, Item};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400)
}

/// Strings that look like what the parsers look for, and junk.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9_.:/ -]{0,24}",
        Just("i-bp1webapp00000001".to_owned()),
        Just("d-bp1webapp0000sys01".to_owned()),
        Just("s-bp1webapp0sys00001".to_owned()),
        Just("cn-hangzhou".to_owned()),
        Just("firing".to_owned()),
        Just("ALARM".to_owned()),
        Just("aws:sqs".to_owned()),
        Just("aws:sns".to_owned()),
        Just("mns:Queue:SendMessage".to_owned()),
        Just("{\"diskId\":\"d-bp1webapp0000sys01\"}".to_owned()),
        Just("{userId=1, instanceId=i-bp1webapp00000001}".to_owned()),
        Just("2026-11-29T08:00:00Z".to_owned()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        prop::sample::select(vec![
            "diskId",
            "DiskId",
            "instanceId",
            "InstanceId",
            "regionId",
            "snapshotId",
            "snapshot",
            "requests",
            "drill",
            "idempotencyKey",
            "requestId",
            "dryRun",
            "startAfterReset",
            "Records",
            "eventSource",
            "EventSource",
            "Sns",
            "Message",
            "body",
            "messageId",
            "attributes",
            "MessageGroupId",
            "detail-type",
            "source",
            "detail",
            "alerts",
            "receiver",
            "version",
            "status",
            "labels",
            "annotations",
            "startsAt",
            "fingerprint",
            "alertState",
            "dimensions",
            "ruleId",
            "curLevel",
            "resources",
            "product",
            "name",
            "content",
            "specversion",
            "type",
            "data",
            "messageBody",
            "triggerTime",
            "triggerName",
            "payload",
            "requestContext",
            "http",
            "method",
            "headers",
            "isBase64Encoded",
            "targets",
            "scheduledTime",
            "tag",
            "key",
            "value",
            "before",
            "AlarmName",
            "NewStateValue",
            "Trigger",
            "Dimensions",
        ])
        .prop_map(str::to_owned),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kvs| Value::Object(kvs.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn samples() -> Vec<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["events", "tests/data/events"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "json") {
                    if let Ok(v) =
                        serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap_or_default())
                    {
                        out.push(v);
                    }
                }
            }
        }
    }
    out
}

/// Replaces (or removes) the value at a pseudo-random path of `v`, chosen by `pick`; a string
/// that holds JSON (a message body) is mutated inside.
fn mutate(v: &mut Value, pick: &[usize], with: Value) {
    let Some((&p, rest)) = pick.split_first() else {
        *v = with;
        return;
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let k = m.keys().nth(p % m.len()).cloned().unwrap_or_default();
            if rest.is_empty() || p % 7 == 0 {
                if p % 5 == 0 {
                    m.remove(&k);
                } else {
                    m.insert(k, with);
                }
            } else if let Some(child) = m.get_mut(&k) {
                mutate(child, rest, with);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = p % a.len();
            if rest.is_empty() {
                a[i] = with;
            } else {
                mutate(&mut a[i], rest, with);
            }
        }
        Value::String(s) if p % 3 == 0 => {
            if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                mutate(&mut inner, rest, with);
                *s = inner.to_string();
            }
        }
        other => *other = with,
    }
}

fn exercise(v: &Value) {
    let ctx = Context {
        drill_fallback: Some(json!({"name": "x", "targets": [{"diskId": "d-bp1webapp0000sys01"}]})),
    };
    let _ = triggers::detect(v);
    for job in triggers::jobs(v, &ctx) {
        if let Item::Request(r) = &job.item {
            let _ = request::parse(r, Some("cn-hangzhou"), job.trigger.clone());
        }
    }
    let _ = request::parse(v, None, Trigger::direct());
    if let Ok(plan) = ecs_rollback::drill::parse(v, Some("2026-11-29T03:00:00Z")) {
        let _ = plan.requests(&[]);
        let _ = plan.summary(&[], 0, false);
    }
    if triggers::detect(v) == triggers::Kind::Sqs {
        for r in v["Records"].as_array().into_iter().flatten() {
            let _ = triggers::aws::sqs_record(r);
        }
    }
    if let Ok(req) = webhook::unwrap(v) {
        let auth = webhook::WebhookAuth {
            secret: Some(ecs_rollback::ecs::credentials::Secret::new("s")),
            token: Some(ecs_rollback::ecs::credentials::Secret::new("t")),
            seen: Default::default(),
        };
        let _ = webhook::authenticate(&req, &auth, 1_800_000_000);
        let _ = webhook::body_event(&req);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        exercise(&v);
    }

    #[test]
    fn mutated_sample_events_never_panic(i in any::<usize>(), pick in prop::collection::vec(any::<usize>(), 1..6), with in json_value()) {
        let all = samples();
        prop_assume!(!all.is_empty());
        let mut v = all[i % all.len()].clone();
        mutate(&mut v, &pick, with);
        exercise(&v);
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = ecs_rollback::strict_json::from_str(&s);
        let _ = triggers::alibaba::parse_dimensions(&s);
        let _ = ecs_rollback::ecs::model::parse_time(&s);
        let _ = ecs_rollback::ids::DiskId::parse(&s);
        let _ = ecs_rollback::ids::RegionId::parse(&s);
        let _ = ecs_rollback::ledger::RunRecord::decode(&s);
        let _ = ecs_rollback::ledger::History::decode(&s);
        exercise(&json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": s}]}));
        exercise(&json!({"requestContext": {"http": {"method": "POST"}}, "headers": {"content-type": "application/x-www-form-urlencoded", "authorization": "Bearer t"}, "body": s}));
        exercise(&json!({"triggerTime": "t", "triggerName": "n", "payload": s}));
    }
}
