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
    #[error("the manifest of checkpoint {epoch} has version {version}; this build reads versions up to {supported}")]
    UnsupportedManifest {
        /// The checkpoint.
        epoch: Epoch,
        /// Its version.
        version: u32,
        /// The newest version this build reads.
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
    /// A control-store write was refused: a later leader's term began, so
    /// this coordinator no longer leads and must step down.
    #[error("refused {what}: term {term} is over{}", newer.map(|n| format!(" (term {n} began)")).unwrap_or_else(|| " (another coordinator leads, or the lease expired)".into()))]
    Fenced {
        /// This store's term.
        term: u64,
        /// The newer term, when known.
        newer: Option<u64>,
        /// What was refused.
        what: String,
    },
    /// The control store could not be reached or failed.
    #[error("control store ({store}): {op} failed")]
    ControlStore {
        /// Which store.
        store: String,
        /// What was being done.
        op: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record in the control store cannot be read.
    #[error("control record {path} is corrupt")]
    CorruptControlRecord {
        /// Where it is.
        path: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// `--ha` (or its settings) is malformed.
    #[error("bad --ha setting '{url}': {problem}")]
    BadHaUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        problem: String,
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
