//! The ECS client: typed calls over one signed request path and one retry loop.
//!
//! Every attempt is signed anew (fresh `SignatureNonce` and `Timestamp`). Reads are retried with
//! backoff when the error is retryable. State-changing calls are retried only when the request
//! certainly did not take effect (the connection was never made, or the gateway throttled it);
//! otherwise the error says `may_have_applied` and the caller re-reads state before deciding.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex as AsyncMutex;

use crate::ecs::clock::ServerClock;
use crate::ecs::credentials::Signing;
use crate::ecs::credentials::{AssumeRole, Cached, CredentialSource, Credentials, Endpoint};
use crate::ecs::error::{EcsError, ErrorKind, Retry};
use crate::ecs::model::{
    parse_time, Ack, AssumeRoleResponse, CloudAssistantStatusPage, CreatedSnapshot,
    CreatedSnapshotGroup, DescribeDisksPage, DescribeInstancesPage, DescribeSnapshotGroupsPage,
    DescribeSnapshotsPage, Disk, ErrorBody, Instance, InvocationResult, InvocationResultsPage,
    InvocationsPage, ListTagResourcesPage, RanCommand, Snapshot, SnapshotGroup, TagResource,
};
use crate::ecs::retry::RetryConfig;
use crate::ecs::transport::{HttpRequest, Transport, TransportError};
use crate::ecs::{signer, signer_v3};

mod auth;
mod calls;
mod pace;

pub use auth::redact_token;
use calls::{p, Params};
pub use calls::{
    DiskQuery, GroupDisks, InstanceQuery, RunCommandSpec, SnapshotGroupRequest, SnapshotQuery,
    StopOptions, StoppedMode, MAX_GROUP_IDS,
};
use pace::Pace;

tokio::task_local! {
    /// The ECS requests sent on behalf of the future running in [`counting`].
    static SENT: Arc<std::sync::atomic::AtomicU64>;
}

/// Runs `fut`, counting the ECS requests it sends (every attempt, throttled ones included; a
/// read a drill's runs share counts for the run that made it): `(its output, the count)`.
pub async fn counting<F: std::future::Future>(fut: F) -> (F::Output, u64) {
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let out = SENT.scope(sent.clone(), fut).await;
    (out, sent.load(std::sync::atomic::Ordering::Relaxed))
}

/// A check made right before each state-changing request leaves (after the pace and between
/// retries): `Err(why)` and the request is not sent. How a run stops changing anything once
/// its claim may have lapsed, however long a call waited in the client.
pub type Fence = Arc<dyn Fn(&str) -> Result<(), (ErrorKind, String)> + Send + Sync>;

tokio::task_local! {
    static FENCE: Fence;
    /// Set for a request that goes ahead of the pace (a claim's renewal: one call per quarter
    /// of the heartbeat timeout, which must not queue behind a drill's polling).
    static URGENT: ();
}

/// Runs `fut` with every state-changing request it makes checked by `fence` first.
pub async fn fenced<F: std::future::Future>(fence: Fence, fut: F) -> F::Output {
    FENCE.scope(fence, fut).await
}

/// Runs `fut` with its requests sent ahead of the client's pace (retry-after holds still apply).
pub async fn urgent<F: std::future::Future>(fut: F) -> F::Output {
    URGENT.scope((), fut).await
}

pub const ECS_VERSION: &str = "2014-05-26";
pub const STS_VERSION: &str = "2015-04-01";
/// IDs per Describe call (`InstanceIds`, `DiskIds`, `SnapshotIds` take at most 100).
pub const MAX_IDS: usize = 100;
/// Resources per Tag call (`ResourceId.N`, N from 1 to 50).
pub const MAX_TAG_RESOURCES: usize = 50;
/// Safety bound on pages followed for one query.
const MAX_PAGES: usize = 1000;
/// Renew assumed-role credentials this long before they expire.
const CREDENTIAL_MARGIN: Duration = Duration::from_secs(180);
/// Keys read from a secret (`CredentialSource::AwsSecret`) are read again this often, and at
/// once when ECS refuses them: a rotated secret is picked up without a deploy.
const SECRET_REREAD: Duration = Duration::from_secs(300);

/// ECS refused the credentials themselves (a rotated or disabled key, an expired token): the
/// request was not authenticated, so nothing of it was applied.
fn credentials_refused(code: &str) -> bool {
    code.starts_with("InvalidSecurityToken")
        || code.starts_with("InvalidAccessKeyId")
        || code == "SignatureDoesNotMatch"
}

