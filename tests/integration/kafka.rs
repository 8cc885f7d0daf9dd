//! The Kafka source against a real broker (KRaft, one node, from the
//! release's jars; see tests/support/kafka.rs).

#[path = "../support/kafka.rs"]
pub(crate) mod broker;

use crate::run_job;
use broker::Kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir::connectors::format::{Json, Utf8};
use weir::connectors::kafka::{KafkaConnection, KafkaSource, OnBadRecord};
use weir::operators::prelude::*;

pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[test]
fn a_bounded_source_reads_every_partition_exactly_once_at_parallelism_two() {
    let Some(kafka) = Kafka::start() else { return };
    kafka.create_topic("events", 3);
    let records: Vec<(i32, String, String)> = (0..3000)
        .map(|i| (i % 3, format!("k{}", i % 7), i.to_string()))
        .collect();
    kafka.produce("events", &records);

    let out = CollectSink::new();
    let job = JobBuilder::new("kafka-read").with_parallelism(2);
    let source = KafkaSource::new(
        KafkaConnection::new(&kafka.bootstrap),
        ["events"],
        Utf8,
        Utf8,
    )
    .bounded();
    job.source(source)
        .map(|r| (r.partition, r.offset, r.key, r.value))
        .sink(out.clone());
    run_job(job, 64).unwrap();

    let mut by_partition: BTreeMap<i32, Vec<(i64, String, String)>> = BTreeMap::new();
    for (partition, offset, key, value) in out.records() {
        by_partition
            .entry(partition)
            .or_default()
            .push((offset, key, value));
    }
    for (partition, mut read) in by_partition.clone() {
        read.sort();
        let expected: Vec<(i64, String, String)> = records
            .iter()
            .filter(|r| r.0 == partition)
            .enumerate()
            .map(|(offset, (_, k, v))| (offset as i64, k.clone(), v.clone()))
            .collect();
        assert_eq!(
            read, expected,
            "partition {partition}: every record once, in offset order"
        );
    }
    assert_eq!(by_partition.len(), 3);
}

#[test]
fn a_missing_topic_or_an_unreachable_broker_is_a_clear_error_not_a_hang() {
    let Some(kafka) = Kafka::start() else { return };
    let run = |connection: KafkaConnection, topic: &str| {
        let job = JobBuilder::new("kafka-missing");
        let source = KafkaSource::new(connection, [topic], Utf8, Utf8).bounded();
        job.source(source).map(|r| r.value).discard();
        let started = Instant::now();
        let error = run_job(job, 16).expect_err("the job fails");
        (error_chain(&error), started.elapsed())
    };
    let (missing, _) = run(KafkaConnection::new(&kafka.bootstrap), "no-such-topic");
    assert!(
        missing.contains("kafka source")
            && missing.contains("topic 'no-such-topic'")
            && missing.contains("does not exist"),
        "{missing}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (unreachable, took) = run(
        KafkaConnection::new(&address).timeout(Duration::from_secs(2)),
        "events",
    );
    assert!(
        unreachable.contains(&format!("bootstrap servers {address}"))
            && unreachable.contains("no broker answered"),
        "{unreachable}"
    );
    assert!(took < Duration::from_secs(60), "gave up after {took:?}");
}

#[test]
fn records_that_do_not_decode_fail_the_job_are_skipped_or_go_to_a_dead_letter_topic() {
    let Some(kafka) = Kafka::start() else { return };
    kafka.create_topic("numbers", 1);
    kafka.create_topic("dead-letters", 1);
    let values = ["1", "2", "not a number", "4"];
    let records: Vec<(i32, String, String)> = values
        .iter()
        .map(|v| (0, "k".into(), v.to_string()))
        .collect();
    kafka.produce("numbers", &records);
    let run = |policy: OnBadRecord| {
        let out = CollectSink::new();
        let job = JobBuilder::new("kafka-bad-records");
        let source = KafkaSource::new(
            KafkaConnection::new(&kafka.bootstrap),
            ["numbers"],
            Utf8,
            Json::<u64>::new(),
        )
        .bounded()
        .on_bad_record(policy);
        job.source(source).map(|r| r.value).sink(out.clone());
        run_job(job, 16)
            .map(|_| out.records())
            .map_err(|e| error_chain(&e))
    };

    let failed = run(OnBadRecord::Fail).expect_err("a bad record fails the job");
    assert!(
        failed.contains("topic 'numbers' partition 0 offset 2")
            && failed.contains("value: not JSON"),
        "{failed}"
    );
    assert_eq!(run(OnBadRecord::Skip).unwrap(), vec![1, 2, 4]);
    assert_eq!(
        run(OnBadRecord::DeadLetter("dead-letters".into())).unwrap(),
        vec![1, 2, 4]
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", "dead-letter-check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["dead-letters"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let message = loop {
        assert!(Instant::now() < deadline, "no dead letter arrived");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            break message.unwrap().detach();
        }
    };
    assert_eq!(message.payload(), Some(&b"not a number"[..]));
    let headers = message.headers().expect("headers");
    let offset = headers
        .iter()
        .find(|h| h.key == "weir.offset")
        .and_then(|h| h.value)
        .expect("the bad record's offset");
    assert_eq!(offset, b"2");
}
