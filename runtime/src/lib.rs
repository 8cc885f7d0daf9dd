//! The Weir runtime: executes a [`Dataflow`](weir_operators::Dataflow).
//!
//! # Layout
//!
//! - [`engine`]: [`LocalEngine`], which instantiates every subtask of a
//!   dataflow on its own thread, wires them with channels, waits for the job
//!   to end and reports it; the first failure cancels the rest.
//! - [`wiring`]: the plan of every local subtask of a deployment and the
//!   channels of every edge, local or through `exchange`.
//! - [`task_loop`]: the loop each subtask thread runs: receive, process,
//!   merge watermarks, fire processing-time timers, flush when idle.
//! - [`channels`]: bounded crossbeam channels as the operator API's
//!   [`OutputChannel`](weir_operators::output::OutputChannel); a full
//!   channel blocks its producer (back-pressure).
//! - [`exchange`]: data exchange between workers: one TCP connection per
//!   worker pair, rkyv frames, credit-based flow control, attempt fencing.
//! - [`aligner`]: [`BarrierAligner`](aligner::BarrierAligner), the pure
//!   decision of when an operator has a checkpoint's barrier on every input.
//! - [`snapshots`]: writes task snapshots to checkpoint storage off the task
//!   threads and sends the acks.
//! - [`replicas`]: the worker's local copies of checkpoint files (its own
//!   and those peers push to it), the first two tiers of replicated state.
//! - [`restore`]: which state each subtask of a new deployment resumes from.
//! - [`watermarks`]: [`InputWatermarks`], the pure merge of per-channel
//!   watermarks into an operator's watermark.
//! - [`worker`]: [`run_worker`](worker::run_worker), a worker process:
//!   finds the leader coordinator, registers, heartbeats, and runs each
//!   deployment it is given with the engine, wired to its peers through
//!   `exchange`; it keeps its deployments through a leaderless window and
//!   reports them to the next leader, which adopts them.
//! - [`error`]: [`RuntimeError`], the one error type of this crate.
//!
//! `engine` builds `channels`, loads `restore`d state, starts `snapshots`
//! and runs `task_loop` on each thread; `task_loop` uses `watermarks` and
//! `aligner`.

#![warn(missing_docs)]

pub mod aligner;
pub mod channels;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod replicas;
pub mod restore;
pub mod snapshots;
pub mod task_loop;
pub mod watermarks;
pub mod wiring;
pub mod worker;

pub use engine::{
    CancelToken, CheckpointRun, EngineConfig, JobReport, LocalEngine, RestoreSource, WorkerPart,
};
pub use error::{RuntimeError, TaskFailure};
pub use watermarks::InputWatermarks;
