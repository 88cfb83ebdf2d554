//! Prometheus Alertmanager (webhook version 4) and ARMS webhooks: one request per firing alert.
//!
//! Labels and annotations read (annotations win over labels):
//! - `rollback_disk_id`: the disk;
//! - `rollback_snapshot_id`: the snapshot (else the newest one taken before the alert started);
//! - `instance_id`, or `instance` when it holds an instance ID, or ARMS's
//!   `_aliyun_arms_involvedObject_id`: the instance (its system disk when no disk is named);
//! - `region_id`, or ARMS's `_aliyun_arms_region_id`: the region.
//!
//! Resolved alerts are `ignored`. Key: the alert's fingerprint and `startsAt`, so every
//! re-notification of one incident is one rollback. `startsAt` is the trigger time.

use serde_json::Value;

use super::{parse_when, request_of, Job};
use crate::ids::InstanceId;
use crate::policy::{Signal, Source};
use crate::request::Trigger;

/// The first non-empty value of `keys`: the alert's annotations, then its labels, then the
/// group's common annotations and common labels.
fn lookup(alert: &Value, common: &Value, keys: &[&str]) -> Option<String> {
    let sections = [
        (alert, "annotations"),
        (alert, "labels"),
        (common, "commonAnnotations"),
        (common, "commonLabels"),
    ];
    sections.iter().find_map(|(source, section)| {
        keys.iter().find_map(|k| {
            source
                .get(*section)
                .and_then(|s| s.get(*k))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        })
    })
}

pub fn webhook(event: &Value) -> Vec<Job> {
    let kind = if event.get("version").is_some() {
        "alertmanager"
    } else {
        "arms"
    };
    let alerts = event
        .get("alerts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if alerts.is_empty() {
        return vec![Job::ignored(
            Trigger {
                kind: kind.into(),
                key_basis: None,
                id: String::new(),
                time: None,
            },
            "the webhook carries no alerts",
        )];
    }
    alerts
        .iter()
        .map(|alert| {
            let fingerprint = alert.get("fingerprint").and_then(Value::as_str).unwrap_or("");
            let starts = alert.get("startsAt").and_then(Value::as_str).unwrap_or("");
            let trigger = Trigger {
                kind: kind.into(),
                key_basis: None,
                id: format!("{fingerprint}|{starts}"),
                time: parse_when(alert.get("startsAt")),
            };
            let name = lookup(alert, event, &["alertname"]).unwrap_or_default();
            let status = alert.get("status").and_then(Value::as_str).unwrap_or("");
            if status != "firing" {
                return Job::ignored(trigger, format!("alert {name:?} is {status}, not firing"));
            }
            if fingerprint.is_empty() || starts.is_empty() {
                return Job::invalid(trigger, "alerts[].fingerprint", "a firing alert without fingerprint and startsAt cannot be keyed");
            }
            let instance = lookup(alert, event, &["instance_id"])
                .or_else(|| lookup(alert, event, &["instance"]).filter(|i| InstanceId::parse(i).is_ok()))
                .or_else(|| lookup(alert, event, &["_aliyun_arms_involvedObject_id"]).filter(|i| InstanceId::parse(i).is_ok()));
            let disk = lookup(alert, event, &["rollback_disk_id"]);
            if instance.is_none() && disk.is_none() {
                return Job::invalid(
                    trigger,
                    "labels.rollback_disk_id",
                    format!("alert {name:?} names no disk: label or annotate it with rollback_disk_id or instance_id"),
                );
            }
            let summary = lookup(alert, event, &["summary", "message"]).unwrap_or_default();
            Job::request(
                trigger,
                request_of(&[
                    ("regionId", lookup(alert, event, &["region_id", "_aliyun_arms_region_id"])),
                    ("instanceId", instance),
                    ("diskId", disk),
                    ("snapshotId", lookup(alert, event, &["rollback_snapshot_id"])),
                    ("reason", Some(format!("{kind} alert {name}: {summary}").trim_end_matches(": ").to_owned())),
                ]),
            )
            .with_signal(Signal::new(Source::Alarm, Some(name), lookup(alert, event, &["severity"])))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::Item;
    use serde_json::json;

    #[test]
    fn firing_and_resolved() {
        let ev = json!({"version": "4", "receiver": "r", "status": "firing",
        "commonLabels": {"region_id": "cn-hangzhou"},
        "alerts": [
            {"status": "firing", "fingerprint": "f1", "startsAt": "2026-11-29T08:00:00Z",
             "labels": {"alertname": "DiskErrors", "instance": "10.0.0.1:9100", "instance_id": "i-bp1webapp00000001"},
             "annotations": {"summary": "fs errors", "rollback_disk_id": "d-bp1webapp0000dat01"}},
            {"status": "resolved", "fingerprint": "f2", "startsAt": "2026-11-29T07:00:00Z", "labels": {"alertname": "Old"}},
            {"status": "firing", "fingerprint": "f3", "startsAt": "2026-11-29T08:00:00Z", "labels": {"alertname": "NoTarget", "instance": "10.0.0.1:9100"}}
        ]});
        let jobs = webhook(&ev);
        assert_eq!(jobs.len(), 3);
        match &jobs[0].item {
            Item::Request(v) => {
                assert_eq!(v["diskId"], "d-bp1webapp0000dat01");
                assert_eq!(v["instanceId"], "i-bp1webapp00000001");
                assert_eq!(v["regionId"], "cn-hangzhou");
                assert_eq!(v["reason"], "alertmanager alert DiskErrors: fs errors");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(jobs[0].trigger.id, "f1|2026-11-29T08:00:00Z");
        assert_eq!(
            jobs[0].trigger.time.map(|t| t.timestamp()),
            Some(1_795_939_200)
        );
        assert!(matches!(jobs[1].item, Item::Ignored(_)));
        assert!(
            matches!(jobs[2].item, Item::Invalid(_)),
            "a host:port instance label is not an instance ID"
        );
    }
}
