//! Whether a leader still leads: the pure [`LeaseClock`] and the shared
//! [`LeaseGuard`] every part of the coordinator consults.
//!
//! A leader's lease is renewed by keep-alives. Each renewal that the store
//! confirms extends the leadership from the moment its request was *sent*
//! (the store counts the lease from when it received it, which is later),
//! and the leader steps down once half the lease has passed without a
//! confirmed renewal: well before the store lets the lease expire and
//! another coordinator win, whatever the network or a paused process did
//! in between.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The leadership decision as a pure function of renewals and `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseClock {
    lease: Option<Duration>,
    confirmed: Instant,
}

impl LeaseClock {
    /// A lease of `lease` whose grant was requested at `requested_at`.
    pub fn new(lease: Duration, requested_at: Instant) -> Self {
        Self {
            lease: Some(lease),
            confirmed: requested_at,
        }
    }

    /// Leadership without a lease (a standalone coordinator): never lapses.
    pub fn unbounded(now: Instant) -> Self {
        Self {
            lease: None,
            confirmed: now,
        }
    }

    /// A keep-alive sent at `sent_at` was confirmed.
    pub fn renewed(&mut self, sent_at: Instant) {
        self.confirmed = self.confirmed.max(sent_at);
    }

    /// When leadership lapses unless renewed before (none without a lease).
    pub fn lapses_at(&self) -> Option<Instant> {
        self.lease.map(|lease| self.confirmed + lease / 2)
    }

    /// Whether this coordinator may still act as leader at `now`.
    pub fn leads(&self, now: Instant) -> bool {
        self.lapses_at().is_none_or(|at| now < at)
    }
}

#[derive(Debug)]
struct GuardState {
    clock: LeaseClock,
    lost: Option<String>,
}

/// Shared by the keep-alive loop (which renews it), the coordinator's
/// actions (which check it before acting on workers or storage) and the
/// leadership loop (which waits for it to be lost).
#[derive(Debug)]
pub struct LeaseGuard {
    state: Mutex<GuardState>,
    changed: Condvar,
}

impl LeaseGuard {
    /// A guard over `clock`.
    pub fn new(clock: LeaseClock) -> Self {
        Self {
            state: Mutex::new(GuardState { clock, lost: None }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GuardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A keep-alive sent at `sent_at` was confirmed.
    pub fn renewed(&self, sent_at: Instant) {
        self.state().clock.renewed(sent_at);
    }

    /// Whether this coordinator still leads.
    pub fn leads(&self) -> bool {
        let state = self.state();
        state.lost.is_none() && state.clock.leads(Instant::now())
    }

    /// When leadership lapses unless renewed (none without a lease).
    pub fn lapses_at(&self) -> Option<Instant> {
        self.state().clock.lapses_at()
    }

    /// Leadership is over, for `reason` (the first reason is kept).
    pub fn lose(&self, reason: impl Into<String>) {
        let mut state = self.state();
        if state.lost.is_none() {
            state.lost = Some(reason.into());
        }
        self.changed.notify_all();
    }

    /// A write of `store` failed with `error`: leadership is over, unless
    /// the store keeps its term through such a failure.
    pub fn write_failed(
        &self,
        store: &dyn super::ControlStore,
        error: &crate::error::CoordinatorError,
    ) {
        if !store.survives_failed_write(error) {
            self.lose(crate::error::chain(error));
        }
    }

    /// Why leadership was lost, if it was: also when the clock lapsed.
    pub fn lost(&self) -> Option<String> {
        let mut state = self.state();
        if state.lost.is_none() && !state.clock.leads(Instant::now()) {
            state.lost = Some("the lease was not renewed within half its length".into());
        }
        state.lost.clone()
    }

    /// Blocks until leadership is lost (by [`lose`](Self::lose) or because
    /// the clock lapsed); returns why.
    pub fn wait_lost(&self) -> String {
        let mut state = self.state();
        loop {
            if let Some(reason) = &state.lost {
                return reason.clone();
            }
            let now = Instant::now();
            match state.clock.lapses_at() {
                Some(at) if at <= now => {
                    state.lost = Some("the lease was not renewed within half its length".into());
                }
                Some(at) => {
                    state = self
                        .changed
                        .wait_timeout(state, at - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => {
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_leader_steps_down_half_a_lease_after_its_last_confirmed_renewal() {
        let t0 = Instant::now();
        let mut clock = LeaseClock::new(ms(2000), t0);
        assert!(clock.leads(t0 + ms(999)));
        assert!(
            !clock.leads(t0 + ms(1000)),
            "half the lease without renewal"
        );
        // Renewals count from when they were sent, not confirmed.
        clock.renewed(t0 + ms(500));
        assert!(clock.leads(t0 + ms(1499)));
        assert!(!clock.leads(t0 + ms(1500)));
        // A late confirmation of an older request does not move it back.
        clock.renewed(t0 + ms(100));
        assert_eq!(clock.lapses_at(), Some(t0 + ms(1500)));
    }

    #[test]
    fn a_paused_leader_finds_its_lease_lapsed_when_it_wakes() {
        let t0 = Instant::now();
        let clock = LeaseClock::new(ms(2000), t0);
        // SIGSTOP for longer than the lease: the first look after SIGCONT.
        assert!(!clock.leads(t0 + ms(5000)));
    }

    #[test]
    fn leadership_without_a_lease_never_lapses() {
        let t0 = Instant::now();
        let clock = LeaseClock::unbounded(t0);
        assert!(clock.leads(t0 + Duration::from_secs(1_000_000)));
        assert_eq!(clock.lapses_at(), None);
    }

    #[test]
    fn the_guard_keeps_the_first_reason_and_wakes_waiters() {
        let guard = std::sync::Arc::new(LeaseGuard::new(LeaseClock::unbounded(Instant::now())));
        assert!(guard.leads());
        let waiter = {
            let guard = guard.clone();
            std::thread::spawn(move || guard.wait_lost())
        };
        guard.lose("etcd refused a write");
        guard.lose("a second reason");
        assert_eq!(waiter.join().unwrap(), "etcd refused a write");
        assert!(!guard.leads());
        assert_eq!(guard.lost().as_deref(), Some("etcd refused a write"));
    }

    #[test]
    fn a_lapsed_clock_is_lost_without_anyone_calling_lose() {
        let guard = LeaseGuard::new(LeaseClock::new(ms(2000), Instant::now() - ms(1500)));
        assert!(!guard.leads());
        assert!(guard.lost().unwrap().contains("not renewed"));
        assert!(guard.wait_lost().contains("not renewed"));
    }
}
