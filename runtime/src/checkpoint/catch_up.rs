//! A new spare's catch-up: a worker that joined while a job runs copies
//! the files of the job's latest checkpoint it would hold as a replica
//! from checkpoint storage into its [`StateReplicas`], at a bounded rate
//! (the running job shares the network with it), so that a lost slot
//! moved to it restores from its copies, not from the object store. From
//! then on the job's workers push it their new files like to any spare.

use super::replicas::{Origin, StateReplicas};
use crate::error::RuntimeError;
use std::time::{Duration, Instant};
use weir_protocol::StateFile;
use weir_state::CheckpointStorage;

/// What a catch-up copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaughtUp {
    /// Files copied (those held already are skipped).
    pub files: u32,
    /// Their bytes.
    pub bytes: u64,
    /// Files gone from storage meanwhile (a newer checkpoint replaced
    /// their checkpoint), left out.
    pub skipped: u32,
}

/// Copies `files` of job `job_id` from `storage` into `replicas` (as peer
/// copies), each checked against its size and checksum, at most
/// `bytes_per_second` (0: unthrottled). Files with a verified copy here
/// already are skipped.
pub fn catch_up(
    replicas: &StateReplicas,
    storage: &CheckpointStorage,
    job_id: &str,
    files: &[StateFile],
    bytes_per_second: u64,
) -> Result<CaughtUp, RuntimeError> {
    let started = Instant::now();
    let mut done = CaughtUp::default();
    let failed = |file: &StateFile, source: Box<dyn std::error::Error + Send + Sync>| {
        RuntimeError::CatchUp {
            job: job_id.to_owned(),
            path: file.path.clone(),
            source,
        }
    };
    for file in files {
        if replicas.verified_path(job_id, file).is_some() {
            continue;
        }
        let bytes = match storage.get_checked(job_id, file) {
            Ok(bytes) => bytes,
            // Retention removed the checkpoint meanwhile (a slow catch-up
            // of a large state): the catch-up on a newer one follows.
            Err(weir_state::StateError::NotFound { .. }) => {
                done.skipped += 1;
                continue;
            }
            Err(source) => return Err(failed(file, Box::new(source))),
        };
        let before = done.bytes;
        let stored = replicas.store_paced(Origin::Peer, job_id, &file.path, &bytes, |written| {
            if let Some(wait) = pace(before + written, bytes_per_second, started.elapsed()) {
                std::thread::sleep(wait);
            }
        });
        match stored {
            Ok(()) => done.bytes += bytes.len() as u64,
            // Pruned meanwhile: a newer checkpoint no longer needs it.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(job = %job_id, path = %file.path, "a catch-up file was pruned meanwhile; skipped");
                done.skipped += 1;
                continue;
            }
            Err(source) => return Err(failed(file, Box::new(source))),
        }
        done.files += 1;
    }
    Ok(done)
}

/// How long to wait after `sent` bytes in `elapsed` to keep to
/// `bytes_per_second` (pure); `None` when on time or unthrottled.
fn pace(sent: u64, bytes_per_second: u64, elapsed: Duration) -> Option<Duration> {
    if bytes_per_second == 0 {
        return None;
    }
    let due = Duration::from_secs_f64(sent as f64 / bytes_per_second as f64);
    due.checked_sub(elapsed).filter(|wait| !wait.is_zero())
}

#[cfg(test)]
mod tests {
    use super::pace;
    use std::time::Duration;

    #[test]
    fn pacing_keeps_to_the_rate() {
        let mib = 1 << 20;
        assert_eq!(pace(10 * mib, 0, Duration::ZERO), None, "unthrottled");
        assert_eq!(
            pace(10 * mib, 10 * mib, Duration::from_millis(400)),
            Some(Duration::from_millis(600))
        );
        assert_eq!(pace(10 * mib, 10 * mib, Duration::from_secs(2)), None);
    }
}
