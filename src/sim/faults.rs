//! Faults the simulator can inject, seeded so a run can be replayed: a fraction of calls
//! throttled, failing with 500/503, answered slowly, or whose answer is dropped after the change
//! was applied; and scripted faults (the Nth call of an action fails a given way). And ECS's own
//! rate limits: calls per API, per region, per account, per minute (ecs-evidence.md §5).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::ApiError;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Fraction of calls refused as throttled (with `throttle_code`) before they run.
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
    /// Requests per second the whole API accepts (0: no limit); beyond it, throttled. Not how ECS
    /// counts (that is `rate_limits`): a load-test knob that makes every action share one budget.
    pub rate_limit_rps: u32,
    /// Calls each action accepts per region per `rate_window_ms`, as ECS counts them: "the
    /// number of calls to each API operation is independently calculated", per region and
    /// account, per minute; "throttled at minute T, … can continue to be called as of minute
    /// T+1" (ecs-evidence.md §5, THR). Defaults: the two published figures, ResetDisk and
    /// StartInstance 500/60 s (APIDOC); the others are not published (Quota Center only), so
    /// they have no limit unless a scenario sets one.
    pub rate_limits: BTreeMap<String, u32>,
    /// The window of `rate_limits`, aligned on the clock: 60 000 ms as ECS counts; shorter only
    /// so that tests need not wait for a minute to pass.
    pub rate_window_ms: u64,
    /// How a throttled call is answered (ecs-evidence.md §5): `Throttling` (403, the ECS API
    /// tables), `Throttling.User` or `Throttling.Api` (400, the API gateway's common errors).
    pub throttle_code: ThrottleCode,
    /// Windows in which some actions are refused (a brownout of the tag service, a permission
    /// lost for a while), each opened by a call of another action (the ledger's writes refused
    /// right after a reset, say).
    pub brownouts: Vec<Brownout>,
    /// Every answer this much later (ms): the network and the API's own time, which real ECS
    /// answers take (roughly 50-300 ms a call from outside its region); 0 answers at once. A
    /// knob of the scenario, not an ECS rule.
    pub latency_ms: u64,
    /// Plus a uniform draw from 0 to this many ms per call (drawn only when not 0, so the
    /// other faults' sequence is the same with and without it).
    pub latency_jitter_ms: u64,
}

/// A window of refusals: from the moment the `nth` call of `after` is let through, for
/// `for_ms`, every call of `actions` is refused with `status` and `code`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Brownout {
    pub after: String,
    pub nth: u32,
    pub for_ms: u64,
    pub actions: Vec<String>,
    pub status: u16,
    pub code: String,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            throttle_rate: 0.0,
            error_rate: 0.0,
            slow_rate: 0.0,
            slow_ms: 0,
            drop_rate: 0.0,
            actions: Vec::new(),
            scripted: Vec::new(),
            seed: 0,
            rate_limit_rps: 0,
            rate_limits: published_rate_limits(),
            rate_window_ms: 60_000,
            throttle_code: ThrottleCode::default(),
            brownouts: Vec::new(),
            latency_ms: 0,
            latency_jitter_ms: 0,
        }
    }
}

/// The per-minute limits ECS publishes (ecs-evidence.md §5, APIDOC "流控信息 请求速率为500/60(s)").
pub fn published_rate_limits() -> BTreeMap<String, u32> {
    [("ResetDisk", 500), ("StartInstance", 500)]
        .into_iter()
        .map(|(a, n)| (a.to_owned(), n))
        .collect()
}

/// The three throttling answers ECS gives (ecs-evidence.md §5).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum ThrottleCode {
    /// 403 `Throttling`, "Request was denied due to user flow control." (DOC-SNAP's table).
    #[default]
    #[serde(rename = "Throttling")]
    Throttling,
    /// 400 `Throttling.User` (the POP gateway's common errors).
    #[serde(rename = "Throttling.User")]
    User,
    /// 400 `Throttling.Api` (named by the gateway; its status on ECS is NOT FOUND, so it
    /// takes the gateway's 400 like `Throttling.User`: UNCONFIRMED status).
    #[serde(rename = "Throttling.Api")]
    Api,
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
    /// With a refusal by `rate_limits`: the `x-acs-retry-after` header, in milliseconds, until
    /// the window ends. The official SDK reads that header and sleeps that many milliseconds
    /// (alibabacloud-tea-openapi 0.4.6 `Utils.get_throttling_time_left`, darabonba-core 1.0.9
    /// `get_backoff_time` then `sleep(millisecond)`); whether ECS itself sends it is NOT FOUND,
    /// so sending it is UNCONFIRMED: the client must work without it too.
    pub retry_after_ms: Option<u64>,
}

