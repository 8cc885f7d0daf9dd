//! A deterministic generator of keyed events.

use super::{split_range, Source};
use crate::data::Timestamp;
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{Restored, SourcePoll, TaskInfo};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use weir_protocol::Epoch;

/// One generated event.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    bitcode::Encode,
    bitcode::Decode,
)]
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

/// The [`Generator`]'s checkpointed position: the ranges of `seq` not
/// generated yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remaining {
    remaining: Vec<(u64, u64)>,
}

/// Generates `events` events over `keys` keys from `seed`.
///
/// Event `seq` is a pure function of `(seed, seq)`, so the input is the same
/// at every parallelism: subtask `i` of `p` generates the `i`-th contiguous
/// slice of `0..events`. Its checkpointed position is the set of ranges it
/// has not generated yet; after a restore at another parallelism, the
/// remaining ranges of all old subtasks are split evenly among the new ones.
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
    /// Half-open ranges of `seq` still to generate, in order.
    remaining: VecDeque<(u64, u64)>,
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
            remaining: VecDeque::new(),
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
}

/// SplitMix64's finalizer: a bijective, well-mixed hash of a `u64`.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Part `index` of `parallelism` of the concatenation of `ranges`: equal
/// shares of the total count, in order.
fn share_of(ranges: &[(u64, u64)], index: u32, parallelism: u32) -> VecDeque<(u64, u64)> {
    let total: u64 = ranges.iter().map(|(from, to)| to - from).sum();
    let (skip, take) = split_range(total, index, parallelism);
    let (mut skip, mut take) = (skip, take - skip);
    let mut share = VecDeque::new();
    for &(from, to) in ranges {
        let len = to - from;
        if skip >= len {
            skip -= len;
            continue;
        }
        let start = from + skip;
        skip = 0;
        let n = (to - start).min(take);
        if n > 0 {
            share.push_back((start, start + n));
            take -= n;
        }
        if take == 0 {
            break;
        }
    }
    share
}

impl Source for Generator {
    type Out = GeneratedEvent;
    type Position = Remaining;
    const NAME: &'static str = "generator";

    fn open(
        &mut self,
        info: &TaskInfo,
        restored: Option<Restored<Remaining>>,
    ) -> Result<(), OperatorError> {
        self.remaining = match restored {
            // At the same parallelism each subtask resumes its own ranges
            // (as Flink keeps operator state where it was): a subtask that
            // restarts alone (regional failover) must not take over the
            // ranges of one that kept running.
            Some(restored) if !restored.rescaled() && restored.own().is_some() => restored
                .own()
                .map(|own| own.remaining.iter().copied().collect())
                .unwrap_or_default(),
            Some(restored) if restored.all().next().is_some() => {
                let mut ranges: Vec<(u64, u64)> = restored
                    .all()
                    .flat_map(|(_, r)| r.remaining.iter().copied())
                    .collect();
                ranges.sort_unstable();
                share_of(&ranges, info.subtask, info.parallelism)
            }
            _ => {
                let (start, end) = split_range(self.events, info.subtask, info.parallelism);
                VecDeque::from([(start, end)])
            }
        };
        self.remaining.retain(|(from, to)| from < to);
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
        let Some(&(next, end)) = self.remaining.front() else {
            return Ok(SourcePoll::Finished);
        };
        let mut budget = (end - next).min(max_records as u64);
        if self.subtask_rate > 0 {
            let started = *self.started.get_or_insert_with(Instant::now);
            let allowed = (started.elapsed().as_secs_f64() * self.subtask_rate as f64) as u64 + 1;
            let available = allowed.saturating_sub(self.emitted);
            if available == 0 {
                let wait = Duration::from_secs_f64(1.0 / self.subtask_rate as f64);
                return Ok(SourcePoll::Idle(wait));
            }
            budget = budget.min(available);
        }
        for seq in next..next + budget {
            out.collect(self.event(seq))?;
        }
        self.emitted += budget;
        if next + budget == end {
            self.remaining.pop_front();
        } else if let Some(front) = self.remaining.front_mut() {
            front.0 = next + budget;
        }
        Ok(SourcePoll::Ready)
    }

    fn position(&mut self, _epoch: Epoch) -> Option<Remaining> {
        Some(Remaining {
            remaining: self.remaining.iter().copied().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_remaining_ranges_evenly_and_exactly() {
        let ranges = [(0, 10), (20, 25), (40, 41)];
        let shares: Vec<_> = (0..3).map(|i| share_of(&ranges, i, 3)).collect();
        let all: Vec<u64> = shares
            .iter()
            .flat_map(|s| s.iter().flat_map(|&(a, b)| a..b))
            .collect();
        let expected: Vec<u64> = ranges.iter().flat_map(|&(a, b)| a..b).collect();
        assert_eq!(all, expected);
        let sizes: Vec<u64> = shares
            .iter()
            .map(|s| s.iter().map(|(a, b)| b - a).sum())
            .collect();
        assert_eq!(sizes, vec![5, 5, 6]);
    }

    #[test]
    fn at_the_same_parallelism_each_subtask_resumes_its_own_ranges() {
        use crate::task::{RestoredTask, SourceWaker};
        use std::sync::Arc;
        use weir_protocol::{Epoch, VertexId};
        use weir_state::MemoryBackend;
        // Old subtask 0 had little left, old subtask 1 much: subtask 0
        // restarting alone (its region) must not take over 1's events.
        let states = [vec![(8, 10)], vec![(14, 20)]];
        let info = |subtask: u32, parallelism: u32| TaskInfo {
            job: "j".into(),
            vertex: VertexId(0),
            operator: "events".into(),
            state_id: "events".into(),
            subtask,
            parallelism,
            max_parallelism: 128,
            state_backend: Arc::new(MemoryBackend),
            checkpointing: true,
            attempt: "a".into(),
            restored: Some(Arc::new(RestoredTask {
                epoch: Epoch(3),
                key_groups: Vec::new(),
                native: Vec::new(),
                operator_states: states
                    .iter()
                    .map(|r| {
                        Some(
                            serde_json::to_string(&Remaining {
                                remaining: r.clone(),
                            })
                            .unwrap(),
                        )
                    })
                    .collect(),
            })),
            others_running: true,
            waker: SourceWaker::none(),
        };
        let resumed = |subtask: u32, parallelism: u32| {
            let info = info(subtask, parallelism);
            let mut generator = Generator::new(20, 1, 7);
            generator
                .open(&info, info.restored_states("generator").unwrap())
                .unwrap();
            generator.remaining.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(resumed(0, 2), vec![(8, 10)]);
        assert_eq!(resumed(1, 2), vec![(14, 20)]);
        // Rescaled: the remaining events split evenly.
        assert_eq!(resumed(0, 1), vec![(8, 10), (14, 20)]);
    }
}
