//! [`KafkaSource`]: records of Kafka topics, their offsets kept in Weir's
//! checkpoints.

use super::open::Running;
use super::KafkaConnection;
use crate::error::ConnectorError;
use crate::format::Format;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_operators::prelude::*;
use weir_operators::{Data, TimestampFn};

pub(super) const CONNECTOR: &str = "kafka source";

/// One record read from Kafka: where it came from, its timestamp (the
/// event time), and its decoded key and value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaRecord<K, V> {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
    /// The record's timestamp (ms since the epoch; 0 if it has none).
    pub timestamp: i64,
    /// The decoded key.
    pub key: K,
    /// The decoded value.
    pub value: V,
}

/// Where a partition is read from when no checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Its first record still kept.
    Earliest,
    /// Its end when the source opens (only new records).
    Latest,
    /// The first record with a timestamp at or after this (ms since the
    /// epoch); the end if there is none.
    Timestamp(i64),
    /// The consumer group's committed offset; the earliest if it has none.
    GroupOffsets,
}

/// What to do with a record whose key or value does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnBadRecord {
    /// Fail the job (the restart strategy applies), naming the record.
    Fail,
    /// Skip it, log it and count it.
    Skip,
    /// Write it as it was to this topic, with headers `weir.topic`,
    /// `weir.partition`, `weir.offset` and `weir.error`, and go on (at
    /// least once: flushed at every checkpoint barrier).
    DeadLetter(String),
}

/// A partition and the offset of the next record to read from it: what a
/// [`KafkaSource`] subtask saves in each checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read.
    pub next_offset: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) connection: KafkaConnection,
    pub(super) topics: Vec<String>,
    pub(super) group: Option<String>,
    pub(super) start: StartFrom,
    pub(super) bounded: bool,
    pub(super) out_of_orderness: Duration,
    pub(super) idle_after: Duration,
    pub(super) on_bad_record: OnBadRecord,
}

/// Reads Kafka topics: partitions spread over the source's subtasks,
/// offsets kept in Weir's checkpoints (so that a restored job resumes every
/// partition right after the records the checkpoint covers, at any
/// parallelism), `read_committed`, record timestamps as event time with
/// bounded out-of-orderness watermarks per partition, and caught-up
/// partitions turning idle so that they do not hold the watermark back.
///
/// ```no_run
/// use std::time::Duration;
/// use weir_connectors::format::{Json, Utf8};
/// use weir_connectors::kafka::{KafkaConnection, KafkaSource, OnBadRecord, StartFrom};
/// use weir_operators::prelude::*;
///
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct Bid { auction: u64, price: u64 }
///
/// let bids = KafkaSource::new(KafkaConnection::new("127.0.0.1:9092"), ["bids"], Utf8, Json::<Bid>::new())
///     .start_from(StartFrom::Earliest)
///     .max_out_of_orderness(Duration::from_millis(200))
///     .on_bad_record(OnBadRecord::DeadLetter("bids-dead".into()));
/// let job = JobBuilder::new("bids").with_parallelism(2);
/// job.source(bids)
///     .key_by(|r| r.value.auction)
///     .window(TumblingWindows::of(Duration::from_secs(10)))
///     .aggregate(Count::new())
///     .map(|w| format!("{},{},{}", w.key, w.start, w.value))
///     .print();
/// ```
pub struct KafkaSource<K, V, KF, VF> {
    pub(super) settings: Arc<Settings>,
    key_format: KF,
    value_format: VF,
    running: Option<Box<super::open::Running>>,
    _records: PhantomData<fn() -> (K, V)>,
}

impl<K, V, KF: Clone, VF: Clone> Clone for KafkaSource<K, V, KF, VF> {
    /// A clone is a fresh, unopened source with the same settings.
    fn clone(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            key_format: self.key_format.clone(),
            value_format: self.value_format.clone(),
            running: None,
            _records: PhantomData,
        }
    }
}

