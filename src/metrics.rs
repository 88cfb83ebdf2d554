//! Time to recovery as a metric: one CloudWatch Embedded Metric Format (EMF) document per
//! result event, printed by the front doors on stdout as a line of its own, so CloudWatch Logs
//! extracts the metrics from the function's log without any API call (and Function Compute's
//! log service, SLS, keeps the same line for its own queries).
//!
//! The document follows "Specification: Embedded metric format" (Amazon CloudWatch User Guide,
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>):
//! - the root is one JSON object, nothing before or after it on the line;
//! - `_aws` holds exactly `Timestamp` (milliseconds since the epoch, a number) and
//!   `CloudWatchMetrics`, an array of MetricDirective objects;
//! - a MetricDirective holds exactly `Namespace` (a string), `Dimensions` (an array of
//!   DimensionSets, each an array of at most 30 names of root members whose values are
//!   strings) and `Metrics` (at most 100 MetricDefinitions: `Name`, naming a root member whose
//!   value is a number, and `Unit`, one of CloudWatch's units);
//! - every member a directive names is present at the root (so a metric with no value this
//!   time, downtime when nothing was stopped, is left out of the directive as well);
//! - other root members are allowed and ignored by the extraction: they keep the result
//!   event's id, the disk and the error code on the line, for searching logs.
//!
//! Lambda sends what a function writes to stdout to CloudWatch Logs, which extracts EMF from
//! it ("Using the embedded metric format with Lambda",
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Lambda.html>);
//! with the JSON log format, a line that is already JSON is not encoded again.
//!
//! With the JSON log format, Lambda filters application log lines by their `level` member, and a
//! line whose `level` is missing or invalid, or whose `timestamp` is not RFC 3339, counts as
//! INFO ("Log-level filtering",
//! <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html>):
//! a function whose application log level is WARN would drop its metrics. So every document
//! carries `"level": "FATAL"`, the most severe level, which passes every setting, and an RFC 3339
//! `timestamp`; both are ordinary root members to the extraction.

use serde_json::{json, Map, Value};

use crate::report::Report;

/// The `level` of a metric line: the most severe of Lambda's application log levels, so no
/// setting filters it out.
pub const METRIC_LINE_LEVEL: &str = "FATAL";

/// The CloudWatch namespace of every metric this function publishes.
pub const NAMESPACE: &str = "EcsRollback";

/// Dimension names (root members of the document).
pub const DIM_OUTCOME: &str = "Outcome";
pub const DIM_TRIGGER: &str = "TriggerKind";

/// Metric names (root members of the document).
/// The run's `timings.totalMs`: from the moment this delivery took the request up to its end
/// (for a rollback that succeeded, the instance reads Running by then). Not counted from the
/// trigger's own time: a report does not carry it.
pub const RECOVERY_SECONDS: &str = "RecoverySeconds";
/// `timings.downtimeMs`: from StopInstance asked to the instance Running again; absent when
/// this run stopped nothing.
pub const DOWNTIME_SECONDS: &str = "DowntimeSeconds";
/// `timings.verifiedMs`: from StopInstance asked to the service verified by the `verify`
/// check (the time to verified recovery); absent without a check that passed.
pub const VERIFIED_RECOVERY_SECONDS: &str = "VerifiedRecoverySeconds";
/// The ECS calls of the run, when the report counts them (`Report::ecs_calls`).
pub const ECS_CALLS: &str = "EcsCalls";

/// Every unit CloudWatch accepts for a metric (the `Unit` of a MetricDefinition), from the
/// CloudWatch API reference's `MetricDatum.Unit`.
pub const CLOUDWATCH_UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

fn seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A dimension value: CloudWatch wants 1 to 1024 characters, not only spaces.
fn dimension_value(v: &str) -> String {
    let v = v.trim();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.chars().take(1024).collect()
    }
}

