//! One error type for every ECS call: what went wrong, what ECS said (HTTP status, `Code`,
//! `Message`, `RequestId`), whether a retry can help, and whether a state-changing request
//! may have reached the server (so the orchestrator re-reads state before deciding).

use std::fmt;
use std::time::Duration;

/// What a retry can do for a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// Transient: throttling, 5xx, service unavailable, timeouts, connection failures.
    Retryable,
    /// Permanent for this request: wrong input, missing permission, billing, locks, not found.
    NotRetryable,
    /// Retryable only once a state is reached (instance Stopped, snapshot complete, reset
    /// finished): the caller waits for that state, then tries again; never blindly.
    AfterStateChange,
    /// Not a failure: the dry run of this call passed (`DryRunOperation`).
    DryRunSuccess,
    /// Not sent, and not to be tried again by this delivery (its claim may have lapsed); the
    /// next delivery can: not repeated by any loop, reported as retryable.
    NextDelivery,
}

/// How the call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// ECS answered with an error body.
    Api,
    /// The connection could not be made: the request never left.
    Connect,
    /// No answer within the request timeout, after the request was sent.
    Timeout,
    /// The connection broke after the request was sent, or the body could not be read.
    ResponseLost,
    /// The answer was not what the API documents (not JSON, wrong shape).
    Decode,
    /// Our own configuration or input is unusable (endpoint, credentials, a parameter).
    Config,
    /// Credentials could not be obtained (STS AssumeRole failed).
    Credentials,
    /// Not sent: ECS had asked (`x-acs-retry-after`) for this action to wait longer than one
    /// retry may wait.
    Held,
    /// Not sent: the invocation's deadline is too close for a state-changing call (a run never
    /// changes anything once its claim may have lapsed).
    PastDeadline,
    /// Not sent: this delivery's claim on the disk may have lapsed (`rollback/lease.rs`).
    Fenced,
}

/// An error of one ECS (or STS) call, after the client's own retries.
#[derive(Debug, Clone, thiserror::Error)]
pub struct EcsError {
    pub action: String,
    pub kind: ErrorKind,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// ECS error `Code`, e.g. `IncorrectInstanceStatus`.
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    pub retry: Retry,
    /// The request may have been applied by the server (timeout or connection lost after
    /// sending, or a 5xx from behind the gateway). For a state-changing call this means:
    /// re-read the state, do not repeat blindly.
    pub may_have_applied: bool,
    /// Attempts made, including the last.
    pub attempts: u32,
    pub elapsed: Duration,
    /// How long ECS asked the caller to wait before this action is called again
    /// (`x-acs-retry-after` on a throttled answer).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for EcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.action)?;
        if let Some(code) = &self.code {
            write!(f, ": {code}")?;
        }
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " [RequestId {id}]")?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        Ok(())
    }
}

impl EcsError {
    /// An error ECS answered with.
    pub fn api(
        action: &str,
        status: u16,
        code: Option<String>,
        message: String,
        request_id: Option<String>,
    ) -> Self {
        let retry = classify(status, code.as_deref());
        // A 5xx may come from behind the gateway, after the change began; a 4xx is a refusal.
        let may_have_applied = status >= 500;
        Self {
            action: action.to_owned(),
            kind: ErrorKind::Api,
            status: Some(status),
            code,
            message,
            request_id,
            retry,
            may_have_applied,
            attempts: 1,
            elapsed: Duration::ZERO,
            retry_after: None,
        }
    }

    /// A failure below HTTP (or of our own making); `kind` says whether the request may have
    /// reached the server.
    pub fn transport(action: &str, kind: ErrorKind, message: String) -> Self {
        let may_have_applied = matches!(kind, ErrorKind::Timeout | ErrorKind::ResponseLost);
        let retry = match kind {
            ErrorKind::Connect
            | ErrorKind::Timeout
            | ErrorKind::ResponseLost
            | ErrorKind::Held
            | ErrorKind::PastDeadline => Retry::Retryable,
            ErrorKind::Fenced => Retry::NextDelivery,
            _ => Retry::NotRetryable,
        };
        Self {
            action: action.to_owned(),
            kind,
            status: None,
            code: None,
            message,
            request_id: None,
            retry,
            may_have_applied,
            attempts: 1,
            elapsed: Duration::ZERO,
            retry_after: None,
        }
    }

