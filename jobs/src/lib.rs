//! Weir's reference jobs, registered by name so that every process of a job
//! can rebuild the same dataflow from its name and parameters.
//!
//! # Layout
//!
//! - [`registry`]: [`JobRegistry`], [`JobDefinition`] and typed, validated
//!   job parameters ([`ParamSpec`], [`JobParams`]).
//! - [`keyed_sum`]: `keyed-sum` (W1), a running count and sum per key.
//! - [`wordcount`]: `wordcount` over a text file.
//! - [`nexmark`]: Nexmark `q5` (hot items, sliding windows) and `q7`
//!   (highest bid per tumbling window).
//! - [`error`]: [`JobError`], the one error type of this crate.
//!
//! Each job module exports a [`JobDefinition`]; `registry` collects them.

#![warn(missing_docs)]

pub mod error;
pub mod keyed_sum;
pub mod nexmark;
pub mod registry;
pub mod wordcount;

pub use error::JobError;
pub use registry::{
    JobContext, JobDefinition, JobOptions, JobParams, JobRegistry, ParamKind, ParamSpec,
};
