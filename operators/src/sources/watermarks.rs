//! [`SplitWatermarks`]: the watermark of a source that reads several
//! splits (Kafka partitions, files), each with bounded out-of-orderness,
//! idle splits left out.

use crate::data::Timestamp;
use crate::error::OperatorError;
use crate::output::Output;
use crate::Data;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The watermark of a source subtask that reads several splits.
///
/// Each split's watermark is the largest timestamp read from it minus the
/// allowed out-of-orderness; the subtask's is the minimum over its active
/// splits, as in Flink's per-partition watermarks. A split that has caught
/// up (nothing more to read now) becomes idle after
/// [`idle_after`](Self::idle_after) and stops holding the watermark back;
/// its next record makes it active again. When every split is idle (or the
/// subtask has none) the subtask is idle, and downstream watermarks go on
/// without it.
///
/// A pure state machine: facts in (records, caught up, `now`), the
/// watermark change out; [`emit`](Self::emit) writes it to an [`Output`].
#[derive(Debug, Clone)]
pub struct SplitWatermarks<S> {
    bound: Timestamp,
    idle_after: Duration,
    splits: HashMap<S, SplitClock>,
    emitted: Timestamp,
    /// Whether downstream was last told that this subtask is idle.
    told_idle: bool,
}

#[derive(Debug, Clone, Copy)]
struct SplitClock {
    /// The largest timestamp read, `None` before the first record.
    max_seen: Option<Timestamp>,
    /// Since when the split has had nothing to read.
    caught_up_since: Option<Instant>,
}

/// What changed in a [`SplitWatermarks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkChange {
    /// The watermark advanced to this.
    Advanced(Timestamp),
    /// Every split is idle: the subtask is idle.
    Idle,
    /// Nothing to tell downstream.
    Unchanged,
}

impl<S: Eq + Hash + Clone> SplitWatermarks<S> {
    /// Watermarks that allow records up to `max_out_of_orderness` late
    /// relative to the largest timestamp read from their split; a split is
    /// idle as soon as it caught up (see [`idle_after`](Self::idle_after)).
    pub fn new(max_out_of_orderness: Duration) -> Self {
        Self {
            bound: Timestamp::try_from(max_out_of_orderness.as_millis()).unwrap_or(Timestamp::MAX),
            idle_after: Duration::ZERO,
            splits: HashMap::new(),
            emitted: Timestamp::MIN,
            told_idle: false,
        }
    }

    /// A split that caught up turns idle only after this long without a
    /// record (Flink's `withIdleness`), so that a split which is merely
    /// quiet for a moment does not let the watermark run ahead of it.
    pub fn idle_after(mut self, timeout: Duration) -> Self {
        self.idle_after = timeout;
        self
    }

    /// The subtask reads `split` from now on; it holds the watermark back
    /// until its first record (or until it caught up and turned idle).
    pub fn add_split(&mut self, split: S) {
        self.splits.entry(split).or_insert(SplitClock {
            max_seen: None,
            caught_up_since: None,
        });
    }

    /// The subtask no longer reads `split`.
    pub fn remove_split(&mut self, split: &S) {
        self.splits.remove(split);
    }

    /// A record with event time `timestamp` was read from `split` (which
    /// is active again, if it was idle).
    #[inline]
    pub fn observe(&mut self, split: &S, timestamp: Timestamp) {
        if let Some(clock) = self.splits.get_mut(split) {
            clock.caught_up_since = None;
            clock.max_seen = Some(clock.max_seen.map_or(timestamp, |m| m.max(timestamp)));
        }
    }

    /// `split` has nothing more to read at `now` (e.g. a Kafka partition
    /// reached its end); it turns idle [`idle_after`](Self::idle_after)
    /// from the first time it is reported caught up.
    pub fn caught_up(&mut self, split: &S, now: Instant) {
        if let Some(clock) = self.splits.get_mut(split) {
            clock.caught_up_since.get_or_insert(now);
        }
    }

    /// When the next caught-up split turns idle, if any is waiting to.
    pub fn next_idle_deadline(&self) -> Option<Instant> {
        self.splits
            .values()
            .filter_map(|c| c.caught_up_since)
            .map(|since| since + self.idle_after)
            .min()
    }

    /// The watermark so far (`Timestamp::MIN` before the first).
    pub fn current(&self) -> Timestamp {
        self.emitted
    }

