//! The typed calls: what each action sends (parameters, ID chunks, tag filters, pages) and
//! what it reads back.

use super::*;

/// `StoppedMode` of StopInstance. The rollback always uses `KeepCharging`: with `StopCharging`
/// the instance may not start again for lack of stock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoppedMode {
    #[default]
    KeepCharging,
    StopCharging,
}

impl StoppedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StoppedMode::KeepCharging => "KeepCharging",
            StoppedMode::StopCharging => "StopCharging",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct StopOptions {
    pub force_stop: bool,
    pub stopped_mode: StoppedMode,
    pub dry_run: bool,
}

/// Filters of DescribeInstances. With `dry_run`, a passing check comes back as an error whose
/// `is_dry_run_success()` is true.
#[derive(Clone, Debug, Default)]
pub struct InstanceQuery {
    pub ids: Vec<String>,
    pub status: Option<String>,
    pub tags: Vec<(String, String)>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Default)]
pub struct DiskQuery {
    pub ids: Vec<String>,
    pub instance_id: Option<String>,
    /// `system`, `data` or `all`.
    pub disk_type: Option<String>,
    pub tags: Vec<(String, String)>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Default)]
pub struct SnapshotQuery {
    pub ids: Vec<String>,
    pub disk_id: Option<String>,
    pub instance_id: Option<String>,
    /// `progressing`, `accomplished`, `failed` or `all`.
    pub status: Option<String>,
    pub tags: Vec<(String, String)>,
    pub dry_run: bool,
}

/// What RunCommand runs (the content in plain text: the call encodes it).
#[derive(Clone, Debug)]
pub struct RunCommandSpec<'a> {
    /// `RunShellScript` or `RunPowerShellScript`.
    pub script: &'a str,
    pub content: &'a str,
    pub timeout_seconds: u32,
    pub name: &'a str,
    pub client_token: &'a str,
}

/// `SnapshotGroupId.N` per DescribeSnapshotGroups call (N from 1 to 10).
pub const MAX_GROUP_IDS: usize = 10;

/// The disks of a new snapshot-consistent group
/// (shared/reference/ecs-snapshot-groups-and-cloud-assistant.md §2).
#[derive(Clone, Copy, Debug)]
pub enum GroupDisks<'a> {
    /// Every disk of the instance but `exclude` (`InstanceId`, `ExcludeDiskId.N`).
    Instance {
        instance_id: &'a str,
        exclude: &'a [String],
    },
    /// These disks (`DiskId.N`), which may belong to several instances of one zone.
    Disks(&'a [String]),
}

/// What CreateSnapshotGroup is asked to make.
#[derive(Clone, Debug)]
pub struct SnapshotGroupRequest<'a> {
    pub disks: GroupDisks<'a>,
    /// `InstantAccess`; `None` sends nothing (ECS's default).
    pub instant_access: Option<bool>,
    /// `Name`; empty sends nothing.
    pub name: &'a str,
    /// `Description`; empty sends nothing.
    pub description: &'a str,
    /// `Tag.N` (at most 20), set on the group as it is made.
    pub tags: &'a [(String, String)],
    /// `ClientToken` (ASCII, at most 64 characters): a repeat with the same token and
    /// parameters returns the same group, so the client may repeat the call like a read. Empty:
    /// none sent, and the call is repeated only when it certainly did not arrive.
    pub client_token: &'a str,
}

pub(super) type Params = Vec<(String, String)>;

pub(super) fn p(k: impl Into<String>, v: impl Into<String>) -> (String, String) {
    (k.into(), v.into())
}

pub(super) fn tag_params(params: &mut Params, prefix: &str, tags: &[(String, String)]) {
    for (i, (k, v)) in tags.iter().enumerate() {
        params.push(p(format!("{prefix}.{}.Key", i + 1), k));
        params.push(p(format!("{prefix}.{}.Value", i + 1), v));
    }
}

