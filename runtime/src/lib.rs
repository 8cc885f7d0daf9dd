//! The Weir runtime: executes a [`Dataflow`](weir_operators::Dataflow).
//!
//! # Layout
//!
//! - [`cancel`]: [`CancelToken`], the leaf everything waits on besides its
//!   own channels: a cancelled token disconnects a channel threads select
//!   on and wakes registered condition variables.
//! - [`task`]: what runs on each subtask thread: the source and operator
//!   loops, with the pure [`aligner`](task::aligner) (when a barrier is on
//!   every input) and [`watermarks`](task::watermarks) (merging
//!   per-channel watermarks, idle channels left out).
//! - [`local`]: bounded in-process channels, and the wiring of a
//!   deployment's subtasks and edges (local or remote).
//! - [`net`]: the data exchange between workers: one TCP connection per
//!   worker pair, records frames and rkyv frames, credit-based flow
//!   control, attempt fencing, and file pushes to a peer.
//! - [`checkpoint`]: snapshots written off the task threads, the local
//!   and peer copies of checkpoint files and the replication service that
//!   makes them, and which state a restored subtask resumes from.
//! - [`engine`]: [`LocalEngine`], which restores state, wires the
//!   subtasks, runs each on its own thread, routes the coordinator's
//!   commands to them and reports the run; the first failure cancels it.
//! - [`worker`]: [`run_worker`](worker::run_worker), a worker process:
//!   finds the leader coordinator, registers, heartbeats, and runs each
//!   deployment it is given with the engine, wired to its peers through
//!   `net`; it keeps its deployments through a leaderless window and
//!   reports them to the next leader, which adopts them.
//! - [`metrics`]: [`WorkerMetrics`](metrics::WorkerMetrics), a worker's
//!   figures in the Prometheus text format, read from the tasks' counters
//!   when scraped.
//! - [`error`]: [`RuntimeError`], the one error type of this crate.
//!
//! Imports point one way: `worker` → `engine` → `local`, `task`,
//! `checkpoint` → `net` → `cancel`, `error`; `metrics` reads `net`'s
//! credit gates. The exchange knows nothing of
//! checkpoints: replication pushes files through it, and pushed files
//! reach the replicas through its `FileInbox`.

#![warn(missing_docs)]

pub mod cancel;
pub mod checkpoint;
pub mod engine;
pub mod error;
pub mod local;
pub mod metrics;
pub mod net;
pub mod task;
pub mod worker;

pub use cancel::CancelToken;
pub use engine::config::{CheckpointRun, EngineConfig, JobReport, OnRunning, RestoreSource};
pub use engine::{LocalEngine, WorkerPart};
pub use error::{RuntimeError, TaskFailure};
pub use task::watermarks::InputWatermarks;
