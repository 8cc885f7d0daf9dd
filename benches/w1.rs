//! W1 benchmark: `keyed-sum` on the in-memory backend into a blackhole.
//!
//! `cargo bench --bench w1` runs 10,000,000 events over 100,000 keys at
//! parallelism 2, once with `emit=final` and once with `emit=updates`, and
//! prints one JSON object per run. Override with `W1_EVENTS`, `W1_KEYS`,
//! `W1_PARALLELISM`, `W1_RUNS` (best of N, default 3).

use std::time::Duration;
use weir::jobs::keyed_sum::RunningSum;
use weir::operators::prelude::*;
use weir::runtime::{CancelToken, LocalEngine};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn run_once(events: u64, keys: u64, parallelism: u32, emit_updates: bool) -> (Duration, u64) {
    let job = JobBuilder::new("keyed-sum").with_parallelism(parallelism);
    job.source(Generator::new(events, keys, 42))
        .named("events")
        .key_by(|e| e.key)
        .process(RunningSum::new(emit_updates))
        .named("running-sum")
        .discard();
    let dataflow = job.build().expect("W1 builds");
    let report = LocalEngine::default()
        .run(&dataflow, &CancelToken::new())
        .expect("W1 runs");
    assert_eq!(report.events_in, events);
    (report.elapsed, report.records_out)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let events = env_or("W1_EVENTS", 10_000_000);
    let keys = env_or("W1_KEYS", 100_000);
    let parallelism = env_or("W1_PARALLELISM", 2) as u32;
    let runs = env_or("W1_RUNS", 3).max(1);
    for emit in ["final", "updates"] {
        let mut best = Duration::MAX;
        let mut records_out = 0;
        for _ in 0..runs {
            let (elapsed, out) = run_once(events, keys, parallelism, emit == "updates");
            best = best.min(elapsed);
            records_out = out;
        }
        println!(
            "{{\"bench\":\"w1\",\"backend\":\"memory\",\"emit\":\"{emit}\",\"events\":{events},\"keys\":{keys},\"parallelism\":{parallelism},\"records_out\":{records_out},\"best_of\":{runs},\"elapsed_s\":{:.3},\"events_per_s\":{:.0}}}",
            best.as_secs_f64(),
            events as f64 / best.as_secs_f64()
        );
    }
}
