//! The pace shared by every call of one client: throttling anywhere slows every call down,
//! success lets it recover.

use super::*;

/// The pace shared by every call of one client: throttling anywhere slows every call down
/// (the gap between calls doubles, with jitter), success lets it recover (it halves).
#[derive(Debug)]
pub(super) struct Pace {
    pub(super) next_allowed: Instant,
    pub(super) gap: Duration,
    /// When the gap last grew: answers throttled together grow it once, not once each.
    pub(super) grown_at: Instant,
    /// Per action: no call before this moment, because ECS said so (`x-acs-retry-after`). ECS
    /// counts each API on its own (ecs-evidence.md §5), so one action's hold leaves the others.
    pub(super) holds: HashMap<String, Instant>,
}

impl EcsClient {
    /// How long to wait before the next call may go out.
    pub(super) fn pace_wait(&self) -> Duration {
        match self.pace.lock() {
            Ok(mut p) => {
                let now = Instant::now();
                let wait = p.next_allowed.saturating_duration_since(now);
                // Calls leave at least `gap` apart while the API pushes back.
                p.next_allowed = p.next_allowed.max(now) + p.gap;
                wait
            }
            Err(_) => Duration::ZERO,
        }
    }

    pub(super) fn pace_throttled(&self) {
        // Its own bounds, not the retry loop's: the gap must be able to grow until the calls of
        // every concurrent run together fit under the API's rate.
        const FLOOR: Duration = Duration::from_millis(10);
        const CAP: Duration = Duration::from_millis(500);
        if let Ok(mut p) = self.pace.lock() {
            let now = Instant::now();
            if now.duration_since(p.grown_at) >= p.gap.max(FLOOR) {
                p.gap = (p.gap * 2)
                    .max(FLOOR)
                    .min(CAP)
                    .mul_f64(0.75 + fastrand::f64() / 4.0);
                p.grown_at = now;
            }
            p.next_allowed = p.next_allowed.max(now + p.gap);
        }
    }

    /// ECS asked that `action` wait `d` before it is called again.
    pub(super) fn pace_hold(&self, action: &str, d: Duration) {
        if let Ok(mut p) = self.pace.lock() {
            let until = Instant::now() + d;
            let slot = p.holds.entry(action.to_owned()).or_insert(until);
            *slot = (*slot).max(until);
        }
    }

    /// How long `action` is still held back by ECS's `x-acs-retry-after`.
    pub(super) fn pace_held(&self, action: &str) -> Duration {
        match self.pace.lock() {
            Ok(mut p) => {
                let now = Instant::now();
                p.holds.retain(|_, until| *until > now);
                p.holds
                    .get(action)
                    .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
            }
            Err(_) => Duration::ZERO,
        }
    }

    pub(super) fn pace_ok(&self) {
        if let Ok(mut p) = self.pace.lock() {
            // A success halves the gap. Growth is once per gap period, so under a sustained rate
            // limit the gap settles near it, and under random refusals (which no pace can avoid)
            // it stays small instead of climbing to the cap.
            p.gap /= 2;
            if p.gap < Duration::from_millis(1) {
                p.gap = Duration::ZERO;
            }
        }
    }

    // ---- credentials -------------------------------------------------------------------
}
