//! The hold on a disk as the people on call see it: who holds it, which phase, since when, what
//! power state the run will restore, the cooldown, the recent keys (`ecs-rollback status`);
//! and the plan to clear a hold a dead run left behind (`ecs-rollback release`). Pure: the CLI
//! reads the disk and its instance, and writes the tags the plan names.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use crate::claim;
use crate::ledger::{self, History, Ledger, Phase};

/// What `status` prints (`--json`: this, serialized).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskStatus {
    pub disk_id: String,
    pub region_id: String,
    pub disk_status: String,
    pub instance_id: Option<String>,
    pub instance_status: Option<String>,
    /// Any `ecs-rollback:` ledger tag on the disk.
    pub has_ledger: bool,
    /// The run tag, when it cannot be read (nothing runs while it is there).
    pub unreadable_run: Option<String>,
    /// An unfinished run: the disk is held.
    pub hold: Option<HoldView>,
    /// The last run, when it finished.
    pub last_run: Option<LastRun>,
    pub claims: Vec<ClaimView>,
    pub last_success: Option<String>,
    /// Seconds before another key may roll the disk back; 0 when none is left.
    pub cooldown_left_secs: i64,
    /// Newest first: the first 12 hex of each key's SHA-256, and how it ended.
    pub recent_keys: Vec<RecentKey>,
    pub last_release: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldView {
    /// First 16 hex of the holding key's SHA-256.
    pub key_digest: String,
    pub phase: String,
    pub since: String,
    pub age_secs: i64,
    /// The power state the run will leave the instance in.
    pub restore_power: String,
    pub was_running: bool,
    pub snapshot_id: String,
    pub undo_snapshot_id: Option<String>,
    /// Whether the run may already have reset the disk.
    pub reset_issued: bool,
    /// A failure the run was recovering from (it was bringing the instance back).
    pub failure: Option<String>,
    /// Seconds the lease has left (negative: expired that long ago).
    pub lease_left_secs: i64,
    /// Invocations of the holding key whose heartbeat is fresh.
    pub live_claims: usize,
    /// The instance the run stopped and must bring back (its record's), when recorded.
    pub instance_id: Option<String>,
    /// The run stopped an instance that is to end running, and it reads Stopped now.
    pub instance_left_stopped: bool,
    /// The service check under way (`verify`), from the holding key's mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// The `ecs-rollback:verify` mark as people read it.
fn check_view(m: &crate::verify::VerifyMark) -> String {
    use crate::verify::Stage;
    let stage = match m.stage {
        Stage::Checking => "checking",
        Stage::Undoing => {
            "undoing: stopping the instance and resetting the disk to the undo snapshot"
        }
        Stage::UndoReset => "the undo's reset done: starting the instance, then checking again",
    };
    match &m.invoke_id {
        Some(i) => format!(
            "round {}, {stage} (Cloud Assistant invocation {i})",
            m.round
        ),
        None => format!("round {}, {stage}", m.round),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub key_digest: String,
    pub phase: String,
    pub at: String,
    pub snapshot_id: String,
    pub undo_snapshot_id: Option<String>,
    pub failure: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimView {
    pub invocation: String,
    pub key_digest: String,
    pub heartbeat_age_secs: i64,
    pub live: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentKey {
    pub key_digest: String,
    pub ended: &'static str,
}

/// The timing rules `status` and `release` judge by (from `Settings`).
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub lease_secs: i64,
    pub heartbeat_timeout_secs: i64,
    pub cooldown_secs: i64,
}

fn time(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| unix.to_string())
}

/// The disk's resources as read, for [`status`].
pub struct Observed<'a> {
    pub disk_id: &'a str,
    pub region_id: &'a str,
    pub disk_status: &'a str,
    pub instance_id: Option<&'a str>,
    pub instance_status: Option<&'a str>,
    /// The disk's tags.
    pub tags: Vec<(&'a str, &'a str)>,
}

/// Every disk of the instance with its run record, one line each (`status` of a disk whose
/// instance has several: a whole-instance request shows where each disk's run is).
pub fn instance_disks(
    instance: &str,
    disks: &[(String, String, crate::ledger::Ledger)],
) -> Vec<String> {
    let mut out = vec![format!("instance {instance}: {} disks", disks.len())];
    for (id, kind, ledger) in disks {
        let run = match &ledger.run {
            Some(r) => {
                let mut s = format!("key {}, phase {}, snapshot {}", r.key, r.phase, r.snapshot);
                if let Some(u) = &r.undo {
                    s.push_str(&format!(", undo {u}"));
                }
                if let Some(f) = &r.failure {
                    s.push_str(&format!(", failed {f}"));
                }
                s
            }
            None => "no run".into(),
        };
        out.push(format!("  {id} ({kind}): {run}"));
    }
    out
}

pub fn status(o: &Observed<'_>, rules: Rules, now: i64) -> DiskStatus {
    let ledger = Ledger::from_tags(o.tags.iter().copied());
    let has_ledger = o.tags.iter().any(|(k, _)| {
        k.starts_with(claim::CLAIM_PREFIX) || *k == ledger::RUN_TAG || *k == ledger::HISTORY_TAG
    });
    let claims: Vec<ClaimView> = ledger
        .claims
        .iter()
        .map(|c| ClaimView {
            invocation: c.invocation.clone(),
            key_digest: c.key.clone(),
            heartbeat_age_secs: now - c.at,
            live: c.live(now, rules.heartbeat_timeout_secs),
        })
        .collect();
    let (hold, last_run) = match &ledger.run {
        Some(r) if !r.phase.is_final() => (
            Some(HoldView {
                key_digest: r.key.clone(),
                phase: r.phase.to_string(),
                since: time(r.since),
                age_secs: now - r.since,
                restore_power: if r.end_running { "running" } else { "stopped" }.into(),
                was_running: r.was_running,
                snapshot_id: r.snapshot.clone(),
                undo_snapshot_id: r.undo.clone(),
                reset_issued: r.phase.reset_issued(),
                failure: r.failure.clone(),
                lease_left_secs: rules.lease_secs - (now - r.since),
                live_claims: claims
                    .iter()
                    .filter(|c| c.live && c.key_digest == r.key)
                    .count(),
                instance_id: r.instance.clone(),
                instance_left_stopped: r.phase >= Phase::Stopped
                    && (r.end_running || (r.was_running && r.failure.is_some()))
                    && o.instance_status == Some("Stopped")
                    && r.instance
                        .as_deref()
                        .is_none_or(|i| o.instance_id == Some(i)),
                check: o
                    .tags
                    .iter()
                    .find(|(k, _)| *k == ledger::VERIFY_TAG)
                    .and_then(|(_, v)| crate::verify::VerifyMark::decode(v))
                    .filter(|m| m.key == r.key)
                    .map(|m| check_view(&m)),
            }),
            None,
        ),
        Some(r) => (
            None,
            Some(LastRun {
                key_digest: r.key.clone(),
                phase: r.phase.to_string(),
                at: time(r.since),
                snapshot_id: r.snapshot.clone(),
                undo_snapshot_id: r.undo.clone(),
                failure: r.failure.clone(),
            }),
        ),
        None => (None, None),
    };
    // The cooldown as `ledger::decide` computes it: the last success, or an abandoned run
    // past its reset.
    let mut last = ledger.history.last_success;
    if let Some(r) = &ledger.run {
        if !r.phase.is_final() && r.phase.reset_issued() && now - r.since > rules.lease_secs {
            last = last.max(Some(r.since));
        }
        if r.failed_after_its_reset() {
            last = last.max(Some(r.since));
        }
    }
    let cooldown_left_secs = match last {
        Some(t) if rules.cooldown_secs > 0 => (rules.cooldown_secs - (now - t)).max(0),
        _ => 0,
    };
    DiskStatus {
        disk_id: o.disk_id.to_owned(),
        region_id: o.region_id.to_owned(),
        disk_status: o.disk_status.to_owned(),
        instance_id: o.instance_id.map(str::to_owned),
        instance_status: o.instance_status.map(str::to_owned),
        has_ledger,
        unreadable_run: ledger.unreadable_run.clone(),
        hold,
        last_run,
        claims,
        last_success: ledger.history.last_success.map(time),
        cooldown_left_secs,
        recent_keys: ledger
            .history
            .keys
            .iter()
            .map(|(k, failed)| RecentKey {
                key_digest: k.clone(),
                ended: if *failed { "failed" } else { "done" },
            })
            .collect(),
        last_release: ledger.history.released.map(time),
    }
}

fn span(secs: i64) -> String {
    let s = secs.abs();
    let text = match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    };
    text
}

