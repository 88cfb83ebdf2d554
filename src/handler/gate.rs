//! The operator's controls in front of every rollback, before `Rollback::run`: the remediation
//! policy (`crate::policy`: act, propose or ignore), the pause switch and the caps (tags on the
//! region's control key pair, `crate::pause`), and approvals (`crate::approval`). Whatever
//! refuses here refuses before anything changes on the disk or its instance.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Utc;

use super::*;
use crate::approval::{self, ApprovalError, Proposal};
use crate::errors::OperatorCode;
use crate::pause::{self, CapCheck, Paused};
use crate::policy::{Action, Cap, Decision, Policy, Signal};
use crate::request::{RollbackRequest, SnapshotChoice};

/// Approvals: the secret tokens are signed with, and how long one lives.
#[derive(Clone, Default)]
pub struct Approvals {
    pub secret: Option<Vec<u8>>,
    pub ttl_secs: i64,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// Default lifetime of an approval token.
pub const APPROVAL_TTL_SECS: i64 = 3600;

/// Where the pause switch and the caps are read: the control key pair of each region, its
/// reads kept for at most `cache_ttl` (so a pause takes effect within it, in a warm process).
#[derive(Debug)]
pub struct Control {
    pub key_pair: String,
    pub cache_ttl: Duration,
    cache: tokio::sync::Mutex<HashMap<String, (Instant, Option<Paused>)>>,
}

impl Control {
    pub fn new(key_pair: impl Into<String>, cache_ttl: Duration) -> Self {
        Self {
            key_pair: key_pair.into(),
            cache_ttl,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }
}

/// The operator's controls a handler applies.
#[derive(Debug, Default)]
pub struct Controls {
    pub policy: Arc<Policy>,
    pub approvals: Approvals,
    /// `None`: no pause switch and no caps are read (a handler built in a test; every deployed
    /// handler has one, see `startup.rs`).
    pub control: Option<Control>,
}

impl Controls {
    /// From the environment, validated (a policy that cannot be used stops the start, naming
    /// its rule): `ECS_ROLLBACK_POLICY` (JSON) or `ECS_ROLLBACK_POLICY_FILE`, else the default;
    /// `ECS_ROLLBACK_APPROVAL_SECRET`, `ECS_ROLLBACK_APPROVAL_TTL_SECONDS`;
    /// `ECS_ROLLBACK_CONTROL_KEY_PAIR`, `ECS_ROLLBACK_PAUSE_CACHE_SECONDS` (at most 60).
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty() && v.trim() != "none")
        };
        let policy = match (var("ECS_ROLLBACK_POLICY"), var("ECS_ROLLBACK_POLICY_FILE")) {
            (Some(_), Some(_)) => {
                return Err("set ECS_ROLLBACK_POLICY or ECS_ROLLBACK_POLICY_FILE, not both".into())
            }
            (Some(text), None) => {
                Policy::parse(&text).map_err(|e| format!("ECS_ROLLBACK_POLICY: {e}"))?
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                Policy::parse(&text).map_err(|e| format!("{path}: {e}"))?
            }
            (None, None) => Policy::default(),
        };
        let num = |k: &str, default: i64| -> Result<i64, String> {
            match var(k) {
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{k}: a positive number of seconds")),
                None => Ok(default),
            }
        };
        let approvals = Approvals {
            secret: var("ECS_ROLLBACK_APPROVAL_SECRET").map(String::into_bytes),
            ttl_secs: num("ECS_ROLLBACK_APPROVAL_TTL_SECONDS", APPROVAL_TTL_SECS)?,
        };
        let key_pair = var("ECS_ROLLBACK_CONTROL_KEY_PAIR")
            .unwrap_or_else(|| pause::DEFAULT_CONTROL.to_owned());
        let ttl = num("ECS_ROLLBACK_PAUSE_CACHE_SECONDS", 20)?.min(60);
        Ok(Self {
            policy: Arc::new(policy),
            approvals,
            control: Some(Control::new(key_pair, Duration::from_secs(ttl as u64))),
        })
    }
}

