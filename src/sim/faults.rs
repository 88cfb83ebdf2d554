//! Faults the simulator can inject, seeded so a run can be replayed: a fraction of calls
//! throttled, failing with 500/503, answered slowly, or whose answer is dropped after the change
//! was applied; and scripted faults (the Nth call of an action fails a given way).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ApiError;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Fraction of calls refused with `Throttling.User` before they run.
    pub throttle_rate: f64,
    /// Fraction of calls failing with 500 `InternalError` or 503 `ServiceUnavailable` before
    /// they run.
    pub error_rate: f64,
    /// Fraction of calls answered `slow_ms` late (they run normally).
    pub slow_rate: f64,
    pub slow_ms: u64,
    /// Fraction of calls that run, and whose answer is then lost (the connection drops).
    pub drop_rate: f64,
    /// The actions the rates apply to; empty means every action.
    pub actions: Vec<String>,
    /// Faults at exact places.
    pub scripted: Vec<ScriptedFault>,
    pub seed: u64,
    /// Requests per second the API accepts (0: no limit); beyond it, `Throttling.User`.
    pub rate_limit_rps: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedFault {
    /// Only calls signed with this access key count and are hit (one client among several);
    /// `None`: every caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    pub action: String,
    /// The call of that action it hits, counting from 1 (that caller's calls, with `caller`).
    pub nth: u32,
    pub fault: FaultKind,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum FaultKind {
    /// Refused with this error before it runs.
    Error {
        status: u16,
        code: String,
        #[serde(default)]
        message: String,
    },
    Throttle,
    /// Runs, then the answer is lost.
    Drop,
    /// Runs, answered late.
    Slow {
        ms: u64,
    },
}

/// What happens to one call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fate {
    /// Refused before running.
    pub refuse: Option<ApiError>,
    /// Runs, then the answer is dropped.
    pub drop: bool,
    pub delay: Duration,
}

pub fn throttled() -> ApiError {
    ApiError::new(
        400,
        "Throttling.User",
        "Request was denied due to user flow control.",
    )
}

/// How many faults of each kind were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultStats {
    pub throttled: u64,
    pub errors: u64,
    pub slowed: u64,
    pub dropped: u64,
}

impl FaultStats {
    pub fn total(&self) -> u64 {
        self.throttled + self.errors + self.slowed + self.dropped
    }
}

/// Decides the fate of each call.
pub struct Injector {
    pub faults: Faults,
    rng: fastrand::Rng,
    counts: HashMap<String, u32>,
    /// Calls per (caller, action), for scripted faults aimed at one caller.
    caller_counts: HashMap<(String, String), u32>,
    pub stats: FaultStats,
    /// Start of the current one-second window, and requests seen in it.
    window: (std::time::Instant, u32),
}

impl Injector {
    pub fn new(faults: Faults) -> Self {
        let rng = fastrand::Rng::with_seed(faults.seed);
        Self {
            faults,
            rng,
            counts: HashMap::new(),
            caller_counts: HashMap::new(),
            stats: FaultStats::default(),
            window: (std::time::Instant::now(), 0),
        }
    }

    /// Counts a request against the rate limit; `true` when it is over.
    fn over_rate(&mut self) -> bool {
        let limit = self.faults.rate_limit_rps;
        if limit == 0 {
            return false;
        }
        if self.window.0.elapsed() >= Duration::from_secs(1) {
            self.window = (std::time::Instant::now(), 0);
        }
        self.window.1 += 1;
        self.window.1 > limit
    }

    /// New settings; counts are kept, the random sequence restarts from the new seed.
    pub fn replace(&mut self, faults: Faults) {
        self.rng = fastrand::Rng::with_seed(faults.seed);
        self.faults = faults;
    }

    /// Calls of each action seen so far (authenticated ones).
    pub fn counts(&self) -> &HashMap<String, u32> {
        &self.counts
    }

