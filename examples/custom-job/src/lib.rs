//! A template for your own Weir job: copy this crate, rename it, and write
//! your jobs next to [`spend_report`].
//!
//! # Layout
//!
//! - [`spend_report`]: the `spend-report` job: a source, a keyed process
//!   function with value and map state and a timer, a window, a sink.
//! - [`registry`]: every job of this crate, by name. The binary
//!   (`src/main.rs`) hands it to [`weir::cli::main`], which gives it the
//!   whole `weir` command line: `run`, `coordinator`, `worker`, `submit`,
//!   `jobs` and `checkpoints` (which decodes this crate's state types).

pub mod spend_report;

use weir::job::JobRegistry;

/// The jobs this binary runs. Every process of a cluster (coordinator and
/// workers) must be the same build, so that each builds the same graph.
pub fn registry() -> JobRegistry {
    let mut registry = JobRegistry::new();
    registry.register(spend_report::DEFINITION);
    registry
}