fn step(name: &str, status: StepStatus, detail: String) -> Step {
    let now = Utc::now();
    Step {
        name: name.into(),
        status,
        started_at: now,
        finished_at: now,
        request_id: None,
        detail: Some(detail),
    }
}

fn target_of(req: &RollbackRequest) -> Target {
    Target {
        region_id: Some(req.region.to_string()),
        instance_id: req.instance.as_ref().map(ToString::to_string),
        disk_id: req.disk.as_ref().map(ToString::to_string),
        snapshot_id: match &req.snapshot {
            SnapshotChoice::Id(s) => Some(s.to_string()),
            _ => None,
        },
        snapshot_status: None,
        undo_snapshot_id: None,
        disks: None,
    }
}

/// A refusal by a control: nothing changed.
fn refused(
    req: &RollbackRequest,
    code: OperatorCode,
    message: String,
    retryable: bool,
    steps: Vec<Step>,
) -> Report {
    let mut r = bare(
        Outcome::Rejected,
        &req.trigger,
        Some(ErrorInfo::new(code, message, retryable)),
    );
    r.idempotency_key = Some(req.key.as_str().to_owned());
    r.target = target_of(req);
    r.reason = req.reason.clone();
    r.steps = steps;
    r
}

fn policy_step(d: &Decision) -> Step {
    let status = match d.action {
        Action::Act => StepStatus::Done,
        _ => StepStatus::Skipped,
    };
    step(
        "policy",
        status,
        format!("rule {}: {}", d.rule, d.action.as_str()),
    )
}

/// How a control's read or write failed: refuse rather than run blind (retryable).
fn unavailable(
    req: &RollbackRequest,
    what: &str,
    e: &crate::ecs::EcsError,
    steps: Vec<Step>,
) -> Report {
    let mut r = refused(
        req,
        OperatorCode::ControlUnavailable,
        format!("{what}: {e}"),
        true,
        steps,
    );
    if let Some(err) = r.error.as_mut() {
        err.request_id = e.request_id.clone();
    }
    r
}

impl Handler {
    /// One parsed request through the policy, the pause switch and the cap, then run.
    pub(super) async fn gated(
        &self,
        req: RollbackRequest,
        signal: &Signal,
        deadline: Option<Instant>,
    ) -> Report {
        match self.admit(&req, signal).await {
            Ok(steps) => {
                let mut r = Rollback::new(&self.ecs, &self.settings)
                    .run(&req, deadline)
                    .await;
                r.steps.splice(0..0, steps);
                r
            }
            Err(r) => *r,
        }
    }

    /// Whether the controls let this request run: the steps to put in front of its result, or
    /// the result that stands instead (ignored, proposed, refused), nothing having changed.
    pub(super) async fn admit(
        &self,
        req: &RollbackRequest,
        signal: &Signal,
    ) -> Result<Vec<Step>, Box<Report>> {
        let req = req.clone();
        let tags = if self.controls.policy.needs_instance_tags() {
            self.instance_tags(&req).await
        } else {
            None
        };
        let decision = self
            .controls
            .policy
            .decide(signal, &req.trigger.kind, tags.as_ref());
        tracing::info!(rule = %decision.rule, action = decision.action.as_str(), trigger = %req.trigger.kind, "policy decided");
        let steps = vec![policy_step(&decision)];
        match decision.action {
            Action::Ignore => {
                let mut r = ignored(
                    &req.trigger,
                    &format!("the policy's rule {} ignores this signal", decision.rule),
                );
                r.idempotency_key = Some(req.key.as_str().to_owned());
                r.target = target_of(&req);
                r.reason = req.reason.clone();
                r.steps.splice(0..0, steps);
                Err(Box::new(r))
            }
            Action::Propose => Err(Box::new(self.propose(&req, &decision, steps))),
            Action::Act => {
                self.controlled(
                    &req,
                    decision.cap.map(|c| (decision.rule.as_str(), c)),
                    steps,
                )
                .await
            }
        }
    }

