//! The snapshot file format of keyed state.
//!
//! A file holds the state of one subtask: a magic header, then one section
//! per key group that has state. Each section is the postcard encoding of
//! the key group's [`TableBlob`]s (one per table with entries). The
//! manifest records where each section is ([`KeyGroupSpan`]) and the
//! CRC-32C of the whole file, so a restore can take any subset of key
//! groups and detect a corrupt file before using it.

use crate::codec::{decode, encode};
use crate::error::StateError;
use crate::store::{FrozenTable, StateKind};
use serde::{Deserialize, Serialize};
use weir_protocol::checkpoint::KeyGroupSpan;
use weir_protocol::{KeyGroupRange, StateFile, StateFileFormat};

/// Writes one file of a snapshot to checkpoint storage: (path relative to
/// the job's directory, contents).
pub type PutFile<'a> = dyn FnMut(&str, Vec<u8>) -> Result<(), StateError> + 'a;

/// First bytes of every keyed-state snapshot file.
pub const MAGIC: &[u8; 8] = b"WEIRKG01";

/// One table's entries in one key group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableBlob {
    /// The table's name.
    pub name: String,
    /// What kind of table it is.
    pub kind: StateKind,
    /// The table's own encoding of its entries.
    pub data: Vec<u8>,
}

/// A backend's own snapshot of a subtask's state (a RocksDB checkpoint on
/// local disk, …), taken on the task thread and written from another.
///
/// # Contract
///
/// - The files [`write`](Self::write) puts are listed in the returned
///   [`StateFile`]s with their size and CRC-32C and the format
///   [`StateFileFormat::Native`](weir_protocol::StateFileFormat::Native)
///   of the backend; [`NativeFiles`] of them, downloaded, restore the state.
/// - A file of this checkpoint alone goes under `task_dir`; an immutable
///   file later checkpoints may reference goes to
///   [`paths::shared_file`](weir_protocol::checkpoint::paths::shared_file)
///   (retention deletes it once no kept checkpoint lists it). A file an
///   earlier complete checkpoint already wrote is listed, not put again
///   (see [`SortedKv::checkpoint_complete`](crate::SortedKv::checkpoint_complete)).
pub trait NativeSnapshot: Send + Sync + std::fmt::Debug {
    /// Writes the snapshot's files with `put(job-relative path, bytes)`;
    /// `task_dir` is the subtask's directory of this checkpoint.
    fn write(&self, task_dir: &str, put: &mut PutFile<'_>) -> Result<Vec<StateFile>, StateError>;
}

/// The files of a backend's own snapshot of one subtask, downloaded for a
/// restore.
#[derive(Debug, Clone)]
pub struct NativeFiles {
    /// The backend that wrote them.
    pub backend: String,
    /// The key groups they hold.
    pub key_groups: KeyGroupRange,
    /// Files read into memory: name inside the instance, and contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// Shared (immutable) files already on this machine's disk, verified
    /// against their checksums: name inside the instance, and where the
    /// copy is. The backend links or copies them; it never changes the copy.
    pub local: Vec<(String, std::path::PathBuf)>,
}

impl NativeFiles {
    /// No files yet of `backend`'s snapshot of `key_groups`.
    pub fn new(backend: &str, key_groups: KeyGroupRange) -> Self {
        Self {
            backend: backend.to_owned(),
            key_groups,
            files: Vec::new(),
            local: Vec::new(),
        }
    }
}

/// A store's state at a snapshot, ready to write: frozen heap tables, or a
/// backend's own snapshot.
pub struct StoreSnapshot {
    data: SnapshotData,
}

enum SnapshotData {
    Sections {
        key_groups: KeyGroupRange,
        tables: Vec<Box<dyn FrozenTable>>,
    },
    Native(Box<dyn NativeSnapshot>),
}

impl std::fmt::Debug for StoreSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.data {
            SnapshotData::Sections { key_groups, tables } => f
                .debug_struct("StoreSnapshot")
                .field("key_groups", key_groups)
                .field("tables", &tables.len())
                .finish(),
            SnapshotData::Native(native) => native.fmt(f),
        }
    }
}

/// An encoded snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSnapshot {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Where each key group is in `bytes`.
    pub key_groups: Vec<KeyGroupSpan>,
    /// CRC-32C of `bytes`.
    pub crc32c: u32,
}

impl StoreSnapshot {
    pub(crate) fn sections(key_groups: KeyGroupRange, tables: Vec<Box<dyn FrozenTable>>) -> Self {
        Self {
            data: SnapshotData::Sections { key_groups, tables },
        }
    }

    pub(crate) fn native(snapshot: Box<dyn NativeSnapshot>) -> Self {
        Self {
            data: SnapshotData::Native(snapshot),
        }
    }

    /// Whether there is nothing to write (a heap store without tables).
    pub fn is_empty(&self) -> bool {
        matches!(&self.data, SnapshotData::Sections { tables, .. } if tables.is_empty())
    }

