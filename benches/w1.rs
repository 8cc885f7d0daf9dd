//! W1 benchmark: `keyed-sum` (10,000,000 events, 100,000 keys, p=2, records
//! dropped at the sink), printing one JSON object per configuration.
//!
//! `cargo bench --bench w1` runs, for `emit=final` and `emit=updates`:
//! - `embedded-…`: `weir run`'s embedded cluster (coordinator and one
//!   worker in this process), in-memory and RocksDB state, without and with
//!   1 s checkpoints;
//! - `cluster-{memory,rocksdb}-checkpoints-…`: a `weir coordinator` and two
//!   `weir worker` processes (one slot each, so every keyed record crosses
//!   processes half the time), 1 s checkpoints.
//!
//! Each JSON line has events/s (best of N) and, with checkpoints, their
//! count, p50/p99 duration and full and incremental sizes.
//!
//! Environment: `W1_EVENTS`, `W1_KEYS`, `W1_PARALLELISM`, `W1_RUNS` (best of
//! N, default 3), `W1_INTERVAL_MS` (default 1000), `W1_ONLY` (a substring
//! of the configuration names to run, e.g. `cluster`), `W1_SCRAPE_MS`
//! (set: each `cluster-…` configuration runs a second time as
//! `cluster-…-scraped`, with the coordinator's and both workers' `/metrics`
//! scraped at that period, to show what metrics cost).
//!
//! `W1_PAIRED=N` instead runs N rounds of `paired-{memory,rocksdb}-updates`:
//! each round one embedded and one two-process run back to back, so that a
//! machine whose speed drifts over minutes slows both sides of a round
//! alike. It prints each round's cluster/embedded ratio and their median.

#[path = "support/cluster.rs"]
mod cluster;

use cluster::ProcessCluster;
use std::path::Path;
use std::time::Duration;
use weir::coordinator::JobStatus;
use weir::embedded::run_embedded;

use weir::protocol::cluster::{BackendKind, RunSettings};
use weir::protocol::SubmitRequest;

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

fn request(
    setup: &Setup,
    emit: &str,
    backend: BackendKind,
    interval: Option<Duration>,
) -> SubmitRequest {
    let params = [
        ("events", setup.events.to_string()),
        ("keys", setup.keys.to_string()),
        ("emit", emit.to_owned()),
    ];
    let settings = RunSettings {
        checkpoint_interval_ms: interval.map_or(0, |i| i.as_millis() as u64),
        state_backend: backend,
        ..RunSettings::default()
    };
    cluster::keyed_sum(&params, setup.parallelism, settings)
}

