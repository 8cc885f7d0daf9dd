//! The connector contracts through the runtime: a source's event time,
//! watermarks and idleness; a two-phase sink across checkpoints.

use crate::run_job;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::operators::prelude::*;
use weir::operators::TimestampFn;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Reading {
    key: u32,
    ts: i64,
}

/// Reads `readings` from one split with event time and watermarks, then
/// waits, caught up, until `until` says so (or a deadline passes).
#[derive(Clone)]
struct SplitSource {
    readings: Vec<Reading>,
    next: usize,
    watermarks: SplitWatermarks<u32>,
    until: Arc<dyn Fn() -> bool + Send + Sync>,
    deadline: Option<Instant>,
    /// Whether `until` said so before the deadline.
    released: Arc<AtomicBool>,
}

impl SplitSource {
    fn new(
        readings: Vec<Reading>,
        splits: &[u32],
        until: Arc<dyn Fn() -> bool + Send + Sync>,
        released: Arc<AtomicBool>,
    ) -> Self {
        let mut watermarks = SplitWatermarks::new(Duration::from_millis(2));
        for split in splits {
            watermarks.add_split(*split);
        }
        Self {
            readings,
            next: 0,
            watermarks,
            until,
            deadline: None,
            released,
        }
    }
}

impl Source for SplitSource {
    type Out = Reading;
    type Position = ();
    const NAME: &'static str = "splits";

    fn open(
        &mut self,
        _info: &TaskInfo,
        _restored: Option<Restored<()>>,
    ) -> Result<(), OperatorError> {
        self.deadline = Some(Instant::now() + Duration::from_secs(20));
        Ok(())
    }

    fn poll(&mut self, out: &mut Output<Reading>, max: usize) -> Result<SourcePoll, OperatorError> {
        let now = Instant::now();
        if self.next < self.readings.len() {
            for reading in self.readings.iter().skip(self.next).take(max) {
                self.watermarks.observe(&0, reading.ts);
                out.collect(reading.clone())?;
                self.next += 1;
                self.watermarks.emit(out, now)?;
            }
            return Ok(SourcePoll::Ready);
        }
        self.watermarks.caught_up(&0, now);
        self.watermarks.emit(out, now)?;
        if (self.until)() {
            self.released.store(true, Ordering::SeqCst);
            return Ok(SourcePoll::Finished);
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return Ok(SourcePoll::Finished);
        }
        Ok(SourcePoll::Idle(Duration::from_millis(10)))
    }

    fn event_time(&self) -> Option<TimestampFn<Reading>> {
        Some(Arc::new(|r: &Reading| r.ts))
    }
}

#[test]
fn an_idle_source_does_not_hold_back_the_windows_of_a_busy_one() {
    let out: CollectSink<Windowed<u32, u64>> = CollectSink::new();
    let seen = {
        let out = out.clone();
        Arc::new(move || !out.records().is_empty()) as Arc<dyn Fn() -> bool + Send + Sync>
    };
    let busy_released = Arc::new(AtomicBool::new(false));
    let idle_released = Arc::new(AtomicBool::new(false));
    let readings: Vec<Reading> = (0..100).map(|ts| Reading { key: 1, ts }).collect();
    let job = JobBuilder::new("idle-source");
    // The busy source's split stays active once caught up (at watermark
    // 97); the other source has no split at all, so it is idle from the
    // start and must not hold the window's watermark at its beginning.
    let mut busy = SplitSource::new(readings, &[0], seen.clone(), busy_released);
    busy.watermarks = busy.watermarks.idle_after(Duration::from_secs(3600));
    let busy = job.source(busy).named("busy");
    let idle = job
        .source(SplitSource::new(
            Vec::new(),
            &[],
            seen,
            idle_released.clone(),
        ))
        .named("idle");
    busy.union([idle])
        .key_by(|r| r.key)
        .window(TumblingWindows::of(Duration::from_millis(10)))
        .aggregate(Count::new())
        .sink(out.clone());
    run_job(job, 1).unwrap();
    assert!(
        idle_released.load(Ordering::SeqCst),
        "windows fired only when the sources ended: the idle source held the watermark"
    );
    let windows: Vec<_> = out.records().iter().map(|w| (w.start, w.value)).collect();
    assert_eq!(windows, (0..10).map(|i| (i * 10, 10)).collect::<Vec<_>>());
}
