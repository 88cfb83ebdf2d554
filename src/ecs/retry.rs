//! Exponential backoff with full jitter, bounded in attempts and in total time.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No attempt starts once this much time has passed since the first.
    pub max_elapsed: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// A configuration for tests and the simulator: same shape, small delays. Its time bound
    /// stays well under `Settings::fast()`'s heartbeat timeout, as the claim protocol requires.
    pub fn fast() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(2),
        }
    }

    /// The upper bound of the delay before retry number `retry` (0-based):
    /// `min(max_delay, base_delay * 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// Full jitter: a uniform delay in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(retry).as_micros() as u64;
        Duration::from_micros(rng.u64(0..=ceiling))
    }

    /// Whether another attempt may start after `attempts` made in `elapsed`, waiting `next_delay`.
    pub fn allows(&self, attempts: u32, elapsed: Duration, next_delay: Duration) -> bool {
        attempts < self.max_attempts && elapsed + next_delay < self.max_elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_and_caps() {
        let c = RetryConfig {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(10),
        };
        assert_eq!(c.ceiling(0), Duration::from_millis(100));
        assert_eq!(c.ceiling(1), Duration::from_millis(200));
        assert_eq!(c.ceiling(3), Duration::from_millis(800));
        assert_eq!(c.ceiling(4), Duration::from_secs(1));
        assert_eq!(c.ceiling(400), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_varies() {
        let c = RetryConfig::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let delays: Vec<_> = (0..200).map(|_| c.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= c.ceiling(3)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads the delays");
    }

    #[test]
    fn bounded_in_attempts_and_time() {
        let c = RetryConfig {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(1),
        };
        assert!(c.allows(1, Duration::ZERO, Duration::ZERO));
        assert!(!c.allows(3, Duration::ZERO, Duration::ZERO));
        assert!(!c.allows(1, Duration::from_millis(995), Duration::from_millis(10)));
    }
}
