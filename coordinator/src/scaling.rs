//! Running with fewer slots than a job asks for.
//!
//! When too few slots are free and the job allows it
//! (`allow_scale_down`), an attempt runs at the parallelism the free slots
//! give, its keyed state redistributed by key group from the checkpoint;
//! once a checkpoint of that attempt is complete and enough slots are free
//! again, the attempt is stopped and the job redeployed at its full
//! parallelism from that checkpoint. The decisions are pure functions.

use crate::cluster::Cluster;
use crate::scheduler::slots_needed;
use weir_protocol::{JobGraph, JobSpec};

/// The spec and graph one attempt runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// What the workers build.
    pub spec: JobSpec,
    /// Its graph.
    pub graph: JobGraph,
}

impl Shape {
    /// Slots the shape needs.
    pub fn slots(&self) -> u32 {
        slots_needed(&self.graph)
    }
}

/// The parallelism to run at: the desired one when its slots are free,
/// else (when allowed) as many as are free, else `None` (the attempt
/// cannot be placed).
pub fn parallelism_for(
    desired: u32,
    desired_slots: u32,
    free: u32,
    allow_scale_down: bool,
) -> Option<u32> {
    if free >= desired_slots {
        Some(desired)
    } else if allow_scale_down && free >= 1 {
        Some(free.min(desired))
    } else {
        None
    }
}

/// Whether a scaled-down attempt should stop so the job can run at its
/// full size: it completed a checkpoint to resume from, and the slots it
/// holds plus the free ones cover the full size.
pub fn should_scale_up(
    current_slots: u32,
    desired_slots: u32,
    free: u32,
    checkpoints_in_attempt: u32,
) -> bool {
    current_slots < desired_slots
        && checkpoints_in_attempt > 0
        && current_slots + free >= desired_slots
}

/// The shape of the next attempt of a job whose full shape is `full`.
pub fn next_shape(
    cluster: &Cluster,
    full: &Shape,
    allow_scale_down: bool,
) -> Result<Shape, String> {
    let free: u32 = cluster.free_slots().values().sum();
    match parallelism_for(full.spec.parallelism, full.slots(), free, allow_scale_down) {
        Some(p) if p == full.spec.parallelism => Ok(full.clone()),
        Some(p) => {
            let spec = JobSpec {
                parallelism: p,
                ..full.spec.clone()
            };
            let graph = cluster.catalog.graph(&spec)?;
            tracing::warn!(job = %full.graph.name, parallelism = p, wanted = full.spec.parallelism, "too few free slots: running at lower parallelism");
            Ok(Shape { spec, graph })
        }
        None => Ok(full.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_down_only_when_allowed_and_back_up_after_a_checkpoint() {
        assert_eq!(parallelism_for(3, 3, 5, false), Some(3));
        assert_eq!(parallelism_for(3, 3, 2, false), None);
        assert_eq!(parallelism_for(3, 3, 2, true), Some(2));
        assert_eq!(parallelism_for(3, 3, 0, true), None);
        // Running at 2 of 3: one more free slot is enough, once a
        // checkpoint of the small attempt is complete.
        assert!(!should_scale_up(2, 3, 1, 0));
        assert!(should_scale_up(2, 3, 1, 1));
        assert!(!should_scale_up(2, 3, 0, 4));
        assert!(!should_scale_up(3, 3, 5, 4));
    }
}
