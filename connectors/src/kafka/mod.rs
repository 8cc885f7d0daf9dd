//! Apache Kafka: [`KafkaSource`] (offsets in Weir's checkpoints) and the
//! settings every Kafka client of a job shares ([`KafkaConnection`]).
//!
//! Clients are librdkafka's (the `rdkafka` crate, built from its bundled
//! sources). Any librdkafka property passes through
//! [`KafkaConnection::property`].

mod open;
mod reading;
mod source;

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
