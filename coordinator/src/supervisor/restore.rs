//! Where an attempt restores from, waiting for checkpoint storage when it
//! does not answer.
//!
//! An unreachable or erroring store is never taken for one without
//! checkpoints (that would start the job over and commit its output
//! twice), nor for a reason to fail the job: the supervisor asks again with
//! the restart strategy's backoff, showing the wait in the job's status,
//! until the store answers or the job is cancelled. Only a store that
//! answers is final: its newest usable checkpoint, or none.

use crate::catalog::CheckpointCatalog;
use crate::error::CoordinatorError;
use crate::history::{Outage, StorageWaitPhase};
use crate::job::JobHandle;
use crate::restart::RestartStrategy;
use weir_protocol::checkpoint::paths;
use weir_protocol::cluster::{RestoreFrom, RestorePoint};
use weir_protocol::Epoch;
use weir_state::CheckpointStorage;

/// Resolves where the first attempt restores from; `storage` is the
/// checkpoint root, `job_id` the job's directory in it.
pub fn resolve_restore(
    request: &RestoreFrom,
    storage: &CheckpointStorage,
    job_id: &str,
) -> Result<Option<RestorePoint>, CoordinatorError> {
    match request {
        RestoreFrom::Nothing => Ok(None),
        RestoreFrom::Latest => {
            let catalog = CheckpointCatalog::new(storage.clone(), job_id);
            let found = catalog
                .latest_restorable()?
                .map(|manifest| catalog.restore_point(manifest));
            if found.is_none() {
                tracing::warn!(job = %job_id, "no complete checkpoint to restore; starting from the beginning");
            }
            Ok(found)
        }
        RestoreFrom::Checkpoint(location) => open_restore_point(location).map(Some),
    }
}

/// The checkpoint at `location` (its directory's URL), complete and verified.
pub(super) fn open_restore_point(location: &str) -> Result<RestorePoint, CoordinatorError> {
    let (catalog, manifest) = CheckpointCatalog::open_restorable(location)?;
    Ok(catalog.restore_point(manifest))
}

/// The directory URL of a restore point (what the control store keeps).
pub fn restore_location(point: &RestorePoint) -> String {
    format!(
        "{}/{}",
        point.storage_url.trim_end_matches('/'),
        paths::checkpoint_dir(&point.job_id, point.manifest.epoch)
    )
}

/// Why a wait for storage ended without an answer.
pub(super) enum Unanswered {
    /// The job was cancelled, or this coordinator no longer leads.
    Stopped,
    /// Storage answered, with an error no wait can fix.
    Failed(CoordinatorError),
}

/// Runs `ask` until checkpoint storage answers it: while it fails because
/// storage is unavailable, shows the wait (holding up `phase`) in the
/// job's status, logs it, and asks again after the strategy's backoff.
/// `first` is an answer the caller already has (asked before its own
/// backoff).
pub(super) fn until_storage_answers<T>(
    job: &JobHandle,
    strategy: &RestartStrategy,
    phase: StorageWaitPhase,
    first: Option<Result<T, CoordinatorError>>,
    ask: impl FnMut() -> Result<T, CoordinatorError>,
) -> Result<T, Unanswered> {
    wait_for_storage(job, strategy, (phase, Cancel::Stops), first, ask)
}

/// Whether a cancel request cuts a wait for storage short.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Cancel {
    /// It does: the wait ends [`Unanswered::Stopped`].
    Stops,
    /// It does not (recording how the job ended).
    Waits,
}

/// [`until_storage_answers`], with a choice of what a cancel does.
pub(super) fn wait_for_storage<T>(
    job: &JobHandle,
    strategy: &RestartStrategy,
    (phase, cancel): (StorageWaitPhase, Cancel),
    first: Option<Result<T, CoordinatorError>>,
    mut ask: impl FnMut() -> Result<T, CoordinatorError>,
) -> Result<T, Unanswered> {
    let mut answer = first.unwrap_or_else(&mut ask);
    let mut probes = 0;
    loop {
        match answer {
            Ok(value) => {
                if let Some(outage) = job.record().waiting_for_storage.take() {
                    tracing::info!(job = %job.job_id, waited_s = outage.waited().as_secs_f64(), "checkpoint storage answers again");
                }
                return Ok(value);
            }
            Err(error) if weir_state::storage_unavailable_in(&error) && job.leads() => {
                probes += 1;
                let wait = strategy.storage_backoff(probes);
                let waited_s = {
                    let mut record = job.record();
                    Outage::go_on(
                        &mut record.waiting_for_storage,
                        phase,
                        crate::error::chain(&error),
                    );
                    record
                        .waiting_for_storage
                        .as_ref()
                        .map_or(0.0, |o| o.waited().as_secs_f64())
                };
                tracing::warn!(job = %job.job_id, waited_s, retry_in = ?wait, error = &error as &dyn std::error::Error, "waiting for checkpoint storage");
                // A cancel ends this wait only if the caller says so (not
                // while recording how the job ended); losing the lead does.
                if job.pause(wait, cancel == Cancel::Stops) {
                    job.record().waiting_for_storage = None;
                    return Err(Unanswered::Stopped);
                }
            }
            Err(error) => {
                job.record().waiting_for_storage = None;
                return Err(Unanswered::Failed(error));
            }
        }
        answer = ask();
    }
}

/// The newest checkpoint the job's pointer allows, above its floor, as
/// storage answers now.
pub(super) fn choose_restore(
    job: &JobHandle,
    storage: &CheckpointStorage,
    floor: Option<Epoch>,
    checksums: bool,
) -> Result<Option<RestorePoint>, CoordinatorError> {
    let pointer = job.stored().checkpoint.map(|c| Epoch(c.epoch));
    let catalog = CheckpointCatalog::new(storage.clone(), &job.job_id);
    Ok(catalog
        .latest_for_restart(pointer, floor, checksums)?
        .map(|manifest| catalog.restore_point(manifest)))
}

/// Where a restart resumes when storage holds no usable checkpoint of the
/// job's own: where the first attempt started (its restore point, re-read
/// after a failover, or the beginning), as long as none of the job's
/// checkpoints ever completed. Once one did, its sinks committed output
/// that starting over would commit again: that is an error.
pub(super) fn without_checkpoint(
    job: &JobHandle,
    strategy: &RestartStrategy,
    floor: Option<Epoch>,
    initial: &mut Option<RestorePoint>,
) -> Result<Option<RestorePoint>, Unanswered> {
    let stored = job.stored();
    if let Some(pointer) = stored.checkpoint.filter(|p| Some(Epoch(p.epoch)) > floor) {
        return Err(Unanswered::Failed(CoordinatorError::NotRestorable {
            location: job.job_id.clone(),
            problem: format!(
                "checkpoint storage holds no usable checkpoint of the job (every one is corrupt or gone), though checkpoint {} completed; starting over would commit its output twice",
                pointer.epoch
            ),
        }));
    }
    if initial.is_none() {
        if let Some(location) = stored.initial_restore {
            let point =
                until_storage_answers(job, strategy, StorageWaitPhase::Restore, None, || {
                    open_restore_point(&location)
                })?;
            *initial = Some(point);
        }
    }
    Ok(initial.clone())
}

/// Writes a change of the job's control record, waiting out an outage of
/// the storage it lives in (a standalone coordinator keeps it there).
pub(super) fn persist_waiting(
    job: &JobHandle,
    strategy: &RestartStrategy,
    change: impl Fn(&mut crate::control::StoredJob),
) -> Result<(), Unanswered> {
    until_storage_answers(job, strategy, StorageWaitPhase::JobRecord, None, || {
        job.persist(&change)
    })
}
