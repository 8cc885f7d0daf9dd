//! [`Replication`]: the service that keeps a local copy of every file a
//! deployment's subtasks upload and pushes a replica to peers over the
//! data exchange, so that a restore finds the file on this worker or on a
//! peer before it goes to checkpoint storage.

use super::replicas::{Origin, StateReplicas};
use crate::metrics::WorkerMetrics;
use crate::net::{Exchange, Pushed};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Keeps and pushes copies of what a deployment's subtasks upload.
pub struct Replication {
    /// This worker's copies.
    store: Arc<StateReplicas>,
    /// The data exchange, linked to the peers.
    exchange: Exchange,
    /// The peers that may get a replica, best first (spare workers, then
    /// the deployment's others: [`Deployment::replica_candidates`]).
    ///
    /// [`Deployment::replica_candidates`]: weir_protocol::cluster::Deployment::replica_candidates
    /// A spare that joins later is added
    /// ([`set_candidates`](Self::set_candidates)).
    candidates: Mutex<Vec<u32>>,
    /// How many of them get each file.
    wanted: usize,
    /// Peers that did not take a file in time (paused, cut off): skipped
    /// from then on, so that a peer that stopped reading costs one wait,
    /// not one per file of every checkpoint.
    too_slow: Mutex<HashSet<u32>>,
    /// Counts the bytes pushed.
    metrics: WorkerMetrics,
}

impl Replication {
    /// Pushes to the first `wanted` of `candidates` that take the files.
    pub fn new(
        store: Arc<StateReplicas>,
        exchange: Exchange,
        candidates: Vec<u32>,
        wanted: u32,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            store,
            exchange,
            candidates: Mutex::new(candidates),
            wanted: wanted as usize,
            too_slow: Mutex::new(HashSet::new()),
            metrics,
        }
    }

    /// Keeps a copy of `path` of job `job_id` and pushes one to each of the
    /// first `wanted` candidates that take it (a candidate without a link,
    /// or too slow, is passed over for the next). Best effort: checkpoint
    /// storage holds the durable copy.
    pub fn replicate(&self, job_id: &str, path: &str, bytes: &[u8]) {
        if let Err(error) = self.store.store(Origin::Own, job_id, path, bytes) {
            tracing::warn!(job = %job_id, %path, error = &error as &dyn std::error::Error, "keeping a local copy failed");
        }
        let mut pushed = 0;
        let candidates = self.candidates().clone();
        for peer in &candidates {
            if pushed >= self.wanted {
                break;
            }
            if self.too_slow().contains(peer) {
                continue;
            }
            match self.exchange.push_file(*peer, job_id, path, bytes) {
                Pushed::Taken => {
                    pushed += 1;
                    self.metrics.replica_pushed(bytes.len() as u64);
                }
                Pushed::NoLink => {
                    tracing::debug!(job = %job_id, %path, peer, "no link to a replica peer; trying the next");
                }
                Pushed::TooSlow => {
                    tracing::warn!(job = %job_id, %path, peer, "a replica peer did not take a file in time; it gets no more replicas of this attempt");
                    self.too_slow().insert(*peer);
                }
            }
        }
    }

    /// The peers that may get a replica from now on, best first (a spare
    /// joined).
    pub fn set_candidates(&self, candidates: Vec<u32>) {
        *self.candidates() = candidates;
    }

    fn candidates(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.candidates.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn too_slow(&self) -> std::sync::MutexGuard<'_, HashSet<u32>> {
        self.too_slow.lock().unwrap_or_else(|p| p.into_inner())
    }
}
