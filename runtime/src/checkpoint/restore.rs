//! Loading a checkpoint for a new deployment of a job: which state each
//! new subtask resumes from, at any parallelism.

use super::replicas::StateReplicas;
use crate::error::RuntimeError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use weir_operators::task::RestoredTask;
use weir_protocol::checkpoint::paths;
use weir_protocol::cluster::{RestoreTier, SubtaskRestore, TierBytes};
use weir_protocol::{CheckpointManifest, JobGraph, KeyGroupRange, StateFileFormat, VertexId};
use weir_state::{snapshot, CheckpointStorage, NativeFiles};

/// The state every subtask of `graph` resumes from, by (vertex, subtask).
///
/// Operators are matched by state id (uid, or name without one); the
/// coordinator has checked that saved state fits the graph before it
/// accepted the job (`weir_coordinator::restore_check`). Keyed state is redistributed by key
/// group, so the parallelism may differ from the checkpoint's; every file
/// read is checked against its checksum first.
/// Only the subtasks `local` selects are loaded; for each restored one,
/// the result says which tier served its files (local copies and peer
/// replicas in `replicas` first, checkpoint storage on a miss).
#[allow(clippy::type_complexity)]
pub fn load_restored_tasks(
    graph: &JobGraph,
    manifest: &CheckpointManifest,
    storage: &CheckpointStorage,
    job_id: &str,
    replicas: Option<&StateReplicas>,
    local: &dyn Fn(VertexId, u32) -> bool,
) -> Result<
    (
        HashMap<(VertexId, u32), Arc<RestoredTask>>,
        Vec<SubtaskRestore>,
    ),
    RuntimeError,
> {
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
    let mut files: HashMap<String, (Vec<u8>, RestoreTier)> = HashMap::new();
    let mut restored = HashMap::new();
    let mut tiers = Vec::new();
    let reader = Reader {
        storage,
        replicas,
        job_id,
        epoch: manifest.epoch,
    };
    for vertex in &graph.vertices {
        let Some(operator) = manifest.state_of(vertex) else {
            tracing::warn!(operator = %vertex.name, epoch = manifest.epoch.0, "operator not in checkpoint; it starts empty");
            continue;
        };
        let operator_states: Vec<Option<String>> = operator
            .subtasks
            .iter()
            .map(|s| s.operator_state.clone())
            .collect();
        for subtask in 0..vertex.parallelism {
            if !local(vertex.id, subtask) {
                continue;
            }
            let mut tier: Option<RestoreTier> = None;
            let mut bytes_from = TierBytes::default();
            let started = Instant::now();
            let range =
                KeyGroupRange::for_subtask(subtask, vertex.parallelism, graph.max_parallelism);
            let mut key_groups = Vec::new();
            let mut native = Vec::new();
            for old in &operator.subtasks {
                let overlaps =
                    old.key_groups.start.max(range.start) < old.key_groups.end.min(range.end);
                if !overlaps {
                    continue;
                }
                if let Some(backend) = old.files.iter().find_map(|f| f.native_backend()) {
                    let mut files = NativeFiles::new(backend, old.key_groups);
                    for file in &old.files {
                        let name = match &file.format {
                            StateFileFormat::Native { backend, name } if *backend == files.backend => name,
                            other => {
                                return Err(RuntimeError::Restore {
                                    epoch: manifest.epoch,
                                    source: weir_state::StateError::Corrupt {
                                        path: file.path.clone(),
                                        problem: format!("a file of format {other:?} among the files of a {} snapshot", files.backend),
                                    },
                                })
                            }
                        };
                        // A verified copy of a shared (immutable) file on
                        // this machine is handed over by path, not read.
                        if let Some((copy, from)) = paths::is_shared(&file.path)
                            .then(|| reader.local_copy(file))
                            .flatten()
                        {
                            tier = tier.max(Some(from));
                            bytes_from.add(from, file.size);
                            files.local.push((name.clone(), copy));
                            continue;
                        }
                        let (bytes, from) = reader.read(file)?;
                        tier = tier.max(Some(from));
                        bytes_from.add(from, bytes.len() as u64);
                        files.files.push((name.clone(), bytes));
                    }
                    native.push(files);
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
                        let read = reader.read(file)?;
                        bytes_from.add(read.1, read.0.len() as u64);
                        files.insert(file.path.clone(), read);
                    }
                    let (bytes, from) = &files[&file.path];
                    tier = tier.max(Some(*from));
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
            if let Some(tier) = tier {
                tracing::info!(job = %job_id, operator = %vertex.name, task = subtask, epoch = manifest.epoch.0, %tier, ms = started.elapsed().as_millis() as u64, "restored state");
                tiers.push(SubtaskRestore {
                    vertex: vertex.id.0,
                    subtask,
                    tier,
                    duration_ms: started.elapsed().as_millis() as u64,
                    bytes: bytes_from,
                });
            }
            restored.insert(
                (vertex.id, subtask),
                Arc::new(RestoredTask {
                    epoch: manifest.epoch,
                    key_groups,
                    native,
                    operator_states: operator_states.clone(),
                }),
            );
        }
    }
    Ok((restored, tiers))
}

/// Reads checkpoint files: a verified local copy when there is one, else
/// checkpoint storage.
struct Reader<'a> {
    storage: &'a CheckpointStorage,
    replicas: Option<&'a StateReplicas>,
    job_id: &'a str,
    epoch: weir_protocol::Epoch,
}

