//! The Weir control plane: checkpoint coordination, the choice of restore
//! point, and the restart strategy. It sees jobs only as a
//! [`JobGraph`](weir_protocol::JobGraph) and talks to workers through
//! protocol messages; it never imports the runtime.
//!
//! # Layout
//!
//! - [`tracker`]: [`CheckpointTracker`], the pure decisions of when to
//!   trigger, complete and abort checkpoints.
//! - [`driver`]: [`CheckpointDriver`], which runs the tracker against a job's
//!   event stream and checkpoint storage (manifest, commit marker,
//!   retention, cleanup).
//! - [`catalog`]: [`CheckpointCatalog`], a job's checkpoints in storage:
//!   listing, manifests, verification, and the latest restorable one.
//! - [`restart`]: [`RestartStrategy`], exponential backoff with reset and a
//!   maximum number of attempts (pure).
//! - [`error`]: [`CoordinatorError`], the one error type of this crate.
//!
//! `driver` uses `tracker` and `catalog`; `restart` stands alone.

#![warn(missing_docs)]

pub mod catalog;
pub mod driver;
pub mod error;
pub mod restart;
pub mod tracker;

pub use catalog::{CheckpointCatalog, CheckpointEntry, CheckpointStatus, RetentionReport};
pub use driver::{CheckpointDriver, CheckpointStats, DriverConfig};
pub use error::CoordinatorError;
pub use restart::{RestartDecision, RestartStrategy, RestartTracker};
pub use tracker::{CheckpointConfig, CheckpointTracker, Decision};
