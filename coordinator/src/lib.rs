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
//! - [`detector`]: the failure detector (pure): heartbeats and `now` in,
//!   lost workers out.
//! - [`lifecycle`]: the job lifecycle state machine, every allowed
//!   transition declared in one place (pure).
//! - [`scaling`]: running below the asked parallelism when slots are
//!   short, and back at full size when they return (pure decisions).
//! - [`scheduler`]: placement of subtasks in worker slots (pure).
//! - [`cluster`]: the shared state: workers and their slots, jobs and
//!   their running attempt, and the [`JobCatalog`] trait through which the
//!   binary's job registry validates submissions.
//! - [`job`]: a job's handle, record, attempt inbox and API status.
//! - [`supervisor`]: one thread per job: deploy an attempt, drive its
//!   checkpoints, collect the workers' ends, restart from the latest
//!   checkpoint under the restart strategy.
//! - [`rpc`]: the worker endpoint (framed JSON over TCP).
//! - [`api`]: the REST/JSON API for clients (axum).
//! - [`submission`]: accepting a job (validation, restore point, supervisor).
//! - [`server`]: [`Coordinator`], both endpoints on one runtime.
//! - [`error`]: [`CoordinatorError`], the one error type of this crate.
//!
//! `driver` uses `tracker` and `catalog`; `supervisor` uses `driver`,
//! `restart`, `lifecycle` and `scheduler` (through `cluster`); `rpc` and
//! `api` feed `cluster`.

#![warn(missing_docs)]

pub mod api;
pub mod catalog;
pub mod cluster;
pub mod detector;
pub mod driver;
pub mod error;
pub mod job;
pub mod lifecycle;
pub mod restart;
pub mod rpc;
pub mod scaling;
pub mod scheduler;
pub mod server;
pub mod submission;
pub mod supervisor;
pub mod tracker;

pub use catalog::{CheckpointCatalog, CheckpointEntry, CheckpointStatus, RetentionReport};
pub use cluster::{Cluster, JobCatalog};
pub use driver::{CheckpointDriver, CheckpointStats, DriverConfig};
pub use error::CoordinatorError;
pub use job::JobStatus;
pub use restart::{RestartDecision, RestartStrategy, RestartTracker};
pub use server::{Coordinator, CoordinatorConfig};
pub use tracker::{CheckpointConfig, CheckpointTracker, Decision};
