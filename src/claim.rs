//! The claims: one tag per running invocation, `ecs-rollback:claim:<invocation>` =
//! `<unix>;<16 hex key>[;<unix deadline>]`, written before the invocation acts, renewed beside
//! the run (`rollback/lease.rs`), removed when it ends. Pure: the tag's name and value, when a
//! claim stops counting, and who is in the way of a new one (see docs/rollback-protocol.md,
//! "Claiming"). Its times are ECS's clock (`ecs::clock`), as every time of the ledger.

pub const CLAIM_PREFIX: &str = "ecs-rollback:claim:";

/// The claim tag of one invocation.
pub fn claim_tag(invocation: &str) -> String {
    format!("{CLAIM_PREFIX}{invocation}")
}

/// The claim's value: when it was (re)written, whose key it runs (the run tag's 16 hex), and when its invocation's
/// deadline is (none for a run without one: the CLI).
pub fn claim_value(now: i64, key: &str, deadline: Option<i64>) -> String {
    match deadline {
        Some(d) => format!("{now};{key};{d}"),
        None => format!("{now};{key}"),
    }
}

/// Seconds after a holder's deadline before its claim is taken as dead: a run sends no
/// state-changing call in the last seconds before its deadline (the orchestrator's margin), so
/// this covers a request still on the wire and the clocks of two hosts.
pub const DEADLINE_GRACE_SECS: i64 = 3;

/// One invocation's claim on the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub invocation: String,
    /// Unix time of its last heartbeat.
    pub at: i64,
    /// The 16-hex key it runs.
    pub key: String,
    /// Its invocation's deadline (unix), when it has one.
    pub deadline: Option<i64>,
}

impl Claim {
    /// When the claim stops counting: its heartbeat timed out, or its invocation's deadline
    /// (plus [`DEADLINE_GRACE_SECS`]) passed, whichever comes first. The deadline rule is the
    /// one AWS Lambda Powertools' idempotency uses: an in-progress record expires with the
    /// invocation that wrote it.
    pub fn expires_at(&self, heartbeat_secs: i64) -> i64 {
        let beat = self.at + heartbeat_secs;
        match self.deadline {
            Some(d) => beat.min(d + DEADLINE_GRACE_SECS),
            None => beat,
        }
    }

    pub fn live(&self, now: i64, heartbeat_secs: i64) -> bool {
        now <= self.expires_at(heartbeat_secs)
    }
}

impl Claim {
    /// The claim tag `ecs-rollback:claim:<invocation>` with `value`; lenient, as a claim that
    /// does not read has no heartbeat and so counts as dead.
    pub fn parse(invocation: &str, value: &str) -> Self {
        let mut parts = value.split(';');
        let at = parts.next().and_then(|a| a.parse().ok()).unwrap_or(0);
        let key = parts.next().unwrap_or("").to_owned();
        let deadline = parts.next().and_then(|d| d.parse().ok());
        Claim {
            invocation: invocation.to_owned(),
            at,
            key,
            deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_reads_back_and_lapses_with_its_heartbeat_or_deadline() {
        let c = Claim::parse("inv-1", &claim_value(1000, "0123456789abcdef", Some(1030)));
        assert_eq!(
            (c.at, c.key.as_str(), c.deadline),
            (1000, "0123456789abcdef", Some(1030))
        );
        assert_eq!(c.expires_at(120), 1030 + DEADLINE_GRACE_SECS);
        assert!(c.live(1033, 120) && !c.live(1034, 120));
        let c = Claim::parse("inv-2", &claim_value(1000, "0123456789abcdef", None));
        assert_eq!(c.expires_at(120), 1120);
        assert!(
            !Claim::parse("inv-3", "garbage").live(1000, 120),
            "a claim that does not read is dead"
        );
        assert_eq!(claim_tag("inv-1"), "ecs-rollback:claim:inv-1");
    }
}