impl<K, V, KF, VF> KafkaSource<K, V, KF, VF> {
    /// Reads `topics` from the brokers of `connection`, decoding keys with
    /// `key_format` and values with `value_format`.
    pub fn new<T: Into<String>>(
        connection: KafkaConnection,
        topics: impl IntoIterator<Item = T>,
        key_format: KF,
        value_format: VF,
    ) -> Self {
        Self {
            settings: Arc::new(Settings {
                connection,
                topics: topics.into_iter().map(Into::into).collect(),
                group: None,
                start: StartFrom::Earliest,
                bounded: false,
                out_of_orderness: Duration::ZERO,
                idle_after: Duration::from_secs(1),
                on_bad_record: OnBadRecord::Fail,
            }),
            key_format,
            value_format,
            running: None,
            _records: PhantomData,
        }
    }

    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// Where partitions without checkpointed offsets start (default
    /// [`StartFrom::Earliest`]).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.settings().start = start;
        self
    }

    /// The consumer group: offsets are committed to it when a checkpoint
    /// completes (for monitoring: the checkpoint is the truth), and
    /// [`StartFrom::GroupOffsets`] starts from them. Partitions are still
    /// assigned by Weir, not by the group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.settings().group = Some(group.into());
        self
    }

    /// Stops at the end each partition had when the source opened, so that
    /// the job ends (tests, backfills); by default it reads forever.
    pub fn bounded(mut self) -> Self {
        self.settings().bounded = true;
        self
    }

    /// How late (relative to the largest timestamp read from its
    /// partition) a record may be and still be on time (default 0).
    pub fn max_out_of_orderness(mut self, bound: Duration) -> Self {
        self.settings().out_of_orderness = bound;
        self
    }

    /// How long a caught-up partition waits for records before it stops
    /// holding the watermark back (default 1 s).
    pub fn idle_after(mut self, timeout: Duration) -> Self {
        self.settings().idle_after = timeout;
        self
    }

    /// What to do with a record that does not decode (default
    /// [`OnBadRecord::Fail`]).
    pub fn on_bad_record(mut self, policy: OnBadRecord) -> Self {
        self.settings().on_bad_record = policy;
        self
    }
}

