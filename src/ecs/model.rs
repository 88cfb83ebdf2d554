//! Response models of the ECS calls the rollback makes, shaped as the real API shapes them
//! (`shared/reference/ecs-responses.json`): PascalCase keys, lists inside wrapper objects
//! (`Instances.Instance[]`), wrappers that may be empty or absent, numbers that may come as
//! strings, and times in two precisions. Unknown fields are ignored.
//!
//! Note the two lock shapes: an instance has `OperationLocks.LockReason[]`, a disk has
//! `OperationLocks.OperationLock[]`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Parses the times ECS returns: `2019-11-11T08:35:29Z` and `2017-12-10T04:04Z`, and any
/// RFC 3339 form. An empty or unparseable string is `None`.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    for fmt in ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Formats a time as ECS writes it (seconds precision, `Z`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

mod lenient {
    //! Deserializers that accept what the API has been seen to send for one field.
    use super::*;
    use serde_json::Value;

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        })
    }

    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Some(Value::String(s)) => s.trim().trim_end_matches('%').parse().ok(),
            _ => None,
        })
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::Bool(b)) => Some(b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        })
    }

    /// A string that may be absent or empty: `None` then.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Some(string(d)?).filter(|s| !s.is_empty()))
    }

    /// A flag that may be absent or odd: `false` then.
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(boolean(d)?.unwrap_or(false))
    }

    pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::String(s)) => parse_time(&s),
            _ => None,
        })
    }

    /// A list that may be absent, `null`, or (seen in XML-to-JSON conversions) a single object.
    pub fn list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| serde_json::from_value(v).map_err(serde::de::Error::custom))
                .collect(),
            Some(other) => serde_json::from_value(other)
                .map(|one| vec![one])
                .map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    #[serde(default, deserialize_with = "lenient::string")]
    pub tag_key: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub tag_value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tags {
    #[serde(default, deserialize_with = "lenient::list")]
    pub tag: Vec<Tag>,
}

impl Tags {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.tag
            .iter()
            .find(|t| t.tag_key == key)
            .map(|t| t.tag_value.as_str())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LockReason {
    #[serde(default, deserialize_with = "lenient::string")]
    pub lock_reason: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub lock_msg: String,
}

/// `OperationLocks` of an instance: `{"LockReason": [{"LockReason": "security", ...}]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceLocks {
    #[serde(default, deserialize_with = "lenient::list")]
    pub lock_reason: Vec<LockReason>,
}

/// `OperationLocks` of a disk: `{"OperationLock": [{"LockReason": "financial"}]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskLocks {
    #[serde(default, deserialize_with = "lenient::list")]
    pub operation_lock: Vec<LockReason>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub region_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub zone_id: String,
    /// `Pending`, `Starting`, `Running`, `Stopping`, `Stopped`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub stopped_mode: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_charge_type: String,
    #[serde(default, deserialize_with = "lenient::time")]
    pub creation_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub expired_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub operation_locks: InstanceLocks,
    #[serde(default)]
    pub tags: Tags,
    /// `VpcAttributes.PrivateIpAddress.IpAddress[]` (a verify probe's `{privateIp}`).
    #[serde(default)]
    pub vpc_attributes: VpcAttributes,
    /// `PublicIpAddress.IpAddress[]` (a verify probe's `{publicIp}`, with `EipAddress`).
    #[serde(default)]
    pub public_ip_address: IpAddressList,
    #[serde(default)]
    pub eip_address: EipAddress,
}

