//! Weir's connectors to external systems (Kafka, PostgreSQL), written against the connector
//! contracts of `weir-operators` (`Source`, `TwoPhaseSink`).
//!
//! # Layout
//!
//! - [`kafka`]: Apache Kafka. [`KafkaSource`](kafka::KafkaSource) reads
//!   topics with offsets in Weir's checkpoints; [`KafkaSink`](kafka::KafkaSink)
//!   writes them, at least once or through transactions committed with
//!   checkpoints; [`KafkaConnection`](kafka::KafkaConnection) holds the
//!   brokers and the librdkafka properties every client shares.
//! - [`postgres`]: PostgreSQL. [`PostgresSink`](postgres::PostgresSink)
//!   runs a statement per record: at least once (for upserts), or exactly
//!   once with each checkpoint's rows committed with it under an epoch
//!   marker.
//! - [`format`]: how keys and values are read and written: bytes, UTF-8,
//!   JSON into a serde type.
//! - [`error`]: [`ConnectorError`](error::ConnectorError), naming the
//!   connector and where (topic, partition, offset) it failed.
//! - `fault`: crash points for tests of crash windows (`WEIR_CRASH_AT`).

pub mod error;
mod fault;
pub mod format;
pub mod kafka;
pub mod postgres;

pub use error::ConnectorError;
