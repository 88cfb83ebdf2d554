//! The rollback's settings, from the environment, with defaults fit for production.

use std::time::Duration;

/// How waits poll: from `initial`, growing by half each time, up to `max`.
#[derive(Clone, Debug)]
pub struct Poll {
    pub initial: Duration,
    pub max: Duration,
}

impl Poll {
    pub fn next(&self, current: Duration) -> Duration {
        (current + current / 2).clamp(self.initial, self.max)
    }
}

/// Margin a run keeps before its invocation's deadline: it must still write its ledger and
/// report. A function whose timeout leaves less than a rollback's estimates and this margin can
/// never roll anything back (`crate::fit`).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Settings {
    /// The opt-in tag a disk or its instance must carry; `None` turns the check off.
    pub require_tag: Option<(String, String)>,
    /// A second rollback of a disk within this is refused (`CooldownActive`); zero turns it off.
    pub cooldown: Duration,
    /// A run that has not written its ledger for this long is taken to be dead. Longer than the
    /// longest invocation (Lambda: 15 minutes).
    pub lease: Duration,
    /// An invocation's claim is live while its heartbeat is younger than this; a run refreshes
    /// it at every phase and at least every third of it while waiting.
    pub heartbeat_timeout: Duration,
    pub stop_timeout: Duration,
    pub reset_timeout: Duration,
    pub start_timeout: Duration,
    pub poll: Poll,
    /// What a step is expected to take: with a deadline, a step starts only if it can finish.
    pub estimate_stop: Duration,
    pub estimate_reset: Duration,
    pub estimate_start: Duration,
    /// Tries of a state-changing step whose result had to be read back.
    pub step_attempts: u32,
    /// Take an undo snapshot of the disk before resetting it, unless the request says
    /// (`preserveCurrent`). `ECS_ROLLBACK_PRESERVE_CURRENT`, off unless set.
    pub preserve_current: bool,
    /// How long the undo snapshot may take to become usable, counted from CreateSnapshot
    /// across deliveries; past it the run gives up, disk untouched, instance restored.
    pub snapshot_timeout: Duration,
    pub estimate_snapshot: Duration,
    /// The lag of tag reads behind tag writes this run tolerates (`ECS_ROLLBACK_TAG_SETTLE_MS`):
    /// after writing its claim, a run waits this long before reading the others' claims, and
    /// only then decides. ECS documents its reads as eventually consistent without a bound.
    pub tag_settle: Duration,
    /// The service check a request without its own `verify` gets (`ECS_ROLLBACK_VERIFY`, the
    /// block as JSON); none unless set.
    pub verify: Option<crate::verify::VerifySpec>,
    /// `ECS_ROLLBACK_ON_VERIFY_FAILURE`: `report` (default) or `undo` (applied only to a run
    /// that takes an undo snapshot; otherwise `report`, with a warning).
    pub on_verify_failure: crate::verify::OnVerifyFailure,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            require_tag: Some(("ecs-rollback".into(), "enabled".into())),
            cooldown: Duration::from_secs(1800),
            lease: Duration::from_secs(1200),
            heartbeat_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(300),
            reset_timeout: Duration::from_secs(1800),
            start_timeout: Duration::from_secs(300),
            // Near a step's expected end, and while nothing is known of it, a read a second:
            // Alibaba's advice for state checks is every 1 to 2 s (ecs-evidence.md §5).
            poll: Poll {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(15),
            },
            estimate_stop: Duration::from_secs(60),
            estimate_reset: Duration::from_secs(120),
            estimate_start: Duration::from_secs(60),
            step_attempts: 5,
            preserve_current: false,
            snapshot_timeout: Duration::from_secs(3600),
            estimate_snapshot: Duration::from_secs(120),
            tag_settle: Duration::from_millis(1000),
            verify: None,
            on_verify_failure: crate::verify::OnVerifyFailure::Report,
        }
    }
}

