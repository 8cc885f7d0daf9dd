//! [`Output`]: how an operator hands records to the next operators.
//!
//! An output buffers records per downstream channel and sends a batch when
//! it reaches the configured size, when the task flushes (it is about to
//! wait for input), or before any control message, so that watermarks and
//! end-of-stream never overtake records.

use crate::data::{Batch, Data, Message, Timestamp};
use crate::error::OperatorError;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir_protocol::key_group::{key_group_of_hash, subtask_for_key_group};
use weir_protocol::{Epoch, Partitioning};

/// One channel into one downstream subtask, provided by the runtime.
///
/// `send` blocks while the channel is full: that is how back-pressure
/// reaches a producer. It fails with [`OperatorError::Disconnected`] when
/// the receiving task is gone.
pub trait OutputChannel: Send {
    /// Delivers one message, waiting for room if needed.
    fn send(&mut self, message: Message) -> Result<(), OperatorError>;
}

/// Hashes a record's key, for hash-partitioned edges.
pub type KeyHasher<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// A [`KeyHasher`] with its record type erased, as stored in a dataflow.
pub type ErasedKeyHasher = Arc<dyn Any + Send + Sync>;

/// Counters a task shares with the runtime, for the job summary.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Records the task received.
    pub records_in: AtomicU64,
    /// Records the task sent downstream.
    pub records_out: AtomicU64,
}

/// The runtime's description of one outgoing edge of a subtask.
pub struct EdgeWiring {
    /// How records are routed along the edge.
    pub partitioning: Partitioning,
    /// Channels into the downstream subtasks: one per downstream subtask,
    /// in subtask order (for [`Partitioning::Forward`], only the matching one).
    pub channels: Vec<Box<dyn OutputChannel>>,
    /// For hash edges: the key hasher recorded when the job was built.
    pub key_hasher: Option<ErasedKeyHasher>,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
}

/// Everything a subtask needs to build its [`Output`].
pub struct OutputWiring {
    /// Outgoing edges, in the order they were added to the job.
    pub edges: Vec<EdgeWiring>,
    /// Records per batch.
    pub batch_size: usize,
    /// Counters shared with the runtime.
    pub counters: Arc<TaskCounters>,
}

enum Route<T> {
    /// Every record to the only channel.
    Single,
    /// By key group of the record's key.
    Hash {
        hasher: KeyHasher<T>,
        max_parallelism: u32,
    },
    /// Whole batches round-robin.
    RoundRobin { next: usize },
    /// Every batch to every channel.
    Broadcast,
}

struct EdgeOutput<T> {
    route: Route<T>,
    channels: Vec<Box<dyn OutputChannel>>,
    /// One buffer per channel for hash edges, a single buffer otherwise.
    buffers: Vec<Vec<T>>,
}

impl<T: Data> EdgeOutput<T> {
    #[inline]
    fn push(&mut self, record: T, batch_size: usize) -> Result<usize, OperatorError> {
        let slot = match &self.route {
            Route::Hash {
                hasher,
                max_parallelism,
            } => {
                let group = key_group_of_hash(hasher(&record), *max_parallelism);
                subtask_for_key_group(group, *max_parallelism, self.channels.len() as u32) as usize
            }
            _ => 0,
        };
        let buffer = &mut self.buffers[slot];
        buffer.push(record);
        if buffer.len() >= batch_size {
            return self.send_buffer(slot, batch_size);
        }
        Ok(0)
    }

    /// Sends buffer `slot` if it holds records; returns how many were sent.
    fn send_buffer(&mut self, slot: usize, batch_size: usize) -> Result<usize, OperatorError> {
        let buffer = &mut self.buffers[slot];
        if buffer.is_empty() {
            return Ok(0);
        }
        let records = std::mem::replace(buffer, Vec::with_capacity(batch_size));
        let sent = records.len();
        match &mut self.route {
            Route::Single => self.channels[0].send(Message::Data(Batch::new(records)))?,
            Route::Hash { .. } => self.channels[slot].send(Message::Data(Batch::new(records)))?,
            Route::RoundRobin { next } => {
                let target = *next % self.channels.len();
                *next = next.wrapping_add(1);
                self.channels[target].send(Message::Data(Batch::new(records)))?;
            }
            Route::Broadcast => {
                let (last, rest) = self.channels.split_last_mut().expect("edge has channels");
                for channel in rest {
                    channel.send(Message::Data(Batch::new(records.clone())))?;
                }
                last.send(Message::Data(Batch::new(records)))?;
            }
        }
        Ok(sent)
    }

    fn flush(&mut self, batch_size: usize) -> Result<usize, OperatorError> {
        let mut sent = 0;
        for slot in 0..self.buffers.len() {
            sent += self.send_buffer(slot, batch_size)?;
        }
        Ok(sent)
    }

