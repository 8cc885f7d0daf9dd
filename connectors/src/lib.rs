//! Weir's connectors to external systems, written against the connector
//! contracts of `weir-operators` (`Source`, `TwoPhaseSink`).
//!
//! # Layout
//!
//! - [`kafka`]: Apache Kafka. [`KafkaSource`](kafka::KafkaSource) reads
//!   topics with offsets in Weir's checkpoints; [`KafkaConnection`](kafka::KafkaConnection)
//!   holds the brokers and the librdkafka properties every client shares.
//! - [`format`]: how keys and values are read and written: bytes, UTF-8,
//!   JSON into a serde type.
//! - [`error`]: [`ConnectorError`](error::ConnectorError), naming the
//!   connector and where (topic, partition, offset) it failed.

pub mod error;
pub mod format;
pub mod kafka;

pub use error::ConnectorError;
