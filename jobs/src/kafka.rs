//! Kafka jobs:
//!
//! - `kafka-keyed-sum`: `key,value` lines from a Kafka topic in, a running
//!   `key,count,sum` per key out to another topic, exactly once by default;
//! - `kafka-to-postgres`: the same totals into a PostgreSQL table, upserted
//!   (or appended), exactly once by default;
//! - `nexmark-to-kafka`: the Nexmark generator's events as JSON into a
//!   topic, each record's timestamp its event time, for the Nexmark
//!   queries to read (`--param source=kafka`).
//!
//! Connection settings are parameters: `brokers`, the topics, `group`,
//! `start`, and `kafka_properties` for any other librdkafka property.

use serde::{Deserialize, Serialize};
use std::fmt;
use weir_connectors::format::{Format, Json, Utf8};
use weir_connectors::kafka::{KafkaConnection, KafkaSink, KafkaSource, OnBadRecord, StartFrom};
use weir_connectors::postgres::{PostgresSink, SqlParams};
use weir_operators::job::{JobContext, JobDefinition, JobError, ParamKind, ParamSpec};
use weir_operators::prelude::*;
use weir_operators::sources::NexmarkEvent;
use weir_operators::Dataflow;

/// The parameters every Kafka job takes to reach its brokers.
pub const CONNECTION_PARAMS: [ParamSpec; 2] = [
    ParamSpec {
        name: "brokers",
        kind: ParamKind::Text,
        default: None,
        help: "bootstrap servers, host:port[,host:port]",
    },
    ParamSpec {
        name: "kafka_properties",
        kind: ParamKind::Text,
        default: Some(""),
        help: "other librdkafka properties for every client, key=value;key=value",
    },
];

/// What every job reading `key,value` lines from Kafka takes.
const SOURCE_PARAMS: [ParamSpec; 5] = [
    ParamSpec {
        name: "input",
        kind: ParamKind::Text,
        default: Some("keyed-sum-in"),
        help: "topic of `key,value` lines (value an integer)",
    },
    ParamSpec {
        name: "group",
        kind: ParamKind::Text,
        default: Some(""),
        help: "consumer group offsets are committed to (monitoring; start=group reads them)",
    },
    ParamSpec {
        name: "start",
        kind: ParamKind::Text,
        default: Some("earliest"),
        help: "where partitions start without a checkpoint: earliest, latest, group, or a timestamp in ms",
    },
    ParamSpec {
        name: "bounded",
        kind: ParamKind::Choice(&["off", "on"]),
        default: Some("off"),
        help: "on: stop at the end the input had at start (the job then ends)",
    },
    ParamSpec {
        name: "bad_records",
        kind: ParamKind::Text,
        default: Some("fail"),
        help: "a line that is not `key,integer`: fail, skip, or dead-letter:<topic>",
    },
];

/// The job's registration.
pub const KEYED_SUM: JobDefinition = JobDefinition {
    name: "kafka-keyed-sum",
    description: "per key, a running count and sum of `key,value` lines from a Kafka topic, to a Kafka topic",
    params: &[
        CONNECTION_PARAMS[0],
        CONNECTION_PARAMS[1],
        SOURCE_PARAMS[0],
        SOURCE_PARAMS[1],
        SOURCE_PARAMS[2],
        SOURCE_PARAMS[3],
        SOURCE_PARAMS[4],
        ParamSpec {
            name: "output",
            kind: ParamKind::Text,
            default: Some("keyed-sum-out"),
            help: "topic the `key,count,sum` lines go to, keyed by key",
        },
        ParamSpec {
            name: "delivery",
            kind: ParamKind::Choice(&["exactly-once", "at-least-once"]),
            default: Some("exactly-once"),
            help: "exactly-once: Kafka transactions committed with checkpoints; at-least-once: flushed at barriers",
        },
        ParamSpec {
            name: "transactional_id_prefix",
            kind: ParamKind::Text,
            default: Some(""),
            help: "start of the sink's transactional ids (default weir/<job>/<sink>); unique per running job",
        },
    ],
    build: build_keyed_sum,
};

/// The job's registration.
pub const NEXMARK_TO_KAFKA: JobDefinition = JobDefinition {
    name: "nexmark-to-kafka",
    description:
        "the Nexmark generator's events as JSON into a Kafka topic (timestamps: event time)",
    params: &[
        CONNECTION_PARAMS[0],
        CONNECTION_PARAMS[1],
        ParamSpec {
            name: "topic",
            kind: ParamKind::Text,
            default: Some("nexmark"),
            help: "topic the events go to",
        },
        ParamSpec {
            name: "events",
            kind: ParamKind::UInt,
            default: Some("1000000"),
            help: "number of Nexmark events to generate",
        },
    ],
    build: build_nexmark_to_kafka,
};