    /// What to tell downstream at `now`: a higher watermark, that the
    /// subtask is idle, or nothing. Each change is reported once.
    pub fn update(&mut self, now: Instant) -> WatermarkChange {
        let idle_after = self.idle_after;
        let is_idle = |c: &SplitClock| {
            c.caught_up_since
                .is_some_and(|since| now >= since + idle_after)
        };
        let mut active = self.splits.values().filter(|c| !is_idle(c)).peekable();
        if active.peek().is_none() {
            if self.told_idle {
                return WatermarkChange::Unchanged;
            }
            self.told_idle = true;
            return WatermarkChange::Idle;
        }
        let bound = self.bound;
        let watermark = active
            .map(|c| {
                c.max_seen
                    .map_or(Timestamp::MIN, |m| m.saturating_sub(bound))
            })
            .min()
            .unwrap_or(Timestamp::MIN);
        if watermark > self.emitted || (self.told_idle && watermark > Timestamp::MIN) {
            // Back from idle, downstream needs a watermark to count this
            // subtask in again, even one that does not advance.
            self.emitted = self.emitted.max(watermark);
            self.told_idle = false;
            return WatermarkChange::Advanced(self.emitted);
        }
        WatermarkChange::Unchanged
    }

    /// [`update`](Self::update), written to `out`.
    pub fn emit<T: Data>(
        &mut self,
        out: &mut Output<T>,
        now: Instant,
    ) -> Result<(), OperatorError> {
        match self.update(now) {
            WatermarkChange::Advanced(watermark) => out.emit_watermark(watermark),
            WatermarkChange::Idle => out.mark_idle(),
            WatermarkChange::Unchanged => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_slowest_active_split_holds_the_watermark_minus_the_bound() {
        let now = Instant::now();
        let mut w = SplitWatermarks::new(ms(5));
        w.add_split(0);
        w.add_split(1);
        w.observe(&0, 100);
        assert_eq!(
            w.update(now),
            WatermarkChange::Unchanged,
            "split 1 has not started"
        );
        w.observe(&1, 50);
        assert_eq!(w.update(now), WatermarkChange::Advanced(45));
        w.observe(&1, 40);
        assert_eq!(
            w.update(now),
            WatermarkChange::Unchanged,
            "out of order within the bound"
        );
        w.observe(&1, 200);
        assert_eq!(w.update(now), WatermarkChange::Advanced(95));
    }

    #[test]
    fn a_caught_up_split_turns_idle_after_the_timeout_and_back_on_a_record() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(ms(0)).idle_after(ms(100));
        w.add_split("a");
        w.add_split("b");
        w.observe(&"a", 1_000);
        w.caught_up(&"b", t0);
        assert_eq!(w.next_idle_deadline(), Some(t0 + ms(100)));
        assert_eq!(
            w.update(t0 + ms(99)),
            WatermarkChange::Unchanged,
            "b still holds it"
        );
        assert_eq!(w.update(t0 + ms(100)), WatermarkChange::Advanced(1_000));
        w.observe(&"b", 900);
        w.observe(&"a", 2_000);
        assert_eq!(
            w.update(t0 + ms(150)),
            WatermarkChange::Unchanged,
            "b is back, at 900"
        );
        w.observe(&"b", 3_000);
        assert_eq!(w.update(t0 + ms(150)), WatermarkChange::Advanced(2_000));
    }

    #[test]
    fn all_splits_idle_or_none_makes_the_subtask_idle_once() {
        let t0 = Instant::now();
        let mut none: SplitWatermarks<u32> = SplitWatermarks::new(ms(0));
        assert_eq!(none.update(t0), WatermarkChange::Idle);
        assert_eq!(none.update(t0), WatermarkChange::Unchanged);

        let mut w = SplitWatermarks::new(ms(10));
        w.add_split(7);
        w.observe(&7, 500);
        assert_eq!(w.update(t0), WatermarkChange::Advanced(490));
        w.caught_up(&7, t0);
        assert_eq!(w.update(t0), WatermarkChange::Idle);
        assert_eq!(w.update(t0), WatermarkChange::Unchanged);
        w.observe(&7, 495);
        assert_eq!(
            w.update(t0),
            WatermarkChange::Advanced(490),
            "back from idle: the watermark again, to count the subtask in"
        );
    }

    #[test]
    fn removed_splits_no_longer_hold_the_watermark() {
        let mut w = SplitWatermarks::new(ms(0));
        w.add_split(1);
        w.add_split(2);
        w.observe(&1, 10);
        assert_eq!(w.update(Instant::now()), WatermarkChange::Unchanged);
        w.remove_split(&2);
        assert_eq!(w.update(Instant::now()), WatermarkChange::Advanced(10));
    }
}