impl DiskStatus {
    /// The human form.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = write!(
            o,
            "disk {} ({}), {}",
            self.disk_id, self.region_id, self.disk_status
        );
        match (&self.instance_id, &self.instance_status) {
            (Some(i), Some(s)) => {
                let _ = writeln!(o, ", attached to {i} ({s})");
            }
            (Some(i), None) => {
                let _ = writeln!(o, ", attached to {i}");
            }
            _ => {
                let _ = writeln!(o, ", not attached");
            }
        }
        if !self.has_ledger {
            let _ = writeln!(o, "no ledger: ecs-rollback has never held this disk");
            return o;
        }
        if let Some(v) = &self.unreadable_run {
            let _ = writeln!(
                o,
                "UNREADABLE run tag {}={v:?}: no rollback will act on this disk until it is removed by hand",
                ledger::RUN_TAG
            );
        }
        match &self.hold {
            Some(h) => {
                let _ = writeln!(
                    o,
                    "HELD by key {}: phase {} since {} ({} ago)",
                    h.key_digest,
                    h.phase,
                    h.since,
                    span(h.age_secs)
                );
                let _ = writeln!(
                    o,
                    "  power state to restore: {} (it was {} when the run began)",
                    h.restore_power,
                    if h.was_running { "running" } else { "stopped" }
                );
                if let Some(i) = h
                    .instance_id
                    .as_ref()
                    .filter(|i| self.instance_id.as_ref() != Some(*i))
                {
                    let _ = writeln!(
                        o,
                        "  instance the run stopped: {i} (the disk is no longer attached to it)"
                    );
                }
                let _ = write!(o, "  snapshot: {}", h.snapshot_id);
                if let Some(u) = &h.undo_snapshot_id {
                    let _ = write!(o, "; undo snapshot: {u}");
                }
                let _ = writeln!(
                    o,
                    "; the disk {}",
                    if h.reset_issued {
                        "may already be reset"
                    } else {
                        "has not been reset by it"
                    }
                );
                if let Some(f) = &h.failure {
                    let _ = writeln!(o, "  recovering from a failure: {f}");
                }
                if let Some(c) = &h.check {
                    let _ = writeln!(o, "  service check: {c}");
                }
                if h.instance_left_stopped {
                    let iid = h
                        .instance_id
                        .clone()
                        .or_else(|| self.instance_id.clone())
                        .unwrap_or_default();
                    let _ = writeln!(
                        o,
                        "  INSTANCE LEFT STOPPED: {iid} is Stopped and the run must leave it running; a redelivery of the key starts it (and never resets again), or by hand: aliyun ecs StartInstance --RegionId {} --InstanceId {iid}",
                        self.region_id
                    );
                }
                if h.lease_left_secs >= 0 {
                    let _ = writeln!(
                        o,
                        "  lease: live, {} left; live claims of this key: {}",
                        span(h.lease_left_secs),
                        h.live_claims
                    );
                } else {
                    let _ = writeln!(
                        o,
                        "  lease: EXPIRED {} ago; live claims of this key: {} (a redelivery of the key resumes it; `ecs-rollback release {} --key KEY` clears it)",
                        span(h.lease_left_secs),
                        h.live_claims,
                        self.disk_id
                    );
                }
            }
            None => {
                let _ = writeln!(o, "not held");
            }
        }
        if let Some(r) = &self.last_run {
            let _ = write!(
                o,
                "last run: key {} {} at {} (snapshot {}",
                r.key_digest, r.phase, r.at, r.snapshot_id
            );
            if let Some(u) = &r.undo_snapshot_id {
                let _ = write!(o, ", undo snapshot {u}");
            }
            let _ = write!(o, ")");
            if let Some(f) = &r.failure {
                let _ = write!(o, ": {f}");
            }
            let _ = writeln!(o);
        }
        for c in &self.claims {
            let _ = writeln!(
                o,
                "claim: invocation {} (key {}), heartbeat {} ago, {}",
                c.invocation,
                c.key_digest,
                span(c.heartbeat_age_secs),
                if c.live { "live" } else { "dead" }
            );
        }
        if self.cooldown_left_secs > 0 {
            let _ = writeln!(
                o,
                "cooldown: {} left (last success {})",
                span(self.cooldown_left_secs),
                self.last_success.as_deref().unwrap_or("-")
            );
        } else {
            let _ = writeln!(
                o,
                "cooldown: none (last success {})",
                self.last_success.as_deref().unwrap_or("never")
            );
        }
        if !self.recent_keys.is_empty() {
            let keys: Vec<String> = self
                .recent_keys
                .iter()
                .map(|k| format!("{} ({})", k.key_digest, k.ended))
                .collect();
            let _ = writeln!(
                o,
                "recent keys (SHA-256, newest first): {}",
                keys.join(", ")
            );
        }
        if let Some(r) = &self.last_release {
            let _ = writeln!(o, "last released by hand: {r}");
        }
        o
    }
}

