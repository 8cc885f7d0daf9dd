//! The error of the connectors crate.

use weir_operators::OperatorError;

/// A client library's error (librdkafka's, the Kafka protocol codec's, an
/// I/O error).
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// Why a connector failed: which connector, where in the external system
/// (topic, partition and offset; table), what went wrong, and the client's
/// own error when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{connector} ({at}): {problem}")]
pub struct ConnectorError {
    /// The connector ("kafka source", "kafka sink").
    pub connector: &'static str,
    /// Where: "topic 'in' partition 3 offset 17", "bootstrap servers 127.0.0.1:9092".
    pub at: String,
    /// What went wrong.
    pub problem: String,
    /// The client library's error.
    #[source]
    pub source: Option<ClientError>,
}

impl ConnectorError {
    /// An error of `connector` at `at`.
    pub fn new(connector: &'static str, at: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            connector,
            at: at.into(),
            problem: problem.into(),
            source: None,
        }
    }

    /// The same, caused by the client's `source`.
    pub fn caused_by(mut self, source: impl Into<ClientError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl From<ConnectorError> for OperatorError {
    fn from(error: ConnectorError) -> Self {
        OperatorError::User {
            message: format!("{} ({}): {}", error.connector, error.at, error.problem),
            source: error.source,
        }
    }
}
