//! The rollback request: parsed from JSON (camelCase, or the API's PascalCase for the IDs),
//! validated field by field, and turned into a value that cannot be malformed. Anything missing,
//! malformed, contradictory or unknown is an [`InvalidRequest`] that names the field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ids::{DiskId, InstanceId, RegionId, SnapshotGroupId, SnapshotId};

/// A request that cannot be run, and the field that says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRequest {
    pub field: String,
    pub message: String,
}

impl InvalidRequest {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRequest {
    #[serde(default, alias = "RegionId")]
    region_id: Option<String>,
    #[serde(default, alias = "DiskId")]
    disk_id: Option<String>,
    #[serde(default, alias = "InstanceId")]
    instance_id: Option<String>,
    #[serde(default, alias = "SnapshotId")]
    snapshot_id: Option<String>,
    #[serde(default)]
    snapshot: Option<RawSelector>,
    /// `requestId` is what many senders call the ID of the rollback they ask for.
    #[serde(default, alias = "requestId")]
    idempotency_key: Option<String>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    force_stop: Option<bool>,
    #[serde(default)]
    start_after_reset: Option<bool>,
    /// Take an undo snapshot of the disk before the reset.
    #[serde(default)]
    preserve_current: Option<bool>,
    #[serde(default)]
    reason: Option<String>,
    /// When the request was made (RFC 3339), for a request whose trigger carries no time (a
    /// direct invoke, an HTTP body): what a redelivery is told apart by (`superseded`).
    #[serde(default)]
    requested_at: Option<String>,
    /// Check the service after the start (`crate::verify`).
    #[serde(default)]
    verify: Option<Value>,
    /// `report` (default) or `undo`.
    #[serde(default)]
    on_verify_failure: Option<crate::verify::OnVerifyFailure>,
    /// The whole instance: `"all"` its disks, or a list of its disk IDs (`instanceId` needed).
    #[serde(default)]
    disks: Option<Value>,
    /// A snapshot-consistent group (`ssg-…`): every disk to its snapshot in it.
    #[serde(default, alias = "SnapshotGroupId")]
    snapshot_group_id: Option<String>,
    /// With a rule per disk: the most the snapshots chosen may lie apart, in seconds.
    #[serde(default)]
    max_skew_seconds: Option<u64>,
    /// The instance may run on disks from two points in time when one disk cannot be reset.
    #[serde(default)]
    allow_partial: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    #[serde(default)]
    tag: Option<RawTag>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    before: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    key: String,
    #[serde(default)]
    value: Option<String>,
}

/// Which snapshot to roll back to. Only snapshots of the target disk are ever candidates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotChoice {
    /// This one.
    Id(SnapshotId),
    /// The newest usable snapshot (`accomplished`, or being created with instant access) of the disk that matches every filter given and was
    /// created before `before` (default: the trigger time).
    Newest {
        tag: Option<(String, Option<String>)>,
        name: Option<String>,
        before: Option<DateTime<Utc>>,
    },
}

/// Which disks of the instance a whole-instance request rolls back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DiskSet {
    /// Every disk attached to the instance.
    All,
    /// These, each attached to the instance.
    List(Vec<DiskId>),
}

/// A whole-instance request (`disks`): one stop, every disk reset to one point in time, one start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceScope {
    pub disks: DiskSet,
    /// Every disk to its snapshot in this group; otherwise the request's rule per disk.
    pub snapshot_group: Option<SnapshotGroupId>,
    /// With a rule per disk: the most the chosen snapshots' creation times may lie apart.
    pub max_skew_secs: u64,
    /// One disk's reset failing for good still lets the instance start on the others.
    pub allow_partial: bool,
}

/// The skew allowed between the snapshots a rule picks for the disks of one instance when the
/// request names none: snapshot policies start every disk's snapshot within the same minute.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 300;
/// The most disks one instance request names (a snapshot-consistent group holds 16).
pub const MAX_DISKS: usize = 16;

/// What set the request off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trigger {
    /// `direct`, `sqs`, `alertmanager`, …
    pub kind: String,
    /// The event's own ID, when it has one.
    pub id: String,
    /// When the triggering event happened (an alert's start); `None` means now.
    #[serde(skip)]
    pub time: Option<DateTime<Utc>>,
    /// What derives the idempotency key of a request that names none, when it is not `id`:
    /// a signed HTTP request's signed timestamp and body, while `id` stays the request's own
    /// ID for the result.
    #[serde(skip)]
    pub key_basis: Option<String>,
}

