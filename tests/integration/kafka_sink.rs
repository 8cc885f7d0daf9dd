//! The Kafka sink against a real broker: at least once, and exactly once
//! through a crash in each window of the two-phase commit, with `weir run`
//! killed at a crash point (`WEIR_CRASH_AT`) and run again.

use crate::kafka::broker::Kafka;
use crate::run_job;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use weir::connectors::format::Utf8;
use weir::connectors::kafka::{KafkaConnection, KafkaSink};
use weir::operators::prelude::*;

/// Every record of `topic` a `read_committed` consumer sees, per partition
/// in offset order, once it reached the end of every partition; fails
/// when an open transaction keeps it from the end (a hanging transaction
/// holds back the last stable offset).
pub(crate) fn read_committed(
    kafka: &Kafka,
    topic: &str,
    partitions: i32,
) -> Vec<(i32, String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", "weir-test-reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    // The end is the high watermark, as a read_uncommitted client sees it
    // (a read_committed one is told the last stable offset instead).
    let uncommitted: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let ends: Vec<i64> = (0..partitions)
        .map(|p| {
            uncommitted
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let text =
                |b: Option<&[u8]>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
            records.push((
                message.partition(),
                text(message.key()),
                text(message.payload()),
            ));
            continue;
        }
        let positions = consumer.position().unwrap();
        let behind: Vec<(i32, i64, i64)> = (0..partitions)
            .filter_map(|p| {
                let position = match positions.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(n)) => n,
                    _ => 0,
                };
                (position < ends[p as usize]).then_some((p, position, ends[p as usize]))
            })
            .collect();
        if behind.is_empty() {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "a read_committed consumer of '{topic}' stays short of the end (partition, position, end): \
             {behind:?}: a transaction hangs"
        );
    }
}

/// `key,value` input lines, over 3 partitions.
pub(crate) fn input_lines(count: usize) -> Vec<(i32, String, String)> {
    (0..count)
        .map(|i| {
            let key = format!("k{}", i % 40);
            ((i % 3) as i32, key.clone(), format!("{key},{}", i % 1000))
        })
        .collect()
}

/// Each key's line count and sum of values in `input`.
pub(crate) fn expected_totals(input: &[(i32, String, String)]) -> BTreeMap<String, (u64, i64)> {
    let mut expected: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for (_, key, line) in input {
        let value: i64 = line.split(',').nth(1).unwrap().parse().unwrap();
        let entry = expected.entry(key.clone()).or_default();
        entry.0 += 1;
        entry.1 += value;
    }
    expected
}

/// Checks kafka-keyed-sum's output against its input: per key, the
/// updates `key,1,…` to `key,n,…` each exactly once, keyed by key, and the
/// last with the key's total.
pub(crate) fn assert_each_update_once(
    input: &[(i32, String, String)],
    output: &[(i32, String, String)],
) {
    let expected = expected_totals(input);
    let mut seen: BTreeMap<String, BTreeMap<u64, i64>> = BTreeMap::new();
    for (_, key, line) in output {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 3, "an output line is key,count,sum: {line}");
        assert_eq!(fields[0], key, "records are keyed by their key: {line}");
        let count: u64 = fields[1].parse().unwrap();
        let sum: i64 = fields[2].parse().unwrap();
        let previous = seen.entry(key.clone()).or_default().insert(count, sum);
        assert!(
            previous.is_none(),
            "update {line} is visible twice to a read_committed consumer"
        );
    }
    for (key, (count, sum)) in &expected {
        let updates = seen.get(key).cloned().unwrap_or_default();
        let counts: Vec<u64> = updates.keys().copied().collect();
        assert_eq!(
            counts,
            (1..=*count).collect::<Vec<_>>(),
            "key {key}: every update once, none lost"
        );
        assert_eq!(updates[count], *sum, "key {key}: the final total");
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "no key that was not in the input"
    );
}

pub(crate) fn weir_run(args: &[String], crash_at: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    // The connectors say at info what a restore committed and aborted.
    command
        .arg("run")
        .args(args)
        .env("WEIR_LOG", "warn,weir_connectors=info");
    match crash_at {
        Some(point) => command.env("WEIR_CRASH_AT", point),
        None => command.env_remove("WEIR_CRASH_AT"),
    };
    command.output().expect("weir runs")
}

