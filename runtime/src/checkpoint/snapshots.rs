//! Writing task snapshots to checkpoint storage, off the task threads.
//!
//! A task takes the synchronous part of its snapshot (a copy-on-write
//! freeze), hands it to the [`SnapshotWriter`], and goes on processing. The
//! writer's threads encode the keyed state, write it under the checkpoint's
//! directory and report the task's ack (or its decline) to the coordinator.

use super::replication::Replication;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use weir_operators::task::TaskSnapshot;
use weir_protocol::checkpoint::paths;
use weir_protocol::{
    AckTiming, Epoch, FailureKind, KeyGroupRange, SubtaskId, SubtaskState, TaskAck, WorkerEvent,
};
use weir_state::{CheckpointStorage, StateError};

/// One task's snapshot to write and acknowledge.
struct WriteJob {
    job: String,
    epoch: Epoch,
    task: SubtaskId,
    key_groups: KeyGroupRange,
    snapshot: TaskSnapshot,
    timing: AckTiming,
}

/// A pool of threads that write snapshots and send acks.
pub struct SnapshotWriter {
    jobs: Option<Sender<WriteJob>>,
    threads: Vec<JoinHandle<()>>,
    abandoned: Arc<AtomicBool>,
    aborted: AbortedCheckpoints,
}

/// The highest checkpoint the coordinator aborted: snapshots of it and of
/// earlier ones are not written (during a storage outage they would pile
/// up, and be uploaded for nothing once storage is back).
#[derive(Debug, Clone, Default)]
pub struct AbortedCheckpoints(Arc<AtomicU64>);

impl AbortedCheckpoints {
    /// Checkpoint `epoch` was aborted.
    pub fn abort(&self, epoch: Epoch) {
        self.0.fetch_max(epoch.0, Ordering::Relaxed);
    }

    fn covers(&self, epoch: Epoch) -> bool {
        epoch.0 <= self.0.load(Ordering::Relaxed)
    }
}

/// A task's handle for submitting snapshots.
#[derive(Clone)]
pub struct SnapshotSubmitter {
    job: String,
    jobs: Sender<WriteJob>,
    events: Sender<WorkerEvent>,
}

impl SnapshotSubmitter {
    /// Acknowledges checkpoint `epoch` for `task` once `snapshot` is durable.
    /// Snapshots without keyed state are acknowledged at once.
    pub fn submit(
        &self,
        epoch: Epoch,
        task: SubtaskId,
        key_groups: KeyGroupRange,
        snapshot: TaskSnapshot,
        timing: AckTiming,
    ) {
        let has_keyed_state = snapshot.keyed.as_ref().is_some_and(|k| !k.is_empty());
        if !has_keyed_state {
            let ack = TaskAck {
                epoch,
                task,
                state: SubtaskState {
                    subtask: task.index,
                    key_groups,
                    files: Vec::new(),
                    operator_state: snapshot.operator_state,
                },
                timing,
            };
            let _ = self.events.send(WorkerEvent::Ack(ack));
            return;
        }
        let job = WriteJob {
            job: self.job.clone(),
            epoch,
            task,
            key_groups,
            snapshot,
            timing,
        };
        if self.jobs.send(job).is_err() {
            let _ = self.events.send(WorkerEvent::Declined {
                epoch,
                task,
                reason: "snapshot writer stopped".into(),
                kind: FailureKind::Task,
            });
        }
    }
}

