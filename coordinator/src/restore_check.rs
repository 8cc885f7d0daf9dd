//! Whether a checkpoint or savepoint can be restored into a job's graph,
//! decided before the job is accepted: a pure function of the graph and
//! the manifest.
//!
//! Saved state goes to the operator with the same state id (its uid, or
//! its name derived from the graph when it has none). An operator the
//! saved state does not know starts empty; saved state that no operator
//! takes is refused, unless the submission allows dropping it.

use weir_protocol::{CheckpointManifest, JobGraph, OperatorState, VertexKind};

/// Why a restore point does not fit the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreMismatch {
    /// Key groups are fixed for a job's life.
    #[error("it has {saved} key groups and the job {job}: keyed state is split into key groups, so --max-parallelism must be {saved}")]
    KeyGroups {
        /// Key groups of the saved state.
        saved: u32,
        /// Key groups of the job.
        job: u32,
    },
    /// Keyed state for an operator that keeps none.
    #[error("it holds keyed state for uid '{state_id}', but the job's operator '{operator}' with that uid is not keyed")]
    NotKeyed {
        /// The job's operator.
        operator: String,
        /// The id the state is saved under.
        state_id: String,
    },
    /// Saved state that no operator of the job takes.
    #[error("it holds state of operator '{operator}' (uid '{state_id}'), which the job does not have: give the operator that should take it `.uid(\"{state_id}\")`, or pass --allow-non-restored-state to drop that state")]
    UnclaimedState {
        /// The saved operator's name.
        operator: String,
        /// The id its state is saved under.
        state_id: String,
    },
}

/// Checks `manifest` against `graph`; returns the warnings to show (state
/// matched by derived names, state dropped, stateful operators that start
/// empty).
pub fn check_restore(
    graph: &JobGraph,
    manifest: &CheckpointManifest,
    allow_non_restored_state: bool,
) -> Result<Vec<String>, RestoreMismatch> {
    if manifest.max_parallelism != graph.max_parallelism {
        return Err(RestoreMismatch::KeyGroups {
            saved: manifest.max_parallelism,
            job: graph.max_parallelism,
        });
    }
    let mut warnings = Vec::new();
    for saved in &manifest.operators {
        let taker = graph
            .vertices
            .iter()
            .find(|v| manifest.state_of(v).is_some_and(|s| std::ptr::eq(s, saved)));
        match taker {
            Some(vertex) if !vertex.keyed && has_keyed_state(saved) => {
                return Err(RestoreMismatch::NotKeyed {
                    operator: vertex.name.clone(),
                    state_id: saved.state_id().to_owned(),
                })
            }
            Some(vertex) if vertex.uid.is_none() && saved.has_state() => {
                warnings.push(no_uid_warning(&vertex.name, "was matched"))
            }
            Some(_) => {}
            None if !saved.has_state() => {}
            None if allow_non_restored_state => warnings.push(format!(
                "the state of operator '{}' (uid '{}') is dropped: the job has no operator with that uid",
                saved.name,
                saved.state_id()
            )),
            None => {
                return Err(RestoreMismatch::UnclaimedState {
                    operator: saved.name.clone(),
                    state_id: saved.state_id().to_owned(),
                })
            }
        }
    }
    for vertex in &graph.vertices {
        let stateful = vertex.keyed || vertex.kind != VertexKind::Operator;
        if stateful && manifest.state_of(vertex).is_none() {
            warnings.push(format!(
                "operator '{}' is not in the restored state; it starts empty",
                vertex.name
            ));
        }
    }
    Ok(warnings)
}

/// The warning for operator `name`, whose state `what` ("is saved", "was
/// matched") under the name derived from the job's graph.
pub fn no_uid_warning(name: &str, what: &str) -> String {
    format!(
        "operator '{name}' has no uid: its state {what} under the name derived from the job's graph, which changes when operators are added before it; give it `.uid(\"…\")`"
    )
}

