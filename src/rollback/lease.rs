//! The claim as a lease. A run's claim tag tells every other delivery that this invocation
//! holds the disk until the claim's heartbeat times out (or its invocation's deadline passes);
//! another delivery may take the disk over after that. So the holder must (1) renew its claim
//! on time, whatever its own steps are doing, and (2) stop changing anything before the claim
//! may have lapsed, however long a call waited in the client's pace or retries.
//!
//! - The keeper ([`Lease::keep`]) runs beside the run and writes the claim again every quarter
//!   of the heartbeat timeout, ahead of the client's pace (one call per renewal); a phase write
//!   renews it too. Claim writes are serialized, so the newest acknowledged value is the one
//!   on the disk.
//! - The fence ([`Lease::fence`]) is checked by the ECS client right before each state-changing
//!   request leaves: once the lease may have lapsed, nothing is sent. A lease lapses at the
//!   time its newest acknowledged value expires for any reader (written `at`, whole seconds,
//!   plus the heartbeat timeout; less the settle time for a read that lags and a margin for
//!   clocks apart), less [`SEND_GUARD`] for a request on the wire. Lost once, it stays lost for
//!   this delivery (a rival may have taken the disk meanwhile): the run ends, retryable, and
//!   the next delivery resumes from the ledger.
//! - Giving the claim back waits for a renewal in flight, so no renewal lands after the
//!   removal.

use std::sync::Mutex;

use super::*;
use crate::ecs::ErrorKind;

/// Clocks of two invocations a little apart: a reader's may run ahead of the holder's. Every
/// writer keeps ECS's clock (`ecs::clock`): hosts that agree with ECS keep their own (NTP: ms
/// apart), a host minutes off is corrected to within the `Date` header's second (less as answers
/// accumulate); so two writers are at most about a second apart. At most an eighth of the
/// heartbeat timeout (the tests' short ones).
const SKEW: Duration = Duration::from_millis(1500);

pub(super) struct Lease {
    state: Mutex<State>,
    /// Held by a claim write in flight.
    writing: tokio::sync::Mutex<()>,
    stop: tokio::sync::watch::Sender<bool>,
    /// The key digest the claim names.
    digest: String,
    /// The heartbeat timeout as readers count it: whole seconds (`claim::Claim::live`).
    beat: Duration,
    settle: Duration,
    /// How long before the lapse the last request may leave: [`SEND_GUARD`], less for a short
    /// heartbeat timeout (the tests').
    guard: Duration,
    /// [`SKEW`], less for a short heartbeat timeout.
    skew: Duration,
    deadline: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// The disk whose claim this run counts on, and when the newest acknowledged claim value
    /// was made; `None` while the run holds no claim.
    held: Option<(String, Instant)>,
    lost: bool,
}

impl Lease {
    pub(super) fn new(s: &Settings, digest: &str, deadline: Option<Instant>) -> Self {
        Self {
            digest: digest.to_owned(),
            state: Mutex::new(State::default()),
            writing: tokio::sync::Mutex::new(()),
            stop: tokio::sync::watch::channel(false).0,
            beat: Duration::from_secs(s.heartbeat_timeout.as_secs().max(1)),
            settle: s.tag_settle,
            guard: SEND_GUARD.min(Duration::from_secs(s.heartbeat_timeout.as_secs().max(1)) / 8),
            skew: SKEW.min(Duration::from_secs(s.heartbeat_timeout.as_secs().max(1)) / 8),
            deadline,
        }
    }

