//! [`CheckpointCatalog`]: the checkpoints of one job as found in storage.

use crate::error::CoordinatorError;
use weir_protocol::checkpoint::{paths, MANIFEST_VERSION};
use weir_protocol::{CheckpointManifest, Epoch};
use weir_state::{snapshot, CheckpointStorage, StateError};

/// How far a checkpoint got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointStatus {
    /// Manifest and commit marker written: it can be restored.
    Complete,
    /// Manifest written, marker missing: the coordinator stopped between
    /// the two. Never restored.
    Orphaned,
    /// No manifest: aborted, or still in progress.
    Incomplete,
}

/// One checkpoint directory of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// Its epoch.
    pub epoch: Epoch,
    /// How far it got.
    pub status: CheckpointStatus,
}

/// The checkpoints of one job under a storage root.
#[derive(Debug, Clone)]
pub struct CheckpointCatalog {
    storage: CheckpointStorage,
    job: String,
}

impl CheckpointCatalog {
    /// The catalog of `job` in `storage`.
    pub fn new(storage: CheckpointStorage, job: &str) -> Self {
        Self {
            storage,
            job: job.to_owned(),
        }
    }

    /// The storage.
    pub fn storage(&self) -> &CheckpointStorage {
        &self.storage
    }

    /// The job id.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Every checkpoint directory, oldest first.
    pub fn list(&self) -> Result<Vec<CheckpointEntry>, CoordinatorError> {
        let listing = self.storage.list_dir(&paths::job_dir(&self.job))?;
        let mut entries = Vec::new();
        for name in listing.dirs {
            let Some(epoch) = paths::parse_checkpoint_name(&name) else {
                continue;
            };
            let files = self
                .storage
                .list_dir(&paths::checkpoint_dir(&self.job, epoch))?;
            let has = |file: &str| files.files.iter().any(|(n, _)| n == file);
            let status = match (has(paths::MANIFEST), has(paths::COMMITTED)) {
                (true, true) => CheckpointStatus::Complete,
                (true, false) => CheckpointStatus::Orphaned,
                _ => CheckpointStatus::Incomplete,
            };
            entries.push(CheckpointEntry { epoch, status });
        }
        entries.sort_by_key(|e| e.epoch);
        Ok(entries)
    }

    /// The highest epoch of any checkpoint directory (complete or not).
    pub fn highest_epoch(&self) -> Result<Option<Epoch>, CoordinatorError> {
        Ok(self.list()?.last().map(|e| e.epoch))
    }

    /// Reads and checks checkpoint `epoch`'s manifest.
    pub fn manifest(&self, epoch: Epoch) -> Result<CheckpointManifest, CoordinatorError> {
        let bytes = self.storage.get(&paths::manifest(&self.job, epoch))?;
        parse_manifest(&self.job, epoch, &bytes)
    }

    /// Checks that every file `manifest` references exists and matches its
    /// checksum; the first problem found is the error.
    pub fn verify(&self, manifest: &CheckpointManifest) -> Result<(), StateError> {
        for file in manifest.files() {
            let path = format!("{}/{}", paths::job_dir(&self.job), file.path);
            let bytes = self.storage.get(&path)?;
            if bytes.len() as u64 != file.size {
                return Err(StateError::Corrupt {
                    path,
                    problem: format!("size {} but the manifest says {}", bytes.len(), file.size),
                });
            }
            if file.rocksdb_name.is_some() {
                snapshot::verify_checksum(&bytes, file.crc32c, &path)?;
            } else {
                snapshot::verify(&bytes, file.crc32c, &path)?;
            }
        }
        Ok(())
    }

    /// The newest complete checkpoint whose manifest parses and whose files
    /// verify. Checkpoints that fail are skipped with a warning naming the
    /// problem (a corrupt file falls back to the checkpoint before it).
    pub fn latest_restorable(&self) -> Result<Option<CheckpointManifest>, CoordinatorError> {
        let complete: Vec<Epoch> = self
            .list()?
            .into_iter()
            .filter(|e| e.status == CheckpointStatus::Complete)
            .map(|e| e.epoch)
            .collect();
        for &epoch in complete.iter().rev() {
            let manifest = match self.manifest(epoch) {
                Ok(manifest) => manifest,
                Err(error) => {
                    tracing::warn!(job = %self.job, epoch = epoch.0, error = &error as &dyn std::error::Error, "skipping checkpoint with an unreadable manifest");
                    continue;
                }
            };
            match self.verify(&manifest) {
                Ok(()) => return Ok(Some(manifest)),
                Err(error) => {
                    tracing::warn!(job = %self.job, epoch = epoch.0, error = &error as &dyn std::error::Error, "skipping checkpoint that fails verification; falling back to the one before");
                }
            }
        }
        Ok(None)
    }
}

/// Parses a manifest, checking its version and that it is the one asked for.
pub fn parse_manifest(
    job: &str,
    epoch: Epoch,
    bytes: &[u8],
) -> Result<CheckpointManifest, CoordinatorError> {
    let manifest: CheckpointManifest =
        serde_json::from_slice(bytes).map_err(|source| CoordinatorError::CorruptManifest {
            job: job.to_owned(),
            epoch,
            source,
        })?;
    if manifest.version != MANIFEST_VERSION {
        return Err(CoordinatorError::UnsupportedManifest {
            epoch,
            version: manifest.version,
            supported: MANIFEST_VERSION,
        });
    }
    Ok(manifest)
}