/// Every ECS action the client can call. The RAM policy in the README grants exactly these
/// (`tests/it/least_privilege.rs` compares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    DescribeInstances,
    DescribeDisks,
    DescribeSnapshots,
    StopInstance,
    StartInstance,
    ResetDisk,
    TagResources,
    UntagResources,
    ListTagResources,
    CreateSnapshot,
    /// Cloud Assistant (a `verify` command): the agent's readiness, the command, its end.
    DescribeCloudAssistantStatus,
    RunCommand,
    DescribeInvocations,
    DescribeInvocationResults,
    /// Snapshot-consistent groups: one snapshot of several disks at one moment (a change, fenced
    /// like CreateSnapshot), and their read.
    CreateSnapshotGroup,
    DescribeSnapshotGroups,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::DescribeInstances,
        Action::DescribeDisks,
        Action::DescribeSnapshots,
        Action::StopInstance,
        Action::StartInstance,
        Action::ResetDisk,
        Action::TagResources,
        Action::UntagResources,
        Action::ListTagResources,
        Action::CreateSnapshot,
        Action::DescribeCloudAssistantStatus,
        Action::RunCommand,
        Action::DescribeInvocations,
        Action::DescribeInvocationResults,
        Action::CreateSnapshotGroup,
        Action::DescribeSnapshotGroups,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::DescribeInstances => "DescribeInstances",
            Action::DescribeDisks => "DescribeDisks",
            Action::DescribeSnapshots => "DescribeSnapshots",
            Action::StopInstance => "StopInstance",
            Action::StartInstance => "StartInstance",
            Action::ResetDisk => "ResetDisk",
            Action::TagResources => "TagResources",
            Action::UntagResources => "UntagResources",
            Action::ListTagResources => "ListTagResources",
            Action::CreateSnapshot => "CreateSnapshot",
            Action::DescribeCloudAssistantStatus => "DescribeCloudAssistantStatus",
            Action::RunCommand => "RunCommand",
            Action::DescribeInvocations => "DescribeInvocations",
            Action::DescribeInvocationResults => "DescribeInvocationResults",
            Action::CreateSnapshotGroup => "CreateSnapshotGroup",
            Action::DescribeSnapshotGroups => "DescribeSnapshotGroups",
        }
    }

    /// Its place in [`Action::ALL`]; the match makes a new variant fail to compile until listed.
    #[cfg(test)]
    const fn index(self) -> usize {
        match self {
            Action::DescribeInstances => 0,
            Action::DescribeDisks => 1,
            Action::DescribeSnapshots => 2,
            Action::StopInstance => 3,
            Action::StartInstance => 4,
            Action::ResetDisk => 5,
            Action::TagResources => 6,
            Action::UntagResources => 7,
            Action::ListTagResources => 8,
            Action::CreateSnapshot => 9,
            Action::DescribeCloudAssistantStatus => 10,
            Action::RunCommand => 11,
            Action::DescribeInvocations => 12,
            Action::DescribeInvocationResults => 13,
            Action::CreateSnapshotGroup => 14,
            Action::DescribeSnapshotGroups => 15,
        }
    }
}

/// Whether a call changes state: decides what the retry loop may repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Read,
    Write,
    /// A change made idempotent by a `ClientToken`: repeated like a read, since the same token
    /// returns the first call's result instead of changing anything again.
    IdempotentWrite,
}

pub struct EcsClient {
    pace: Mutex<Pace>,
    transport: Arc<dyn Transport>,
    endpoint: Endpoint,
    source: CredentialSource,
    assumed: AsyncMutex<Option<Cached>>,
    retry: RetryConfig,
    rng: Mutex<fastrand::Rng>,
    clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    /// What ECS's answers said of its clock (`Date`): the one clock of the ledger.
    server_clock: Mutex<ServerClock>,
    signing: Signing,
    /// For `CredentialSource::FromRuntime`: the credentials the front door last provided.
    runtime_credentials: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsClient")
            .field("endpoint", &self.endpoint)
            .field("source", &self.source)
            .field("retry", &self.retry)
            .field("signing", &self.signing)
            .finish_non_exhaustive()
    }
}

impl EcsClient {
    pub fn new(
        transport: Arc<dyn Transport>,
        endpoint: Endpoint,
        source: CredentialSource,
        retry: RetryConfig,
    ) -> Self {
        Self {
            pace: Mutex::new(Pace::new()),
            transport,
            endpoint,
            source,
            assumed: AsyncMutex::new(None),
            retry,
            rng: Mutex::new(fastrand::Rng::new()),
            clock: Arc::new(Utc::now),
            server_clock: Mutex::new(ServerClock::default()),
            signing: Signing::V1,
            runtime_credentials: Mutex::new(None),
        }
    }

