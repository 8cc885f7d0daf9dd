//! Placement of a job's subtasks in worker slots (pure).
//!
//! A slot runs one subtask of every operator (slot sharing, as in Flink),
//! so a job needs as many slots as its largest operator parallelism, and
//! subtask `i` of every operator goes to slot `i`: forward edges stay
//! inside one worker. Slots are spread over workers round-robin, the
//! workers with the most free slots first, so a job uses as many workers
//! as it can.

use std::collections::BTreeMap;
use weir_protocol::cluster::TaskPlacement;
use weir_protocol::{JobGraph, WorkerId};

/// Why a job cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job '{job}' needs {needed} slots but only {free} are free")]
pub struct NotEnoughSlots {
    /// The job.
    pub job: String,
    /// Slots it needs.
    pub needed: u32,
    /// Slots free in the cluster.
    pub free: u32,
}

/// Slots a job needs: its largest operator parallelism.
pub fn slots_needed(graph: &JobGraph) -> u32 {
    graph
        .vertices
        .iter()
        .map(|v| v.parallelism)
        .max()
        .unwrap_or(0)
}

/// Places every subtask of `graph` given each worker's free slots.
pub fn place(
    graph: &JobGraph,
    free: &BTreeMap<WorkerId, u32>,
) -> Result<Vec<TaskPlacement>, NotEnoughSlots> {
    let needed = slots_needed(graph);
    let total: u32 = free.values().sum();
    if needed > total {
        return Err(NotEnoughSlots {
            job: graph.name.clone(),
            needed,
            free: total,
        });
    }
    let mut left: Vec<(WorkerId, u32)> = free
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(w, n)| (*w, *n))
        .collect();
    // Most free slots first; ties by id, so placement is deterministic.
    left.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut slots = Vec::with_capacity(needed as usize);
    while (slots.len() as u32) < needed {
        for (worker, n) in left.iter_mut() {
            if *n > 0 && (slots.len() as u32) < needed {
                *n -= 1;
                slots.push(*worker);
            }
        }
    }
    Ok(graph
        .vertices
        .iter()
        .flat_map(|v| {
            let slots = &slots;
            (0..v.parallelism).map(move |subtask| TaskPlacement {
                vertex: v.id.0,
                subtask,
                worker: slots[subtask as usize],
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::{Edge, Partitioning, Vertex, VertexId, VertexKind};

    fn graph(parallelism: u32) -> JobGraph {
        let mut graph = JobGraph::new("g");
        for (i, kind) in [VertexKind::Source, VertexKind::Sink]
            .into_iter()
            .enumerate()
        {
            graph.vertices.push(Vertex {
                id: VertexId(i as u32),
                name: format!("v{i}"),
                kind,
                parallelism,
                keyed: false,
            });
        }
        graph.edges.push(Edge {
            from: VertexId(0),
            to: VertexId(1),
            partitioning: Partitioning::Forward,
        });
        graph
    }

    #[test]
    fn slots_spread_over_workers_and_share_subtask_indexes() {
        let free = BTreeMap::from([(WorkerId(1), 2), (WorkerId(2), 2), (WorkerId(3), 2)]);
        let placement = place(&graph(3), &free).unwrap();
        let worker = |v: u32, s: u32| {
            placement
                .iter()
                .find(|p| p.vertex == v && p.subtask == s)
                .unwrap()
                .worker
        };
        let used: std::collections::BTreeSet<WorkerId> = (0..3).map(|s| worker(0, s)).collect();
        assert_eq!(used.len(), 3, "three slots on three workers");
        for s in 0..3 {
            assert_eq!(
                worker(0, s),
                worker(1, s),
                "slot sharing keeps subtask {s} together"
            );
        }
    }

    #[test]
    fn too_few_slots_is_an_error_naming_the_numbers() {
        let free = BTreeMap::from([(WorkerId(1), 1), (WorkerId(2), 0)]);
        let err = place(&graph(2), &free).unwrap_err();
        assert_eq!(err.to_string(), "job 'g' needs 2 slots but only 1 are free");
        assert_eq!(place(&graph(1), &free).unwrap().len(), 2);
    }
}