impl Settings {
    /// Settings for tests against a fast simulator.
    pub fn fast() -> Self {
        Self {
            stop_timeout: Duration::from_secs(5),
            reset_timeout: Duration::from_secs(5),
            start_timeout: Duration::from_secs(5),
            // Longer than any pause of a live run between two heartbeats with
            // `RetryConfig::fast()` (2 s per call at most): the claim is a lease.
            heartbeat_timeout: Duration::from_secs(4),
            poll: Poll {
                initial: Duration::from_millis(5),
                max: Duration::from_millis(40),
            },
            estimate_stop: Duration::from_millis(100),
            estimate_reset: Duration::from_millis(100),
            estimate_start: Duration::from_millis(100),
            snapshot_timeout: Duration::from_secs(5),
            estimate_snapshot: Duration::from_millis(100),
            tag_settle: Duration::from_millis(10),
            ..Self::default()
        }
    }

    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(Self::default(), |k| {
            std::env::var(k).ok().filter(|v| !v.is_empty())
        })
    }

    /// Applies the `ECS_ROLLBACK_*` variables over `base`.
    pub fn from_lookup(
        mut base: Self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        if let Some(tag) = lookup("ECS_ROLLBACK_REQUIRE_TAG") {
            base.require_tag = if tag.eq_ignore_ascii_case("none") {
                None
            } else {
                let (k, v) = tag.split_once('=').ok_or_else(|| {
                    format!("ECS_ROLLBACK_REQUIRE_TAG={tag:?}: expected key=value or none")
                })?;
                if k.is_empty() {
                    return Err("ECS_ROLLBACK_REQUIRE_TAG: the key is empty".into());
                }
                Some((k.to_owned(), v.to_owned()))
            };
        }
        let secs = |name: &str, d: &mut Duration| -> Result<(), String> {
            if let Some(v) = lookup(name) {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("{name}={v:?}: expected whole seconds"))?;
                *d = Duration::from_secs(n);
            }
            Ok(())
        };
        secs("ECS_ROLLBACK_COOLDOWN_SECONDS", &mut base.cooldown)?;
        secs("ECS_ROLLBACK_LEASE_SECONDS", &mut base.lease)?;
        secs("ECS_ROLLBACK_STOP_TIMEOUT_SECONDS", &mut base.stop_timeout)?;
        secs(
            "ECS_ROLLBACK_RESET_TIMEOUT_SECONDS",
            &mut base.reset_timeout,
        )?;
        secs(
            "ECS_ROLLBACK_START_TIMEOUT_SECONDS",
            &mut base.start_timeout,
        )?;
        secs(
            "ECS_ROLLBACK_SNAPSHOT_TIMEOUT_SECONDS",
            &mut base.snapshot_timeout,
        )?;
        // How long each step is expected to take before this disk's own history says better:
        // what a deadline must leave for a step before it is begun.
        secs(
            "ECS_ROLLBACK_ESTIMATE_STOP_SECONDS",
            &mut base.estimate_stop,
        )?;
        secs(
            "ECS_ROLLBACK_ESTIMATE_RESET_SECONDS",
            &mut base.estimate_reset,
        )?;
        secs(
            "ECS_ROLLBACK_ESTIMATE_START_SECONDS",
            &mut base.estimate_start,
        )?;
        secs(
            "ECS_ROLLBACK_ESTIMATE_SNAPSHOT_SECONDS",
            &mut base.estimate_snapshot,
        )?;
        if let Some(v) = lookup("ECS_ROLLBACK_PRESERVE_CURRENT") {
            base.preserve_current = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(format!(
                        "ECS_ROLLBACK_PRESERVE_CURRENT={v:?}: expected true or false"
                    ))
                }
            };
        }
        if let Some(v) = lookup("ECS_ROLLBACK_VERIFY").filter(|v| !v.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(&v)
                .map_err(|e| format!("ECS_ROLLBACK_VERIFY: not JSON: {e}"))?;
            base.verify = Some(
                crate::verify::parse(&value).map_err(|e| format!("ECS_ROLLBACK_VERIFY: {e}"))?,
            );
        }
        if let Some(v) = lookup("ECS_ROLLBACK_ON_VERIFY_FAILURE") {
            base.on_verify_failure = match v.trim() {
                "report" => crate::verify::OnVerifyFailure::Report,
                "undo" => crate::verify::OnVerifyFailure::Undo,
                _ => {
                    return Err(format!(
                        "ECS_ROLLBACK_ON_VERIFY_FAILURE={v:?}: expected report or undo"
                    ))
                }
            };
        }
        let millis = |name: &str, d: &mut Duration| -> Result<(), String> {
            if let Some(v) = lookup(name) {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("{name}={v:?}: expected whole milliseconds"))?;
                *d = Duration::from_millis(n.max(1));
            }
            Ok(())
        };
        millis("ECS_ROLLBACK_POLL_INITIAL_MS", &mut base.poll.initial)?;
        millis(
            "ECS_ROLLBACK_HEARTBEAT_TIMEOUT_MS",
            &mut base.heartbeat_timeout,
        )?;
        millis("ECS_ROLLBACK_POLL_MAX_MS", &mut base.poll.max)?;
        millis("ECS_ROLLBACK_TAG_SETTLE_MS", &mut base.tag_settle)?;
        if base.poll.max < base.poll.initial {
            base.poll.max = base.poll.initial;
        }
        if base.heartbeat_timeout < base.tag_settle * 4 {
            // A claim must stay live (heartbeat) through the settle and the read after it, or
            // a rival could take it for dead while its owner is still contesting.
            return Err(format!(
                "ECS_ROLLBACK_TAG_SETTLE_MS ({} ms) must be under a quarter of ECS_ROLLBACK_HEARTBEAT_TIMEOUT_MS ({} ms)",
                base.tag_settle.as_millis(),
                base.heartbeat_timeout.as_millis()
            ));
        }
        if base.lease < Duration::from_secs(60) {
            return Err("ECS_ROLLBACK_LEASE_SECONDS: at least 60".into());
        }
        Ok(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Settings::from_lookup(Settings::default(), |k| m.get(k).cloned())
    }

    #[test]
    fn env() {
        let s = with(&[]).expect("defaults");
        assert_eq!(
            s.require_tag,
            Some(("ecs-rollback".into(), "enabled".into()))
        );
        assert_eq!(s.cooldown, Duration::from_secs(1800));
        let s = with(&[
            ("ECS_ROLLBACK_REQUIRE_TAG", "none"),
            ("ECS_ROLLBACK_COOLDOWN_SECONDS", "0"),
        ])
        .expect("ok");
        assert_eq!(s.require_tag, None);
        assert!(s.cooldown.is_zero());
        let s = with(&[("ECS_ROLLBACK_REQUIRE_TAG", "team=sre")]).expect("ok");
        assert_eq!(s.require_tag, Some(("team".into(), "sre".into())));
        assert!(with(&[("ECS_ROLLBACK_REQUIRE_TAG", "enabled")]).is_err());
        assert!(with(&[("ECS_ROLLBACK_COOLDOWN_SECONDS", "-1")]).is_err());
        assert!(with(&[("ECS_ROLLBACK_LEASE_SECONDS", "5")]).is_err());
        assert_eq!(
            with(&[]).expect("defaults").tag_settle,
            Duration::from_secs(1)
        );
        assert_eq!(
            with(&[("ECS_ROLLBACK_TAG_SETTLE_MS", "250")])
                .expect("ok")
                .tag_settle,
            Duration::from_millis(250)
        );
        assert!(with(&[
            ("ECS_ROLLBACK_HEARTBEAT_TIMEOUT_MS", "1000"),
            ("ECS_ROLLBACK_TAG_SETTLE_MS", "1000")
        ])
        .is_err());
        assert!(!with(&[]).expect("defaults").preserve_current);
        assert!(
            with(&[("ECS_ROLLBACK_PRESERVE_CURRENT", "true")])
                .expect("ok")
                .preserve_current
        );
        assert!(with(&[("ECS_ROLLBACK_PRESERVE_CURRENT", "maybe")]).is_err());
        // The step estimates a deadline must leave room for (issue 15).
        let s = with(&[
            ("ECS_ROLLBACK_ESTIMATE_STOP_SECONDS", "15"),
            ("ECS_ROLLBACK_ESTIMATE_RESET_SECONDS", "10"),
            ("ECS_ROLLBACK_ESTIMATE_START_SECONDS", "20"),
            ("ECS_ROLLBACK_ESTIMATE_SNAPSHOT_SECONDS", "30"),
        ])
        .expect("ok");
        assert_eq!(
            [
                s.estimate_stop,
                s.estimate_reset,
                s.estimate_start,
                s.estimate_snapshot
            ],
            [15, 10, 20, 30].map(Duration::from_secs)
        );
        assert!(with(&[("ECS_ROLLBACK_ESTIMATE_RESET_SECONDS", "soon")]).is_err());
    }

    #[test]
    fn poll_grows_and_caps() {
        let p = Poll {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        assert_eq!(
            p.next(Duration::from_millis(100)),
            Duration::from_millis(150)
        );
        assert_eq!(
            p.next(Duration::from_millis(250)),
            Duration::from_millis(300)
        );
        assert_eq!(p.next(Duration::ZERO), Duration::from_millis(100));
    }

    #[test]
    fn a_deployment_verify_block_and_its_failure_mode() {
        let s = with(&[
            (
                "ECS_ROLLBACK_VERIFY",
                r#"{"probe": {"tcp": "{privateIp}:22"}, "windowSeconds": 30}"#,
            ),
            ("ECS_ROLLBACK_ON_VERIFY_FAILURE", "undo"),
        ])
        .expect("valid");
        assert_eq!(s.verify.as_ref().map(|v| v.window_seconds), Some(30));
        assert_eq!(s.on_verify_failure, crate::verify::OnVerifyFailure::Undo);
        assert!(with(&[]).expect("defaults").verify.is_none());
        let bad = with(&[(
            "ECS_ROLLBACK_VERIFY",
            r#"{"probe": {"tcp": "10.0.0.1:22"}}"#,
        )])
        .expect_err("not the instance's own address");
        assert!(bad.contains("verify.probe.tcp"), "{bad}");
        assert!(with(&[("ECS_ROLLBACK_VERIFY", "{")]).is_err());
        assert!(with(&[("ECS_ROLLBACK_ON_VERIFY_FAILURE", "retry")]).is_err());
    }
}
