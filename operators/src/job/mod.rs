//! Jobs as a library: what a binary registers so that every process of a
//! cluster can rebuild the same dataflow from a job's name and parameters.
//!
//! A job is a [`JobDefinition`]: a name, its typed parameters
//! ([`ParamSpec`]) and a function that builds its dataflow from a
//! [`JobContext`]. A binary collects its jobs in a [`JobRegistry`] and
//! hands it to the `weir` command line (`weir::cli::main`), which gives
//! it `run`, `coordinator`, `worker`, `submit`, `jobs` and `checkpoints`.
//!
//! - this module: [`JobDefinition`], [`JobRegistry`], [`JobContext`] and
//!   [`JobOptions`].
//! - [`params`]: typed, validated parameters ([`ParamSpec`], [`ParamKind`],
//!   [`JobParams`]).

pub mod params;

pub use crate::error::JobError;
pub use params::{parse_duration, JobParams, ParamKind, ParamSpec};

use crate::builder::SinkVertex;
use crate::{Data, Dataflow, JobBuilder, Stream, DEFAULT_MAX_PARALLELISM};
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::path::PathBuf;

/// How to run a job, whatever the job: the options `weir run` and
/// `weir submit` share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    /// Parallelism of every operator.
    pub parallelism: u32,
    /// Number of key groups (the highest parallelism keyed state can be
    /// rescaled to).
    pub max_parallelism: u32,
    /// Where file output goes; `None` prints to standard output.
    pub output: Option<PathBuf>,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            output: None,
        }
    }
}

/// What a job builder receives.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's registered name.
    pub job: &'static str,
    /// Parallelism of every operator.
    pub parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Where file output goes; `None` prints to standard output.
    pub output: Option<PathBuf>,
    /// Checked parameters.
    pub params: JobParams,
}

impl JobContext {
    /// A [`JobBuilder`] named after the job, with the context's parallelism
    /// and max parallelism.
    pub fn builder(&self) -> JobBuilder {
        JobBuilder::new(self.job)
            .with_parallelism(self.parallelism)
            .with_max_parallelism(self.max_parallelism)
    }

    /// Ends `stream` in the job's output: files under `--output` if given,
    /// standard output otherwise.
    pub fn sink<T: Data + Display>(&self, stream: Stream<T>) -> SinkVertex {
        match &self.output {
            Some(dir) => stream.write_to_dir(dir.clone()),
            None => stream.print(),
        }
    }

    /// An error about this job's parameters.
    pub fn invalid(&self, problem: impl Into<String>) -> JobError {
        JobError::Invalid {
            job: self.job.into(),
            problem: problem.into(),
        }
    }

    /// Builds `builder`, naming this job in the error.
    pub fn finish(&self, builder: JobBuilder) -> Result<Dataflow, JobError> {
        builder.build().map_err(|source| JobError::Build {
            job: self.job.into(),
            source,
        })
    }
}

/// A job that can be run by name.
#[derive(Debug, Clone, Copy)]
pub struct JobDefinition {
    /// The name to run it by.
    pub name: &'static str,
    /// One line on what it computes.
    pub description: &'static str,
    /// Its parameters.
    pub params: &'static [ParamSpec],
    /// Builds its dataflow.
    pub build: fn(&JobContext) -> Result<Dataflow, JobError>,
}

/// The jobs a binary can run, by name.
#[derive(Debug, Clone, Default)]
pub struct JobRegistry {
    jobs: Vec<JobDefinition>,
}

impl JobRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job; a job of the same name is replaced.
    pub fn register(&mut self, job: JobDefinition) {
        self.jobs.retain(|j| j.name != job.name);
        self.jobs.push(job);
    }

    /// Every registered job, in registration order.
    pub fn jobs(&self) -> &[JobDefinition] {
        &self.jobs
    }

    /// The job named `name`.
    pub fn get(&self, name: &str) -> Result<&JobDefinition, JobError> {
        self.jobs
            .iter()
            .find(|j| j.name == name)
            .ok_or_else(|| JobError::UnknownJob {
                name: name.into(),
                available: self
                    .jobs
                    .iter()
                    .map(|j| j.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Checks parameters and builds the dataflow of job `name`.
    pub fn build(
        &self,
        name: &str,
        params: &[(String, String)],
        options: &JobOptions,
    ) -> Result<Dataflow, JobError> {
        let job = self.get(name)?;
        if options.parallelism == 0 {
            return Err(JobError::Invalid {
                job: job.name.into(),
                problem: "parallelism must be at least 1".into(),
            });
        }
        let context = JobContext {
            job: job.name,
            parallelism: options.parallelism,
            max_parallelism: options.max_parallelism,
            output: options.output.clone(),
            params: JobParams::parse(job.name, job.params, params)?,
        };
        (job.build)(&context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::FromElements;

    fn build_numbers(ctx: &JobContext) -> Result<Dataflow, JobError> {
        let job = ctx.builder();
        job.source(FromElements::new((0..ctx.params.uint("n")).collect()))
            .discard();
        ctx.finish(job)
    }

    const NUMBERS: JobDefinition = JobDefinition {
        name: "numbers",
        description: "counts to n",
        params: &[ParamSpec {
            name: "n",
            kind: ParamKind::UInt,
            default: None,
            help: "how far",
        }],
        build: build_numbers,
    };

    #[test]
    fn registered_jobs_build_by_name_and_unknown_ones_are_named() {
        let mut registry = JobRegistry::new();
        registry.register(NUMBERS);
        let pairs = vec![("n".to_owned(), "5".to_owned())];
        let dataflow = registry
            .build("numbers", &pairs, &JobOptions::default())
            .unwrap();
        assert_eq!(dataflow.graph().name, "numbers");
        let err = registry
            .build("nope", &[], &JobOptions::default())
            .unwrap_err();
        assert_eq!(err.to_string(), "unknown job 'nope' (available: numbers)");
        let err = registry
            .build("numbers", &[], &JobOptions::default())
            .unwrap_err();
        assert!(matches!(err, JobError::MissingParam { .. }), "{err}");
        let zero = JobOptions {
            parallelism: 0,
            ..JobOptions::default()
        };
        assert!(registry.build("numbers", &pairs, &zero).is_err());
    }
}
