//! Weir's reference jobs: the benchmarks and examples every `weir` binary
//! can run by name. They are written against the same job API a user's own
//! crate uses ([`weir_operators::job`]); [`registry`] collects them.
//!
//! # Layout
//!
//! - [`keyed_sum`]: `keyed-sum` (W1), a running count and sum per key.
//! - [`kafka`]: `kafka-keyed-sum`, the same over `key,value` lines from a
//!   Kafka topic into another, exactly once; `kafka-to-postgres`, into a
//!   PostgreSQL table; `nexmark-to-kafka`, the
//!   Nexmark events into a topic the Nexmark queries can read; the Kafka
//!   parameters every Kafka job shares.
//! - [`wordcount`]: `wordcount` over a text file.
//! - [`nexmark`]: Nexmark `q5` (hot items, sliding windows) and `q7`
//!   (highest bid per tumbling window).
//! - [`chains`]: `two-chains`, two unconnected pipelines in one job (a
//!   graph of many pipelined regions: regional failover).
//!
//! Each job module exports a [`JobDefinition`](weir_operators::job::JobDefinition).

#![warn(missing_docs)]

pub mod chains;
pub mod kafka;
pub mod keyed_sum;
pub mod nexmark;
pub mod wordcount;

use weir_operators::job::JobRegistry;

/// Weir's reference jobs: keyed-sum, wordcount, nexmark-q5, nexmark-q7,
/// kafka-keyed-sum, kafka-to-postgres, nexmark-to-kafka, two-chains.
pub fn registry() -> JobRegistry {
    let mut registry = JobRegistry::new();
    registry.register(keyed_sum::DEFINITION);
    registry.register(wordcount::DEFINITION);
    registry.register(nexmark::Q5);
    registry.register(nexmark::Q7);
    registry.register(kafka::KEYED_SUM);
    registry.register(kafka::TO_POSTGRES);
    registry.register(kafka::NEXMARK_TO_KAFKA);
    registry.register(chains::DEFINITION);
    registry
}

#[cfg(test)]
mod tests {
    use super::registry;
    use weir_operators::job::{JobError, JobOptions, JobParams};

    fn pairs(args: &[&str]) -> Vec<(String, String)> {
        JobParams::split_pairs(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn reference_jobs_check_their_parameters() {
        let registry = registry();
        let err = registry
            .build("nope", &[], &JobOptions::default())
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unknown job 'nope' (available: keyed-sum"));
        let err = registry
            .build("keyed-sum", &pairs(&["events=12x"]), &JobOptions::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter 'events' of job 'keyed-sum' must be a non-negative integer, got '12x'"
        );
        let err = registry
            .build("wordcount", &[], &JobOptions::default())
            .unwrap_err();
        assert!(matches!(err, JobError::MissingParam { .. }), "{err}");
        assert!(registry
            .build(
                "keyed-sum",
                &pairs(&["events=1_000"]),
                &JobOptions::default()
            )
            .is_ok());
    }
}
