//! The rollback ledger, kept in the disk's own tags: who holds the disk, which phase the run
//! reached, and which keys finished. Pure: encoding, decoding, and the decision a run takes
//! from what it reads. The orchestrator does the reading and writing.
//!
//! Tags (values within the 128-character limit; keys are stored as digests):
//! - `ecs-rollback:run`: `k=<16 hex>;p=<phase>;t=<unix>;s=<snapshot>;w=<r|s>;e=<r|s>[;i=<instance>][;u=<undo>][;d=<unix>][;f=<code>]`
//!   (`w`: power state when claimed, `e`: power state to end in, `i`: the instance the run
//!   stops and must bring back, whatever the disk is attached to later, `u`: the undo
//!   snapshot, `d`: when the stop was asked, `f`: the failure code);
//! - `ecs-rollback:history`: `t=<unix of the last success>;k=<12 hex>[x],…` newest first
//!   (`x` marks a key that failed);
//! - `ecs-rollback:durations`: `s=<ms>;r=<ms>;a=<ms>;u=<ms>`, how long the stop, the reset, the
//!   start and the undo snapshot took in the disk's last finished rollback (each when measured):
//!   what the next run's waits and estimates start from;
//! - `ecs-rollback:claim:<invocation>`: `<unix>;<16 hex key>[;<unix deadline>]`, written by each
//!   invocation before it acts, renewed beside the run while it runs (`rollback/lease.rs`),
//!   removed when it ends; the deadline is the invocation's own (Lambda, Function Compute),
//!   after which it is certainly gone (see docs/rollback-protocol.md, "Claiming").

mod history;

pub use history::{Durations, History};

use crate::claim::{Claim, CLAIM_PREFIX};
use crate::errors::Code;
use std::collections::BTreeMap;
use std::fmt;

pub const RUN_TAG: &str = "ecs-rollback:run";
pub const HISTORY_TAG: &str = "ecs-rollback:history";
/// How long each step took in the disk's last finished rollback: `Durations`.
pub const DURATIONS_TAG: &str = "ecs-rollback:durations";
/// On a snapshot: the undo snapshot (`preserveCurrent`) of the run whose key digest it holds.
pub const UNDO_TAG: &str = "ecs-rollback:undo-of";
/// Tags a resource may carry (TagResources: "up to 20"; ecs-evidence.md §2, C1).
pub const MAX_TAGS: usize = 20;
/// The most tags the ledger holds on a disk at once, counted before anything changes: the run
/// record, the history, the durations, this run's claim, and the claim of one concurrent
/// delivery (a twin, or another key's contender, which writes its claim before it yields). A run
/// that checks the service (`verify`) holds one more, its mark (`VERIFY_TAG`).
pub const LEDGER_TAGS: usize = 5;

/// `Err(n)`: the disk's own tags (`n`, the ledger's aside) leave no room for the ledger to the
/// end of a rollback (`verifying`: with the service check's mark).
pub fn tag_room<'a>(keys: impl IntoIterator<Item = &'a str>, verifying: bool) -> Result<(), usize> {
    let own = keys.into_iter().filter(|k| !is_ledger_tag(k)).count();
    if own + ledger_tags(verifying) > MAX_TAGS {
        Err(own)
    } else {
        Ok(())
    }
}

/// The ledger's tags at most, for a run that does or does not check the service.
pub fn ledger_tags(verifying: bool) -> usize {
    LEDGER_TAGS + usize::from(verifying)
}

/// A tag of the ledger (what `tag_room` does not count as the disk's own).
pub fn is_ledger_tag(key: &str) -> bool {
    [RUN_TAG, HISTORY_TAG, DURATIONS_TAG, VERIFY_TAG].contains(&key)
        || key.starts_with(CLAIM_PREFIX)
}

/// The service check's progress (`rollback/verify.rs`): `crate::verify::VerifyMark`.
pub const VERIFY_TAG: &str = "ecs-rollback:verify";
/// Finished keys remembered in the history tag.
pub const HISTORY_KEYS: usize = 7;
const TAG_VALUE_MAX: usize = 128;

