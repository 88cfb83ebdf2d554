//! Whether the function's timeout can hold a rollback at all. A rollback that stops, resets and
//! starts an instance starts only if the step estimates and the deadline margin fit in the
//! time left (`rollback/`: `fits`); a function deployed with a shorter timeout refuses every
//! such rollback (`DeadlineExceeded`, retryable, forever). The front doors learn the timeout at
//! their first invocation (Lambda: the deadline the Runtime API gives; Function Compute:
//! `x-fc-function-timeout`) and say so once per process, at ERROR, naming the timeout, the
//! minimum and what to change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::settings::Settings;

/// The margin the state machine keeps before the deadline.
pub use crate::settings::DEADLINE_MARGIN;

/// The settings a deployment changes to make a rollback fit (the step estimates).
pub const ESTIMATE_VARS: &str = "ECS_ROLLBACK_ESTIMATE_STOP_SECONDS, ECS_ROLLBACK_ESTIMATE_RESET_SECONDS, ECS_ROLLBACK_ESTIMATE_START_SECONDS";
pub const SNAPSHOT_VAR: &str = "ECS_ROLLBACK_ESTIMATE_SNAPSHOT_SECONDS";

/// What a rollback that stops, resets and starts needs before it may begin: stop + reset +
/// start, plus the undo snapshot when `preserve` (the default `preserveCurrent`), plus the
/// margin.
pub fn minimum(s: &Settings, preserve: bool) -> Duration {
    let mut need = s.estimate_stop + s.estimate_reset + s.estimate_start + DEADLINE_MARGIN;
    if preserve {
        need += s.estimate_snapshot;
    }
    need
}

/// Whole seconds, rounded up (a timeout of 59.998 s left at arrival is the 60 s configured).
fn secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// How a timeout measures up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Every rollback fits.
    Fits,
    /// No rollback that stops, resets and starts can ever begin: the ERROR line.
    Never { message: String },
    /// Only requests with `preserveCurrent` (not the default) cannot begin: a WARN line.
    NotWithUndoSnapshot { message: String },
}

/// `timeout`: the function's own timeout (or the time an invocation had when it arrived).
pub fn assess(s: &Settings, timeout: Duration) -> Fit {
    let t = secs_up(timeout);
    let base = minimum(s, s.preserve_current);
    if timeout < base {
        let parts = format!(
            "stop {} s + reset {} s + start {} s{} + {} s margin",
            s.estimate_stop.as_secs(),
            s.estimate_reset.as_secs(),
            s.estimate_start.as_secs(),
            if s.preserve_current {
                format!(
                    " + undo snapshot {} s (ECS_ROLLBACK_PRESERVE_CURRENT is on)",
                    s.estimate_snapshot.as_secs()
                )
            } else {
                String::new()
            },
            DEADLINE_MARGIN.as_secs()
        );
        return Fit::Never {
            message: format!(
                "the function's timeout is {t} s and a rollback needs at least {} s ({parts}): every rollback that stops, resets and starts an instance will be refused (DeadlineExceeded) before it begins. Raise the function's timeout (template.yaml Timeout, deploy/s.yaml timeout) to at least {} s, or lower the step estimates ({ESTIMATE_VARS}{})",
                secs_up(base),
                secs_up(base),
                if s.preserve_current {
                    format!(", {SNAPSHOT_VAR}")
                } else {
                    String::new()
                }
            ),
        };
    }
    let with_undo = minimum(s, true);
    if !s.preserve_current && timeout < with_undo {
        return Fit::NotWithUndoSnapshot {
            message: format!(
                "the function's timeout is {t} s and a rollback with preserveCurrent needs at least {} s (the undo snapshot's estimate {} s on top): such requests will be refused (DeadlineExceeded) before they begin. Raise the function's timeout to at least {} s, or lower {SNAPSHOT_VAR} or the other step estimates ({ESTIMATE_VARS})",
                secs_up(with_undo),
                s.estimate_snapshot.as_secs(),
                secs_up(with_undo)
            ),
        };
    }
    Fit::Fits
}

static CHECKED: AtomicBool = AtomicBool::new(false);

/// At the first invocation of the process that knows its timeout: logs what `assess` says,
/// once (ERROR when no rollback can fit, WARN when only `preserveCurrent` ones cannot).
/// Returns whether this call was the one that checked.
pub fn check_once(s: &Settings, timeout: Duration) -> bool {
    if CHECKED.swap(true, Ordering::SeqCst) {
        return false;
    }
    let t = secs_up(timeout);
    match assess(s, timeout) {
        Fit::Fits => {
            tracing::debug!(
                function_timeout_s = t,
                "the function's timeout fits a rollback"
            )
        }
        Fit::Never { message } => tracing::error!(
            function_timeout_s = t,
            needed_s = secs_up(minimum(s, s.preserve_current)),
            "{message}"
        ),
        Fit::NotWithUndoSnapshot { message } => tracing::warn!(
            function_timeout_s = t,
            needed_s = secs_up(minimum(s, true)),
            "{message}"
        ),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_estimates_need_242_seconds() {
        let s = Settings::default();
        assert_eq!(minimum(&s, false), Duration::from_secs(242));
        assert_eq!(minimum(&s, true), Duration::from_secs(362));
        assert_eq!(assess(&s, Duration::from_secs(900)), Fit::Fits);
        assert_eq!(assess(&s, Duration::from_secs(362)), Fit::Fits);
    }

    #[test]
    fn a_timeout_that_never_fits_names_itself_the_minimum_and_the_settings() {
        let s = Settings::default();
        // 60 s configured, a little less left when the invocation arrived.
        let Fit::Never { message } = assess(&s, Duration::from_millis(59_990)) else {
            panic!("60 s never fits 242 s");
        };
        for needle in [
            "timeout is 60 s",
            "at least 242 s",
            "stop 60 s + reset 120 s + start 60 s + 2 s margin",
            "ECS_ROLLBACK_ESTIMATE_STOP_SECONDS",
            "ECS_ROLLBACK_ESTIMATE_RESET_SECONDS",
            "ECS_ROLLBACK_ESTIMATE_START_SECONDS",
            "template.yaml",
            "deploy/s.yaml",
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }
        assert!(!message.contains(SNAPSHOT_VAR), "{message}");
        assert!(matches!(
            assess(&s, Duration::from_secs(241)),
            Fit::Never { .. }
        ));
    }

    #[test]
    fn preserve_current_adds_the_undo_snapshot() {
        let s = Settings {
            preserve_current: true,
            ..Settings::default()
        };
        let Fit::Never { message } = assess(&s, Duration::from_secs(300)) else {
            panic!("300 s does not fit 362 s");
        };
        assert!(message.contains("at least 362 s"), "{message}");
        assert!(message.contains(SNAPSHOT_VAR), "{message}");
        // Off by default: the same timeout fits plain rollbacks and warns about the others.
        let Fit::NotWithUndoSnapshot { message } =
            assess(&Settings::default(), Duration::from_secs(300))
        else {
            panic!("a warning for preserveCurrent requests");
        };
        assert!(message.contains("at least 362 s"), "{message}");
    }
}
