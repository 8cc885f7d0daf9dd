//! Weir: fault-tolerant stream processing.
//!
//! This crate is the one users depend on. It re-exports the operator API
//! (write a job), the reference jobs and their registry (run a job by name),
//! the local engine (run a dataflow in this process), and the command-line
//! interface, which a user's own binary can call with its own registry.
//!
//! ```
//! use weir::prelude::*;
//! use weir::runtime::{CancelToken, LocalEngine};
//!
//! let job = JobBuilder::new("double").with_parallelism(2);
//! job.source(Generator::new(10_000, 100, 1)).map(|e| e.value * 2).discard();
//! let report = LocalEngine::default().run(&job.build()?, &CancelToken::new())?;
//! assert_eq!(report.records_out, 10_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - [`cli`]: the `weir` command line: argument definitions and one module
//!   per subcommand (`run`, `coordinator`, `worker`, `submit`, `jobs`,
//!   `checkpoints`).
//! - [`client`]: the coordinators' REST API from the command line: takes a
//!   list of coordinators and follows the leader.
//! - [`cluster`]: the job registry as the coordinator and workers use it.
//! - [`embedded`]: the embedded cluster of `weir run`: a coordinator (its
//!   control state in memory) and a worker in one process.
//! - Re-exports: [`operators`] (and its [`prelude`]), [`jobs`], [`runtime`],
//!   [`state`], [`protocol`].

#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod cluster;
pub mod embedded;

pub use weir_coordinator as coordinator;
pub use weir_jobs as jobs;
pub use weir_operators as operators;
pub use weir_operators::prelude;
pub use weir_protocol as protocol;
pub use weir_runtime as runtime;
pub use weir_state as state;
