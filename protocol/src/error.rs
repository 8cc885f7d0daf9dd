//! The error type of the protocol crate.

use crate::ids::VertexId;

/// Why a [`JobGraph`](crate::JobGraph) or a protocol value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The graph has no vertices at all.
    #[error("job '{job}' has no operators")]
    EmptyGraph {
        /// Name of the job.
        job: String,
    },
    /// A vertex was given parallelism 0.
    #[error("operator '{operator}' has parallelism 0; it must be at least 1")]
    ZeroParallelism {
        /// Name of the operator.
        operator: String,
    },
    /// A vertex's parallelism exceeds the job's max parallelism (number of key groups).
    #[error(
        "operator '{operator}' has parallelism {parallelism}, above the max parallelism {max_parallelism}"
    )]
    ParallelismAboveMax {
        /// Name of the operator.
        operator: String,
        /// Its parallelism.
        parallelism: u32,
        /// The job's max parallelism.
        max_parallelism: u32,
    },
    /// The max parallelism is out of range.
    #[error("max parallelism {max_parallelism} is out of range (1..={limit})")]
    BadMaxParallelism {
        /// The value given.
        max_parallelism: u32,
        /// The largest value allowed.
        limit: u32,
    },
    /// An edge names a vertex that does not exist.
    #[error("edge {from} -> {to} refers to missing operator {missing}")]
    DanglingEdge {
        /// Upstream vertex of the edge.
        from: VertexId,
        /// Downstream vertex of the edge.
        to: VertexId,
        /// The id that does not exist.
        missing: VertexId,
    },
    /// Two vertices share an id, or ids are not dense.
    #[error("vertex at position {position} has id {id}; ids must be 0..n in order")]
    BadVertexId {
        /// Position in the vertex list.
        position: usize,
        /// The id found there.
        id: VertexId,
    },
    /// The graph has a cycle.
    #[error("the job graph has a cycle through operator '{operator}'")]
    Cycle {
        /// An operator on the cycle.
        operator: String,
    },
    /// A forward edge connects operators of different parallelism.
    #[error(
        "forward edge '{from}' (parallelism {from_parallelism}) -> '{to}' (parallelism {to_parallelism}) needs equal parallelism"
    )]
    ForwardParallelismMismatch {
        /// Upstream operator.
        from: String,
        /// Downstream operator.
        to: String,
        /// Upstream parallelism.
        from_parallelism: u32,
        /// Downstream parallelism.
        to_parallelism: u32,
    },
    /// A source has inputs, or a non-source operator has none.
    #[error("operator '{operator}': {problem}")]
    BadWiring {
        /// Name of the operator.
        operator: String,
        /// What is wrong with its inputs or outputs.
        problem: &'static str,
    },
}

/// Why a frame received from another process was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix announces more than any valid frame holds.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes (garbage length prefix?)")]
    TooLong {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The connection ended inside a frame.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the frame should have.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The bytes do not decode as the expected message.
    #[error("malformed {what}: {problem}")]
    Malformed {
        /// Which kind of frame.
        what: &'static str,
        /// The decoder's complaint.
        problem: String,
    },
}

/// An error and its causes on one line (`outer: cause: root cause`), each
/// said once even when an error already prints its source: for logs, API
/// answers, job status and the command line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
