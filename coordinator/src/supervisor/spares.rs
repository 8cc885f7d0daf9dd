//! Spare workers that join a running attempt: a worker that registers with
//! a free slot while the job runs becomes one of its spares. The job's
//! workers are told to push their replicas to it (first, as to any spare),
//! and it catches up in the background on the files of the latest
//! checkpoint it would hold, so that it is ready before the next failure.
//! A catch-up that ends while a newer checkpoint completed is followed by
//! another for that one (files it holds already are skipped), which closes
//! the window between the checkpoint it copied and the workers' first
//! pushes to it.

use crate::catalog::CheckpointCatalog;
use crate::cluster::Cluster;
use crate::job::{JobHandle, SpareCatchUp, SPARE_CATCH_UPS_KEPT};
use weir_protocol::cluster::{catch_up_files, Peer};
use weir_protocol::wire::ToWorker;
use weir_protocol::{Epoch, WorkerId};
use weir_state::CheckpointStorage;

/// `worker` registered while `attempt` of `job` runs: makes it a spare of
/// the attempt when it has a free slot and runs nothing of the job.
pub(super) fn joined(
    cluster: &Cluster,
    job: &JobHandle,
    attempt: u32,
    storage: Option<&CheckpointStorage>,
    worker: WorkerId,
) {
    if job.settings.replicas == 0 {
        return;
    }
    let stored = job.stored();
    let runs_the_job = stored.placement.iter().any(|p| p.worker == worker);
    let known = stored.spares.iter().any(|p| p.worker == worker);
    let free = cluster.free_slots().get(&worker).copied().unwrap_or(0);
    if runs_the_job || known || free == 0 {
        return;
    }
    let Some(data_addr) = cluster
        .workers()
        .into_iter()
        .find(|w| w.id == worker)
        .map(|w| w.data_addr)
    else {
        return;
    };
    let spare = Peer { worker, data_addr };
    if let Err(error) = job.persist(|stored| stored.spares.push(spare.clone())) {
        tracing::warn!(job = %job.job_id, %worker, error = &error as &dyn std::error::Error, "could not record a new spare; it gets no replicas");
        return;
    }
    for peer in &stored.peers {
        cluster.send(
            peer.worker,
            ToWorker::SpareJoined {
                job_number: job.number,
                attempt,
                spare: spare.clone(),
            },
        );
    }
    tracing::info!(job = %job.job_id, attempt, %worker, "a worker joined as a spare: replicas go to it, and it catches up on the latest checkpoint");
    if let Some(storage) = storage {
        catch_up(cluster, job, storage, worker);
    }
}

/// Tells spare `worker` to copy its share of the latest checkpoint's files,
/// if there is a checkpoint.
pub(super) fn catch_up(
    cluster: &Cluster,
    job: &JobHandle,
    storage: &CheckpointStorage,
    worker: WorkerId,
) {
    let stored = job.stored();
    let Some(pointer) = stored.checkpoint else {
        return;
    };
    let catalog = CheckpointCatalog::new(storage.clone(), &job.job_id);
    let manifest = match catalog.manifest(Epoch(pointer.epoch)) {
        Ok(manifest) => manifest,
        Err(error) => {
            tracing::warn!(job = %job.job_id, %worker, epoch = pointer.epoch, error = &error as &dyn std::error::Error, "cannot read the checkpoint a new spare would catch up on");
            return;
        }
    };
    let deployed: Vec<WorkerId> = stored.peers.iter().map(|p| p.worker).collect();
    // Spares that left are no longer pushed to (their share falls to the
    // next candidates, as on the workers).
    let registered = cluster.free_slots();
    let spares: Vec<WorkerId> = stored
        .spares
        .iter()
        .map(|p| p.worker)
        .filter(|w| registered.contains_key(w))
        .collect();
    let files = catch_up_files(
        &manifest,
        &stored.placement,
        &deployed,
        &spares,
        worker,
        job.settings.replicas,
    );
    let bytes = files.iter().map(|f| f.size).sum();
    {
        let mut record = job.record();
        record.spare_catch_ups.push_back(SpareCatchUp {
            worker,
            epoch: pointer.epoch,
            files: files.len() as u32,
            bytes,
            copied_bytes: None,
            took_ms: None,
            failure: None,
        });
        while record.spare_catch_ups.len() > SPARE_CATCH_UPS_KEPT {
            record.spare_catch_ups.pop_front();
        }
    }
    cluster.send(
        worker,
        ToWorker::CatchUp {
            job_number: job.number,
            job_id: job.job_id.clone(),
            storage_url: storage.url().to_owned(),
            epoch: pointer.epoch,
            files,
        },
    );
}

/// Spare `worker` finished catching up (`outcome`): recorded; if a newer
/// checkpoint completed meanwhile, it catches up on that one too.
pub(super) fn caught_up(
    cluster: &Cluster,
    job: &JobHandle,
    storage: Option<&CheckpointStorage>,
    worker: WorkerId,
    outcome: crate::job::CatchUpOutcome,
) {
    {
        let mut record = job.record();
        if let Some(entry) = record
            .spare_catch_ups
            .iter_mut()
            .rev()
            .find(|c| c.worker == worker && c.epoch == outcome.epoch)
        {
            entry.copied_bytes = Some(outcome.copied_bytes);
            entry.took_ms = Some(outcome.took_ms);
            entry.failure = outcome.failure.clone();
        }
    }
    let newer = job
        .stored()
        .checkpoint
        .is_some_and(|pointer| pointer.epoch > outcome.epoch);
    let stored = job.stored();
    let still_spare = stored.spares.iter().any(|p| p.worker == worker)
        && !stored.placement.iter().any(|p| p.worker == worker);
    // After a failure too: a newer checkpoint's files may all be there.
    if let (Some(storage), true, true) = (storage, newer, still_spare) {
        catch_up(cluster, job, storage, worker);
    }
}
