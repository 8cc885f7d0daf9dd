//! The workers' slots: what is free, which workers are spares for a job,
//! and the reservation of an attempt's placement (by
//! [`scheduler::place`](crate::scheduler::place)) and its release.

use super::{Cluster, WorkerInfo};
use std::collections::BTreeMap;
use weir_protocol::cluster::{Peer, TaskPlacement};
use weir_protocol::{JobGraph, WorkerId};

/// Slots reserved for one attempt.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// Where each subtask runs.
    pub placement: Vec<TaskPlacement>,
    /// The workers involved and their data-exchange addresses.
    pub peers: Vec<(WorkerId, String)>,
}

/// The first operator with the job's largest parallelism.
fn widest_vertex(graph: &JobGraph) -> Option<u32> {
    let needed = crate::scheduler::slots_needed(graph);
    graph
        .vertices
        .iter()
        .find(|v| v.parallelism == needed)
        .map(|v| v.id.0)
}

impl Cluster {
    /// The registered workers.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        let inner = self.inner();
        let now = std::time::Instant::now();
        inner
            .workers
            .iter()
            .map(|(id, w)| WorkerInfo {
                id: *id,
                name: w.name.clone(),
                slots: w.slots,
                used: w.used,
                data_addr: w.data_addr.clone(),
                metrics_addr: w.metrics_addr.clone(),
                heartbeat_age_ms: inner
                    .detector
                    .silent_for(*id, now)
                    .map(|d| d.as_millis() as u64),
            })
            .collect()
    }

    /// The workers this leader declared lost, newest first (at most
    /// [`LOST_WORKERS_SHOWN`](super::LOST_WORKERS_SHOWN)).
    pub fn recently_lost(&self) -> Vec<super::LostWorker> {
        self.inner().recently_lost.iter().cloned().collect()
    }

    /// The registered workers outside `deployed` with a free slot: where a
    /// job running on `deployed` keeps replicas first, so that a lost slot
    /// can move to one of them.
    pub fn spares(&self, deployed: &[WorkerId]) -> Vec<Peer> {
        self.inner()
            .workers
            .iter()
            .filter(|(id, w)| w.used < w.slots && !deployed.contains(id))
            .map(|(id, w)| Peer {
                worker: *id,
                data_addr: w.data_addr.clone(),
            })
            .collect()
    }

    /// Free slots per worker.
    pub fn free_slots(&self) -> BTreeMap<WorkerId, u32> {
        self.inner()
            .workers
            .iter()
            .map(|(id, w)| (*id, w.slots.saturating_sub(w.used)))
            .collect()
    }

    /// Places `graph` and reserves its slots, atomically.
    pub fn reserve(
        &self,
        graph: &JobGraph,
        holders: &BTreeMap<u32, Vec<WorkerId>>,
    ) -> Result<Reservation, crate::scheduler::NotEnoughSlots> {
        let mut inner = self.inner();
        let free = inner
            .workers
            .iter()
            .map(|(id, w)| (*id, w.slots.saturating_sub(w.used)))
            .collect();
        let placement = crate::scheduler::place(graph, &free, holders)?;
        // Each slot holds one subtask of the widest operator.
        let widest = widest_vertex(graph);
        let mut slots: BTreeMap<WorkerId, u32> = BTreeMap::new();
        for p in placement.iter().filter(|p| Some(p.vertex) == widest) {
            *slots.entry(p.worker).or_default() += 1;
        }
        let mut peers = Vec::new();
        for (worker, n) in slots {
            if let Some(entry) = inner.workers.get_mut(&worker) {
                entry.used += n;
                peers.push((worker, entry.data_addr.clone()));
            }
        }
        Ok(Reservation { placement, peers })
    }

    /// Reserves the slots of an adopted attempt's `placement` (its workers
    /// run it already).
    pub fn reserve_placement(
        &self,
        graph: &JobGraph,
        placement: &[TaskPlacement],
    ) -> Result<(), String> {
        let widest = widest_vertex(graph);
        let mut slots: BTreeMap<WorkerId, u32> = BTreeMap::new();
        for p in placement.iter().filter(|p| Some(p.vertex) == widest) {
            *slots.entry(p.worker).or_default() += 1;
        }
        let mut inner = self.inner();
        for (worker, n) in &slots {
            match inner.workers.get(worker) {
                Some(entry) if entry.slots.saturating_sub(entry.used) >= *n => {}
                Some(_) => {
                    return Err(format!(
                        "{worker} has no {n} free slots for the adopted attempt"
                    ))
                }
                None => return Err(format!("{worker} left before the attempt was adopted")),
            }
        }
        for (worker, n) in slots {
            if let Some(entry) = inner.workers.get_mut(&worker) {
                entry.used += n;
            }
        }
        Ok(())
    }

    /// Reserves one slot for a slot a regional failover moves: on the
    /// first of `preferred` (the workers holding its state, best first)
    /// with one free, else on the worker with the most free (ties by id).
    /// Returns that worker and its data-exchange address.
    pub fn take_slot(&self, preferred: &[WorkerId]) -> Option<(WorkerId, String)> {
        let mut inner = self.inner();
        let free = |w: &super::WorkerEntry| w.slots.saturating_sub(w.used);
        let chosen = preferred
            .iter()
            .copied()
            .find(|id| inner.workers.get(id).is_some_and(|w| free(w) > 0))
            .or_else(|| {
                inner
                    .workers
                    .iter()
                    .filter(|(_, w)| free(w) > 0)
                    .max_by(|a, b| free(a.1).cmp(&free(b.1)).then(b.0.cmp(a.0)))
                    .map(|(id, _)| *id)
            })?;
        let entry = inner.workers.get_mut(&chosen)?;
        entry.used += 1;
        Some((chosen, entry.data_addr.clone()))
    }

    /// Returns one slot to each of `workers` (slots [`take_slot`](Self::take_slot)
    /// reserved for a regional restart that did not happen).
    pub fn give_back(&self, workers: &[WorkerId]) {
        let mut inner = self.inner();
        for worker in workers {
            if let Some(entry) = inner.workers.get_mut(worker) {
                entry.used = entry.used.saturating_sub(1);
            }
        }
    }

    /// Returns the slots of `placement` (workers that are gone are skipped).
    pub fn release(&self, graph: &JobGraph, placement: &[TaskPlacement]) {
        let widest = widest_vertex(graph);
        let mut inner = self.inner();
        for p in placement.iter().filter(|p| Some(p.vertex) == widest) {
            if let Some(entry) = inner.workers.get_mut(&p.worker) {
                entry.used = entry.used.saturating_sub(1);
            }
        }
    }
}
