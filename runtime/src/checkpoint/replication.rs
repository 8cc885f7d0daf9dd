//! [`Replication`]: the service that keeps a local copy of every file a
//! deployment's subtasks upload and pushes a replica to each peer over the
//! data exchange, so that a restore finds the file on this worker or on a
//! peer before it goes to checkpoint storage.

use super::replicas::{Origin, StateReplicas};
use crate::net::Exchange;
use std::sync::Arc;

/// Keeps and pushes copies of what a deployment's subtasks upload.
pub struct Replication {
    /// This worker's copies.
    pub store: Arc<StateReplicas>,
    /// The data exchange, linked to the peers.
    pub exchange: Exchange,
    /// The peers that get a replica of every file.
    pub peers: Vec<u32>,
}

impl Replication {
    /// Keeps a copy of `path` of job `job_id` and pushes one to every peer.
    /// Best effort: checkpoint storage holds the durable copy.
    pub fn replicate(&self, job_id: &str, path: &str, bytes: &[u8]) {
        if let Err(error) = self.store.store(Origin::Own, job_id, path, bytes) {
            tracing::warn!(job = %job_id, %path, error = &error as &dyn std::error::Error, "keeping a local copy failed");
        }
        for peer in &self.peers {
            if !self.exchange.push_file(*peer, job_id, path, bytes) {
                tracing::debug!(job = %job_id, %path, peer, "a replica did not reach its peer (no link, or it did not take it in time)");
            }
        }
    }
}
