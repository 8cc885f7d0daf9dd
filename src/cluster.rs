//! The glue between the binary's job registry and the distributed
//! runtime: the coordinator validates submissions through
//! [`RegistryCatalog`], and workers build dataflows with
//! [`registry_builder`].

use crate::cli::error_chain;
use std::path::PathBuf;
use std::sync::Arc;
use weir_coordinator::JobCatalog;
use weir_operators::job::{JobOptions, JobRegistry};
use weir_operators::Dataflow;
use weir_protocol::{JobGraph, JobSpec};
use weir_runtime::worker::DataflowBuilder;

/// The job registry as the coordinator sees it.
pub struct RegistryCatalog(pub JobRegistry);

fn build(
    registry: &JobRegistry,
    spec: &JobSpec,
) -> Result<Dataflow, weir_operators::job::JobError> {
    registry.build(
        &spec.job,
        &spec.params,
        &JobOptions {
            parallelism: spec.parallelism,
            max_parallelism: spec.max_parallelism,
            output: spec.output.as_ref().map(PathBuf::from),
        },
    )
}

impl JobCatalog for RegistryCatalog {
    fn graph(&self, spec: &JobSpec) -> Result<JobGraph, String> {
        build(&self.0, spec)
            .map(|dataflow| dataflow.graph().clone())
            .map_err(|error| error_chain(&error))
    }
}

/// Builds dataflows from specs with `registry`, for workers.
pub fn registry_builder(registry: JobRegistry) -> DataflowBuilder {
    Arc::new(move |spec: &JobSpec| {
        build(&registry, spec).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    })
}