    /// Credentials the runtime gave with an invocation (used with `CredentialSource::FromRuntime`;
    /// ignored otherwise, so credentials set in the environment keep precedence).
    pub fn provide_runtime_credentials(&self, credentials: Credentials) {
        if matches!(self.source, CredentialSource::FromRuntime) {
            if let Ok(mut slot) = self.runtime_credentials.lock() {
                *slot = Some(credentials);
            }
        }
    }

    /// Signs with `signing` (V1 HMAC-SHA1 unless told).
    pub fn with_signing(mut self, signing: Signing) -> Self {
        self.signing = signing;
        self
    }

    /// Replaces this host's clock (tests of clock skew: a host minutes off).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// This host's clock runs `offset` ahead of the true time (behind, if negative): the
    /// simulator's per-caller clock offsets (`Scenario::clock_offsets_ms`).
    pub fn with_clock_offset(self, offset: chrono::TimeDelta) -> Self {
        self.with_clock(move || Utc::now() + offset)
    }

    /// The time as ECS's clock reads it: this host's clock, corrected by what ECS's answers
    /// said (`clock.rs`). Every time the ledger stores or compares comes from here, so writers
    /// whose clocks disagree still agree on it; before any answer, this host's own clock.
    pub fn now(&self) -> DateTime<Utc> {
        let host = (self.clock)();
        match self.server_clock.lock() {
            Ok(c) => c.ecs_time(host),
            Err(p) => p.into_inner().ecs_time(host),
        }
    }

    /// What the answers so far say of ECS's clock (for the result's warnings and `status`).
    pub fn server_clock(&self) -> ServerClock {
        match self.server_clock.lock() {
            Ok(c) => *c,
            Err(p) => *p.into_inner(),
        }
    }

    fn observe_date(&self, sent: DateTime<Utc>, date: Option<DateTime<Utc>>) {
        let Some(date) = date else { return };
        let received = (self.clock)();
        let mut c = match self.server_clock.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        c.observe(sent, received, date);
    }

    pub fn retry_config(&self) -> &RetryConfig {
        &self.retry
    }

    /// One ECS call: sign, send, retry as allowed, parse.
    pub async fn call<T: DeserializeOwned>(
        &self,
        region: &str,
        action: Action,
        params: Params,
        kind: CallKind,
    ) -> Result<T, EcsError> {
        let action = action.as_str();
        let base = self
            .endpoint
            .url_for(region)
            .map_err(|e| EcsError::config(action, e))?;
        let creds = self.credentials().await?;
        let result = self
            .call_with(&base, ECS_VERSION, action, params.clone(), kind, &creds)
            .await;
        let refused = matches!(&result, Err(e) if e.code().is_some_and(credentials_refused));
        if !refused
            || matches!(
                self.source,
                CredentialSource::Static(_) | CredentialSource::FromRuntime
            )
        {
            return result;
        }
        // Temporary credentials gone stale early, or a secret rotated: fetched again, and the
        // call sent once more when they changed (a refused request was not applied).
        self.forget_assumed().await;
        let fresh = self.credentials().await?;
        if fresh == creds {
            return result;
        }
        tracing::info!(
            action,
            source = self.source.name(),
            "credentials refused; fetched again"
        );
        self.call_with(&base, ECS_VERSION, action, params, kind, &fresh)
            .await
    }

