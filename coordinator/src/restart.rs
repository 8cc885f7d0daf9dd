//! The restart strategy: whether, and after how long, a failed job restarts.
//!
//! Exponential backoff between attempts, reset after a healthy period, and
//! a maximum number of consecutive failures after which the job fails.
//! Waits for checkpoint storage back off the same way but never give up:
//! only cancelling the job ends them.

use std::time::Duration;

/// How failed jobs are restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartStrategy {
    /// Wait before the first restart.
    pub initial_backoff: Duration,
    /// Longest wait between restarts.
    pub max_backoff: Duration,
    /// Factor applied to the wait after each consecutive failure.
    pub multiplier: u32,
    /// Consecutive failures after which the job gives up.
    pub max_attempts: u32,
    /// An attempt that ran this long resets the count.
    pub reset_after: Duration,
}

impl Default for RestartStrategy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2,
            max_attempts: 5,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl RestartStrategy {
    /// The wait before retry `n` (1-based) of a run of consecutive ones:
    /// the initial backoff, multiplied for each retry before, at most the
    /// maximum.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = u64::from(self.multiplier.max(1)).saturating_pow(n.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX))
            .min(self.max_backoff)
    }
}

/// The shortest and the longest wait between two asks of checkpoint
/// storage that did not answer: an ask is one listing or read, so storage
/// is asked often enough that a job goes on within about 2 s of its
/// return, whatever the restart backoff.
const STORAGE_WAIT: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

impl RestartStrategy {
    /// The wait before ask `n` (1-based) of storage that did not answer:
    /// [`backoff`](Self::backoff), kept within 100 ms and 2 s.
    pub fn storage_backoff(&self, n: u32) -> Duration {
        self.backoff(n).clamp(STORAGE_WAIT.0, STORAGE_WAIT.1)
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart after this wait.
    RestartAfter(Duration),
    /// Too many consecutive failures: fail the job.
    GiveUp {
        /// How many consecutive failures there were.
        failures: u32,
    },
}

/// Counts consecutive failures of one job.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    consecutive: u32,
}

impl RestartTracker {
    /// A tracker following `strategy`.
    pub fn new(strategy: RestartStrategy) -> Self {
        Self {
            strategy,
            consecutive: 0,
        }
    }

    /// A tracker that has already counted `failures` consecutive failures
    /// (as the control store recorded them under an earlier leader).
    pub fn with_failures(strategy: RestartStrategy, failures: u32) -> Self {
        Self {
            strategy,
            consecutive: failures,
        }
    }

    /// An attempt that ran for `ran_for` failed.
    pub fn on_failure(&mut self, ran_for: Duration) -> RestartDecision {
        if ran_for >= self.strategy.reset_after {
            self.consecutive = 0;
        }
        self.consecutive += 1;
        if self.consecutive > self.strategy.max_attempts {
            return RestartDecision::GiveUp {
                failures: self.consecutive,
            };
        }
        RestartDecision::RestartAfter(self.strategy.backoff(self.consecutive))
    }

    /// The strategy it follows.
    pub fn strategy(&self) -> &RestartStrategy {
        &self.strategy
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.consecutive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy() -> RestartStrategy {
        RestartStrategy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            multiplier: 2,
            max_attempts: 4,
            reset_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_then_gives_up() {
        let mut t = RestartTracker::new(strategy());
        let short = Duration::from_millis(10);
        let waits: Vec<_> = (0..4).map(|_| t.on_failure(short)).collect();
        assert_eq!(
            waits,
            [100, 200, 350, 350].map(|ms| RestartDecision::RestartAfter(Duration::from_millis(ms)))
        );
        assert_eq!(t.on_failure(short), RestartDecision::GiveUp { failures: 5 });
    }

    #[test]
    fn storage_waits_back_off_like_restarts_up_to_the_cap() {
        let s = strategy();
        let waits: Vec<u128> = (1..=6).map(|n| s.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350, 350, 350]);
        assert_eq!(s.backoff(u32::MAX), Duration::from_millis(350));
        // However the restarts back off, storage is asked again within
        // 100 ms and 2 s.
        let eager = RestartStrategy {
            initial_backoff: Duration::ZERO,
            ..s
        };
        assert_eq!(eager.storage_backoff(1), Duration::from_millis(100));
        let patient = RestartStrategy {
            max_backoff: Duration::from_secs(60),
            ..s
        };
        assert_eq!(patient.storage_backoff(30), Duration::from_secs(2));
    }

    #[test]
    fn a_healthy_attempt_resets_the_count() {
        let mut t = RestartTracker::new(strategy());
        for _ in 0..3 {
            t.on_failure(Duration::ZERO);
        }
        assert_eq!(
            t.on_failure(Duration::from_secs(11)),
            RestartDecision::RestartAfter(Duration::from_millis(100))
        );
        assert_eq!(t.failures(), 1);
    }
}