impl<K, V, KF, VF> Source for KafkaSource<K, V, KF, VF>
where
    K: Data + Sync,
    V: Data + Sync,
    KF: Format<K>,
    VF: Format<V>,
{
    type Out = KafkaRecord<K, V>;
    type Position = Vec<SourcePartition>;
    const NAME: &'static str = "kafka";

    fn open(
        &mut self,
        info: &TaskInfo,
        restored: Option<Restored<Vec<SourcePartition>>>,
    ) -> Result<(), OperatorError> {
        self.running = Some(Box::new(self.open_running(info, restored)?));
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Output<Self::Out>,
        max_records: usize,
    ) -> Result<SourcePoll, OperatorError> {
        let settings = self.settings.clone();
        let running = self.running.as_mut().expect("opened");
        let consumer = running.consumer.clone();
        let (key_format, value_format) = (&self.key_format, &self.value_format);
        let mut take = |running: &mut Running, i: usize, message: &BorrowedMessage<'_>| {
            running.take(&settings, key_format, value_format, i, message, out)
        };
        let mut emitted = 0;
        // Errors and events come on the consumer's own queue, and records
        // fetched before a partition's queue was split.
        while let Some(event) = consumer.poll(Duration::ZERO) {
            match event {
                Ok(message) => {
                    let owned = running.partitions.iter().position(|p| {
                        p.topic == message.topic() && p.partition == message.partition()
                    });
                    let Some(i) = owned else {
                        return Err(ConnectorError::new(
                            CONNECTOR,
                            format!(
                                "topic '{}' partition {}",
                                message.topic(),
                                message.partition()
                            ),
                            "a record of a partition this subtask does not read",
                        )
                        .into());
                    };
                    if !running.partitions[i].done {
                        emitted += take(running, i, &message)?;
                    }
                }
                Err(error) => running.client_error(&settings, settings.connection.at(), error)?,
            }
        }
        let now = Instant::now();
        let count = running.partitions.len();
        for step in 0..count {
            let i = (running.next_partition + step) % count;
            if emitted >= max_records {
                running.next_partition = i;
                break;
            }
            let part = &running.partitions[i];
            if part.done {
                continue;
            }
            let queue = part.queue.clone();
            while emitted < max_records && !running.partitions[i].done {
                let Some(event) = queue.poll(Duration::ZERO) else {
                    break;
                };
                match event {
                    Ok(message) => {
                        emitted += take(running, i, &message)?;
                    }
                    Err(KafkaError::PartitionEOF(_)) => {
                        running.caught_up(i, now);
                        break;
                    }
                    Err(error) => {
                        let part = &running.partitions[i];
                        return Err(ConnectorError::new(
                            CONNECTOR,
                            part.at(part.next_offset),
                            "reading failed",
                        )
                        .caused_by(error)
                        .into());
                    }
                }
            }
        }
        running.watermarks.emit(out, now)?;
        if settings.bounded && running.partitions.iter().all(|p| p.done) {
            // The producer drops what it still queues when it is dropped, so
            // the bad records of a finished source go out before it ends.
            if let Some(producer) = &running.dead_letters {
                producer.flush(settings.connection.timeout).map_err(|e| {
                    ConnectorError::new(
                        CONNECTOR,
                        settings.connection.at(),
                        "flushing the dead-letter topic at the end of the input failed",
                    )
                    .caused_by(e)
                })?;
            }
            return Ok(SourcePoll::Finished);
        }
        if emitted >= max_records {
            return Ok(SourcePoll::Ready);
        }
        // Woken when records arrive; otherwise when a caught-up partition
        // turns idle, or, while the brokers fail, when the failure is due.
        let until_idle = running
            .watermarks
            .next_idle_deadline()
            .map(|d| d.saturating_duration_since(now));
        let until_failure = running.failing_since.as_ref().map(|(since, _)| {
            (*since + settings.connection.timeout).saturating_duration_since(now)
        });
        let wait = until_idle
            .into_iter()
            .chain(until_failure)
            .min()
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(1));
        Ok(SourcePoll::Idle(wait))
    }

    fn position(&mut self, epoch: Epoch) -> Option<Vec<SourcePartition>> {
        let running = self.running.as_mut()?;
        if let Some(producer) = &running.dead_letters {
            // Bad records before the barrier are out before it completes.
            if let Err(error) = producer.flush(self.settings.connection.timeout) {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "flushing the dead-letter topic failed"
                );
            }
        }
        let mut offsets = TopicPartitionList::new();
        let partitions: Vec<SourcePartition> = running
            .partitions
            .iter()
            .map(|p| {
                let _ = offsets.add_partition_offset(
                    &p.topic,
                    p.partition,
                    Offset::Offset(p.next_offset),
                );
                SourcePartition {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    next_offset: p.next_offset,
                }
            })
            .collect();
        if self.settings.group.is_some() {
            running.taken.push_back((epoch, offsets));
        }
        Some(partitions)
    }

    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), OperatorError> {
        let Some(running) = self.running.as_mut() else {
            return Ok(());
        };
        let mut latest = None;
        while running.taken.front().is_some_and(|(e, _)| *e <= epoch) {
            latest = running.taken.pop_front().map(|(_, offsets)| offsets);
        }
        if let Some(offsets) = latest {
            if offsets.count() > 0 {
                // For monitoring only: a failure here costs nothing.
                if let Err(error) = running.consumer.commit(&offsets, CommitMode::Async) {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "committing offsets to the consumer group failed"
                    );
                }
            }
        }
        Ok(())
    }

    fn event_time(&self) -> Option<TimestampFn<Self::Out>> {
        Some(Arc::new(|r: &KafkaRecord<K, V>| r.timestamp))
    }
}
