//! [`OwnedDir`]: a directory one process owns for as long as it lives,
//! under a parent that several processes share (RocksDB instances, the
//! worker's replica copies).
//!
//! Next to each owned directory `{id}/` lies `{id}.lock`, which its owner
//! holds an exclusive file lock on until it exits. A process killed with
//! SIGKILL cannot delete its directory, but the kernel releases its lock,
//! so the next process to claim a directory under the same parent deletes
//! every directory whose lock it can take. A paused or busy owner keeps its
//! lock, and a reused process id means nothing.
//!
//! The parent must be on a local filesystem: over NFS, `flock` is emulated
//! with POSIX locks, which do not exclude another open file of the same
//! process.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A directory this process owns; deleted, with its lock file, on drop.
#[derive(Debug)]
pub struct OwnedDir {
    path: PathBuf,
    lock_path: PathBuf,
    // Held for the directory's lifetime; closing it releases the lock.
    _lock: File,
}

impl OwnedDir {
    /// Deletes the abandoned directories under `parent` (creating it if
    /// needed), then claims a new one with a random name.
    pub fn claim(parent: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        remove_abandoned(parent);
        loop {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let lock_path = parent.join(format!("{id}.lock"));
            let lock = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock_path)?;
            lock.lock()?;
            // Another process's cleanup may have taken the lock between the
            // create and the lock, and deleted the file: claim another.
            if !is_same_file(&lock, &lock_path) {
                continue;
            }
            let path = parent.join(&id);
            std::fs::create_dir_all(&path)?;
            return Ok(Self {
                path,
                lock_path,
                _lock: lock,
            });
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OwnedDir {
    fn drop(&mut self) {
        // The lock file goes only with the directory: it is how the next
        // cleanup finds a directory that could not be deleted now.
        match std::fs::remove_dir_all(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(dir = %self.path.display(), error = &error as &dyn std::error::Error, "deleting an owned directory failed; the next process to claim one retries");
            }
            _ => {
                let _ = std::fs::remove_file(&self.lock_path);
            }
        }
    }
}

fn is_same_file(open: &File, path: &Path) -> bool {
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Deletes every directory under `parent` whose lock file no process holds.
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let lock_path = entry.path();
        let Some(id) = lock_path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".lock"))
        else {
            continue;
        };
        let Ok(lock) = OpenOptions::new().write(true).open(&lock_path) else {
            continue;
        };
        // Held: its owner lives. Taken: delete while holding it, the
        // directory before the lock file, so that a crash in between
        // leaves a lock file the next cleanup finds again.
        if lock.try_lock().is_ok() {
            let dir = parent.join(id);
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = &error as &dyn std::error::Error, "deleting an abandoned directory failed");
                    continue;
                }
            }
            let _ = std::fs::remove_file(&lock_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_whose_owner_is_gone_is_deleted_by_the_next_claim() {
        let parent = tempfile::tempdir().unwrap();
        let live = OwnedDir::claim(parent.path()).unwrap();
        std::fs::write(live.path().join("data"), b"x").unwrap();
        // An owner killed with SIGKILL: its lock file and directory stay,
        // no process holds the lock.
        let abandoned = parent.path().join("0123abcd");
        std::fs::create_dir_all(abandoned.join("sub")).unwrap();
        std::fs::write(parent.path().join("0123abcd.lock"), b"").unwrap();
        // Not ours (no lock file): left alone.
        let foreign = parent.path().join("something-else");
        std::fs::create_dir_all(&foreign).unwrap();

        let next = OwnedDir::claim(parent.path()).unwrap();
        assert!(!abandoned.exists());
        assert!(!parent.path().join("0123abcd.lock").exists());
        assert!(
            live.path().join("data").exists(),
            "a live owner keeps its directory"
        );
        assert!(foreign.exists());
        assert_ne!(live.path(), next.path());

        let gone = next.path().to_owned();
        drop(next);
        assert!(!gone.exists());
    }
}