    fn send_control(&mut self, make: impl Fn() -> Message) -> Result<(), OperatorError> {
        for channel in &mut self.channels {
            channel.send(make())?;
        }
        Ok(())
    }
}

/// The typed output of an operator: `collect` records, forward watermarks,
/// end the stream.
pub struct Output<T> {
    edges: Vec<EdgeOutput<T>>,
    batch_size: usize,
    counters: Arc<TaskCounters>,
    ended: bool,
    /// The next barrier is a stop barrier ([`Output::suspend`]).
    stop_at_barrier: bool,
}

impl<T: Data> Output<T> {
    /// Builds the output from the runtime's wiring.
    pub fn new(operator: &str, wiring: OutputWiring) -> Result<Self, OperatorError> {
        let batch_size = wiring.batch_size.max(1);
        let mut edges = Vec::with_capacity(wiring.edges.len());
        for edge in wiring.edges {
            let route = match edge.partitioning {
                Partitioning::Forward => Route::Single,
                Partitioning::Rebalance => Route::RoundRobin { next: 0 },
                Partitioning::Broadcast => Route::Broadcast,
                Partitioning::Hash => {
                    let hasher = edge
                        .key_hasher
                        .as_ref()
                        .and_then(|h| h.downcast_ref::<KeyHasher<T>>())
                        .cloned()
                        .ok_or_else(|| OperatorError::WrongRecordType {
                            operator: operator.to_owned(),
                            expected: std::any::type_name::<T>(),
                        })?;
                    Route::Hash {
                        hasher,
                        max_parallelism: edge.max_parallelism,
                    }
                }
            };
            let buffers = match route {
                Route::Hash { .. } => edge.channels.len(),
                _ => 1,
            };
            edges.push(EdgeOutput {
                route,
                buffers: (0..buffers)
                    .map(|_| Vec::with_capacity(batch_size))
                    .collect(),
                channels: edge.channels,
            });
        }
        Ok(Self {
            edges,
            batch_size,
            counters: wiring.counters,
            ended: false,
            stop_at_barrier: false,
        })
    }

    /// Emits one record to every outgoing edge.
    #[inline]
    pub fn collect(&mut self, record: T) -> Result<(), OperatorError> {
        let sent = match self.edges.split_last_mut() {
            None => 0,
            Some((last, rest)) => {
                let mut sent = 0;
                for edge in rest {
                    sent += edge.push(record.clone(), self.batch_size)?;
                }
                sent + last.push(record, self.batch_size)?
            }
        };
        if sent > 0 {
            self.counters
                .records_out
                .fetch_add(sent as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Sends every buffered record now.
    pub fn flush(&mut self) -> Result<(), OperatorError> {
        let mut sent = 0;
        for edge in &mut self.edges {
            sent += edge.flush(self.batch_size)?;
        }
        self.counters
            .records_out
            .fetch_add(sent as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes, then sends a watermark on every channel.
    pub fn emit_watermark(&mut self, watermark: Timestamp) -> Result<(), OperatorError> {
        self.flush()?;
        for edge in &mut self.edges {
            edge.send_control(|| Message::Watermark(watermark))?;
        }
        Ok(())
    }

    /// Flushes, then sends `Barrier(epoch)` on every channel; after
    /// [`suspend`](Self::suspend), a stop barrier that ends the channels.
    pub fn emit_barrier(&mut self, epoch: Epoch) -> Result<(), OperatorError> {
        self.flush()?;
        let stop = self.stop_at_barrier;
        for edge in &mut self.edges {
            edge.send_control(|| {
                if stop {
                    Message::StopBarrier(epoch)
                } else {
                    Message::Barrier(epoch)
                }
            })?;
        }
        if stop {
            self.ended = true;
        }
        Ok(())
    }

    /// Flushes, then tells every channel that no more records follow.
    pub fn end_of_data(&mut self) -> Result<(), OperatorError> {
        self.flush()?;
        for edge in &mut self.edges {
            edge.send_control(|| Message::EndOfData)?;
        }
        Ok(())
    }

    /// The next barrier is a stop-with-savepoint's: it goes out as a stop
    /// barrier, and ends every channel without ending its data (no final
    /// watermark follows). `end_of_stream` after it does nothing.
    pub fn suspend(&mut self) {
        self.stop_at_barrier = true;
    }

    /// Flushes, then ends every channel. Further calls do nothing.
    pub fn end_of_stream(&mut self) -> Result<(), OperatorError> {
        if self.ended {
            return Ok(());
        }
        self.flush()?;
        for edge in &mut self.edges {
            edge.send_control(|| Message::EndOfStream)?;
        }
        self.ended = true;
        Ok(())
    }
}
