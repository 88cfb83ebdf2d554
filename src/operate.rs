//! The operators' commands `status` and `release`: read the disk and its instance, show the
//! hold (`hold::status`), clear a dead run's hold (`hold::plan_release`, then the tag writes);
//! `pause` and `resume` (the region's switch, a tag on its control key pair, `pause.rs`), and
//! `approve` (runs a proposed rollback through the handler, `handler/gate.rs`).
//! Only tags are ever written here, except by `approve`, which runs the rollback it approves.

use std::process::ExitCode;

use crate::ecs::model::Disk;
use crate::ecs::EcsClient;
use crate::handler::Handler;
use crate::hold::ReleasePlan;
use crate::settings::Settings;
use crate::startup::{build_handler, Backend};

/// The disk (with its tags) and its instance's status, for `status` and `release`.
struct Read {
    handler: Handler,
    region: String,
    disk: crate::ecs::model::Disk,
    instance_status: Option<String>,
}

async fn read_disk(
    what: &str,
    disk_id: &str,
    region: Option<String>,
    live: bool,
) -> Result<Read, String> {
    let disk_id = crate::ids::DiskId::parse(disk_id).map_err(|e| format!("disk ID: {e}"))?;
    let handler = build_handler(Backend::Cli { live })?;
    let region = region
        .or_else(|| handler.default_region.clone())
        .ok_or_else(|| {
            format!("{what}: no region: pass --region or set ALIBABA_CLOUD_REGION_ID")
        })?;
    let (disk, instance_status) = read_disk_with(&handler.ecs, &region, disk_id.as_str()).await?;
    Ok(Read {
        handler,
        region,
        disk,
        instance_status,
    })
}

/// The disk (with its tags, the ledger) and the status of the instance it is attached to.
pub async fn read_disk_with(
    ecs: &EcsClient,
    region: &str,
    disk_id: &str,
) -> Result<(Disk, Option<String>), String> {
    let q = crate::ecs::DiskQuery {
        ids: vec![disk_id.to_owned()],
        ..Default::default()
    };
    let disk = ecs
        .describe_disks(region, &q)
        .await
        .map_err(|e| format!("reading {disk_id}: {e}"))?
        .into_iter()
        .find(|d| d.disk_id == disk_id)
        .ok_or_else(|| format!("disk {disk_id} not found in {region}"))?;
    let instance_status = if disk.instance_id.is_empty() {
        None
    } else {
        let q = crate::ecs::InstanceQuery {
            ids: vec![disk.instance_id.clone()],
            ..Default::default()
        };
        ecs.describe_instances(region, &q)
            .await
            .map_err(|e| format!("reading {}: {e}", disk.instance_id))?
            .into_iter()
            .next()
            .map(|i| i.status)
    };
    Ok((disk, instance_status))
}

/// The holds on the instance (`instance_hold.rs`): who holds it, for which disk, and the power
/// state to restore.
pub async fn read_instance_holds(
    ecs: &EcsClient,
    region: &str,
    instance: &str,
) -> Result<Vec<crate::instance_hold::Hold>, String> {
    let tags = ecs
        .list_tag_resources(region, "instance", &[instance.to_owned()])
        .await
        .map_err(|e| format!("reading the tags of {instance}: {e}"))?;
    Ok(crate::instance_hold::holds(
        tags.iter()
            .filter(|t| t.resource_id == instance)
            .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
    )
    .0)
}

/// Why a release did not happen (or happened only in part).
#[derive(Debug, PartialEq, Eq)]
pub enum ReleaseError {
    /// The hold is no longer the one the plan was made from: nothing was changed.
    Changed,
    /// A read failed: nothing was changed.
    Read(String),
    /// Recording the release in the history failed: nothing was changed.
    Record(String),
    /// The release is recorded (the key can never resume), but its tags were not all removed:
    /// run release again.
    Remove(String),
}

impl std::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseError::Changed => f.write_str("the hold changed while this ran (a run wrote the ledger): nothing was changed; look again with `status`"),
            ReleaseError::Read(e) => f.write_str(e),
            ReleaseError::Record(e) => write!(f, "recording the release failed, nothing was removed: {e}"),
            ReleaseError::Remove(e) => write!(f, "the release is recorded, but removing the hold failed ({e}); run release again"),
        }
    }
}