impl Trigger {
    pub fn direct() -> Self {
        Self {
            kind: "direct".into(),
            key_basis: None,
            id: String::new(),
            time: None,
        }
    }
}

/// The idempotency key: one rollback per key, ever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.chars().count() > 256 {
            return Err("must hold 1 to 256 characters".into());
        }
        if raw.chars().any(char::is_control) {
            return Err("must not hold control characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// A key derived from content: the same content always yields the same key.
    pub fn derived(prefix: &str, content: &str) -> Self {
        Self(format!(
            "{prefix}-{}",
            &hex(&Sha256::digest(content.as_bytes()))[..32]
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256 of the key: what the ledger stores (tags hold 128 characters at most).
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A valid rollback request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRequest {
    pub region: RegionId,
    /// The disk; `None` means the instance's system disk.
    pub disk: Option<DiskId>,
    pub instance: Option<InstanceId>,
    pub snapshot: SnapshotChoice,
    pub key: IdempotencyKey,
    pub dry_run: bool,
    pub force_stop: bool,
    /// `None`: bring the instance back to the power state it had before.
    pub start_after_reset: Option<bool>,
    /// `None`: as `ECS_ROLLBACK_PRESERVE_CURRENT` says.
    pub preserve_current: Option<bool>,
    pub reason: Option<String>,
    pub trigger: Trigger,
    /// The service check after the start; `None`: the deployment's (`ECS_ROLLBACK_VERIFY`), if any.
    pub verify: Option<crate::verify::VerifySpec>,
    /// `None`: the deployment's, else `report`.
    pub on_verify_failure: Option<crate::verify::OnVerifyFailure>,
    /// A whole-instance request (`disks`); `None`: one disk.
    pub scope: Option<InstanceScope>,
}

impl RollbackRequest {
    /// The key of one disk's run in a whole-instance request.
    pub fn member_key(&self, disk: &str) -> IdempotencyKey {
        IdempotencyKey(format!("{}#{disk}", self.key.as_str()))
    }

    /// One disk's share of a whole-instance request: that disk, that snapshot, a key of its own
    /// derived from the request's (the disk's ledger keeps its promises per key).
    /// `snapshot` `None`: the disk's record names it (a request begun).
    pub fn member(&self, disk: DiskId, snapshot: Option<SnapshotId>) -> RollbackRequest {
        let key = self.member_key(disk.as_str());
        RollbackRequest {
            disk: Some(disk),
            snapshot: match snapshot {
                Some(s) => SnapshotChoice::Id(s),
                None => self.snapshot.clone(),
            },
            key,
            scope: None,
            ..self.clone()
        }
    }
}

const MAX_REASON: usize = 512;

fn parse_id<T>(
    field: &str,
    raw: Option<String>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, InvalidRequest> {
    raw.map(|r| parse(&r).map_err(|m| InvalidRequest::new(field, m)))
        .transpose()
}

/// Parses the direct form. `default_region` is `ALIBABA_CLOUD_REGION_ID`; `trigger` says where
/// the request came from (its key derives the idempotency key when the request names none).
pub fn parse(
    value: &Value,
    default_region: Option<&str>,
    trigger: Trigger,
) -> Result<RollbackRequest, InvalidRequest> {
    if !value.is_object() {
        return Err(InvalidRequest::new(
            "$",
            "a rollback request is a JSON object",
        ));
    }
    let raw: RawRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names an unknown or duplicate field in its message; the path is its parent.
        let field = field_in(&inner).unwrap_or(path);
        InvalidRequest::new(field, inner)
    })?;
    let region_raw = raw
        .region_id
        .or_else(|| default_region.map(str::to_owned))
        .ok_or_else(|| {
            InvalidRequest::new(
                "regionId",
                "missing, and ALIBABA_CLOUD_REGION_ID is not set",
            )
        })?;
    let region = RegionId::parse(&region_raw).map_err(|m| InvalidRequest::new("regionId", m))?;
    let disk = parse_id("diskId", raw.disk_id, DiskId::parse)?;
    let instance = parse_id("instanceId", raw.instance_id, InstanceId::parse)?;
    let scope = parse_scope(
        &raw.disks,
        raw.snapshot_group_id,
        raw.max_skew_seconds,
        raw.allow_partial,
    )?;
    if scope.is_some() {
        if instance.is_none() {
            return Err(InvalidRequest::new(
                "instanceId",
                "a request with disks names the instance they belong to",
            ));
        }
        if disk.is_some() {
            return Err(InvalidRequest::new(
                "diskId",
                "give diskId (one disk) or disks (the instance), not both",
            ));
        }
        if raw.snapshot_id.is_some() {
            return Err(InvalidRequest::new(
                "snapshotId",
                "a snapshot belongs to one disk: with disks, give snapshotGroupId or a snapshot rule",
            ));
        }
        if raw.verify.is_some() || raw.on_verify_failure.is_some() {
            return Err(InvalidRequest::new(
                "verify",
                "a whole-instance request is not checked by verify yet (the check and its undo are per disk): send the check as its own request, or roll back one disk",
            ));
        }
        if scope.as_ref().is_some_and(|s| s.snapshot_group.is_some()) && raw.snapshot.is_some() {
            return Err(InvalidRequest::new(
                "snapshot",
                "give snapshotGroupId or snapshot, not both",
            ));
        }
    }
    if disk.is_none() && instance.is_none() {
        return Err(InvalidRequest::new(
            "diskId",
            "name a diskId, or an instanceId (its system disk)",
        ));
    }
    let snapshot = match (raw.snapshot_id, raw.snapshot) {
        (Some(_), Some(_)) => {
            return Err(InvalidRequest::new(
                "snapshot",
                "give snapshotId or snapshot, not both",
            ))
        }
        (Some(id), None) => SnapshotChoice::Id(
            SnapshotId::parse(&id).map_err(|m| InvalidRequest::new("snapshotId", m))?,
        ),
        (None, Some(sel)) => {
            if sel.tag.is_none() && sel.name.is_none() && sel.before.is_none() {
                return Err(InvalidRequest::new("snapshot", "needs tag, name or before"));
            }
            let tag = match sel.tag {
                Some(t) if t.key.is_empty() || t.key.chars().count() > 128 => {
                    return Err(InvalidRequest::new(
                        "snapshot.tag.key",
                        "1 to 128 characters",
                    ))
                }
                Some(t) => Some((t.key, t.value)),
                None => None,
            };
            if sel
                .name
                .as_ref()
                .is_some_and(|n| n.is_empty() || n.chars().count() > 128)
            {
                return Err(InvalidRequest::new("snapshot.name", "1 to 128 characters"));
            }
            let before = sel
                .before
                .map(|b| {
                    DateTime::parse_from_rfc3339(&b)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| {
                            InvalidRequest::new("snapshot.before", format!("not RFC 3339: {e}"))
                        })
                })
                .transpose()?;
            SnapshotChoice::Newest {
                tag,
                name: sel.name,
                before,
            }
        }
        (None, None) => SnapshotChoice::Newest {
            tag: None,
            name: None,
            before: None,
        },
    };
    if let Some(r) = &raw.reason {
        if r.chars().count() > MAX_REASON {
            return Err(InvalidRequest::new(
                "reason",
                format!("at most {MAX_REASON} characters"),
            ));
        }
    }
    let mut trigger = trigger;
    if let Some(at) = &raw.requested_at {
        let at = DateTime::parse_from_rfc3339(at)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| InvalidRequest::new("requestedAt", format!("not RFC 3339: {e}")))?;
        // The event's own time, when it has one, is the better witness.
        trigger.time.get_or_insert(at);
    }
    let key = match raw.idempotency_key {
        Some(k) => {
            IdempotencyKey::parse(&k).map_err(|m| InvalidRequest::new("idempotencyKey", m))?
        }
        None => match &trigger.key_basis {
            Some(basis) => IdempotencyKey::derived(&trigger.kind, basis),
            None if !trigger.id.is_empty() => IdempotencyKey::derived(&trigger.kind, &trigger.id),
            // No key and no event ID: the request's own content is the key (serde_json writes
            // object keys sorted, so equal requests give equal text).
            None => IdempotencyKey::derived(&trigger.kind, &value.to_string()),
        },
    };
    let verify = raw
        .verify
        .as_ref()
        .map(crate::verify::parse)
        .transpose()
        .map_err(|e| InvalidRequest::new(e.field, e.message))?;
    // The undo rolls back to the snapshot this run takes before its reset: without it there is
    // nothing to go back to.
    if raw.on_verify_failure == Some(crate::verify::OnVerifyFailure::Undo)
        && raw.preserve_current != Some(true)
    {
        return Err(InvalidRequest::new(
            "onVerifyFailure",
            "undo needs \"preserveCurrent\": true (the undo snapshot this run takes before its reset)",
        ));
    }
    Ok(RollbackRequest {
        scope,
        verify,
        on_verify_failure: raw.on_verify_failure,
        region,
        disk,
        instance,
        snapshot,
        key,
        dry_run: raw.dry_run.unwrap_or(false),
        force_stop: raw.force_stop.unwrap_or(false),
        start_after_reset: raw.start_after_reset,
        preserve_current: raw.preserve_current,
        reason: raw.reason,
        trigger,
    })
}

/// The whole-instance fields: `disks` with the instance, or none of them.
fn parse_scope(
    disks: &Option<Value>,
    group: Option<String>,
    skew: Option<u64>,
    allow_partial: Option<bool>,
) -> Result<Option<InstanceScope>, InvalidRequest> {
    let Some(disks) = disks else {
        for (field, given) in [
            ("snapshotGroupId", group.is_some()),
            ("maxSkewSeconds", skew.is_some()),
            ("allowPartial", allow_partial.is_some()),
        ] {
            if given {
                return Err(InvalidRequest::new(
                    field,
                    "applies to a whole-instance request: add \"disks\": \"all\" or a list of disk IDs",
                ));
            }
        }
        return Ok(None);
    };
    let set = match disks {
        Value::String(s) if s == "all" => DiskSet::All,
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_DISKS {
                return Err(InvalidRequest::new(
                    "disks",
                    format!("1 to {MAX_DISKS} disk IDs"),
                ));
            }
            let mut ids = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = format!("disks[{i}]");
                let raw = item
                    .as_str()
                    .ok_or_else(|| InvalidRequest::new(&field, "a disk ID string"))?;
                let id = DiskId::parse(raw).map_err(|m| InvalidRequest::new(&field, m))?;
                if ids.contains(&id) {
                    return Err(InvalidRequest::new(&field, "named twice"));
                }
                ids.push(id);
            }
            DiskSet::List(ids)
        }
        _ => {
            return Err(InvalidRequest::new(
                "disks",
                "\"all\", or a list of the instance's disk IDs",
            ))
        }
    };
    let snapshot_group = group
        .map(|g| SnapshotGroupId::parse(&g).map_err(|m| InvalidRequest::new("snapshotGroupId", m)))
        .transpose()?;
    if skew.is_some() && snapshot_group.is_some() {
        return Err(InvalidRequest::new(
            "maxSkewSeconds",
            "a snapshot-consistent group is one point in time: no skew to allow",
        ));
    }
    let max_skew_secs = skew.unwrap_or(DEFAULT_MAX_SKEW_SECS);
    if max_skew_secs > 86_400 {
        return Err(InvalidRequest::new(
            "maxSkewSeconds",
            "at most 86400 (a day): snapshots further apart are not one point in time",
        ));
    }
    Ok(Some(InstanceScope {
        disks: set,
        snapshot_group,
        max_skew_secs,
        allow_partial: allow_partial.unwrap_or(false),
    }))
}

