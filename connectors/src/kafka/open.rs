//! Opening a [`KafkaSource`](super::KafkaSource) subtask: the partitions it
//! owns, where each starts (checkpointed offsets, or the start position
//! resolved to an offset), its consumer and per-partition queues.

use super::source::{Settings, CONNECTOR};
use super::{KafkaSource, OnBadRecord, SourcePartition, StartFrom};
use crate::error::ConnectorError;
use crate::format::Format;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use weir_operators::prelude::*;

/// An open subtask: its consumer and the partitions it reads.
pub(super) struct Running {
    pub(super) consumer: Arc<BaseConsumer>,
    pub(super) partitions: Vec<Assigned>,
    pub(super) watermarks: SplitWatermarks<usize>,
    pub(super) dead_letters: Option<ThreadedProducer<DefaultProducerContext>>,
    pub(super) skipped: u64,
    /// Since when the brokers have answered only with errors.
    pub(super) failing_since: Option<(Instant, KafkaError)>,
    /// The offsets of each checkpoint taken, to commit to the group.
    pub(super) taken: VecDeque<(Epoch, TopicPartitionList)>,
    /// Where the next poll starts, so that no partition starves the others.
    pub(super) next_partition: usize,
}

pub(super) struct Assigned {
    pub(super) topic: String,
    pub(super) partition: i32,
    /// Shared so that a poll can borrow it while the subtask's state changes.
    pub(super) queue: Arc<PartitionQueue<DefaultConsumerContext>>,
    pub(super) next_offset: i64,
    /// Bounded: the end at open; the partition is done there.
    pub(super) stop_at: Option<i64>,
    pub(super) done: bool,
}

impl Assigned {
    pub(super) fn at(&self, offset: i64) -> String {
        format!(
            "topic '{}' partition {} offset {offset}",
            self.topic, self.partition
        )
    }
}

/// The partitions of `topics`, in a fixed order.
fn partitions_of(
    consumer: &BaseConsumer,
    settings: &Settings,
) -> Result<Vec<(String, i32)>, ConnectorError> {
    let mut all = Vec::new();
    for topic in &settings.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), settings.connection.timeout)
            .map_err(|e| settings.connection.unreachable(CONNECTOR, e))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let partitions = match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions(),
            _ => {
                return Err(ConnectorError::new(
                    CONNECTOR,
                    format!("topic '{topic}' at {}", settings.connection.at()),
                    "the topic does not exist",
                ))
            }
        };
        all.extend(partitions.iter().map(|p| (topic.clone(), p.id())));
    }
    all.sort();
    Ok(all)
}

/// Resolves where each of `partitions` starts to an offset, so that the
/// first checkpoint holds a number rather than "latest", which would mean
/// another offset after a restore.
fn start_offsets(
    consumer: &BaseConsumer,
    settings: &Settings,
    partitions: &[(String, i32)],
) -> Result<Vec<i64>, ConnectorError> {
    let timeout = settings.connection.timeout;
    let at = |topic: &str, partition: i32| format!("topic '{topic}' partition {partition}");
    let mut bounds = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, timeout)
            .map_err(|e| {
                ConnectorError::new(
                    CONNECTOR,
                    at(topic, *partition),
                    "reading its offsets failed",
                )
                .caused_by(e)
            })?;
        bounds.push((low, high));
    }
    let lookup = |asked: TopicPartitionList| -> Result<TopicPartitionList, ConnectorError> {
        match settings.start {
            StartFrom::Timestamp(_) => consumer.offsets_for_times(asked, timeout),
            _ => consumer.committed_offsets(asked, timeout),
        }
        .map_err(|e| {
            ConnectorError::new(
                CONNECTOR,
                settings.connection.at(),
                "looking up start offsets failed",
            )
            .caused_by(e)
        })
    };
    let found = match settings.start {
        StartFrom::Earliest => return Ok(bounds.iter().map(|b| b.0).collect()),
        StartFrom::Latest => return Ok(bounds.iter().map(|b| b.1).collect()),
        StartFrom::Timestamp(ms) => {
            let mut asked = TopicPartitionList::new();
            for (topic, partition) in partitions {
                asked
                    .add_partition_offset(topic, *partition, Offset::Offset(ms))
                    .map_err(|e| {
                        ConnectorError::new(CONNECTOR, at(topic, *partition), "bad timestamp")
                            .caused_by(e)
                    })?;
            }
            lookup(asked)?
        }
        StartFrom::GroupOffsets => {
            let mut asked = TopicPartitionList::new();
            for (topic, partition) in partitions {
                asked.add_partition(topic, *partition);
            }
            lookup(asked)?
        }
    };
    Ok(partitions
        .iter()
        .zip(&bounds)
        .map(|((topic, partition), &(low, high))| {
            match found.find_partition(topic, *partition).map(|e| e.offset()) {
                Some(Offset::Offset(n)) => n.clamp(low, high),
                // No record at or after the timestamp: the end.
                _ if matches!(settings.start, StartFrom::Timestamp(_)) => high,
                // Nothing committed: the earliest.
                _ => low,
            }
        })
        .collect())
}