/// The release's writes: re-read the hold and go on only if it is still the one `plan` was made
/// from, then write the history first (from then on the key is ended and can never resume),
/// then remove the run tag and the key's claims. Only tags are written.
pub async fn apply_release(
    ecs: &EcsClient,
    region: &str,
    disk_id: &str,
    plan: &ReleasePlan,
) -> Result<(), ReleaseError> {
    let (again, _) = read_disk_with(ecs, region, disk_id)
        .await
        .map_err(ReleaseError::Read)?;
    if again.tags.get(crate::ledger::RUN_TAG) != Some(plan.run_value.as_str()) {
        return Err(ReleaseError::Changed);
    }
    let ids = vec![disk_id.to_owned()];
    let history = vec![(crate::ledger::HISTORY_TAG.to_owned(), plan.history.clone())];
    ecs.tag_resources(region, "disk", &ids, &history)
        .await
        .map_err(|e| ReleaseError::Record(e.to_string()))?;
    ecs.untag_resources(region, "disk", &ids, &plan.remove)
        .await
        .map_err(|e| ReleaseError::Remove(e.to_string()))?;
    tracing::info!(disk = %disk_id, phase = %plan.phase, forced = plan.forced, "hold released");
    Ok(())
}

/// The hold rules (`hold.rs`) from the settings.
pub fn rules(s: &Settings) -> crate::hold::Rules {
    crate::hold::Rules {
        lease_secs: s.lease.as_secs() as i64,
        heartbeat_timeout_secs: s.heartbeat_timeout.as_secs().max(1) as i64,
        cooldown_secs: s.cooldown.as_secs() as i64,
    }
}

pub async fn status_cmd(disk_id: &str, region: Option<String>, json: bool, live: bool) -> ExitCode {
    let read = match read_disk("status", disk_id, region, live).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ecs-rollback status: {e}");
            return ExitCode::from(2);
        }
    };
    let observed = crate::hold::Observed {
        disk_id: &read.disk.disk_id,
        region_id: &read.region,
        disk_status: &read.disk.status,
        instance_id: Some(read.disk.instance_id.as_str()).filter(|i| !i.is_empty()),
        instance_status: read.instance_status.as_deref(),
        tags: read
            .disk
            .tags
            .tag
            .iter()
            .map(|t| (t.tag_key.as_str(), t.tag_value.as_str()))
            .collect(),
    };
    let status = crate::hold::status(
        &observed,
        rules(&read.handler.settings),
        read.handler.ecs.now().timestamp(),
    );
    let now = read.handler.ecs.now().timestamp();
    let instance = Some(read.disk.instance_id.clone()).filter(|i| !i.is_empty());
    let holds = match &instance {
        Some(iid) => Some(read_instance_holds(&read.handler.ecs, &read.region, iid).await),
        None => None,
    };
    let paused = match &read.handler.controls.control {
        Some(c) => {
            crate::handler::gate::read_pause(&read.handler.ecs, &read.region, &c.key_pair).await
        }
        None => Ok(None),
    };
    // Every disk of the instance and its run (a whole-instance request runs one per disk).
    let disks = match &instance {
        Some(iid) => read_instance_disks(&read.handler.ecs, &read.region, iid).await,
        None => Ok(vec![]),
    };
    if json {
        let mut v = serde_json::to_value(&status).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert(
                "paused".into(),
                match &paused {
                    Ok(Some(p)) => {
                        serde_json::json!({"since": p.since, "by": p.by, "reason": p.reason})
                    }
                    Ok(None) => serde_json::Value::Bool(false),
                    Err(e) => serde_json::json!({"unknown": e.to_string()}),
                },
            );
            let holds = match &holds {
                Some(Ok(holds)) => serde_json::Value::Array(
                    holds
                        .iter()
                        .map(|h| {
                            serde_json::json!({
                                "keyDigest": h.key,
                                "diskId": h.disk,
                                "invocation": h.invocation,
                                "restorePower": if h.was_running { "running" } else { "stopped" },
                                "since": h.at,
                            })
                        })
                        .collect(),
                ),
                Some(Err(e)) => serde_json::json!({"unknown": e}),
                None => serde_json::Value::Null,
            };
            m.insert("instanceHolds".into(), holds);
            m.insert(
                "instanceDisks".into(),
                match &disks {
                    Ok(d) => serde_json::Value::Array(
                        d.iter()
                            .map(|(id, kind, l)| {
                                serde_json::json!({
                                    "diskId": id,
                                    "type": kind,
                                    "keyDigest": l.run.as_ref().map(|r| r.key.clone()),
                                    "phase": l.run.as_ref().map(|r| r.phase.to_string()),
                                    "snapshotId": l.run.as_ref().map(|r| r.snapshot.clone()),
                                    "undoSnapshotId": l.run.as_ref().and_then(|r| r.undo.clone()),
                                })
                            })
                            .collect(),
                    ),
                    Err(e) => serde_json::json!({"unknown": e}),
                },
            );
        }
        match serde_json::to_string_pretty(&v) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("ecs-rollback status: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{}", pause_line(&read.region, &paused));
        print!("{}", status.render());
        match (&instance, &holds) {
            (Some(iid), Some(Ok(holds))) => {
                for line in crate::instance_hold::describe(iid, holds, now) {
                    println!("{line}");
                }
            }
            (Some(iid), Some(Err(e))) => println!("instance {iid}: hold unknown ({e})"),
            _ => {}
        }
        match (&instance, &disks) {
            (Some(iid), Ok(d)) if d.len() > 1 => {
                for line in crate::hold::instance_disks(iid, d) {
                    println!("{line}");
                }
            }
            (Some(iid), Err(e)) => println!("instance {iid}: disks unknown ({e})"),
            _ => {}
        }
    }
    ExitCode::SUCCESS
}

