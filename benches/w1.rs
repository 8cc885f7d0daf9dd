//! W1 benchmark: `keyed-sum` (10,000,000 events, 100,000 keys, p=2) on
//! the embedded engine, printing one JSON object per configuration.
//!
//! `cargo bench --bench w1` runs, for `emit=final` and `emit=updates` into
//! a blackhole: the in-memory backend without checkpoints, then both
//! backends with 1 s checkpoints and RocksDB without. Each JSON line has
//! events/s and, with checkpoints, their count, p50/p99 duration and full
//! and incremental sizes.
//!
//! Environment: `W1_EVENTS`, `W1_KEYS`, `W1_PARALLELISM`, `W1_RUNS` (best of
//! N, default 3), `W1_INTERVAL_MS` (default 1000), `W1_ONLY` (a substring
//! of the configuration names to run, e.g. `rocksdb`).

use std::sync::Arc;
use std::time::Duration;
use weir::coordinator::{CheckpointConfig, CheckpointStats, DriverConfig, RestartStrategy};
use weir::embedded::{checkpoint_settings, run_embedded, EmbeddedConfig, RestoreRequest};
use weir::jobs::keyed_sum::RunningSum;
use weir::operators::prelude::*;
use weir::operators::{BuildError, Dataflow};
use weir::runtime::{CancelToken, EngineConfig};
use weir::state::{MemoryBackend, RocksDbBackend, StateBackend};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Setup {
    events: u64,
    keys: u64,
    parallelism: u32,
}

fn dataflow(setup: &Setup, emit_updates: bool) -> Result<Dataflow, BuildError> {
    let job = JobBuilder::new("keyed-sum").with_parallelism(setup.parallelism);
    job.source(Generator::new(setup.events, setup.keys, 42))
        .named("events")
        .key_by(|e| e.key)
        .process(RunningSum::new(emit_updates))
        .named("running-sum")
        .discard();
    job.build()
}

fn percentile(durations: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms.get(((p / 100.0) * (ms.len().max(1) - 1) as f64).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// Runs once; returns elapsed seconds and the checkpoint figures.
fn run_once(
    setup: &Setup,
    emit_updates: bool,
    backend: Arc<dyn StateBackend>,
    interval: Option<Duration>,
) -> (f64, CheckpointStats) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let checkpoints = interval.map(|interval| {
        let driver = DriverConfig {
            checkpoint: CheckpointConfig {
                interval,
                ..CheckpointConfig::default()
            },
            retained: 3,
        };
        checkpoint_settings(&dir.path().display().to_string(), "keyed-sum", driver)
            .expect("checkpoint storage")
    });
    let config = EmbeddedConfig {
        engine: EngineConfig {
            state_backend: backend,
            ..EngineConfig::default()
        },
        checkpoints,
        restore: RestoreRequest::Nothing,
        restart: RestartStrategy::default(),
    };
    let report = run_embedded(
        || dataflow(setup, emit_updates),
        &config,
        &CancelToken::new(),
    )
    .expect("W1 runs");
    assert_eq!(report.job.events_in, setup.events);
    (report.job.elapsed.as_secs_f64(), report.checkpoints)
}

fn main() {
    let setup = Setup {
        events: env_or("W1_EVENTS", 10_000_000),
        keys: env_or("W1_KEYS", 100_000),
        parallelism: env_or("W1_PARALLELISM", 2) as u32,
    };
    let runs = env_or("W1_RUNS", 3).max(1);
    let interval = Duration::from_millis(env_or("W1_INTERVAL_MS", 1000));
    let only = std::env::var("W1_ONLY").unwrap_or_default();
    let rocks_dir = tempfile::tempdir().expect("a temporary directory");
    let backends: [(&str, Arc<dyn StateBackend>); 2] = [
        ("memory", Arc::new(MemoryBackend)),
        (
            "rocksdb",
            Arc::new(RocksDbBackend::new(rocks_dir.path(), 500_000)),
        ),
    ];
    for emit in ["final", "updates"] {
        for (backend_name, backend) in &backends {
            for checkpointing in [None, Some(interval)] {
                let name = format!(
                    "{backend_name}-{}-{emit}",
                    if checkpointing.is_some() {
                        "checkpoints"
                    } else {
                        "plain"
                    }
                );
                if !name.contains(&only) {
                    continue;
                }
                let mut best = f64::MAX;
                let mut stats = CheckpointStats::default();
                for _ in 0..runs {
                    let (elapsed, run_stats) =
                        run_once(&setup, emit == "updates", backend.clone(), checkpointing);
                    if elapsed < best {
                        best = elapsed;
                        stats = run_stats;
                    }
                }
                let checkpoint_figures = if checkpointing.is_some() {
                    format!(
                        ",\"interval_ms\":{},\"checkpoints\":{},\"checkpoint_p50_ms\":{:.1},\"checkpoint_p99_ms\":{:.1},\"checkpoint_full_bytes\":{:?},\"checkpoint_incremental_bytes\":{:?}",
                        interval.as_millis(),
                        stats.completed,
                        percentile(&stats.durations, 50.0),
                        percentile(&stats.durations, 99.0),
                        stats.sizes,
                        stats.incremental_sizes
                    )
                } else {
                    String::new()
                };
                println!(
                    "{{\"bench\":\"w1\",\"config\":\"{name}\",\"backend\":\"{backend_name}\",\"emit\":\"{emit}\",\"events\":{},\"keys\":{},\"parallelism\":{},\"best_of\":{runs},\"elapsed_s\":{best:.3},\"events_per_s\":{:.0}{checkpoint_figures}}}",
                    setup.events,
                    setup.keys,
                    setup.parallelism,
                    setup.events as f64 / best
                );
            }
        }
    }
}
