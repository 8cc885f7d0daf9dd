//! [`TwoPhaseSink`], the connector contract for exactly-once output, and
//! the task that drives one through checkpoints.

use crate::data::{Batch, Data, Timestamp};
use crate::error::OperatorError;
use crate::record_task::records_of;
use crate::task::{OperatorTask, TaskInfo, TaskSnapshot};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use weir_protocol::Epoch;

/// A sink whose output becomes visible only when the checkpoint it belongs
/// to is complete: two-phase commit, as Flink's `TwoPhaseCommitSinkFunction`.
///
/// The runtime drives it so:
///
/// 1. [`write`](Self::write) puts records into the open transaction (a
///    hidden file, a Kafka transaction, rows not yet committed);
/// 2. at the barrier of checkpoint `e`, [`pre_commit`](Self::pre_commit)
///    makes them durable but not visible and returns a handle to them,
///    which the runtime saves in checkpoint `e` (the transactions not yet
///    known to be committed, from every earlier epoch too);
/// 3. when checkpoint `e` completes, [`commit`](Self::commit) makes every
///    pending transaction up to `e` visible, in epoch order.
///
/// A crash can fall between any two of these. On restore from checkpoint
/// `c` the runtime first commits again every transaction `c` holds (the
/// crash may have come before their commit reached the system, so commit
/// must be idempotent), and then calls [`abort_stale`](Self::abort_stale)
/// to discard whatever earlier attempts left open or prepared that `c`
/// does not own: its records come again from the restored sources. Output
/// therefore shows every record once, and none that a restored run will
/// produce again.
///
/// After a rescale, the transactions old subtask `i` left pending are
/// committed by new subtask `i % parallelism`.
///
/// Without checkpoints there are no barriers: the runtime calls
/// `pre_commit` and `commit` once, when the input ends (a sink may write
/// directly instead, as [`FileSink`](super::FileSink) does).
pub trait TwoPhaseSink<T>: Clone + Send + Sync + 'static {
    /// A pre-committed transaction: what [`commit`](Self::commit) needs to
    /// make it visible, from any process, after any crash (a file name, a
    /// transactional id with its producer id and epoch).
    type Pending: Serialize + DeserializeOwned + Send + 'static;
    /// Default operator name.
    const NAME: &'static str;

    /// Prepares subtask `info.subtask` (before any commit or abort).
    fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError>;

    /// Writes records into the open transaction.
    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError>;

    /// At checkpoint `epoch`'s barrier: makes what was written since the
    /// last pre-commit durable and ready to commit, and returns its handle
    /// (`None` if there is nothing to commit). Later records go into a
    /// new transaction.
    fn pre_commit(&mut self, epoch: Epoch) -> Result<Option<Self::Pending>, OperatorError>;

    /// Makes `pending`, pre-committed at checkpoint `epoch`, visible.
    /// Idempotent: after a crash it is called again for a transaction that
    /// may already be committed.
    fn commit(&mut self, epoch: Epoch, pending: &Self::Pending) -> Result<(), OperatorError>;

    /// After the restored checkpoint's transactions were committed (or on
    /// a fresh start, with none): discards every transaction of earlier
    /// attempts that is not among `owned`, the ones the restored checkpoint
    /// holds for all old subtasks. Each subtask may handle its own share
    /// (its transactional ids) or one may handle all (a directory).
    fn abort_stale(
        &mut self,
        info: &TaskInfo,
        owned: &[Self::Pending],
    ) -> Result<(), OperatorError>;
}

/// A subtask's checkpointed state: the pre-committed transactions not yet
/// known to be committed, as (epoch, transaction) in epoch order; `L` is a
/// `Vec` when read and a slice when written.
#[derive(Debug, Serialize, Deserialize)]
struct PendingTransactions<L> {
    pending: L,
}

/// Runs a [`TwoPhaseSink`] as a task.
pub(crate) struct TwoPhaseTask<T, S: TwoPhaseSink<T>> {
    name: String,
    sink: S,
    checkpointing: bool,
    /// Records were written since the last pre-commit.
    written: bool,
    /// Pre-committed transactions not yet committed, in epoch order.
    pending: Vec<(u64, S::Pending)>,
    _records: PhantomData<fn(T)>,
}

