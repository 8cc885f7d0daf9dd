//! The error type of the operator crate.

use std::path::PathBuf;
use weir_protocol::ProtocolError;
use weir_state::StateError;

/// Why an operator could not process its input.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A user function reported a failure.
    #[error("{message}")]
    User {
        /// What the user function said.
        message: String,
        /// The underlying error, if there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Keyed state could not be read or written.
    #[error("state access failed")]
    State(#[from] StateError),
    /// A file could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("reading", "creating", …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A downstream task is gone, so output cannot be delivered: the job is
    /// being cancelled or has failed elsewhere.
    #[error("downstream task is gone (job cancelled or failed elsewhere)")]
    Disconnected,
    /// A batch could not be encoded for, or decoded from, the network.
    #[error("record batch codec ({record_type}): {problem}")]
    Codec {
        /// The record type of the edge.
        record_type: &'static str,
        /// What went wrong.
        problem: String,
    },
    /// A batch of the wrong record type arrived: the job graph is wired wrong.
    #[error("operator '{operator}' received records of an unexpected type (expected {expected})")]
    WrongRecordType {
        /// The receiving operator.
        operator: String,
        /// The record type it expected.
        expected: &'static str,
    },
}

impl OperatorError {
    /// A failure reported by user code, with a message.
    pub fn user(message: impl Into<String>) -> Self {
        Self::User {
            message: message.into(),
            source: None,
        }
    }

    /// A failure reported by user code, keeping the underlying error.
    pub fn user_caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::User {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Why a job could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The job graph is invalid (cycle, zero parallelism, …).
    #[error("invalid job graph")]
    Graph(#[from] ProtocolError),
    /// An operator was configured in a way that cannot work.
    #[error("operator '{operator}': {problem}")]
    Operator {
        /// Name of the operator.
        operator: String,
        /// What is wrong.
        problem: String,
    },
}

/// Why a job could not be built from its name and parameters.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job of this name is registered.
    #[error("unknown job '{name}' (available: {available})")]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        available: String,
    },
    /// The job has no parameter of this name.
    #[error("job '{job}' has no parameter '{param}' (parameters: {expected})")]
    UnknownParam {
        /// The job.
        job: String,
        /// The parameter given.
        param: String,
        /// The job's parameters, comma-separated.
        expected: String,
    },
    /// A parameter's value does not parse.
    #[error("parameter '{param}' of job '{job}' must be {expected}, got '{value}'{}", if problem.is_empty() { String::new() } else { format!(" ({problem})") })]
    MalformedParam {
        /// The job.
        job: String,
        /// The parameter.
        param: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: String,
        /// What is wrong with it, when more can be said than `expected`.
        problem: String,
    },
    /// A required parameter is missing.
    #[error("job '{job}' needs parameter '{param}' ({help})")]
    MissingParam {
        /// The job.
        job: String,
        /// The parameter.
        param: String,
        /// What it is for.
        help: String,
    },
    /// A `key=value` argument has no `=`.
    #[error("parameter '{argument}' must have the form key=value")]
    NotKeyValue {
        /// The argument given.
        argument: String,
    },
    /// Parameters are valid one by one but not together, or name a missing file.
    #[error("job '{job}': {problem}")]
    Invalid {
        /// The job.
        job: String,
        /// What is wrong.
        problem: String,
    },
    /// The job graph is invalid.
    #[error("job '{job}' cannot be built")]
    Build {
        /// The job.
        job: String,
        /// Why.
        #[source]
        source: BuildError,
    },
}
