//! Checkpoint vocabulary: state handles, acks, manifests, and the storage
//! layout of DESIGN.md §5.
//!
//! ```text
//! {root}/{job}/chk-{epoch:010}/manifest.json    the CheckpointManifest
//! {root}/{job}/chk-{epoch:010}/COMMITTED        create-only marker: complete
//! {root}/{job}/chk-{epoch:010}/{vertex}-{subtask}/…  state files of that epoch
//! {root}/{job}/shared/…                         files several checkpoints use
//! ```

use crate::ids::{Epoch, SubtaskId, VertexId};
use crate::key_group::{KeyGroup, KeyGroupRange};
use serde::{Deserialize, Serialize};

/// Format version of manifests this build writes. Version 1 (before state
/// files named their [`StateFileFormat`]) is read too: its files with a
/// `rocksdb_name` are native RocksDB files.
pub const MANIFEST_VERSION: u32 = 2;

/// The oldest manifest version this build reads.
pub const OLDEST_MANIFEST_VERSION: u32 = 1;

/// Where one key group's bytes sit inside a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupSpan {
    /// The key group.
    pub key_group: KeyGroup,
    /// Byte offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// How a state file is written, and so who can read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFileFormat {
    /// Weir's own keyed-state file: one section per key group (see
    /// [`StateFile::key_groups`]). Every backend restores it, at any
    /// parallelism.
    #[default]
    KeyGroupSections,
    /// One file of a backend's own instance format; only that backend
    /// restores it.
    Native {
        /// The backend, by its name on the command line (`rocksdb`, …).
        backend: String,
        /// The file's name inside the instance.
        name: String,
    },
}

/// One file of a subtask's checkpointed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StateFileRecord")]
pub struct StateFile {
    /// Path relative to the job's checkpoint root (`{root}/{job}/`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32C of the whole file.
    pub crc32c: u32,
    /// Where each key group's state is inside the file, by key group
    /// ([`StateFileFormat::KeyGroupSections`] files only).
    pub key_groups: Vec<KeyGroupSpan>,
    /// How the file is written.
    #[serde(default)]
    pub format: StateFileFormat,
}

impl StateFile {
    /// The backend whose own format the file is in, if it is not Weir's.
    pub fn native_backend(&self) -> Option<&str> {
        match &self.format {
            StateFileFormat::KeyGroupSections => None,
            StateFileFormat::Native { backend, .. } => Some(backend),
        }
    }
}

/// A [`StateFile`] as manifests of every version hold it.
#[derive(Deserialize)]
struct StateFileRecord {
    path: String,
    size: u64,
    crc32c: u32,
    #[serde(default)]
    key_groups: Vec<KeyGroupSpan>,
    #[serde(default)]
    format: Option<StateFileFormat>,
    /// Version 1: the name of a RocksDB instance's file.
    #[serde(default)]
    rocksdb_name: Option<String>,
}

impl From<StateFileRecord> for StateFile {
    fn from(record: StateFileRecord) -> Self {
        let legacy = record.rocksdb_name.map(|name| StateFileFormat::Native {
            backend: "rocksdb".into(),
            name,
        });
        Self {
            path: record.path,
            size: record.size,
            crc32c: record.crc32c,
            key_groups: record.key_groups,
            format: record.format.or(legacy).unwrap_or_default(),
        }
    }
}

/// What one subtask contributed to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskState {
    /// The subtask.
    pub subtask: u32,
    /// Key groups it owned (empty range for non-keyed operators).
    pub key_groups: KeyGroupRange,
    /// Keyed state files.
    pub files: Vec<StateFile>,
    /// Operator state that is not keyed (a source's position, a sink's
    /// pending transactions), as JSON text.
    pub operator_state: Option<String>,
}

/// A subtask's acknowledgement that its part of a checkpoint is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAck {
    /// The checkpoint.
    pub epoch: Epoch,
    /// Who acknowledges.
    pub task: SubtaskId,
    /// Its state.
    pub state: SubtaskState,
    /// How long its part took, phase by phase.
    #[serde(default)]
    pub timing: AckTiming,
}

/// How long a subtask's part of a checkpoint took, phase by phase (as
/// Flink's checkpoint details show them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckTiming {
    /// From the first barrier on one of its inputs to the last (0 for a
    /// source or a single input), in microseconds.
    pub alignment_us: u64,
    /// The synchronous part of its snapshot, on the task thread.
    pub sync_us: u64,
    /// The asynchronous part: writing its files to checkpoint storage.
    pub async_us: u64,
}