/// The disks attached to the instance, each with its type and ledger.
async fn read_instance_disks(
    ecs: &crate::ecs::EcsClient,
    region: &str,
    instance: &str,
) -> Result<Vec<(String, String, crate::ledger::Ledger)>, String> {
    let q = crate::ecs::DiskQuery {
        instance_id: Some(instance.to_owned()),
        ..Default::default()
    };
    let disks = ecs
        .describe_disks(region, &q)
        .await
        .map_err(|e| format!("reading the disks of {instance}: {e}"))?;
    Ok(disks
        .into_iter()
        .filter(|d| d.instance_id == instance)
        .map(|d| {
            let ledger = crate::ledger::Ledger::from_tags(
                d.tags
                    .tag
                    .iter()
                    .map(|t| (t.tag_key.as_str(), t.tag_value.as_str())),
            );
            (d.disk_id, d.disk_type, ledger)
        })
        .collect())
}

fn pause_line(
    region: &str,
    paused: &Result<Option<crate::pause::Paused>, crate::ecs::EcsError>,
) -> String {
    match paused {
        Ok(None) => format!("region {region}: rollbacks not paused"),
        Ok(Some(p)) => format!(
            "region {region}: rollbacks PAUSED since {} by {}{} (`ecs-rollback resume --region {region}`)",
            chrono::DateTime::<chrono::Utc>::from_timestamp(p.since, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            p.by,
            p.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
        Err(e) => format!("region {region}: the pause switch could not be read: {e}"),
    }
}

fn region_of(what: &str, handler: &Handler, region: Option<String>) -> Result<String, String> {
    region
        .or_else(|| handler.default_region.clone())
        .ok_or_else(|| format!("{what}: no region: pass --region or set ALIBABA_CLOUD_REGION_ID"))
}

/// `pause --region R [--reason TEXT] [--by NAME]`: every rollback in the region is refused
/// `Paused` from the next read of the switch (at once in a new process, within
/// `ECS_ROLLBACK_PAUSE_CACHE_SECONDS` in a warm one); `resume` lifts it.
pub async fn pause_cmd(
    region: Option<String>,
    on: bool,
    reason: Option<String>,
    by: Option<String>,
    live: bool,
) -> ExitCode {
    let what = if on { "pause" } else { "resume" };
    let run = async {
        let handler = build_handler(Backend::Cli { live })?;
        let region = region_of(what, &handler, region)?;
        let key_pair = handler
            .controls
            .control
            .as_ref()
            .map(|c| c.key_pair.clone())
            .unwrap_or_else(|| crate::pause::DEFAULT_CONTROL.to_owned());
        let ids = [key_pair.clone()];
        let missing = |e: crate::ecs::EcsError| {
            format!("{e}: the control key pair {key_pair:?} must exist in {region} (create it once: `aliyun ecs CreateKeyPair --RegionId {region} --KeyPairName {key_pair}`; its private key is not needed)")
        };
        if on {
            let who = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "operator".into());
            let p = crate::pause::Paused {
                since: chrono::Utc::now().timestamp(),
                by: who,
                reason,
            };
            handler
                .ecs
                .tag_resources(
                    &region,
                    crate::pause::CONTROL_TYPE,
                    &ids,
                    &[(crate::pause::PAUSED_TAG.into(), p.encode())],
                )
                .await
                .map_err(missing)?;
        } else {
            handler
                .ecs
                .untag_resources(
                    &region,
                    crate::pause::CONTROL_TYPE,
                    &ids,
                    &[crate::pause::PAUSED_TAG.into()],
                )
                .await
                .map_err(missing)?;
        }
        let now = crate::handler::gate::read_pause(&handler.ecs, &region, &key_pair)
            .await
            .map_err(|e| e.to_string());
        Ok::<String, String>(pause_line(
            &region,
            &now.map_err(|e| crate::ecs::EcsError::config("ListTagResources", e)),
        ))
    };
    match run.await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ecs-rollback {what}: {e}");
            ExitCode::from(2)
        }
    }
}

