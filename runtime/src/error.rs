//! The error type of the runtime crate.

use weir_operators::OperatorError;
use weir_protocol::{Epoch, ProtocolError};
use weir_state::StateError;

/// Why a subtask stopped before finishing its input.
#[derive(Debug, thiserror::Error)]
pub enum TaskFailure {
    /// The operator returned an error.
    #[error(transparent)]
    Error(#[from] OperatorError),
    /// The operator panicked.
    #[error("panicked: {message}")]
    Panic {
        /// The panic's message.
        message: String,
    },
}

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A subtask failed; the job was cancelled.
    #[error("job '{job}' failed: operator '{operator}' subtask {subtask} failed")]
    TaskFailed {
        /// Name of the job.
        job: String,
        /// Name of the failed operator.
        operator: String,
        /// Index of the failed subtask.
        subtask: u32,
        /// What went wrong in it.
        #[source]
        cause: TaskFailure,
    },
    /// The job was cancelled before it finished.
    #[error("job '{job}' was cancelled")]
    Cancelled {
        /// Name of the job.
        job: String,
    },
    /// The job graph cannot run.
    #[error("job '{job}' has an invalid graph")]
    Graph {
        /// Name of the job.
        job: String,
        /// What is wrong with it.
        #[source]
        source: ProtocolError,
    },
    /// A thread could not be started.
    #[error("could not start a thread for operator '{operator}' subtask {subtask}")]
    Spawn {
        /// Name of the operator.
        operator: String,
        /// Index of the subtask.
        subtask: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint's state could not be read back.
    #[error("cannot restore checkpoint {epoch}")]
    Restore {
        /// The checkpoint.
        epoch: Epoch,
        /// What failed.
        #[source]
        source: StateError,
    },
    /// A socket could not be set up.
    #[error("{action} {address}")]
    Network {
        /// What was being done.
        action: &'static str,
        /// The address involved.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A new spare could not copy a checkpoint file into its replicas.
    #[error("catching up on file {path} of job {job}")]
    CatchUp {
        /// The job's id.
        job: String,
        /// The file, relative to the job's checkpoint root.
        path: String,
        /// What failed: reading it from storage, or writing the copy.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local file or directory could not be set up.
    #[error("{action} {path}")]
    LocalIo {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A peer worker of a deployment could not be reached.
    #[error("cannot reach the data exchange of worker w{peer} at {address}")]
    PeerUnreachable {
        /// The peer's id.
        peer: u32,
        /// Its address.
        address: String,
    },
    /// A message is too large to send as one frame.
    #[error("cannot send {what}")]
    Frame {
        /// The message.
        what: &'static str,
        /// Why it cannot be framed.
        #[source]
        source: weir_protocol::error::WireError,
    },
    /// The coordinator refused this worker or a request of it.
    #[error("the coordinator refused: {reason}")]
    Rejected {
        /// The coordinator's reason.
        reason: String,
    },
    /// No coordinator could be found that leads.
    #[error("no leader coordinator: {problem}")]
    NoLeader {
        /// Why none was found.
        problem: String,
    },
    /// The control connection to the coordinator failed.
    #[error("lost the coordinator: {problem}")]
    CoordinatorLost {
        /// What happened.
        problem: String,
    },
    /// The job's dataflow could not be built from its spec.
    #[error("building job '{job}'")]
    Build {
        /// The job's name.
        job: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The job cannot be deployed as asked.
    #[error("job '{job}' cannot be deployed: {problem}")]
    IncompatibleGraph {
        /// Name of the job.
        job: String,
        /// Why not.
        problem: String,
    },
    /// A checkpoint does not fit the job.
    #[error("checkpoint {epoch} does not fit the job: {problem}")]
    IncompatibleCheckpoint {
        /// The checkpoint.
        epoch: Epoch,
        /// Why not.
        problem: String,
    },
}