/// Where a run is. The order is the order of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Claimed,
    Stopping,
    Stopped,
    /// Taking the undo snapshot (`preserveCurrent`): CreateSnapshot asked, not yet usable.
    Preserving,
    /// The undo snapshot is usable; the reset may begin.
    Preserved,
    Resetting,
    Reset,
    Starting,
    /// The instance is Running again; the service check (`verify`) runs (`rollback/verify.rs`;
    /// its invocation in the `ecs-rollback:verify` tag).
    Verifying,
    Done,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Claimed => "claimed",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Preserving => "preserving",
            Phase::Preserved => "preserved",
            Phase::Resetting => "resetting",
            Phase::Reset => "reset",
            Phase::Starting => "starting",
            Phase::Verifying => "verifying",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "claimed" => Phase::Claimed,
            "stopping" => Phase::Stopping,
            "stopped" => Phase::Stopped,
            "preserving" => Phase::Preserving,
            "preserved" => Phase::Preserved,
            "resetting" => Phase::Resetting,
            "reset" => Phase::Reset,
            "starting" => Phase::Starting,
            "verifying" => Phase::Verifying,
            "done" => Phase::Done,
            "failed" => Phase::Failed,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed)
    }

    /// The disk has been (or may have been) reset by this run.
    pub fn reset_issued(self) -> bool {
        self >= Phase::Resetting && self != Phase::Failed
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `ecs-rollback:run` tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// First 16 hex characters of the key's SHA-256.
    pub key: String,
    pub phase: Phase,
    /// Unix time the phase was entered.
    pub since: i64,
    pub snapshot: String,
    /// The instance was running when the run claimed the disk.
    pub was_running: bool,
    /// The instance is to be running at the end.
    pub end_running: bool,
    /// Unix time the stop was asked (for the downtime figure).
    pub stop_at: Option<i64>,
    /// Why the run failed.
    pub failure: Option<String>,
    /// The undo snapshot (`preserveCurrent`) once CreateSnapshot named it.
    pub undo: Option<String>,
    /// The instance the disk was attached to when the run claimed it: the one it stops, and
    /// the one whose power state it restores, even if the disk is detached meanwhile.
    pub instance: Option<String>,
}

impl RunRecord {
    pub fn encode(&self) -> String {
        let b = |x: bool| if x { "r" } else { "s" };
        let mut v = format!(
            "k={};p={};t={};s={};w={};e={}",
            self.key,
            self.phase,
            self.since,
            self.snapshot,
            b(self.was_running),
            b(self.end_running)
        );
        // Then, each only if it still fits a tag value, in order of need: the instance to bring
        // back (an ECS ID is at most 22 characters), the failure code (its presence marks a
        // restart after a failure: a crash then resumes the restart, never a reset; the code is
        // cut to the room left), the stop time (every resume's proof that the instance has not
        // run since this key stopped it, before any reset), the undo snapshot (also found by its
        // own `undo-of` tag, so it gives way first).
        let fits = |v: &String, part: &str| v.len() + part.len() <= TAG_VALUE_MAX;
        if let Some(i) = &self.instance {
            let part = format!(";i={i}");
            if fits(&v, &part) {
                v.push_str(&part);
            }
        }
        if let Some(f) = &self.failure {
            let room = TAG_VALUE_MAX.saturating_sub(v.len() + 3);
            let code: String = f
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
                .take(room)
                .collect();
            v.push_str(&format!(";f={code}"));
        }
        for part in [
            // As seconds before `t` (`D`, a few characters) rather than a unix time (`d`), so
            // it fits beside the undo snapshot's ID; `d` is still read.
            self.stop_at.map(|d| match self.since - d {
                ago if ago >= 0 => format!(";D={ago}"),
                _ => format!(";d={d}"),
            }),
            self.undo.as_ref().map(|u| format!(";u={u}")),
        ]
        .into_iter()
        .flatten()
        {
            if fits(&v, &part) {
                v.push_str(&part);
            }
        }
        v
    }

    /// Ended `failed` for a cause that came after its reset: the service check after the start
    /// (`VerificationFailed`, `Unverified`, `RolledBackToUndo`). The disk was rolled back.
    pub fn failed_after_its_reset(&self) -> bool {
        self.phase == Phase::Failed
            && self.failure.as_deref().is_some_and(|f| {
                [
                    Code::VerificationFailed,
                    Code::Unverified,
                    Code::RolledBackToUndo,
                ]
                .iter()
                .any(|c| f == c.as_str())
            })
    }

    pub fn decode(value: &str) -> Option<Self> {
        let fields: BTreeMap<&str, &str> = value
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let flag = |k: &str| match fields.get(k) {
            Some(&"r") => Some(true),
            Some(&"s") => Some(false),
            _ => None,
        };
        let since: i64 = fields.get("t")?.parse().ok()?;
        Some(RunRecord {
            key: fields.get("k")?.to_string(),
            phase: Phase::parse(fields.get("p")?)?,
            since,
            snapshot: fields.get("s")?.to_string(),
            was_running: flag("w")?,
            end_running: flag("e")?,
            stop_at: match (fields.get("D"), fields.get("d")) {
                (Some(ago), _) => ago.parse::<i64>().ok().and_then(|a| since.checked_sub(a)),
                (None, d) => d.and_then(|d| d.parse().ok()),
            },
            failure: fields.get("f").map(|f| f.to_string()),
            undo: fields.get("u").map(|u| u.to_string()),
            instance: fields.get("i").map(|i| i.to_string()),
        })
    }
}

pub(crate) fn short(digest: &str, n: usize) -> String {
    digest.chars().take(n).collect()
}

/// The key as the run tag stores it.
pub fn run_key(digest: &str) -> String {
    short(digest, 16)
}

/// What the disk's tags say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    pub run: Option<RunRecord>,
    pub history: History,
    /// Claim tags of invocations.
    pub claims: Vec<Claim>,
    /// A run tag that could not be read (hand-edited?): nothing is done while it is there.
    pub unreadable_run: Option<String>,
    /// How long the steps of the disk's last finished rollback took.
    pub durations: Durations,
}

