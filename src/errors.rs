//! The project's own error codes, typed: the ones ECS gives are ECS's strings and stay so; these
//! are ours, each with the wire string a result event carries (README, "The result event").

use std::fmt;

/// One of our codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The request (or the event around it) is not valid: nothing was touched.
    InvalidRequest,
    /// Neither the disk nor its instance carries the opt-in tag.
    NotOptedIn,
    /// The disk was rolled back less than the cooldown ago.
    CooldownActive,
    /// Another run holds the disk (or the ledger changed under this one): retry later.
    RollbackInProgress,
    /// The invocation's deadline came first; the next delivery resumes.
    DeadlineExceeded,
    /// The ledger cannot be written or read.
    LedgerUnavailable,
    /// A phase could not be recorded, so the call after it was not made.
    LedgerWriteFailed,
    /// A state was not reached in time; the next run resumes.
    WaitTimeout,
    /// The undo snapshot could not be taken or failed: nothing was reset.
    UndoSnapshotFailed,
    /// The undo snapshot was not usable in time: nothing was reset.
    UndoSnapshotTimeout,
    /// The run stopped the instance and could not start it again.
    InstanceLeftStopped,
    /// The instance was started again since this key stopped it: no stop, no reset.
    InstanceStartedAgain,
    /// The disk was detached from the instance the run stopped, before its reset.
    DiskNotAttached,
    /// StopInstance did not take after several calls.
    StopFailed,
    /// ResetDisk was not accepted after several tries.
    ResetGaveUp,
    /// A key's earlier failure, its code forgotten (the history marks only that it failed).
    Failed,
    /// A bug: a state the code does not expect.
    Internal,
    /// This delivery's claim could not be renewed in time, so it stopped changing anything;
    /// the next delivery resumes from the ledger.
    ClaimLapsed,
    /// A request without a time whose key the disk's history may have forgotten: nothing was
    /// touched (send `requestedAt`).
    KeyBeyondHorizon,
    /// ResetDisk was accepted, and no sign that the reset ended was seen in time (the instance
    /// stays stopped, as asked); the disk may still be being reset.
    ResetEndUnconfirmed,
    /// The rollback ran and the service check after it said unhealthy (`verify`).
    VerificationFailed,
    /// The rollback ran and the service could not be checked (agent never ready, delivery
    /// timeout, probe never answered for a reason that is not the service's).
    Unverified,
    /// The rollback's check failed and `onVerifyFailure: undo` rolled the disk back to the
    /// undo snapshot this run took.
    RolledBackToUndo,
    /// Another rollback holds the disk's instance (a rollback of another of its disks) and did
    /// not release it in time: nothing was touched; retry later.
    InstanceHeld,
    /// A whole-instance request: the snapshots a rule picks for the disks lie further apart
    /// than `maxSkewSeconds`: nothing was touched.
    SnapshotsApart,
    /// A whole-instance request: some disks were reset and one could not be; the instance was
    /// left stopped rather than run on disks from two points in time (the result says which
    /// disk holds what, and how to finish or undo).
    PartialRollback,
}

impl Code {
    pub const ALL: [Code; 26] = [
        Code::InvalidRequest,
        Code::NotOptedIn,
        Code::CooldownActive,
        Code::RollbackInProgress,
        Code::DeadlineExceeded,
        Code::LedgerUnavailable,
        Code::LedgerWriteFailed,
        Code::WaitTimeout,
        Code::UndoSnapshotFailed,
        Code::UndoSnapshotTimeout,
        Code::InstanceLeftStopped,
        Code::InstanceStartedAgain,
        Code::DiskNotAttached,
        Code::StopFailed,
        Code::ResetGaveUp,
        Code::Failed,
        Code::Internal,
        Code::ClaimLapsed,
        Code::KeyBeyondHorizon,
        Code::ResetEndUnconfirmed,
        Code::VerificationFailed,
        Code::Unverified,
        Code::RolledBackToUndo,
        Code::InstanceHeld,
        Code::SnapshotsApart,
        Code::PartialRollback,
    ];

