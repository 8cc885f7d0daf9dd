//! Weir: fault-tolerant stream processing.
//!
//! This crate is the one users depend on. It re-exports the operator API
//! (write a job), the job API (register jobs by name, with typed
//! parameters), the local engine (run a dataflow in this process), and the
//! command-line interface: a user's own binary registers its jobs and
//! calls [`cli::main`] to get the whole `weir` command line for them
//! (`examples/custom-job` is a template).
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
//! - [`metrics_endpoint`]: a worker's `/metrics` over HTTP.
//! - [`embedded`]: the embedded cluster of `weir run`: a coordinator (its
//!   control state in memory) and a worker in one process.
//! - [`testing`]: a cluster of real processes of a binary (coordinator and
//!   workers on loopback), for a job crate's own tests.
//! - Re-exports: [`job`] (jobs as a library: registry, definitions, typed
//!   parameters), [`operators`] (and its [`prelude`]), [`connectors`]
//!   (Kafka), [`jobs`] (Weir's reference jobs), [`runtime`], [`state`],
//!   [`protocol`].

#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod cluster;
pub mod embedded;
pub mod metrics_endpoint;
pub mod testing;

pub use weir_connectors as connectors;
pub use weir_coordinator as coordinator;
pub use weir_jobs as jobs;
pub use weir_operators as operators;
pub use weir_operators::job;
pub use weir_operators::prelude;
pub use weir_protocol as protocol;
pub use weir_runtime as runtime;
pub use weir_state as state;