impl Ledger {
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut l = Ledger::default();
        for (k, v) in tags {
            if k == RUN_TAG {
                match RunRecord::decode(v) {
                    Some(r) => l.run = Some(r),
                    None => l.unreadable_run = Some(v.to_owned()),
                }
            } else if k == HISTORY_TAG {
                l.history = History::decode(v);
            } else if k == DURATIONS_TAG {
                l.durations = Durations::decode(v);
            } else if let Some(invocation) = k.strip_prefix(CLAIM_PREFIX) {
                l.claims.push(Claim::parse(invocation, v));
            }
        }
        l
    }
}

/// What a run does, given the ledger. The caller matches on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// This key already succeeded: touch nothing.
    Duplicate,
    /// This key already failed for good: touch nothing, report the failure again.
    AlreadyFailed { code: String },
    /// This key's run stopped part-way: carry on from its phase.
    Resume(RunRecord),
    /// Another key holds the disk and its lease is live: retry later.
    HeldByOther {
        key: String,
        phase: Phase,
        since: i64,
    },
    /// Another key's run was abandoned (lease expired): take the disk, keeping its record of the
    /// power state before anyone touched the instance.
    TakeOver(RunRecord),
    /// The disk was rolled back less than the cooldown ago.
    Cooldown { remaining_secs: i64 },
    /// The ledger cannot be read: refuse.
    Unreadable(String),
    /// The request was made before the disk's last completed rollback finished (a redelivery
    /// days later, a key the history no longer holds): rolling back now would undo that later
    /// rollback. Touch nothing.
    Superseded { completed_at: i64 },
    /// The request carries no time (a direct invoke, an HTTP body with a key) and the history
    /// has filled up, so it may have forgotten this very key: nobody can tell a new key from a
    /// redelivery of a forgotten one. Touch nothing; a request that says when it was made
    /// (`requestedAt`, or a trigger with a time) is decided by that time instead.
    BeyondHorizon { remembered: usize },
    /// Nobody holds the disk.
    Claim,
}

/// How far a stored time may lie ahead of the reader's clock before it is taken as written by
/// a clock that ran ahead. Every writer keeps ECS's clock (`ecs::clock`) to within about a
/// second; a time further ahead came from a writer that did not (an older version, or one whose
/// answers carried no `Date`).
pub const CLOCK_TOLERANCE_SECS: i64 = 5;

/// A stored time from the future, as a reader may count it: at most `now` (the writer's clock
/// ran ahead; the event happened, but not later than now).
fn not_after(t: i64, now: i64) -> i64 {
    if t > now + CLOCK_TOLERANCE_SECS {
        now
    } else {
        t
    }
}

/// When the disk's last rollback completed: the history's last success, or a run record that
/// says `done`.
pub fn last_completed(ledger: &Ledger) -> Option<i64> {
    let done = ledger
        .run
        .as_ref()
        .filter(|r| r.phase == Phase::Done)
        .map(|r| r.since);
    ledger.history.last_success.max(done)
}

/// [`decide`] for a request made at `requested_at` (unix; `None`: now). A request that is
/// neither this key's run nor in the history, made before the disk's last completed rollback,
/// is [`Decision::Superseded`], whatever the history's length: it must not roll the disk back
/// over a later rollback.
pub fn decide_request(
    ledger: &Ledger,
    digest: &str,
    now: i64,
    lease_secs: i64,
    heartbeat_secs: i64,
    cooldown_secs: i64,
    requested_at: Option<i64>,
) -> Decision {
    let d = decide(
        ledger,
        digest,
        now,
        lease_secs,
        heartbeat_secs,
        cooldown_secs,
    );
    let fresh = matches!(
        d,
        Decision::Claim | Decision::TakeOver(_) | Decision::Cooldown { .. }
    );
    match (requested_at, last_completed(ledger)) {
        // A completion stamped in the future came from a writer whose clock ran ahead: when it
        // really happened is unknown, so it supersedes nothing (the cooldown counts it as now).
        (Some(at), Some(completed_at))
            if fresh && at < completed_at && completed_at <= now + CLOCK_TOLERANCE_SECS =>
        {
            Decision::Superseded { completed_at }
        }
        (None, _) if fresh && ledger.history.keys.len() >= HISTORY_KEYS => {
            Decision::BeyondHorizon {
                remembered: ledger.history.keys.len(),
            }
        }
        _ => d,
    }
}