    /// The code as the result event carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidRequest => "InvalidRequest",
            Code::NotOptedIn => "NotOptedIn",
            Code::CooldownActive => "CooldownActive",
            Code::RollbackInProgress => "RollbackInProgress",
            Code::DeadlineExceeded => "DeadlineExceeded",
            Code::LedgerUnavailable => "LedgerUnavailable",
            Code::LedgerWriteFailed => "LedgerWriteFailed",
            Code::WaitTimeout => "WaitTimeout",
            Code::UndoSnapshotFailed => "UndoSnapshotFailed",
            Code::UndoSnapshotTimeout => "UndoSnapshotTimeout",
            Code::InstanceLeftStopped => "InstanceLeftStopped",
            Code::InstanceStartedAgain => "InstanceStartedAgain",
            Code::DiskNotAttached => "DiskNotAttached",
            Code::StopFailed => "StopFailed",
            Code::ResetGaveUp => "ResetGaveUp",
            Code::Failed => "Failed",
            Code::Internal => "Internal",
            Code::ClaimLapsed => "ClaimLapsed",
            Code::KeyBeyondHorizon => "KeyBeyondHorizon",
            Code::ResetEndUnconfirmed => "ResetEndUnconfirmed",
            Code::VerificationFailed => "VerificationFailed",
            Code::Unverified => "Unverified",
            Code::RolledBackToUndo => "RolledBackToUndo",
            Code::InstanceHeld => "InstanceHeld",
            Code::SnapshotsApart => "SnapshotsApart",
            Code::PartialRollback => "PartialRollback",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<Code> for String {
    fn from(c: Code) -> Self {
        c.as_str().to_owned()
    }
}

/// A code as carried (a `String`, ours or ECS's) compared with one of ours.
impl PartialEq<Code> for String {
    fn eq(&self, other: &Code) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Code> for str {
    fn eq(&self, other: &Code) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_distinct_and_read_back() {
        let mut seen = std::collections::BTreeSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert_eq!(String::from(c), c.to_string());
            let carried: String = c.into();
            assert!(carried == c, "{carried}");
        }
    }

    #[test]
    fn the_readme_lists_every_code() {
        let readme = include_str!("../README.md");
        for c in Code::ALL.iter().filter(|c| {
            !matches!(
                c,
                Code::Internal | Code::Failed | Code::StopFailed | Code::ResetGaveUp
            )
        }) {
            assert!(
                readme.contains(&format!("`{c}`")),
                "README does not name `{c}`"
            );
        }
    }
}

/// The operator's controls' codes (`policy.rs`, `approval.rs`, `pause.rs`), apart from the
/// rollback's own: each refuses before anything changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperatorCode {
    /// Rollbacks in the region are paused (`ecs-rollback pause`).
    Paused,
    /// The policy rule's cap of rollbacks per window is reached.
    CapReached,
    /// The pause switch or a cap could not be read or written: refused rather than run blind.
    ControlUnavailable,
    /// The approval token expired.
    ApprovalExpired,
    /// The approval token is not one this deployment signed, or was altered.
    ApprovalInvalid,
    /// The approval token was used already.
    ApprovalReplayed,
}

impl OperatorCode {
    pub const ALL: [OperatorCode; 6] = [
        OperatorCode::Paused,
        OperatorCode::CapReached,
        OperatorCode::ControlUnavailable,
        OperatorCode::ApprovalExpired,
        OperatorCode::ApprovalInvalid,
        OperatorCode::ApprovalReplayed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorCode::Paused => "Paused",
            OperatorCode::CapReached => "CapReached",
            OperatorCode::ControlUnavailable => "ControlUnavailable",
            OperatorCode::ApprovalExpired => "ApprovalExpired",
            OperatorCode::ApprovalInvalid => "ApprovalInvalid",
            OperatorCode::ApprovalReplayed => "ApprovalReplayed",
        }
    }
}

impl AsRef<str> for OperatorCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}
