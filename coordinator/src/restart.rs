//! The restart strategy: whether, and after how long, a failed job restarts.
//!
//! Exponential backoff between attempts, reset after a healthy period, and
//! a maximum number of consecutive failures after which the job fails.

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
        let factor =
            u64::from(self.strategy.multiplier.max(1)).saturating_pow(self.consecutive - 1);
        let wait = self
            .strategy
            .initial_backoff
            .saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX))
            .min(self.strategy.max_backoff);
        RestartDecision::RestartAfter(wait)
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
