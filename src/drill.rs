//! Recovery drills: a scheduled event names a set of targets, and each becomes an ordinary
//! rollback request whose idempotency key is derived from the drill's name, its scheduled time
//! and the target, so a redelivered schedule never drills a target twice.
//!
//! ```json
//! {"drill": {"name": "weekly", "regionId": "cn-hangzhou",
//!            "targets": [{"instanceId": "i-…"}, {"diskId": "d-…", "snapshot": {"tag": {"key": "golden"}}}],
//!            "snapshot": {"tag": {"key": "golden", "value": "true"}}, "startAfterReset": true,
//!            "concurrency": 10, "rtoSeconds": 600},
//!  "scheduledTime": "2026-11-29T03:00:00Z"}
//! ```
//! `regionId`, `snapshot`, `dryRun`, `forceStop` and `startAfterReset` at the drill level are
//! defaults for every target.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::request::{InvalidRequest, Trigger};

/// Targets in one drill, at most.
pub const MAX_TARGETS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DrillSpec {
    pub name: String,
    pub targets: Vec<Map<String, Value>>,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub snapshot: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    #[serde(default)]
    pub force_stop: Option<bool>,
    #[serde(default)]
    pub start_after_reset: Option<bool>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub rto_seconds: Option<u64>,
    #[serde(default)]
    pub scheduled_time: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// One drill, expanded into requests.
#[derive(Debug)]
pub struct Drill {
    pub name: String,
    pub concurrency: usize,
    pub requests: Vec<(Trigger, Value)>,
}

fn invalid(field: &str, m: impl Into<String>) -> InvalidRequest {
    InvalidRequest::new(format!("drill.{field}"), m)
}

/// Expands `spec`. `scheduled` is the event's scheduled time (it keys the drill's run);
/// a `scheduledTime` inside the spec wins.
pub fn expand(spec: &Value, scheduled: Option<&str>) -> Result<Drill, InvalidRequest> {
    let spec: DrillSpec = serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        invalid(&crate::request::field_in(&message).unwrap_or(path), message)
    })?;
    if spec.name.is_empty()
        || spec.name.len() > 64
        || !spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(invalid("name", "1 to 64 letters, digits, - _ ."));
    }
    if spec.targets.is_empty() || spec.targets.len() > MAX_TARGETS {
        return Err(invalid("targets", format!("1 to {MAX_TARGETS} targets")));
    }
    let when_raw = spec.scheduled_time.as_deref().or(scheduled).unwrap_or("");
    let when: Option<DateTime<Utc>> = if when_raw.is_empty() {
        None
    } else {
        Some(
            DateTime::parse_from_rfc3339(when_raw)
                .map_err(|e| invalid("scheduledTime", format!("not RFC 3339: {e}")))?
                .with_timezone(&Utc),
        )
    };
    // Without a scheduled time the drill runs once per day (keyed by date), never twice a day
    // from a redelivery.
    let slot = match when {
        Some(t) => t.to_rfc3339(),
        None => Utc::now().format("%Y-%m-%d").to_string(),
    };
    let mut requests = Vec::with_capacity(spec.targets.len());
    for (i, target) in spec.targets.iter().enumerate() {
        if target.contains_key("idempotencyKey") || target.contains_key("requestId") {
            return Err(invalid(
                &format!("targets[{i}].idempotencyKey"),
                "a drill target's key comes from the drill",
            ));
        }
        let mut req = target.clone();
        let defaults: [(&str, Option<Value>); 6] = [
            ("regionId", spec.region_id.clone().map(Value::String)),
            ("snapshot", spec.snapshot.clone()),
            ("dryRun", spec.dry_run.map(Value::Bool)),
            ("forceStop", spec.force_stop.map(Value::Bool)),
            ("startAfterReset", spec.start_after_reset.map(Value::Bool)),
            (
                "reason",
                Some(Value::String(
                    spec.reason
                        .clone()
                        .unwrap_or_else(|| format!("recovery drill {}", spec.name)),
                )),
            ),
        ];
        for (k, v) in defaults {
            if let Some(v) = v {
                let taken = req.contains_key(k)
                    || (k == "snapshot"
                        && (req.contains_key("snapshotId") || req.contains_key("SnapshotId")));
                if !taken {
                    req.insert(k.to_owned(), v);
                }
            }
        }
        let who = ["diskId", "DiskId", "instanceId", "InstanceId"]
            .iter()
            .find_map(|k| req.get(*k).and_then(Value::as_str))
            .unwrap_or("")
            .to_owned();
        requests.push((
            Trigger {
                kind: "drill".into(),
                id: format!("{}|{slot}|{who}", spec.name),
                time: when,
            },
            Value::Object(req),
        ));
    }
    Ok(Drill {
        name: spec.name,
        concurrency: spec.concurrency.unwrap_or(10).clamp(1, 50),
        requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_take_the_drill_defaults_and_a_stable_key() {
        let spec = json!({"name": "weekly", "regionId": "cn-hangzhou", "startAfterReset": true,
            "snapshot": {"tag": {"key": "golden"}},
            "targets": [{"instanceId": "i-bp1webapp00000001"}, {"diskId": "d-bp1batch00000sys02", "snapshotId": "s-bp1batch00sys00001"}]});
        let d = expand(&spec, Some("2026-11-29T03:00:00Z")).expect("valid");
        assert_eq!(d.requests.len(), 2);
        let (t0, r0) = &d.requests[0];
        assert_eq!(t0.kind, "drill");
        assert_eq!(
            t0.id,
            "weekly|2026-11-29T03:00:00+00:00|i-bp1webapp00000001"
        );
        assert_eq!(r0["snapshot"]["tag"]["key"], "golden");
        assert_eq!(r0["startAfterReset"], true);
        let (_, r1) = &d.requests[1];
        assert!(
            r1.get("snapshot").is_none(),
            "an explicit snapshotId wins over the default selector"
        );
        let again = expand(&spec, Some("2026-11-29T03:00:00Z")).expect("valid");
        assert_eq!(again.requests[0].0.id, t0.id);
    }

    #[test]
    fn rejections_name_the_field() {
        assert_eq!(
            expand(&json!({"name": "x", "targets": []}), None)
                .expect_err("empty")
                .field,
            "drill.targets"
        );
        assert_eq!(
            expand(&json!({"name": "x y", "targets": [{}]}), None)
                .expect_err("name")
                .field,
            "drill.name"
        );
        assert_eq!(
            expand(&json!({"name": "x", "targets": [{}], "when": 1}), None)
                .expect_err("unknown")
                .field,
            "drill.when"
        );
        assert_eq!(
            expand(&json!({"name": "x", "targets": [{"diskId": "d-bp1batch00000sys02", "idempotencyKey": "k"}]}), None).expect_err("key").field,
            "drill.targets[0].idempotencyKey"
        );
    }
}
