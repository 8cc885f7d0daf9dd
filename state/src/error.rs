//! The error type of the state crate.

use weir_protocol::KeyGroup;

/// What went wrong inside a state backend.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A key was accessed on a subtask that does not own its key group; the
    /// input was routed to the wrong subtask.
    #[error(
        "state '{table}': key group {key_group} is not owned by this subtask (owns {start}..{end})"
    )]
    KeyGroupNotOwned {
        /// Name of the table.
        table: String,
        /// The key group of the key.
        key_group: KeyGroup,
        /// First owned key group.
        start: KeyGroup,
        /// One past the last owned key group.
        end: KeyGroup,
    },
    /// A snapshot was not written because its deployment is stopping.
    #[error("snapshot abandoned: its deployment is stopping")]
    Abandoned,
    /// A state name was registered twice with different kinds or types.
    #[error("state '{name}' is already registered as a different kind or type of state")]
    Conflict {
        /// Name of the state.
        name: String,
    },
    /// A table handle does not belong to this store.
    #[error("state handle {id} does not belong to this operator's state (it has {tables} tables)")]
    UnknownHandle {
        /// The handle's index.
        id: usize,
        /// How many tables the store has.
        tables: usize,
    },
    /// State could not be encoded for a snapshot.
    #[error("encoding state '{table}'")]
    Encode {
        /// The table.
        table: String,
        /// The encoder's error.
        #[source]
        source: postcard::Error,
    },
    /// Snapshot bytes could not be decoded (the state's declared type
    /// changed since they were written, or they are corrupt).
    #[error("decoding state '{table}'{}: its declared type does not read what was saved", key_group.map(|g| format!(" of key group {g}")).unwrap_or_default())]
    Decode {
        /// The table.
        table: String,
        /// The key group being read, when known.
        key_group: Option<u16>,
        /// The decoder's error.
        #[source]
        source: postcard::Error,
    },
    /// A file's checksum does not match the manifest.
    #[error("checksum mismatch in {path}: manifest says {expected:08x}, file has {actual:08x}")]
    ChecksumMismatch {
        /// The file.
        path: String,
        /// CRC-32C recorded in the manifest.
        expected: u32,
        /// CRC-32C of the bytes read.
        actual: u32,
    },
    /// A file is malformed.
    #[error("corrupt state file {path}: {problem}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A checkpoint location cannot be used.
    #[error("checkpoint location '{location}': {problem}")]
    BadLocation {
        /// The location given.
        location: String,
        /// Why it cannot be used.
        problem: String,
    },
    /// An object does not exist.
    #[error("{path} does not exist")]
    NotFound {
        /// Its path, relative to the storage root.
        path: String,
    },
    /// Checkpoint storage failed.
    #[error("{op} {path}")]
    Storage {
        /// What was being done.
        op: &'static str,
        /// The path, relative to the storage root.
        path: String,
        /// The storage's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// RocksDB failed.
    #[error("RocksDB {action} {path}")]
    RocksDb {
        /// What was being done.
        action: &'static str,
        /// The instance's directory.
        path: String,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// A backend of another crate failed (its [`SortedKv`](crate::SortedKv)
    /// or snapshot).
    #[error("the {backend} state backend failed {action}")]
    Backend {
        /// The backend, by name.
        backend: &'static str,
        /// What was being done, to what (an instance, a file).
        action: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local file could not be read or written.
    #[error("{action} {path}")]
    LocalIo {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// State taken with one backend cannot be used by another this way.
    #[error("operator '{operator}': {problem}")]
    BackendMismatch {
        /// The operator.
        operator: String,
        /// What does not fit.
        problem: String,
    },
}

impl StateError {
    /// Whether checkpoint storage failed to answer (unreachable, timed out,
    /// refused, erroring, or refusing these credentials, which an operator
    /// may fix while the job waits): the same operation may succeed once it
    /// is back. "Not found", corrupt or mismatching files, and requests the
    /// store can never serve (unsupported, bad path) are answers, not
    /// outages.
    pub fn is_storage_unavailable(&self) -> bool {
        use object_store::Error as Store;
        match self {
            StateError::Storage { source, .. } => matches!(
                **source,
                Store::Generic { .. }
                    | Store::JoinError { .. }
                    | Store::PermissionDenied { .. }
                    | Store::Unauthenticated { .. }
            ),
            _ => false,
        }
    }
}

/// Whether `error` or any of its causes is a [`StateError`] saying that
/// checkpoint storage is unavailable (see
/// [`StateError::is_storage_unavailable`]).
pub fn storage_unavailable_in(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error
            .downcast_ref::<StateError>()
            .is_some_and(StateError::is_storage_unavailable)
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// How a failure caused by `error` counts: a storage outage (waited out,
/// retried once storage answers) or a task's failure.
pub fn failure_kind(error: &(dyn std::error::Error + 'static)) -> weir_protocol::FailureKind {
    if storage_unavailable_in(error) {
        weir_protocol::FailureKind::StorageUnavailable
    } else {
        weir_protocol::FailureKind::Task
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error of a caller's own, caused by a state error.
    #[derive(Debug, thiserror::Error)]
    #[error("restoring")]
    struct Restoring(#[source] StateError);

    #[test]
    fn an_outage_is_found_along_the_chain_and_answers_are_not_outages() {
        let outage = StateError::Storage {
            op: "reading",
            path: "job/chk-0000000001/manifest.json".into(),
            source: Box::new(object_store::Error::Generic {
                store: "S3",
                source: "connection refused".into(),
            }),
        };
        assert!(outage.is_storage_unavailable());
        assert!(storage_unavailable_in(&Restoring(outage)));
        for answer in [
            StateError::NotFound { path: "x".into() },
            StateError::Corrupt {
                path: "x".into(),
                problem: "size 3 but the manifest says 4".into(),
            },
            StateError::ChecksumMismatch {
                path: "x".into(),
                expected: 1,
                actual: 2,
            },
            StateError::Storage {
                op: "creating",
                path: "x".into(),
                source: Box::new(object_store::Error::NotImplemented {
                    operation: "conditional put".into(),
                    implementer: "store".into(),
                }),
            },
        ] {
            assert!(!storage_unavailable_in(&Restoring(answer)));
        }
    }
}
