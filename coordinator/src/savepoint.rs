//! Savepoints: checkpoints a user asked for, written self-contained so
//! that they can be copied or kept alone, and never deleted by a job's
//! retention.
//!
//! A savepoint is an ordinary checkpoint of the running job, triggered at
//! once, whose files are then copied, with its manifest, into
//! `{dir}/{job_id}/chk-{epoch:010}/`: files the checkpoint shared with
//! others (`shared/…`, incremental RocksDB files) go under the savepoint's
//! own directory too, so nothing outside it is referenced. Its manifest is
//! marked `savepoint` and every `weir checkpoints` command reads it as a
//! checkpoint of "job" `{job_id}` under `{dir}`; it restores from that
//! directory, or from a copy of it that keeps its `chk-…` name.
//!
//! With `stop`, sources emit nothing after the savepoint's barrier and the
//! job ends once it is complete and its sinks committed (no final
//! watermark: the job resumed from the savepoint emits what is left).

use crate::catalog::CheckpointCatalog;
use crate::error::CoordinatorError;
use crate::job::JobHandle;
use crossbeam_channel::{RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_protocol::checkpoint::{paths, MANIFEST_VERSION};
use weir_protocol::{CheckpointManifest, Epoch};
use weir_state::CheckpointStorage;

/// The directory savepoints go to when none is given: beside the jobs'
/// checkpoint directories. No job may take this name as its id.
pub const DEFAULT_SAVEPOINT_DIR: &str = "savepoints";

/// What a client asks for (`POST /v1/jobs/{id}/savepoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavepointOptions {
    /// End the job once the savepoint is complete and its sinks committed.
    pub stop: bool,
    /// Where the savepoint goes (a URL or path); `{checkpoint-dir}/savepoints`
    /// when absent.
    pub dir: Option<String>,
}

/// A completed savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointDone {
    /// Its directory: restore with `weir submit … --restore LOCATION`.
    pub location: String,
    /// Its checkpoint's epoch.
    pub epoch: u64,
    /// Things the user should know (state matched by derived names).
    pub warnings: Vec<String>,
    /// Whether the job was stopped after it.
    pub stopped: bool,
}

/// A savepoint request on its way to the job's checkpoint driver.
#[derive(Debug)]
pub struct SavepointRequest {
    /// Stop the job after it.
    pub stop: bool,
    /// The storage it goes to.
    pub dir: CheckpointStorage,
    /// Where the outcome goes.
    pub reply: Sender<Result<SavepointDone, String>>,
    /// Set when the client stopped waiting: a request not begun by then
    /// is dropped.
    pub cancelled: Arc<AtomicBool>,
}

impl SavepointRequest {
    /// Whether its client stopped waiting.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Why a savepoint was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavepointError {
    /// The job cannot take one now (not running, no checkpoints, one in
    /// progress): the client must wait or change something.
    #[error("{0}")]
    Refused(String),
    /// The request is wrong (an unusable directory).
    #[error("{0}")]
    Invalid(String),
    /// It was tried and failed.
    #[error("{0}")]
    Failed(String),
}

/// Takes a savepoint of `job` (whose checkpoints are under
/// `checkpoint_root`) and waits for it; with `stop`, also waits until the
/// job ended, its sinks having committed. Blocks.
pub fn take_savepoint(
    job: &JobHandle,
    checkpoint_root: &str,
    options: &SavepointOptions,
) -> Result<SavepointDone, SavepointError> {
    let refused =
        |problem: String| SavepointError::Refused(format!("job '{}': {problem}", job.job_id));
    let state = job.record().lifecycle.state();
    if state.is_terminal() {
        return Err(refused(format!("it has already ended ({state})")));
    }
    if job.settings.checkpoint_interval_ms == 0 {
        return Err(refused(
            "it runs without checkpoints (--checkpoint-interval 0)".into(),
        ));
    }
    let dir = match &options.dir {
        Some(dir) => dir.clone(),
        None => format!(
            "{}/{DEFAULT_SAVEPOINT_DIR}",
            checkpoint_root.trim_end_matches('/')
        ),
    };
    let storage = CheckpointStorage::open(&dir).map_err(|error| {
        SavepointError::Invalid(format!(
            "savepoint directory {dir}: {}",
            crate::error::chain(&error)
        ))
    })?;
    let root = CheckpointStorage::open(checkpoint_root)
        .map(|root| root.url().to_owned())
        .unwrap_or_else(|_| checkpoint_root.to_owned());
    if storage.url().trim_end_matches('/') == root.trim_end_matches('/') {
        // `{root}/{job}/chk-N` would be the job's own checkpoint.
        return Err(SavepointError::Invalid(format!(
            "savepoint directory {dir} is the checkpoint directory itself; use another (default: {root}/{DEFAULT_SAVEPOINT_DIR})"
        )));
    }
    let (reply, outcome) = crossbeam_channel::bounded(1);
    let cancelled = Arc::new(AtomicBool::new(false));
    let request = SavepointRequest {
        stop: options.stop,
        dir: storage,
        reply,
        cancelled: cancelled.clone(),
    };
    let sent = match &*crate::cluster::lock(&job.savepoints) {
        Some(driver) => driver.send(request).is_ok(),
        None => false,
    };
    if !sent {
        return Err(refused(format!(
            "no attempt of it is running now ({state}); try again once it runs"
        )));
    }
    // The checkpoint in flight and the savepoint's own may each take the
    // whole timeout, and copying its files longer.
    let wait = 2 * Duration::from_millis(job.settings.checkpoint_timeout_ms) + COPY_ALLOWANCE;
    let done = match outcome.recv_timeout(wait) {
        Ok(Ok(done)) => done,
        Ok(Err(problem)) => return Err(SavepointError::Failed(problem)),
        Err(RecvTimeoutError::Timeout) => {
            cancelled.store(true, Ordering::Relaxed);
            return Err(SavepointError::Failed(format!(
                "no savepoint after {wait:?} (a savepoint that had begun may still complete)"
            )));
        }
        Err(RecvTimeoutError::Disconnected) => {
            return Err(SavepointError::Failed(
                "the job's attempt ended before the savepoint completed".into(),
            ))
        }
    };
    job.record().last_savepoint = Some(done.location.clone());
    if done.stopped {
        // The sinks commit and the tasks end; a job stopped with a
        // savepoint never runs again, so it does end.
        match job.wait_until_ended_for(STOP_PATIENCE) {
            Some(weir_protocol::JobState::Finished) => {}
            Some(ended) => {
                return Err(SavepointError::Failed(format!(
                    "the savepoint {} is complete, but the job then ended {ended}",
                    done.location
                )))
            }
            None => {
                return Err(SavepointError::Failed(format!(
                    "the savepoint {} is complete and the job is stopping, but it has not ended after {STOP_PATIENCE:?}",
                    done.location
                )))
            }
        }
    }
    Ok(done)
}