    /// The claim's value now: the time, the key digest, the invocation's deadline as unix
    /// seconds, rounded up (never before the real deadline, so the claim never lapses sooner
    /// than the grace says).
    /// `now` is ECS's clock (`EcsClient::now`), as every time of the ledger.
    pub(super) fn claim_value(&self, now: DateTime<Utc>) -> String {
        let deadline = self.deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            let at_ms = now.timestamp_millis() + left.as_millis() as i64;
            at_ms.div_euclid(1000) + i64::from(at_ms.rem_euclid(1000) > 0)
        });
        claim::claim_value(unix(now), &ledger::run_key(&self.digest), deadline)
    }

    /// Past the last moment a state-changing request may leave before the invocation's
    /// deadline ([`SEND_GUARD`]).
    pub(super) fn past_send_horizon(&self) -> bool {
        self.deadline
            .is_some_and(|d| Instant::now() + SEND_GUARD >= d)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves plain data behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Until when a claim value made at `written` certainly counts for every reader. Its `at`
    /// is `written` in whole seconds, rounded down, and a reader counts it live while its own
    /// clock's whole second is at most `at` + the timeout: until `written` + the timeout at
    /// least. Less the settle time (a read that lags shows the value before) and [`SKEW`].
    fn lapses(&self, written: Instant) -> Instant {
        written + self.beat.saturating_sub(self.settle + self.skew)
    }

    /// How often the claim is renewed: four times per timeout, so a renewal refused or lost
    /// has time to be made again before the lease lapses.
    fn every(&self) -> Duration {
        self.beat / 4
    }

    /// The claim contest was won with a claim made at `written`: the lease begins.
    pub(super) fn taken(&self, disk: &str, written: Instant) {
        let mut st = self.state();
        st.held = Some((disk.to_owned(), written));
        st.lost = false;
    }

    /// A claim value made at `written` was acknowledged. Every request of that write passed
    /// the fence, so it left while the previous value still counted; acknowledged before that
    /// value lapsed, it also landed in time, and the lease goes on. Acknowledged later, it may
    /// have landed after a rival took over: the lease is lost.
    pub(super) fn renewed(&self, written: Instant) {
        let mut st = self.state();
        if st.lost {
            return;
        }
        let late = match st.held.as_mut() {
            Some((_, at)) if Instant::now() >= self.lapses(*at) => true,
            Some((_, at)) => {
                *at = (*at).max(written);
                false
            }
            None => false,
        };
        if late {
            tracing::error!("a renewal of the claim was acknowledged after the claim may have lapsed: this delivery changes nothing more");
            st.lost = true;
        }
    }

    /// Whether this delivery's lease lapsed (it changes nothing more).
    pub(super) fn is_lost(&self) -> bool {
        self.state().lost
    }

    /// The claim is about to be removed: waits for a renewal in flight, then stops renewing.
    pub(super) async fn give_back(&self) {
        let _w = self.writing.lock().await;
        self.state().held = None;
    }

    /// Gives the claim back while holding the write lock (`writing`): the claim's removal was
    /// made under it, so no renewal was in flight or started since, and none follows.
    pub(super) fn give_back_held(&self, _writing: &tokio::sync::MutexGuard<'_, ()>) {
        self.state().held = None;
    }

    /// Serializes a claim write with the keeper's.
    pub(super) async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// The keeper ends (after a renewal in flight).
    pub(super) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Checked right before a state-changing request leaves.
    pub(super) fn fence(&self, action: &str) -> Result<(), (ErrorKind, String)> {
        if self.past_send_horizon() {
            return Err((
                ErrorKind::PastDeadline,
                format!("{action}: the invocation's deadline is too close"),
            ));
        }
        if !self.lapsed(action) {
            return Ok(());
        }
        Err((
            ErrorKind::Fenced,
            format!(
                "{action}: this delivery's claim on the disk could not be renewed within the heartbeat timeout ({} s), so another delivery may hold the disk now",
                self.beat.as_secs()
            ),
        ))
    }

    /// Whether the lease is lost: it was, or it may have lapsed by now (then it is marked lost,
    /// for good). `what` names who asks, for the log. Checked by the fence before every
    /// state-changing request, and by every wait of the run, so a run whose claim lapsed while
    /// it waited ends then, not at its next call.
    pub(super) fn lapsed(&self, what: &str) -> bool {
        let now = Instant::now();
        let mut st = self.state();
        if st.lost {
            return true;
        }
        match &st.held {
            Some((_, written)) if now + self.guard >= self.lapses(*written) => {
                tracing::error!(
                    what,
                    renewed_ms_ago = now.duration_since(*written).as_millis() as u64,
                    heartbeat_timeout_ms = self.beat.as_millis() as u64,
                    "this delivery's claim may have lapsed: it changes nothing more"
                );
                st.lost = true;
                true
            }
            _ => false,
        }
    }

    /// When the lease lapses unless it is renewed first (the fence trips then): a wait wakes
    /// no later. `None` while no claim is held.
    pub(super) fn lapses_at(&self) -> Option<Instant> {
        let st = self.state();
        match (&st.held, st.lost) {
            (Some((_, written)), false) => Some(
                self.lapses(*written)
                    .checked_sub(self.guard)
                    .unwrap_or(*written),
            ),
            (_, true) => Some(Instant::now()),
            _ => None,
        }
    }

    /// Renews the claim (`tag`) every quarter of the heartbeat timeout until [`Lease::stop`].
    pub(super) async fn keep(&self, ecs: &EcsClient, region: &str, tag: &str) {
        let mut stopped = self.stop.subscribe();
        // After a failed renewal, or near the deadline: when to look again.
        let mut again: Option<Instant> = None;
        loop {
            if *stopped.borrow() {
                return;
            }
            let due = again.take().unwrap_or_else(|| {
                let st = self.state();
                match (&st.held, st.lost) {
                    (Some((_, written)), false) => *written + self.every(),
                    _ => Instant::now() + self.every(),
                }
            });
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
            let _w = self.writing.lock().await;
            let disk = {
                let st = self.state();
                match &st.held {
                    Some((disk, written)) if !st.lost && written.elapsed() >= self.every() => {
                        disk.clone()
                    }
                    _ => continue,
                }
            };
            if self.past_send_horizon() {
                // The claim lapses with the deadline anyway; nothing is sent any more.
                again = Some(Instant::now() + self.beat);
                continue;
            }
            let written = Instant::now();
            let tags = [(tag.to_owned(), self.claim_value(ecs.now()))];
            let disks = [disk];
            match crate::ecs::client::urgent(ecs.tag_resources(region, "disk", &disks, &tags)).await
            {
                Ok(_) => self.renewed(written),
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the claim; trying again");
                    // Again soon: the lease lapses about three quarters of the timeout past due.
                    again = Some(Instant::now() + self.beat / 16);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(deadline: Option<Instant>) -> Lease {
        Lease::new(
            &Settings {
                heartbeat_timeout: Duration::from_secs(30),
                tag_settle: Duration::from_millis(500),
                ..Settings::default()
            },
            "0123456789abcdef",
            deadline,
        )
    }

    fn ago(secs: u64) -> Instant {
        Instant::now() - Duration::from_secs(secs)
    }

    #[test]
    fn without_a_claim_only_the_deadline_fences() {
        assert!(lease(None).fence("TagResources").is_ok());
        let near = lease(Some(Instant::now() + SEND_GUARD / 2));
        let (kind, why) = near.fence("StopInstance").unwrap_err();
        assert_eq!(kind, ErrorKind::PastDeadline);
        assert!(why.contains("StopInstance"), "{why}");
        assert!(!near.is_lost(), "the deadline is not a lapsed claim");
    }

    #[test]
    fn a_claim_fences_from_the_moment_it_may_have_lapsed_and_for_good() {
        let l = lease(None);
        // 30 s timeout, less 0.5 s settle, 1.5 s for clocks and the 0.5 s send guard: 27.5 s.
        l.taken("d-1", ago(27));
        assert!(l.fence("ResetDisk").is_ok());
        l.taken("d-1", ago(28));
        let (kind, why) = l.fence("ResetDisk").unwrap_err();
        assert_eq!(kind, ErrorKind::Fenced);
        assert!(why.contains("30 s"), "{why}");
        assert!(l.is_lost());
        // A renewal acknowledged after the lapse does not revive it: a rival may hold the disk.
        l.renewed(Instant::now());
        assert!(l.fence("StartInstance").is_err());
        // Nor does one whose answer came after the lapse, though it left in time (a slow
        // answer: it may have landed late).
        let slow = lease(None);
        slow.taken("d-1", ago(30));
        slow.renewed(ago(1));
        assert!(slow.is_lost());
        assert!(slow.fence("StopInstance").is_err());
    }

    #[tokio::test]
    async fn the_keeper_ends_when_stopped_even_before_it_first_ran() {
        let l = lease(None);
        l.stop();
        let client = crate::ecs::EcsClient::new(
            std::sync::Arc::new(crate::ecs::transport::ReqwestTransport::default()),
            crate::ecs::Endpoint::Regional,
            crate::ecs::CredentialSource::FromRuntime,
            crate::ecs::RetryConfig::fast(),
        );
        let kept = l.keep(&client, "cn-hangzhou", "t");
        assert!(
            tokio::time::timeout(Duration::from_secs(5), kept)
                .await
                .is_ok(),
            "the keeper ignored a stop sent before it began"
        );
    }

    #[test]
    fn a_short_heartbeat_still_leaves_room_between_renewals() {
        // The tests' 1.5 s: readers count 1 s; renewed every 250 ms; sends until 740 ms (less
        // the settle, an eighth for clocks and an eighth for the send guard).
        let l = Lease::new(
            &Settings {
                heartbeat_timeout: Duration::from_millis(1500),
                tag_settle: Duration::from_millis(10),
                ..Settings::default()
            },
            "0123456789abcdef",
            None,
        );
        assert_eq!(l.every(), Duration::from_millis(250));
        l.taken("d-1", Instant::now() - Duration::from_millis(500));
        assert!(l.fence("StopInstance").is_ok());
        l.taken("d-1", Instant::now() - Duration::from_millis(800));
        assert!(l.fence("StopInstance").is_err());
    }

    #[test]
    fn renewals_move_the_lapse_forward_never_back() {
        let l = lease(None);
        l.taken("d-1", ago(20));
        l.renewed(ago(1));
        // An older value acknowledged late (a slow write) does not shorten the lease.
        l.renewed(ago(25));
        assert!(l.fence("StopInstance").is_ok());
        // Given back: not held, so not fenced by it (the removal of its own claim goes out).
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(l.give_back());
        l.renewed(Instant::now());
        assert!(l.fence("UntagResources").is_ok());
    }
}
