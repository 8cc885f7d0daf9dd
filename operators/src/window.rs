//! Event-time windows: assigners, aggregates, and the window operator.
//!
//! A window `[start, end)` of a key fires once the watermark reaches
//! `end - 1`, emitting one [`Windowed`] result. A record whose windows have
//! all fired already is late and dropped.

use crate::data::{Data, Key, Timestamp};
use crate::error::OperatorError;
use crate::process::{KeyedContext, KeyedProcessFunction, MapState, StateRegistry};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::time::Duration;
use weir_state::TimeDomain;

/// A half-open interval of event time, `[start, end)`, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First instant in the window.
    pub start: Timestamp,
    /// First instant after the window.
    pub end: Timestamp,
}

/// The result of one window of one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Windowed<K, V> {
    /// The key.
    pub key: K,
    /// Start of the window (inclusive, ms).
    pub start: Timestamp,
    /// End of the window (exclusive, ms).
    pub end: Timestamp,
    /// The aggregate's result.
    pub value: V,
}

/// Decides which windows a timestamp belongs to.
pub trait WindowAssigner: Clone + Send + Sync + 'static {
    /// Length of every window, in ms.
    fn size(&self) -> Timestamp;
    /// The windows containing `timestamp`, in increasing order of start.
    fn assign(&self, timestamp: Timestamp) -> Vec<Window>;
}

fn millis(d: Duration) -> Timestamp {
    Timestamp::try_from(d.as_millis()).unwrap_or(Timestamp::MAX)
}

/// Fixed-size, non-overlapping windows aligned to the epoch.
#[derive(Debug, Clone, Copy)]
pub struct TumblingWindows {
    size: Timestamp,
}

impl TumblingWindows {
    /// Windows of `size` (at least 1 ms).
    pub fn of(size: Duration) -> Self {
        Self {
            size: millis(size).max(1),
        }
    }
}

impl WindowAssigner for TumblingWindows {
    fn size(&self) -> Timestamp {
        self.size
    }
    fn assign(&self, timestamp: Timestamp) -> Vec<Window> {
        let start = timestamp - timestamp.rem_euclid(self.size);
        vec![Window {
            start,
            end: start + self.size,
        }]
    }
}

/// Windows of `size` starting every `slide`; a record belongs to
/// `size / slide` windows.
#[derive(Debug, Clone, Copy)]
pub struct SlidingWindows {
    size: Timestamp,
    slide: Timestamp,
}

impl SlidingWindows {
    /// Windows of `size` every `slide` (both at least 1 ms).
    pub fn of(size: Duration, slide: Duration) -> Self {
        Self {
            size: millis(size).max(1),
            slide: millis(slide).max(1),
        }
    }
}

impl WindowAssigner for SlidingWindows {
    fn size(&self) -> Timestamp {
        self.size
    }
    fn assign(&self, timestamp: Timestamp) -> Vec<Window> {
        let last_start = timestamp - timestamp.rem_euclid(self.slide);
        let mut windows = Vec::new();
        let mut start = last_start;
        while start > timestamp - self.size {
            windows.push(Window {
                start,
                end: start + self.size,
            });
            start -= self.slide;
        }
        windows.reverse();
        windows
    }
}

/// Incremental aggregation of the records of a window.
pub trait AggregateFunction: Clone + Send + Sync + 'static {
    /// Input records.
    type In: Data;
    /// The running accumulator (kept as keyed state).
    type Acc: Data;
    /// The window's result.
    type Out: Data;

    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one record.
    fn add(&self, accumulator: &mut Self::Acc, record: &Self::In);
    /// The result of a finished window.
    fn result(&self, accumulator: Self::Acc) -> Self::Out;
}

/// Counts the records of a window.
#[derive(Debug)]
pub struct Count<T>(PhantomData<fn() -> T>);

impl<T> Count<T> {
    /// A record counter.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Count<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Count<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T: Data> AggregateFunction for Count<T> {
    type In = T;
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, accumulator: &mut u64, _record: &T) {
        *accumulator += 1;
    }
    fn result(&self, accumulator: u64) -> u64 {
        accumulator
    }
}