    /// The fate of one call of `action`, signed by `caller`.
    pub fn decide(&mut self, action: &str, caller: &str) -> Fate {
        let fate = self.fate(action, caller);
        match &fate.refuse {
            Some(e) if e.code.starts_with("Throttling") => self.stats.throttled += 1,
            Some(_) => self.stats.errors += 1,
            None => {}
        }
        self.stats.dropped += u64::from(fate.drop);
        self.stats.slowed += u64::from(!fate.delay.is_zero());
        fate
    }

    fn fate(&mut self, action: &str, caller: &str) -> Fate {
        let n = {
            let c = self.counts.entry(action.to_owned()).or_insert(0);
            *c += 1;
            *c
        };
        let by_caller = {
            let c = self
                .caller_counts
                .entry((caller.to_owned(), action.to_owned()))
                .or_insert(0);
            *c += 1;
            *c
        };
        let mut fate = Fate::default();
        if self.over_rate() {
            fate.refuse = Some(throttled());
            return fate;
        }
        if let Some(s) = self.faults.scripted.iter().find(|s| {
            s.action == action
                && match &s.caller {
                    None => s.nth == n,
                    Some(c) => c == caller && s.nth == by_caller,
                }
        }) {
            match &s.fault {
                FaultKind::Error {
                    status,
                    code,
                    message,
                } => {
                    let msg = if message.is_empty() {
                        "Injected by the simulator.".to_owned()
                    } else {
                        message.clone()
                    };
                    fate.refuse = Some(ApiError::new(*status, code, msg));
                }
                FaultKind::Throttle => fate.refuse = Some(throttled()),
                FaultKind::Drop => fate.drop = true,
                FaultKind::Slow { ms } => fate.delay = Duration::from_millis(*ms),
            }
            return fate;
        }
        let f = &self.faults;
        if !f.actions.is_empty() && !f.actions.iter().any(|a| a == action) {
            return fate;
        }
        // One draw per kind keeps the sequence stable when a rate is zero.
        let (t, e, s, d, which) = (
            self.rng.f64(),
            self.rng.f64(),
            self.rng.f64(),
            self.rng.f64(),
            self.rng.bool(),
        );
        if t < f.throttle_rate {
            fate.refuse = Some(throttled());
        } else if e < f.error_rate {
            fate.refuse = Some(if which {
                ApiError::new(
                    500,
                    "InternalError",
                    "The request processing has failed due to some unknown error, exception or failure.",
                )
            } else {
                ApiError::new(
                    503,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                )
            });
        } else if d < f.drop_rate {
            fate.drop = true;
        }
        if s < f.slow_rate {
            fate.delay = Duration::from_millis(f.slow_ms);
        }
        fate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_fault_hits_the_nth_call_only() {
        let mut inj = Injector::new(Faults {
            scripted: vec![ScriptedFault {
                caller: None,
                action: "ResetDisk".into(),
                nth: 2,
                fault: FaultKind::Drop,
            }],
            ..Default::default()
        });
        assert!(!inj.decide("ResetDisk", "ak").drop);
        assert!(!inj.decide("StopInstance", "ak").drop);
        assert!(inj.decide("ResetDisk", "ak").drop);
        assert!(!inj.decide("ResetDisk", "ak").drop);
    }

    #[test]
    fn rates_are_roughly_honoured_and_seeded() {
        let faults = Faults {
            throttle_rate: 0.3,
            seed: 42,
            ..Default::default()
        };
        let run = || {
            let mut inj = Injector::new(faults.clone());
            (0..1000)
                .filter(|_| inj.decide("DescribeInstances", "ak").refuse.is_some())
                .count()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same faults");
        assert!((200..400).contains(&a), "{a} of 1000 throttled at 30%");
    }

    #[test]
    fn actions_filter_limits_the_rates() {
        let mut inj = Injector::new(Faults {
            error_rate: 1.0,
            actions: vec!["ResetDisk".into()],
            ..Default::default()
        });
        assert!(inj.decide("DescribeDisks", "ak").refuse.is_none());
        assert!(inj.decide("ResetDisk", "ak").refuse.is_some());
    }
}
