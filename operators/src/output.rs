//! [`Output`]: how an operator hands records to the next operators.
//!
//! An output buffers records per downstream channel and sends a batch when
//! it reaches the channel's size (the configured size, or a multiple of it
//! for a channel to another process, [`OutputChannel::batch_records`], on
//! hash and forward edges; rebalance and broadcast edges share one buffer
//! at the configured size),
//! when the task flushes (it is about to wait for input), or before any
//! control message, so that watermarks and end-of-stream never overtake
//! records.

use crate::data::{Batch, Data, Message, Timestamp};
use crate::error::OperatorError;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_protocol::key_group::{key_group_of_hash, subtask_for_key_group};
use weir_protocol::{Epoch, Partitioning};

/// One channel into one downstream subtask, provided by the runtime.
///
/// `send` blocks while the channel is full: that is how back-pressure
/// reaches a producer. It fails with [`OperatorError::Disconnected`] when
/// the receiving task is gone.
pub trait OutputChannel: Send {
    /// Delivers one message, waiting for room if needed; returns how long
    /// it waited (the producer's back-pressured time, for its metrics).
    fn send(&mut self, message: Message) -> Result<Duration, OperatorError>;

    /// How many records a full batch on this channel holds, given the
    /// job's batch size: a channel whose every message is costly (a hop
    /// to another process) asks for larger ones. Only a full batch waits
    /// for more records; a task whose input runs dry sends what it has.
    fn batch_records(&self, batch_size: usize) -> usize {
        batch_size
    }
}

/// Hashes a record's key, for hash-partitioned edges.
pub type KeyHasher<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// A [`KeyHasher`] with its record type erased, as stored in a dataflow.
pub type ErasedKeyHasher = Arc<dyn Any + Send + Sync>;

/// Counters a task shares with the runtime, for the job summary and the
/// worker's metrics.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Records the task received.
    pub records_in: AtomicU64,
    /// Records the task sent downstream.
    pub records_out: AtomicU64,
    /// Nanoseconds it waited for input (or, a source, for data to poll).
    pub idle_ns: AtomicU64,
    /// Nanoseconds it waited for room downstream.
    pub backpressured_ns: AtomicU64,
    /// While it waits for input: when that wait began, in nanoseconds
    /// since [`clock_origin`]; 0 while it does not wait (so that a reader
    /// counts a long wait in progress as idle, not busy).
    pub idle_since_ns: AtomicU64,
    /// Messages waiting in its input channels when it last looked.
    pub input_queued: AtomicU64,
    /// Messages its input channels hold at most.
    pub input_capacity: AtomicU64,
}

