//! [`ExactlyOnceKafkaSink`]: a [`KafkaSink`] writing through Kafka
//! transactions, a [`TwoPhaseSink`].
//!
//! Each subtask keeps a pool of transactional producers, one transaction
//! each, with ids `{prefix}/{attempt}/{subtask}/{slot}`:
//!
//! - records go into the *current* transaction;
//! - at a barrier it is flushed (every record acknowledged, still
//!   invisible to `read_committed` readers) and becomes *prepared*; its
//!   id is the handle saved in the checkpoint; the next records open a
//!   transaction on another slot;
//! - when the checkpoint completes, the prepared transaction's own
//!   producer commits it. After a crash the restored run commits it
//!   instead, through the coordinator ([`TransactionAdmin::commit_resumed`]).
//!
//! A slot is reused only once a completed checkpoint no longer holds its
//! id: the restored checkpoint then names only ids whose single open
//! transaction is the pre-committed one (see [`super::transactions::resume`]).
//! On restore, every open transaction of an earlier attempt that the
//! restored checkpoint does not hold is aborted, by fencing its id with a
//! new producer (`init_transactions`), so none hangs and blocks readers.
//!
//! A transaction must be committed within `transaction.timeout.ms`
//! (default here 15 minutes, the brokers' default maximum) of its first
//! record, or the broker aborts it: the time from a barrier to its
//! checkpoint's completion, and a crashed job's time to restore, must stay
//! below it. A job that crashes and never comes back leaves its open
//! transactions to that timeout.

use super::sink::{DeliveryTracker, KafkaSink, CONNECTOR};
use super::transactions::{TransactionAdmin, TransactionalIds};
use crate::error::ConnectorError;
use crate::fault::{crash_point, crash_point_after};
use rdkafka::producer::{BaseProducer, Producer, PurgeConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use weir_operators::prelude::*;

/// A transaction pre-committed at a checkpoint: what a restored run needs
/// to commit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTransaction {
    /// Its producer's `transactional.id`.
    pub transactional_id: String,
}

/// A [`KafkaSink`] committing through Kafka transactions when its
/// checkpoint completes (see [`KafkaSink::exactly_once`]).
pub struct ExactlyOnceKafkaSink<T> {
    sink: KafkaSink<T>,
    prefix: Option<String>,
    transaction_timeout: Duration,
    pool: Option<Box<Pool>>,
}

impl<T> Clone for ExactlyOnceKafkaSink<T> {
    /// The settings; each clone opens its own producers.
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
            prefix: self.prefix.clone(),
            transaction_timeout: self.transaction_timeout,
            pool: None,
        }
    }
}

impl<T: Data> ExactlyOnceKafkaSink<T> {
    pub(crate) fn new(sink: KafkaSink<T>) -> Self {
        Self {
            sink,
            prefix: None,
            transaction_timeout: Duration::from_secs(15 * 60),
            pool: None,
        }
    }

    /// The start of every transactional id of this sink (default
    /// `weir/{job}/{sink uid, or its name}`). Two jobs that run at the same time
    /// under one name must set different prefixes: each would abort the
    /// other's transactions as stale.
    pub fn transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// `transaction.timeout.ms` (default 15 minutes; at most the brokers'
    /// `transaction.max.timeout.ms`).
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    fn pool(&mut self) -> Result<(&KafkaSink<T>, &mut Pool), ConnectorError> {
        match &mut self.pool {
            Some(pool) => Ok((&self.sink, pool)),
            None => Err(ConnectorError::new(
                CONNECTOR,
                self.sink.at(),
                "used before open",
            )),
        }
    }

    /// A producer for transactional id `id`, its id registered (which
    /// aborts whatever an earlier producer of the id left open).
    fn transactional_producer(
        sink: &KafkaSink<T>,
        timeout: Duration,
        id: &str,
    ) -> Result<BaseProducer<DeliveryTracker>, ConnectorError> {
        let timeout_ms = timeout.as_millis().to_string();
        // Over the user's properties: each slot needs its own id.
        let producer = sink.producer_with(
            &[],
            &[
                ("transactional.id", id),
                ("transaction.timeout.ms", &timeout_ms),
            ],
        )?;
        producer
            .init_transactions(sink.connection.request_timeout())
            .map_err(|e| {
                ConnectorError::new(
                    CONNECTOR,
                    format!("transactional id '{id}'"),
                    "cannot register the transactional producer",
                )
                .caused_by(e)
            })?;
        Ok(producer)
    }
}

/// One transactional producer and its id.
struct Slot {
    id: String,
    producer: BaseProducer<DeliveryTracker>,
}

/// A subtask's transactional producers, by what their transaction is.
struct Pool {
    ids: TransactionalIds,
    attempt: String,
    subtask: u32,
    timeout: Duration,
    /// Slots with no transaction a checkpoint may still name.
    free: Vec<Slot>,
    /// The open transaction records go into.
    current: Option<Slot>,
    /// Pre-committed, waiting for their checkpoint.
    prepared: Vec<Slot>,
    /// Committed since the last barrier (the latest snapshot names them).
    committed: Vec<Slot>,
    /// Committed and not named by the snapshot of the epoch beside them:
    /// free once a checkpoint at or after it completes.
    cooling: Vec<(u64, Slot)>,
    slots_made: usize,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // No checkpoint names the open transaction: abort it rather than
        // leave it to block readers until the broker's timeout. (A crash
        // skips this; the restored run aborts it then.)
        if let Some(slot) = self.current.take() {
            // The abort waits for every message's delivery report, which
            // only polling serves: purge them, serve them, then abort.
            slot.producer
                .purge(PurgeConfig::default().queue().inflight());
            let _ = slot.producer.flush(Duration::from_secs(5));
            let _ = slot.producer.abort_transaction(Duration::from_secs(5));
        }
    }
}