/// All subtasks of one operator in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// The vertex.
    pub vertex: VertexId,
    /// Its name.
    pub name: String,
    /// Its uid, when it had one (its state is restored by
    /// [`state_id`](Self::state_id)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Its parallelism when the checkpoint was taken.
    pub parallelism: u32,
    /// One entry per subtask, by subtask index.
    pub subtasks: Vec<SubtaskState>,
}

impl OperatorState {
    /// The id its state is matched by on restore: its uid, or its name.
    pub fn state_id(&self) -> &str {
        self.uid.as_deref().unwrap_or(&self.name)
    }

    /// Whether it saved anything (keyed files or operator state).
    pub fn has_state(&self) -> bool {
        self.subtasks
            .iter()
            .any(|s| !s.files.is_empty() || s.operator_state.is_some())
    }
}

/// The description of a checkpoint, written before its commit marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointManifest {
    /// Format version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// Job name.
    pub job: String,
    /// The checkpoint's epoch.
    pub epoch: Epoch,
    /// When it was triggered, ms since the Unix epoch.
    pub triggered_at_ms: i64,
    /// When its last ack arrived, ms since the Unix epoch.
    pub completed_at_ms: i64,
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// Whether this is the checkpoint taken after all input was processed.
    pub is_final: bool,
    /// The term of the leader coordinator that completed it (absent in
    /// manifests of builds without a control store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_term: Option<u64>,
    /// Whether this is a savepoint: self-contained (every file it
    /// references is under its own directory), kept until deleted, never
    /// touched by a job's retention.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub savepoint: bool,
    /// Every operator's state.
    pub operators: Vec<OperatorState>,
}

impl CheckpointManifest {
    /// Every state file the manifest references.
    pub fn files(&self) -> impl Iterator<Item = &StateFile> {
        self.operators
            .iter()
            .flat_map(|o| o.subtasks.iter())
            .flat_map(|s| s.files.iter())
    }

    /// The state of the operator named (or with uid) `name`, if it took part.
    pub fn operator(&self, name: &str) -> Option<&OperatorState> {
        self.operators
            .iter()
            .find(|o| o.name == name || o.uid.as_deref() == Some(name))
    }

    /// The state saved under `state_id` (an operator's uid, or its name
    /// when it had none), if any.
    pub fn operator_by_state_id(&self, state_id: &str) -> Option<&OperatorState> {
        self.operators.iter().find(|o| o.state_id() == state_id)
    }

    /// The state that operator `vertex` restores: saved under its state id
    /// or, for state saved without a uid (by builds before uids, or by an
    /// operator that had none), under its name.
    pub fn state_of(&self, vertex: &crate::graph::Vertex) -> Option<&OperatorState> {
        self.operator_by_state_id(vertex.state_id()).or_else(|| {
            self.operators
                .iter()
                .find(|o| o.uid.is_none() && o.name == vertex.name)
        })
    }
}

/// The canonical object paths of checkpoints, relative to the checkpoint root.
pub mod paths {
    use crate::ids::{Epoch, SubtaskId};

    /// The name of a checkpoint's manifest file.
    pub const MANIFEST: &str = "manifest.json";
    /// The name of a checkpoint's commit marker.
    pub const COMMITTED: &str = "COMMITTED";

    /// `{job}`: everything of one job.
    pub fn job_dir(job: &str) -> String {
        job.to_owned()
    }

    /// `chk-{epoch:010}`, the directory name of a checkpoint.
    pub fn checkpoint_name(epoch: Epoch) -> String {
        format!("chk-{:010}", epoch.0)
    }

    /// The epoch named by a checkpoint directory name, if it is one.
    pub fn parse_checkpoint_name(name: &str) -> Option<Epoch> {
        epoch_digits(name.strip_prefix("chk-")?)
    }

    /// `{job}/chk-{epoch:010}`.
    pub fn checkpoint_dir(job: &str, epoch: Epoch) -> String {
        format!("{job}/{}", checkpoint_name(epoch))
    }

    /// `{job}/chk-{epoch:010}/manifest.json`.
    pub fn manifest(job: &str, epoch: Epoch) -> String {
        format!("{}/{MANIFEST}", checkpoint_dir(job, epoch))
    }

    /// `{job}/chk-{epoch:010}/COMMITTED`.
    pub fn committed(job: &str, epoch: Epoch) -> String {
        format!("{}/{COMMITTED}", checkpoint_dir(job, epoch))
    }