fn build_nexmark_to_kafka(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let job = ctx.builder();
    let sink = KafkaSink::new(connection(ctx)?, ctx.params.text("topic"), Json::new())
        .timestamp(|event: &NexmarkEvent| event.timestamp() as i64)
        .exactly_once();
    job.source(NexmarkSource::new(ctx.params.uint("events")))
        .named("nexmark")
        .uid("nexmark")
        .two_phase_sink(sink)
        .uid("write");
    ctx.finish(job)
}

/// The brokers and pass-through properties of `ctx`'s parameters.
pub fn connection(ctx: &JobContext) -> Result<KafkaConnection, JobError> {
    let mut connection = KafkaConnection::new(ctx.params.text("brokers"));
    for pair in ctx
        .params
        .text("kafka_properties")
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(ctx.invalid(format!(
                "kafka_properties: '{pair}' is not key=value (pairs are separated by ';')"
            )));
        };
        connection = connection.property(key.trim(), value.trim());
    }
    Ok(connection)
}

/// `start`: earliest, latest, group or a timestamp in ms.
pub fn start_from(ctx: &JobContext) -> Result<StartFrom, JobError> {
    Ok(match ctx.params.text("start") {
        "earliest" => StartFrom::Earliest,
        "latest" => StartFrom::Latest,
        "group" => StartFrom::GroupOffsets,
        other => StartFrom::Timestamp(other.parse().map_err(|_| {
            ctx.invalid(format!(
                "start must be earliest, latest, group or a timestamp in ms, got '{other}'"
            ))
        })?),
    })
}

/// `bad_records`: fail, skip or dead-letter:<topic>.
pub fn on_bad_record(ctx: &JobContext) -> Result<OnBadRecord, JobError> {
    match ctx.params.text("bad_records") {
        "fail" => Ok(OnBadRecord::Fail),
        "skip" => Ok(OnBadRecord::Skip),
        other => match other.strip_prefix("dead-letter:") {
            Some(topic) if !topic.is_empty() => Ok(OnBadRecord::DeadLetter(topic.to_owned())),
            _ => Err(ctx.invalid(format!(
                "bad_records must be fail, skip or dead-letter:<topic>, got '{other}'"
            ))),
        },
    }
}

/// A `key,value` line with an integer value.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyValueLine;

impl Format<(String, i64)> for KeyValueLine {
    fn decode(&self, bytes: Option<&[u8]>) -> Result<(String, i64), String> {
        let line = Utf8.decode(bytes)?;
        let (key, value) = line
            .split_once(',')
            .ok_or_else(|| format!("'{line}' is not a key,value line"))?;
        let value = value
            .trim()
            .parse()
            .map_err(|e| format!("'{line}': the value is not an integer ({e})"))?;
        Ok((key.trim().to_owned(), value))
    }

    fn encode(&self, (key, value): &(String, i64)) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(format!("{key},{value}").into_bytes()))
    }
}

/// A key's running count and sum, after one more of its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTotal {
    /// The key.
    pub key: String,
    /// Lines of the key so far.
    pub count: u64,
    /// Sum of their values.
    pub sum: i64,
}

impl fmt::Display for KeyTotal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.key, self.count, self.sum)
    }
}

/// Keeps `(count, sum)` per key and emits the key's total on every update.
#[derive(Debug, Clone, Default)]
pub struct LineSum {
    totals: Option<ValueState<String, (u64, i64)>>,
}

impl KeyedProcessFunction for LineSum {
    type Key = String;
    type In = (String, i64);
    type Out = KeyTotal;

    fn open(&mut self, state: &mut StateRegistry<'_, String>) -> Result<(), OperatorError> {
        self.totals = Some(state.value("totals")?);
        Ok(())
    }

    fn process(
        &mut self,
        (key, value): (String, i64),
        ctx: &mut KeyedContext<'_, String, KeyTotal>,
    ) -> Result<(), OperatorError> {
        let totals = self
            .totals
            .ok_or_else(|| OperatorError::user("line-sum used before open"))?;
        let (count, sum) = totals
            .update(ctx, |old| {
                let (count, sum) = old.unwrap_or((0, 0));
                Some((count + 1, sum + value))
            })?
            .unwrap_or_default();
        ctx.emit(KeyTotal { key, count, sum })
    }
}

