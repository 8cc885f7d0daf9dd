//! Placement of a job's subtasks in worker slots (pure).
//!
//! A slot runs one subtask of every operator (slot sharing, as in Flink),
//! so a job needs as many slots as its largest operator parallelism, and
//! subtask `i` of every operator goes to slot `i`: forward edges stay
//! inside one worker. Slots are spread over workers round-robin, the
//! workers with the most free slots first, so a job uses as many workers
//! as it can. After a failure, a slot whose worker survived stays on it
//! (it restores from its own copy); only then do the others go to a
//! worker holding a replica of their state, with room left, so no
//! survivor is moved out of its slot for a lost one. Only a slot that
//! finds no holder with room restores from the object store.

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

/// Places every subtask of `graph` given each worker's free slots;
/// `holders[slot]` lists the workers holding that slot's state, best first
/// (the worker that ran it, then those holding its replicas).
pub fn place(
    graph: &JobGraph,
    free: &BTreeMap<WorkerId, u32>,
    holders: &BTreeMap<u32, Vec<WorkerId>>,
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
    let mut left: BTreeMap<WorkerId, u32> = free.clone();
    let mut slots: Vec<Option<WorkerId>> = vec![None; needed as usize];
    let holders_of = |slot: usize| {
        holders
            .get(&(slot as u32))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    // First every slot whose own worker (its first holder) is still there,
    // then the others on any of their holders (those of their replicas).
    for considered in [1, usize::MAX] {
        for (slot, chosen) in slots.iter_mut().enumerate() {
            if chosen.is_some() {
                continue;
            }
            let holders = holders_of(slot);
            if let Some(worker) = holders[..considered.min(holders.len())]
                .iter()
                .find(|w| left.get(w).is_some_and(|n| *n > 0))
            {
                *left.get_mut(worker).expect("found above") -= 1;
                *chosen = Some(*worker);
            }
        }
    }
    // The rest round-robin, most free slots first; ties by id, so placement
    // is deterministic.
    let mut order: Vec<(WorkerId, u32)> = left.into_iter().filter(|(_, n)| *n > 0).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut open = slots.iter_mut().filter(|s| s.is_none()).peekable();
    while open.peek().is_some() {
        for (worker, n) in order.iter_mut() {
            if *n > 0 {
                if let Some(slot) = open.next() {
                    *n -= 1;
                    *slot = Some(*worker);
                }
            }
        }
    }
    let slots: Vec<WorkerId> = slots
        .into_iter()
        .map(|s| s.expect("every slot placed"))
        .collect();
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
                uid: None,
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
        let placement = place(&graph(3), &free, &BTreeMap::new()).unwrap();
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
        let err = place(&graph(2), &free, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.to_string(), "job 'g' needs 2 slots but only 1 are free");
        assert_eq!(place(&graph(1), &free, &BTreeMap::new()).unwrap().len(), 2);
    }

    fn slot_of(placement: &[TaskPlacement], slot: u32) -> WorkerId {
        placement
            .iter()
            .find(|p| p.vertex == 0 && p.subtask == slot)
            .unwrap()
            .worker
    }

    #[test]
    fn survivors_keep_their_slots_and_a_lost_slot_takes_what_is_left() {
        // Worker 1 was lost; slot 0's state has a replica on worker 3,
        // which runs slot 2; worker 4 is a spare.
        let free = BTreeMap::from([(WorkerId(2), 1), (WorkerId(3), 1), (WorkerId(4), 1)]);
        let holders = BTreeMap::from([
            (0, vec![WorkerId(1), WorkerId(3)]),
            (1, vec![WorkerId(2), WorkerId(3)]),
            (2, vec![WorkerId(3), WorkerId(1)]),
        ]);
        let placement = place(&graph(3), &free, &holders).unwrap();
        assert_eq!(slot_of(&placement, 1), WorkerId(2), "its own copy");
        assert_eq!(slot_of(&placement, 2), WorkerId(3), "not evicted by slot 0");
        // Slot 0's holders are full or gone: the spare restores it.
        assert_eq!(slot_of(&placement, 0), WorkerId(4));
    }

    #[test]
    fn a_lost_slot_goes_to_a_worker_holding_its_replica_when_it_has_room() {
        let free = BTreeMap::from([(WorkerId(2), 2), (WorkerId(3), 1), (WorkerId(4), 1)]);
        let holders = BTreeMap::from([
            (0, vec![WorkerId(1), WorkerId(2)]),
            (1, vec![WorkerId(2), WorkerId(3)]),
            (2, vec![WorkerId(3), WorkerId(1)]),
        ]);
        let placement = place(&graph(3), &free, &holders).unwrap();
        assert_eq!(slot_of(&placement, 0), WorkerId(2), "the peer replica");
        assert_eq!(slot_of(&placement, 1), WorkerId(2), "its own copy");
        assert_eq!(slot_of(&placement, 2), WorkerId(3), "its own copy");
    }

    #[test]
    fn a_slot_whose_own_worker_is_full_still_tries_its_replicas() {
        // Slot 0 is listed first but its own worker has no room; its
        // replica's worker does.
        let free = BTreeMap::from([(WorkerId(1), 0), (WorkerId(2), 1), (WorkerId(3), 1)]);
        let holders = BTreeMap::from([(0, vec![WorkerId(1), WorkerId(3)]), (1, vec![WorkerId(2)])]);
        let placement = place(&graph(2), &free, &holders).unwrap();
        assert_eq!(slot_of(&placement, 0), WorkerId(3));
        assert_eq!(slot_of(&placement, 1), WorkerId(2));
    }
}
