//! The error type of the coordinator crate.

use weir_protocol::Epoch;
use weir_state::StateError;

/// What went wrong in the control plane.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// Checkpoint storage failed.
    #[error("checkpoint storage")]
    Storage(#[from] StateError),
    /// A manifest could not be parsed.
    #[error("the manifest of checkpoint {epoch} of job '{job}' is corrupt")]
    CorruptManifest {
        /// The job.
        job: String,
        /// The checkpoint.
        epoch: Epoch,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest has a format version this build does not read.
    #[error("the manifest of checkpoint {epoch} has version {version}; this build reads version {supported}")]
    UnsupportedManifest {
        /// The checkpoint.
        epoch: Epoch,
        /// Its version.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// An endpoint could not be bound.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The coordinator would be reachable beyond this machine without a token.
    #[error("listening on {address} (beyond loopback) requires a shared token: pass --token or set WEIR_TOKEN")]
    TokenRequired {
        /// The address.
        address: String,
    },
    /// A checkpoint named by the user does not exist or is not complete.
    #[error("checkpoint {location} is not a complete checkpoint: {problem}")]
    NotRestorable {
        /// What the user named.
        location: String,
        /// Why it cannot be used.
        problem: String,
    },
}

pub use weir_protocol::error::chain;
