//! What a run reports: one CloudEvents 1.0 JSON object per request.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::ecs::EcsError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Rejected,
    Duplicate,
    /// Made before the disk's last completed rollback: touching nothing, so as not to undo it.
    Superseded,
    DryRun,
    Ignored,
    /// The policy proposes it: nothing changed; approving it (`approval.rs`) runs it once.
    Proposed,
    /// The rollback ran; the service check after it said unhealthy (`verify`).
    VerificationFailed,
    /// The rollback ran; the service could not be checked.
    Unverified,
    /// The check failed and the disk was rolled back to this run's undo snapshot.
    RolledBackToUndo,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
            Outcome::Duplicate => "duplicate",
            Outcome::Superseded => "superseded",
            Outcome::DryRun => "dry-run",
            Outcome::Ignored => "ignored",
            Outcome::Proposed => "proposed",
            Outcome::VerificationFailed => "verification-failed",
            Outcome::Unverified => "unverified",
            Outcome::RolledBackToUndo => "rolled-back-to-undo",
        }
    }

    /// Outcomes of a run that changed the disk and then did not end as asked (counted as
    /// failures, never as rejections).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Failed
                | Outcome::VerificationFailed
                | Outcome::Unverified
                | Outcome::RolledBackToUndo
        )
    }

    /// The outcome a key's recorded failure code (the run record's `f`) is reported as again:
    /// the service check's own outcomes keep theirs, any other code is `failed`.
    pub fn of_recorded_failure(code: &str) -> Self {
        match code {
            "VerificationFailed" => Outcome::VerificationFailed,
            "Unverified" => Outcome::Unverified,
            "RolledBackToUndo" => Outcome::RolledBackToUndo,
            _ => Outcome::Failed,
        }
    }

    /// Outcomes that mean "nothing is wrong" (the CLI exits 0 when every result is one).
    pub fn is_ok(self) -> bool {
        matches!(
            self,
            Outcome::Succeeded
                | Outcome::Duplicate
                | Outcome::Superseded
                | Outcome::DryRun
                | Outcome::Ignored
                | Outcome::Proposed
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    pub request_id: Option<String>,
}

impl ErrorInfo {
    pub fn new(code: impl AsRef<str>, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code: code.as_ref().to_owned(),
            message: message.into(),
            retryable,
            request_id: None,
        }
    }

    pub fn from_ecs(e: &EcsError) -> Self {
        Self {
            code: e.code_or_kind(),
            message: e.to_string(),
            retryable: e.can_pass(),
            request_id: e.request_id.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Done,
    Skipped,
    Failed,
    /// The call's DryRun passed.
    DryRun,
    /// Would run; cannot be dry-run in the current state.
    Planned,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    pub status: StepStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub region_id: Option<String>,
    pub instance_id: Option<String>,
    pub disk_id: Option<String>,
    pub snapshot_id: Option<String>,
    /// The snapshot's `Status` when it was chosen: `progressing` says the rollback used instant
    /// access (ESSD), to a snapshot ECS was still completing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_status: Option<String>,
    /// The undo snapshot (`preserveCurrent`): the disk as it was before the reset.
    pub undo_snapshot_id: Option<String>,
    /// A whole-instance request: each disk, its snapshot and what it holds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<DiskResult>>,
}

/// One disk of a whole-instance request, in its result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskResult {
    pub disk_id: String,
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_snapshot_id: Option<String>,
    /// The disk's own run's outcome.
    pub outcome: String,
    /// What the disk holds now: `rolled back to s-…`, `as before (not touched)`, `not rolled
    /// back (code)`.
    pub holds: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// What the service check after the start found (`verify`): each check made, and the time
/// from the stop to the service verified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// `verified`, `unhealthy` or `unverified`: the last round's (after an undo, the undo's).
    pub result: String,
    pub checks: Vec<Check>,
    /// From StopInstance to the moment the service was verified, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_ms: Option<u64>,
    /// The disk was rolled back to the undo snapshot after the first round failed.
    pub undone: bool,
}

/// One check of one round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// 1: the rollback; 2: the undo.
    pub round: u8,
    /// `command`, `http` or `tcp`.
    pub kind: String,
    /// The command's type, or the address probed.
    pub target: String,
    /// `healthy`, `unhealthy` or `could-not-verify`.
    pub verdict: String,
    pub detail: String,
    pub took_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_id: Option<String>,
    /// The last bytes of the command's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
}

/// The steps that take time on ECS, in the order they run: what a drill summary keeps of each
/// target and what the drill report draws as bars.
pub const TIMED_STEPS: [&str; 4] = ["stop", "preserve", "reset", "start"];

