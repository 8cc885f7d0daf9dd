//! [`StateReplicas`]: a worker's local copies of checkpoint files, the
//! first two tiers of replicated state.
//!
//! - **own**: every file this worker's subtasks uploaded, kept as written;
//! - **peer**: files other workers pushed to this one at checkpoint time
//!   (`state.replicas` peers each, over the data-exchange connection).
//!
//! A restore reads a file from here when a copy matches the manifest's
//! size and checksum, and from checkpoint storage (the third tier) only
//! otherwise. The copies live in an [`OwnedDir`] under
//! `{data dir}/replicas/`: a process killed with SIGKILL cannot delete its
//! own, so the next worker to start deletes those whose owner is gone.

use crate::net::FileInbox;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use weir_protocol::cluster::RestoreTier;
use weir_protocol::StateFile;
use weir_state::owned_dir::OwnedDir;
use weir_state::snapshot;

/// Who wrote a local copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This worker's own snapshot.
    Own,
    /// A replica pushed by a peer.
    Peer,
}

impl Origin {
    fn dir(self) -> &'static str {
        match self {
            Origin::Own => "own",
            Origin::Peer => "peer",
        }
    }
}

/// A worker's local copies of checkpoint files.
#[derive(Debug)]
pub struct StateReplicas {
    root: PathBuf,
    /// Deletes `root` when the copies are dropped.
    _dir: OwnedDir,
    /// The newest checkpoint stored per job, to prune older ones.
    newest: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// Checkpoints whose private files are kept locally per job (the default
/// retention); older ones are read from storage if ever restored.
const KEPT_CHECKPOINTS: u64 = 3;

/// Whether a relative path stays inside the directory it is joined to.
fn is_contained(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

impl StateReplicas {
    /// Copies in a directory this process owns under `parent`, claimed
    /// after deleting those of processes that were killed.
    pub fn open(parent: &Path) -> std::io::Result<Self> {
        let dir = OwnedDir::claim(parent)?;
        Ok(Self {
            root: dir.path().to_owned(),
            _dir: dir,
            newest: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Copies under the data directory (`$WEIR_DATA_DIR/replicas`).
    pub fn default_location() -> std::io::Result<Self> {
        Self::open(&weir_state::storage::data_dir().join("replicas"))
    }

    fn file(&self, origin: Origin, job_id: &str, path: &str) -> Option<PathBuf> {
        (is_contained(job_id) && is_contained(path))
            .then(|| self.root.join(origin.dir()).join(job_id).join(path))
    }

    /// Where a copy of `path` goes, its directory created; an error for a
    /// path outside the replica directory.
    fn writable(&self, origin: Origin, job_id: &str, path: &str) -> std::io::Result<PathBuf> {
        let target = self.file(origin, job_id, path).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad replica path {job_id}/{path}"),
            )
        })?;
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(target)
    }

    /// Stores a whole file.
    pub fn store(
        &self,
        origin: Origin,
        job_id: &str,
        path: &str,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        self.store_part(origin, job_id, path, 0, bytes.len() as u64, bytes)
    }

    /// Stores part of a file (parts arrive in order); the file appears
    /// under its name once its last part is written.
    pub fn store_part(
        &self,
        origin: Origin,
        job_id: &str,
        path: &str,
        offset: u64,
        total: u64,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let target = self.writable(origin, job_id, path)?;
        let partial = target.with_extension("partial");
        let mut file = if offset == 0 {
            File::create(&partial)?
        } else {
            OpenOptions::new().write(true).open(&partial)?
        };
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(bytes)?;
        if offset + bytes.len() as u64 >= total {
            drop(file);
            std::fs::rename(&partial, &target)?;
            self.note_epoch(job_id, path);
        }
        Ok(())
    }

    /// Stores a whole file through a temporary file of its own (not the
    /// one a peer's push of the same file writes), calling `paced` with
    /// the bytes written so far after each chunk: a new spare's catch-up.
    pub fn store_paced(
        &self,
        origin: Origin,
        job_id: &str,
        path: &str,
        bytes: &[u8],
        mut paced: impl FnMut(u64),
    ) -> std::io::Result<()> {
        let target = self.writable(origin, job_id, path)?;
        let temporary = target.with_extension("catch-up");
        let mut file = File::create(&temporary)?;
        let mut written = 0u64;
        for chunk in bytes.chunks(4 << 20) {
            file.write_all(chunk)?;
            written += chunk.len() as u64;
            paced(written);
        }
        drop(file);
        // A push of the same file may have landed meanwhile: the bytes are
        // the same (both are checked against the manifest).
        std::fs::rename(&temporary, &target)?;
        self.note_epoch(job_id, path);
        Ok(())
    }

    /// A file of a newer checkpoint arrived: prune the oldest copies.
    fn note_epoch(&self, job_id: &str, path: &str) {
        let first = path.split('/').next().unwrap_or_default();
        let Some(epoch) = weir_protocol::checkpoint::paths::parse_checkpoint_name(first) else {
            return;
        };
        let newer = {
            let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
            let seen = newest.entry(job_id.to_owned()).or_insert(0);
            let newer = epoch.0 > *seen;
            *seen = (*seen).max(epoch.0);
            newer
        };
        if newer && epoch.0 > KEPT_CHECKPOINTS {
            self.prune(job_id, epoch.0 + 1 - KEPT_CHECKPOINTS);
        }
    }

    /// The first local copy of `file` (of job `job_id`), own before peer,
    /// that `check` finds there (`None`: no copy) and accepts: where it is,
    /// what `check` made of it, and which tier it is.
    fn first_copy<T>(
        &self,
        job_id: &str,
        file: &StateFile,
        check: impl Fn(&Path) -> Option<Result<T, weir_state::StateError>>,
    ) -> Option<(PathBuf, T, RestoreTier)> {
        for (origin, tier) in [
            (Origin::Own, RestoreTier::Local),
            (Origin::Peer, RestoreTier::Peer),
        ] {
            let path = self.file(origin, job_id, &file.path)?;
            match check(&path) {
                None => {}
                Some(Ok(checked)) => return Some((path, checked, tier)),
                Some(Err(error)) => {
                    tracing::warn!(path = %path.display(), error = &error as &dyn std::error::Error, "a local copy does not match its checkpoint; ignoring it")
                }
            }
        }
        None
    }

    /// The first verified local copy of `file`: where it is, its bytes,
    /// and which tier it is.
    fn verified(&self, job_id: &str, file: &StateFile) -> Option<(PathBuf, Vec<u8>, RestoreTier)> {
        self.first_copy(job_id, file, |path| {
            let bytes = std::fs::read(path).ok()?;
            Some(snapshot::check_file(&bytes, file, &file.path).map(|()| bytes))
        })
    }

    /// Where a verified local copy of `file` is, and which tier it is. A
    /// native file (whose check is its size and checksum) is checked as it
    /// streams through a small buffer rather than read whole: restoring
    /// 500 MB of RocksDB files spent about half its time allocating and
    /// filling a buffer nobody used.
    pub fn verified_path(&self, job_id: &str, file: &StateFile) -> Option<(PathBuf, RestoreTier)> {
        let found = if matches!(file.format, weir_protocol::StateFileFormat::Native { .. }) {
            self.first_copy(job_id, file, |path| {
                let copy = File::open(path).ok()?;
                Some(snapshot::check_native_stream(copy, file, &file.path))
            })
        } else {
            self.verified(job_id, file)
                .map(|(path, _, tier)| (path, (), tier))
        };
        found.map(|(path, (), tier)| (path, tier))
    }

    /// The bytes of a verified local copy of `file`, and which tier it is.
    pub fn load(&self, job_id: &str, file: &StateFile) -> Option<(Vec<u8>, RestoreTier)> {
        self.verified(job_id, file)
            .map(|(_, bytes, tier)| (bytes, tier))
    }

    /// Deletes the copies of `job_id`'s private checkpoint directories
    /// older than `oldest_kept` (shared files stay: newer checkpoints may
    /// reference them).
    pub fn prune(&self, job_id: &str, oldest_kept: u64) {
        for origin in [Origin::Own, Origin::Peer] {
            let Some(dir) = self.file(origin, job_id, "x") else {
                return;
            };
            let Some(dir) = dir.parent() else { return };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let epoch = weir_protocol::checkpoint::paths::parse_checkpoint_name(&name);
                if epoch.is_some_and(|e| e.0 < oldest_kept) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

/// Files peers push are replicas of their checkpoint files.
impl FileInbox for StateReplicas {
    fn store_part(
        &self,
        job_id: &str,
        path: &str,
        offset: u64,
        total: u64,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        StateReplicas::store_part(self, Origin::Peer, job_id, path, offset, total, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_file(path: &str, bytes: &[u8]) -> StateFile {
        StateFile {
            path: path.into(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
            key_groups: Vec::new(),
            // SSTs are RocksDB's; the rest are keyed-state section files.
            format: if path.ends_with(".sst") {
                weir_protocol::StateFileFormat::Native {
                    backend: "rocksdb".into(),
                    name: "1.sst".into(),
                }
            } else {
                Default::default()
            },
        }
    }

    /// A keyed-state section file's bytes: its header, then `body`.
    fn section_bytes(body: &[u8]) -> Vec<u8> {
        [weir_state::snapshot::MAGIC.as_slice(), body].concat()
    }

    #[test]
    fn copies_are_served_by_tier_and_only_when_they_verify() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = StateReplicas::open(dir.path()).unwrap();
        let own_bytes = section_bytes(b"own bytes");
        let own = state_file("chk-0000000003/v1-0/keyed.state", &own_bytes);
        let peer = state_file("shared/x/0000000003-1.sst", b"peer bytes, in parts");
        replicas
            .store(Origin::Own, "job", &own.path, &own_bytes)
            .unwrap();
        replicas
            .store_part(Origin::Peer, "job", &peer.path, 0, 20, b"peer bytes")
            .unwrap();
        assert!(
            replicas.load("job", &peer).is_none(),
            "incomplete until its last part"
        );
        replicas
            .store_part(Origin::Peer, "job", &peer.path, 10, 20, b", in parts")
            .unwrap();
        assert_eq!(replicas.load("job", &own).unwrap().1, RestoreTier::Local);
        assert_eq!(
            replicas.load("job", &peer).unwrap(),
            (b"peer bytes, in parts".to_vec(), RestoreTier::Peer)
        );
        let corrupt = state_file(&own.path, b"other bytes");
        assert!(replicas.load("job", &corrupt).is_none());
        // Size and checksum match, but it is no section file.
        let headless = state_file("chk-0000000003/v1-0/other.state", b"no header");
        replicas
            .store(Origin::Own, "job", &headless.path, b"no header")
            .unwrap();
        assert!(replicas.load("job", &headless).is_none());
        assert!(replicas
            .store(Origin::Peer, "job", "../escape", b"x")
            .is_err());
        replicas.prune("job", 4);
        assert!(
            replicas.load("job", &own).is_none(),
            "older checkpoints are pruned"
        );
        assert!(replicas.load("job", &peer).is_some(), "shared files stay");
    }

    #[test]
    fn a_native_copy_is_found_by_path_only_when_size_and_checksum_match() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = StateReplicas::open(dir.path()).unwrap();
        // Larger than the streaming buffer, so the checksum spans reads.
        let bytes: Vec<u8> = (0..(3u32 << 19)).map(|i| (i % 251) as u8).collect();
        let sst = state_file("shared/x/0000000003-2.sst", &bytes);
        assert!(replicas.verified_path("job", &sst).is_none(), "no copy yet");
        let mut bad = bytes.clone();
        bad[1 << 20] ^= 1;
        replicas.store(Origin::Own, "job", &sst.path, &bad).unwrap();
        assert!(
            replicas.verified_path("job", &sst).is_none(),
            "a flipped bit"
        );
        replicas
            .store(Origin::Peer, "job", &sst.path, &bytes)
            .unwrap();
        let (path, tier) = replicas.verified_path("job", &sst).unwrap();
        assert_eq!(tier, RestoreTier::Peer, "the own copy is corrupt");
        assert_eq!(std::fs::read(path).unwrap(), bytes);
        replicas
            .store(Origin::Own, "job", &sst.path, &bytes[1..])
            .unwrap();
        assert_eq!(
            replicas.verified_path("job", &sst).unwrap().1,
            RestoreTier::Peer,
            "a short own copy"
        );
        replicas
            .store(Origin::Own, "job", &sst.path, &bytes)
            .unwrap();
        assert_eq!(
            replicas.verified_path("job", &sst).unwrap().1,
            RestoreTier::Local
        );
    }
}
