//! The deployments running on this worker, and what it tells a (new)
//! leader about them when it registers: which attempt runs, whether every
//! local subtask started, which sources finished, whether the final
//! checkpoint was triggered, and how the parts that ended since the last
//! registration ended. A leader adopts an attempt from these reports
//! instead of restarting it.

use crate::cancel::CancelToken;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_protocol::cluster::{DeploymentOutcome, DeploymentReport, SubtaskRestore};
use weir_protocol::{ControlCommand, SubtaskId};

/// A deployment running here.
pub(crate) struct Running {
    pub(crate) attempt: u32,
    pub(crate) commands: Sender<ControlCommand>,
    pub(crate) cancel: CancelToken,
    started: bool,
    restored: Vec<SubtaskRestore>,
    finished_sources: Vec<SubtaskId>,
    final_triggered: bool,
}

impl Running {
    pub(crate) fn new(attempt: u32, commands: Sender<ControlCommand>, cancel: CancelToken) -> Self {
        Self {
            attempt,
            commands,
            cancel,
            started: false,
            restored: Vec::new(),
            finished_sources: Vec::new(),
            final_triggered: false,
        }
    }
}

#[derive(Default)]
struct Inner {
    by_job: HashMap<u32, Running>,
    /// Parts that ended since the last registration: (job, attempt, outcome).
    ended: Vec<(u32, u32, DeploymentOutcome)>,
}

/// The deployments running here, by job number; waiters learn when one ends.
#[derive(Default)]
pub(crate) struct Deployments {
    inner: Mutex<Inner>,
    ended: Condvar,
}

impl Deployments {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking `running` for `job`, cancelling the attempt it replaces.
    pub(crate) fn insert(&self, job: u32, running: Running) {
        if let Some(previous) = self.inner().by_job.insert(job, running) {
            previous.cancel.cancel();
        }
    }

    /// Runs `act` on the deployment of `job` if it is `attempt`.
    pub(crate) fn with<T>(
        &self,
        job: u32,
        attempt: u32,
        act: impl FnOnce(&mut Running) -> T,
    ) -> Option<T> {
        self.inner()
            .by_job
            .get_mut(&job)
            .filter(|r| r.attempt == attempt)
            .map(act)
    }

    /// Every local subtask of `attempt` of `job` runs.
    pub(crate) fn started(&self, job: u32, attempt: u32, restored: &[SubtaskRestore]) {
        self.with(job, attempt, |r| {
            r.started = true;
            r.restored = restored.to_vec();
        });
    }

    /// A source of `attempt` of `job` emitted all of its input.
    pub(crate) fn source_finished(&self, job: u32, attempt: u32, task: SubtaskId) {
        self.with(job, attempt, |r| r.finished_sources.push(task));
    }

    /// The coordinator sent `command` to `attempt` of `job`: passes it on.
    /// False when that attempt does not run here.
    pub(crate) fn command(&self, job: u32, attempt: u32, command: ControlCommand) -> bool {
        self.with(job, attempt, |r| {
            if matches!(
                command,
                ControlCommand::TriggerCheckpoint { is_final: true, .. }
            ) {
                r.final_triggered = true;
            }
            let _ = r.commands.send(command);
        })
        .is_some()
    }

    /// Forgets `attempt` of job `job`, which ended with `outcome` (unless a
    /// newer attempt replaced it), and keeps the outcome for the next
    /// registration.
    pub(crate) fn ended(&self, job: u32, attempt: u32, outcome: DeploymentOutcome) {
        let mut inner = self.inner();
        if inner.by_job.get(&job).is_some_and(|r| r.attempt == attempt) {
            inner.by_job.remove(&job);
        }
        inner.ended.push((job, attempt, outcome));
        self.ended.notify_all();
    }

    /// What to tell a leader when registering: every running deployment
    /// and every part that ended since the last registration.
    pub(crate) fn reports(&self) -> Vec<DeploymentReport> {
        let inner = self.inner();
        let mut reports: Vec<DeploymentReport> = inner
            .by_job
            .iter()
            .map(|(job, r)| DeploymentReport {
                job_number: *job,
                attempt: r.attempt,
                started: r.started,
                restored: r.restored.clone(),
                finished_sources: r.finished_sources.clone(),
                final_triggered: r.final_triggered,
                ended: None,
            })
            .collect();
        for (job, attempt, outcome) in &inner.ended {
            reports.push(DeploymentReport {
                job_number: *job,
                attempt: *attempt,
                started: true,
                restored: Vec::new(),
                finished_sources: Vec::new(),
                final_triggered: false,
                ended: Some(outcome.clone()),
            });
        }
        reports
    }

    /// A leader accepted `reports`: the ends among them need not be told again.
    pub(crate) fn reported(&self, reports: &[DeploymentReport]) {
        self.inner().ended.retain(|(job, attempt, _)| {
            !reports
                .iter()
                .any(|r| r.ended.is_some() && r.job_number == *job && r.attempt == *attempt)
        });
    }

    /// Whether any deployment runs here.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner().by_job.is_empty()
    }

    /// Cancels `attempt` of `job`; false when it does not run here.
    pub(crate) fn cancel(&self, job: u32, attempt: u32) -> bool {
        self.with(job, attempt, |r| r.cancel.cancel()).is_some()
    }

    /// Cancels every deployment and waits (at most `patience`) for them to end.
    pub(crate) fn stop_all(&self, patience: Duration) {
        let mut inner = self.inner();
        for deployment in inner.by_job.values() {
            deployment.cancel.cancel();
        }
        let deadline = Instant::now() + patience;
        while !inner.by_job.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self
                .ended
                .wait_timeout(inner, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