impl Reader<'_> {
    /// A local copy of `file` (own or peer) that matches its checksum.
    fn local_copy(
        &self,
        file: &weir_protocol::StateFile,
    ) -> Option<(std::path::PathBuf, RestoreTier)> {
        self.replicas?.verified_path(self.job_id, file)
    }

    /// A checkpoint file, checked against its size and checksum.
    fn read(
        &self,
        file: &weir_protocol::StateFile,
    ) -> Result<(Vec<u8>, RestoreTier), RuntimeError> {
        if let Some(found) = self.replicas.and_then(|r| r.load(self.job_id, file)) {
            return Ok(found);
        }
        let bytes = self
            .storage
            .get_checked(self.job_id, file)
            .map_err(|source| RuntimeError::Restore {
                epoch: self.epoch,
                source,
            })?;
        Ok((bytes, RestoreTier::ObjectStore))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::{Epoch, OperatorState, StateFile, SubtaskState, Vertex, VertexKind};

    /// A checkpoint of one keyed operator at p=2 in RocksDB's format whose
    /// subtask 0 lost its file from storage.
    fn half_lost() -> (JobGraph, CheckpointManifest) {
        let mut graph = JobGraph::new("job");
        graph.max_parallelism = 8;
        graph.vertices.push(Vertex {
            id: VertexId(0),
            name: "sum".into(),
            uid: None,
            kind: VertexKind::Operator,
            parallelism: 2,
            keyed: true,
        });
        let subtask = |subtask: u32, files: Vec<StateFile>| SubtaskState {
            subtask,
            key_groups: KeyGroupRange::for_subtask(subtask, 2, 8),
            files,
            operator_state: None,
        };
        let lost = StateFile {
            path: "shared/sum-0/0000000001-1.sst".into(),
            size: 10,
            crc32c: 1,
            key_groups: Vec::new(),
            format: StateFileFormat::Native {
                backend: "rocksdb".into(),
                name: "1.sst".into(),
            },
        };
        let manifest = CheckpointManifest {
            version: weir_protocol::checkpoint::MANIFEST_VERSION,
            job: "job".into(),
            epoch: Epoch(1),
            triggered_at_ms: 0,
            completed_at_ms: 0,
            max_parallelism: 8,
            is_final: false,
            leader_term: None,
            savepoint: false,
            operators: vec![OperatorState {
                vertex: VertexId(0),
                name: "sum".into(),
                uid: None,
                parallelism: 2,
                subtasks: vec![subtask(0, vec![lost]), subtask(1, Vec::new())],
            }],
        };
        (graph, manifest)
    }

    #[test]
    fn a_subtask_reads_only_the_snapshots_that_overlap_its_key_groups() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(&dir.path().display().to_string()).unwrap();
        let (graph, manifest) = half_lost();
        // Subtask 1 owns none of subtask 0's key groups: its restore skips
        // subtask 0's snapshot, whose file is gone, and succeeds.
        let (restored, tiers) =
            load_restored_tasks(&graph, &manifest, &storage, "job", None, &|_, s| s == 1).unwrap();
        assert!(restored.contains_key(&(VertexId(0), 1)));
        assert!(tiers.is_empty(), "it read no file: {tiers:?}");
        // Subtask 0 needs the lost file: a clear error, not empty state.
        let error = load_restored_tasks(&graph, &manifest, &storage, "job", None, &|_, s| s == 0)
            .unwrap_err();
        assert!(matches!(error, RuntimeError::Restore { .. }), "{error}");
    }
}
