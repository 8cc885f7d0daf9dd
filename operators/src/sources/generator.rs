//! A deterministic generator of keyed events.

use super::{split_range, Source};
use crate::data::Timestamp;
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{SourcePoll, TaskInfo};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// One generated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GeneratedEvent {
    /// Position of the event in the whole input, `0..events`.
    pub seq: u64,
    /// The event's key, `0..keys`.
    pub key: u64,
    /// A value in `0..1000`.
    pub value: i64,
    /// Event time: one event per millisecond, so `seq` as ms.
    pub timestamp: Timestamp,
}

/// Generates `events` events over `keys` keys from `seed`.
///
/// Event `seq` is a pure function of `(seed, seq)`, so the input is the same
/// at every parallelism: subtask `i` of `p` generates the `i`-th contiguous
/// slice of `0..events`.
///
/// ```
/// use weir_operators::sources::Generator;
/// let source = Generator::new(1_000_000, 1_000, 42).with_rate(100_000);
/// # let _ = source;
/// ```
#[derive(Debug, Clone)]
pub struct Generator {
    events: u64,
    keys: u64,
    seed: u64,
    rate: u64,
    next: u64,
    end: u64,
    subtask_rate: u64,
    started: Option<Instant>,
    emitted: u64,
}

impl Generator {
    /// `events` events over `keys` keys (at least 1) from `seed`, unlimited rate.
    pub fn new(events: u64, keys: u64, seed: u64) -> Self {
        Self {
            events,
            keys: keys.max(1),
            seed,
            rate: 0,
            next: 0,
            end: 0,
            subtask_rate: 0,
            started: None,
            emitted: 0,
        }
    }

    /// At most `events_per_second` events per second over all subtasks
    /// (0: unlimited).
    pub fn with_rate(mut self, events_per_second: u64) -> Self {
        self.rate = events_per_second;
        self
    }

    /// The event at position `seq`.
    #[inline]
    pub fn event(&self, seq: u64) -> GeneratedEvent {
        let h = mix(self.seed ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        GeneratedEvent {
            seq,
            key: h % self.keys,
            value: ((h >> 40) % 1000) as i64,
            timestamp: seq as Timestamp,
        }
    }

    /// Position of the next event this subtask will emit.
    pub fn position(&self) -> u64 {
        self.next
    }
}

/// SplitMix64's finalizer: a bijective, well-mixed hash of a `u64`.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Source for Generator {
    type Out = GeneratedEvent;
    const NAME: &'static str = "generator";

    fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError> {
        let (start, end) = split_range(self.events, info.subtask, info.parallelism);
        self.next = start;
        self.end = end;
        self.subtask_rate = if self.rate == 0 {
            0
        } else {
            (self.rate / u64::from(info.parallelism)).max(1)
        };
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Output<GeneratedEvent>,
        max_records: usize,
    ) -> Result<SourcePoll, OperatorError> {
        if self.next >= self.end {
            return Ok(SourcePoll::Finished);
        }
        let mut budget = (self.end - self.next).min(max_records as u64);
        if self.subtask_rate > 0 {
            let started = *self.started.get_or_insert_with(Instant::now);
            let elapsed = started.elapsed();
            let allowed = (elapsed.as_secs_f64() * self.subtask_rate as f64) as u64 + 1;
            let available = allowed.saturating_sub(self.emitted);
            if available == 0 {
                let wait = Duration::from_secs_f64(1.0 / self.subtask_rate as f64);
                return Ok(SourcePoll::Idle(wait));
            }
            budget = budget.min(available);
        }
        for seq in self.next..self.next + budget {
            out.collect(self.event(seq))?;
        }
        self.next += budget;
        self.emitted += budget;
        Ok(SourcePoll::Ready)
    }
}