/// The field named in serde's "unknown field `x`" or "duplicate field `x`" message.
pub(crate) fn field_in(message: &str) -> Option<String> {
    for marker in ["unknown field `", "duplicate field `", "missing field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> RollbackRequest {
        parse(&v, Some("cn-hangzhou"), Trigger::direct()).expect("valid")
    }

    fn field(v: Value) -> String {
        parse(&v, Some("cn-hangzhou"), Trigger::direct())
            .expect_err("invalid")
            .field
    }

    #[test]
    fn camel_and_pascal_case() {
        let a = ok(json!({"diskId": "d-bp1webapp0000sys01", "snapshotId": "s-bp1webapp0sys00001"}));
        let b = ok(
            json!({"DiskId": "d-bp1webapp0000sys01", "SnapshotId": "s-bp1webapp0sys00001", "RegionId": "cn-hangzhou"}),
        );
        assert_eq!(a.disk, b.disk);
        assert_eq!(a.snapshot, b.snapshot);
        assert_eq!(a.region.as_str(), "cn-hangzhou");
    }

    #[test]
    fn instance_only_means_its_system_disk() {
        let r = ok(json!({"instanceId": "i-bp1webapp00000001"}));
        assert!(r.disk.is_none());
        assert_eq!(
            r.snapshot,
            SnapshotChoice::Newest {
                tag: None,
                name: None,
                before: None
            }
        );
        assert_eq!(r.start_after_reset, None);
        assert!(!r.dry_run && !r.force_stop);
    }

    #[test]
    fn selectors() {
        let r = ok(json!({"diskId": "d-bp1webapp0000sys01",
            "snapshot": {"tag": {"key": "purpose", "value": "pre-release"}, "before": "2026-01-01T00:00:00+08:00"}}));
        match r.snapshot {
            SnapshotChoice::Newest { tag, before, .. } => {
                assert_eq!(tag, Some(("purpose".into(), Some("pre-release".into()))));
                assert_eq!(
                    before.map(|b| b.to_rfc3339()).as_deref(),
                    Some("2025-12-31T16:00:00+00:00")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_rejection_names_its_field() {
        let d = "d-bp1webapp0000sys01";
        assert_eq!(field(json!({})), "diskId");
        assert_eq!(field(json!([])), "$");
        assert_eq!(field(json!({"diskId": "x-1"})), "diskId");
        assert_eq!(
            field(json!({"diskId": d, "instanceId": "i-\"; DROP"})),
            "instanceId"
        );
        assert_eq!(
            field(json!({"diskId": d, "snapshotId": "s-../../x"})),
            "snapshotId"
        );
        assert_eq!(
            field(json!({"diskId": d, "regionId": "Hangzhou"})),
            "regionId"
        );
        assert_eq!(field(json!({"diskId": d, "bogus": 1})), "bogus");
        assert_eq!(field(json!({"diskId": d, "dryRun": "yes"})), "dryRun");
        assert_eq!(field(json!({"diskId": 7})), "diskId");
        assert_eq!(
            field(
                json!({"diskId": d, "snapshotId": "s-bp1webapp0sys00001", "snapshot": {"name": "x"}})
            ),
            "snapshot"
        );
        assert_eq!(field(json!({"diskId": d, "snapshot": {}})), "snapshot");
        assert_eq!(field(json!({"diskId": d, "snapshot": {"when": 1}})), "when");
        assert_eq!(
            field(json!({"diskId": d, "snapshot": {"before": "yesterday"}})),
            "snapshot.before"
        );
        assert_eq!(
            field(json!({"diskId": d, "idempotencyKey": ""})),
            "idempotencyKey"
        );
        assert_eq!(
            field(json!({"diskId": d, "reason": "x".repeat(600)})),
            "reason"
        );
        assert_eq!(field(json!({"diskid": d})), "diskid");
        assert_eq!(
            field(json!({"diskId": d, "verify": {"probe": {"http": "http://10.0.0.9/health"}}})),
            "verify.probe.http"
        );
        assert_eq!(
            field(
                json!({"diskId": d, "verify": {"command": {"content": "true"}}, "onVerifyFailure": "undo"})
            ),
            "onVerifyFailure"
        );
        assert_eq!(
            field(json!({"diskId": d, "onVerifyFailure": "retry"})),
            "onVerifyFailure"
        );
        let no_region =
            parse(&json!({"diskId": d}), None, Trigger::direct()).expect_err("no region");
        assert_eq!(no_region.field, "regionId");
    }

    #[test]
    fn whole_instance_fields() {
        let i = "i-bp1dbserv00000005";
        let r = ok(
            json!({"instanceId": i, "disks": "all", "snapshotGroupId": "ssg-bp1dbserv0000000001"}),
        );
        let scope = r.scope.clone().expect("whole");
        assert_eq!(scope.disks, DiskSet::All);
        assert!(!scope.allow_partial);
        assert_eq!(scope.max_skew_secs, DEFAULT_MAX_SKEW_SECS);
        let m = r.member(
            DiskId::parse("d-bp1dbserv0000dat05").expect("id"),
            Some(SnapshotId::parse("s-bp1dbserv0dat00001").expect("id")),
        );
        assert_eq!(
            m.key.as_str(),
            format!("{}#d-bp1dbserv0000dat05", r.key.as_str())
        );
        assert!(m.scope.is_none());
        let r = ok(
            json!({"instanceId": i, "disks": ["d-bp1dbserv0000sys05"], "maxSkewSeconds": 60, "allowPartial": true}),
        );
        let scope = r.scope.expect("whole");
        assert_eq!(scope.max_skew_secs, 60);
        assert!(scope.allow_partial);
        let d = "d-bp1dbserv0000sys05";
        for (v, f) in [
            (json!({"disks": "all"}), "instanceId"),
            (
                json!({"instanceId": i, "diskId": d, "disks": "all"}),
                "diskId",
            ),
            (
                json!({"instanceId": i, "disks": "all", "snapshotId": "s-bp1dbserv0sys00001"}),
                "snapshotId",
            ),
            (json!({"instanceId": i, "disks": "some"}), "disks"),
            (json!({"instanceId": i, "disks": []}), "disks"),
            (json!({"instanceId": i, "disks": [d, d]}), "disks[1]"),
            (json!({"instanceId": i, "disks": ["x-1"]}), "disks[0]"),
            (
                json!({"instanceId": i, "disks": "all", "snapshotGroupId": "sg-1"}),
                "snapshotGroupId",
            ),
            (
                json!({"instanceId": i, "disks": "all", "snapshotGroupId": "ssg-bp1dbserv0000000001", "snapshot": {"name": "x"}}),
                "snapshot",
            ),
            (
                json!({"instanceId": i, "disks": "all", "snapshotGroupId": "ssg-bp1dbserv0000000001", "maxSkewSeconds": 5}),
                "maxSkewSeconds",
            ),
            (
                json!({"instanceId": i, "disks": "all", "maxSkewSeconds": 100000}),
                "maxSkewSeconds",
            ),
            (
                json!({"instanceId": i, "snapshotGroupId": "ssg-bp1dbserv0000000001"}),
                "snapshotGroupId",
            ),
            (
                json!({"instanceId": i, "allowPartial": true}),
                "allowPartial",
            ),
            (
                json!({"instanceId": i, "disks": "all", "verify": {"command": {"content": "true"}}}),
                "verify",
            ),
        ] {
            assert_eq!(field(v.clone()), f, "{v}");
        }
    }

    #[test]
    fn duplicate_field_through_alias_is_rejected() {
        let text = r#"{"diskId": "d-bp1webapp0000sys01", "DiskId": "d-bp1webapp0000sys02"}"#;
        let v: Value = serde_json::from_str(text).expect("json");
        // serde_json keeps both keys in the map; the struct sees two values for one field.
        assert_eq!(field(v), "diskId");
    }

    #[test]
    fn the_same_request_derives_the_same_key() {
        let a = ok(json!({"diskId": "d-bp1webapp0000sys01", "reason": "x"}));
        let b = ok(json!({"reason": "x", "diskId": "d-bp1webapp0000sys01"}));
        let c = ok(json!({"diskId": "d-bp1webapp0000sys01", "reason": "y"}));
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert!(a.key.as_str().starts_with("direct-"));
        let t = Trigger {
            kind: "sqs".into(),
            key_basis: None,
            id: "msg-1".into(),
            time: None,
        };
        let k1 = parse(
            &json!({"diskId": "d-bp1webapp0000sys01"}),
            Some("cn-hangzhou"),
            t.clone(),
        )
        .expect("ok")
        .key;
        let k2 = parse(
            &json!({"diskId": "d-bp1webapp0000sys01", "reason": "other"}),
            Some("cn-hangzhou"),
            t,
        )
        .expect("ok")
        .key;
        assert_eq!(k1, k2, "an event ID keys the request");
        let explicit =
            ok(json!({"diskId": "d-bp1webapp0000sys01", "idempotencyKey": "incident-42"}));
        assert_eq!(explicit.key.as_str(), "incident-42");
    }
}