    /// Our own configuration or input is wrong; nothing was sent.
    pub fn config(action: &str, message: impl Into<String>) -> Self {
        Self::transport(action, ErrorKind::Config, message.into())
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn is_retryable(&self) -> bool {
        self.retry == Retry::Retryable
    }

    /// Whether a later delivery may succeed where this one failed (what a report's `retryable`
    /// says): a retryable error, or a request this delivery may no longer send.
    pub fn can_pass(&self) -> bool {
        self.is_retryable() || self.retry == Retry::NextDelivery
    }

    pub fn is_dry_run_success(&self) -> bool {
        self.retry == Retry::DryRunSuccess
    }

    /// Throttled by the API gateway: the request was refused before it was applied (or held
    /// back by us because ECS asked for a pause).
    pub fn is_throttling(&self) -> bool {
        self.code().is_some_and(is_throttling_code) || self.kind == ErrorKind::Held
    }

    /// The code, or a stable stand-in for a failure without one (for result events).
    pub fn code_or_kind(&self) -> String {
        match (&self.code, &self.kind) {
            (Some(c), _) => c.clone(),
            (None, ErrorKind::Connect) => "ConnectionFailed".into(),
            (None, ErrorKind::Timeout) => "Timeout".into(),
            (None, ErrorKind::ResponseLost) => "ResponseLost".into(),
            (None, ErrorKind::Decode) => "InvalidResponse".into(),
            (None, ErrorKind::Config) => "InvalidConfiguration".into(),
            (None, ErrorKind::Credentials) => "CredentialsUnavailable".into(),
            (None, ErrorKind::Held) => "HeldForRetryAfter".into(),
            (None, ErrorKind::PastDeadline) => "DeadlineExceeded".into(),
            (None, ErrorKind::Fenced) => "ClaimLapsed".into(),
            (None, ErrorKind::Api) => match self.status {
                Some(s) => format!("Http{s}"),
                None => "Unknown".into(),
            },
        }
    }
}

/// `Throttling` (403, ECS tables), `Throttling.User` / `Throttling.Api` (400, the gateway), and
/// any `Throttling.*` or `Rejected.Throttling` (terraform-provider-alicloud's `NeedRetry`
/// matches them all): ecs-evidence.md §5.
fn is_throttling_code(code: &str) -> bool {
    code == "Throttling" || code.starts_with("Throttling.") || code == "Rejected.Throttling"
}

/// Classifies an ECS error answer. Every code of the ResetDisk error table
/// (`shared/reference/ResetDisk-api.md`) and the StopInstance/StartInstance codes that matter
/// are listed on purpose; an unknown code falls back on the HTTP status (5xx retryable,
/// anything else not).
pub fn classify(status: u16, code: Option<&str>) -> Retry {
    use Retry::*;
    let Some(code) = code else {
        return if status >= 500 || status == 429 {
            Retryable
        } else {
            NotRetryable
        };
    };
    if is_throttling_code(code) {
        return Retryable;
    }
    match code {
        "DryRunOperation" => DryRunSuccess,
        // Transient server-side failures.
        "InternalError" | "ServiceUnavailable" | "UnknownError" | "InstanceNotReady" => Retryable,
        // Another operation is in flight on the resource: back off, re-read state, try again.
        // `InvalidOperation.Conflict` and `OperationConflict`: terraform-provider-alicloud
        // retries them after disk operations (ecs-evidence.md §1, §6 "client-side").
        "Operation.Conflict" | "InvalidOperation.Conflict" | "OperationConflict" => Retryable,
        // The same ClientToken is still being processed: ask again with it (CreateSnapshot's
        // table, 403 "The previous idempotent request(s) is still processing.", ecs-evidence.md
        // §3); `LastTokenProcessing` is the same answer in other services (terraform).
        "IdempotentProcessing" | "LastTokenProcessing" => Retryable,
        // The request reached the server with a nonce it had seen: a new nonce fixes it,
        // but a state-changing call must re-read state first (the first attempt arrived).
        "SignatureNonceUsed" => Retryable,
        // Waiting states: retry once the state is reached, never blindly.
        "IncorrectInstanceStatus"
        | "IncorrectDiskStatus"
        | "IncorrectDiskStatus.HasUnfinishedSnapshot"
        | "InvalidSnapshotId.NotReady"
        | "InvalidOperation.DiskResetInProgress"
        | "DiskError" => AfterStateChange,
        // CreateSnapshot while another snapshot of the disk is being created, e.g. by an
        // automatic snapshot policy (ecs-evidence.md §3, DOC-SNAP: 403
        // `IncorrectDiskStatus.CreatingSnapshot` "A previous snapshot creation is in process.";
        // the 2025 table adds `QuotaExceed.ConcurrentSnapshotQuota` and
        // `DISK_HAS_CREATING_SNAPSHOT`, CreateSnapshotGroup `TooManyCreatingSnapshots`): wait
        // for it to finish, then ask again.
        "IncorrectDiskStatus.CreatingSnapshot"
        | "QuotaExceed.ConcurrentSnapshotQuota"
        | "DISK_HAS_CREATING_SNAPSHOT"
        | "IncorrectDiskStatus.TooManyCreatingSnapshots" => AfterStateChange,
        // ResetDisk table: permanent for this request.
        "InvalidDiskId.NotFound"
        | "Disk.NotFound"
        | "InvalidSnapshotId.NotFound"
        | "InvalidInstanceId.NotFound"
        | "InstanceLockedForSecurity"
        | "InvalidParameter.Mismatch"
        | "InvalidSnapshot.TooOld"
        | "InstanceExpiredOrInArrears"
        | "OperationDenied"
        | "DiskCategory.OperationNotSupported"
        | "InvalidAccountStatus.NotEnoughBalance"
        | "InvalidAccountStatus.SnapshotServiceUnavailable"
        | "UserNotInTheWhiteList"
        | "InvalidRegionId.MalFormed"
        | "InvalidParameter.KMSKeyId.KMSUnauthorized"
        | "InvalidParameter.KMSKeyId.CMKUnauthorized"
        | "InvalidParameter.KMSKeyId.CMKNotEnabled"
        | "InvalidParameter.KMSKeyId.NotFound" => NotRetryable,
        // StopInstance / StartInstance.
        "InvalidInstanceId.NotSupport"
        | "InsufficientBalance"
        | "InstanceExpired"
        | "DiskInArrears"
        | "OperationDenied.NoStock"
        | "QuotaExceed.ElasticQuota" => NotRetryable,
        // CreateSnapshot (the undo snapshot): ecs-evidence.md §3 (DOC-SNAP, DREPO).
        "QuotaExceed.Snapshot"
        | "QuotaExceed.SnapshotQuota"
        | "InvalidSnapshotName.Malformed"
        | "InvalidDescription.Malformed"
        | "InvalidClientToken.Malformed"
        | "IncorrectDiskStatus.NeverAttached"
        | "IncorrectDiskStatus.NeverUsed"
        | "IncorrectDiskStatus.Invalid"
        | "IncorrectDiskStatus.Transferring" => NotRetryable,
        // TagResources / UntagResources / ListTagResources (the ledger): ecs-evidence.md §2. The
        // 20-tag quota answers 400 `OperationDenied.QuotaExceed` or 403 `QuotaExceed.Tags`.
        "OperationDenied.QuotaExceed"
        | "QuotaExceed.Tags"
        | "Duplicate.TagKey"
        | "NumberExceed.Tags"
        | "NumberExceed.ResourceIds"
        | "InvalidTagCount"
        | "InvalidTagKey.Malformed"
        | "InvalidTagValue.Malformed"
        | "InvalidTag.Mismatch"
        | "InvalidResourceId.NotFound"
        | "InvalidResourceType.NotFound"
        | "InvalidResourceId.NotSupported"
        | "NoPermission.Tag" => NotRetryable,
        // Gateway: signature, credentials, permissions, parameters.
        "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId.Inactive"
        | "Forbidden.AccessKeyDisabled"
        | "InvalidTimeStamp.Expired"
        | "InvalidTimeStamp.Format"
        | "MissingSecurityToken"
        | "InvalidSecurityToken.Expired"
        | "InvalidSecurityToken.Malformed"
        | "InvalidSecurityToken.MismatchWithAccessKey"
        | "Forbidden.RAM"
        | "Forbidden"
        | "NoPermission"
        | "MissingParameter"
        | "InvalidParameter"
        | "IdempotentParameterMismatch"
        | "InvalidVersion" => NotRetryable,
        _ if code.starts_with("MissingParameter.") || code.starts_with("InvalidParameter.") => {
            NotRetryable
        }
        _ if code.starts_with("Forbidden.") => NotRetryable,
        _ if status >= 500 => Retryable,
        _ => NotRetryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the ResetDisk error table, with the classification chosen for it.
    const RESET_DISK_TABLE: &[(u16, &str, Retry)] = &[
        (404, "InvalidDiskId.NotFound", Retry::NotRetryable),
        (404, "Disk.NotFound", Retry::NotRetryable),
        (404, "InvalidSnapshotId.NotFound", Retry::NotRetryable),
        (403, "IncorrectDiskStatus", Retry::AfterStateChange),
        (403, "IncorrectInstanceStatus", Retry::AfterStateChange),
        (403, "InstanceLockedForSecurity", Retry::NotRetryable),
        (403, "InvalidParameter.Mismatch", Retry::NotRetryable),
        (403, "InvalidSnapshot.TooOld", Retry::NotRetryable),
        (403, "InstanceExpiredOrInArrears", Retry::NotRetryable),
        (403, "OperationDenied", Retry::NotRetryable),
        (403, "InvalidSnapshotId.NotReady", Retry::AfterStateChange),
        (500, "InternalError", Retry::Retryable),
        (
            400,
            "DiskCategory.OperationNotSupported",
            Retry::NotRetryable,
        ),
        (
            403,
            "InvalidAccountStatus.NotEnoughBalance",
            Retry::NotRetryable,
        ),
        (
            403,
            "InvalidAccountStatus.SnapshotServiceUnavailable",
            Retry::NotRetryable,
        ),
        (404, "InvalidInstanceId.NotFound", Retry::NotRetryable),
        (403, "Operation.Conflict", Retry::Retryable),
        (403, "UserNotInTheWhiteList", Retry::NotRetryable),
        (400, "InvalidRegionId.MalFormed", Retry::NotRetryable),
        (
            403,
            "InvalidParameter.KMSKeyId.KMSUnauthorized",
            Retry::NotRetryable,
        ),
        // Current page additions (ecs-api.md §5.3).
        (400, "DryRunOperation", Retry::DryRunSuccess),
        (400, "InternalError", Retry::Retryable),
        (
            403,
            "IncorrectDiskStatus.HasUnfinishedSnapshot",
            Retry::AfterStateChange,
        ),
        (
            403,
            "InvalidOperation.DiskResetInProgress",
            Retry::AfterStateChange,
        ),
        (
            403,
            "InvalidParameter.KMSKeyId.CMKUnauthorized",
            Retry::NotRetryable,
        ),
        (
            403,
            "InvalidParameter.KMSKeyId.CMKNotEnabled",
            Retry::NotRetryable,
        ),
        (
            404,
            "InvalidParameter.KMSKeyId.NotFound",
            Retry::NotRetryable,
        ),
    ];

    #[test]
    fn every_reset_disk_code_is_classified_on_purpose() {
        for (status, code, want) in RESET_DISK_TABLE {
            assert_eq!(classify(*status, Some(code)), *want, "{status} {code}");
        }
    }

    #[test]
    fn reset_disk_table_file_has_no_code_left_out() {
        // The reference table itself, parsed: a code added there must be added here.
        let table = include_str!("../../tests/data/ResetDisk-error-codes.txt");
        for line in table.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split_whitespace();
            let status: u16 = parts.next().and_then(|s| s.parse().ok()).expect("status");
            let code = parts.next().expect("code");
            assert!(
                RESET_DISK_TABLE
                    .iter()
                    .any(|(s, c, _)| *s == status && *c == code),
                "{status} {code} is in the ResetDisk table but not classified in this test"
            );
        }
    }

    /// The codes `shared/reference/ecs-evidence.md` found in the real tables and tools, with
    /// the classification chosen for each (its section in the comment).
    #[test]
    fn every_code_of_the_evidence_is_classified_on_purpose() {
        use Retry::*;
        let rows: &[(u16, &str, Retry)] = &[
            // §2 TagResources.
            (400, "OperationDenied.QuotaExceed", NotRetryable),
            (403, "QuotaExceed.Tags", NotRetryable),
            (400, "Duplicate.TagKey", NotRetryable),
            (400, "NumberExceed.Tags", NotRetryable),
            (400, "NumberExceed.ResourceIds", NotRetryable),
            (400, "InvalidTagCount", NotRetryable),
            (404, "InvalidResourceId.NotFound", NotRetryable),
            (404, "InvalidResourceType.NotFound", NotRetryable),
            (404, "MissingParameter.Tags", NotRetryable),
            (403, "NoPermission.Tag", NotRetryable),
            // §3 CreateSnapshot.
            (
                403,
                "IncorrectDiskStatus.CreatingSnapshot",
                AfterStateChange,
            ),
            (403, "QuotaExceed.ConcurrentSnapshotQuota", AfterStateChange),
            (403, "DISK_HAS_CREATING_SNAPSHOT", AfterStateChange),
            (403, "QuotaExceed.Snapshot", NotRetryable),
            (403, "IdempotentParameterMismatch", NotRetryable),
            (403, "IdempotentProcessing", Retryable),
            (403, "InvalidClientToken.Malformed", NotRetryable),
            (400, "IncorrectInstanceStatus", AfterStateChange),
            // §1, §4 StartInstance after a disk operation (terraform's retry set).
            (403, "InvalidOperation.Conflict", Retryable),
            (403, "OperationConflict", Retryable),
            // §5 throttling, whatever the status.
            (403, "Throttling", Retryable),
            (400, "Throttling.User", Retryable),
            (400, "Throttling.Api", Retryable),
            (400, "Throttling.ConcurrentLimitExceeded", Retryable),
            (400, "Rejected.Throttling", Retryable),
        ];
        for (status, code, want) in rows {
            assert_eq!(classify(*status, Some(code)), *want, "{status} {code}");
        }
        let e = EcsError::api("X", 403, Some("Throttling".into()), "m".into(), None);
        assert!(e.is_throttling() && !e.may_have_applied);
    }

    #[test]
    fn gateway_and_transient_codes() {
        assert_eq!(classify(400, Some("Throttling")), Retry::Retryable);
        assert_eq!(classify(400, Some("Throttling.User")), Retry::Retryable);
        assert_eq!(classify(400, Some("Throttling.Api")), Retry::Retryable);
        assert_eq!(classify(503, Some("ServiceUnavailable")), Retry::Retryable);
        assert_eq!(classify(502, None), Retry::Retryable);
        assert_eq!(
            classify(400, Some("SignatureDoesNotMatch")),
            Retry::NotRetryable
        );
        assert_eq!(
            classify(400, Some("InvalidTimeStamp.Expired")),
            Retry::NotRetryable
        );
        assert_eq!(classify(403, Some("Forbidden.RAM")), Retry::NotRetryable);
        assert_eq!(classify(403, Some("DiskError")), Retry::AfterStateChange);
        assert_eq!(classify(500, Some("SomethingNew")), Retry::Retryable);
        assert_eq!(classify(403, Some("SomethingNew")), Retry::NotRetryable);
        assert_eq!(classify(404, None), Retry::NotRetryable);
    }

    #[test]
    fn transport_errors_say_whether_the_request_may_have_applied() {
        let c = EcsError::transport("StopInstance", ErrorKind::Connect, "refused".into());
        assert!(c.is_retryable() && !c.may_have_applied);
        let t = EcsError::transport("StopInstance", ErrorKind::Timeout, "timeout".into());
        assert!(t.is_retryable() && t.may_have_applied);
        let l = EcsError::transport("ResetDisk", ErrorKind::ResponseLost, "reset".into());
        assert!(l.may_have_applied);
        let a = EcsError::api(
            "ResetDisk",
            500,
            Some("InternalError".into()),
            "x".into(),
            None,
        );
        assert!(a.may_have_applied && a.is_retryable());
        let r = EcsError::api(
            "ResetDisk",
            403,
            Some("IncorrectInstanceStatus".into()),
            "x".into(),
            Some("RID".into()),
        );
        assert!(!r.may_have_applied && !r.is_retryable());
        assert_eq!(
            r.to_string(),
            "ResetDisk failed: IncorrectInstanceStatus (HTTP 403): x [RequestId RID]"
        );
    }
}