/// Decides, in the protocol's order. `digest` is the key's hex SHA-256.
pub fn decide(
    ledger: &Ledger,
    digest: &str,
    now: i64,
    lease_secs: i64,
    heartbeat_secs: i64,
    cooldown_secs: i64,
) -> Decision {
    let me = run_key(digest);
    if let Some(v) = &ledger.unreadable_run {
        return Decision::Unreadable(v.clone());
    }
    if let Some(run) = &ledger.run {
        if run.key == me {
            return match run.phase {
                Phase::Done => Decision::Duplicate,
                Phase::Failed => Decision::AlreadyFailed {
                    code: run.failure.clone().unwrap_or_else(|| Code::Failed.into()),
                },
                _ => Decision::Resume(run.clone()),
            };
        }
    }
    match ledger.history.find(digest) {
        Some(false) => return Decision::Duplicate,
        Some(true) => {
            return Decision::AlreadyFailed {
                code: Code::Failed.into(),
            }
        }
        None => {}
    }
    // A run past its reset counts for the cooldown even if it never finished.
    let mut last = ledger.history.last_success;
    if let Some(run) = &ledger.run {
        if !run.phase.is_final() {
            if now - run.since <= lease_secs && !abandoned(ledger, run, now, heartbeat_secs) {
                return Decision::HeldByOther {
                    key: run.key.clone(),
                    phase: run.phase,
                    since: run.since,
                };
            }
            if run.phase.reset_issued() {
                last = last.max(Some(run.since));
            }
        }
        // A rollback whose service check then failed (or could not be made, or was undone)
        // did reset the disk: it counts for the cooldown like a success, so an alert that
        // keeps firing does not roll the disk back again and again.
        if run.failed_after_its_reset() {
            last = last.max(Some(run.since));
        }
    }
    if let Some(t) = last.map(|t| not_after(t, now)) {
        let remaining = cooldown_secs - (now - t);
        if cooldown_secs > 0 && remaining > 0 {
            return Decision::Cooldown {
                remaining_secs: remaining,
            };
        }
    }
    match &ledger.run {
        Some(run) if !run.phase.is_final() => Decision::TakeOver(run.clone()),
        _ => Decision::Claim,
    }
}

/// Another key's unfinished run whose holder is gone before its lease is out: no claim of its
/// key is live, and its phase was written longer than a heartbeat ago (a live run renews its
/// claim every beat, so a read lagging a beat or less still shows one). Such a holder can change
/// nothing more (its fence stops it once its claim may have lapsed): a run whose last record
/// could not be written (a brownout of the tag API after its start) or that died. Its disk is
/// taken over (the cooldown still counts its reset) rather than held for the whole lease.
fn abandoned(ledger: &Ledger, run: &RunRecord, now: i64, heartbeat_secs: i64) -> bool {
    now - run.since > heartbeat_secs
        && !ledger
            .claims
            .iter()
            .any(|c| c.key == run.key && c.live(now, heartbeat_secs))
}

/// Who is in the way of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rival {
    /// The 16-hex key it runs (its invocation ID when its claim names none).
    pub key: String,
    /// Another delivery of this very key (an earlier one that may be dead, or a twin).
    pub same_key: bool,
    /// When its claim or run stops counting (unix).
    pub expires_at: i64,
    /// Its claim expires at its invocation's deadline, before its heartbeat would.
    pub by_deadline: bool,
}

