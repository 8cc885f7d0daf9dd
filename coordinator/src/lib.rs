//! The Weir control plane: checkpoint coordination, the choice of restore
//! point, and the restart strategy. It sees jobs only as a
//! [`JobGraph`](weir_protocol::JobGraph) and talks to workers through
//! protocol messages; it never imports the runtime.
//!
//! # Layout
//!
//! - [`tracker`]: [`CheckpointTracker`], the pure decisions of when to
//!   trigger, complete and abort checkpoints, and when failed checkpoints
//!   fail the job over (a failed final checkpoint is triggered again).
//! - [`history`]: what a job's checkpoints amounted to: figures, the recent
//!   history with causes, and an outage of checkpoint storage while it lasts.
//! - [`driver`]: [`CheckpointDriver`], which runs the tracker against a job's
//!   event stream and checkpoint storage (manifest, commit marker,
//!   retention, cleanup).
//! - [`catalog`]: [`CheckpointCatalog`], a job's checkpoints in storage:
//!   listing, manifests, verification, and the latest restorable one.
//! - [`savepoint`]: savepoints: taken through the job's checkpoint driver,
//!   copied self-contained under `{dir}/{job}/chk-…`, kept until deleted.
//! - [`restore_check`]: whether saved state fits a job's graph (matched by
//!   operator uid) before a restoring job is accepted (pure).
//! - [`restart`]: [`RestartStrategy`], exponential backoff with reset and a
//!   maximum number of attempts (pure).
//! - [`detector`]: the failure detector (pure): heartbeats and `now` in,
//!   lost workers out.
//! - [`lifecycle`]: the job lifecycle state machine, every allowed
//!   transition declared in one place (pure).
//! - [`scaling`]: running below the asked parallelism when slots are
//!   short, and back at full size when they return (pure decisions).
//! - [`scheduler`]: placement of subtasks in worker slots: after a loss the
//!   survivors keep theirs, and lost slots go where their replicas are (pure).
//! - [`control`]: what outlives a coordinator process: the
//!   [`ControlStore`](control::ControlStore) and
//!   [`ControlPlane`](control::ControlPlane) traits (election, fenced
//!   writes) with their memory, standalone-directory and etcd
//!   implementations, and the pure lease clock that decides stepping down.
//! - [`adoption`]: whether a new leader adopts the attempt the workers kept
//!   running, or restarts it (pure).
//! - [`cluster`]: one leader term's state: workers and their slots, jobs
//!   and their running attempt, the fenced store, and the [`JobCatalog`]
//!   trait through which the binary's job registry validates submissions.
//! - [`job`]: a job's handle, record (in memory and in the control store),
//!   attempt inbox and API status.
//! - [`supervisor`]: one thread per job: deploy or adopt an attempt, drive
//!   its checkpoints, collect the workers' ends, restart from the latest
//!   checkpoint under the restart strategy.
//! - [`session`]: a term begins: build the cluster from the control store
//!   and resume every unfinished job.
//! - [`rpc`]: the worker endpoint (framed JSON over TCP).
//! - [`api`]: the REST/JSON API for clients (axum), standbys redirecting.
//! - [`submission`]: accepting a job (validation, restore point, record,
//!   supervisor).
//! - [`server`]: [`Coordinator`], both endpoints on one runtime, and the
//!   leadership loop (campaign, lead, step down).
//! - [`metrics`]: [`CoordinatorMetrics`](metrics::CoordinatorMetrics), the
//!   `/metrics` figures: read from the jobs' records when scraped, and
//!   histograms the driver and the failure detection observe.
//! - [`rates`]: per-operator rates and busy/back-pressured shares from
//!   the task figures workers report (pure).
//! - [`crash`]: crash hooks that tests arm to abort at dangerous moments.
//! - [`error`]: [`CoordinatorError`], the one error type of this crate.
//!
//! `driver` uses `tracker`, `catalog` and (through its fence) the job's
//! control record; `supervisor` uses `driver`, `restart`, `lifecycle`,
//! `adoption` and `scheduler` (through `cluster`); `session` builds
//! `cluster` from `control`; `rpc` and `api` feed the cluster of the
//! current term through `server`'s node.

#![warn(missing_docs)]

pub mod adoption;
pub mod api;
pub mod catalog;
pub mod cluster;
pub mod control;
pub mod crash;
pub mod detector;
pub mod driver;
pub mod error;
pub mod history;
pub mod job;
pub mod lifecycle;
pub mod metrics;
pub mod rates;
pub mod restart;
pub mod restore_check;
pub mod rpc;
pub mod savepoint;
pub mod scaling;
pub mod scheduler;
pub mod server;
pub mod session;
pub mod submission;
pub mod supervisor;
pub mod tracker;

pub use catalog::{CheckpointCatalog, CheckpointEntry, CheckpointStatus, RetentionReport};
pub use cluster::{Cluster, JobCatalog};
pub use control::{dir::DirPlane, etcd::EtcdPlane, memory::MemoryPlane, ControlPlane};
pub use driver::{CheckpointDriver, CheckpointStats, DriverConfig};
pub use error::CoordinatorError;
pub use job::JobStatus;
pub use restart::{RestartDecision, RestartStrategy, RestartTracker};
pub use server::{Coordinator, CoordinatorConfig, Node};
pub use tracker::{CheckpointConfig, CheckpointTracker, Decision};