    async fn call_with<T: DeserializeOwned>(
        &self,
        base: &Url,
        version: &str,
        action: &str,
        params: Params,
        kind: CallKind,
        creds: &Credentials,
    ) -> Result<T, EcsError> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = self
                .attempt(base, version, action, &params, kind, creds)
                .await;
            let mut err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let repeatable = match kind {
                CallKind::Read | CallKind::IdempotentWrite => err.is_retryable(),
                // A write is repeated only when it certainly did not take effect.
                CallKind::Write => {
                    !err.may_have_applied && (err.kind == ErrorKind::Connect || err.is_throttling())
                }
            };
            let delay = match self.rng.lock() {
                Ok(mut rng) => self.retry.delay(attempt - 1, &mut rng),
                Err(_) => self.retry.ceiling(attempt - 1),
            };
            // ECS's own word on when to come back wins over our guess.
            let delay = err.retry_after.map_or(delay, |r| r.max(delay));
            if repeatable && self.retry.allows(attempt, started.elapsed(), delay) {
                tracing::warn!(
                    action,
                    attempt,
                    code = err.code_or_kind(),
                    request_id = err.request_id.as_deref().unwrap_or(""),
                    delay_ms = delay.as_millis() as u64,
                    "ECS call failed; retrying"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            err.attempts = attempt;
            err.elapsed = started.elapsed();
            return Err(err);
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        base: &Url,
        version: &str,
        action: &str,
        op_params: &Params,
        kind: CallKind,
        creds: &Credentials,
    ) -> Result<T, EcsError> {
        let held = self.pace_held(action);
        if held > self.retry.max_delay {
            // Longer than one retry may wait: not sent, said as such; the caller's own loop
            // (bounded by its deadline) comes back later.
            let mut e = EcsError::transport(
                action,
                ErrorKind::Held,
                format!(
                    "not sent: ECS asked (x-acs-retry-after) that {action} wait {} ms more",
                    held.as_millis()
                ),
            );
            e.retry_after = Some(held);
            return Err(e);
        }
        if !held.is_zero() {
            tokio::time::sleep(held).await;
        }
        let method = "POST";
        let request = match self.signing {
            Signing::V1 => self.sign_v1(method, base, version, action, op_params, creds),
            Signing::V3 => self.sign_v3(method, base, version, action, op_params, creds),
        };
        if URGENT.try_with(|_| ()).is_err() {
            self.pace_turn().await;
        }
        if kind != CallKind::Read {
            if let Ok(Err((kind, why))) = FENCE.try_with(|fence| fence(action)) {
                return Err(EcsError::transport(
                    action,
                    kind,
                    format!("not sent: {why}"),
                ));
            }
        }
        let sent_at = Instant::now();
        let sent_wall = (self.clock)();
        let _ = SENT.try_with(|n| n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let response = self.transport.send(request).await.map_err(|e| match e {
            TransportError::Connect(m) => EcsError::transport(action, ErrorKind::Connect, m),
            TransportError::Timeout(m) => EcsError::transport(action, ErrorKind::Timeout, m),
            TransportError::ResponseLost(m) => {
                EcsError::transport(action, ErrorKind::ResponseLost, m)
            }
        })?;
        self.observe_date(sent_wall, response.date);
        let status = response.status;
        if (200..300).contains(&status) {
            self.pace_ok();
            let parsed = serde_json::from_slice::<T>(&response.body).map_err(|e| {
                let mut err = EcsError::transport(
                    action,
                    ErrorKind::Decode,
                    format!("unexpected response body: {e}"),
                );
                err.status = Some(status);
                // The server answered success: the change, if any, was made.
                err.may_have_applied = kind != CallKind::Read;
                err
            })?;
            tracing::debug!(
                action,
                status,
                elapsed_ms = sent_at.elapsed().as_millis() as u64,
                "ECS call ok"
            );
            return Ok(parsed);
        }
        let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
        let message = redact_token(&body.message.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&response.body);
            text.chars().take(200).collect()
        }));
        let mut err = EcsError::api(action, status, body.code, message, body.request_id);
        if let Some(after) = response.retry_after.filter(|_| err.is_throttling()) {
            err.retry_after = Some(after);
            self.pace_hold(action, after);
        }
        if err.is_throttling() {
            self.pace_throttled();
        } else {
            self.pace_ok();
        }
        if err.retry != Retry::DryRunSuccess {
            tracing::debug!(
                action,
                status,
                code = err.code_or_kind(),
                request_id = err.request_id.as_deref().unwrap_or(""),
                "ECS call refused"
            );
        }
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::{redact_token, Action};

    #[test]
    fn all_actions_are_listed_once() {
        for (i, a) in Action::ALL.iter().enumerate() {
            assert_eq!(a.index(), i, "{a:?}");
        }
    }

    #[test]
    fn the_token_is_cut_out_of_a_quoted_string_to_sign() {
        let m = "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3DSTS.x%26SecurityToken%3DCAIS%252Babc%26SignatureMethod%3DHMAC-SHA1";
        let r = redact_token(m);
        assert!(!r.contains("CAIS"), "{r}");
        assert!(r.contains("SecurityToken%3D<redacted>%26SignatureMethod"));
        assert_eq!(
            redact_token("SecurityToken=abc&x=1"),
            "SecurityToken=<redacted>&x=1"
        );
        assert_eq!(
            redact_token("SecurityToken%3Dabc"),
            "SecurityToken%3D<redacted>"
        );
    }
}