fn percentile(ms: &[f64], p: f64) -> f64 {
    let mut ms = ms.to_vec();
    ms.sort_by(f64::total_cmp);
    ms.get(((p / 100.0) * (ms.len().max(1) - 1) as f64).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// `W1_PAIRED`: alternating embedded and two-process runs, ratio per round.
fn paired(setup: &Setup, rounds: u64, interval: Duration, only: &str, data_dir: &Path) {
    let checkpoints = data_dir.join("checkpoints").display().to_string();
    let registry = weir::jobs::registry();
    let cluster = ProcessCluster::start(data_dir, setup.parallelism as usize, 1);
    for (backend_name, backend) in [
        ("memory", BackendKind::Memory),
        ("rocksdb", BackendKind::Rocksdb),
    ] {
        let name = format!("paired-{backend_name}-updates");
        if !name.contains(only) {
            continue;
        }
        let (mut embedded, mut two_processes, mut ratios) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            let submit = || request(setup, "updates", backend, Some(interval));
            let alone = run_embedded(&registry, checkpoints.clone(), setup.parallelism, submit())
                .expect("W1 runs");
            let split = cluster.run(&submit());
            for status in [&alone, &split] {
                assert_eq!(status.events_in, setup.events, "{name}");
            }
            let (alone, split) = (
                setup.events as f64 / alone.elapsed_s,
                setup.events as f64 / split.elapsed_s,
            );
            embedded.push(alone);
            two_processes.push(split);
            ratios.push(split / alone);
        }
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "{{\"bench\":\"w1\",\"config\":\"{name}\",\"backend\":\"{backend_name}\",\"emit\":\"updates\",\"events\":{},\"keys\":{},\"parallelism\":{},\"interval_ms\":{},\"rounds\":{rounds},\"embedded_median_events_per_s\":{:.0},\"cluster_median_events_per_s\":{:.0},\"ratios\":[{}],\"median_ratio\":{:.3}}}",
            setup.events,
            setup.keys,
            setup.parallelism,
            interval.as_millis(),
            median(&embedded),
            median(&two_processes),
            listed.join(","),
            median(&ratios)
        );
    }
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
    let scrape = std::env::var("W1_SCRAPE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    // RocksDB instances of the embedded worker go under the data directory too.
    std::env::set_var("WEIR_DATA_DIR", data_dir.path());
    let rounds = env_or("W1_PAIRED", 0);
    if rounds > 0 {
        paired(&setup, rounds, interval, &only, data_dir.path());
        return;
    }
    let checkpoints = data_dir.path().join("checkpoints").display().to_string();
    let registry = weir::jobs::registry();
    let mut cluster: Option<ProcessCluster> = None;
    let mut configs = Vec::new();
    for emit in ["final", "updates"] {
        for (backend_name, backend) in [
            ("memory", BackendKind::Memory),
            ("rocksdb", BackendKind::Rocksdb),
        ] {
            for checkpointing in [None, Some(interval)] {
                let mode = if checkpointing.is_some() {
                    "checkpoints"
                } else {
                    "plain"
                };
                configs.push((
                    format!("embedded-{backend_name}-{mode}-{emit}"),
                    backend_name,
                    backend,
                    checkpointing,
                    emit,
                    None,
                ));
            }
        }
        for (backend_name, backend) in [
            ("memory", BackendKind::Memory),
            ("rocksdb", BackendKind::Rocksdb),
        ] {
            configs.push((
                format!("cluster-{backend_name}-checkpoints-{emit}"),
                backend_name,
                backend,
                Some(interval),
                emit,
                None,
            ));
            if let Some(period) = scrape {
                configs.push((
                    format!("cluster-{backend_name}-checkpoints-{emit}-scraped"),
                    backend_name,
                    backend,
                    Some(interval),
                    emit,
                    Some(period),
                ));
            }
        }
    }
    for (name, backend_name, backend, checkpointing, emit, scraped) in configs {
        if !name.contains(&only) {
            continue;
        }
        let on_cluster = name.starts_with("cluster");
        if on_cluster && cluster.is_none() {
            cluster = Some(ProcessCluster::start(
                data_dir.path(),
                setup.parallelism as usize,
                1,
            ));
        }
        let mut best: Option<JobStatus> = None;
        let mut scrapes = 0;
        for _ in 0..runs {
            let request = request(&setup, emit, backend, checkpointing);
            let status = match &cluster {
                Some(cluster) if on_cluster => {
                    let scraper = scraped.map(|period| cluster.scrape_every(period));
                    let status = cluster.run(&request);
                    scrapes += scraper.map_or(0, cluster::Scraper::finish);
                    status
                }
                _ => run_embedded(&registry, checkpoints.clone(), setup.parallelism, request)
                    .expect("W1 runs"),
            };
            assert_eq!(status.events_in, setup.events, "{name}");
            if best.as_ref().is_none_or(|b| status.elapsed_s < b.elapsed_s) {
                best = Some(status);
            }
        }
        let best = best.expect("at least one run");
        let checkpoint_figures = if checkpointing.is_some() {
            format!(
                ",\"interval_ms\":{},\"checkpoints\":{},\"checkpoint_p50_ms\":{:.1},\"checkpoint_p99_ms\":{:.1},\"checkpoint_full_bytes\":{:?},\"checkpoint_incremental_bytes\":{:?}",
                interval.as_millis(),
                best.checkpoints_completed,
                percentile(&best.checkpoint_durations_ms, 50.0),
                percentile(&best.checkpoint_durations_ms, 99.0),
                best.checkpoint_sizes,
                best.checkpoint_incremental_sizes
            )
        } else {
            String::new()
        };
        let scrape_figures = scraped.map_or_else(String::new, |period| {
            format!(
                ",\"scrape_ms\":{},\"scrape_rounds\":{scrapes}",
                period.as_millis()
            )
        });
        println!(
            "{{\"bench\":\"w1\",\"config\":\"{name}\",\"backend\":\"{backend_name}\",\"emit\":\"{emit}\",\"workers\":{},\"events\":{},\"keys\":{},\"parallelism\":{},\"best_of\":{runs},\"elapsed_s\":{:.3},\"events_per_s\":{:.0}{checkpoint_figures}{scrape_figures}}}",
            if on_cluster { setup.parallelism } else { 1 },
            setup.events,
            setup.keys,
            setup.parallelism,
            best.elapsed_s,
            setup.events as f64 / best.elapsed_s
        );
    }
}
