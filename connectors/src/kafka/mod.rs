//! Apache Kafka: [`KafkaSource`] (offsets in Weir's checkpoints),
//! [`KafkaSink`] (at least once, or exactly once through transactions
//! committed with checkpoints) and the settings every Kafka client of a job
//! shares ([`KafkaConnection`]).
//!
//! - `source`, `open`, `reading`: the source's settings, its partition
//!   assignment and start offsets, and what it does with each record.
//! - `sink`, `exactly_once`: the sink's settings and producers; the pool of
//!   transactional producers of the exactly-once sink.
//! - `transactions`: which transactions of a crashed run to commit or
//!   abort (pure), and the admin requests that find and end them;
//!   `broker`: the Kafka protocol connection those requests go over.
//!
//! Clients are librdkafka's (the `rdkafka` crate, built from its bundled
//! sources). Any librdkafka property passes through
//! [`KafkaConnection::property`].

mod broker;
mod exactly_once;
mod open;
mod reading;
mod sink;
mod source;
mod transactions;

pub use self::exactly_once::{ExactlyOnceKafkaSink, PendingTransaction};
pub use self::sink::KafkaSink;
pub use self::source::{KafkaRecord, KafkaSource, OnBadRecord, SourcePartition, StartFrom};

use crate::error::ConnectorError;
use rdkafka::config::ClientConfig;
use std::time::Duration;

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone)]
pub struct KafkaConnection {
    bootstrap_servers: String,
    properties: Vec<(String, String)>,
    timeout: Duration,
}

impl KafkaConnection {
    /// Brokers at `bootstrap_servers` (`host:port,host:port`).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Passes a librdkafka property to every client (e.g.
    /// `security.protocol`, `fetch.max.bytes`); it overrides Weir's own.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// How long a request to the brokers (metadata, offsets) may take, and
    /// how long the brokers may stay unreachable while the job runs, before
    /// the connector fails (default 30 s). Then the job's restart strategy
    /// applies.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The brokers, as given.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// The value the user gave property `key`, if any.
    pub(crate) fn property_value(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A client configuration with `defaults` under the user's properties.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// "bootstrap servers …", for errors.
    pub(crate) fn at(&self) -> String {
        format!("bootstrap servers {}", self.bootstrap_servers)
    }

    pub(crate) fn unreachable(
        &self,
        connector: &'static str,
        source: rdkafka::error::KafkaError,
    ) -> ConnectorError {
        ConnectorError::new(
            connector,
            self.at(),
            format!("no broker answered within {:?}", self.timeout),
        )
        .caused_by(source)
    }
}