impl SnapshotWriter {
    /// Starts `threads` writer threads writing into `storage`.
    pub fn start(
        job: &str,
        storage: CheckpointStorage,
        events: Sender<WorkerEvent>,
        threads: usize,
        replication: Option<Arc<Replication>>,
    ) -> (Self, SnapshotSubmitter) {
        let (jobs, queue) = crossbeam_channel::unbounded::<WriteJob>();
        let abandoned = Arc::new(AtomicBool::new(false));
        let aborted = AbortedCheckpoints::default();
        let handles = (0..threads.max(1))
            .map(|i| {
                let (queue, storage, events) = (queue.clone(), storage.clone(), events.clone());
                let replication = replication.clone();
                let abandoned = abandoned.clone();
                let aborted = aborted.clone();
                std::thread::Builder::new()
                    .name(format!("snapshot-writer-{i}"))
                    .spawn(move || {
                        write_loop(
                            &queue,
                            &storage,
                            &events,
                            replication.as_deref(),
                            (&abandoned, &aborted),
                        )
                    })
                    .expect("spawning a snapshot writer thread")
            })
            .collect();
        let submitter = SnapshotSubmitter {
            job: job.to_owned(),
            jobs: jobs.clone(),
            events,
        };
        (
            Self {
                jobs: Some(jobs),
                threads: handles,
                abandoned,
                aborted,
            },
            submitter,
        )
    }

    /// Where the coordinator's aborts go.
    pub fn aborted(&self) -> AbortedCheckpoints {
        self.aborted.clone()
    }

    /// Waits for queued snapshots to be written, then stops the threads;
    /// with `abandon` (the deployment is being cancelled, nobody will use
    /// them), queued snapshots are dropped and one being written stops at
    /// its next file.
    pub fn shutdown(mut self, abandon: bool) {
        self.abandoned.store(abandon, Ordering::Relaxed);
        self.jobs.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn write_loop(
    queue: &Receiver<WriteJob>,
    storage: &CheckpointStorage,
    events: &Sender<WorkerEvent>,
    replication: Option<&Replication>,
    (abandoned, aborted): (&AtomicBool, &AbortedCheckpoints),
) {
    for job in queue {
        if abandoned.load(Ordering::Relaxed) || aborted.covers(job.epoch) {
            continue;
        }
        let (epoch, task) = (job.epoch, job.task);
        let _span =
            tracing::info_span!("checkpoint", job = %job.job, task = %task, epoch = epoch.0)
                .entered();
        let event = match write(job, storage, replication, (abandoned, aborted)) {
            Ok(ack) => {
                tracing::debug!(
                    files = ack.state.files.len(),
                    bytes = ack.state.files.iter().map(|f| f.size).sum::<u64>(),
                    async_us = ack.timing.async_us,
                    "snapshot written: acknowledging"
                );
                WorkerEvent::Ack(ack)
            }
            // Nobody waits for it.
            Err(StateError::Abandoned) if aborted.covers(epoch) => continue,
            Err(error) => {
                tracing::warn!(
                    epoch = epoch.0,
                    task = %task,
                    error = &error as &dyn std::error::Error,
                    "writing a snapshot failed; declining the checkpoint"
                );
                WorkerEvent::Declined {
                    epoch,
                    task,
                    reason: weir_protocol::error::chain(&error),
                    kind: weir_state::failure_kind(&error),
                }
            }
        };
        let _ = events.send(event);
    }
}

fn write(
    job: WriteJob,
    storage: &CheckpointStorage,
    replication: Option<&Replication>,
    (abandoned, aborted): (&AtomicBool, &AbortedCheckpoints),
) -> Result<TaskAck, StateError> {
    let started = std::time::Instant::now();
    let files = match &job.snapshot.keyed {
        Some(keyed) => {
            let task_dir = paths::subtask_file(job.epoch, job.task, "");
            let job_dir = paths::job_dir(&job.job);
            keyed.write(task_dir.trim_end_matches('/'), &mut |relative, bytes| {
                if abandoned.load(Ordering::Relaxed) || aborted.covers(job.epoch) {
                    return Err(StateError::Abandoned);
                }
                if let Some(replication) = replication {
                    replication.replicate(&job.job, relative, &bytes);
                }
                storage.put(&format!("{job_dir}/{relative}"), bytes)
            })?
        }
        None => Vec::new(),
    };
    Ok(TaskAck {
        epoch: job.epoch,
        task: job.task,
        state: SubtaskState {
            subtask: job.task.index,
            key_groups: job.key_groups,
            files,
            operator_state: job.snapshot.operator_state,
        },
        timing: AckTiming {
            async_us: started.elapsed().as_micros() as u64,
            ..job.timing
        },
    })
}