/// The answer to a throttled call.
pub fn throttled(code: ThrottleCode) -> ApiError {
    match code {
        // Source: ecs-evidence.md §5 (DOC-SNAP: "403 Throttling Request was denied due to user
        // flow control.").
        ThrottleCode::Throttling => ApiError::new(
            403,
            "Throttling",
            "Request was denied due to user flow control.",
        ),
        // Source: ecs-evidence.md §5 (POP common errors: "400 Throttling.User Request denied
        // because the throttling threshold is reached.").
        ThrottleCode::User => ApiError::new(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        ),
        // UNCONFIRMED: the code is named by the gateway (ecs-evidence.md §5); its status and
        // message on ECS are not found.
        ThrottleCode::Api => ApiError::new(
            400,
            "Throttling.Api",
            "Request was denied due to api flow control.",
        ),
    }
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
    /// Per (region, action): the clock-aligned window it counts in, and calls seen in it.
    per_action: HashMap<(String, String), (u64, u32)>,
    /// When each brownout opened (by its index in `faults.brownouts`).
    brownouts_open: HashMap<usize, std::time::Instant>,
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
            per_action: HashMap::new(),
            brownouts_open: HashMap::new(),
        }
    }

    /// Counts a call against its action's per-window limit in `region`: `Some(ms left in the
    /// window)` when it is over. Every call counts, refused ones too (ECS counts calls).
    fn over_action_limit(&mut self, region: &str, action: &str) -> Option<u64> {
        let limit = *self.faults.rate_limits.get(action)?;
        let window = self.faults.rate_window_ms.max(1);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let index = now_ms / window;
        let slot = self
            .per_action
            .entry((region.to_owned(), action.to_owned()))
            .or_insert((index, 0));
        if slot.0 != index {
            *slot = (index, 0);
        }
        slot.1 += 1;
        (slot.1 > limit).then(|| (index + 1) * window - now_ms)
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

    /// The fate of one call of `action` in `region`, signed by `caller`.
    pub fn decide(&mut self, region: &str, action: &str, caller: &str) -> Fate {
        let mut fate = self.fate(region, action, caller);
        match &fate.refuse {
            Some(e) if e.code.starts_with("Throttling") => self.stats.throttled += 1,
            Some(_) => self.stats.errors += 1,
            None => {}
        }
        self.stats.dropped += u64::from(fate.drop);
        self.stats.slowed += u64::from(!fate.delay.is_zero());
        let jitter = match self.faults.latency_jitter_ms {
            0 => 0,
            j => self.rng.u64(0..=j),
        };
        fate.delay += Duration::from_millis(self.faults.latency_ms + jitter);
        fate
    }

    fn fate(&mut self, region: &str, action: &str, caller: &str) -> Fate {
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
        let code = self.faults.throttle_code;
        if let Some(left_ms) = self.over_action_limit(region, action) {
            fate.refuse = Some(throttled(code));
            fate.retry_after_ms = Some(left_ms.max(1));
            return fate;
        }
        if self.over_rate() {
            fate.refuse = Some(throttled(code));
            return fate;
        }
        let now = std::time::Instant::now();
        if let Some(b) = self.faults.brownouts.iter().enumerate().find(|(i, b)| {
            b.actions.iter().any(|a| a == action)
                && self
                    .brownouts_open
                    .get(i)
                    .is_some_and(|at| now < *at + Duration::from_millis(b.for_ms))
        }) {
            // Source: the scenario (a brownout is the test's own answer).
            fate.refuse = Some(ApiError::new(
                b.1.status,
                &b.1.code,
                "Injected by the simulator (brownout).",
            ));
            return fate;
        }
        let opened: Vec<usize> = (self.faults.brownouts.iter().enumerate())
            .filter(|(_, b)| b.after == action && b.nth == n)
            .map(|(i, _)| i)
            .collect();
        for i in opened {
            self.brownouts_open.insert(i, now);
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
                    // Source: the scenario (a scripted fault is the test's own answer).
                    fate.refuse = Some(ApiError::new(*status, code, msg));
                }
                FaultKind::Throttle => fate.refuse = Some(throttled(code)),
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
            fate.refuse = Some(throttled(code));
        } else if e < f.error_rate {
            // Source: ecs-api.md §5.2 (500 `InternalError`, 503 `ServiceUnavailable`).
            fate.refuse = Some(if which {
                ApiError::new(
                    500,
                    "InternalError",
                    "The request processing has failed due to some unknown error, exception or failure.",
                )
            } else {
                // Source: ecs-api.md §5.2 (503 ServiceUnavailable).
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
    fn latency_delays_every_answer_within_its_jitter() {
        let mut inj = Injector::new(Faults {
            latency_ms: 150,
            latency_jitter_ms: 40,
            ..Default::default()
        });
        let delays: Vec<u64> = (0..200)
            .map(|_| {
                inj.decide("cn-hangzhou", "DescribeDisks", "ak")
                    .delay
                    .as_millis() as u64
            })
            .collect();
        assert!(delays.iter().all(|d| (150..=190).contains(d)), "{delays:?}");
        assert!(delays.iter().any(|d| *d != delays[0]), "jittered");
        assert_eq!(inj.stats.slowed, 0, "latency is not a fault");
        let mut none = Injector::new(Faults::default());
        assert!(none
            .decide("cn-hangzhou", "DescribeDisks", "ak")
            .delay
            .is_zero());
    }

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
        assert!(!inj.decide("cn-hangzhou", "ResetDisk", "ak").drop);
        assert!(!inj.decide("cn-hangzhou", "StopInstance", "ak").drop);
        assert!(inj.decide("cn-hangzhou", "ResetDisk", "ak").drop);
        assert!(!inj.decide("cn-hangzhou", "ResetDisk", "ak").drop);
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
                .filter(|_| {
                    inj.decide("cn-hangzhou", "DescribeInstances", "ak")
                        .refuse
                        .is_some()
                })
                .count()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same faults");
        assert!((200..400).contains(&a), "{a} of 1000 throttled at 30%");
    }

    #[test]
    fn rate_limits_count_each_action_and_region_apart_per_window() {
        // ecs-evidence.md §5 (THR): per API, per region, per account, per minute; 500/60 s for
        // ResetDisk and StartInstance by default.
        assert_eq!(Faults::default().rate_limits.get("ResetDisk"), Some(&500));
        assert_eq!(Faults::default().rate_window_ms, 60_000);
        let mut inj = Injector::new(Faults {
            rate_limits: [("StartInstance".to_owned(), 3)].into_iter().collect(),
            ..Default::default()
        });
        // A window that rolls over mid-test would reset the count: start in a fresh one.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        if now % 60_000 > 50_000 {
            std::thread::sleep(Duration::from_millis(60_000 - now % 60_000 + 10));
        }
        let start: Vec<Fate> = (0..4)
            .map(|_| inj.decide("cn-hangzhou", "StartInstance", "ak"))
            .collect();
        let elsewhere = inj.decide("cn-beijing", "StartInstance", "ak");
        let other = inj.decide("cn-hangzhou", "StopInstance", "ak");
        assert!(start[..3].iter().all(|f| f.refuse.is_none()));
        let e = start[3]
            .refuse
            .clone()
            .expect("the fourth in the minute is throttled");
        assert_eq!((e.status, e.code.as_str()), (403, "Throttling"));
        let after = start[3].retry_after_ms.expect("retry-after");
        assert!((1..=60_000).contains(&after), "{after}");
        assert!(elsewhere.refuse.is_none(), "another region counts apart");
        assert!(other.refuse.is_none(), "another action counts apart");
    }

    #[test]
    fn the_throttle_code_is_configurable() {
        for (code, status, name) in [
            (ThrottleCode::Throttling, 403, "Throttling"),
            (ThrottleCode::User, 400, "Throttling.User"),
            (ThrottleCode::Api, 400, "Throttling.Api"),
        ] {
            let mut inj = Injector::new(Faults {
                throttle_rate: 1.0,
                throttle_code: code,
                ..Default::default()
            });
            let e = inj
                .decide("cn-hangzhou", "DescribeDisks", "ak")
                .refuse
                .expect("throttled");
            assert_eq!((e.status, e.code.as_str()), (status, name));
        }
        let parsed: Faults =
            serde_json::from_str(r#"{"throttleCode":"Throttling.User"}"#).expect("json");
        assert_eq!(parsed.throttle_code, ThrottleCode::User);
    }

    #[test]
    fn actions_filter_limits_the_rates() {
        let mut inj = Injector::new(Faults {
            error_rate: 1.0,
            actions: vec!["ResetDisk".into()],
            ..Default::default()
        });
        assert!(inj
            .decide("cn-hangzhou", "DescribeDisks", "ak")
            .refuse
            .is_none());
        assert!(inj
            .decide("cn-hangzhou", "ResetDisk", "ak")
            .refuse
            .is_some());
    }
}