/// `{"IpAddress": ["172.17.0.1"]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpAddressList {
    #[serde(default, deserialize_with = "lenient::list")]
    pub ip_address: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcAttributes {
    #[serde(default)]
    pub private_ip_address: IpAddressList,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EipAddress {
    #[serde(default, deserialize_with = "lenient::string")]
    pub ip_address: String,
}

impl Instance {
    /// The instance's own addresses: its first private IP, its public IP or else its EIP.
    pub fn own_addresses(&self) -> (Option<String>, Option<String>) {
        let first = |v: &[String]| v.iter().find(|s| !s.is_empty()).cloned();
        let private = first(&self.vpc_attributes.private_ip_address.ip_address);
        let public = first(&self.public_ip_address.ip_address)
            .or_else(|| Some(self.eip_address.ip_address.clone()).filter(|s| !s.is_empty()));
        (private, public)
    }

    /// Lock reasons, lower-cased (the API writes both `recycling` and `Recycling`).
    pub fn lock_reasons(&self) -> Vec<String> {
        self.operation_locks
            .lock_reason
            .iter()
            .map(|l| l.lock_reason.to_ascii_lowercase())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub device: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachments {
    #[serde(default, deserialize_with = "lenient::list")]
    pub attachment: Vec<Attachment>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Disk {
    #[serde(default, deserialize_with = "lenient::string")]
    pub disk_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub disk_name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub region_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub zone_id: String,
    /// `In_use`, `Available`, `Attaching`, `Detaching`, `Creating`, `ReIniting`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    /// `system` or `data`.
    #[serde(default, deserialize_with = "lenient::string", rename = "Type")]
    pub disk_type: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub category: String,
    #[serde(default, deserialize_with = "lenient::int")]
    pub size: Option<i64>,
    /// The instance the disk is attached to; empty when detached.
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub device: String,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub encrypted: Option<bool>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub source_snapshot_id: String,
    #[serde(default, deserialize_with = "lenient::time")]
    pub creation_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub attached_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub operation_locks: DiskLocks,
    #[serde(default)]
    pub attachments: Attachments,
    #[serde(default)]
    pub tags: Tags,
}

impl Disk {
    pub fn lock_reasons(&self) -> Vec<String> {
        self.operation_locks
            .operation_lock
            .iter()
            .map(|l| l.lock_reason.to_ascii_lowercase())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshot {
    #[serde(default, deserialize_with = "lenient::string")]
    pub snapshot_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub snapshot_name: String,
    /// `progressing`, `accomplished`, `failed`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    /// `"100%"`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub progress: String,
    #[serde(default, deserialize_with = "lenient::int")]
    pub remain_time: Option<i64>,
    /// Whether the snapshot can be used to create or roll back a disk.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub available: Option<bool>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub source_disk_id: String,
    /// A string in the model, a number in the doc sample.
    #[serde(default, deserialize_with = "lenient::int")]
    pub source_disk_size: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub source_disk_type: String,
    /// `user` (manual), `auto` (automatic policy) or `all`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub snapshot_type: String,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub encrypted: Option<bool>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub creation_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub tags: Tags,
}

impl Snapshot {
    /// Complete: `accomplished`, and `Available` not false.
    pub fn is_complete(&self) -> bool {
        self.status.eq_ignore_ascii_case("accomplished") && self.available != Some(false)
    }

    /// Usable as the target of a rollback: complete, or still `progressing` with `Available`
    /// true, which is instant access (ESSD-series disks by default: "the snapshot can be used
    /// to roll back … disks even when the snapshot is being created", ecs-evidence.md §3, C8).
    /// A `progressing` snapshot with `Available` false or absent is not.
    pub fn is_usable(&self) -> bool {
        self.is_complete()
            || (self.status.eq_ignore_ascii_case("progressing") && self.available == Some(true))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResource {
    #[serde(default, deserialize_with = "lenient::string")]
    pub resource_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub resource_type: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub tag_key: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub tag_value: String,
}

macro_rules! wrapper {
    ($name:ident, $field:ident, $item:ty) => {
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            #[serde(default, deserialize_with = "lenient::list")]
            pub $field: Vec<$item>,
        }
    };
}
wrapper!(InstanceList, instance, Instance);
wrapper!(DiskList, disk, Disk);
wrapper!(SnapshotList, snapshot, Snapshot);
wrapper!(TagResourceList, tag_resource, TagResource);

/// One page of a Describe call. `NextToken` empty or absent = last page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesPage {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub next_token: String,
    #[serde(default)]
    pub instances: InstanceList,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDisksPage {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub next_token: String,
    #[serde(default)]
    pub disks: DiskList,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotsPage {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub next_token: String,
    #[serde(default)]
    pub snapshots: SnapshotList,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagResourcesPage {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub next_token: String,
    #[serde(default)]
    pub tag_resources: TagResourceList,
}

/// CreateSnapshot's answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedSnapshot {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub snapshot_id: String,
}

/// One snapshot-consistent group (DescribeSnapshotGroups `SnapshotGroups.SnapshotGroup[]`,
/// shared/reference/ecs-snapshot-groups-and-cloud-assistant.md §2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotGroup {
    /// `ssg-…`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub snapshot_group_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub description: String,
    /// Set only when every snapshot of the group comes from this one instance.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub instance_id: Option<String>,
    /// `progressing`, `accomplished` or `failed`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(default, deserialize_with = "lenient::time")]
    pub creation_time: Option<DateTime<Utc>>,
    /// `Snapshots.Snapshot[]`: one per disk still in the group (a deleted one is not listed).
    #[serde(default, deserialize_with = "group_members")]
    pub snapshots: Vec<SnapshotGroupMember>,
}

impl SnapshotGroup {
    /// `accomplished`.
    pub fn is_accomplished(&self) -> bool {
        self.status.eq_ignore_ascii_case("accomplished")
    }

    /// The group's snapshot of `disk_id`, if it still holds one.
    pub fn member_of_disk(&self, disk_id: &str) -> Option<&SnapshotGroupMember> {
        self.snapshots.iter().find(|m| m.source_disk_id == disk_id)
    }
}

/// One snapshot of a group (`Snapshots.Snapshot[]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotGroupMember {
    #[serde(default, deserialize_with = "lenient::string")]
    pub snapshot_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub source_disk_id: String,
    /// `system` or `data`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub source_disk_type: String,
    /// `"100%"`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub progress: String,
    /// Usable to roll back or create a disk (absent: false).
    #[serde(default, deserialize_with = "lenient::flag")]
    pub available: bool,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub instant_access: Option<bool>,
    #[serde(default)]
    pub tags: Tags,
}

wrapper!(SnapshotGroupMemberList, snapshot, SnapshotGroupMember);
wrapper!(SnapshotGroupList, snapshot_group, SnapshotGroup);

/// `Snapshots` of a group: the wrapper, absent or `null` as no members.
fn group_members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SnapshotGroupMember>, D::Error> {
    Ok(Option::<SnapshotGroupMemberList>::deserialize(d)?
        .map(|l| l.snapshot)
        .unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotGroupsPage {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub next_token: String,
    #[serde(default)]
    pub snapshot_groups: SnapshotGroupList,
}

/// CreateSnapshotGroup's answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedSnapshotGroup {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub snapshot_group_id: String,
}

/// DescribeCloudAssistantStatus: `InstanceCloudAssistantStatusSet.InstanceCloudAssistantStatus[]`
/// (shared/reference/ecs-snapshot-groups-and-cloud-assistant.md §3).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloudAssistantStatusPage {
    #[serde(default)]
    pub instance_cloud_assistant_status_set: CloudAssistantStatusSet,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloudAssistantStatusSet {
    #[serde(default, deserialize_with = "lenient::list")]
    pub instance_cloud_assistant_status: Vec<CloudAssistantStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloudAssistantStatus {
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_id: String,
    /// `"true"` once the agent is up.
    #[serde(default, deserialize_with = "lenient::string")]
    pub cloud_assistant_status: String,
}

/// RunCommand's answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RanCommand {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub invoke_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub command_id: String,
}

/// DescribeInvocations: `Invocations.Invocation[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationsPage {
    #[serde(default)]
    pub invocations: InvocationList,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationList {
    #[serde(default, deserialize_with = "lenient::list")]
    pub invocation: Vec<Invocation>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Invocation {
    #[serde(default, deserialize_with = "lenient::string")]
    pub invoke_id: String,
    /// Pending, Scheduled, Running, Success, Failed, PartialFailed, Stopping, Stopped.
    #[serde(default, deserialize_with = "lenient::string")]
    pub invocation_status: String,
}

/// DescribeInvocationResults: `Invocation.InvocationResults.InvocationResult[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResultsPage {
    #[serde(default)]
    pub invocation: InvocationResultsBody,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResultsBody {
    #[serde(default)]
    pub invocation_results: InvocationResultList,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResultList {
    #[serde(default, deserialize_with = "lenient::list")]
    pub invocation_result: Vec<InvocationResult>,
}

/// One instance's result of an invocation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResult {
    #[serde(default, deserialize_with = "lenient::string")]
    pub invoke_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_id: String,
    /// Pending, Invalid, Aborted, Running, Success, Failed, Error, Timeout, Cancelled,
    /// Stopping, Terminated.
    #[serde(default, deserialize_with = "lenient::string")]
    pub invocation_status: String,
    #[serde(default, deserialize_with = "lenient::int")]
    pub exit_code: Option<i64>,
    /// Base64; bytes past 24 KB are counted in `Dropped`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub output: String,
    #[serde(default, deserialize_with = "lenient::int")]
    pub dropped: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub error_code: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub error_info: String,
}

/// The answer of a call that returns only its `RequestId` (Stop/Start/ResetDisk, Tag*).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ack {
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    /// The call was a dry run, and it passed (`DryRunOperation`): nothing changed.
    #[serde(skip)]
    pub dry_run: bool,
}

/// The error body: `{"RequestId","HostId","Code","Message","Recommend"}`; lower-case keys too.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default, alias = "requestId", alias = "RequestId")]
    pub request_id: Option<String>,
    #[serde(default, alias = "Code")]
    pub code: Option<String>,
    #[serde(default, alias = "Message")]
    pub message: Option<String>,
}

/// STS AssumeRole answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssumeRoleResponse {
    #[serde(default)]
    pub request_id: String,
    pub credentials: StsCredentials,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StsCredentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    pub expiration: String,
}

impl std::fmt::Debug for StsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("security_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn sample(name: &str) -> Value {
        let all: Value = serde_json::from_str(include_str!("../../tests/data/ecs-responses.json"))
            .expect("samples parse");
        all[name].clone()
    }

    #[test]
    fn describe_instances_sample() {
        let page: DescribeInstancesPage =
            serde_json::from_value(sample("DescribeInstancesResponseBody")).expect("parses");
        assert_eq!(page.request_id, "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E");
        assert_eq!(page.next_token, "");
        let i = &page.instances.instance[0];
        assert_eq!(i.instance_id, "i-bp67acfmxazb4p****");
        assert_eq!(i.status, "Stopped");
        assert_eq!(i.stopped_mode, "KeepCharging");
        assert!(i.lock_reasons().is_empty());
        assert_eq!(i.tags.get("rollback:enabled"), Some("true"));
        // Minute precision.
        assert_eq!(
            i.creation_time.map(format_time).as_deref(),
            Some("2017-12-10T04:04:00Z")
        );
        // The addresses a verify probe is templated on (the sample masks them), at the paths
        // the SDK model gives; no public IP and an empty EIP.
        assert_eq!(i.own_addresses(), (Some("172.17.**.**".to_owned()), None));
    }

    #[test]
    fn cloud_assistant_answers_as_the_sdk_models_shape_them() {
        // Shapes of the SDK models (DescribeCloudAssistantStatusResponse,
        // RunCommandResponse, DescribeInvocationsResponse, DescribeInvocationResultsResponse;
        // shared/reference/ecs-snapshot-groups-and-cloud-assistant.md §3), with the numbers
        // once as numbers and once as strings.
        let status: CloudAssistantStatusPage = serde_json::from_value(serde_json::json!({
            "RequestId": "r", "TotalCount": 1,
            "InstanceCloudAssistantStatusSet": {"InstanceCloudAssistantStatus": [
                {"InstanceId": "i-1", "CloudAssistantStatus": "true", "CloudAssistantVersion": "2.2.3.317"}]}
        }))
        .expect("parses");
        assert_eq!(
            status
                .instance_cloud_assistant_status_set
                .instance_cloud_assistant_status[0]
                .cloud_assistant_status,
            "true"
        );
        let ran: RanCommand = serde_json::from_value(
            serde_json::json!({"RequestId": "r", "CommandId": "c-1", "InvokeId": "t-1"}),
        )
        .expect("parses");
        assert_eq!(ran.invoke_id, "t-1");
        let inv: InvocationsPage = serde_json::from_value(serde_json::json!({
            "Invocations": {"Invocation": [{"InvokeId": "t-1", "InvocationStatus": "Running"}]}
        }))
        .expect("parses");
        assert_eq!(inv.invocations.invocation[0].invocation_status, "Running");
        for (exit, dropped) in [
            (serde_json::json!(1), serde_json::json!(0)),
            (serde_json::json!("1"), serde_json::json!("0")),
        ] {
            let page: InvocationResultsPage = serde_json::from_value(serde_json::json!({
                "Invocation": {"TotalCount": 1, "InvocationResults": {"InvocationResult": [{
                    "InvokeId": "t-1", "InstanceId": "i-1", "InvocationStatus": "Failed",
                    "ExitCode": exit, "Output": "U0VSVklDRV9ET1dO", "Dropped": dropped,
                    "ErrorCode": "ExitCodeNonzero"}]}}
            }))
            .expect("parses");
            let r = &page.invocation.invocation_results.invocation_result[0];
            assert_eq!((r.exit_code, r.dropped), (Some(1), Some(0)));
            assert_eq!(r.error_code, "ExitCodeNonzero");
        }
    }

    #[test]
    fn describe_disks_sample() {
        let page: DescribeDisksPage =
            serde_json::from_value(sample("DescribeDisksResponseBody")).expect("parses");
        let d = &page.disks.disk[0];
        assert_eq!(d.disk_id, "d-bp18um4r4f2fve24****");
        assert_eq!(d.status, "In_use");
        assert_eq!(d.disk_type, "system");
        assert_eq!(d.size, Some(40));
        assert_eq!(d.instance_id, "i-bp1j4i2jdf3owlhe****");
        assert_eq!(d.attachments.attachment[0].device, "/dev/xvda");
        assert!(d.lock_reasons().is_empty());
        assert_eq!(d.tags.get("TestKey"), Some("TestValue"));
        // Seconds precision; an empty DetachedTime is tolerated.
        assert_eq!(
            d.creation_time.map(format_time).as_deref(),
            Some("2019-11-11T08:35:29Z")
        );
    }

    #[test]
    fn describe_snapshots_sample() {
        let page: DescribeSnapshotsPage =
            serde_json::from_value(sample("DescribeSnapshotsResponseBody")).expect("parses");
        let s = &page.snapshots.snapshot[0];
        assert_eq!(s.snapshot_id, "s-bp67acfmxazb4p****");
        assert_eq!(s.source_disk_id, "d-bp67acfmxazb4ph****");
        assert_eq!(s.source_disk_size, Some(40));
        assert_eq!(s.progress, "100%");
        assert!(s.is_complete() && s.is_usable());
    }

    #[test]
    fn snapshot_groups_as_the_reference_shapes_them() {
        // ecs-snapshot-groups-and-cloud-assistant.md §2; numbers and flags as strings, a single
        // member as an object, a group without InstanceId or Snapshots.
        let page: DescribeSnapshotGroupsPage = serde_json::from_value(serde_json::json!({
            "RequestId": "R", "NextToken": "t-1",
            "SnapshotGroups": {"SnapshotGroup": [
                {"SnapshotGroupId": "ssg-bp1000000000000001", "Name": "db", "Description": "",
                 "InstanceId": "i-bp1000000000000001", "Status": "accomplished",
                 "CreationTime": "2026-11-27T02:00:00Z", "ProgressStatus": "finished",
                 "Snapshots": {"Snapshot": [
                    {"SnapshotId": "s-1", "SourceDiskId": "d-1", "SourceDiskType": "system",
                     "Progress": "100%", "Available": true, "InstantAccess": false,
                     "Tags": {"Tag": [{"TagKey": "k", "TagValue": "v"}]}},
                    {"SnapshotId": "s-2", "SourceDiskId": "d-2", "SourceDiskType": "data",
                     "Progress": "40%", "Available": "false"}]}},
                {"SnapshotGroupId": "ssg-bp1000000000000002", "InstanceId": "",
                 "Status": "progressing", "Snapshots": {"Snapshot": {"SnapshotId": "s-3"}}},
                {"SnapshotGroupId": "ssg-bp1000000000000003", "Snapshots": null}
            ]}
        }))
        .expect("parses");
        assert_eq!(page.next_token, "t-1");
        let [a, b, c] = &page.snapshot_groups.snapshot_group[..] else {
            panic!("three groups")
        };
        assert!(a.is_accomplished());
        assert_eq!(a.instance_id.as_deref(), Some("i-bp1000000000000001"));
        assert_eq!(
            a.creation_time.map(format_time).as_deref(),
            Some("2026-11-27T02:00:00Z")
        );
        let m = a.member_of_disk("d-1").expect("member");
        assert_eq!(
            (
                m.snapshot_id.as_str(),
                m.source_disk_type.as_str(),
                m.progress.as_str()
            ),
            ("s-1", "system", "100%")
        );
        assert!(m.available);
        assert_eq!(m.instant_access, Some(false));
        assert_eq!(m.tags.get("k"), Some("v"));
        let m2 = a.member_of_disk("d-2").expect("member");
        assert!(!m2.available && m2.instant_access.is_none());
        assert!(b.instance_id.is_none() && !b.is_accomplished());
        assert_eq!(b.snapshots.len(), 1);
        assert!(c.snapshots.is_empty() && c.status.is_empty());
        let made: CreatedSnapshotGroup =
            serde_json::from_str(r#"{"RequestId":"R","SnapshotGroupId":"ssg-1"}"#).expect("parses");
        assert_eq!(made.snapshot_group_id, "ssg-1");
    }

    #[test]
    fn list_tag_resources_and_acks() {
        let page: ListTagResourcesPage =
            serde_json::from_value(sample("ListTagResourcesResponseBody")).expect("parses");
        assert_eq!(
            page.tag_resources.tag_resource[0].tag_key,
            "rollback:enabled"
        );
        for name in [
            "ResetDiskResponseBody",
            "StopInstanceResponseBody",
            "StartInstanceResponseBody",
            "TagResourcesResponseBody",
        ] {
            let ack: Ack = serde_json::from_value(sample(name)).expect("parses");
            assert!(!ack.request_id.is_empty(), "{name}");
        }
    }

    #[test]
    fn the_two_lock_shapes() {
        let i: Instance = serde_json::from_str(
            r#"{"InstanceId":"i-1","OperationLocks":{"LockReason":[{"LockReason":"Security","LockMsg":"x"}]}}"#,
        )
        .expect("parses");
        assert_eq!(i.lock_reasons(), vec!["security"]);
        let d: Disk = serde_json::from_str(
            r#"{"DiskId":"d-1","OperationLocks":{"OperationLock":[{"LockReason":"financial"}]}}"#,
        )
        .expect("parses");
        assert_eq!(d.lock_reasons(), vec!["financial"]);
    }

    #[test]
    fn tolerant_of_absent_and_odd_values() {
        let s: Snapshot = serde_json::from_str(
            r#"{"SnapshotId":"s-1","SourceDiskSize":40,"Available":"true","Status":"accomplished",
                "RemainTime":"0","CreationTime":"2020-08-20T14:52Z","Tags":{},"Unknown":{"x":1}}"#,
        )
        .expect("parses");
        assert_eq!(s.source_disk_size, Some(40));
        assert_eq!(s.available, Some(true));
        assert_eq!(s.remain_time, Some(0));
        assert!(s.creation_time.is_some());
        let page: DescribeDisksPage =
            serde_json::from_str(r#"{"RequestId":"r","Disks":{}}"#).expect("parses");
        assert!(page.disks.disk.is_empty());
        let page: DescribeDisksPage =
            serde_json::from_str(r#"{"RequestId":"r","Disks":{"Disk":null}}"#).expect("parses");
        assert!(page.disks.disk.is_empty());
        let page: DescribeInstancesPage =
            serde_json::from_str(r#"{"RequestId":"r"}"#).expect("parses");
        assert!(page.instances.instance.is_empty());
        let not_ready: Snapshot =
            serde_json::from_str(r#"{"Status":"accomplished","Available":false}"#).expect("ok");
        assert!(!not_ready.is_complete() && !not_ready.is_usable());
        // Instant access (ecs-evidence.md §3, C8): usable while progressing only when Available.
        let instant: Snapshot = serde_json::from_str(
            r#"{"Status":"progressing","Available":true,"InstantAccess":true}"#,
        )
        .expect("ok");
        assert!(instant.is_usable() && !instant.is_complete());
        for body in [
            r#"{"Status":"progressing","Available":false}"#,
            r#"{"Status":"progressing"}"#,
            r#"{"Status":"failed","Available":true}"#,
        ] {
            let s: Snapshot = serde_json::from_str(body).expect("ok");
            assert!(!s.is_usable(), "{body}");
        }
    }

    #[test]
    fn error_body_either_case() {
        let e: ErrorBody = serde_json::from_str(
            r#"{"RequestId":"R","HostId":"ecs.aliyuncs.com","Code":"Throttling.User","Message":"m","Recommend":"u"}"#,
        )
        .expect("parses");
        assert_eq!(e.code.as_deref(), Some("Throttling.User"));
        assert_eq!(e.request_id.as_deref(), Some("R"));
        let e: ErrorBody =
            serde_json::from_str(r#"{"requestId":"R","code":"C","message":"m"}"#).expect("ok");
        assert_eq!(e.code.as_deref(), Some("C"));
    }

    #[test]
    fn sts_credentials_debug_is_redacted() {
        let c: StsCredentials = serde_json::from_str(
            r#"{"AccessKeyId":"STS.x","AccessKeySecret":"topsecret","SecurityToken":"tok","Expiration":"2015-04-09T11:52:19Z"}"#,
        )
        .expect("parses");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("topsecret") && !dbg.contains("tok\""));
    }
}
