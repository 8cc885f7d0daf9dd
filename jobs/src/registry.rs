//! The job registry and job parameters.

use crate::error::JobError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;
use weir_operators::DEFAULT_MAX_PARALLELISM;
use weir_operators::{Data, Dataflow, JobBuilder, Stream};

/// The type of a job parameter, checked before the job is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A non-negative integer (`_` separators allowed: `1_000_000`).
    UInt,
    /// Free text.
    Text,
    /// A path to an existing file.
    File,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
}

impl ParamKind {
    fn expected(&self) -> String {
        match self {
            ParamKind::UInt => "a non-negative integer".into(),
            ParamKind::Text => "text".into(),
            ParamKind::File => "the path of an existing file".into(),
            ParamKind::Choice(words) => format!("one of {}", words.join(", ")),
        }
    }

    fn check(&self, value: &str) -> bool {
        match self {
            ParamKind::UInt => parse_uint(value).is_some(),
            ParamKind::Text => true,
            ParamKind::File => std::path::Path::new(value).is_file(),
            ParamKind::Choice(words) => words.contains(&value),
        }
    }
}

fn parse_uint(value: &str) -> Option<u64> {
    let digits: String = value.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One parameter of a job.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Its name, as in `--param name=value`.
    pub name: &'static str,
    /// Its type.
    pub kind: ParamKind,
    /// The value when not given; `None` makes it required.
    pub default: Option<&'static str>,
    /// What it is for.
    pub help: &'static str,
}

/// A job's parameters, checked against its [`ParamSpec`]s, defaults filled in.
#[derive(Debug, Clone)]
pub struct JobParams {
    values: BTreeMap<&'static str, String>,
}

impl JobParams {
    /// Checks `given` (name, value) pairs against `specs`.
    pub fn parse(
        job: &str,
        specs: &[ParamSpec],
        given: &[(String, String)],
    ) -> Result<Self, JobError> {
        let mut values = BTreeMap::new();
        for (name, value) in given {
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                return Err(JobError::UnknownParam {
                    job: job.into(),
                    param: name.clone(),
                    expected: specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                });
            };
            if !spec.kind.check(value) {
                return Err(JobError::MalformedParam {
                    job: job.into(),
                    param: name.clone(),
                    value: value.clone(),
                    expected: spec.kind.expected(),
                });
            }
            values.insert(spec.name, value.clone());
        }
        for spec in specs {
            if values.contains_key(spec.name) {
                continue;
            }
            match spec.default {
                Some(default) => {
                    values.insert(spec.name, default.to_owned());
                }
                None => {
                    return Err(JobError::MissingParam {
                        job: job.into(),
                        param: spec.name.into(),
                        help: spec.help.into(),
                    })
                }
            }
        }
        Ok(Self { values })
    }

    /// Splits `key=value` arguments into pairs.
    pub fn split_pairs(arguments: &[String]) -> Result<Vec<(String, String)>, JobError> {
        arguments
            .iter()
            .map(|arg| match arg.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
                _ => Err(JobError::NotKeyValue {
                    argument: arg.clone(),
                }),
            })
            .collect()
    }

    /// An integer parameter (validated by [`parse`](Self::parse); 0 if absent).
    pub fn uint(&self, name: &str) -> u64 {
        self.values
            .get(name)
            .and_then(|v| parse_uint(v))
            .unwrap_or(0)
    }

    /// A text, file or choice parameter ("" if absent).
    pub fn text(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    /// Every parameter with its value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

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
    pub fn sink<T: Data + Display>(&self, stream: Stream<T>) {
        match &self.output {
            Some(dir) => stream.write_to_dir(dir.clone()),
            None => stream.print(),
        };
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

    /// Weir's reference jobs: keyed-sum, wordcount, nexmark-q5, nexmark-q7.
    pub fn builtin() -> Self {
        let mut registry = Self::new();
        registry.register(crate::keyed_sum::DEFINITION);
        registry.register(crate::wordcount::DEFINITION);
        registry.register(crate::nexmark::Q5);
        registry.register(crate::nexmark::Q7);
        registry
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

    fn pairs(args: &[&str]) -> Vec<(String, String)> {
        JobParams::split_pairs(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn unknown_jobs_and_parameters_are_named() {
        let registry = JobRegistry::builtin();
        let err = registry
            .build("nope", &[], &JobOptions::default())
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unknown job 'nope' (available: keyed-sum"));
        let err = registry
            .build("keyed-sum", &pairs(&["event=5"]), &JobOptions::default())
            .unwrap_err();
        assert!(matches!(err, JobError::UnknownParam { .. }), "{err}");
    }

    #[test]
    fn malformed_and_missing_parameters_are_errors() {
        let registry = JobRegistry::builtin();
        let err = registry
            .build("keyed-sum", &pairs(&["events=12x"]), &JobOptions::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter 'events' of job 'keyed-sum' must be a non-negative integer, got '12x'"
        );
        let err = registry
            .build(
                "keyed-sum",
                &pairs(&["emit=sometimes"]),
                &JobOptions::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("one of final, updates"), "{err}");
        let err = registry
            .build("wordcount", &[], &JobOptions::default())
            .unwrap_err();
        assert!(matches!(err, JobError::MissingParam { .. }), "{err}");
        assert!(JobParams::split_pairs(&["novalue".into()]).is_err());
    }

    #[test]
    fn defaults_fill_in_and_underscores_are_allowed() {
        let params = JobParams::parse(
            "keyed-sum",
            crate::keyed_sum::DEFINITION.params,
            &pairs(&["events=1_000"]),
        )
        .unwrap();
        assert_eq!(params.uint("events"), 1000);
        assert_eq!(params.text("emit"), "final");
    }
}