/// What `release` will write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasePlan {
    /// The run tag's value the plan was made from: the hold must still read so when written.
    pub run_value: String,
    pub phase: Phase,
    /// Tags to remove: the run tag and the holding key's claims.
    pub remove: Vec<String>,
    /// The history with the key recorded as ended (failed) and the release time.
    pub history: String,
    /// What the operator must know (the instance and the disk are never touched).
    pub warnings: Vec<String>,
    /// `--force` overrode a live lease.
    pub forced: bool,
}

impl ReleasePlan {
    pub fn render(&self, disk_id: &str) -> String {
        let mut o = format!(
            "release {disk_id}: the hold of phase {}{}\n  remove tags: {}\n  record in {}: the key ended (failed), released now\n  the instance and the disk contents are not touched\n",
            self.phase,
            if self.forced { " (FORCED: its lease is live)" } else { "" },
            self.remove.join(", "),
            ledger::HISTORY_TAG
        );
        for w in &self.warnings {
            let _ = writeln!(o, "  NOTE: {w}");
        }
        o
    }
}

/// Why `release` does nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoRelease {
    #[error("nothing to release: the disk has no unfinished run{0}")]
    NothingHeld(String),
    #[error("the disk is held by key {held}, not by this key ({given}); nothing was changed")]
    OtherKey { held: String, given: String },
    #[error("the hold is live (lease {lease_left}s left, {live_claims} live claim(s) of the key): a run may still be working; wait, or pass --force if you know it is dead")]
    Live { lease_left: i64, live_claims: usize },
    #[error("the run tag {0:?} cannot be read; remove it by hand once no rollback runs")]
    Unreadable(String),
}

