//! [`CheckpointCatalog`]: the checkpoints of one job as found in storage.

use crate::error::CoordinatorError;
use weir_protocol::checkpoint::{paths, MANIFEST_VERSION, OLDEST_MANIFEST_VERSION};
use weir_protocol::cluster::RestorePoint;
use weir_protocol::{CheckpointManifest, Epoch};
use weir_state::{CheckpointStorage, StateError};

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

/// Splits `…/{job}` into the storage root and the job id.
fn split_last(location: &str) -> Option<(String, String)> {
    let (root, last) = location.trim_end_matches('/').rsplit_once('/')?;
    if last.is_empty() {
        return None;
    }
    // `file:///x` keeps its slashes: `file://` + `/x`.
    let root = if root.is_empty() || root.ends_with(':') {
        format!("{root}/")
    } else {
        root.to_owned()
    };
    Some((root, last.to_owned()))
}

impl CheckpointCatalog {
    /// Opens the catalog of a job from its directory's URL or path
    /// (`{checkpoint-dir}/{job}`).
    pub fn open_job(location: &str) -> Result<Self, CoordinatorError> {
        let (root, job) = split_last(location).ok_or_else(|| CoordinatorError::NotRestorable {
            location: location.to_owned(),
            problem: "expected a job directory: {checkpoint-dir}/{job}".into(),
        })?;
        Ok(Self::new(CheckpointStorage::open(&root)?, &job))
    }

    /// Opens the catalog holding a checkpoint from the checkpoint
    /// directory's URL or path (`{checkpoint-dir}/{job}/chk-NNNNNNNNNN`).
    pub fn open_checkpoint(location: &str) -> Result<(Self, Epoch), CoordinatorError> {
        let bad = |problem: &str| CoordinatorError::NotRestorable {
            location: location.to_owned(),
            problem: problem.to_owned(),
        };
        let (job_dir, name) =
            split_last(location).ok_or_else(|| bad("expected …/{job}/chk-NNNNNNNNNN"))?;
        let epoch = paths::parse_checkpoint_name(&name).ok_or_else(|| {
            bad("its last part is not a checkpoint directory name (chk-NNNNNNNNNN)")
        })?;
        Ok((Self::open_job(job_dir.trim_end_matches('/'))?, epoch))
    }

    /// Opens a checkpoint named by its directory's URL or path, which must
    /// be complete and verify; returns its catalog and manifest.
    pub fn open_restorable(location: &str) -> Result<(Self, CheckpointManifest), CoordinatorError> {
        let (catalog, epoch) = Self::open_checkpoint(location)?;
        if !catalog.is_complete(epoch)? {
            return Err(CoordinatorError::NotRestorable {
                location: location.to_owned(),
                problem: "it has no commit marker (it never completed)".into(),
            });
        }
        let manifest = catalog.manifest(epoch)?;
        catalog.verify(&manifest)?;
        Ok((catalog, manifest))
    }

    /// Whether checkpoint `epoch` has its commit marker.
    pub fn is_complete(&self, epoch: Epoch) -> Result<bool, CoordinatorError> {
        Ok(self.storage.exists(&paths::committed(&self.job, epoch))?)
    }

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

    /// `manifest`, one of this job's checkpoints, as a deployment resumes from it.
    pub fn restore_point(&self, manifest: CheckpointManifest) -> RestorePoint {
        RestorePoint {
            storage_url: self.storage.url().to_owned(),
            job_id: self.job.clone(),
            manifest,
        }
    }