/// The EMF document of one result. `event_id` is the result event's `id` (the line and the
/// event can then be matched in the logs); `timestamp_ms` is when the result was made.
pub fn emf(report: &Report, event_id: &str, timestamp_ms: i64) -> Value {
    let mut root = Map::new();
    let mut metrics = vec![json!({"Name": RECOVERY_SECONDS, "Unit": "Seconds"})];
    root.insert(RECOVERY_SECONDS.into(), seconds(report.total_ms));
    if let Some(d) = report.downtime_ms {
        metrics.push(json!({"Name": DOWNTIME_SECONDS, "Unit": "Seconds"}));
        root.insert(DOWNTIME_SECONDS.into(), seconds(d));
    }
    if let Some(v) = report.verified_ms() {
        metrics.push(json!({"Name": VERIFIED_RECOVERY_SECONDS, "Unit": "Seconds"}));
        root.insert(VERIFIED_RECOVERY_SECONDS.into(), seconds(v));
    }
    if let Some(n) = report.ecs_calls() {
        metrics.push(json!({"Name": ECS_CALLS, "Unit": "Count"}));
        root.insert(ECS_CALLS.into(), json!(n));
    }
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                // Per outcome and trigger, and per outcome over every trigger (CloudWatch does
                // not add dimensions up by itself).
                "Dimensions": [[DIM_OUTCOME, DIM_TRIGGER], [DIM_OUTCOME]],
                "Metrics": metrics,
            }],
        }),
    );
    root.insert(DIM_OUTCOME.into(), json!(report.outcome.as_str()));
    root.insert(
        DIM_TRIGGER.into(),
        json!(dimension_value(&report.trigger_kind)),
    );
    // Not dimensions: for Lambda's log-level filtering (see the module's head).
    root.insert("level".into(), json!(METRIC_LINE_LEVEL));
    root.insert(
        "timestamp".into(),
        json!(chrono::DateTime::from_timestamp_millis(timestamp_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    // Not dimensions: for finding the result event the line belongs to.
    root.insert("resultEventId".into(), json!(event_id));
    if let Some(disk) = &report.target.disk_id {
        root.insert("diskId".into(), json!(disk));
    }
    if let Some(e) = &report.error {
        root.insert("errorCode".into(), json!(e.code));
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ErrorInfo, Outcome, Target};

    /// Lambda's application log levels, least severe first (the log-level filtering page).
    const LAMBDA_LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

    /// What Lambda does with a JSON line under an application log level: a missing or invalid
    /// `level`, or a `timestamp` that is not RFC 3339, makes it INFO; it is kept when its level
    /// is at least the setting's.
    fn lambda_keeps(line: &Value, setting: &str) -> bool {
        let rank = |l: &str| LAMBDA_LEVELS.iter().position(|x| x.eq_ignore_ascii_case(l));
        let ts_ok = line["timestamp"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok());
        let level = match (line["level"].as_str().and_then(rank), ts_ok) {
            (Some(r), true) => r,
            _ => 2,
        };
        rank(setting).is_some_and(|s| level >= s)
    }

    #[test]
    fn metric_lines_survive_every_application_log_level() {
        let doc = emf(&report(Some(1000)), "ev-1", 1_796_025_600_000);
        for setting in LAMBDA_LEVELS {
            assert!(lambda_keeps(&doc, setting), "dropped at {setting}: {doc}");
        }
        assert_eq!(doc["timestamp"], "2026-11-30T08:00:00.000Z");
        // The document is still one the specification accepts.
        check_against_the_spec(&doc);
    }

    fn report(downtime_ms: Option<u64>) -> Report {
        Report {
            outcome: Outcome::Succeeded,
            idempotency_key: Some("incident-4711".into()),
            trigger_kind: "sqs".into(),
            trigger_id: "m-1".into(),
            target: Target {
                disk_id: Some("d-bp1webapp0000sys01".into()),
                ..Default::default()
            },
            steps: vec![],
            error: None,
            total_ms: 43_600,
            downtime_ms,
            reason: None,
            warnings: vec![],
            ecs_calls: None,
            verification: None,
        }
    }

    /// Every rule of the specification a document can break, checked on `doc`; the names of
    /// the metrics it declares.
    fn check_against_the_spec(doc: &Value) -> Vec<String> {
        let root = doc.as_object().expect("the root is an object");
        let aws = root["_aws"].as_object().expect("_aws is an object");
        let mut keys: Vec<&str> = aws.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["CloudWatchMetrics", "Timestamp"],
            "_aws holds exactly these"
        );
        let ts = aws["Timestamp"].as_i64().expect("Timestamp is a number");
        assert!(ts > 1_500_000_000_000, "milliseconds since the epoch: {ts}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("an array");
        assert!(!directives.is_empty());
        let mut names = Vec::new();
        for d in directives {
            let d = d.as_object().expect("a MetricDirective is an object");
            let mut keys: Vec<&str> = d.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["Dimensions", "Metrics", "Namespace"], "{d:?}");
            let ns = d["Namespace"].as_str().expect("Namespace is a string");
            assert!((1..=1024).contains(&ns.len()));
            for set in d["Dimensions"].as_array().expect("Dimensions is an array") {
                let set = set.as_array().expect("a DimensionSet is an array");
                assert!(set.len() <= 30);
                for name in set {
                    let name = name.as_str().expect("a dimension name is a string");
                    let value = root
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("dimension {name} is a string member"));
                    assert!(
                        (1..=1024).contains(&value.chars().count()) && !value.trim().is_empty(),
                        "{name}={value:?}"
                    );
                }
            }
            let metrics = d["Metrics"].as_array().expect("Metrics is an array");
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for m in metrics {
                let m = m.as_object().expect("a MetricDefinition is an object");
                assert!(m
                    .keys()
                    .all(|k| ["Name", "Unit", "StorageResolution"].contains(&k.as_str())));
                let name = m["Name"].as_str().expect("Name is a string");
                assert!((1..=1024).contains(&name.len()));
                assert!(
                    root.get(name).is_some_and(Value::is_number),
                    "metric {name} is a number member"
                );
                if let Some(u) = m.get("Unit") {
                    assert!(
                        CLOUDWATCH_UNITS.contains(&u.as_str().expect("Unit is a string")),
                        "{u}"
                    );
                }
                names.push(name.to_owned());
            }
        }
        names
    }

    #[test]
    fn the_line_follows_the_emf_specification() {
        let doc = emf(&report(Some(33_000)), "ev-1", 1_796_025_600_000);
        let names = check_against_the_spec(&doc);
        assert_eq!(names, [RECOVERY_SECONDS, DOWNTIME_SECONDS]);
        assert_eq!(doc[RECOVERY_SECONDS], 43.6);
        assert_eq!(doc[DOWNTIME_SECONDS], 33.0);
        assert_eq!(doc[DIM_OUTCOME], "succeeded");
        assert_eq!(doc[DIM_TRIGGER], "sqs");
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(doc["_aws"]["Timestamp"], 1_796_025_600_000_i64);
        assert_eq!(doc["resultEventId"], "ev-1");
        // One line: the serialized document has no newline in it.
        assert!(!doc.to_string().contains('\n'));
    }

    #[test]
    fn a_verified_recovery_is_its_own_metric() {
        let mut r = report(Some(33_000));
        r.verification = Some(crate::report::Verification {
            result: "verified".into(),
            verified_ms: Some(41_500),
            ..Default::default()
        });
        let doc = emf(&r, "ev-3", 1_796_025_600_000);
        let names = check_against_the_spec(&doc);
        assert_eq!(
            names,
            [
                RECOVERY_SECONDS,
                DOWNTIME_SECONDS,
                VERIFIED_RECOVERY_SECONDS
            ]
        );
        assert_eq!(doc[VERIFIED_RECOVERY_SECONDS], 41.5);
        r.verification = Some(crate::report::Verification {
            result: "unhealthy".into(),
            ..Default::default()
        });
        r.outcome = Outcome::VerificationFailed;
        let doc = emf(&r, "ev-4", 1_796_025_600_000);
        assert!(doc.get(VERIFIED_RECOVERY_SECONDS).is_none());
        assert_eq!(doc[DIM_OUTCOME], "verification-failed");
    }

    #[test]
    fn a_metric_without_a_value_is_not_declared() {
        let mut r = report(None);
        r.outcome = Outcome::Rejected;
        r.trigger_kind = String::new();
        r.error = Some(ErrorInfo::new("NotOptedIn", "no", false));
        let doc = emf(&r, "ev-2", 1_796_025_600_000);
        let names = check_against_the_spec(&doc);
        assert_eq!(names, [RECOVERY_SECONDS], "no downtime, no ECS call count");
        assert!(doc.get(DOWNTIME_SECONDS).is_none());
        assert_eq!(
            doc[DIM_TRIGGER], "-",
            "an empty dimension value is not sent"
        );
        assert_eq!(doc["errorCode"], "NotOptedIn");
    }
}