    /// Past the policy: the pause switch, then the cap (a dry run takes no place).
    async fn controlled(
        &self,
        req: &RollbackRequest,
        cap: Option<(&str, Cap)>,
        mut steps: Vec<Step>,
    ) -> Result<Vec<Step>, Box<Report>> {
        self.check_pause(req, &steps).await.map_err(Box::new)?;
        if let (Some((rule, cap)), false) = (cap, req.dry_run) {
            match self.admit_under_cap(req, rule, cap).await {
                Ok(detail) => steps.push(step("cap", StepStatus::Done, detail)),
                Err(mut r) => {
                    r.steps.splice(0..0, steps);
                    return Err(r);
                }
            }
        }
        Ok(steps)
    }

    /// The instance's tags, for a policy that matches on them; `None` when they cannot be read
    /// (a rule on tags then does not match).
    async fn instance_tags(&self, req: &RollbackRequest) -> Option<BTreeMap<String, String>> {
        let region = req.region.to_string();
        let instance = match (&req.instance, &req.disk) {
            (Some(i), _) => i.to_string(),
            (None, Some(d)) => {
                let q = DiskQuery {
                    ids: vec![d.to_string()],
                    ..DiskQuery::default()
                };
                let disks = self.ecs.describe_disks(&region, &q).await.ok()?;
                disks.into_iter().next()?.instance_id
            }
            (None, None) => return None,
        };
        let q = InstanceQuery {
            ids: vec![instance],
            ..InstanceQuery::default()
        };
        let inst = self.ecs.describe_instances(&region, &q).await.ok()?;
        let inst = inst.into_iter().next()?;
        Some(
            inst.tags
                .tag
                .into_iter()
                .map(|t| (t.tag_key, t.tag_value))
                .collect(),
        )
    }

    /// The region's pause, read fresh or from a read younger than the cache's lifetime.
    pub async fn paused(&self, region: &str) -> Result<Option<Paused>, crate::ecs::EcsError> {
        let Some(control) = &self.controls.control else {
            return Ok(None);
        };
        {
            let cache = control.cache.lock().await;
            if let Some((at, state)) = cache.get(region) {
                if at.elapsed() < control.cache_ttl {
                    return Ok(state.clone());
                }
            }
        }
        let state = read_pause(&self.ecs, region, &control.key_pair).await?;
        control
            .cache
            .lock()
            .await
            .insert(region.to_owned(), (Instant::now(), state.clone()));
        Ok(state)
    }

