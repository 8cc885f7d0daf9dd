//! A slow consumer slows its producers instead of growing memory.

use crate::run_job;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir::operators::output::Output;
use weir::operators::prelude::*;
use weir::operators::task::{Restored, SourcePoll, TaskInfo};

/// Counts every record it hands to its output.
#[derive(Clone)]
struct CountingSource {
    total: u64,
    next: u64,
    produced: Arc<AtomicU64>,
}

impl Source for CountingSource {
    type Out = u64;
    type Position = ();
    const NAME: &'static str = "counting";

    fn open(
        &mut self,
        _info: &TaskInfo,
        _restored: Option<Restored<()>>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Output<u64>,
        max_records: usize,
    ) -> Result<SourcePoll, OperatorError> {
        for _ in 0..max_records {
            if self.next == self.total {
                return Ok(SourcePoll::Finished);
            }
            self.produced.fetch_add(1, Ordering::SeqCst);
            out.collect(self.next)?;
            self.next += 1;
        }
        Ok(SourcePoll::Ready)
    }
}

/// Sleeps on every batch and records how far the source ran ahead.
#[derive(Clone)]
struct SlowSink {
    produced: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
    max_ahead: Arc<AtomicU64>,
}

impl Sink<u64> for SlowSink {
    const NAME: &'static str = "slow";

    fn write(&mut self, records: Vec<u64>) -> Result<(), OperatorError> {
        std::thread::sleep(std::time::Duration::from_micros(300));
        let consumed = self
            .consumed
            .fetch_add(records.len() as u64, Ordering::SeqCst);
        let ahead = self.produced.load(Ordering::SeqCst) - consumed;
        self.max_ahead.fetch_max(ahead, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_slow_sink_bounds_the_records_in_flight() {
    const BATCH: u64 = 64;
    const TOTAL: u64 = 200_000;
    let produced = Arc::new(AtomicU64::new(0));
    let sink = SlowSink {
        produced: produced.clone(),
        consumed: Arc::new(AtomicU64::new(0)),
        max_ahead: Arc::new(AtomicU64::new(0)),
    };
    let job = JobBuilder::new("backpressure");
    job.source(CountingSource {
        total: TOTAL,
        next: 0,
        produced: produced.clone(),
    })
    .map(|x| x + 1)
    .sink(sink.clone());
    let report = run_job(job, BATCH as usize).unwrap();
    assert_eq!(report.records_out, TOTAL);

    // Two channels of 16 batches, plus one batch being built or handled at
    // each of the source, the map (in and out) and the sink.
    let capacity = weir::runtime::EngineConfig::default().channel_capacity as u64;
    let bound = (2 * capacity + 4) * BATCH;
    let max_ahead = sink.max_ahead.load(Ordering::SeqCst);
    assert!(
        max_ahead <= bound,
        "the source ran {max_ahead} records ahead of the sink (bound {bound})"
    );
    assert!(bound < TOTAL / 10, "the test must be able to fail");
}