/// `approve TOKEN [--by NAME]`: runs the proposed rollback the token names, once, and prints
/// its result event; exit 0 when it succeeded.
pub async fn approve_cmd(token: &str, by: Option<String>, live: bool) -> ExitCode {
    let handler = match build_handler(Backend::Cli { live }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ecs-rollback approve: {e}");
            return ExitCode::from(2);
        }
    };
    let who = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into());
    let mut reply = crate::handler::Reply {
        shape: crate::handler::Shape::Results,
        reports: vec![handler.approve(token, &format!("{who} (cli)"), None).await],
        summaries: vec![],
    };
    handler.announce(&mut reply).await;
    let ok = reply.reports.iter().all(|r| r.outcome.is_ok());
    for r in &reply.reports {
        println!("{}", r.to_cloud_event());
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub async fn release_cmd(
    disk_id: &str,
    key: &str,
    region: Option<String>,
    force: bool,
    yes: bool,
    live: bool,
) -> ExitCode {
    let fail = |e: String, code: u8| {
        eprintln!("ecs-rollback release: {e}");
        ExitCode::from(code)
    };
    let key = match crate::request::IdempotencyKey::parse(key) {
        Ok(k) => k,
        Err(e) => return fail(format!("--key: {e}"), 2),
    };
    let read = match read_disk("release", disk_id, region, live).await {
        Ok(r) => r,
        Err(e) => return fail(e, 2),
    };
    let tags: Vec<(&str, &str)> = read
        .disk
        .tags
        .tag
        .iter()
        .map(|t| (t.tag_key.as_str(), t.tag_value.as_str()))
        .collect();
    let rules = rules(&read.handler.settings);
    let now = read.handler.ecs.now().timestamp();
    let plan = match crate::hold::plan_release(
        &tags,
        &key.digest(),
        read.instance_status.as_deref(),
        rules,
        now,
        force,
    ) {
        Ok(p) => p,
        Err(crate::hold::NoRelease::NothingHeld(why)) => {
            println!(
                "nothing to release: {} has no unfinished run{why}",
                read.disk.disk_id
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(e.to_string(), 1),
    };
    let instance = Some(read.disk.instance_id.clone()).filter(|i| !i.is_empty());
    let own_holds: Vec<String> = match &instance {
        Some(iid) => match read_instance_holds(&read.handler.ecs, &read.region, iid).await {
            Ok(holds) => {
                for line in crate::instance_hold::describe(iid, &holds, now) {
                    println!("{line}");
                }
                holds
                    .iter()
                    .filter(|h| h.key == crate::ledger::run_key(&key.digest()))
                    .map(|h| crate::instance_hold::hold_tag(&h.invocation))
                    .collect()
            }
            Err(e) => {
                println!("instance {iid}: hold unknown ({e})");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    print!("{}", plan.render(&read.disk.disk_id));
    if !own_holds.is_empty() {
        println!(
            "remove the key's hold on the instance: {}",
            own_holds.join(", ")
        );
    }
    if !yes {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            return fail(
                "not released: pass --yes to release without a prompt".into(),
                1,
            );
        }
        print!("release it? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return fail("not released".into(), 1);
        }
    }
    // The hold must still be the one shown: a run that came back to life since is not cleared.
    match apply_release(&read.handler.ecs, &read.region, &read.disk.disk_id, &plan).await {
        Ok(()) => {}
        Err(e @ ReleaseError::Read(_)) => return fail(e.to_string(), 2),
        Err(e) => return fail(e.to_string(), 1),
    }
    println!("released: {} is no longer held", read.disk.disk_id);
    if let (Some(iid), false) = (&instance, own_holds.is_empty()) {
        // The key is ended: its hold on the instance would be judged finished anyway.
        let ids = [iid.clone()];
        match read
            .handler
            .ecs
            .untag_resources(&read.region, "instance", &ids, &own_holds)
            .await
        {
            Ok(_) => println!("released: the key's hold on instance {iid}"),
            Err(e) => eprintln!(
                "ecs-rollback release: the key's hold on instance {iid} stays ({e}); it is judged finished, as the key is ended"
            ),
        }
    }
    ExitCode::SUCCESS
}
