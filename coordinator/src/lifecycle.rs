//! The job lifecycle state machine: every allowed transition is declared
//! in [`allowed`], and [`JobLifecycle`] refuses any other.
//!
//! ```text
//! Created ──> Scheduling ──> Running ──> Finished
//!                 ^  │          │  │      (Running → Scheduling: rescale)
//!                 │  │          │  │
//!                 │  │          │  └──> Cancelling ──> Cancelled
//!                 │  v          v           (also from Created, Scheduling, Recovering)
//!             Recovering <──────┘
//!                 │
//!                 └──> Failed   (also from Scheduling, Running)
//! ```

use weir_protocol::time::now_ms;
use weir_protocol::JobState;

/// Whether a job may go from `from` to `to`.
pub fn allowed(from: JobState, to: JobState) -> bool {
    use JobState::*;
    matches!(
        (from, to),
        (Created, Scheduling)
            | (Created, Cancelling)
            | (Created, Failed)
            | (Scheduling, Running)
            | (Scheduling, Recovering)
            | (Scheduling, Cancelling)
            | (Scheduling, Failed)
            | (Running, Finished)
            | (Running, Scheduling)
            | (Running, Recovering)
            | (Running, Cancelling)
            | (Running, Failed)
            | (Recovering, Scheduling)
            | (Recovering, Cancelling)
            | (Recovering, Failed)
            | (Cancelling, Cancelled)
            | (Cancelling, Failed)
    )
}

/// One state change, with its wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    /// The state entered.
    pub state: JobState,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A job's current state and its history.
#[derive(Debug, Clone)]
pub struct JobLifecycle {
    history: Vec<Transition>,
}

impl Default for JobLifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl JobLifecycle {
    /// A job just accepted: Created.
    pub fn new() -> Self {
        Self {
            history: vec![Transition {
                state: JobState::Created,
                at_ms: now_ms(),
            }],
        }
    }

    /// A job that ended (`state`, at `at_ms`) before this coordinator led:
    /// loaded from the control store, it never changes again.
    pub fn ended(state: JobState, at_ms: u64) -> Self {
        Self {
            history: vec![Transition { state, at_ms }],
        }
    }

    /// The current state.
    pub fn state(&self) -> JobState {
        self.history.last().map_or(JobState::Created, |t| t.state)
    }

    /// Every state entered, in order.
    pub fn history(&self) -> &[Transition] {
        &self.history
    }

    /// Moves to `to`; returns false (and stays) when that is not allowed.
    pub fn advance(&mut self, to: JobState) -> bool {
        let from = self.state();
        if !allowed(from, to) {
            tracing::error!(%from, %to, "refused job state transition");
            return false;
        }
        self.history.push(Transition {
            state: to,
            at_ms: now_ms(),
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn a_job_recovers_and_finishes() {
        let mut job = JobLifecycle::new();
        for state in [
            Scheduling, Running, Recovering, Scheduling, Running, Scheduling, Running, Finished,
        ] {
            assert!(job.advance(state), "to {state}");
        }
        let states: Vec<JobState> = job.history().iter().map(|t| t.state).collect();
        assert_eq!(states[0], Created);
        assert_eq!(job.state(), Finished);
    }

    #[test]
    fn terminal_states_are_final_and_shortcuts_are_refused() {
        let mut job = JobLifecycle::new();
        assert!(!job.advance(Running), "Created cannot skip Scheduling");
        assert!(job.advance(Cancelling));
        assert!(job.advance(Cancelled));
        for state in [
            Created, Scheduling, Running, Recovering, Cancelling, Finished, Failed,
        ] {
            assert!(!job.advance(state), "Cancelled -> {state}");
        }
        assert!(!allowed(Finished, Running));
        assert!(!allowed(Failed, Scheduling));
    }
}