impl<T: Data, S: TwoPhaseSink<T>> TwoPhaseTask<T, S> {
    /// Opens the sink, then recovers: commits what the restored checkpoint
    /// pre-committed for the old subtasks this one inherits, and has the
    /// sink discard everything else of earlier attempts.
    pub(crate) fn boxed(info: &TaskInfo, mut sink: S) -> Result<Box<Self>, OperatorError> {
        sink.open(info)?;
        let restored = info.restored_states::<PendingTransactions<Vec<(u64, S::Pending)>>>(
            &format!("{} sink", S::NAME),
        )?;
        let mut owned = Vec::new();
        if let Some(restored) = restored {
            let inherited: Vec<u32> = restored.inherited().map(|(old, _)| old).collect();
            for (old, state) in restored.states.into_iter().enumerate() {
                let Some(state) = state else { continue };
                for (epoch, pending) in state.pending {
                    // A checkpoint holds only transactions up to its own epoch.
                    if epoch > restored.epoch.0 {
                        continue;
                    }
                    if inherited.contains(&(old as u32)) {
                        sink.commit(Epoch(epoch), &pending)?;
                    }
                    owned.push(pending);
                }
            }
        }
        sink.abort_stale(info, &owned)?;
        Ok(Box::new(Self {
            name: info.operator.clone(),
            sink,
            checkpointing: info.checkpointing,
            written: false,
            pending: Vec::new(),
            _records: PhantomData,
        }))
    }
}

impl<T: Data, S: TwoPhaseSink<T>> OperatorTask for TwoPhaseTask<T, S> {
    fn process(&mut self, batch: Batch) -> Result<(), OperatorError> {
        let records = records_of::<T>(&self.name, batch)?;
        self.written = true;
        self.sink.write(records)
    }

    fn watermark(&mut self, _watermark: Timestamp) -> Result<(), OperatorError> {
        Ok(())
    }

