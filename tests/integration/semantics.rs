//! Watermarks, windows and timers: event-time semantics.

use crate::run_job;
use std::collections::BTreeMap;
use std::time::Duration;
use weir::operators::prelude::*;
use weir::operators::MAX_WATERMARK;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Reading {
    key: String,
    ts: i64,
}

fn reading(key: &str, ts: i64) -> Reading {
    Reading {
        key: key.into(),
        ts,
    }
}

#[test]
fn tumbling_windows_fire_on_the_watermark_and_drop_late_records() {
    // One record per batch, so each record is followed by its watermark.
    // Bound 5: after ts 12 the watermark is 6, after 25 it is 19.
    let input = vec![
        reading("a", 1),
        reading("a", 5),
        reading("a", 12),
        reading("a", 3),  // out of order but within the bound: counted
        reading("a", 25), // watermark 19: [0,10) and [10,20) fire
        reading("a", 4),  // late for [0,10): dropped
        reading("a", 15), // late for [10,20): dropped
        reading("a", 26),
    ];
    let out = CollectSink::new();
    let job = JobBuilder::new("tumbling");
    job.source(FromElements::new(input))
        .assign_timestamps(|r| r.ts, Duration::from_millis(5))
        .key_by(|r| r.key.clone())
        .window(TumblingWindows::of(Duration::from_millis(10)))
        .aggregate(Count::new())
        .sink(out.clone());
    run_job(job, 1).unwrap();
    let got: Vec<_> = out
        .records()
        .iter()
        .map(|w| (w.start, w.end, w.value))
        .collect();
    assert_eq!(got, vec![(0, 10, 3), (10, 20, 1), (20, 30, 2)]);
}

#[test]
fn sliding_window_counts_match_a_direct_computation_at_parallelism_two() {
    let (events, keys, seed) = (20_000, 7, 3);
    let out = CollectSink::new();
    let job = JobBuilder::new("sliding").with_parallelism(2);
    job.source(Generator::new(events, keys, seed))
        .assign_timestamps(|e| e.timestamp, Duration::ZERO)
        .key_by(|e| e.key)
        .window(SlidingWindows::of(
            Duration::from_millis(1000),
            Duration::from_millis(250),
        ))
        .aggregate(Count::new())
        .sink(out.clone());
    run_job(job, 256).unwrap();

    let generator = Generator::new(events, keys, seed);
    let mut expected = BTreeMap::new();
    for seq in 0..events {
        let e = generator.event(seq);
        let last_start = e.timestamp - e.timestamp.rem_euclid(250);
        let mut start = last_start;
        while start > e.timestamp - 1000 {
            *expected.entry((e.key, start)).or_insert(0u64) += 1;
            start -= 250;
        }
    }
    let got: BTreeMap<_, _> = out
        .records()
        .into_iter()
        .map(|w| ((w.key, w.start), w.value))
        .collect();
    assert_eq!(
        got.len(),
        out.records().len(),
        "one result per key and window"
    );
    assert_eq!(got, expected);
}

/// Registers an event-time timer 10 ms after each record and reports, when
/// it fires, the watermark it fired at.
#[derive(Clone, Default)]
struct Reminder;

impl KeyedProcessFunction for Reminder {
    type Key = String;
    type In = Reading;
    type Out = (String, i64, i64);

    fn process(
        &mut self,
        r: Reading,
        ctx: &mut KeyedContext<'_, String, Self::Out>,
    ) -> Result<(), OperatorError> {
        ctx.register_event_time_timer(r.ts + 10)
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        domain: TimeDomain,
        ctx: &mut KeyedContext<'_, String, Self::Out>,
    ) -> Result<(), OperatorError> {
        assert_eq!(domain, TimeDomain::EventTime);
        assert_eq!(ctx.timestamp(), Some(timestamp));
        let fired = (ctx.key().clone(), timestamp, ctx.current_watermark());
        ctx.emit(fired)
    }
}

