//! The Weir runtime: executes a [`Dataflow`](weir_operators::Dataflow).
//!
//! # Layout
//!
//! - [`engine`]: [`LocalEngine`], which instantiates every subtask of a
//!   dataflow on its own thread, wires them with channels, waits for the job
//!   to end and reports it; the first failure cancels the rest.
//! - [`task_loop`]: the loop each subtask thread runs: receive, process,
//!   merge watermarks, fire processing-time timers, flush when idle.
//! - [`channels`]: bounded crossbeam channels as the operator API's
//!   [`OutputChannel`](weir_operators::output::OutputChannel); a full
//!   channel blocks its producer (back-pressure).
//! - [`watermarks`]: [`InputWatermarks`], the pure merge of per-channel
//!   watermarks into an operator's watermark.
//! - [`error`]: [`RuntimeError`], the one error type of this crate.
//!
//! `engine` builds `channels` and runs `task_loop` on each thread;
//! `task_loop` uses `watermarks`.

#![warn(missing_docs)]

pub mod channels;
pub mod engine;
pub mod error;
pub mod task_loop;
pub mod watermarks;

pub use engine::{CancelToken, EngineConfig, JobReport, LocalEngine};
pub use error::{RuntimeError, TaskFailure};
pub use watermarks::InputWatermarks;