/// What a step is, without the disk a whole-instance result appends (`reset:d-…` is a `reset`).
pub fn step_kind(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// Everything one request's result event says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub idempotency_key: Option<String>,
    pub trigger_kind: String,
    pub trigger_id: String,
    pub target: Target,
    pub steps: Vec<Step>,
    pub error: Option<ErrorInfo>,
    pub total_ms: u64,
    pub downtime_ms: Option<u64>,
    pub reason: Option<String>,
    /// Things the reader must know: e.g. that the opt-in check was off.
    pub warnings: Vec<String>,
    /// The ECS requests this run sent (every attempt; `None` when nothing counted them).
    pub ecs_calls: Option<u64>,
    /// The service check (`verify`), when one was asked.
    pub verification: Option<Verification>,
}

impl Report {
    /// The ECS calls this run made, for the `EcsCalls` metric (`crate::metrics`).
    pub fn ecs_calls(&self) -> Option<u64> {
        self.ecs_calls
    }

    /// From the stop to the service verified, in ms (a `verify` that passed).
    pub fn verified_ms(&self) -> Option<u64> {
        self.verification.as_ref().and_then(|v| v.verified_ms)
    }

    /// The result as a CloudEvents 1.0 event (JSON format). The attributes follow the spec
    /// (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md>): `id`, `source`
    /// (a URI-reference), `specversion` and `type` are non-empty; `subject`, OPTIONAL, "MUST be
    /// a non-empty string" when present, so it is left out when there is no disk or instance
    /// (a request rejected before naming one); `time` is RFC 3339.
    pub fn to_cloud_event(&self) -> Value {
        let subject = self
            .target
            .disk_id
            .clone()
            .or_else(|| self.target.instance_id.clone())
            .filter(|s| !s.is_empty());
        let mut event = json!({
            "specversion": "1.0",
            "id": uuid::Uuid::new_v4().to_string(),
            "source": "ecs-rollback",
            "type": format!("ecs-rollback.{}", self.outcome.as_str()),
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "datacontenttype": "application/json",
            "data": {
                "outcome": self.outcome,
                "idempotencyKey": self.idempotency_key,
                "trigger": {"kind": self.trigger_kind, "id": self.trigger_id},
                "target": self.target,
                "steps": self.steps,
                "error": self.error,
                "timings": {"totalMs": self.total_ms, "downtimeMs": self.downtime_ms,
                            "verifiedMs": self.verified_ms()},
                "verification": self.verification,
                "reason": self.reason,
                "warnings": self.warnings,
            }
        });
        if let (Some(subject), Some(map)) = (subject, event.as_object_mut()) {
            map.insert("subject".into(), Value::String(subject));
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CloudEvents 1.0: every context attribute present is a non-empty string with a
    /// lowercase alphanumeric name; `subject` is left out rather than empty.
    #[test]
    fn cloud_event_attributes_follow_the_spec() {
        let r = Report {
            outcome: Outcome::Rejected,
            idempotency_key: None,
            trigger_kind: "direct".into(),
            trigger_id: String::new(),
            target: Target::default(),
            steps: vec![],
            error: None,
            total_ms: 0,
            downtime_ms: None,
            reason: None,
            warnings: vec![],
            ecs_calls: None,
            verification: None,
        };
        let e = r.to_cloud_event();
        let attrs = e.as_object().expect("an object");
        assert!(!attrs.contains_key("subject"), "no empty subject: {e}");
        for (name, value) in attrs {
            if name == "data" {
                continue;
            }
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{name}"
            );
            assert!(
                value.as_str().is_some_and(|v| !v.is_empty()),
                "{name} is a non-empty string: {value}"
            );
        }
        for required in ["id", "source", "specversion", "type"] {
            assert!(attrs.contains_key(required), "{required}");
        }
        assert!(chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap_or("")).is_ok());
    }

    #[test]
    fn cloud_event_shape() {
        let r = Report {
            outcome: Outcome::DryRun,
            idempotency_key: Some("k".into()),
            trigger_kind: "direct".into(),
            trigger_id: String::new(),
            target: Target {
                disk_id: Some("d-bp1webapp0000sys01".into()),
                ..Default::default()
            },
            steps: vec![],
            error: None,
            total_ms: 5,
            downtime_ms: None,
            reason: None,
            warnings: vec![],
            ecs_calls: None,
            verification: None,
        };
        let e = r.to_cloud_event();
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "ecs-rollback.dry-run");
        assert_eq!(e["subject"], "d-bp1webapp0000sys01");
        assert_eq!(e["data"]["outcome"], "dry-run");
        assert_eq!(e["data"]["error"], Value::Null);
        assert_eq!(e["data"]["timings"]["totalMs"], 5);
        for k in ["id", "source", "time", "datacontenttype"] {
            assert!(e[k].is_string(), "{k}");
        }
    }
}