    async fn check_pause(&self, req: &RollbackRequest, steps: &[Step]) -> Result<(), Report> {
        match self.paused(req.region.as_str()).await {
            Ok(None) => Ok(()),
            Ok(Some(p)) => {
                tracing::warn!(region = %req.region, by = %p.by, "rollbacks are paused: refused");
                let since = chrono::DateTime::<Utc>::from_timestamp(p.since, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                Err(refused(
                    req,
                    OperatorCode::Paused,
                    format!(
                        "rollbacks in {} are paused since {since} by {}{}; nothing was changed (`ecs-rollback resume --region {}` lifts it)",
                        req.region,
                        p.by,
                        p.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
                        req.region
                    ),
                    false,
                    steps.to_vec(),
                ))
            }
            Err(e) => Err(unavailable(
                req,
                "the pause switch could not be read",
                &e,
                steps.to_vec(),
            )),
        }
    }

    /// Takes one of the cap's places for this request's key (a redelivery keeps its own): the
    /// value is written, read back after the tag settle, and the place holds only if it is
    /// among the first `max` of the window (a concurrent writer may have replaced it: then
    /// again, at most three times).
    async fn admit_under_cap(
        &self,
        req: &RollbackRequest,
        rule: &str,
        cap: Cap,
    ) -> Result<String, Box<Report>> {
        let Some(control) = &self.controls.control else {
            return Ok(format!(
                "rule {rule}: no control key pair, so the cap is not counted"
            ));
        };
        let region = req.region.to_string();
        let tag = pause::cap_tag(rule);
        let key = req.key.as_str();
        let read = |e: crate::ecs::EcsError| {
            Box::new(unavailable(
                req,
                &format!("the cap of rule {rule} could not be read"),
                &e,
                vec![],
            ))
        };
        for _ in 0..3 {
            let now = Utc::now().timestamp();
            let value = read_tag(&self.ecs, &region, &control.key_pair, &tag)
                .await
                .map_err(read)?;
            match pause::cap_check(value.as_deref(), key, now, cap.max, cap.window_seconds) {
                CapCheck::AlreadyIn => {
                    return Ok(format!(
                        "rule {rule}: this key is already admitted in the window"
                    ))
                }
                CapCheck::Full { count, frees_at } => {
                    let at = chrono::DateTime::<Utc>::from_timestamp(frees_at, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    return Err(Box::new(refused(
                        req,
                        OperatorCode::CapReached,
                        format!(
                            "rule {rule} allows {} rollbacks per {} s in {region}, and {count} ran in the window; the next place frees at {at}; nothing was changed",
                            cap.max, cap.window_seconds
                        ),
                        false,
                        vec![],
                    )));
                }
                CapCheck::Admit(v) => {
                    self.ecs
                        .tag_resources(
                            &region,
                            pause::CONTROL_TYPE,
                            std::slice::from_ref(&control.key_pair),
                            &[(tag.clone(), v)],
                        )
                        .await
                        .map_err(read)?;
                    tokio::time::sleep(self.settings.tag_settle).await;
                    let back = read_tag(&self.ecs, &region, &control.key_pair, &tag)
                        .await
                        .map_err(read)?;
                    match pause::cap_holds(back.as_deref(), key, now, cap.max, cap.window_seconds) {
                        Some(true) => {
                            return Ok(format!(
                                "rule {rule}: admitted, at most {} per {} s",
                                cap.max, cap.window_seconds
                            ))
                        }
                        Some(false) => {
                            // Concurrent admissions overfilled the window: give the place back.
                            let mark = pause::key_mark(key);
                            let rest: Vec<_> = back
                                .as_deref()
                                .map(pause::decode_admissions)
                                .unwrap_or_default()
                                .into_iter()
                                .filter(|a| a.key != mark)
                                .collect();
                            let _ = self
                                .ecs
                                .tag_resources(
                                    &region,
                                    pause::CONTROL_TYPE,
                                    std::slice::from_ref(&control.key_pair),
                                    &[(tag.clone(), pause::encode_admissions(&rest))],
                                )
                                .await;
                            return Err(Box::new(refused(
                                req,
                                OperatorCode::CapReached,
                                format!("rule {rule} allows {} rollbacks per {} s in {region}: others took the places at the same time; nothing was changed", cap.max, cap.window_seconds),
                                false,
                                vec![],
                            )));
                        }
                        None => continue,
                    }
                }
            }
        }
        Err(Box::new(refused(
            req,
            OperatorCode::ControlUnavailable,
            format!(
                "the cap of rule {rule} kept changing under this delivery; nothing was changed"
            ),
            true,
            vec![],
        )))
    }

    /// A `proposed` result: nothing changed; its token approves exactly this request, once.
    fn propose(&self, req: &RollbackRequest, d: &Decision, mut steps: Vec<Step>) -> Report {
        let mut r = bare(Outcome::Proposed, &req.trigger, None);
        r.idempotency_key = Some(req.key.as_str().to_owned());
        r.target = target_of(req);
        r.reason = req.reason.clone();
        let now = Utc::now().timestamp();
        let Some(secret) = self.controls.approvals.secret.as_deref() else {
            steps.push(step(
                "proposal",
                StepStatus::Skipped,
                "no approval secret is configured (ECS_ROLLBACK_APPROVAL_SECRET): send the request explicitly to run it".into(),
            ));
            r.warnings
                .push("proposed without an approval token: no approval secret".into());
            r.steps = steps;
            return r;
        };
        let ttl = if self.controls.approvals.ttl_secs > 0 {
            self.controls.approvals.ttl_secs
        } else {
            APPROVAL_TTL_SECS
        };
        let proposal = Proposal {
            request: request_value(req),
            key: req.key.as_str().to_owned(),
            trigger: format!("{}:{}", req.trigger.kind, req.trigger.id),
            time: req.trigger.time.map(|t| t.timestamp()),
            rule: d.rule.clone(),
            expires: now + ttl,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = approval::sign(&proposal, secret);
        let until = chrono::DateTime::<Utc>::from_timestamp(proposal.expires, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        steps.push(step(
            "proposal",
            StepStatus::Planned,
            format!("approve before {until} with `ecs-rollback approve {token}`, or POST {{\"approve\": \"{token}\", \"approvedBy\": \"<you>\"}} to the webhook"),
        ));
        tracing::info!(rule = %d.rule, key = %req.key.as_str(), "rollback proposed");
        r.steps = steps;
        r
    }

    /// Runs the request an approval token names, once: refused (nothing run) when the token is
    /// malformed, altered, expired or used already, or while the region is paused.
    pub async fn approve(&self, token: &str, by: &str, deadline: Option<Instant>) -> Report {
        let trigger = Trigger {
            kind: "approval".into(),
            key_basis: None,
            id: String::new(),
            time: None,
        };
        let by = approval::approver(by);
        let now = Utc::now().timestamp();
        let secret = self
            .controls
            .approvals
            .secret
            .as_deref()
            .unwrap_or_default();
        let proposal = match approval::verify(token, secret, now) {
            Ok(p) => p,
            Err(e) => {
                let code = match e {
                    ApprovalError::Expired(_) => OperatorCode::ApprovalExpired,
                    _ => OperatorCode::ApprovalInvalid,
                };
                tracing::warn!(why = %e, by = %by, "approval refused");
                let mut r = bare(
                    Outcome::Rejected,
                    &trigger,
                    Some(ErrorInfo::new(code, format!("{e}; nothing was run"), false)),
                );
                r.steps.push(step(
                    "approval",
                    StepStatus::Failed,
                    format!("refused: {e}"),
                ));
                return r;
            }
        };
        let trigger = Trigger {
            kind: "approval".into(),
            key_basis: None,
            id: proposal.trigger.clone(),
            time: proposal
                .time
                .and_then(|t| chrono::DateTime::<Utc>::from_timestamp(t, 0)),
        };
        let req = match request::parse(
            &proposal.request,
            self.default_region.as_deref(),
            trigger.clone(),
        ) {
            Ok(r) => r,
            Err(e) => return rejected(&trigger, &e),
        };
        let approved = step(
            "approval",
            StepStatus::Done,
            format!("approved by {by}; proposed by rule {}", proposal.rule),
        );
        let steps = vec![approved];
        if let Err(r) = self.check_pause(&req, &steps).await {
            return r;
        }
        // Used once: the disk's approval tag names the last approval's nonce.
        let region = req.region.to_string();
        let disk = match self.disk_of(&req).await {
            Ok(d) => d,
            Err(e) => return unavailable(&req, "the disk could not be read", &e, steps),
        };
        let Some((disk_id, used)) = disk else {
            return refused(
                &req,
                OperatorCode::ApprovalInvalid,
                "the disk the approval names does not exist (any more); nothing was run".into(),
                false,
                steps,
            );
        };
        if let Some(v) =
            used.filter(|v| v.split_whitespace().next() == Some(proposal.nonce.as_str()))
        {
            let mut parts = v.split_whitespace().skip(1);
            let at = parts
                .next()
                .and_then(|t| t.parse().ok())
                .and_then(|t| chrono::DateTime::<Utc>::from_timestamp(t, 0))
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let who = parts.next().unwrap_or("unknown");
            tracing::warn!(by = %by, "approval replayed: refused");
            return refused(
                &req,
                OperatorCode::ApprovalReplayed,
                format!("this approval was used at {at} by {who}; nothing was run again"),
                false,
                steps,
            );
        }
        let value = pause::tag_safe(
            &format!("{} {now} {}", proposal.nonce, by.replace(' ', "_")),
            128,
        );
        if let Err(e) = self
            .ecs
            .tag_resources(
                &region,
                "disk",
                &[disk_id],
                &[(pause::APPROVAL_TAG.into(), value)],
            )
            .await
        {
            return unavailable(
                &req,
                "the approval could not be recorded on the disk",
                &e,
                steps,
            );
        }
        let cap = self
            .controls
            .policy
            .rules
            .iter()
            .find(|r| r.name == proposal.rule)
            .and_then(|r| r.cap);
        match self
            .controlled(&req, cap.map(|c| (proposal.rule.as_str(), c)), steps)
            .await
        {
            Ok(steps) => {
                let mut r = Rollback::new(&self.ecs, &self.settings)
                    .run(&req, deadline)
                    .await;
                r.steps.splice(0..0, steps);
                r
            }
            Err(r) => *r,
        }
    }

    /// The disk a request names (or its instance's system disk) and its approval tag.
    async fn disk_of(
        &self,
        req: &RollbackRequest,
    ) -> Result<Option<(String, Option<String>)>, crate::ecs::EcsError> {
        let q = match (&req.disk, &req.instance) {
            (Some(d), _) => DiskQuery {
                ids: vec![d.to_string()],
                ..DiskQuery::default()
            },
            (None, Some(i)) => DiskQuery {
                instance_id: Some(i.to_string()),
                disk_type: Some("system".into()),
                ..DiskQuery::default()
            },
            (None, None) => return Ok(None),
        };
        let disks = self.ecs.describe_disks(req.region.as_str(), &q).await?;
        Ok(disks.into_iter().next().map(|d| {
            let used = d.tags.get(pause::APPROVAL_TAG).map(str::to_owned);
            (d.disk_id, used)
        }))
    }
}

/// The request as a proposal runs it: its fields as given, with its key and region written in.
fn request_value(req: &RollbackRequest) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("regionId".into(), Value::String(req.region.to_string()));
    if let Some(d) = &req.disk {
        m.insert("diskId".into(), Value::String(d.to_string()));
    }
    if let Some(i) = &req.instance {
        m.insert("instanceId".into(), Value::String(i.to_string()));
    }
    match &req.snapshot {
        SnapshotChoice::Id(s) => {
            m.insert("snapshotId".into(), Value::String(s.to_string()));
        }
        SnapshotChoice::Newest { tag, name, before } => {
            let mut sel = serde_json::Map::new();
            if let Some((k, v)) = tag {
                sel.insert("tag".into(), serde_json::json!({"key": k, "value": v}));
            }
            if let Some(n) = name {
                sel.insert("name".into(), Value::String(n.clone()));
            }
            if let Some(b) = before {
                sel.insert("before".into(), Value::String(b.to_rfc3339()));
            }
            if !sel.is_empty() {
                m.insert("snapshot".into(), Value::Object(sel));
            }
        }
    }
    m.insert(
        "idempotencyKey".into(),
        Value::String(req.key.as_str().to_owned()),
    );
    m.insert("dryRun".into(), Value::Bool(req.dry_run));
    m.insert("forceStop".into(), Value::Bool(req.force_stop));
    if let Some(s) = req.start_after_reset {
        m.insert("startAfterReset".into(), Value::Bool(s));
    }
    if let Some(p) = req.preserve_current {
        m.insert("preserveCurrent".into(), Value::Bool(p));
    }
    if let Some(r) = &req.reason {
        m.insert("reason".into(), Value::String(r.clone()));
    }
    Value::Object(m)
}

/// One tag of the region's control key pair.
pub async fn read_tag(
    ecs: &EcsClient,
    region: &str,
    key_pair: &str,
    tag: &str,
) -> Result<Option<String>, crate::ecs::EcsError> {
    let rows = ecs
        .list_tag_resources(region, pause::CONTROL_TYPE, &[key_pair.to_owned()])
        .await?;
    Ok(rows
        .into_iter()
        .find(|t| t.tag_key == tag)
        .map(|t| t.tag_value))
}

/// The region's pause, read from its control key pair (none there, or no key pair: not paused).
pub async fn read_pause(
    ecs: &EcsClient,
    region: &str,
    key_pair: &str,
) -> Result<Option<Paused>, crate::ecs::EcsError> {
    Ok(read_tag(ecs, region, key_pair, pause::PAUSED_TAG)
        .await?
        .map(|v| Paused::decode(&v)))
}