/// The window operator: a keyed process function keeping one accumulator
/// per (key, window) and an event-time timer at each window's last instant.
pub(crate) struct WindowOperator<K, W, A: AggregateFunction> {
    assigner: W,
    aggregate: A,
    windows: Option<MapState<K, Timestamp, A::Acc>>,
    late_records: u64,
}

impl<K, W: Clone, A: AggregateFunction> Clone for WindowOperator<K, W, A> {
    fn clone(&self) -> Self {
        Self {
            assigner: self.assigner.clone(),
            aggregate: self.aggregate.clone(),
            windows: self.windows,
            late_records: 0,
        }
    }
}

impl<K, W, A: AggregateFunction> WindowOperator<K, W, A> {
    pub(crate) fn new(assigner: W, aggregate: A) -> Self {
        Self {
            assigner,
            aggregate,
            windows: None,
            late_records: 0,
        }
    }
}

impl<K: Key, W: WindowAssigner, A: AggregateFunction> WindowOperator<K, W, A> {
    fn windows(&self) -> Result<MapState<K, Timestamp, A::Acc>, OperatorError> {
        self.windows
            .ok_or_else(|| OperatorError::user("window operator used before open"))
    }
}

impl<K: Key, W: WindowAssigner, A: AggregateFunction> KeyedProcessFunction
    for WindowOperator<K, W, A>
{
    type Key = K;
    type In = A::In;
    type Out = Windowed<K, A::Out>;

    fn open(&mut self, state: &mut StateRegistry<'_, K>) -> Result<(), OperatorError> {
        self.windows = Some(state.map("windows")?);
        Ok(())
    }

    fn process(
        &mut self,
        record: A::In,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        let Some(timestamp) = ctx.timestamp() else {
            return Err(OperatorError::user(
                "windowed stream has no timestamps: call assign_timestamps before key_by/window",
            ));
        };
        let windows = self.windows()?;
        for window in self.assigner.assign(timestamp) {
            let last_instant = window.end - 1;
            if last_instant <= ctx.current_watermark() {
                self.late_records += 1;
                continue;
            }
            let mut acc = match windows.get(ctx, &window.end)? {
                Some(acc) => acc,
                None => self.aggregate.create_accumulator(),
            };
            self.aggregate.add(&mut acc, &record);
            windows.insert(ctx, window.end, acc)?;
            ctx.register_event_time_timer(last_instant)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        domain: TimeDomain,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        if domain != TimeDomain::EventTime {
            return Ok(());
        }
        let end = timestamp + 1;
        let windows = self.windows()?;
        if let Some(acc) = windows.remove(ctx, &end)? {
            let key = ctx.key().clone();
            ctx.emit(Windowed {
                key,
                start: end - self.assigner.size(),
                end,
                value: self.aggregate.result(acc),
            })?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        if self.late_records > 0 {
            tracing::info!(
                late_records = self.late_records,
                "window dropped late records"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_align_to_the_epoch() {
        let w = TumblingWindows::of(Duration::from_millis(10));
        assert_eq!(w.assign(0), vec![Window { start: 0, end: 10 }]);
        assert_eq!(w.assign(19), vec![Window { start: 10, end: 20 }]);
        assert_eq!(w.assign(-1), vec![Window { start: -10, end: 0 }]);
    }

    #[test]
    fn sliding_windows_cover_size_over_slide_windows() {
        let w = SlidingWindows::of(Duration::from_millis(10), Duration::from_millis(5));
        assert_eq!(
            w.assign(12),
            vec![Window { start: 5, end: 15 }, Window { start: 10, end: 20 }]
        );
        assert_eq!(
            w.assign(10),
            vec![Window { start: 5, end: 15 }, Window { start: 10, end: 20 }]
        );
        assert_eq!(
            w.assign(9),
            vec![Window { start: 0, end: 10 }, Window { start: 5, end: 15 }]
        );
    }
}
