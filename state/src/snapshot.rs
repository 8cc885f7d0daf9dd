//! The snapshot file format of keyed state.
//!
//! A file holds the state of one subtask: a magic header, then one section
//! per key group that has state. Each section is the postcard encoding of
//! the key group's [`TableBlob`]s (one per table with entries). The
//! manifest records where each section is ([`KeyGroupSpan`]) and the
//! CRC-32C of the whole file, so a restore can take any subset of key
//! groups and detect a corrupt file before using it.

use crate::error::StateError;
use crate::store::{FrozenTable, StateKind};
use crate::tables::{decode, encode};
use serde::{Deserialize, Serialize};
use weir_protocol::checkpoint::KeyGroupSpan;
use weir_protocol::{KeyGroup, KeyGroupRange};

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

/// A store's tables frozen at a snapshot, ready to encode.
pub struct StoreSnapshot {
    key_groups: KeyGroupRange,
    tables: Vec<Box<dyn FrozenTable>>,
}

impl std::fmt::Debug for StoreSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSnapshot")
            .field("key_groups", &self.key_groups)
            .field("tables", &self.tables.len())
            .finish()
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
    pub(crate) fn new(key_groups: KeyGroupRange, tables: Vec<Box<dyn FrozenTable>>) -> Self {
        Self { key_groups, tables }
    }

    /// Whether there is no table at all (stateless operators).
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Encodes every key group into one file.
    pub fn encode(&self) -> Result<EncodedSnapshot, StateError> {
        let mut bytes = MAGIC.to_vec();
        let mut spans = Vec::new();
        for key_group in self.key_groups.iter() {
            let mut blobs = Vec::new();
            for table in &self.tables {
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

/// Checks a snapshot file's header and checksum.
pub fn verify(bytes: &[u8], expected_crc32c: u32, path: &str) -> Result<(), StateError> {
    let actual = crc32c::crc32c(bytes);
    if actual != expected_crc32c {
        return Err(StateError::ChecksumMismatch {
            path: path.to_owned(),
            expected: expected_crc32c,
            actual,
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            problem: "not a keyed-state snapshot (bad magic)".into(),
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

/// Key group of a span, for callers filtering by range.
pub fn span_key_group(span: &KeyGroupSpan) -> KeyGroup {
    span.key_group
}
