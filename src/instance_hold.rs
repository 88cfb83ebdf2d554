//! The instance hold (docs/rollback-protocol.md, "The instance hold"): a rollback of any disk
//! of an instance holds the instance, in the instance's own tags, so rollbacks of two disks of
//! one instance never interleave, and the power state to restore is recorded once, by the first
//! holder. Pure: the tag's name and value, the tag budget, whether a holder is live, and what a
//! run that wants the instance does. The I/O is `rollback/instance_hold.rs`.
//!
//! One tag per holding invocation, `ecs-rollback:instance:<invocation>` =
//! `k=<16 hex key>;d=<disk>;w=<r|s>;t=<unix>`: tags have no compare-and-swap, so, as for the
//! disk's claims, each contender writes its own tag, reads the tags back after the settle time,
//! and yields to another key's (`contested`). `w` is the power state to restore: observed by
//! the first holder, inherited by whoever takes over a holder that is gone. `t` is when the tag
//! was written (ECS's clock); the holder's liveness is its disk's: the claim of the same
//! invocation on disk `d` (`holder_state`).

use crate::ledger::{Ledger, MAX_TAGS};

/// The hold tag's name, before the invocation.
pub const HOLD_PREFIX: &str = "ecs-rollback:instance:";
/// The most hold tags an instance carries at once, counted before anything changes: the
/// holder's, a twin's (another delivery of the same key) and a contender's (which writes its
/// tag before it yields).
pub const HOLD_TAGS: usize = 3;

/// The hold tag of one invocation.
pub fn hold_tag(invocation: &str) -> String {
    format!("{HOLD_PREFIX}{invocation}")
}

pub fn is_hold_tag(key: &str) -> bool {
    key.starts_with(HOLD_PREFIX)
}

/// `Err(n)`: the instance's own tags (`n`, the holds aside) leave no room for the holds.
pub fn room<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<(), usize> {
    let own = keys.into_iter().filter(|k| !is_hold_tag(k)).count();
    if own + HOLD_TAGS > MAX_TAGS {
        Err(own)
    } else {
        Ok(())
    }
}

/// One invocation's hold on the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub invocation: String,
    /// The 16-hex key it runs (the run tag's).
    pub key: String,
    /// The disk it rolls back: where its liveness is read.
    pub disk: String,
    /// The power state to restore.
    pub was_running: bool,
    /// When the tag was written (unix, ECS's clock).
    pub at: i64,
}

impl Hold {
    pub fn encode(&self) -> String {
        let w = if self.was_running { "r" } else { "s" };
        format!("k={};d={};w={w};t={}", self.key, self.disk, self.at)
    }

    /// `None` for a value that does not read (hand-edited): it holds nothing.
    pub fn parse(invocation: &str, value: &str) -> Option<Self> {
        let (mut key, mut disk, mut w, mut at) = (None, None, None, None);
        for kv in value.split(';') {
            match kv.split_once('=') {
                Some(("k", k)) if !k.is_empty() => key = Some(k.to_owned()),
                Some(("d", d)) if !d.is_empty() => disk = Some(d.to_owned()),
                Some(("w", "r")) => w = Some(true),
                Some(("w", "s")) => w = Some(false),
                Some(("t", t)) => at = t.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            invocation: invocation.to_owned(),
            key: key?,
            disk: disk?,
            was_running: w?,
            at: at?,
        })
    }
}

/// The holds among an instance's tags, and the names of hold tags that do not read.
pub fn holds<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Vec<Hold>, Vec<String>) {
    let (mut holds, mut unreadable) = (Vec::new(), Vec::new());
    for (k, v) in tags {
        if let Some(invocation) = k.strip_prefix(HOLD_PREFIX) {
            match Hold::parse(invocation, v) {
                Some(h) => holds.push(h),
                None => unreadable.push(k.to_owned()),
            }
        }
    }
    (holds, unreadable)
}

/// What a hold's disk says of its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderState {
    /// It runs (its invocation's claim on its disk is live, or it wrote its hold or its phase
    /// less than a heartbeat ago): wait for it.
    Live,
    /// Its key finished (final record, or in the disk's history), or nothing of it is left on
    /// its disk past a heartbeat (it changed nothing): the instance is in its final power
    /// state; the tag is left-over.
    Finished,
    /// Its run is unfinished and nobody runs it (no live claim, its phase and its hold older
    /// than a heartbeat): it died, or ended retryable with the instance possibly stopped. Its
    /// `w` is inherited by whoever takes over.
    Gone,
}

