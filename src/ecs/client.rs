//! The ECS client: typed calls over one signed request path and one retry loop.
//!
//! Every attempt is signed anew (fresh `SignatureNonce` and `Timestamp`). Reads are retried with
//! backoff when the error is retryable. State-changing calls are retried only when the request
//! certainly did not take effect (the connection was never made, or the gateway throttled it);
//! otherwise the error says `may_have_applied` and the caller re-reads state before deciding.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex as AsyncMutex;

use super::credentials::Signing;
use super::credentials::{Cached, CredentialSource, Credentials, Endpoint};
use super::error::{EcsError, ErrorKind, Retry};
use super::model::{
    parse_time, Ack, AssumeRoleResponse, CreatedSnapshot, DescribeDisksPage, DescribeInstancesPage,
    DescribeSnapshotsPage, Disk, ErrorBody, Instance, ListTagResourcesPage, Snapshot, TagResource,
};
use super::retry::RetryConfig;
use super::transport::{HttpRequest, Transport, TransportError};
use super::{signer, signer_v3};

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
}

impl Action {
    pub const ALL: [Action; 10] = [
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

type Params = Vec<(String, String)>;

fn p(k: impl Into<String>, v: impl Into<String>) -> (String, String) {
    (k.into(), v.into())
}

fn tag_params(params: &mut Params, prefix: &str, tags: &[(String, String)]) {
    for (i, (k, v)) in tags.iter().enumerate() {
        params.push(p(format!("{prefix}.{}.Key", i + 1), k));
        params.push(p(format!("{prefix}.{}.Value", i + 1), v));
    }
}

/// `SignatureDoesNotMatch` messages quote the server's StringToSign, which holds the
/// security token (encoded once or twice): cut its value out before the message goes anywhere.
pub fn redact_token(message: &str) -> String {
    let mut out = message.to_owned();
    for (marker, end) in [
        ("SecurityToken%3D", "%26"),
        ("SecurityToken%253D", "%2526"),
        ("SecurityToken=", "&"),
    ] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(marker) {
            let start = from + pos + marker.len();
            let stop = out[start..].find(end).map_or(out.len(), |e| start + e);
            out.replace_range(start..stop, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    out
}

fn json_ids(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

/// What every Describe call sends: region, page size, one chunk of IDs, tag filters, DryRun.
fn describe_params(
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

/// The pace shared by every call of one client: throttling anywhere slows every call down
/// (the gap between calls doubles, with jitter), success lets it recover (it halves).
#[derive(Debug)]
struct Pace {
    next_allowed: Instant,
    gap: Duration,
    /// When the gap last grew: answers throttled together grow it once, not once each.
    grown_at: Instant,
}

pub struct EcsClient {
    pace: Mutex<Pace>,
    transport: Arc<dyn Transport>,
    endpoint: Endpoint,
    source: CredentialSource,
    assumed: AsyncMutex<Option<Cached>>,
    retry: RetryConfig,
    rng: Mutex<fastrand::Rng>,
    clock: fn() -> DateTime<Utc>,
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
            pace: Mutex::new(Pace {
                next_allowed: Instant::now(),
                gap: Duration::ZERO,
                grown_at: Instant::now(),
            }),
            transport,
            endpoint,
            source,
            assumed: AsyncMutex::new(None),
            retry,
            rng: Mutex::new(fastrand::Rng::new()),
            clock: Utc::now,
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

    /// Replaces the clock that stamps `Timestamp` (tests of clock skew).
    pub fn with_clock(mut self, clock: fn() -> DateTime<Utc>) -> Self {
        self.clock = clock;
        self
    }

    pub fn retry_config(&self) -> &RetryConfig {
        &self.retry
    }

    /// How long to wait before the next call may go out.
    fn pace_wait(&self) -> Duration {
        match self.pace.lock() {
            Ok(mut p) => {
                let now = Instant::now();
                let wait = p.next_allowed.saturating_duration_since(now);
                // Calls leave at least `gap` apart while the API pushes back.
                p.next_allowed = p.next_allowed.max(now) + p.gap;
                wait
            }
            Err(_) => Duration::ZERO,
        }
    }

    fn pace_throttled(&self) {
        // Its own bounds, not the retry loop's: the gap must be able to grow until the calls of
        // every concurrent run together fit under the API's rate.
        const FLOOR: Duration = Duration::from_millis(10);
        const CAP: Duration = Duration::from_millis(500);
        if let Ok(mut p) = self.pace.lock() {
            let now = Instant::now();
            if now.duration_since(p.grown_at) >= p.gap.max(FLOOR) {
                p.gap = (p.gap * 2)
                    .max(FLOOR)
                    .min(CAP)
                    .mul_f64(0.75 + fastrand::f64() / 4.0);
                p.grown_at = now;
            }
            p.next_allowed = p.next_allowed.max(now + p.gap);
        }
    }

    fn pace_ok(&self) {
        if let Ok(mut p) = self.pace.lock() {
            // A success halves the gap. Growth is once per gap period, so under a sustained rate
            // limit the gap settles near it, and under random refusals (which no pace can avoid)
            // it stays small instead of climbing to the cap.
            p.gap /= 2;
            if p.gap < Duration::from_millis(1) {
                p.gap = Duration::ZERO;
            }
        }
    }

    // ---- credentials -------------------------------------------------------------------

    async fn credentials(&self) -> Result<Credentials, EcsError> {
        match &self.source {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::FromRuntime => self
                .runtime_credentials
                .lock()
                .ok()
                .and_then(|c| c.clone())
                .ok_or_else(|| {
                    EcsError::config(
                        "credentials",
                        "no credentials: the runtime sent none (give the function a role) and none are set in the environment",
                    )
                }),
            CredentialSource::AssumeRole { base, role } => {
                let mut cache = self.assumed.lock().await;
                if let Some(c) = cache.as_ref() {
                    if c.is_fresh((self.clock)(), CREDENTIAL_MARGIN) {
                        return Ok(c.credentials.clone());
                    }
                }
                let params = vec![
                    p("RoleArn", &role.role_arn),
                    p("RoleSessionName", &role.session_name),
                    p("DurationSeconds", role.duration_seconds.to_string()),
                ];
                let resp: AssumeRoleResponse = self
                    .call_with(
                        &role.endpoint,
                        STS_VERSION,
                        "AssumeRole",
                        params,
                        CallKind::Read,
                        base,
                    )
                    .await
                    .map_err(|mut e| {
                        e.kind = ErrorKind::Credentials;
                        e
                    })?;
                let sts = resp.credentials;
                let expires_at = parse_time(&sts.expiration).ok_or_else(|| {
                    EcsError::transport(
                        "AssumeRole",
                        ErrorKind::Decode,
                        "Credentials.Expiration is not a time".into(),
                    )
                })?;
                let credentials = Credentials::new(sts.access_key_id, sts.access_key_secret)
                    .with_token(sts.security_token);
                tracing::info!(
                    role_arn = %role.role_arn,
                    expires_at = %expires_at,
                    "assumed role; temporary credentials cached"
                );
                *cache = Some(Cached {
                    credentials: credentials.clone(),
                    expires_at,
                });
                Ok(credentials)
            }
        }
    }

    async fn forget_assumed(&self) {
        *self.assumed.lock().await = None;
    }

    // ---- the request path --------------------------------------------------------------

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
            .call_with(&base, ECS_VERSION, action, params, kind, &creds)
            .await;
        if let Err(e) = &result {
            if e.code()
                .is_some_and(|c| c.starts_with("InvalidSecurityToken"))
            {
                // Temporary credentials went stale early: the next call assumes the role again.
                self.forget_assumed().await;
            }
        }
        result
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

    /// Signature 1.0: every common parameter in the query, signed with HMAC-SHA1.
    fn sign_v1(
        &self,
        method: &'static str,
        base: &Url,
        version: &str,
        action: &str,
        op_params: &Params,
        creds: &Credentials,
    ) -> HttpRequest {
        let mut params: BTreeMap<String, String> = op_params.iter().cloned().collect();
        params.insert("Action".into(), action.into());
        params.insert("Version".into(), version.into());
        params.insert("Format".into(), "JSON".into());
        params.insert("AccessKeyId".into(), creds.access_key_id.clone());
        params.insert("SignatureMethod".into(), "HMAC-SHA1".into());
        params.insert("SignatureVersion".into(), "1.0".into());
        params.insert("SignatureNonce".into(), uuid::Uuid::new_v4().to_string());
        params.insert(
            "Timestamp".into(),
            (self.clock)().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        if let Some(token) = &creds.security_token {
            params.insert("SecurityToken".into(), token.expose().to_owned());
        }
        let signature = signer::signature(method, &params, creds.access_key_secret.expose());
        let query = signer::wire_query(&params, &signature);
        let mut url = base.clone();
        url.set_query(Some(&query));
        HttpRequest {
            method,
            url,
            headers: Vec::new(),
        }
    }

    /// Signature V3: the operation's parameters in the query, the common ones in `x-acs-*`
    /// headers, all of them (and `host`) signed with HMAC-SHA256 into `Authorization`.
    fn sign_v3(
        &self,
        method: &'static str,
        base: &Url,
        version: &str,
        action: &str,
        op_params: &Params,
        creds: &Credentials,
    ) -> HttpRequest {
        let params: BTreeMap<String, String> = op_params.iter().cloned().collect();
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(port)) => format!("{h}:{port}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        let payload = signer_v3::hashed_payload(b"");
        let mut signed = vec![
            ("host".to_owned(), host),
            ("x-acs-action".to_owned(), action.to_owned()),
            ("x-acs-version".to_owned(), version.to_owned()),
            (
                "x-acs-date".to_owned(),
                (self.clock)().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
            (
                "x-acs-signature-nonce".to_owned(),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            ("x-acs-content-sha256".to_owned(), payload.clone()),
        ];
        if let Some(token) = &creds.security_token {
            signed.push(("x-acs-security-token".to_owned(), token.expose().to_owned()));
        }
        let authorization = signer_v3::authorization(
            &creds.access_key_id,
            creds.access_key_secret.expose(),
            method,
            base.path(),
            &params,
            &signed,
            &payload,
        );
        let mut url = base.clone();
        let query = signer_v3::canonical_query(&params);
        url.set_query(if query.is_empty() { None } else { Some(&query) });
        // `host` is signed but written by the HTTP client from the URL, so it is not sent twice.
        let mut headers: Vec<(String, String)> =
            signed.into_iter().filter(|(k, _)| k != "host").collect();
        headers.push(("accept".to_owned(), "application/json".to_owned()));
        headers.push(("authorization".to_owned(), authorization));
        HttpRequest {
            method,
            url,
            headers,
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
        let method = "POST";
        let request = match self.signing {
            Signing::V1 => self.sign_v1(method, base, version, action, op_params, creds),
            Signing::V3 => self.sign_v3(method, base, version, action, op_params, creds),
        };
        let wait = self.pace_wait();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let sent_at = Instant::now();
        let response = self.transport.send(request).await.map_err(|e| match e {
            TransportError::Connect(m) => EcsError::transport(action, ErrorKind::Connect, m),
            TransportError::Timeout(m) => EcsError::transport(action, ErrorKind::Timeout, m),
            TransportError::ResponseLost(m) => {
                EcsError::transport(action, ErrorKind::ResponseLost, m)
            }
        })?;
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
        let err = EcsError::api(action, status, body.code, message, body.request_id);
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

    /// Follows `NextToken` to the end. `page_params` are sent on every page.
    async fn paginate<P, T>(
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
    async fn chunked<T, F, Fut>(&self, ids: &[String], query: F) -> Result<Vec<T>, EcsError>
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
    async fn act(
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