impl<K, V, KF, VF> KafkaSource<K, V, KF, VF>
where
    KF: Format<K>,
    VF: Format<V>,
{
    pub(super) fn open_running(
        &self,
        info: &TaskInfo,
        restored: Option<Restored<Vec<SourcePartition>>>,
    ) -> Result<Running, ConnectorError> {
        let settings = &self.settings;
        let group = settings
            .group
            .clone()
            .unwrap_or_else(|| format!("weir.{}.{}", info.job, info.operator));
        let mut consumer: BaseConsumer = settings
            .connection
            .client_config(&[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", "true"),
                // A checkpointed offset that retention deleted is an error,
                // not a silent jump.
                ("auto.offset.reset", "error"),
            ])
            .set_log_level(RDKafkaLogLevel::Error)
            .create()
            .map_err(|e| {
                ConnectorError::new(
                    CONNECTOR,
                    settings.connection.at(),
                    "bad client configuration",
                )
                .caused_by(e)
            })?;
        // Records (and errors) arriving wake the subtask out of its wait.
        let waker = info.waker.clone();
        consumer.set_nonempty_callback(move || waker.wake());
        let consumer = Arc::new(consumer);
        let all = partitions_of(&consumer, settings)?;
        let mine: Vec<(String, i32)> = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % info.parallelism == info.subtask)
            .map(|(_, p)| p)
            .collect();
        let restored_offsets: Option<HashMap<(String, i32), i64>> = restored.map(|r| {
            r.all()
                .flat_map(|(_, partitions)| partitions.iter())
                .map(|p| ((p.topic.clone(), p.partition), p.next_offset))
                .collect()
        });
        let starts = match &restored_offsets {
            // Partitions the checkpoint does not know are new: the earliest.
            Some(offsets) => {
                let unknown: Vec<(String, i32)> = mine
                    .iter()
                    .filter(|p| !offsets.contains_key(*p))
                    .cloned()
                    .collect();
                let earliest = Settings {
                    start: StartFrom::Earliest,
                    ..Settings::clone(settings)
                };
                let mut new = start_offsets(&consumer, &earliest, &unknown)?.into_iter();
                mine.iter()
                    .map(|p| {
                        offsets
                            .get(p)
                            .copied()
                            .unwrap_or_else(|| new.next().unwrap_or(0))
                    })
                    .collect()
            }
            None => start_offsets(&consumer, settings, &mine)?,
        };
        // Ends first: between `assign` and splitting its queue, a partition's
        // records would go to the consumer's own queue.
        let mut stops = Vec::with_capacity(mine.len());
        for (topic, partition) in &mine {
            stops.push(if settings.bounded {
                let (_, end) = consumer
                    .fetch_watermarks(topic, *partition, settings.connection.timeout)
                    .map_err(|e| {
                        ConnectorError::new(
                            CONNECTOR,
                            format!("topic '{topic}' partition {partition}"),
                            "reading its end failed",
                        )
                        .caused_by(e)
                    })?;
                Some(end)
            } else {
                None
            });
        }
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), start) in mine.iter().zip(&starts) {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(*start))
                .map_err(|e| {
                    ConnectorError::new(
                        CONNECTOR,
                        format!("topic '{topic}' partition {partition}"),
                        "bad offset",
                    )
                    .caused_by(e)
                })?;
        }
        consumer.assign(&assignment).map_err(|e| {
            ConnectorError::new(
                CONNECTOR,
                settings.connection.at(),
                "assigning partitions failed",
            )
            .caused_by(e)
        })?;
        let mut watermarks =
            SplitWatermarks::new(settings.out_of_orderness).idle_after(settings.idle_after);
        let mut partitions = Vec::with_capacity(mine.len());
        for (i, (((topic, partition), start), stop_at)) in
            mine.into_iter().zip(starts).zip(stops).enumerate()
        {
            let mut queue = consumer
                .split_partition_queue(&topic, partition)
                .ok_or_else(|| {
                    ConnectorError::new(
                        CONNECTOR,
                        format!("topic '{topic}' partition {partition}"),
                        "could not read the partition on its own",
                    )
                })?;
            let waker = info.waker.clone();
            queue.set_nonempty_callback(move || waker.wake());
            watermarks.add_split(i);
            partitions.push(Assigned {
                done: stop_at.is_some_and(|stop| start >= stop),
                topic,
                partition,
                queue: Arc::new(queue),
                next_offset: start,
                stop_at,
            });
        }
        for (i, p) in partitions.iter().enumerate() {
            if p.done {
                watermarks.remove_split(&i);
            }
        }
        let dead_letters = match &settings.on_bad_record {
            OnBadRecord::DeadLetter(_) => Some(
                settings
                    .connection
                    .client_config(&[])
                    .create()
                    .map_err(|e| {
                        ConnectorError::new(
                            CONNECTOR,
                            settings.connection.at(),
                            "creating the dead-letter producer failed",
                        )
                        .caused_by(e)
                    })?,
            ),
            _ => None,
        };
        tracing::info!(
            job = %info.job,
            task = info.subtask,
            partitions = partitions.len(),
            "kafka source assigned its partitions"
        );
        Ok(Running {
            consumer,
            partitions,
            watermarks,
            dead_letters,
            skipped: 0,
            failing_since: None,
            taken: VecDeque::new(),
            next_partition: 0,
        })
    }
}