/// Time allowed beyond the checkpoint timeouts for copying the savepoint.
const COPY_ALLOWANCE: Duration = Duration::from_secs(300);

/// Time a stopped job has to end once its savepoint is written.
const STOP_PATIENCE: Duration = Duration::from_secs(120);

/// Warnings for the operators whose state `manifest` keeps under a name
/// derived from the graph, because they have no uid.
pub fn default_uid_warnings(manifest: &CheckpointManifest) -> Vec<String> {
    manifest
        .operators
        .iter()
        .filter(|o| o.uid.is_none() && o.has_state())
        .map(|o| crate::restore_check::no_uid_warning(&o.name, "is saved"))
        .collect()
}

/// Where a checkpoint file goes inside the savepoint of `epoch`: files of
/// the checkpoint's own directory keep their path; anything else (shared
/// files) moves under it.
pub fn savepoint_path(path: &str, epoch: Epoch) -> String {
    let own = format!("{}/", paths::checkpoint_name(epoch));
    if path.starts_with(&own) {
        path.to_owned()
    } else {
        format!("{own}{path}")
    }
}

/// Copies completed checkpoint `manifest` of the job `source` holds into
/// `target` as a self-contained savepoint; returns its location.
pub fn write_savepoint(
    source: &CheckpointCatalog,
    manifest: &CheckpointManifest,
    target: &CheckpointStorage,
) -> Result<String, CoordinatorError> {
    let job_id = source.job();
    let epoch = manifest.epoch;
    let directory = paths::checkpoint_dir(job_id, epoch);
    let location = location(target, job_id, epoch);
    let existing = target.list_dir(&directory)?;
    if !existing.files.is_empty() || !existing.dirs.is_empty() {
        return Err(CoordinatorError::NotRestorable {
            location,
            problem: "a savepoint (or something else) is already there; choose another --dir"
                .into(),
        });
    }
    let copy = || -> Result<(), CoordinatorError> {
        let mut saved = manifest.clone();
        saved.savepoint = true;
        // Written in this build's format, whatever the checkpoint's was.
        saved.version = MANIFEST_VERSION;
        for operator in &mut saved.operators {
            for subtask in &mut operator.subtasks {
                for file in &mut subtask.files {
                    let bytes = source.read_checked(file)?;
                    file.path = savepoint_path(&file.path, epoch);
                    target.put(&format!("{}/{}", paths::job_dir(job_id), file.path), bytes)?;
                }
            }
        }
        let json = serde_json::to_vec_pretty(&saved).expect("manifests serialize");
        target.put(&paths::manifest(job_id, epoch), json)?;
        // Create-only, last: a savepoint is complete once its marker is.
        target.put_if_absent(&paths::committed(job_id, epoch), Vec::new())?;
        Ok(())
    };
    if let Err(error) = copy() {
        // Nothing restores from a directory without its commit marker, but
        // do not leave the copies behind.
        let _ = target.delete_dir(&directory);
        return Err(error);
    }
    Ok(location)
}

/// The URL of the savepoint of `job_id` at `epoch` in `target`.
fn location(target: &CheckpointStorage, job_id: &str, epoch: Epoch) -> String {
    format!(
        "{}/{}",
        target.url().trim_end_matches('/'),
        paths::checkpoint_dir(job_id, epoch)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_files_move_under_the_savepoint_and_own_files_stay() {
        assert_eq!(
            savepoint_path("chk-0000000007/1-0/state", Epoch(7)),
            "chk-0000000007/1-0/state"
        );
        assert_eq!(
            savepoint_path("shared/1-0/000012.sst", Epoch(7)),
            "chk-0000000007/shared/1-0/000012.sst"
        );
        // Another checkpoint's directory is not the savepoint's own.
        assert_eq!(
            savepoint_path("chk-0000000006/1-0/state", Epoch(7)),
            "chk-0000000007/chk-0000000006/1-0/state"
        );
    }
}