pub(super) fn json_ids(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

/// What every Describe call sends: region, page size, one chunk of IDs, tag filters, DryRun.
pub(super) fn describe_params(
    region: &str,
    ids_param: &str,
    ids: Option<String>,
    tags: &[(String, String)],
    dry_run: bool,
) -> Params {
    let mut params = vec![p("RegionId", region), p("MaxResults", "100")];
    if let Some(ids) = ids {
        params.push(p(ids_param, ids));
    }
    tag_params(&mut params, "Tag", tags);
    if dry_run {
        params.push(p("DryRun", "true"));
    }
    params
}

impl EcsClient {
    /// Follows `NextToken` to the end. `page_params` are sent on every page.
    pub(super) async fn paginate<P, T>(
        &self,
        region: &str,
        action: Action,
        page_params: Params,
        items: fn(P) -> (String, Vec<T>),
    ) -> Result<Vec<T>, EcsError>
    where
        P: DeserializeOwned,
    {
        let mut out = Vec::new();
        let mut token = String::new();
        for _ in 0..MAX_PAGES {
            let mut params = page_params.clone();
            if !token.is_empty() {
                params.push(p("NextToken", &token));
            }
            let page: P = self.call(region, action, params, CallKind::Read).await?;
            let (next, mut batch) = items(page);
            out.append(&mut batch);
            if next.is_empty() {
                return Ok(out);
            }
            if next == token {
                return Err(EcsError::transport(
                    action.as_str(),
                    ErrorKind::Decode,
                    "NextToken did not advance".into(),
                ));
            }
            token = next;
        }
        Err(EcsError::transport(
            action.as_str(),
            ErrorKind::Decode,
            format!("more than {MAX_PAGES} pages"),
        ))
    }

    /// Runs `query` once per chunk of at most [`MAX_IDS`] IDs (once with none when `ids` is empty).
    pub(super) async fn chunked<T, F, Fut>(
        &self,
        ids: &[String],
        query: F,
    ) -> Result<Vec<T>, EcsError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, EcsError>>,
    {
        if ids.is_empty() {
            return query(None).await;
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_IDS) {
            out.extend(query(Some(json_ids(chunk))).await?);
        }
        Ok(out)
    }

    // ---- typed calls -------------------------------------------------------------------

    pub async fn describe_instances(
        &self,
        region: &str,
        q: &InstanceQuery,
    ) -> Result<Vec<Instance>, EcsError> {
        self.chunked(&q.ids, |ids| {
            let mut params = describe_params(region, "InstanceIds", ids, &q.tags, q.dry_run);
            if let Some(s) = &q.status {
                params.push(p("Status", s));
            }
            self.paginate(
                region,
                Action::DescribeInstances,
                params,
                |pg: DescribeInstancesPage| (pg.next_token, pg.instances.instance),
            )
        })
        .await
    }

    pub async fn describe_disks(&self, region: &str, q: &DiskQuery) -> Result<Vec<Disk>, EcsError> {
        self.chunked(&q.ids, |ids| {
            let mut params = describe_params(region, "DiskIds", ids, &q.tags, q.dry_run);
            if let Some(i) = &q.instance_id {
                params.push(p("InstanceId", i));
            }
            if let Some(t) = &q.disk_type {
                params.push(p("DiskType", t));
            }
            self.paginate(
                region,
                Action::DescribeDisks,
                params,
                |pg: DescribeDisksPage| (pg.next_token, pg.disks.disk),
            )
        })
        .await
    }

    pub async fn describe_snapshots(
        &self,
        region: &str,
        q: &SnapshotQuery,
    ) -> Result<Vec<Snapshot>, EcsError> {
        self.chunked(&q.ids, |ids| {
            let mut params = describe_params(region, "SnapshotIds", ids, &q.tags, q.dry_run);
            if let Some(d) = &q.disk_id {
                params.push(p("DiskId", d));
            }
            if let Some(i) = &q.instance_id {
                params.push(p("InstanceId", i));
            }
            if let Some(s) = &q.status {
                params.push(p("Status", s));
            }
            self.paginate(
                region,
                Action::DescribeSnapshots,
                params,
                |pg: DescribeSnapshotsPage| (pg.next_token, pg.snapshots.snapshot),
            )
        })
        .await
    }

    /// A state-changing call that answers only a RequestId; a passed dry run is `Ok` with
    /// `dry_run` set.
    pub(super) async fn act(
        &self,
        region: &str,
        action: Action,
        mut params: Params,
        dry_run: bool,
    ) -> Result<Ack, EcsError> {
        params.push(p("RegionId", region));
        if dry_run {
            params.push(p("DryRun", "true"));
        }
        match self.call::<Ack>(region, action, params, CallKind::Write).await {
            Ok(ack) if dry_run => Err(EcsError {
                may_have_applied: true,
                ..EcsError::transport(
                    action.as_str(),
                    ErrorKind::Decode,
                    format!(
                        "the server answered a DryRun with success (RequestId {}): it may have applied it",
                        ack.request_id
                    ),
                )
            }),
            Ok(ack) => Ok(ack),
            Err(e) if dry_run && e.is_dry_run_success() => Ok(Ack {
                request_id: e.request_id.unwrap_or_default(),
                dry_run: true,
            }),
            Err(e) => Err(e),
        }
    }

    /// CreateSnapshot of `disk_id`, made idempotent by `client_token` (ASCII, at most 64
    /// characters): a repeated call with the same token and parameters returns the same
    /// snapshot. `tags` are set on the snapshot as it is created (`Tag.N`, at most 20).
    /// Returns the snapshot ID and the RequestId.
    pub async fn create_snapshot(
        &self,
        region: &str,
        disk_id: &str,
        name: &str,
        description: &str,
        client_token: &str,
        tags: &[(String, String)],
    ) -> Result<(String, String), EcsError> {
        let mut params = vec![
            p("RegionId", region),
            p("DiskId", disk_id),
            p("SnapshotName", name),
            p("ClientToken", client_token),
        ];
        if !description.is_empty() {
            params.push(p("Description", description));
        }
        tag_params(&mut params, "Tag", tags);
        let created: CreatedSnapshot = self
            .call(
                region,
                Action::CreateSnapshot,
                params,
                CallKind::IdempotentWrite,
            )
            .await?;
        if created.snapshot_id.is_empty() {
            let mut e = EcsError::transport(
                "CreateSnapshot",
                ErrorKind::Decode,
                "the answer names no SnapshotId".into(),
            );
            e.may_have_applied = true;
            return Err(e);
        }
        Ok((created.snapshot_id, created.request_id))
    }

    /// CreateSnapshotGroup: one snapshot of each disk of `request.disks` at one moment (§2:
    /// ESSD-series disks, at most 16 and 32 TiB, each `In_use` or `Available` after an attach).
    /// A state-changing call: it passes the run's fence like CreateSnapshot. Returns the group's
    /// ID (`ssg-…`); its snapshots are `progressing` until DescribeSnapshotGroups says
    /// `accomplished`.
    pub async fn create_snapshot_group(
        &self,
        region: &str,
        request: &SnapshotGroupRequest<'_>,
    ) -> Result<String, EcsError> {
        const ACTION: &str = "CreateSnapshotGroup";
        let mut params = vec![p("RegionId", region)];
        match request.disks {
            GroupDisks::Instance {
                instance_id,
                exclude,
            } => {
                if instance_id.is_empty() {
                    return Err(EcsError::config(ACTION, "an instance ID"));
                }
                params.push(p("InstanceId", instance_id));
                for (i, d) in exclude.iter().enumerate() {
                    params.push(p(format!("ExcludeDiskId.{}", i + 1), d));
                }
            }
            GroupDisks::Disks(disks) => {
                if disks.is_empty() {
                    return Err(EcsError::config(ACTION, "at least one disk ID"));
                }
                for (i, d) in disks.iter().enumerate() {
                    params.push(p(format!("DiskId.{}", i + 1), d));
                }
            }
        }
        if request.tags.len() > 20 {
            return Err(EcsError::config(ACTION, "at most 20 tags"));
        }
        if let Some(on) = request.instant_access {
            params.push(p("InstantAccess", on.to_string()));
        }
        if !request.name.is_empty() {
            params.push(p("Name", request.name));
        }
        if !request.description.is_empty() {
            params.push(p("Description", request.description));
        }
        tag_params(&mut params, "Tag", request.tags);
        let kind = if request.client_token.is_empty() {
            CallKind::Write
        } else {
            params.push(p("ClientToken", request.client_token));
            CallKind::IdempotentWrite
        };
        let created: CreatedSnapshotGroup = self
            .call(region, Action::CreateSnapshotGroup, params, kind)
            .await?;
        if created.snapshot_group_id.is_empty() {
            let mut e = EcsError::transport(
                ACTION,
                ErrorKind::Decode,
                "the answer names no SnapshotGroupId".into(),
            );
            e.may_have_applied = true;
            return Err(e);
        }
        Ok(created.snapshot_group_id)
    }

    /// DescribeSnapshotGroups: the groups of `ids` (asked 10 at a time, `SnapshotGroupId.N`;
    /// all of the region's when empty), of `instance_id` when given, every page followed.
    pub async fn describe_snapshot_groups(
        &self,
        region: &str,
        ids: &[String],
        instance_id: Option<&str>,
    ) -> Result<Vec<SnapshotGroup>, EcsError> {
        let query = |chunk: &[String]| {
            let mut params = vec![p("RegionId", region), p("MaxResults", "100")];
            for (i, id) in chunk.iter().enumerate() {
                params.push(p(format!("SnapshotGroupId.{}", i + 1), id));
            }
            if let Some(i) = instance_id {
                params.push(p("InstanceId", i));
            }
            self.paginate(
                region,
                Action::DescribeSnapshotGroups,
                params,
                |pg: DescribeSnapshotGroupsPage| (pg.next_token, pg.snapshot_groups.snapshot_group),
            )
        };
        if ids.is_empty() {
            return query(&[]).await;
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_GROUP_IDS) {
            out.extend(query(chunk).await?);
        }
        Ok(out)
    }

    /// DescribeCloudAssistantStatus for one instance: `true` once its agent is up
    /// (shared/reference/ecs-snapshot-groups-and-cloud-assistant.md §3: `InstanceId.N`,
    /// `CloudAssistantStatus` "true").
    pub async fn cloud_assistant_ready(
        &self,
        region: &str,
        instance_id: &str,
    ) -> Result<bool, EcsError> {
        let params = vec![p("RegionId", region), p("InstanceId.1", instance_id)];
        let page: CloudAssistantStatusPage = self
            .call(
                region,
                Action::DescribeCloudAssistantStatus,
                params,
                CallKind::Read,
            )
            .await?;
        Ok(page
            .instance_cloud_assistant_status_set
            .instance_cloud_assistant_status
            .iter()
            .any(|s| s.instance_id == instance_id && s.cloud_assistant_status == "true"))
    }

    /// RunCommand on one instance, the content sent base64-encoded (`ContentEncoding`), with a
    /// `ClientToken` that makes a repeat return the first invocation (§3; the token: ECS's
    /// idempotence page and the SDK's RunCommandRequest). `(InvokeId, RequestId)`.
    pub async fn run_command(
        &self,
        region: &str,
        instance_id: &str,
        command: &RunCommandSpec<'_>,
    ) -> Result<(String, String), EcsError> {
        use base64::Engine as _;
        let params = vec![
            p("RegionId", region),
            p("InstanceId.1", instance_id),
            p("Type", command.script),
            p(
                "CommandContent",
                base64::engine::general_purpose::STANDARD.encode(command.content),
            ),
            p("ContentEncoding", "Base64"),
            p("Timeout", command.timeout_seconds.to_string()),
            p("Name", command.name),
            p("ClientToken", command.client_token),
        ];
        let ran: RanCommand = self
            .call(
                region,
                Action::RunCommand,
                params,
                CallKind::IdempotentWrite,
            )
            .await?;
        if ran.invoke_id.is_empty() {
            let mut e = EcsError::transport(
                "RunCommand",
                ErrorKind::Decode,
                "the answer names no InvokeId".into(),
            );
            e.may_have_applied = true;
            return Err(e);
        }
        Ok((ran.invoke_id, ran.request_id))
    }

    /// DescribeInvocations for one invocation: its overall `InvocationStatus` (§3), `None`
    /// when ECS does not (yet) list it.
    pub async fn invocation_status(
        &self,
        region: &str,
        invoke_id: &str,
    ) -> Result<Option<String>, EcsError> {
        let params = vec![p("RegionId", region), p("InvokeId", invoke_id)];
        let page: InvocationsPage = self
            .call(region, Action::DescribeInvocations, params, CallKind::Read)
            .await?;
        Ok(page
            .invocations
            .invocation
            .into_iter()
            .find(|i| i.invoke_id == invoke_id)
            .map(|i| i.invocation_status))
    }

    /// DescribeInvocationResults for one invocation on one instance: its status, exit code,
    /// output (base64) and error code (§3).
    pub async fn invocation_result(
        &self,
        region: &str,
        invoke_id: &str,
        instance_id: &str,
    ) -> Result<Option<InvocationResult>, EcsError> {
        let params = vec![
            p("RegionId", region),
            p("InvokeId", invoke_id),
            p("InstanceId", instance_id),
        ];
        let page: InvocationResultsPage = self
            .call(
                region,
                Action::DescribeInvocationResults,
                params,
                CallKind::Read,
            )
            .await?;
        Ok(page
            .invocation
            .invocation_results
            .invocation_result
            .into_iter()
            .find(|r| r.instance_id == instance_id))
    }

    pub async fn stop_instance(
        &self,
        region: &str,
        instance_id: &str,
        o: &StopOptions,
    ) -> Result<Ack, EcsError> {
        let params = vec![
            p("InstanceId", instance_id),
            p("ForceStop", o.force_stop.to_string()),
            p("StoppedMode", o.stopped_mode.as_str()),
        ];
        self.act(region, Action::StopInstance, params, o.dry_run)
            .await
    }

    pub async fn start_instance(
        &self,
        region: &str,
        instance_id: &str,
        dry_run: bool,
    ) -> Result<Ack, EcsError> {
        let params = vec![p("InstanceId", instance_id)];
        self.act(region, Action::StartInstance, params, dry_run)
            .await
    }

    pub async fn reset_disk(
        &self,
        region: &str,
        disk_id: &str,
        snapshot_id: &str,
        dry_run: bool,
    ) -> Result<Ack, EcsError> {
        let params = vec![p("DiskId", disk_id), p("SnapshotId", snapshot_id)];
        self.act(region, Action::ResetDisk, params, dry_run).await
    }

    pub async fn tag_resources(
        &self,
        region: &str,
        resource_type: &str,
        ids: &[String],
        tags: &[(String, String)],
    ) -> Result<Ack, EcsError> {
        if ids.is_empty() || ids.len() > MAX_TAG_RESOURCES || tags.is_empty() || tags.len() > 20 {
            return Err(EcsError::config(
                "TagResources",
                "1 to 50 resources and 1 to 20 tags",
            ));
        }
        let mut params = vec![p("ResourceType", resource_type)];
        for (i, id) in ids.iter().enumerate() {
            params.push(p(format!("ResourceId.{}", i + 1), id));
        }
        tag_params(&mut params, "Tag", tags);
        self.act(region, Action::TagResources, params, false).await
    }

    pub async fn untag_resources(
        &self,
        region: &str,
        resource_type: &str,
        ids: &[String],
        keys: &[String],
    ) -> Result<Ack, EcsError> {
        if ids.is_empty() || ids.len() > MAX_TAG_RESOURCES || keys.is_empty() || keys.len() > 20 {
            return Err(EcsError::config(
                "UntagResources",
                "1 to 50 resources and 1 to 20 tag keys",
            ));
        }
        let mut params = vec![p("ResourceType", resource_type)];
        for (i, id) in ids.iter().enumerate() {
            params.push(p(format!("ResourceId.{}", i + 1), id));
        }
        for (i, k) in keys.iter().enumerate() {
            params.push(p(format!("TagKey.{}", i + 1), k));
        }
        self.act(region, Action::UntagResources, params, false)
            .await
    }

    pub async fn list_tag_resources(
        &self,
        region: &str,
        resource_type: &str,
        ids: &[String],
    ) -> Result<Vec<TagResource>, EcsError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_TAG_RESOURCES) {
            let mut params = vec![p("RegionId", region), p("ResourceType", resource_type)];
            for (i, id) in chunk.iter().enumerate() {
                params.push(p(format!("ResourceId.{}", i + 1), id));
            }
            out.extend(
                self.paginate(
                    region,
                    Action::ListTagResources,
                    params,
                    |pg: ListTagResourcesPage| (pg.next_token, pg.tag_resources.tag_resource),
                )
                .await?,
            );
        }
        Ok(out)
    }
}
