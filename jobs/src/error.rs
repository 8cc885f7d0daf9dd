//! The error type of the jobs crate.

use weir_operators::BuildError;

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
    #[error("parameter '{param}' of job '{job}' must be {expected}, got '{value}'")]
    MalformedParam {
        /// The job.
        job: String,
        /// The parameter.
        param: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: String,
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
