//! Loading a checkpoint for a new deployment of a job: which state each
//! new subtask resumes from, at any parallelism.

use crate::error::RuntimeError;
use std::collections::HashMap;
use std::sync::Arc;
use weir_operators::task::RestoredTask;
use weir_protocol::checkpoint::paths;
use weir_protocol::{CheckpointManifest, JobGraph, KeyGroupRange, VertexId};
use weir_state::{snapshot, CheckpointStorage, RestoredDb};

/// The state every subtask of `graph` resumes from, by (vertex, subtask).
///
/// Operators are matched by name. Keyed state is redistributed by key
/// group, so the parallelism may differ from the checkpoint's; every file
/// read is checked against its checksum first.
pub fn load_restored_tasks(
    graph: &JobGraph,
    manifest: &CheckpointManifest,
    storage: &CheckpointStorage,
    job_id: &str,
) -> Result<HashMap<(VertexId, u32), Arc<RestoredTask>>, RuntimeError> {
    let incompatible = |problem: String| RuntimeError::IncompatibleCheckpoint {
        epoch: manifest.epoch,
        problem,
    };
    if manifest.max_parallelism != graph.max_parallelism {
        return Err(incompatible(format!(
            "it has {} key groups and the job {}",
            manifest.max_parallelism, graph.max_parallelism
        )));
    }
    for operator in &manifest.operators {
        if !graph.vertices.iter().any(|v| v.name == operator.name) {
            return Err(incompatible(format!(
                "it holds state of operator '{}', which the job does not have",
                operator.name
            )));
        }
    }
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut restored = HashMap::new();
    for vertex in &graph.vertices {
        let Some(operator) = manifest.operator(&vertex.name) else {
            tracing::warn!(operator = %vertex.name, epoch = manifest.epoch.0, "operator not in checkpoint; it starts empty");
            continue;
        };
        let operator_states: Vec<Option<String>> = operator
            .subtasks
            .iter()
            .map(|s| s.operator_state.clone())
            .collect();
        for subtask in 0..vertex.parallelism {
            let range =
                KeyGroupRange::for_subtask(subtask, vertex.parallelism, graph.max_parallelism);
            let mut key_groups = Vec::new();
            let mut databases = Vec::new();
            for old in &operator.subtasks {
                let overlaps =
                    old.key_groups.start.max(range.start) < old.key_groups.end.min(range.end);
                if overlaps && old.files.iter().any(|f| f.rocksdb_name.is_some()) {
                    let mut db_files = Vec::new();
                    for file in &old.files {
                        let name = file.rocksdb_name.clone().unwrap_or_default();
                        let bytes = read_verified(storage, job_id, manifest.epoch, file)?;
                        db_files.push((name, bytes));
                    }
                    databases.push(RestoredDb {
                        key_groups: old.key_groups,
                        files: db_files,
                    });
                    continue;
                }
                for file in &old.files {
                    let wanted: Vec<_> = file
                        .key_groups
                        .iter()
                        .filter(|s| range.contains(s.key_group))
                        .collect();
                    if wanted.is_empty() {
                        continue;
                    }
                    if !files.contains_key(&file.path) {
                        let bytes = read_verified(storage, job_id, manifest.epoch, file)?;
                        files.insert(file.path.clone(), bytes);
                    }
                    let bytes = &files[&file.path];
                    for span in wanted {
                        let section =
                            snapshot::section(bytes, span, &file.path).map_err(|source| {
                                RuntimeError::Restore {
                                    epoch: manifest.epoch,
                                    source,
                                }
                            })?;
                        key_groups.push((span.key_group, section.to_vec()));
                    }
                }
            }
            restored.insert(
                (vertex.id, subtask),
                Arc::new(RestoredTask {
                    epoch: manifest.epoch,
                    key_groups,
                    databases,
                    operator_states: operator_states.clone(),
                }),
            );
        }
    }
    Ok(restored)
}

/// Reads a checkpoint file and checks its size and checksum.
fn read_verified(
    storage: &CheckpointStorage,
    job_id: &str,
    epoch: weir_protocol::Epoch,
    file: &weir_protocol::StateFile,
) -> Result<Vec<u8>, RuntimeError> {
    let full = format!("{}/{}", paths::job_dir(job_id), file.path);
    let restore = |source| RuntimeError::Restore { epoch, source };
    let bytes = storage.get(&full).map_err(restore)?;
    if bytes.len() as u64 != file.size {
        return Err(restore(weir_state::StateError::Corrupt {
            path: full,
            problem: format!("size {} but the manifest says {}", bytes.len(), file.size),
        }));
    }
    snapshot::verify_checksum(&bytes, file.crc32c, &full).map_err(restore)?;
    Ok(bytes)
}