/// Whether `hold`'s holder is live, from its disk's ledger (`None`: the disk cannot be read
/// as there: gone or detached).
pub fn holder_state(
    hold: &Hold,
    disk: Option<&Ledger>,
    now: i64,
    heartbeat_secs: i64,
) -> HolderState {
    let recent = |t: i64| now - t <= heartbeat_secs;
    let Some(ledger) = disk else {
        return if recent(hold.at) {
            HolderState::Live
        } else {
            HolderState::Finished
        };
    };
    if ledger
        .claims
        .iter()
        .any(|c| c.invocation == hold.invocation && c.live(now, heartbeat_secs))
    {
        return HolderState::Live;
    }
    let finished_record = ledger
        .run
        .as_ref()
        .is_some_and(|r| r.key == hold.key && r.phase.is_final());
    if finished_record || ledger.history.find(&hold.key).is_some() {
        return HolderState::Finished;
    }
    match ledger.run.as_ref().filter(|r| r.key == hold.key) {
        Some(r) if recent(r.since.max(hold.at)) => HolderState::Live,
        Some(_) => HolderState::Gone,
        None if recent(hold.at) => HolderState::Live,
        None => HolderState::Finished,
    }
}

/// What a run that wants the instance does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Another key's holder is live: wait for it.
    Wait(Hold),
    /// Take the hold. `inherit`: the power state to restore recorded by a holder that is gone,
    /// or by an earlier delivery of this very key (the instance may be stopped by it);
    /// `superseded`: the tags of holders that are gone or finished, removed when this run
    /// releases its own.
    Take {
        inherit: Option<bool>,
        superseded: Vec<String>,
    },
}

/// The verdict over the other invocations' holds (each with its holder's state) for a run of
/// `key`; `unreadable` hold tags are superseded.
pub fn verdict(others: &[(Hold, HolderState)], key: &str, unreadable: &[String]) -> Verdict {
    if let Some((h, _)) = others
        .iter()
        .find(|(h, s)| h.key != key && *s == HolderState::Live)
    {
        return Verdict::Wait(h.clone());
    }
    let inherit = others
        .iter()
        .find(|(h, s)| h.key == key && *s != HolderState::Finished)
        .or_else(|| others.iter().find(|(_, s)| *s == HolderState::Gone))
        .map(|(h, _)| h.was_running);
    let superseded = others
        .iter()
        .filter(|(_, s)| *s != HolderState::Live)
        .map(|(h, _)| hold_tag(&h.invocation))
        .chain(unreadable.iter().cloned())
        .collect();
    Verdict::Take {
        inherit,
        superseded,
    }
}

/// After this invocation wrote its hold and read the tags back: another key's hold that is not
/// one this run found gone or finished (a contender that wrote meanwhile) is in the way.
pub fn contested<'a>(
    seen: &'a [Hold],
    invocation: &str,
    key: &str,
    superseded: &[String],
) -> Option<&'a Hold> {
    seen.iter().find(|h| {
        h.invocation != invocation && h.key != key && !superseded.contains(&hold_tag(&h.invocation))
    })
}