    /// `chk-{epoch:010}/{vertex}-{subtask}/{file}`, relative to the job directory.
    pub fn subtask_file(epoch: Epoch, task: SubtaskId, file: &str) -> String {
        format!(
            "{}/{}-{}/{file}",
            checkpoint_name(epoch),
            task.vertex.0,
            task.index
        )
    }

    /// The directory, relative to the job directory, of files that several
    /// checkpoints reference (a backend's immutable files, uploaded once).
    pub const SHARED: &str = "shared";

    /// `shared/{instance}/{epoch:010}-{name}`: a shared file, named after
    /// the checkpoint that uploaded it so that retention can tell files a
    /// checkpoint in flight may still reference.
    pub fn shared_file(instance: &str, epoch: Epoch, name: &str) -> String {
        format!("{SHARED}/{instance}/{:010}-{name}", epoch.0)
    }

    /// Whether `path` (relative to the job directory) is a shared file.
    pub fn is_shared(path: &str) -> bool {
        path.strip_prefix(SHARED)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The checkpoint that uploaded a shared file, from its path under
    /// `shared/` (`{instance}/{epoch}-{name}`).
    pub fn shared_file_epoch(path_in_shared: &str) -> Option<Epoch> {
        let name = path_in_shared.rsplit('/').next()?;
        epoch_digits(name.split_once('-')?.0)
    }

    /// The epoch written as [`shared_file`] and [`checkpoint_name`] write
    /// it: decimal digits, at least ten (zero-padded; a larger epoch has
    /// more).
    fn epoch_digits(digits: &str) -> Option<Epoch> {
        if digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(Epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::paths::*;
    use super::*;

    #[test]
    fn checkpoint_names_are_zero_padded_and_parse_back() {
        assert_eq!(checkpoint_name(Epoch(42)), "chk-0000000042");
        assert_eq!(parse_checkpoint_name("chk-0000000042"), Some(Epoch(42)));
        assert_eq!(parse_checkpoint_name("chk-42"), None);
        assert_eq!(parse_checkpoint_name("shared"), None);
        assert_eq!(manifest("j", Epoch(1)), "j/chk-0000000001/manifest.json");
        let task = SubtaskId {
            vertex: VertexId(2),
            index: 3,
        };
        assert_eq!(
            subtask_file(Epoch(1), task, "state"),
            "chk-0000000001/2-3/state"
        );
        let shared = shared_file("abc", Epoch(7), "000012.sst");
        assert_eq!(shared, "shared/abc/0000000007-000012.sst");
        let in_shared = shared.strip_prefix("shared/").unwrap();
        assert_eq!(shared_file_epoch(in_shared), Some(Epoch(7)));
        assert_eq!(shared_file_epoch("abc/not-an-epoch"), None);
        assert_eq!(
            shared_file_epoch("abc/7-000012.sst"),
            None,
            "zero-padded, as written"
        );
        let eleven = shared_file("abc", Epoch(12_345_678_901), "x.sst");
        let eleven = eleven.strip_prefix("shared/").unwrap();
        assert_eq!(shared_file_epoch(eleven), Some(Epoch(12_345_678_901)));
        assert!(is_shared(&shared));
        assert!(!is_shared("sharedness/x") && !is_shared("chk-0000000001/0-0/x"));
    }

    #[test]
    fn state_files_name_their_format_and_version_1_files_are_read() {
        let native = StateFile {
            path: "shared/a/1-000009.sst".into(),
            size: 3,
            crc32c: 7,
            key_groups: Vec::new(),
            format: StateFileFormat::Native {
                backend: "rocksdb".into(),
                name: "000009.sst".into(),
            },
        };
        let json = serde_json::to_string(&native).unwrap();
        assert!(json.contains(r#""format":{"native":{"backend":"rocksdb","name":"000009.sst"}}"#));
        assert_eq!(serde_json::from_str::<StateFile>(&json).unwrap(), native);
        assert_eq!(native.native_backend(), Some("rocksdb"));

        let version_1 = r#"{"path":"shared/a/1-000009.sst","size":3,"crc32c":7,"key_groups":[],"rocksdb_name":"000009.sst"}"#;
        assert_eq!(
            serde_json::from_str::<StateFile>(version_1).unwrap(),
            native
        );
        let sections =
            r#"{"path":"chk-0000000001/0-0/keyed.state","size":3,"crc32c":7,"key_groups":[]}"#;
        let sections: StateFile = serde_json::from_str(sections).unwrap();
        assert_eq!(sections.format, StateFileFormat::KeyGroupSections);
        assert_eq!(sections.native_backend(), None);
    }
}
