//! One clock for every writer of the ledger: ECS's own. Every answer carries ECS's `Date`
//! (HTTP: an origin server with a clock sends it in every 2xx, 3xx and 4xx answer, RFC 9110
//! §6.6.1), in whole seconds. A host's clock may be minutes off (a laptop, a VM after suspend;
//! ECS accepts a request's `Timestamp` up to 15 minutes off), and every time the ledger stores
//! or compares (claims, deadlines, completions, the cooldown, superseded requests) must mean
//! the same instant to every writer and reader. So the client keeps, from the answers it gets,
//! the interval in which ECS's clock must be relative to the host's, and tells time as the host's
//! clock corrected just enough to fall inside it: a host whose clock agrees with ECS (within the
//! header's one-second precision) keeps its own, to the millisecond; a host minutes off is
//! brought to within about a second of ECS (less as answers accumulate).
//!
//! Pure: the samples go in, the offset comes out.

use chrono::{DateTime, TimeDelta, Utc};

/// What the answers so far say of ECS's clock relative to this host's: the offset
/// (ECS − host, in ms) lies in `[lo, hi]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerClock {
    bounds: Option<(i64, i64)>,
}

impl ServerClock {
    /// An answer sent at `sent` and received at `received` (host clock) carried `Date: date`
    /// (whole seconds): ECS's clock read `date` to `date + 1 s` at some instant between the two,
    /// so the offset lies in `[date − received, date + 1 s − sent]`. Samples narrow the
    /// interval; one that contradicts it (ECS's clock stepped, or this host's did) starts it
    /// again from that sample.
    pub fn observe(&mut self, sent: DateTime<Utc>, received: DateTime<Utc>, date: DateTime<Utc>) {
        let lo = (date - received).num_milliseconds();
        let hi = (date - sent).num_milliseconds() + 1000;
        if lo > hi {
            return;
        }
        self.bounds = Some(match self.bounds {
            Some((a, b)) if lo.max(a) <= hi.min(b) => (lo.max(a), hi.min(b)),
            _ => (lo, hi),
        });
    }

    /// The correction to add to this host's clock: 0 while the host's clock is consistent
    /// with ECS's (so hosts that agree with ECS agree with each other to the millisecond), else
    /// the middle of what the answers allow (unknown: 0).
    pub fn offset(&self) -> TimeDelta {
        match self.bounds {
            Some((lo, hi)) if lo <= 0 && 0 <= hi => TimeDelta::zero(),
            Some((lo, hi)) => TimeDelta::milliseconds(lo + (hi - lo) / 2),
            None => TimeDelta::zero(),
        }
    }

    /// How far the corrected clock may still be from ECS's (the interval's width), once any
    /// answer was seen.
    pub fn uncertainty(&self) -> Option<TimeDelta> {
        self.bounds.map(|(lo, hi)| TimeDelta::milliseconds(hi - lo))
    }

    /// Whether any answer said what ECS's clock reads.
    pub fn known(&self) -> bool {
        self.bounds.is_some()
    }

    /// `host` (this host's clock), as ECS's clock reads it.
    pub fn ecs_time(&self, host: DateTime<Utc>) -> DateTime<Utc> {
        host + self.offset()
    }
}

/// An HTTP `Date` value (IMF-fixdate, RFC 9110 §5.6.7; the obsolete forms are not sent by
/// current servers and are not read).
pub fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .expect("time")
    }

    #[test]
    fn a_host_that_agrees_with_ecs_keeps_its_own_clock() {
        let mut c = ServerClock::default();
        assert_eq!(c.offset(), TimeDelta::zero());
        assert!(!c.known());
        // Sent at .200, back at .260; ECS said :00 (its clock read :00.000 to :00.999).
        c.observe(
            at("2026-12-05T12:00:00.200Z"),
            at("2026-12-05T12:00:00.260Z"),
            at("2026-12-05T12:00:00Z"),
        );
        assert_eq!(c.offset(), TimeDelta::zero());
        assert!(c.known());
    }

    #[test]
    fn a_host_ten_minutes_fast_is_brought_within_a_second_then_closer() {
        let mut c = ServerClock::default();
        let fast = TimeDelta::minutes(10);
        // ECS's true time t; the host reads t + 10 min.
        let t = at("2026-12-05T12:00:00.300Z");
        c.observe(
            t + fast,
            t + fast + TimeDelta::milliseconds(40),
            at("2026-12-05T12:00:00Z"),
        );
        let err = (c.ecs_time(t + fast) - t).num_milliseconds().abs();
        assert!(err <= 1000, "{err} ms");
        // Answers just past a second tick and just before the next narrow it.
        let t2 = at("2026-12-05T12:00:01.010Z");
        c.observe(
            t2 + fast,
            t2 + fast + TimeDelta::milliseconds(20),
            at("2026-12-05T12:00:01Z"),
        );
        let t3 = at("2026-12-05T12:00:01.985Z");
        c.observe(
            t3 + fast,
            t3 + fast + TimeDelta::milliseconds(10),
            at("2026-12-05T12:00:01Z"),
        );
        let err = (c.ecs_time(t3 + fast) - t3).num_milliseconds().abs();
        assert!(err <= 50, "{err} ms");
        assert!(c.uncertainty().expect("known") <= TimeDelta::milliseconds(50));
    }

    #[test]
    fn a_contradicting_answer_starts_again() {
        let mut c = ServerClock::default();
        let t = at("2026-12-05T12:00:00.500Z");
        c.observe(t, t, at("2026-12-05T12:00:00Z"));
        // The host's clock was stepped back an hour.
        let back = t + TimeDelta::seconds(5) - TimeDelta::hours(1);
        c.observe(back, back, at("2026-12-05T12:00:05Z"));
        let err = (c.ecs_time(back) - (t + TimeDelta::seconds(5)))
            .num_milliseconds()
            .abs();
        assert!(err <= 1000, "{err} ms");
    }

    #[test]
    fn http_dates_are_read() {
        assert_eq!(
            parse_http_date("Sat, 05 Dec 2026 12:18:39 GMT"),
            Some(at("2026-12-05T12:18:39Z"))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