/// The plan to clear the hold of the key whose SHA-256 is `digest`.
pub fn plan_release(
    tags: &[(&str, &str)],
    digest: &str,
    instance_status: Option<&str>,
    rules: Rules,
    now: i64,
    force: bool,
) -> Result<ReleasePlan, NoRelease> {
    let ledger = Ledger::from_tags(tags.iter().copied());
    if let Some(v) = ledger.unreadable_run {
        return Err(NoRelease::Unreadable(v));
    }
    let given = ledger::run_key(digest);
    let run = match &ledger.run {
        Some(r) if !r.phase.is_final() => r.clone(),
        _ => {
            let note = match ledger.history.find(digest) {
                Some(false) => "; this key finished (done)",
                Some(true) => "; this key ended (failed or released)",
                None => "",
            };
            return Err(NoRelease::NothingHeld(note.into()));
        }
    };
    if run.key != given {
        return Err(NoRelease::OtherKey {
            held: run.key,
            given,
        });
    }
    let live_claims = ledger
        .claims
        .iter()
        .filter(|c| c.key == run.key && c.live(now, rules.heartbeat_timeout_secs))
        .count();
    let lease_left = rules.lease_secs - (now - run.since);
    let live = lease_left >= 0 || live_claims > 0;
    if live && !force {
        return Err(NoRelease::Live {
            lease_left,
            live_claims,
        });
    }
    let mut remove = vec![ledger::RUN_TAG.to_owned()];
    remove.extend(
        ledger
            .claims
            .iter()
            .filter(|c| c.key == run.key)
            .map(|c| claim::claim_tag(&c.invocation)),
    );
    // The service check's mark of that key (`verify`), if it was checking.
    if tags.iter().any(|(k, v)| {
        *k == ledger::VERIFY_TAG
            && crate::verify::VerifyMark::decode(v).is_some_and(|m| m.key == run.key)
    }) {
        remove.push(ledger::VERIFY_TAG.to_owned());
    }
    let mut history: History = ledger.history.clone();
    if run.phase.reset_issued() {
        // The disk may have been rolled back: the cooldown counts from then.
        history.last_success = history.last_success.max(Some(run.since));
    }
    history.push(digest, true, now);
    history.released = Some(now);
    let mut warnings = Vec::new();
    let stopped_by_run = run.was_running && run.phase >= Phase::Stopping;
    if stopped_by_run && run.end_running && instance_status != Some("Running") {
        warnings.push(format!(
            "the instance is {} and the run meant to leave it running: start it yourself if that is still right",
            instance_status.unwrap_or("unknown")
        ));
    }
    if run.phase.reset_issued() {
        warnings.push(format!(
            "the run reached phase {}: the disk may already hold snapshot {}",
            run.phase, run.snapshot
        ));
    }
    if let Some(u) = &run.undo {
        warnings.push(format!("the run's undo snapshot {u} is kept"));
    }
    let run_value = tags
        .iter()
        .find(|(k, _)| *k == ledger::RUN_TAG)
        .map(|(_, v)| (*v).to_owned())
        .unwrap_or_default();
    Ok(ReleasePlan {
        run_value,
        phase: run.phase,
        remove,
        history: history.encode(),
        warnings,
        forced: live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_disks_each_say_where_their_run_is() {
        let l = |tags: &[(&str, &str)]| crate::ledger::Ledger::from_tags(tags.iter().copied());
        let disks = vec![
            (
                "d-sys0000001".to_owned(),
                "system".to_owned(),
                l(&[(
                    "ecs-rollback:run",
                    "k=0123456789abcdef;p=reset;t=1;s=s-a0000001;w=r;e=r",
                )]),
            ),
            ("d-data000002".to_owned(), "data".to_owned(), l(&[])),
        ];
        let lines = instance_disks("i-inst0000001", &disks);
        assert_eq!(lines[0], "instance i-inst0000001: 2 disks");
        assert!(
            lines[1].contains("phase reset") && lines[1].contains("s-a0000001"),
            "{lines:?}"
        );
        assert!(lines[2].ends_with("no run"), "{lines:?}");
    }
    use crate::ledger::RunRecord;

    const NOW: i64 = 1_790_000_000;
    const RULES: Rules = Rules {
        lease_secs: 1200,
        heartbeat_timeout_secs: 120,
        cooldown_secs: 1800,
    };

    fn digest(k: &str) -> String {
        crate::request::IdempotencyKey::parse(k)
            .expect("key")
            .digest()
    }

    fn record(key: &str, phase: Phase, since: i64) -> String {
        RunRecord {
            key: ledger::run_key(&digest(key)),
            phase,
            since,
            snapshot: "s-bp1webapp0sys00002".into(),
            was_running: true,
            end_running: true,
            stop_at: Some(since),
            failure: None,
            undo: None,
            instance: None,
        }
        .encode()
    }

    fn observed<'a>(tags: &'a [(&'a str, &'a str)]) -> Observed<'a> {
        Observed {
            disk_id: "d-bp1webapp0000sys01",
            region_id: "cn-hangzhou",
            disk_status: "In_use",
            instance_id: Some("i-bp1webapp00000001"),
            instance_status: Some("Stopped"),
            tags: tags.to_vec(),
        }
    }

    #[test]
    fn a_disk_without_a_ledger_says_so() {
        let s = status(&observed(&[("team", "sre")]), RULES, NOW);
        assert!(!s.has_ledger && s.hold.is_none());
        assert!(s.render().contains("no ledger"), "{}", s.render());
    }

    #[test]
    fn a_hold_shows_its_phase_power_state_lease_and_claims() {
        let run = record("incident-1", Phase::Resetting, NOW - 60);
        let claim_tag = claim::claim_tag("00000000000000aa");
        let claim = claim::claim_value(NOW - 10, &ledger::run_key(&digest("incident-1")), None);
        let history = "t=".to_owned() + &(NOW - 600).to_string() + ";k=abcdef012345";
        let tags = [
            (ledger::RUN_TAG, run.as_str()),
            (claim_tag.as_str(), claim.as_str()),
            (ledger::HISTORY_TAG, history.as_str()),
        ];
        let s = status(&observed(&tags), RULES, NOW);
        let h = s.hold.clone().expect("held");
        assert_eq!(h.phase, "resetting");
        assert_eq!(h.restore_power, "running");
        assert!(h.reset_issued);
        assert_eq!(h.lease_left_secs, 1140);
        assert_eq!(h.live_claims, 1);
        assert_eq!(s.cooldown_left_secs, 1200);
        assert_eq!(s.recent_keys[0].key_digest, "abcdef012345");
        let text = s.render();
        for want in [
            "HELD by key",
            "phase resetting",
            "power state to restore: running",
            "lease: live",
            "cooldown: 20m00s left",
            "abcdef012345 (done)",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["hold"]["phase"], "resetting");
        assert_eq!(json["cooldownLeftSecs"], 1200);
        assert_eq!(json["hold"]["instanceLeftStopped"], true);
        assert!(
            text.contains("INSTANCE LEFT STOPPED: i-bp1webapp00000001 is Stopped"),
            "{text}"
        );
        assert!(
            text.contains(
                "aliyun ecs StartInstance --RegionId cn-hangzhou --InstanceId i-bp1webapp00000001"
            ),
            "{text}"
        );
        // Before its stop, or once running again, nothing is said.
        let early = record("incident-1", Phase::Claimed, NOW - 60);
        let tags = [(ledger::RUN_TAG, early.as_str())];
        let h = status(&observed(&tags), RULES, NOW).hold.expect("held");
        assert!(!h.instance_left_stopped);
    }

    #[test]
    fn release_needs_the_holding_key_and_an_expired_lease_unless_forced() {
        let run = record("incident-1", Phase::Stopped, NOW - 60);
        let tags = [(ledger::RUN_TAG, run.as_str())];
        let d = digest("incident-1");
        assert!(matches!(
            plan_release(&tags, &digest("other"), Some("Stopped"), RULES, NOW, true),
            Err(NoRelease::OtherKey { .. })
        ));
        assert!(matches!(
            plan_release(&tags, &d, Some("Stopped"), RULES, NOW, false),
            Err(NoRelease::Live { .. })
        ));
        let forced = plan_release(&tags, &d, Some("Stopped"), RULES, NOW, true).expect("forced");
        assert!(forced.forced);
        // Past the lease, no live claim: released without force.
        let old = record("incident-1", Phase::Stopped, NOW - 5000);
        let dead_claim = claim::claim_value(NOW - 4000, &ledger::run_key(&d), None);
        let claim_tag = claim::claim_tag("00000000000000bb");
        let tags = [
            (ledger::RUN_TAG, old.as_str()),
            (claim_tag.as_str(), dead_claim.as_str()),
        ];
        let p = plan_release(&tags, &d, Some("Stopped"), RULES, NOW, false).expect("plan");
        assert!(!p.forced);
        assert_eq!(
            p.run_value, old,
            "the hold as read, to compare before writing"
        );
        assert_eq!(
            p.remove,
            vec![ledger::RUN_TAG.to_owned(), claim_tag.clone()]
        );
        let h = History::decode(&p.history);
        assert_eq!(h.find(&d), Some(true), "the key is remembered as ended");
        assert_eq!(h.released, Some(NOW));
        assert_eq!(h.last_success, None, "not reset: no cooldown");
        assert!(
            p.warnings.iter().any(|w| w.contains("start it yourself")),
            "{:?}",
            p.warnings
        );
        assert!(p.render("d-x").contains("not touched"));
        // A live claim of the key keeps the hold live, lease or not.
        let live_claim = claim::claim_value(NOW - 5, &ledger::run_key(&d), None);
        let tags = [
            (ledger::RUN_TAG, old.as_str()),
            (claim_tag.as_str(), live_claim.as_str()),
        ];
        assert!(matches!(
            plan_release(&tags, &d, Some("Stopped"), RULES, NOW, false),
            Err(NoRelease::Live { live_claims: 1, .. })
        ));
    }

    #[test]
    fn a_released_run_past_its_reset_keeps_the_cooldown() {
        let d = digest("incident-2");
        let old = record("incident-2", Phase::Starting, NOW - 5000);
        let tags = [(ledger::RUN_TAG, old.as_str())];
        let p = plan_release(&tags, &d, Some("Stopped"), RULES, NOW, false).expect("plan");
        assert_eq!(History::decode(&p.history).last_success, Some(NOW - 5000));
        assert!(p.warnings.iter().any(|w| w.contains("may already hold")));
    }

    #[test]
    fn nothing_to_release_is_said() {
        let d = digest("incident-3");
        let done = record("incident-3", Phase::Done, NOW - 10);
        let tags = [(ledger::RUN_TAG, done.as_str())];
        assert!(matches!(
            plan_release(&tags, &d, None, RULES, NOW, true),
            Err(NoRelease::NothingHeld(_))
        ));
        assert!(matches!(
            plan_release(&[(ledger::RUN_TAG, "garbage")], &d, None, RULES, NOW, true),
            Err(NoRelease::Unreadable(_))
        ));
    }

    #[test]
    fn releasing_a_run_that_was_verifying_removes_its_mark() {
        let d = digest("incident-9");
        let run = record("incident-9", Phase::Verifying, NOW - 5000);
        let mark = crate::verify::VerifyMark {
            key: ledger::run_key(&d),
            round: 1,
            stage: crate::verify::Stage::Checking,
            invoke_id: Some("t-hz0000000000000001".into()),
        }
        .encode();
        let tags = [
            (ledger::RUN_TAG, run.as_str()),
            (ledger::VERIFY_TAG, mark.as_str()),
        ];
        let p = plan_release(&tags, &d, Some("Running"), RULES, NOW, false).expect("plan");
        assert_eq!(
            p.remove,
            vec![ledger::RUN_TAG.to_owned(), ledger::VERIFY_TAG.to_owned()]
        );
        let seen = Observed {
            disk_id: "d-bp1webapp0000sys01",
            region_id: "cn-hangzhou",
            disk_status: "In_use",
            instance_id: Some("i-bp1webapp00000001"),
            instance_status: Some("Running"),
            tags: tags.to_vec(),
        };
        let st = status(&seen, RULES, NOW);
        assert_eq!(
            st.hold.and_then(|h| h.check).as_deref(),
            Some("round 1, checking (Cloud Assistant invocation t-hz0000000000000001)")
        );
        // Another key's mark is not this hold's.
        let other = mark.replace(&ledger::run_key(&d), "0000000000000000");
        let tags = [
            (ledger::RUN_TAG, run.as_str()),
            (ledger::VERIFY_TAG, other.as_str()),
        ];
        let p = plan_release(&tags, &d, Some("Running"), RULES, NOW, false).expect("plan");
        assert_eq!(p.remove, vec![ledger::RUN_TAG.to_owned()]);
    }
}