    /// Writes the snapshot with `put(job-relative path, bytes)` and returns
    /// the files for the manifest. `task_dir` is the subtask's directory of
    /// this checkpoint (`chk-…/{vertex}-{subtask}`).
    pub fn write(
        &self,
        task_dir: &str,
        put: &mut PutFile<'_>,
    ) -> Result<Vec<StateFile>, StateError> {
        match &self.data {
            SnapshotData::Native(native) => native.write(task_dir, put),
            SnapshotData::Sections { .. } => {
                let encoded = self.encode()?;
                if encoded.key_groups.is_empty() {
                    return Ok(Vec::new());
                }
                let path = format!("{task_dir}/keyed.state");
                let file = StateFile {
                    path: path.clone(),
                    size: encoded.bytes.len() as u64,
                    crc32c: encoded.crc32c,
                    key_groups: encoded.key_groups,
                    format: StateFileFormat::KeyGroupSections,
                };
                put(&path, encoded.bytes)?;
                Ok(vec![file])
            }
        }
    }

    /// Encodes every key group of a heap snapshot into one file.
    pub fn encode(&self) -> Result<EncodedSnapshot, StateError> {
        let SnapshotData::Sections { key_groups, tables } = &self.data else {
            return Err(StateError::BackendMismatch {
                operator: "snapshot".into(),
                problem: "a backend's own snapshot is a set of files; write it instead".into(),
            });
        };
        let mut bytes = MAGIC.to_vec();
        let mut spans = Vec::new();
        for key_group in key_groups.iter() {
            let mut blobs = Vec::new();
            for table in tables {
                if let Some(data) = table.encode_key_group(key_group)? {
                    blobs.push(TableBlob {
                        name: table.name().to_owned(),
                        kind: table.kind(),
                        data,
                    });
                }
            }
            if blobs.is_empty() {
                continue;
            }
            let section = encode(&blobs, "snapshot")?;
            spans.push(KeyGroupSpan {
                key_group,
                offset: bytes.len() as u64,
                len: section.len() as u64,
            });
            bytes.extend_from_slice(&section);
        }
        let crc32c = crc32c::crc32c(&bytes);
        Ok(EncodedSnapshot {
            bytes,
            key_groups: spans,
            crc32c,
        })
    }
}

/// Checks any checkpoint file's checksum.
pub fn verify_checksum(bytes: &[u8], expected_crc32c: u32, path: &str) -> Result<(), StateError> {
    let actual = crc32c::crc32c(bytes);
    if actual != expected_crc32c {
        return Err(StateError::ChecksumMismatch {
            path: path.to_owned(),
            expected: expected_crc32c,
            actual,
        });
    }
    Ok(())
}

/// Checks a key-group section file's checksum and header.
pub fn verify(bytes: &[u8], expected_crc32c: u32, path: &str) -> Result<(), StateError> {
    verify_checksum(bytes, expected_crc32c, path)?;
    if !bytes.starts_with(MAGIC) {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            problem: "not a keyed-state snapshot (bad magic)".into(),
        });
    }
    Ok(())
}

/// Checks checkpoint file `file`'s `bytes` (read from `path`) against what
/// the manifest records: its size, its checksum, and for a keyed-state
/// section file its header. Every reader of checkpoint files (restore,
/// the coordinator's restore-point check, `weir checkpoints verify`, the
/// local replica tiers) checks them through this one function.
pub fn check_file(bytes: &[u8], file: &StateFile, path: &str) -> Result<(), StateError> {
    if bytes.len() as u64 != file.size {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            problem: format!("size {} but the manifest says {}", bytes.len(), file.size),
        });
    }
    match file.format {
        StateFileFormat::Native { .. } => verify_checksum(bytes, file.crc32c, path),
        StateFileFormat::KeyGroupSections => verify(bytes, file.crc32c, path),
    }
}

/// [`check_file`] for a native file read from `reader` in 1 MiB steps
/// rather than held whole in memory: its size and checksum, with the same
/// errors; a read that fails is [`StateError::LocalIo`].
pub fn check_native_stream(
    mut reader: impl std::io::Read,
    file: &StateFile,
    path: &str,
) -> Result<(), StateError> {
    let mut buffer = vec![0u8; 1 << 20];
    let (mut size, mut crc) = (0u64, 0u32);
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(StateError::LocalIo {
                    action: "reading",
                    path: path.to_owned(),
                    source,
                })
            }
        };
        crc = crc32c::crc32c_append(crc, &buffer[..n]);
        size += n as u64;
    }
    if size != file.size {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            problem: format!("size {size} but the manifest says {}", file.size),
        });
    }
    if crc != file.crc32c {
        return Err(StateError::ChecksumMismatch {
            path: path.to_owned(),
            expected: file.crc32c,
            actual: crc,
        });
    }
    Ok(())
}

/// The section of key group `span` in a verified file.
pub fn section<'a>(
    bytes: &'a [u8],
    span: &KeyGroupSpan,
    path: &str,
) -> Result<&'a [u8], StateError> {
    let start = usize::try_from(span.offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(span.len).unwrap_or(usize::MAX));
    bytes.get(start..end).ok_or_else(|| StateError::Corrupt {
        path: path.to_owned(),
        problem: format!(
            "key group {} at {}..{} lies outside the file ({} bytes)",
            span.key_group,
            start,
            end,
            bytes.len()
        ),
    })
}

/// The table blobs of one section.
pub(crate) fn decode_key_group(section: &[u8]) -> Result<Vec<TableBlob>, StateError> {
    decode(section, "snapshot")
}

/// The tables of one key group's section, with their encoded entries (for
/// inspection tools).
pub fn table_blobs(section: &[u8]) -> Result<Vec<TableBlob>, StateError> {
    decode_key_group(section)
}