#[test]
fn event_time_timers_fire_in_order_once_the_watermark_passes_them() {
    let input = vec![
        reading("a", 0),
        reading("b", 5),
        reading("a", 0), // same timer again: fires once
        reading("a", 30),
        reading("b", 50),
    ];
    let out = CollectSink::new();
    let job = JobBuilder::new("timers");
    job.source(FromElements::new(input))
        .assign_timestamps(|r| r.ts, Duration::ZERO)
        .key_by(|r| r.key.clone())
        .process(Reminder)
        .sink(out.clone());
    run_job(job, 1).unwrap();
    let fired = out.records();
    // Watermarks: 0→-1, 5→4, 30→29, 50→49, then the end of input.
    assert_eq!(
        fired,
        vec![
            ("a".into(), 10, 29),
            ("b".into(), 15, 29),
            ("a".into(), 40, 49),
            ("b".into(), 60, MAX_WATERMARK),
        ]
    );
    for (_, timer, watermark) in fired {
        assert!(timer <= watermark);
    }
}

/// Sets one processing-time timer shortly after the first record of each
/// key and emits the key when it fires.
#[derive(Clone, Default)]
struct Alarm {
    armed: Option<ValueState<u64, bool>>,
}

impl KeyedProcessFunction for Alarm {
    type Key = u64;
    type In = GeneratedEvent;
    type Out = u64;

    fn open(&mut self, state: &mut StateRegistry<'_, u64>) -> Result<(), OperatorError> {
        self.armed = Some(state.value("armed")?);
        Ok(())
    }

    fn process(
        &mut self,
        _e: GeneratedEvent,
        ctx: &mut KeyedContext<'_, u64, u64>,
    ) -> Result<(), OperatorError> {
        let armed = self.armed.unwrap();
        if armed.get(ctx)?.is_none() {
            armed.set(ctx, true)?;
            let at = ctx.processing_time() + 5;
            ctx.register_processing_time_timer(at)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        domain: TimeDomain,
        ctx: &mut KeyedContext<'_, u64, u64>,
    ) -> Result<(), OperatorError> {
        assert_eq!(domain, TimeDomain::ProcessingTime);
        assert!(ctx.processing_time() >= timestamp);
        let key = *ctx.key();
        ctx.emit(key)
    }
}

#[test]
fn processing_time_timers_fire_while_the_job_runs() {
    // 100 events at 100/s: the job runs about a second, far longer than
    // the 5 ms timers, whose firing does not depend on that margin.
    let out = CollectSink::new();
    let job = JobBuilder::new("alarm");
    job.source(Generator::new(100, 1, 9).with_rate(100))
        .key_by(|e| e.key)
        .process(Alarm::default())
        .sink(out.clone());
    run_job(job, 16).unwrap();
    assert_eq!(out.records(), vec![0]);
}

#[test]
fn map_filter_flat_map_union_and_rebalance_compose() {
    let out = CollectSink::new();
    let job = JobBuilder::new("compose").with_parallelism(3);
    let evens = job
        .source(FromElements::new((0u64..100).collect()))
        .filter(|x| x % 2 == 0);
    let tens = job
        .source(FromElements::new(vec![1000u64, 2000]))
        .with_parallelism(1)
        .flat_map(|x| vec![x, x + 1])
        .rebalance();
    evens
        .union([tens])
        .map(|x| x * 10)
        .with_parallelism(2)
        .sink(out.clone());
    run_job(job, 7).unwrap();
    let mut got = out.records();
    got.sort_unstable();
    let mut expected: Vec<u64> = (0..100).filter(|x| x % 2 == 0).map(|x| x * 10).collect();
    expected.extend([10_000, 10_010, 20_000, 20_010]);
    assert_eq!(got, expected);
}

#[test]
fn broadcast_delivers_every_record_to_every_subtask() {
    let out = CollectSink::new();
    let job = JobBuilder::new("broadcast").with_parallelism(1);
    job.source(FromElements::new(vec![1u32, 2, 3]))
        .broadcast()
        .map(|x| x)
        .with_parallelism(3)
        .sink(out.clone());
    let report = run_job(job, 2).unwrap();
    assert_eq!(report.records_out, 9);
    let mut got = out.records();
    got.sort_unstable();
    assert_eq!(got, vec![1, 1, 1, 2, 2, 2, 3, 3, 3]);
}

#[test]
fn invalid_graphs_are_build_errors_naming_the_operator() {
    let job = JobBuilder::new("bad");
    job.source(FromElements::new(vec![1u8]))
        .map(|x| x)
        .named("zero")
        .with_parallelism(0)
        .discard();
    let err = job.build().expect_err("zero parallelism is rejected");
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains("operator 'zero' has parallelism 0"),
        "{chain}"
    );
}