/// Runs kafka-keyed-sum killed at `crash_at`, then again from its latest
/// checkpoint at `restored_parallelism`, and checks the output.
fn crash_and_restore(
    kafka: &Kafka,
    dir: &Path,
    crash_at: &str,
    restored_parallelism: u32,
    restore_does: &str,
) {
    let name = crash_at.split(':').next().unwrap();
    let (input, output) = (format!("in-{name}"), format!("out-{name}"));
    kafka.create_topic(&input, 3);
    kafka.create_topic(&output, 3);
    let lines = input_lines(6000);
    kafka.produce(&input, &lines);
    let args = |parallelism: u32| -> Vec<String> {
        [
            "kafka-keyed-sum",
            "-p",
            &parallelism.to_string(),
            "--param",
            &format!("brokers={}", kafka.bootstrap),
            "--param",
            &format!("input={input}"),
            "--param",
            &format!("output={output}"),
            "--param",
            "bounded=on",
            "--checkpoint-interval",
            "100ms",
            "--checkpoint-dir",
            &dir.display().to_string(),
            "--job-id",
            name,
            "--max-restarts",
            "0",
            "--restore",
            "latest",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    eprintln!(
        "kafka sink: crashing at {crash_at}, restoring at parallelism {restored_parallelism}"
    );
    let crashed = weir_run(&args(2), Some(crash_at));
    let stderr = String::from_utf8_lossy(&crashed.stderr);
    assert!(
        !crashed.status.success() && stderr.contains(&format!("crashing at {name}")),
        "the first run crashes at {crash_at}: {stderr}"
    );
    let restored = weir_run(&args(restored_parallelism), None);
    let stderr = String::from_utf8_lossy(&restored.stderr);
    assert!(
        restored.status.success(),
        "the restored run completes: {stderr}"
    );
    assert!(
        stderr.contains(restore_does),
        "after a crash at {crash_at}, the restored run {restore_does}: {stderr}"
    );
    assert_each_update_once(&lines, &read_committed(kafka, &output, 3));
}

#[test]
fn kafka_keyed_sum_is_exactly_once_through_a_crash_in_each_commit_window() {
    let Some(kafka) = Kafka::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Records in an open transaction, no pre-commit yet: the restored run
    // aborts it (else readers hang) and writes them again.
    crash_and_restore(
        &kafka,
        dir.path(),
        "kafka-sink-before-pre-commit:2",
        2,
        "aborted a stale transaction",
    );
    // Pre-committed, checkpoint not complete: no checkpoint owns it, so
    // it is aborted too.
    crash_and_restore(
        &kafka,
        dir.path(),
        "kafka-sink-after-pre-commit:2",
        2,
        "aborted a stale transaction",
    );
    // Checkpoint complete, commit not sent: the restored run commits it
    // through the coordinator, here at another parallelism (old subtask
    // 1's transactions go to new subtask 1 of 3).
    crash_and_restore(
        &kafka,
        dir.path(),
        "kafka-sink-before-commit:2",
        3,
        "committed a restored transaction",
    );
}

#[test]
fn an_at_least_once_sink_writes_every_record_keyed() {
    let Some(kafka) = Kafka::start() else { return };
    kafka.create_topic("lines", 2);
    let lines: Vec<String> = (0..2000).map(|i| format!("k{},{i}", i % 13)).collect();
    let job = JobBuilder::new("kafka-write").with_parallelism(2);
    let sink = KafkaSink::new(KafkaConnection::new(&kafka.bootstrap), "lines", Utf8)
        .key(Utf8, |line: &String| {
            line.split(',').next().unwrap().to_owned()
        });
    job.source(FromElements::new(lines.clone())).sink(sink);
    run_job(job, 64).unwrap();

    let written = read_committed(&kafka, "lines", 2);
    let mut values: Vec<String> = written.iter().map(|(_, _, v)| v.clone()).collect();
    values.sort();
    let mut expected = lines.clone();
    expected.sort();
    assert_eq!(values, expected, "every record once (no failure, no retry)");
    let mut partition_of_key = BTreeMap::new();
    for (partition, key, value) in &written {
        assert!(
            value.starts_with(&format!("{key},")),
            "keyed by the user's function"
        );
        assert_eq!(
            *partition_of_key.entry(key.clone()).or_insert(*partition),
            *partition,
            "one key, one partition"
        );
    }
}

#[test]
fn nexmark_q7_over_a_topic_equals_q7_over_the_generator() {
    use crate::reference_jobs::{sorted_lines, weir_run};
    let Some(kafka) = Kafka::start() else { return };
    kafka.create_topic("nexmark", 2);
    let brokers = format!("brokers={}", kafka.bootstrap);
    weir_run(&[
        "nexmark-to-kafka",
        "--param",
        &brokers,
        "--param",
        "topic=nexmark",
        "--param",
        "events=30000",
        "--checkpoint-interval",
        "200ms",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (from_topic, generated) = (dir.path().join("topic"), dir.path().join("generated"));
    weir_run(&[
        "nexmark-q7",
        "--param",
        "source=kafka",
        "--param",
        &brokers,
        "--param",
        "topic=nexmark",
        "--output",
        from_topic.to_str().unwrap(),
    ]);
    weir_run(&[
        "nexmark-q7",
        "--param",
        "events=30000",
        "--output",
        generated.to_str().unwrap(),
    ]);
    let lines = sorted_lines(&from_topic);
    assert!(!lines.is_empty(), "q7 finds highest bids");
    assert_eq!(
        lines,
        sorted_lines(&generated),
        "the events through Kafka (timestamps their event time) give the same windows"
    );
}

#[test]
fn a_cluster_running_kafka_keyed_sum_loses_a_worker_and_stays_exactly_once() {
    use crate::harness::TestCluster;
    use crate::recovery::Rng;
    let Some(kafka) = Kafka::start() else { return };
    let mut rng = Rng::from_env("kafka_worker_kill");
    kafka.create_topic("cluster-in", 3);
    kafka.create_topic("cluster-out", 3);
    let lines = input_lines(12_000);
    let dir = tempfile::tempdir().unwrap();
    // Three one-slot workers for a p=2 job: one spare to take over.
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let brokers = format!("brokers={}", kafka.bootstrap);
    let output = cluster.weir(&[
        "submit",
        "kafka-keyed-sum",
        "-p",
        "2",
        "--param",
        &brokers,
        "--param",
        "input=cluster-in",
        "--param",
        "output=cluster-out",
        "--checkpoint-interval",
        "200ms",
    ]);
    assert!(
        output.status.success(),
        "{}",
        crate::harness::text(&output.stderr)
    );
    let id = crate::harness::text(&output.stdout).trim().to_owned();
    // The input arrives while the job runs, so that the kill lands between
    // transactions with records in flight.
    let (first, rest) = lines.split_at(lines.len() / 3);
    kafka.produce("cluster-in", first);
    let status = cluster.wait_for(&id, "a checkpoint with records", |s| {
        s.checkpoints_completed >= 2
    });
    let delay = rng.between(0, 400);
    std::thread::sleep(Duration::from_millis(delay));
    let victim = cluster.kill_worker_of_slot_0(&status);
    println!("worker {victim:?} (slot 0) SIGKILLed {delay} ms after checkpoint 2");
    for chunk in rest.chunks(1000) {
        kafka.produce("cluster-in", chunk);
    }
    // The job never ends (unbounded source): wait until a read_committed
    // reader sees every key's last update, at the end of every partition.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let expected_updates = lines.len();
    loop {
        let output = read_committed(&kafka, "cluster-out", 3);
        if output.len() >= expected_updates {
            assert_each_update_once(&lines, &output);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after the worker's loss, {} of {expected_updates} updates are visible",
            output.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let restarted = cluster.client().job(&id).unwrap();
    assert!(
        restarted.attempt > status.attempt,
        "the job was restored: {restarted:?}"
    );
    let cancel = cluster.weir(&["jobs", "cancel", &id]);
    assert!(
        cancel.status.success(),
        "{}",
        crate::harness::text(&cancel.stderr)
    );
}