    fn inputs_idle(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    fn processing_time(&mut self, _now: Timestamp) -> Result<(), OperatorError> {
        Ok(())
    }

    fn next_processing_deadline(&self) -> Option<Timestamp> {
        None
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    fn checkpoint(&mut self, epoch: Epoch) -> Result<TaskSnapshot, OperatorError> {
        if let Some(pending) = self.sink.pre_commit(epoch)? {
            self.pending.push((epoch.0, pending));
        }
        self.written = false;
        let state = PendingTransactions {
            pending: &self.pending[..],
        };
        let json = serde_json::to_string(&state).map_err(|e| {
            OperatorError::user_caused_by(
                format!("{} sink: encoding its pending transactions", S::NAME),
                e,
            )
        })?;
        Ok(TaskSnapshot {
            keyed: None,
            operator_state: Some(json),
        })
    }

    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), OperatorError> {
        let due = self.pending.partition_point(|(e, _)| *e <= epoch.0);
        for (e, pending) in self.pending.drain(..due) {
            self.sink.commit(Epoch(e), &pending)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        if self.checkpointing {
            // What came after the last barrier waits for the final checkpoint.
            return Ok(());
        }
        if let Some(pending) = self.sink.pre_commit(Epoch(0))? {
            self.sink.commit(Epoch(0), &pending)?;
        }
        self.written = false;
        Ok(())
    }

    fn close(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    fn suspend(&mut self) -> Result<(), OperatorError> {
        // Nothing follows a stop barrier: what the sink holds is pre-committed
        // by its checkpoint and committed when that completes.
        Ok(())
    }

    fn has_pending_commits(&self) -> bool {
        self.checkpointing && (self.written || !self.pending.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::RestoredTask;
    use std::sync::{Arc, Mutex};
    use weir_protocol::VertexId;
    use weir_state::MemoryBackend;

    /// Logs every call; a pending transaction is "epoch:subtask".
    #[derive(Clone, Default)]
    struct Recording {
        calls: Arc<Mutex<Vec<String>>>,
        subtask: u32,
    }

    impl Recording {
        fn log(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.calls.lock().unwrap())
        }
    }

    impl TwoPhaseSink<u64> for Recording {
        type Pending = String;
        const NAME: &'static str = "recording";

        fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError> {
            self.subtask = info.subtask;
            self.log(format!("open {}", info.subtask));
            Ok(())
        }
        fn write(&mut self, records: Vec<u64>) -> Result<(), OperatorError> {
            self.log(format!("write {records:?}"));
            Ok(())
        }
        fn pre_commit(&mut self, epoch: Epoch) -> Result<Option<String>, OperatorError> {
            self.log(format!("pre_commit {}", epoch.0));
            Ok(Some(format!("{}:{}", epoch.0, self.subtask)))
        }
        fn commit(&mut self, epoch: Epoch, pending: &String) -> Result<(), OperatorError> {
            self.log(format!("commit {} {pending}", epoch.0));
            Ok(())
        }
        fn abort_stale(&mut self, _info: &TaskInfo, owned: &[String]) -> Result<(), OperatorError> {
            self.log(format!("abort_stale except {owned:?}"));
            Ok(())
        }
    }

    fn info(subtask: u32, parallelism: u32, restored: Option<RestoredTask>) -> TaskInfo {
        TaskInfo {
            job: "j".into(),
            vertex: VertexId(0),
            operator: "sink".into(),
            state_id: "sink".into(),
            subtask,
            parallelism,
            max_parallelism: 128,
            state_backend: Arc::new(MemoryBackend),
            checkpointing: true,
            attempt: "a".into(),
            restored: restored.map(Arc::new),
            others_running: false,
            waker: crate::task::SourceWaker::none(),
        }
    }

    #[test]
    fn pending_transactions_are_checkpointed_until_their_checkpoint_completes() {
        let sink = Recording::default();
        let mut task = TwoPhaseTask::boxed(&info(0, 1, None), sink.clone()).unwrap();
        assert_eq!(sink.take(), ["open 0", "abort_stale except []"]);
        task.process(Batch::new(vec![1u64])).unwrap();
        assert!(task.has_pending_commits());
        let first = task.checkpoint(Epoch(1)).unwrap().operator_state.unwrap();
        task.process(Batch::new(vec![2u64])).unwrap();
        let second = task.checkpoint(Epoch(2)).unwrap().operator_state.unwrap();
        assert_eq!(first, r#"{"pending":[[1,"1:0"]]}"#);
        assert_eq!(
            second, r#"{"pending":[[1,"1:0"],[2,"2:0"]]}"#,
            "1 is not committed yet"
        );
        sink.take();
        task.checkpoint_complete(Epoch(2)).unwrap();
        assert_eq!(
            sink.take(),
            ["commit 1 1:0", "commit 2 2:0"],
            "in epoch order"
        );
        assert!(!task.has_pending_commits());
        task.checkpoint_complete(Epoch(2)).unwrap();
        assert!(sink.take().is_empty(), "committed once by the running task");
    }

    #[test]
    fn a_restore_commits_what_the_checkpoint_holds_then_aborts_the_rest() {
        // Checkpoint 5 at parallelism 3, restored at parallelism 2: new
        // subtask 0 inherits old 0 and 2, new subtask 1 inherits old 1.
        let restored = RestoredTask {
            epoch: Epoch(5),
            operator_states: vec![
                Some(r#"{"pending":[[4,"4:0"],[5,"5:0"]]}"#.into()),
                Some(r#"{"pending":[[5,"5:1"]]}"#.into()),
                Some(r#"{"pending":[[5,"5:2"],[6,"6:2"]]}"#.into()),
            ],
            ..RestoredTask::default()
        };
        let sink = Recording::default();
        TwoPhaseTask::boxed(&info(0, 2, Some(restored.clone())), sink.clone()).unwrap();
        let owned = r#"["4:0", "5:0", "5:1", "5:2"]"#;
        assert_eq!(
            sink.take(),
            [
                "open 0".to_owned(),
                "commit 4 4:0".into(),
                "commit 5 5:0".into(),
                "commit 5 5:2".into(),
                format!("abort_stale except {owned}")
            ],
            "an entry beyond the checkpoint's epoch is not the checkpoint's"
        );
        TwoPhaseTask::boxed(&info(1, 2, Some(restored)), sink.clone()).unwrap();
        assert_eq!(
            sink.take(),
            [
                "open 1".to_owned(),
                "commit 5 5:1".into(),
                format!("abort_stale except {owned}")
            ]
        );
    }

    #[test]
    fn unreadable_checkpointed_transactions_name_the_sink_and_the_old_subtask() {
        let restored = RestoredTask {
            epoch: Epoch(3),
            operator_states: vec![Some("not json".into())],
            ..RestoredTask::default()
        };
        let error = TwoPhaseTask::boxed(&info(0, 1, Some(restored)), Recording::default())
            .err()
            .expect("refused");
        let message = error.to_string();
        assert!(
            message.contains("recording sink 'sink'") && message.contains("old subtask 0"),
            "{message}"
        );
    }

    #[test]
    fn without_checkpoints_the_input_end_commits() {
        let sink = Recording::default();
        let mut without = info(0, 1, None);
        without.checkpointing = false;
        let mut task = TwoPhaseTask::boxed(&without, sink.clone()).unwrap();
        task.process(Batch::new(vec![7u64])).unwrap();
        assert!(!task.has_pending_commits());
        sink.take();
        task.finish().unwrap();
        assert_eq!(sink.take(), ["pre_commit 0", "commit 0 0:0"]);
    }
}
