//! The PostgreSQL sink against a real server (see tests/support/postgres.rs),
//! fed by `kafka-to-postgres` from a real broker: exactly once through a
//! crash on either side of the database commit, and upserts at least once.

#[path = "../support/postgres.rs"]
mod server;

use crate::kafka::broker::Kafka;
use crate::kafka_sink::{assert_each_update_once, expected_totals, input_lines, weir_run};
use server::Postgres;
use std::collections::BTreeMap;
use std::path::Path;

/// `weir run kafka-to-postgres` arguments.
fn args(
    kafka: &Kafka,
    postgres: &Postgres,
    dir: &Path,
    name: &str,
    extra: &[&str],
    parallelism: u32,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "kafka-to-postgres",
        "-p",
        &parallelism.to_string(),
        "--param",
        &format!("brokers={}", kafka.bootstrap),
        "--param",
        &format!("input=in-{name}"),
        "--param",
        &format!("database={}", postgres.url),
        "--param",
        &format!("table={name}"),
        "--param",
        "bounded=on",
        "--checkpoint-interval",
        "100ms",
        "--checkpoint-dir",
        &dir.display().to_string(),
        "--job-id",
        name,
        "--restore",
        "latest",
    ]
    .map(str::to_owned)
    .to_vec();
    for pair in extra {
        args.push("--param".into());
        args.push((*pair).into());
    }
    args
}

/// The table's rows as kafka-keyed-sum's output lines.
fn rows(postgres: &Postgres, table: &str) -> Vec<(i32, String, String)> {
    postgres
        .psql(&format!("SELECT key, count, sum FROM {table}"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            (
                0,
                fields[0].to_owned(),
                format!("{},{},{}", fields[0], fields[1], fields[2]),
            )
        })
        .collect()
}

fn crash_and_restore(kafka: &Kafka, postgres: &Postgres, crash_at: &str, extra: &[&str]) {
    let name = crash_at.split(':').next().unwrap().replace('-', "_");
    kafka.create_topic(&format!("in-{name}"), 3);
    let lines = input_lines(5000);
    kafka.produce(&format!("in-{name}"), &lines);
    let dir = tempfile::tempdir().unwrap();
    eprintln!("postgres sink: crashing at {crash_at} ({extra:?})");
    let crashed = weir_run(
        &args(kafka, postgres, dir.path(), &name, extra, 2),
        Some(crash_at),
    );
    let stderr = String::from_utf8_lossy(&crashed.stderr);
    assert!(
        !crashed.status.success() && stderr.contains("crashing at"),
        "the first run crashes at {crash_at}: {stderr}"
    );
    let restored = weir_run(&args(kafka, postgres, dir.path(), &name, extra, 2), None);
    assert!(
        restored.status.success(),
        "the restored run completes: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    if extra.contains(&"write=append") {
        // Every update a row: each exactly once.
        assert_each_update_once(&lines, &rows(postgres, &name));
    } else {
        // One row per key: its final total.
        let expected = expected_totals(&lines);
        let table: BTreeMap<String, (u64, i64)> = rows(postgres, &name)
            .into_iter()
            .map(|(_, key, line)| {
                let fields: Vec<&str> = line.split(',').collect();
                (
                    key,
                    (fields[1].parse().unwrap(), fields[2].parse().unwrap()),
                )
            })
            .collect();
        assert_eq!(table, expected, "each key's final total");
    }
}

#[test]
fn kafka_to_postgres_writes_each_update_once_through_a_crash_on_either_side_of_the_commit() {
    let Some(kafka) = Kafka::start() else { return };
    let Some(postgres) = Postgres::start() else {
        return;
    };
    // The checkpoint completed, its rows not yet written: the restored run
    // writes them.
    crash_and_restore(
        &kafka,
        &postgres,
        "postgres-sink-before-commit:2",
        &["write=append"],
    );
    // Written and marked, then the crash: the restored run commits the
    // checkpoint's rows again, and the marker makes it skip them.
    crash_and_restore(
        &kafka,
        &postgres,
        "postgres-sink-after-commit:2",
        &["write=append"],
    );
    let markers = postgres.psql("SELECT count(*) FROM weir_sink_epochs");
    assert!(
        markers.trim().parse::<u32>().unwrap() >= 2,
        "an epoch marker per (job, sink, subtask): {markers}"
    );
}

#[test]
fn an_at_least_once_upsert_ends_with_every_keys_total_after_a_crash() {
    let Some(kafka) = Kafka::start() else { return };
    let Some(postgres) = Postgres::start() else {
        return;
    };
    // Rows are committed as they come: the crash after a batch's commit
    // makes the restored run write what followed its checkpoint again,
    // which the upsert absorbs (an older total never overwrites a newer).
    crash_and_restore(
        &kafka,
        &postgres,
        "postgres-sink-after-write:3",
        &["write=upsert", "delivery=at-least-once"],
    );
}
