//! When to look again while waiting for a step's end (pure). A wait that knows how long the
//! step took on this disk last time ([`ledger::Durations`]) reads little while the step cannot
//! be over yet and every `dense` (1 s by default, Alibaba's advice for state checks,
//! ecs-evidence.md §5) around its expected end; a wait that knows nothing reads every `dense`
//! for a while, then backs off. Either way, a step that outlasts what was expected is read
//! densely for a while more, then less and less often, up to `max`.

use std::time::Duration;

/// How long a wait with nothing learned reads densely before it backs off.
const UNKNOWN_DENSE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    /// How long the step took last time on this disk (or instance), when known.
    pub expected: Option<Duration>,
    /// The pause near the expected end.
    pub dense: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Cadence {
    /// The pause before the next read, `elapsed` after the step began (the waits count from
    /// the call's acceptance, when ECS began the step; `elapsed` is when the last read was
    /// answered). Reads fall on one grid, every `dense` from the step's start, whatever the
    /// round trips: a learned wait skips grid points while the step cannot be over yet, so it
    /// sees an end no later than a dense wait would (issue 26: off the grid, a learned wait saw
    /// each end up to a pause later than the first rollback's), and a read's own round trip
    /// does not push the next one back. Two sends stay at least `dense` apart, and the pause
    /// after an answer is at least half of it: a read answered within half of `dense` of the
    /// next grid point skips it (so a round trip near `dense` does not double the reads).
    pub fn pause(&self, elapsed: Duration) -> Duration {
        let dense = self.dense.min(self.max);
        if dense.is_zero() {
            return self.unaligned(elapsed);
        }
        let raw = self.unaligned(elapsed);
        let d = dense.as_nanos();
        let el = elapsed.as_nanos();
        let next_grid = (el / d + 1) * d;
        let below = (el + raw.as_nanos()) / d * d;
        let mut at = below.max(next_grid);
        if at - el < d / 2 {
            at += d;
        }
        let pause = Duration::from_nanos(u64::try_from(at - el).unwrap_or(u64::MAX));
        pause.min(self.max.max(dense))
    }

    /// The pause before the next read, not aligned to the grid.
    fn unaligned(&self, elapsed: Duration) -> Duration {
        let dense = self.dense.min(self.max);
        let dense_until = match self.expected {
            // A third of what is left, while that is more than a dense pause: about three
            // reads before the expected end, however long the step.
            Some(e) if elapsed + dense * 3 < e => {
                return ((e - elapsed) / 3).clamp(dense, self.max);
            }
            // Around and past the expected end: dense for half as long again, and 10 s more.
            Some(e) => e + e / 2 + UNKNOWN_DENSE / 3,
            None => UNKNOWN_DENSE,
        };
        if elapsed <= dense_until {
            return dense;
        }
        // Past it: the pause grows by half of the time past, up to `max`.
        (dense + (elapsed - dense_until) / 2).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn reads_until(c: &Cadence, end: Duration) -> (u32, Duration) {
        // Reads made until one sees the step's end at `end`, and how late that read was.
        let mut t = Duration::ZERO;
        let mut reads = 0;
        loop {
            reads += 1;
            if t >= end {
                return (reads, t - end);
            }
            t += c.pause(t);
        }
    }

    #[test]
    fn a_learned_step_is_read_little_before_its_end_and_densely_near_it() {
        let c = Cadence {
            expected: Some(S(12)),
            dense: S(1),
            max: S(15),
        };
        let (reads, late) = reads_until(&c, S(12));
        assert!(
            reads <= 8,
            "{reads} reads for a 12 s stop (a 1 s poll makes 13)"
        );
        assert!(late <= S(1), "seen {late:?} late");
        // A step faster than last time is seen within a third of what was expected.
        let (_, late) = reads_until(&c, S(5));
        assert!(late <= S(4), "{late:?}");
        // A slower one is still read densely for a while past the expected end.
        let (_, late) = reads_until(&c, S(20));
        assert!(late <= S(1), "{late:?}");
    }

    #[test]
    fn an_unknown_step_is_read_densely_then_less_often() {
        let c = Cadence {
            expected: None,
            dense: S(1),
            max: S(15),
        };
        assert_eq!(c.pause(S(0)), S(1));
        assert_eq!(c.pause(S(30)), S(1));
        assert!(c.pause(S(40)) > S(1));
        assert_eq!(c.pause(S(3600)), S(15));
        let (reads, late) = reads_until(&c, S(600));
        assert!(reads < 80, "{reads} reads for a 10-minute reset");
        assert!(late <= S(15));
    }

    #[test]
    fn reads_fall_on_the_dense_grid_whatever_the_round_trip() {
        // A read answered 150 ms after it was sent: the next is sent on the grid, not 1 s
        // after the answer.
        for expected in [None, Some(S(12))] {
            let c = Cadence {
                expected,
                dense: S(1),
                max: S(15),
            };
            let mut sent = Duration::ZERO;
            for _ in 0..20 {
                let answered = sent + Duration::from_millis(150);
                let next = answered + c.pause(answered);
                assert_eq!(next.subsec_nanos(), 0, "{expected:?}: sent at {next:?}");
                assert!(next - sent >= S(1), "{expected:?}");
                sent = next;
            }
        }
    }

    #[test]
    fn a_learned_wait_sees_the_end_no_later_than_a_dense_one() {
        let learned = Cadence {
            expected: Some(S(12)),
            dense: S(1),
            max: S(15),
        };
        let dense = Cadence {
            expected: None,
            ..learned
        };
        for end_ms in (500..30_000).step_by(250) {
            let end = Duration::from_millis(end_ms);
            let (_, late_learned) = reads_until(&learned, end);
            let (_, late_dense) = reads_until(&dense, end);
            if end >= S(8) {
                assert!(
                    late_learned <= late_dense,
                    "end {end:?}: {late_learned:?} against {late_dense:?}"
                );
            }
        }
    }

    #[test]
    fn the_pause_never_exceeds_its_bounds() {
        for expected in [None, Some(S(0)), Some(S(2)), Some(S(600))] {
            let c = Cadence {
                expected,
                dense: Duration::from_millis(5),
                max: Duration::from_millis(40),
            };
            for ms in (0..100_000).step_by(997) {
                let p = c.pause(Duration::from_millis(ms));
                // At least half of `dense` after the last answer (sends stay `dense` apart on
                // the grid), never more than `max`.
                assert!(
                    p >= Duration::from_micros(2500) && p <= Duration::from_millis(40),
                    "{p:?} at {ms} ms"
                );
            }
        }
    }
}