/// The running totals of the `key,value` lines of the `input` topic.
fn running_totals(ctx: &JobContext, job: &JobBuilder) -> Result<Stream<KeyTotal>, JobError> {
    let p = &ctx.params;
    let mut source = KafkaSource::new(connection(ctx)?, [p.text("input")], Utf8, KeyValueLine)
        .start_from(start_from(ctx)?)
        .on_bad_record(on_bad_record(ctx)?);
    if !p.text("group").is_empty() {
        source = source.group(p.text("group"));
    }
    if p.text("bounded") == "on" {
        source = source.bounded();
    }
    Ok(job
        .source(source)
        .named("read")
        .uid("read")
        .map(|record| record.value)
        .named("values")
        .key_by(|(key, _): &(String, i64)| key.clone())
        .process(LineSum::default())
        .named("line-sum")
        .uid("line-sum"))
}

fn build_keyed_sum(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let p = &ctx.params;
    let job = ctx.builder();
    let lines = running_totals(ctx, &job)?.map(|total| total.to_string());
    let sink = KafkaSink::new(connection(ctx)?, p.text("output"), Utf8)
        .key(Utf8, |line: &String| {
            line.split(',').next().unwrap_or_default().to_owned()
        });
    match p.text("delivery") {
        "at-least-once" => lines.sink(sink).uid("write"),
        _ => {
            let mut sink = sink.exactly_once();
            if !p.text("transactional_id_prefix").is_empty() {
                sink = sink.transactional_id_prefix(p.text("transactional_id_prefix"));
            }
            lines.two_phase_sink(sink).uid("write")
        }
    };
    ctx.finish(job)
}

/// The job's registration.
pub const TO_POSTGRES: JobDefinition = JobDefinition {
    name: "kafka-to-postgres",
    description: "per key, a running count and sum of `key,value` lines from a Kafka topic, into a PostgreSQL table",
    params: &[
        CONNECTION_PARAMS[0],
        CONNECTION_PARAMS[1],
        SOURCE_PARAMS[0],
        SOURCE_PARAMS[1],
        SOURCE_PARAMS[2],
        SOURCE_PARAMS[3],
        SOURCE_PARAMS[4],
        ParamSpec {
            name: "database",
            kind: ParamKind::Text,
            default: None,
            help: "postgresql://user[:password]@host:port/database",
        },
        ParamSpec {
            name: "table",
            kind: ParamKind::Text,
            default: Some("keyed_sums"),
            help: "table of (key text, count bigint, sum bigint), created if missing",
        },
        ParamSpec {
            name: "write",
            kind: ParamKind::Choice(&["upsert", "append"]),
            default: Some("upsert"),
            help: "upsert: one row per key, its latest total (key the primary key); append: a row per update",
        },
        ParamSpec {
            name: "delivery",
            kind: ParamKind::Choice(&["exactly-once", "at-least-once"]),
            default: Some("exactly-once"),
            help: "exactly-once: each checkpoint's rows in one transaction with an epoch marker; at-least-once: rows as they come (meant for upsert)",
        },
    ],
    build: build_to_postgres,
};

fn build_to_postgres(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let p = &ctx.params;
    let table = p.text("table");
    let is_identifier = !table.is_empty()
        && !table.starts_with(|c: char| c.is_ascii_digit())
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_identifier {
        return Err(ctx.invalid(format!(
            "table must be a plain name (letters, digits, _), got '{table}'"
        )));
    }
    let (setup, statement) = if p.text("write") == "upsert" {
        (
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, count bigint NOT NULL, sum bigint NOT NULL)"
            ),
            // A replayed, older total never overwrites a newer one.
            format!(
                "INSERT INTO {table} (key, count, sum) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE \
                 SET count = EXCLUDED.count, sum = EXCLUDED.sum WHERE {table}.count < EXCLUDED.count"
            ),
        )
    } else {
        (
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (key text NOT NULL, count bigint NOT NULL, sum bigint NOT NULL)"
            ),
            format!("INSERT INTO {table} (key, count, sum) VALUES ($1, $2, $3)"),
        )
    };
    let job = ctx.builder();
    let totals = running_totals(ctx, &job)?;
    let sink = PostgresSink::new(p.text("database"), statement, |t: &KeyTotal| -> SqlParams {
        vec![
            Box::new(t.key.clone()),
            Box::new(t.count as i64),
            Box::new(t.sum),
        ]
    })
    .setup(setup);
    match p.text("delivery") {
        "at-least-once" => totals.sink(sink).uid("write"),
        _ => totals.two_phase_sink(sink.exactly_once()).uid("write"),
    };
    ctx.finish(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_lines_name_what_is_wrong() {
        assert_eq!(
            KeyValueLine.decode(Some(b"k1, 7")).unwrap(),
            ("k1".to_owned(), 7)
        );
        assert!(KeyValueLine
            .decode(Some(b"k1"))
            .unwrap_err()
            .contains("not a key,value line"));
        assert!(KeyValueLine
            .decode(Some(b"k1,x"))
            .unwrap_err()
            .contains("not an integer"));
    }
}