/// After this invocation wrote its claim tag and read the tags back: is anyone else in the way?
/// Another invocation's live claim (whatever its key: a twin of this key counts too), or another
/// key's live, unfinished run. A claim is live until its heartbeat is older than
/// `heartbeat_secs` or its invocation's deadline has passed ([`Claim::live`]).
pub fn contested(
    ledger: &Ledger,
    invocation: &str,
    digest: &str,
    now: i64,
    lease_secs: i64,
    heartbeat_secs: i64,
) -> Option<Rival> {
    let me = run_key(digest);
    if let Some(other) = ledger
        .claims
        .iter()
        .find(|c| c.invocation != invocation && c.live(now, heartbeat_secs))
    {
        let expires_at = other.expires_at(heartbeat_secs);
        return Some(Rival {
            key: if other.key.is_empty() {
                other.invocation.clone()
            } else {
                other.key.clone()
            },
            same_key: other.key == me,
            expires_at,
            by_deadline: expires_at < other.at + heartbeat_secs,
        });
    }
    match &ledger.run {
        // An abandoned run (its holder gone, `abandoned`) is taken over within the lease too, as
        // `decide` says: it is no rival.
        Some(run)
            if run.key != me
                && !run.phase.is_final()
                && now - run.since <= lease_secs
                && !abandoned(ledger, run, now, heartbeat_secs) =>
        {
            Some(Rival {
                key: run.key.clone(),
                same_key: false,
                expires_at: run.since + lease_secs,
                by_deadline: false,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::{claim_tag, DEADLINE_GRACE_SECS};

    /// A claim's value for a key given by its digest.
    fn claim_value(now: i64, digest: &str, deadline: Option<i64>) -> String {
        crate::claim::claim_value(now, &run_key(digest), deadline)
    }

    const NOW: i64 = 1_800_000_000;
    const LEASE: i64 = 1200;
    const BEAT: i64 = 120;
    const COOL: i64 = 1800;

    fn digest(k: &str) -> String {
        crate::request::IdempotencyKey::parse(k)
            .expect("key")
            .digest()
    }

    fn run(key: &str, phase: Phase, since: i64) -> RunRecord {
        RunRecord {
            key: run_key(&digest(key)),
            phase,
            since,
            snapshot: "s-bp1webapp0sys00001".into(),
            was_running: true,
            end_running: true,
            stop_at: Some(since),
            failure: None,
            undo: None,
            instance: Some("i-bp1webapp00000001".into()),
        }
    }

    fn ledger(run: Option<RunRecord>, history: History) -> Ledger {
        Ledger {
            run,
            history,
            ..Default::default()
        }
    }

    #[test]
    fn records_round_trip_and_fit_a_tag() {
        let mut r = run("k", Phase::Resetting, NOW);
        r.snapshot = format!("s-{}", "a".repeat(40));
        r.failure = Some("InvalidParameter.KMSKeyId.KMSUnauthorized".into());
        r.phase = Phase::Failed;
        let v = r.encode();
        assert!(v.len() <= TAG_VALUE_MAX, "{} chars: {v}", v.len());
        assert_eq!(RunRecord::decode(&v).map(|d| d.phase), Some(Phase::Failed));
        let plain = run("k", Phase::Starting, NOW);
        assert_eq!(RunRecord::decode(&plain.encode()), Some(plain));
        let mut undo = run(&"k".repeat(40), Phase::Preserving, NOW);
        undo.undo = Some("s-bp1undo00000000001".into());
        undo.stop_at = Some(NOW - 40);
        let v = undo.encode();
        let back = RunRecord::decode(&v).expect("decodes");
        // The instance, the stop time and the undo snapshot all fit with ECS's usual IDs.
        assert_eq!(back, undo, "{v}");
        assert!(v.len() <= TAG_VALUE_MAX, "{} chars: {v}", v.len());
        // A stop time written as a unix time (older records) still reads.
        let old = "k=0123456789abcdef;p=stopped;t=100;s=s-x;w=r;e=r;d=60";
        assert_eq!(RunRecord::decode(old).and_then(|r| r.stop_at), Some(60));
        // Long IDs: the record still fits, the optional parts give way.
        undo.snapshot = format!("s-{}", "a".repeat(40));
        undo.undo = Some(format!("s-{}", "b".repeat(40)));
        undo.failure = Some(Code::UndoSnapshotFailed.into());
        let v = undo.encode();
        assert!(v.len() <= TAG_VALUE_MAX, "{} chars: {v}", v.len());
        let back = RunRecord::decode(&v).expect("decodes");
        assert_eq!(back.snapshot, undo.snapshot);
        assert_eq!(back.phase, Phase::Preserving);
        let mut h = History::default();
        for i in 0..20 {
            h.push(&digest(&format!("key-{i}")), i % 3 == 0, NOW + i);
        }
        h.released = Some(NOW + 99);
        let v = h.encode();
        assert!(v.len() <= TAG_VALUE_MAX, "{} chars: {v}", v.len());
        let back = History::decode(&v);
        assert_eq!(back.released, Some(NOW + 99));
        assert_eq!(back.keys.len(), HISTORY_KEYS);
        assert_eq!(back.find(&digest("key-19")), Some(false));
        assert_eq!(back.find(&digest("key-18")), Some(true));
        assert_eq!(back.find(&digest("key-0")), None, "oldest forgotten");
        assert_eq!(back.last_success, Some(NOW + 19));
    }

    #[test]
    fn decisions_in_protocol_order() {
        let me = digest("mine");
        assert_eq!(
            decide(&Ledger::default(), &me, NOW, LEASE, BEAT, COOL),
            Decision::Claim
        );
        // Mine, done / failed / part-way.
        let l = ledger(Some(run("mine", Phase::Done, NOW - 10)), History::default());
        assert_eq!(decide(&l, &me, NOW, LEASE, BEAT, COOL), Decision::Duplicate);
        let mut f = run("mine", Phase::Failed, NOW - 10);
        f.failure = Some("InvalidParameter.Mismatch".into());
        let l = ledger(Some(f), History::default());
        assert_eq!(
            decide(&l, &me, NOW, LEASE, BEAT, COOL),
            Decision::AlreadyFailed {
                code: "InvalidParameter.Mismatch".into()
            }
        );
        let r = run("mine", Phase::Resetting, NOW - 5000);
        let l = ledger(Some(r.clone()), History::default());
        assert_eq!(
            decide(&l, &me, NOW, LEASE, BEAT, COOL),
            Decision::Resume(r),
            "own run resumes past the lease"
        );
        // Mine, in the history behind another run.
        let mut h = History::default();
        h.push(&me, false, NOW - 100);
        let l = ledger(Some(run("other", Phase::Done, NOW - 50)), h);
        assert_eq!(decide(&l, &me, NOW, LEASE, BEAT, COOL), Decision::Duplicate);
        // Another key, live.
        let l = ledger(
            Some(run("other", Phase::Stopping, NOW - 60)),
            History::default(),
        );
        assert!(matches!(
            decide(&l, &me, NOW, LEASE, BEAT, COOL),
            Decision::HeldByOther {
                phase: Phase::Stopping,
                ..
            }
        ));
        // Another key within the lease, past a heartbeat, and no live claim of its key: the
        // holder is gone (its last write failed, or it died): take over. A live claim of its key
        // holds the disk; a live claim of some other key does not speak for it.
        let gone = run("other", Phase::Resetting, NOW - BEAT - 1);
        let mut l = ledger(Some(gone.clone()), History::default());
        assert_eq!(
            decide(&l, &me, NOW, LEASE, BEAT, 0),
            Decision::TakeOver(gone.clone())
        );
        l.claims.push(Claim {
            invocation: "inv-x".into(),
            at: NOW - 5,
            key: run_key(&digest("third")),
            deadline: None,
        });
        assert_eq!(
            decide(&l, &me, NOW, LEASE, BEAT, 0),
            Decision::TakeOver(gone.clone())
        );
        l.claims.push(Claim {
            invocation: "inv-other".into(),
            at: NOW - 5,
            key: gone.key.clone(),
            deadline: None,
        });
        assert!(matches!(
            decide(&l, &me, NOW, LEASE, BEAT, 0),
            Decision::HeldByOther { .. }
        ));
        // Its claim lapsed too: gone.
        l.claims.last_mut().expect("pushed").at = NOW - BEAT - 1;
        assert_eq!(
            decide(&l, &me, NOW, LEASE, BEAT, 0),
            Decision::TakeOver(gone)
        );
        // Another key, abandoned before its reset: take over.
        let stale = run("other", Phase::Stopped, NOW - LEASE - 1);
        let l = ledger(Some(stale.clone()), History::default());
        assert_eq!(
            decide(&l, &me, NOW, LEASE, BEAT, COOL),
            Decision::TakeOver(stale)
        );
        // Abandoned after its reset, within the cooldown: the reset counts.
        let l = ledger(
            Some(run("other", Phase::Starting, NOW - LEASE - 1)),
            History::default(),
        );
        assert!(matches!(
            decide(&l, &me, NOW, LEASE, BEAT, COOL),
            Decision::Cooldown { .. }
        ));
        // Cooldown after another key's success; off with 0.
        let mut h = History::default();
        h.push(&digest("other"), false, NOW - 100);
        let l = ledger(Some(run("other", Phase::Done, NOW - 100)), h);
        assert_eq!(
            decide(&l, &me, NOW, LEASE, BEAT, COOL),
            Decision::Cooldown {
                remaining_secs: COOL - 100
            }
        );
        assert_eq!(decide(&l, &me, NOW, LEASE, BEAT, 0), Decision::Claim);
        assert_eq!(
            decide(&l, &me, NOW + COOL, LEASE, BEAT, COOL),
            Decision::Claim
        );
        // A failed run of another key does not hold the disk, nor start a cooldown.
        let l = ledger(
            Some(run("other", Phase::Failed, NOW - 1)),
            History::default(),
        );
        assert_eq!(decide(&l, &me, NOW, LEASE, BEAT, COOL), Decision::Claim);
        // A run whose service check failed after its reset does: the disk was rolled back.
        for code in ["VerificationFailed", "Unverified", "RolledBackToUndo"] {
            let mut checked = run("other", Phase::Failed, NOW - 10);
            checked.failure = Some(code.into());
            let l = ledger(Some(checked), History::default());
            assert_eq!(
                decide(&l, &me, NOW, LEASE, BEAT, COOL),
                Decision::Cooldown {
                    remaining_secs: COOL - 10
                },
                "{code}"
            );
        }
        // A run tag nobody can read blocks everything.
        let l = Ledger::from_tags([(RUN_TAG, "garbage")]);
        assert!(matches!(
            decide(&l, &me, NOW, LEASE, BEAT, COOL),
            Decision::Unreadable(_)
        ));
    }

    #[test]
    fn durations_round_trip_merge_and_read_leniently() {
        let d = Durations {
            stop: Some(12_300),
            reset: Some(6_100),
            start: Some(15_200),
            snapshot: None,
        };
        assert_eq!(d.encode(), "s=12300;r=6100;a=15200");
        assert_eq!(Durations::decode(&d.encode()), d);
        let newer = Durations {
            reset: Some(9_000),
            snapshot: Some(40_000),
            ..Default::default()
        };
        let m = d.merge(newer);
        assert_eq!(
            (m.stop, m.reset, m.snapshot),
            (Some(12_300), Some(9_000), Some(40_000))
        );
        assert_eq!(
            Durations::decode("s=x;zz;r=5"),
            Durations {
                reset: Some(5),
                ..Default::default()
            }
        );
        let all = Durations {
            stop: Some(u64::MAX),
            reset: Some(u64::MAX),
            start: Some(u64::MAX),
            snapshot: Some(u64::MAX),
        };
        assert!(all.encode().len() <= TAG_VALUE_MAX);
        let l = Ledger::from_tags([(DURATIONS_TAG, "a=7")]);
        assert_eq!(l.durations.start, Some(7));
    }

    #[test]
    fn the_instance_to_bring_back_is_kept_before_the_optional_parts() {
        let mut r = run("k", Phase::Stopped, NOW);
        r.snapshot = format!("s-{}", "a".repeat(40));
        r.undo = Some(format!("s-{}", "b".repeat(40)));
        r.instance = Some(format!("i-{}", "c".repeat(20)));
        let v = r.encode();
        assert!(v.len() <= TAG_VALUE_MAX, "{} chars: {v}", v.len());
        let back = RunRecord::decode(&v).expect("decodes");
        assert_eq!(back.instance, r.instance, "{v}");
        // Records written before the field existed read as "no instance recorded".
        let old = "k=0123456789abcdef;p=stopped;t=1;s=s-x;w=r;e=r";
        assert_eq!(RunRecord::decode(old).map(|r| r.instance), Some(None));
    }

    #[test]
    fn a_request_older_than_the_last_completed_rollback_is_superseded() {
        let me = digest("redriven-days-later");
        // Seven other keys since: the history no longer holds this one.
        let mut h = History::default();
        for i in 0..HISTORY_KEYS {
            h.push(&digest(&format!("other-{i}")), false, NOW - 7200 + i as i64);
        }
        let l = ledger(None, h);
        let completed = NOW - 7200 + HISTORY_KEYS as i64 - 1;
        assert_eq!(
            decide_request(&l, &me, NOW, LEASE, BEAT, COOL, Some(completed - 1)),
            Decision::Superseded {
                completed_at: completed
            }
        );
        // Made after it: an ordinary claim (the cooldown is over).
        assert_eq!(
            decide_request(&l, &me, NOW, LEASE, BEAT, COOL, Some(completed + 1)),
            Decision::Claim
        );
        // Without a time, with the history full: it may be a forgotten key.
        assert_eq!(
            decide_request(&l, &me, NOW, LEASE, BEAT, COOL, None),
            Decision::BeyondHorizon {
                remembered: HISTORY_KEYS
            }
        );
        // With room left in the history, a timeless key is known or new.
        let mut short = l.clone();
        short.history.keys.pop();
        assert_eq!(
            decide_request(&short, &me, NOW, LEASE, BEAT, COOL, None),
            Decision::Claim
        );
        // A completion stamped in the future (a writer's clock ran ahead) supersedes nothing,
        // and the cooldown counts it as now.
        let ahead = ledger(None, {
            let mut h = History::default();
            h.push(&digest("fast-writer"), false, NOW + 600);
            h
        });
        assert_eq!(
            decide_request(&ahead, &me, NOW, LEASE, BEAT, 0, Some(NOW - 1)),
            Decision::Claim
        );
        assert_eq!(
            decide_request(&ahead, &me, NOW, LEASE, BEAT, COOL, Some(NOW - 1)),
            Decision::Cooldown {
                remaining_secs: COOL
            }
        );
        // Within the tolerance, an ordinary completion.
        let close = ledger(None, {
            let mut h = History::default();
            h.push(&digest("close"), false, NOW + CLOCK_TOLERANCE_SECS);
            h
        });
        assert!(matches!(
            decide_request(&close, &me, NOW, LEASE, BEAT, 0, Some(NOW)),
            Decision::Superseded { .. }
        ));
        // Within the cooldown, an older request is superseded rather than cooled down.
        assert_eq!(
            decide_request(
                &l,
                &me,
                completed + 10,
                LEASE,
                BEAT,
                COOL,
                Some(completed - 5)
            ),
            Decision::Superseded {
                completed_at: completed
            }
        );
        // A `done` run record counts as completed even before the history says so.
        let done = run("someone-else", Phase::Done, NOW - 60);
        let l = ledger(Some(done), History::default());
        assert_eq!(
            decide_request(&l, &me, NOW, LEASE, BEAT, 0, Some(NOW - 120)),
            Decision::Superseded {
                completed_at: NOW - 60
            }
        );
        // The key's own record and the history still answer first: a duplicate stays one.
        let mine = run("redriven-days-later", Phase::Done, NOW - 60);
        let l = ledger(Some(mine), History::default());
        assert_eq!(
            decide_request(&l, &me, NOW, LEASE, BEAT, 0, Some(NOW - 120)),
            Decision::Duplicate
        );
        let part_way = run("redriven-days-later", Phase::Stopped, NOW - 60);
        let mut h = History::default();
        h.push(&digest("x"), false, NOW - 30);
        let l = ledger(Some(part_way.clone()), h);
        assert_eq!(
            decide_request(&l, &me, NOW, LEASE, BEAT, 0, Some(NOW - 120)),
            Decision::Resume(part_way)
        );
    }

    #[test]
    fn a_key_taken_over_past_its_reset_is_remembered_without_a_success() {
        let mut h = History::default();
        h.push(&digest("earlier"), false, NOW - 500);
        let taken = run_key(&digest("taken"));
        h.remember(&taken, false);
        h.remember(&taken, true);
        assert_eq!(
            h.find(&digest("taken")),
            Some(false),
            "once, as first remembered"
        );
        assert_eq!(
            h.last_success,
            Some(NOW - 500),
            "the last success is not moved"
        );
        assert_eq!(History::decode(&h.encode()), h);
        let l = ledger(None, h);
        assert_eq!(
            decide(&l, &digest("taken"), NOW, LEASE, BEAT, 0),
            Decision::Duplicate
        );
    }

    #[test]
    fn contest_after_claiming() {
        const BEAT: i64 = 60;
        let me = digest("mine");
        let mine = claim_tag("inv-mine");
        let now_mine = claim_value(NOW, &me, None);
        let l = Ledger::from_tags([(mine.as_str(), now_mine.as_str())]);
        assert_eq!(contested(&l, "inv-mine", &me, NOW, LEASE, BEAT), None);
        // Another key claiming at the same time.
        let other = claim_tag("inv-other");
        let now_other = claim_value(NOW, &digest("other"), None);
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (other.as_str(), now_other.as_str()),
        ]);
        assert!(contested(&l, "inv-mine", &me, NOW, LEASE, BEAT).is_some());
        // A twin: the same key, another invocation.
        let twin = claim_tag("inv-twin");
        let now_twin = claim_value(NOW, &me, None);
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (twin.as_str(), now_twin.as_str()),
        ]);
        assert!(
            contested(&l, "inv-mine", &me, NOW, LEASE, BEAT).is_some(),
            "a live twin is in the way"
        );
        // A dead invocation's claim (no heartbeat for longer than the timeout) is not.
        let old = claim_value(NOW - BEAT - 1, &me, None);
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (twin.as_str(), old.as_str()),
        ]);
        assert_eq!(
            contested(&l, "inv-mine", &me, NOW, LEASE, BEAT),
            None,
            "a stale claim is ignored"
        );
        let theirs = run("other", Phase::Claimed, NOW).encode();
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (RUN_TAG, theirs.as_str()),
        ]);
        assert!(contested(&l, "inv-mine", &me, NOW, LEASE, BEAT).is_some());
        let ours = run("mine", Phase::Resetting, NOW).encode();
        let l = Ledger::from_tags([(mine.as_str(), now_mine.as_str()), (RUN_TAG, ours.as_str())]);
        assert_eq!(
            contested(&l, "inv-mine", &me, NOW, LEASE, BEAT),
            None,
            "our own run is no rival"
        );
        // Another key's run within the lease, but its holder gone (no live claim of its key,
        // its phase older than a heartbeat): `decide` takes it over, and the contest agrees
        // (the property over the world found them disagreeing: a take-over refused as
        // RollbackInProgress for the whole lease).
        let gone = run("other", Phase::Resetting, NOW - BEAT - 1).encode();
        let l = Ledger::from_tags([(mine.as_str(), now_mine.as_str()), (RUN_TAG, gone.as_str())]);
        assert!(matches!(
            decide(&l, &me, NOW, LEASE, BEAT, 0),
            Decision::TakeOver(_)
        ));
        assert_eq!(contested(&l, "inv-mine", &me, NOW, LEASE, BEAT), None);
        // With a live claim of its key, it is still there.
        let theirs_claim = claim_tag("inv-other");
        let live = claim_value(NOW - 1, &digest("other"), None);
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (theirs_claim.as_str(), live.as_str()),
            (RUN_TAG, gone.as_str()),
        ]);
        assert!(contested(&l, "inv-mine", &me, NOW, LEASE, BEAT).is_some());
    }

    #[test]
    fn a_claim_dies_with_its_invocations_deadline() {
        const BEAT: i64 = 120;
        let me = digest("mine");
        let mine = claim_tag("inv-mine");
        let now_mine = claim_value(NOW, &me, None);
        // An earlier delivery of this key, its heartbeat fresh, its deadline 10 s ago.
        let earlier = claim_tag("inv-earlier");
        let past = claim_value(NOW - 5, &me, Some(NOW - 10));
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (earlier.as_str(), past.as_str()),
        ]);
        assert_eq!(
            l.claims
                .iter()
                .find(|c| c.invocation == "inv-earlier")
                .and_then(|c| c.deadline),
            Some(NOW - 10)
        );
        assert_eq!(
            contested(&l, "inv-mine", &me, NOW, LEASE, BEAT),
            None,
            "past its deadline (and the grace), the holder is gone"
        );
        // Its deadline still ahead: in the way, and said to be this key's, with when it ends.
        let ahead = claim_value(NOW - 5, &me, Some(NOW + 30));
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (earlier.as_str(), ahead.as_str()),
        ]);
        let rival = contested(&l, "inv-mine", &me, NOW, LEASE, BEAT).expect("live");
        assert!(rival.same_key && rival.by_deadline);
        assert_eq!(rival.expires_at, NOW + 30 + DEADLINE_GRACE_SECS);
        // Within the grace after the deadline: still counted (a request may be on the wire).
        let just = claim_value(NOW - 5, &me, Some(NOW - DEADLINE_GRACE_SECS));
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (earlier.as_str(), just.as_str()),
        ]);
        assert!(contested(&l, "inv-mine", &me, NOW, LEASE, BEAT).is_some());
        // Without a deadline (the CLI): the heartbeat timeout alone.
        let cli = claim_value(NOW - BEAT, &me, None);
        let l = Ledger::from_tags([
            (mine.as_str(), now_mine.as_str()),
            (earlier.as_str(), cli.as_str()),
        ]);
        let rival = contested(&l, "inv-mine", &me, NOW, LEASE, BEAT).expect("live");
        assert!(!rival.by_deadline);
        // Old claims (no third field) still read.
        let l = Ledger::from_tags([(earlier.as_str(), "1800000000;0123456789abcdef")]);
        assert_eq!(l.claims[0].deadline, None);
        assert!(claim_value(NOW, &me, Some(NOW + 900)).len() <= 128);
    }
}