    /// Whether anything at all is stored under the job's directory.
    pub fn exists(&self) -> Result<bool, CoordinatorError> {
        let listing = self.storage.list_dir(&paths::job_dir(&self.job))?;
        Ok(!listing.dirs.is_empty() || !listing.files.is_empty())
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

    /// Checks that every file `manifest` references exists with its size.
    pub fn check_present(&self, manifest: &CheckpointManifest) -> Result<(), StateError> {
        let present: std::collections::HashMap<String, u64> = self
            .storage
            .list_files(&paths::job_dir(&self.job))?
            .into_iter()
            .collect();
        for file in manifest.files() {
            match present.get(&file.path) {
                Some(size) if *size == file.size => {}
                Some(size) => {
                    return Err(StateError::Corrupt {
                        path: file.path.clone(),
                        problem: format!("size {size} but the manifest says {}", file.size),
                    })
                }
                None => {
                    return Err(StateError::NotFound {
                        path: file.path.clone(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Checks that every file `manifest` references exists and matches its
    /// checksum; the first problem found is the error.
    pub fn verify(&self, manifest: &CheckpointManifest) -> Result<(), StateError> {
        for file in manifest.files() {
            self.read_checked(file)?;
        }
        Ok(())
    }

    /// The bytes of a file a manifest references, checked against its size
    /// and checksum.
    pub fn read_checked(&self, file: &weir_protocol::StateFile) -> Result<Vec<u8>, StateError> {
        self.storage.get_checked(&self.job, file)
    }

    /// The newest complete checkpoint whose manifest parses and whose files
    /// verify. Checkpoints that fail are skipped with a warning naming the
    /// problem (a corrupt file falls back to the checkpoint before it).
    /// Storage that does not answer is an error, never a reason to skip: an
    /// outage must not look like a store without checkpoints.
    pub fn latest_restorable(&self) -> Result<Option<CheckpointManifest>, CoordinatorError> {
        self.latest_checked(true)
    }

    /// Like [`latest_restorable`](Self::latest_restorable), but checks only
    /// that every file is present with its size (one listing, no reads):
    /// for a fast restart, where the workers check every checksum as they
    /// read (a mismatch fails the attempt, and the next one verifies fully).
    pub fn latest_present(&self) -> Result<Option<CheckpointManifest>, CoordinatorError> {
        self.latest_checked(false)
    }

    fn latest_checked(
        &self,
        checksums: bool,
    ) -> Result<Option<CheckpointManifest>, CoordinatorError> {
        let complete: Vec<Epoch> = self
            .list()?
            .into_iter()
            .filter(|e| e.status == CheckpointStatus::Complete)
            .map(|e| e.epoch)
            .rev()
            .collect();
        self.first_usable(&complete, checksums)
    }

    /// Where a restart of a job resumes: the newest checkpoint its control
    /// record's `pointer` allows (see [`restore_candidates`]) that checks
    /// out, verifying every checksum when `checksums`. A pointer whose
    /// commit marker is missing (the leader stopped between the two) gets
    /// its marker first: the pointer is what made it complete.
    pub fn latest_for_restart(
        &self,
        pointer: Option<Epoch>,
        floor: Option<Epoch>,
        checksums: bool,
    ) -> Result<Option<CheckpointManifest>, CoordinatorError> {
        let entries = self.list()?;
        if let Some(pointer) = pointer {
            self.repair_marker(&entries, pointer)?;
        }
        let candidates = restore_candidates(&entries, pointer, floor);
        self.first_usable(&candidates, checksums)
    }

    /// Writes the commit marker of checkpoint `pointer` when its manifest
    /// exists and the marker does not.
    pub fn repair_marker(
        &self,
        entries: &[CheckpointEntry],
        pointer: Epoch,
    ) -> Result<(), CoordinatorError> {
        let orphaned = entries
            .iter()
            .any(|e| e.epoch == pointer && e.status == CheckpointStatus::Orphaned);
        if orphaned
            && self
                .storage
                .put_if_absent(&paths::committed(&self.job, pointer), Vec::new())?
        {
            tracing::warn!(job = %self.job, epoch = pointer.0, "wrote the missing commit marker of the job's latest completed checkpoint");
        }
        Ok(())
    }

    fn first_usable(
        &self,
        newest_first: &[Epoch],
        checksums: bool,
    ) -> Result<Option<CheckpointManifest>, CoordinatorError> {
        for &epoch in newest_first {
            let manifest = match self.manifest(epoch) {
                Ok(manifest) => manifest,
                // An outage is not an answer: this checkpoint may be fine.
                Err(error) if weir_state::storage_unavailable_in(&error) => return Err(error),
                Err(error) => {
                    tracing::warn!(job = %self.job, epoch = epoch.0, error = &error as &dyn std::error::Error, "skipping checkpoint with an unreadable manifest");
                    continue;
                }
            };
            let checked = if checksums {
                self.verify(&manifest)
            } else {
                self.check_present(&manifest)
            };
            match checked {
                Ok(()) => return Ok(Some(manifest)),
                Err(error) if error.is_storage_unavailable() => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(job = %self.job, epoch = epoch.0, error = &error as &dyn std::error::Error, "skipping checkpoint that fails verification; falling back to the one before");
                }
            }
        }
        Ok(None)
    }
}

/// What a retention pass deleted, or would delete in a dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    /// The complete checkpoints kept.
    pub kept: Vec<Epoch>,
    /// Deleted files: path relative to the job directory, and size.
    pub deleted: Vec<(String, u64)>,
}

impl CheckpointCatalog {
    /// Keeps the newest `keep` complete checkpoints (at least 1) and
    /// deletes the directories of older ones and of any older checkpoint
    /// that never completed, plus shared files, except every file a kept
    /// manifest references. Savepoints are never deleted.
    ///
    /// Nothing newer than the newest complete checkpoint is touched: it may
    /// be the checkpoint a running job has in flight. A checkpoint's commit
    /// marker goes first, so a half-deleted checkpoint never looks complete.
    pub fn retain(&self, keep: usize, dry_run: bool) -> Result<RetentionReport, CoordinatorError> {
        let entries = self.list()?;
        let complete: Vec<Epoch> = entries
            .iter()
            .filter(|e| e.status == CheckpointStatus::Complete)
            .map(|e| e.epoch)
            .collect();
        let Some(&newest) = complete.last() else {
            return Ok(RetentionReport::default());
        };
        let mut kept: Vec<Epoch> = complete.iter().rev().take(keep.max(1)).copied().collect();
        // Savepoints are kept until deleted by hand, whatever `keep` says.
        for &epoch in &complete {
            if !kept.contains(&epoch) && self.manifest(epoch)?.savepoint {
                kept.push(epoch);
            }
        }
        let mut referenced = std::collections::HashSet::new();
        for &epoch in &kept {
            for file in self.manifest(epoch)?.files() {
                referenced.insert(file.path.clone());
            }
        }
        let mut doomed = Vec::new();
        for entry in entries
            .iter()
            .filter(|e| e.epoch < newest && !kept.contains(&e.epoch))
        {
            let name = paths::checkpoint_name(entry.epoch);
            let mut files = self
                .storage
                .list_files(&paths::checkpoint_dir(&self.job, entry.epoch))?;
            files.sort_by_key(|(f, _)| (f != paths::COMMITTED, f != paths::MANIFEST));
            doomed.extend(
                files
                    .into_iter()
                    .map(|(f, size)| (format!("{name}/{f}"), size)),
            );
        }
        // Shared files (incremental RocksDB SSTs) are named
        // `shared/{instance}/{epoch}-{name}` after the checkpoint that
        // uploaded them; one newer than the newest complete checkpoint may
        // belong to the checkpoint in flight.
        let shared_dir = format!("{}/{}", paths::job_dir(&self.job), paths::SHARED);
        for (file, size) in self.storage.list_files(&shared_dir)? {
            if paths::shared_file_epoch(&file).is_some_and(|epoch| epoch < newest) {
                doomed.push((format!("{}/{file}", paths::SHARED), size));
            }
        }
        doomed.retain(|(path, _)| !referenced.contains(path));
        if !dry_run {
            for (path, _) in &doomed {
                self.storage
                    .delete(&format!("{}/{path}", paths::job_dir(&self.job)))?;
                crate::crash::point("during-retention");
            }
        }
        Ok(RetentionReport {
            kept,
            deleted: doomed,
        })
    }
}

/// The checkpoints a restart may resume from, newest first (pure): those
/// complete in `entries`, no newer than the job's control-store `pointer`
/// (a checkpoint is complete only once its pointer was written; none
/// without one) and newer than `floor` (the newest epoch of an earlier run
/// of the same job id), plus the pointer's own checkpoint when only its
/// commit marker is missing.
pub fn restore_candidates(
    entries: &[CheckpointEntry],
    pointer: Option<Epoch>,
    floor: Option<Epoch>,
) -> Vec<Epoch> {
    let Some(pointer) = pointer else {
        return Vec::new();
    };
    let mut candidates: Vec<Epoch> = entries
        .iter()
        .filter(|e| e.epoch <= pointer && Some(e.epoch) > floor)
        .filter(|e| {
            e.status == CheckpointStatus::Complete
                || (e.epoch == pointer && e.status == CheckpointStatus::Orphaned)
        })
        .map(|e| e.epoch)
        .collect();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    candidates
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
    if !(OLDEST_MANIFEST_VERSION..=MANIFEST_VERSION).contains(&manifest.version) {
        return Err(CoordinatorError::UnsupportedManifest {
            epoch,
            version: manifest.version,
            supported: MANIFEST_VERSION,
        });
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: u64, status: CheckpointStatus) -> CheckpointEntry {
        CheckpointEntry {
            epoch: Epoch(epoch),
            status,
        }
    }

    #[test]
    fn a_restart_resumes_at_most_from_the_pointer_and_above_the_floor() {
        use CheckpointStatus::*;
        let entries = [
            entry(3, Complete),
            entry(7, Complete),
            entry(8, Complete),
            entry(9, Orphaned),
            entry(10, Incomplete),
        ];
        let epochs = |v: Vec<Epoch>| v.into_iter().map(|e| e.0).collect::<Vec<_>>();
        // No pointer: nothing of this job's own completed.
        assert!(restore_candidates(&entries, None, None).is_empty());
        assert_eq!(
            epochs(restore_candidates(&entries, Some(Epoch(8)), None)),
            [8, 7, 3]
        );
        // A deposed leader's marker beyond the pointer is never chosen.
        assert_eq!(
            epochs(restore_candidates(&entries, Some(Epoch(7)), Some(Epoch(3)))),
            [7]
        );
        // The pointer's checkpoint lost only its marker: still a candidate.
        assert_eq!(
            epochs(restore_candidates(&entries, Some(Epoch(9)), Some(Epoch(7)))),
            [9, 8]
        );
        // An orphan that is not the pointer is not.
        assert_eq!(
            epochs(restore_candidates(
                &entries,
                Some(Epoch(10)),
                Some(Epoch(8))
            )),
            Vec::<u64>::new()
        );
    }
}
