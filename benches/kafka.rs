//! Kafka throughput: `kafka-keyed-sum` reads `key,value` lines from a real
//! one-node broker (tests/support/kafka.rs) and writes a running
//! `key,count,sum` per line back, at least once and exactly once (a Kafka
//! transaction per checkpoint and subtask), with 1 s checkpoints. Prints
//! one JSON line per delivery mode: lines in, seconds, lines per second,
//! checkpoints and their median duration.
//!
//! Environment: `KAFKA_LINES` (default 1000000), `KAFKA_KEYS` (default
//! 10000), `KAFKA_PARALLELISM` (default 2).

#[path = "../tests/support/kafka.rs"]
mod broker;

use std::process::Command;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `lines` `key,value` lines over 4 partitions.
fn input_lines(lines: u64, keys: u64) -> Vec<(i32, String, String)> {
    (0..lines)
        .map(|i| {
            let key = format!("k{}", i % keys);
            let line = format!("{key},{}", i % 1000);
            ((i % 4) as i32, key, line)
        })
        .collect()
}

fn main() {
    let Some(kafka) = broker::Kafka::start() else {
        return;
    };
    let lines = env_or("KAFKA_LINES", 1_000_000);
    let keys = env_or("KAFKA_KEYS", 10_000);
    let parallelism = env_or("KAFKA_PARALLELISM", 2);
    for topic in ["in", "out-at-least-once", "out-exactly-once"] {
        kafka.create_topic(topic, 4);
    }
    kafka.produce("in", &input_lines(lines, keys));
    for delivery in ["at-least-once", "exactly-once"] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let stats = dir.path().join("stats.json");
        let output = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "kafka-keyed-sum", "-p", &parallelism.to_string()])
            .args(["--param", &format!("brokers={}", kafka.bootstrap)])
            .args(["--param", "input=in", "--param", "bounded=on"])
            .args(["--param", &format!("output=out-{delivery}")])
            .args(["--param", &format!("delivery={delivery}")])
            .args(["--checkpoint-interval", "1s"])
            .arg("--checkpoint-dir")
            .arg(dir.path().join("checkpoints"))
            .arg("--stats")
            .arg(&stats)
            .output()
            .expect("weir runs");
        assert!(
            output.status.success(),
            "kafka-keyed-sum ({delivery}) failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&stats).expect("stats written"))
                .expect("stats are JSON");
        println!(
            "{{\"bench\":\"kafka-keyed-sum\",\"delivery\":\"{delivery}\",\"parallelism\":{parallelism},\
             \"lines\":{lines},\"keys\":{keys},\"events_in\":{},\"elapsed_s\":{},\"lines_per_s\":{},\
             \"checkpoints\":{},\"checkpoint_p50_ms\":{}}}",
            stats["events_in"],
            stats["elapsed_s"],
            stats["events_per_s"],
            stats["checkpoints_completed"],
            stats["checkpoint_p50_ms"],
        );
    }
}