impl<T: Data> TwoPhaseSink<T> for ExactlyOnceKafkaSink<T> {
    type Pending = PendingTransaction;
    const NAME: &'static str = "kafka-sink";

    fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError> {
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| format!("weir/{}/{}", info.job, info.state_id));
        self.pool = Some(Box::new(Pool {
            ids: TransactionalIds::new(prefix),
            attempt: info.attempt.clone(),
            subtask: info.subtask,
            timeout: self.transaction_timeout,
            free: Vec::new(),
            current: None,
            prepared: Vec::new(),
            committed: Vec::new(),
            cooling: Vec::new(),
            slots_made: 0,
        }));
        Ok(())
    }

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        if records.is_empty() {
            // A transaction with no record is unknown to the coordinator:
            // it must never become a checkpoint's pending transaction.
            return Ok(());
        }
        let (sink, pool) = self.pool()?;
        if pool.current.is_none() {
            let slot = match pool.free.pop() {
                Some(slot) => slot,
                None => {
                    let id = pool.ids.id(&pool.attempt, pool.subtask, pool.slots_made);
                    let producer = Self::transactional_producer(sink, pool.timeout, &id)?;
                    pool.slots_made += 1;
                    Slot { id, producer }
                }
            };
            slot.producer.begin_transaction().map_err(|e| {
                ConnectorError::new(
                    CONNECTOR,
                    format!("transactional id '{}'", slot.id),
                    "cannot begin a transaction",
                )
                .caused_by(e)
            })?;
            pool.current = Some(slot);
        }
        if let Some(current) = &pool.current {
            sink.send_all(&current.producer, &records)?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<Option<PendingTransaction>, OperatorError> {
        let (sink, pool) = self.pool()?;
        // The snapshot of this barrier no longer names what was committed.
        pool.cooling
            .extend(pool.committed.drain(..).map(|slot| (epoch.0, slot)));
        let Some(slot) = pool.current.take() else {
            return Ok(None);
        };
        // Crashing here, the records are on the broker in a transaction
        // no checkpoint names (not still in librdkafka's queue).
        crash_point_after("kafka-sink-before-pre-commit", || {
            let _ = slot.producer.flush(sink.connection.request_timeout());
        });
        if let Err(e) = sink.flush_producer(&slot.producer) {
            pool.current = Some(slot);
            return Err(e.into());
        }
        let pending = PendingTransaction {
            transactional_id: slot.id.clone(),
        };
        tracing::debug!(epoch = epoch.0, transactional_id = %slot.id, "pre-committed");
        pool.prepared.push(slot);
        crash_point("kafka-sink-after-pre-commit");
        Ok(Some(pending))
    }

    fn commit(&mut self, epoch: Epoch, pending: &PendingTransaction) -> Result<(), OperatorError> {
        let (sink, pool) = self.pool()?;
        // A checkpoint at or after `epoch` is complete: a restore comes
        // from it or a later one, none of which names the cooling slots.
        let (reusable, cooling): (Vec<_>, Vec<_>) =
            pool.cooling.drain(..).partition(|(at, _)| *at <= epoch.0);
        pool.cooling = cooling;
        pool.free.extend(reusable.into_iter().map(|(_, slot)| slot));

        let id = &pending.transactional_id;
        let Some(i) = pool.prepared.iter().position(|slot| &slot.id == id) else {
            // Pre-committed by an earlier attempt: its producer is gone.
            TransactionAdmin::new(&sink.connection).commit_resumed(id)?;
            return Ok(());
        };
        crash_point("kafka-sink-before-commit");
        let slot = pool.prepared.remove(i);
        slot.producer
            .commit_transaction(sink.connection.request_timeout())
            .map_err(|e| {
                ConnectorError::new(
                    CONNECTOR,
                    format!("transactional id '{id}'"),
                    format!("cannot commit the transaction of checkpoint {}", epoch.0),
                )
                .caused_by(e)
            })?;
        pool.committed.push(slot);
        Ok(())
    }

    fn abort_stale(
        &mut self,
        info: &TaskInfo,
        owned: &[PendingTransaction],
    ) -> Result<(), OperatorError> {
        let (sink, pool) = self.pool()?;
        let owned: Vec<String> = owned.iter().map(|p| p.transactional_id.clone()).collect();
        let open = TransactionAdmin::new(&sink.connection).list_open()?;
        for id in open {
            if pool
                .ids
                .is_stale_share(&id, &pool.attempt, &owned, info.subtask, info.parallelism)
            {
                // Registering the id again aborts its open transaction.
                drop(Self::transactional_producer(sink, pool.timeout, &id)?);
                tracing::info!(transactional_id = %id, "aborted a stale transaction");
            }
        }
        Ok(())
    }
}