/// The holds as an operator reads them (`status`, `release`): one line each.
pub fn describe(instance: &str, holds: &[Hold], now: i64) -> Vec<String> {
    if holds.is_empty() {
        return vec![format!("instance {instance}: not held")];
    }
    holds
        .iter()
        .map(|h| {
            format!(
                "instance {instance}: HELD by key {} (disk {}, invocation {}), power state to restore: {}, hold written {}s ago",
                h.key,
                h.disk,
                h.invocation,
                if h.was_running { "running" } else { "stopped" },
                (now - h.at).max(0)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::{claim_tag, claim_value};
    use crate::ledger::{Phase, RunRecord, RUN_TAG};

    const NOW: i64 = 1_800_000_000;
    const BEAT: i64 = 120;
    const A: &str = "aaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbb";

    fn hold(invocation: &str, key: &str, running: bool, at: i64) -> Hold {
        Hold {
            invocation: invocation.into(),
            key: key.into(),
            disk: "d-bp1webapp0000sys01".into(),
            was_running: running,
            at,
        }
    }

    fn record(key: &str, phase: Phase, since: i64) -> RunRecord {
        RunRecord {
            key: key.into(),
            phase,
            since,
            snapshot: "s-bp1webapp0sys00001".into(),
            was_running: true,
            end_running: true,
            stop_at: None,
            failure: None,
            undo: None,
            instance: Some("i-bp1webapp00000001".into()),
        }
    }

    fn disk(tags: &[(String, String)]) -> Ledger {
        Ledger::from_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    #[test]
    fn a_hold_reads_back_fits_a_tag_and_a_bad_one_holds_nothing() {
        let h = hold("0123456789abcdef", A, true, NOW);
        let v = h.encode();
        assert_eq!(v, format!("k={A};d=d-bp1webapp0000sys01;w=r;t={NOW}"));
        assert!(v.len() <= 128);
        assert_eq!(Hold::parse("0123456789abcdef", &v), Some(h.clone()));
        let tag = hold_tag(&h.invocation);
        let (found, bad) = holds([
            (tag.as_str(), v.as_str()),
            ("ecs-rollback:instance:x", "garbage"),
            ("ecs-rollback", "enabled"),
        ]);
        assert_eq!(found, vec![h]);
        assert_eq!(bad, vec!["ecs-rollback:instance:x".to_owned()]);
        assert_eq!(
            Hold::parse("x", "k=a;d=b;w=x;t=1"),
            None,
            "w must say r or s"
        );
    }

    #[test]
    fn an_operator_reads_who_holds_the_instance_and_the_power_state_to_restore() {
        let lines = describe("i-1", &[hold("inv-a", A, true, NOW - 30)], NOW);
        assert_eq!(lines.len(), 1);
        for want in [
            "instance i-1: HELD by key aaaaaaaaaaaaaaaa",
            "disk d-bp1webapp0000sys01",
            "power state to restore: running",
            "30s ago",
        ] {
            assert!(lines[0].contains(want), "{want:?} in {}", lines[0]);
        }
        assert_eq!(describe("i-1", &[], NOW), ["instance i-1: not held"]);
    }

    #[test]
    fn the_budget_counts_the_instances_own_tags_only() {
        let own: Vec<String> = (0..17).map(|i| format!("team{i}")).collect();
        assert!(room(own.iter().map(String::as_str)).is_ok());
        let mut more = own.clone();
        more.push("one-too-many".into());
        assert_eq!(room(more.iter().map(String::as_str)), Err(18));
        // Holds themselves do not count against the instance's own.
        let mut with_holds = own.clone();
        with_holds.push(hold_tag("a"));
        with_holds.push(hold_tag("b"));
        assert!(room(with_holds.iter().map(String::as_str)).is_ok());
    }

    #[test]
    fn a_holder_is_live_while_its_claim_is_or_for_a_heartbeat_after_its_last_write() {
        let h = hold("inv-a", A, true, NOW - 500);
        // Its own claim, renewed: live whatever the age of the hold.
        let claimed = disk(&[
            (claim_tag("inv-a"), claim_value(NOW - 10, A, None)),
            (
                RUN_TAG.into(),
                record(A, Phase::Resetting, NOW - 400).encode(),
            ),
        ]);
        assert_eq!(
            holder_state(&h, Some(&claimed), NOW, BEAT),
            HolderState::Live
        );
        // Another invocation's claim of the same key does not make this one live.
        let twin = disk(&[
            (claim_tag("inv-z"), claim_value(NOW - 10, A, None)),
            (
                RUN_TAG.into(),
                record(A, Phase::Stopped, NOW - 400).encode(),
            ),
        ]);
        assert_eq!(holder_state(&h, Some(&twin), NOW, BEAT), HolderState::Gone);
        // Phase written recently, claim just removed: live for a heartbeat more.
        let recent = disk(&[(RUN_TAG.into(), record(A, Phase::Stopped, NOW - 5).encode())]);
        assert_eq!(
            holder_state(&h, Some(&recent), NOW, BEAT),
            HolderState::Live
        );
        // Just written, nothing on its disk yet (it is contesting its claim): live.
        let fresh = hold("inv-a", A, true, NOW - 3);
        assert_eq!(
            holder_state(&fresh, Some(&disk(&[])), NOW, BEAT),
            HolderState::Live
        );
        assert_eq!(holder_state(&fresh, None, NOW, BEAT), HolderState::Live);
    }

    #[test]
    fn a_finished_or_vanished_holder_leaves_nothing_to_inherit_a_dead_one_does() {
        let h = hold("inv-a", A, true, NOW - 500);
        let done = disk(&[(RUN_TAG.into(), record(A, Phase::Done, NOW - 400).encode())]);
        assert_eq!(
            holder_state(&h, Some(&done), NOW, BEAT),
            HolderState::Finished
        );
        // Overwritten by a later key, its own key in the history.
        let mut history = crate::ledger::History::default();
        history.push(&format!("{A}0000"), false, NOW - 450);
        let later = disk(&[
            (RUN_TAG.into(), record(B, Phase::Done, NOW - 100).encode()),
            (crate::ledger::HISTORY_TAG.into(), history.encode()),
        ]);
        assert_eq!(
            holder_state(&h, Some(&later), NOW, BEAT),
            HolderState::Finished
        );
        // No record of its key at all past a heartbeat: it never changed anything.
        assert_eq!(
            holder_state(&h, Some(&disk(&[])), NOW, BEAT),
            HolderState::Finished
        );
        assert_eq!(holder_state(&h, None, NOW, BEAT), HolderState::Finished);
        // Its record unfinished, no live claim, past a heartbeat: gone.
        let dead = disk(&[
            (claim_tag("inv-a"), claim_value(NOW - 300, A, None)),
            (RUN_TAG.into(), record(A, Phase::Reset, NOW - 300).encode()),
        ]);
        assert_eq!(holder_state(&h, Some(&dead), NOW, BEAT), HolderState::Gone);
    }

    #[test]
    fn another_keys_live_holder_is_waited_for_a_gone_one_is_taken_over_with_its_power_state() {
        let live = hold("inv-a", A, true, NOW);
        assert_eq!(
            verdict(&[(live.clone(), HolderState::Live)], B, &[]),
            Verdict::Wait(live.clone())
        );
        let gone = hold("inv-a", A, true, NOW - 500);
        assert_eq!(
            verdict(&[(gone, HolderState::Gone)], B, &[]),
            Verdict::Take {
                inherit: Some(true),
                superseded: vec![hold_tag("inv-a")]
            }
        );
        let finished = hold("inv-a", A, false, NOW - 500);
        assert_eq!(
            verdict(&[(finished, HolderState::Finished)], B, &["x".into()]),
            Verdict::Take {
                inherit: None,
                superseded: vec![hold_tag("inv-a"), "x".into()]
            },
            "a finished holder's power state is history: the next holder observes"
        );
        assert_eq!(
            verdict(&[], B, &[]),
            Verdict::Take {
                inherit: None,
                superseded: vec![]
            }
        );
    }

    #[test]
    fn an_earlier_delivery_of_the_same_key_is_joined_not_waited_for() {
        // A twin runs: the disk's claim contest decides between the two; the live tag stays.
        let twin = hold("inv-a1", A, true, NOW);
        assert_eq!(
            verdict(&[(twin, HolderState::Live)], A, &[]),
            Verdict::Take {
                inherit: Some(true),
                superseded: vec![]
            }
        );
        // A dead delivery of the key: its power state is this run's, its tag this run's to clear.
        let dead = hold("inv-a1", A, true, NOW - 500);
        assert_eq!(
            verdict(&[(dead, HolderState::Gone)], A, &[]),
            Verdict::Take {
                inherit: Some(true),
                superseded: vec![hold_tag("inv-a1")]
            }
        );
    }

    #[test]
    fn a_contender_that_wrote_meanwhile_is_in_the_way_a_superseded_tag_is_not() {
        let mine = hold("inv-b", B, true, NOW);
        let rival = hold("inv-c", "cccccccccccccccc", true, NOW);
        let dead = hold("inv-a", A, true, NOW - 500);
        let twin = hold("inv-b2", B, true, NOW);
        let seen = [mine.clone(), dead.clone(), twin];
        assert_eq!(contested(&seen, "inv-b", B, &[hold_tag("inv-a")]), None);
        let seen = [mine, dead, rival.clone()];
        assert_eq!(
            contested(&seen, "inv-b", B, &[hold_tag("inv-a")]),
            Some(&rival)
        );
    }
}