impl TaskCounters {
    /// Adds `waited` to the back-pressured time.
    #[inline]
    pub fn backpressured(&self, waited: Duration) {
        if !waited.is_zero() {
            self.backpressured_ns
                .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// A wait for input begins; [`idled`](Self::idled) ends it.
    #[inline]
    pub fn idle_from(&self, since: Instant) {
        let ns = since.saturating_duration_since(clock_origin()).as_nanos() as u64;
        self.idle_since_ns.store(ns.max(1), Ordering::Relaxed);
    }

    /// A wait for input that took `waited` ended: adds it to the idle time.
    #[inline]
    pub fn idled(&self, waited: Duration) {
        self.idle_since_ns.store(0, Ordering::Relaxed);
        self.idle_ns
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The idle time at `now`, the wait in progress included.
    pub fn idle_at(&self, now: Instant) -> Duration {
        let ended = Duration::from_nanos(self.idle_ns.load(Ordering::Relaxed));
        match self.idle_since_ns.load(Ordering::Relaxed) {
            0 => ended,
            since => {
                let now = now.saturating_duration_since(clock_origin()).as_nanos() as u64;
                ended + Duration::from_nanos(now.saturating_sub(since))
            }
        }
    }
}

/// The instant [`TaskCounters::idle_since_ns`] counts from.
pub fn clock_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
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
    /// The records that fill each buffer.
    full_at: Vec<usize>,
    /// The task's: waits for room count as back-pressured time.
    counters: Arc<TaskCounters>,
}

impl<T: Data> EdgeOutput<T> {
    #[inline]
    fn push(&mut self, record: T) -> Result<usize, OperatorError> {
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
        if buffer.len() >= self.full_at[slot] {
            return self.send_buffer(slot);
        }
        Ok(0)
    }

    /// Sends buffer `slot` if it holds records; returns how many were sent.
    fn send_buffer(&mut self, slot: usize) -> Result<usize, OperatorError> {
        let buffer = &mut self.buffers[slot];
        if buffer.is_empty() {
            return Ok(0);
        }
        // Sized like the batch just sent: a full one after a full one, and
        // no large buffer after every small flush of a quiet channel.
        let sent = buffer.len();
        let records = std::mem::replace(buffer, Vec::with_capacity(sent));
        let waited = match &mut self.route {
            Route::Single => self.channels[0].send(Message::Data(Batch::new(records)))?,
            Route::Hash { .. } => self.channels[slot].send(Message::Data(Batch::new(records)))?,
            Route::RoundRobin { next } => {
                let target = *next % self.channels.len();
                *next = next.wrapping_add(1);
                self.channels[target].send(Message::Data(Batch::new(records)))?
            }
            Route::Broadcast => {
                let (last, rest) = self.channels.split_last_mut().expect("edge has channels");
                let mut waited = Duration::ZERO;
                for channel in rest {
                    waited += channel.send(Message::Data(Batch::new(records.clone())))?;
                }
                waited + last.send(Message::Data(Batch::new(records)))?
            }
        };
        self.counters.backpressured(waited);
        Ok(sent)
    }

    fn flush(&mut self) -> Result<usize, OperatorError> {
        let mut sent = 0;
        for slot in 0..self.buffers.len() {
            sent += self.send_buffer(slot)?;
        }
        Ok(sent)
    }

    fn send_control(&mut self, make: impl Fn() -> Message) -> Result<(), OperatorError> {
        for channel in &mut self.channels {
            let waited = channel.send(make())?;
            self.counters.backpressured(waited);
        }
        Ok(())
    }
}

/// The typed output of an operator: `collect` records, forward watermarks,
/// end the stream.
pub struct Output<T> {
    edges: Vec<EdgeOutput<T>>,
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
            // A hash edge fills one buffer per channel, at that channel's
            // size; a forward edge its only channel's; the others share
            // one buffer among their channels, at the job's size.
            let channel_size = |c: &dyn OutputChannel| c.batch_records(batch_size).max(1);
            let full_at: Vec<usize> = match route {
                Route::Hash { .. } => edge.channels.iter().map(|c| channel_size(&**c)).collect(),
                Route::Single => vec![edge
                    .channels
                    .first()
                    .map_or(batch_size, |c| channel_size(&**c))],
                _ => vec![batch_size],
            };
            edges.push(EdgeOutput {
                route,
                buffers: full_at.iter().map(|&n| Vec::with_capacity(n)).collect(),
                full_at,
                channels: edge.channels,
                counters: wiring.counters.clone(),
            });
        }
        Ok(Self {
            edges,
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
                    sent += edge.push(record.clone())?;
                }
                sent + last.push(record)?
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
            sent += edge.flush()?;
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

    /// Flushes, then tells every channel that this task is idle: nothing
    /// follows for now, so downstream watermarks go on without it. The
    /// next watermark (or record) makes it active again; a source emits a
    /// watermark first when it resumes.
    pub fn mark_idle(&mut self) -> Result<(), OperatorError> {
        self.flush()?;
        for edge in &mut self.edges {
            edge.send_control(|| Message::Idle)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records the sizes of the batches it is sent; its batches hold
    /// `factor` times the job's batch size.
    struct Recording {
        factor: usize,
        sizes: Arc<Mutex<Vec<usize>>>,
    }

    impl OutputChannel for Recording {
        fn send(&mut self, message: Message) -> Result<Duration, OperatorError> {
            if let Message::Data(batch) = message {
                self.sizes.lock().unwrap().push(batch.len());
            }
            Ok(Duration::ZERO)
        }

        fn batch_records(&self, batch_size: usize) -> usize {
            batch_size * self.factor
        }
    }

    #[test]
    fn each_channel_fills_batches_of_its_own_size() {
        let sizes: Vec<_> = (0..2).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
        let channels = [1, 4]
            .iter()
            .zip(&sizes)
            .map(|(&factor, sizes)| {
                Box::new(Recording {
                    factor,
                    sizes: sizes.clone(),
                }) as Box<dyn OutputChannel>
            })
            .collect();
        // Records of one key to subtask 0, of another to subtask 1.
        let hasher: KeyHasher<u64> = Arc::new(|r: &u64| *r);
        let max_parallelism = 2;
        let first_hash_to = |subtask: u32| {
            (0..)
                .find(|&h| {
                    let group = key_group_of_hash(h, max_parallelism);
                    subtask_for_key_group(group, max_parallelism, 2) == subtask
                })
                .unwrap()
        };
        let (to_subtask_0, to_subtask_1) = (first_hash_to(0), first_hash_to(1));
        let wiring = OutputWiring {
            edges: vec![EdgeWiring {
                partitioning: Partitioning::Hash,
                channels,
                key_hasher: Some(Arc::new(hasher)),
                max_parallelism,
            }],
            batch_size: 10,
            counters: Arc::new(TaskCounters::default()),
        };
        let mut output = Output::<u64>::new("test", wiring).unwrap();
        for _ in 0..45 {
            output.collect(to_subtask_0).unwrap();
            output.collect(to_subtask_1).unwrap();
        }
        assert_eq!(*sizes[0].lock().unwrap(), vec![10, 10, 10, 10]);
        assert_eq!(*sizes[1].lock().unwrap(), vec![40]);
        output.flush().unwrap();
        assert_eq!(*sizes[0].lock().unwrap(), vec![10, 10, 10, 10, 5]);
        assert_eq!(
            *sizes[1].lock().unwrap(),
            vec![40, 5],
            "a flush sends what is there"
        );
    }
}