/// Whether an operator saved keyed state files.
fn has_keyed_state(saved: &OperatorState) -> bool {
    saved.subtasks.iter().any(|s| !s.files.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::{
        checkpoint::MANIFEST_VERSION, Epoch, KeyGroupRange, SubtaskState, Vertex, VertexId,
        VertexKind,
    };

    fn vertex(id: u32, name: &str, uid: Option<&str>) -> Vertex {
        Vertex {
            id: VertexId(id),
            name: name.into(),
            uid: uid.map(str::to_owned),
            kind: VertexKind::Operator,
            parallelism: 1,
            keyed: true,
        }
    }

    fn operator(name: &str, uid: Option<&str>, with_state: bool) -> OperatorState {
        OperatorState {
            vertex: VertexId(0),
            name: name.into(),
            uid: uid.map(str::to_owned),
            parallelism: 1,
            subtasks: vec![SubtaskState {
                subtask: 0,
                key_groups: KeyGroupRange { start: 0, end: 128 },
                files: Vec::new(),
                operator_state: with_state.then(|| "{}".to_owned()),
            }],
        }
    }

    fn manifest(operators: Vec<OperatorState>) -> CheckpointManifest {
        CheckpointManifest {
            version: MANIFEST_VERSION,
            job: "j".into(),
            epoch: Epoch(3),
            triggered_at_ms: 0,
            completed_at_ms: 0,
            max_parallelism: 128,
            is_final: false,
            leader_term: None,
            savepoint: false,
            operators,
        }
    }

    fn graph(vertices: Vec<Vertex>) -> JobGraph {
        let mut graph = JobGraph::new("j");
        graph.vertices = vertices;
        graph
    }

    #[test]
    fn state_follows_uids_and_added_operators_start_empty() {
        let saved = manifest(vec![operator("process", Some("tracker"), true)]);
        // The operator was renamed and another added before it.
        let changed = graph(vec![
            vertex(0, "process", None),
            vertex(1, "process-2", Some("tracker")),
        ]);
        let warnings = check_restore(&changed, &saved, false).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("'process' is not in the restored state"));
        // State saved without a uid (older builds) still finds its operator
        // by name.
        let old = manifest(vec![operator("process", None, true)]);
        let renamed = graph(vec![vertex(0, "process", Some("tracker"))]);
        assert!(check_restore(&renamed, &old, false).is_ok());
    }

    #[test]
    fn keyed_state_for_an_operator_that_is_not_keyed_is_refused() {
        let mut saved = manifest(vec![operator("process", Some("tracker"), false)]);
        saved.operators[0].subtasks[0]
            .files
            .push(weir_protocol::StateFile {
                path: "chk-0000000003/0-0/state".into(),
                size: 1,
                crc32c: 0,
                key_groups: Vec::new(),
                format: Default::default(),
            });
        let mut plain = vertex(0, "map", Some("tracker"));
        plain.keyed = false;
        let err = check_restore(&graph(vec![plain]), &saved, false).unwrap_err();
        assert!(matches!(err, RestoreMismatch::NotKeyed { .. }), "{err}");
    }

    #[test]
    fn state_without_a_taker_is_refused_unless_allowed() {
        let saved = manifest(vec![operator("process", Some("tracker"), true)]);
        let other = graph(vec![vertex(0, "process", Some("other"))]);
        let err = check_restore(&other, &saved, false).unwrap_err();
        assert_eq!(
            err,
            RestoreMismatch::UnclaimedState {
                operator: "process".into(),
                state_id: "tracker".into()
            }
        );
        assert!(err.to_string().contains("--allow-non-restored-state"));
        let warnings = check_restore(&other, &saved, true).unwrap();
        assert!(warnings.iter().any(|w| w.contains("is dropped")));
        // An operator that saved nothing needs no taker.
        let empty = manifest(vec![operator("map", None, false)]);
        assert!(check_restore(&other, &empty, false).is_ok());
    }

    #[test]
    fn derived_names_warn_and_key_groups_must_match() {
        let saved = manifest(vec![operator("process", None, true)]);
        let same = graph(vec![vertex(0, "process", None)]);
        let warnings = check_restore(&same, &saved, false).unwrap();
        assert!(warnings[0].contains("has no uid"), "{warnings:?}");
        let mut more = same.clone();
        more.max_parallelism = 256;
        assert!(matches!(
            check_restore(&more, &saved, false),
            Err(RestoreMismatch::KeyGroups {
                saved: 128,
                job: 256
            })
        ));
    }
}
