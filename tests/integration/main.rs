//! End-to-end tests of the operator API on the local engine, and of the
//! `weir` binary. One test binary (see `mod` list) keeps link time down.

mod backpressure;
mod chaos;
mod checkpoints_cli;
mod cli;
mod cluster;
mod connectors;
mod dashboard;
mod failover;
mod failures;
mod ha;
mod harness;
mod kafka;
mod kafka_sink;
mod metrics;
mod partition;
mod postgres;
mod recovery;
mod reference_jobs;
mod regional;
mod s3;
mod savepoints;
mod scaling;
mod semantics;
mod sources;
mod storage_outage;

use weir::operators::JobBuilder;
use weir::runtime::{CancelToken, EngineConfig, JobReport, LocalEngine, RuntimeError};

/// Runs a job on a fresh local engine with `batch_size` records per batch.
pub fn run_job(job: JobBuilder, batch_size: usize) -> Result<JobReport, RuntimeError> {
    let dataflow = job.build().expect("job builds");
    let engine = LocalEngine::new(EngineConfig {
        batch_size,
        ..EngineConfig::default()
    });
    engine.run(&dataflow, &CancelToken::new())
}
