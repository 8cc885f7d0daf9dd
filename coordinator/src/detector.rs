//! The failure detector (pure): heartbeat arrivals and `now` in, lost
//! workers out. Driven by the coordinator's tick; tested without sleeping.
//!
//! A worker is lost when nothing arrived from it for `timeout` (a crash the
//! kernel could not report, a partition), or at once when its connection
//! drops (the fast path: a SIGKILLed process's socket is closed by the
//! kernel).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir_protocol::WorkerId;

/// Why a worker was declared lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Its connection closed or failed, this long after it was last heard.
    Disconnected(Duration),
    /// Nothing arrived from it for this long.
    Silent(Duration),
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::Disconnected(_) => write!(f, "its connection closed"),
            Loss::Silent(d) => write!(f, "no heartbeat for {} ms", d.as_millis()),
        }
    }
}

/// When each live worker was last heard from.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    timeout: Duration,
    last_heard: BTreeMap<WorkerId, Instant>,
}

impl FailureDetector {
    /// A detector declaring workers lost after `timeout` of silence.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            last_heard: BTreeMap::new(),
        }
    }

    /// A worker registered (or sent anything) at `now`.
    pub fn heard(&mut self, worker: WorkerId, now: Instant) {
        let last = self.last_heard.entry(worker).or_insert(now);
        *last = (*last).max(now);
    }

    /// The worker's connection dropped at `now`: lost now, unless already lost.
    pub fn disconnected(&mut self, worker: WorkerId, now: Instant) -> Option<Loss> {
        self.last_heard
            .remove(&worker)
            .map(|last| Loss::Disconnected(now.saturating_duration_since(last)))
    }

    /// How long ago, at `now`, `worker` was last heard from (`None`: it is
    /// not live).
    pub fn silent_for(&self, worker: WorkerId, now: Instant) -> Option<Duration> {
        self.last_heard
            .get(&worker)
            .map(|last| now.saturating_duration_since(*last))
    }

    /// The workers silent for longer than the timeout at `now`; they are
    /// forgotten (reported once).
    pub fn tick(&mut self, now: Instant) -> Vec<(WorkerId, Loss)> {
        let timeout = self.timeout;
        let lost: Vec<(WorkerId, Loss)> = self
            .last_heard
            .iter()
            .filter_map(|(worker, last)| {
                let silent = now.saturating_duration_since(*last);
                (silent > timeout).then_some((*worker, Loss::Silent(silent)))
            })
            .collect();
        for (worker, _) in &lost {
            self.last_heard.remove(worker);
        }
        lost
    }

    /// The first instant at which [`tick`](Self::tick) would declare a
    /// worker lost if nothing arrives from it before; `None` without live
    /// workers. The coordinator sleeps until then instead of ticking.
    pub fn next_deadline(&self) -> Option<Instant> {
        let oldest = self.last_heard.values().min()?;
        // `tick` wants more than the timeout of silence.
        oldest.checked_add(self.timeout + Duration::from_nanos(1))
    }

    /// Whether `worker` is considered alive.
    pub fn is_alive(&self, worker: WorkerId) -> bool {
        self.last_heard.contains_key(&worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[test]
    fn the_next_deadline_is_when_the_quietest_worker_is_lost() {
        let t0 = Instant::now();
        let mut detector = FailureDetector::new(TIMEOUT);
        assert_eq!(detector.next_deadline(), None);
        detector.heard(WorkerId(1), t0);
        detector.heard(WorkerId(2), t0 + Duration::from_millis(300));
        let deadline = detector.next_deadline().unwrap();
        assert!(detector.tick(deadline - Duration::from_nanos(1)).is_empty());
        let lost = detector.tick(deadline);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].0, WorkerId(1));
        // Then the other one's.
        let deadline = detector.next_deadline().unwrap();
        assert_eq!(
            deadline,
            t0 + Duration::from_millis(1300) + Duration::from_nanos(1)
        );
    }

    #[test]
    fn a_silent_worker_is_lost_after_the_timeout_once() {
        let t0 = Instant::now();
        let mut detector = FailureDetector::new(TIMEOUT);
        detector.heard(WorkerId(1), t0);
        detector.heard(WorkerId(2), t0);
        for step in 1..=10 {
            detector.heard(WorkerId(2), t0 + Duration::from_millis(100 * step));
        }
        assert!(detector.tick(t0 + Duration::from_millis(1000)).is_empty());
        let lost = detector.tick(t0 + Duration::from_millis(1001));
        assert_eq!(
            lost,
            vec![(WorkerId(1), Loss::Silent(Duration::from_millis(1001)))]
        );
        assert!(
            detector.tick(t0 + Duration::from_millis(1500)).is_empty(),
            "reported once"
        );
        assert!(detector.is_alive(WorkerId(2)));
        assert!(!detector.is_alive(WorkerId(1)));
    }

    #[test]
    fn a_dropped_connection_is_lost_at_once_and_late_beats_do_not_rewind() {
        let t0 = Instant::now();
        let mut detector = FailureDetector::new(TIMEOUT);
        detector.heard(WorkerId(3), t0 + Duration::from_millis(500));
        // A heartbeat that took long to arrive does not move the clock back.
        detector.heard(WorkerId(3), t0);
        assert!(detector.tick(t0 + Duration::from_millis(1400)).is_empty());
        let at = t0 + Duration::from_millis(1400);
        assert_eq!(
            detector.disconnected(WorkerId(3), at),
            Some(Loss::Disconnected(Duration::from_millis(900)))
        );
        assert_eq!(detector.disconnected(WorkerId(3), at), None);
        assert!(detector.tick(t0 + Duration::from_secs(10)).is_empty());
    }
}
