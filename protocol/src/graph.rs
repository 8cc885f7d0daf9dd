//! The logical job graph: operators (vertices) and the streams between them.
//!
//! A [`JobGraph`] is what the operator API builds and what the coordinator
//! schedules. It is plain, serializable data; the code of each operator is
//! not in it; it is rebuilt in every process from the job's registered
//! builder, which produces the same graph for the same parameters.

use crate::error::ProtocolError;
use crate::ids::VertexId;
use crate::key_group::{DEFAULT_MAX_PARALLELISM, MAX_KEY_GROUPS};
use serde::{Deserialize, Serialize};

/// What role a vertex plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VertexKind {
    /// Produces records; has no inputs.
    Source,
    /// Transforms records; has inputs and outputs.
    Operator,
    /// Consumes records; has inputs and no outputs.
    Sink,
}

/// How records travel along an edge from upstream to downstream subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// Subtask `i` sends to subtask `i`; parallelism must match.
    Forward,
    /// Each record goes to the subtask owning its key's key group.
    Hash,
    /// Batches go round-robin to every downstream subtask.
    Rebalance,
    /// Every record goes to every downstream subtask.
    Broadcast,
}

/// A logical operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    /// Index of this vertex in [`JobGraph::vertices`].
    pub id: VertexId,
    /// Human-readable, unique name (used in errors, logs and checkpoints).
    pub name: String,
    /// The stable id the user gave it (`.uid("…")`), by which checkpointed
    /// state finds it again; `None` uses `name`, derived from the graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Source, operator or sink.
    pub kind: VertexKind,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// Whether the operator keeps keyed state (its input is hash-partitioned).
    pub keyed: bool,
}

/// A stream from one vertex to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Upstream vertex.
    pub from: VertexId,
    /// Downstream vertex.
    pub to: VertexId,
    /// How records are routed.
    pub partitioning: Partitioning,
}

/// The logical plan of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobGraph {
    /// Name of the job (the registered job name for built-in jobs).
    pub name: String,
    /// Number of key groups of every keyed operator.
    pub max_parallelism: u32,
    /// Operators, indexed by [`VertexId`].
    pub vertices: Vec<Vertex>,
    /// Streams between operators.
    pub edges: Vec<Edge>,
}

impl Vertex {
    /// The id its state is saved and restored under: its uid, or its name.
    pub fn state_id(&self) -> &str {
        self.uid.as_deref().unwrap_or(&self.name)
    }
}

impl JobGraph {
    /// An empty graph with the default max parallelism.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            vertices: Vec::new(),
            edges: Vec::new(),
        }
    }

    /// The vertex with id `id`, if any.
    pub fn vertex(&self, id: VertexId) -> Option<&Vertex> {
        self.vertices.get(id.index())
    }

    /// Edges leading into `id`, in the order they were added.
    pub fn inputs_of(&self, id: VertexId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == id)
    }

    /// Edges leaving `id`, in the order they were added.
    pub fn outputs_of(&self, id: VertexId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == id)
    }

    /// Total number of subtasks over all vertices.
    pub fn subtask_count(&self) -> usize {
        self.vertices.iter().map(|v| v.parallelism as usize).sum()
    }

    /// Checks that the graph can run: dense ids, no zero or excessive
    /// parallelism, no edge to a missing vertex, no cycle, sources without
    /// inputs, sinks without outputs, and matching parallelism on forward edges.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.vertices.is_empty() {
            return Err(ProtocolError::EmptyGraph {
                job: self.name.clone(),
            });
        }
        if self.max_parallelism == 0 || self.max_parallelism > MAX_KEY_GROUPS {
            return Err(ProtocolError::BadMaxParallelism {
                max_parallelism: self.max_parallelism,
                limit: MAX_KEY_GROUPS,
            });
        }
        for (position, v) in self.vertices.iter().enumerate() {
            if v.id.index() != position {
                return Err(ProtocolError::BadVertexId { position, id: v.id });
            }
            if v.parallelism == 0 {
                return Err(ProtocolError::ZeroParallelism {
                    operator: v.name.clone(),
                });
            }
            if v.parallelism > self.max_parallelism {
                return Err(ProtocolError::ParallelismAboveMax {
                    operator: v.name.clone(),
                    parallelism: v.parallelism,
                    max_parallelism: self.max_parallelism,
                });
            }
        }
        for e in &self.edges {
            for end in [e.from, e.to] {
                if self.vertex(end).is_none() {
                    return Err(ProtocolError::DanglingEdge {
                        from: e.from,
                        to: e.to,
                        missing: end,
                    });
                }
            }
            let (from, to) = (&self.vertices[e.from.index()], &self.vertices[e.to.index()]);
            if e.partitioning == Partitioning::Forward && from.parallelism != to.parallelism {
                return Err(ProtocolError::ForwardParallelismMismatch {
                    from: from.name.clone(),
                    to: to.name.clone(),
                    from_parallelism: from.parallelism,
                    to_parallelism: to.parallelism,
                });
            }
        }
        for v in &self.vertices {
            let has_inputs = self.inputs_of(v.id).next().is_some();
            let has_outputs = self.outputs_of(v.id).next().is_some();
            let problem = match v.kind {
                VertexKind::Source if has_inputs => Some("a source cannot have inputs"),
                VertexKind::Sink if has_outputs => Some("a sink cannot have outputs"),
                VertexKind::Operator | VertexKind::Sink if !has_inputs => Some("it has no inputs"),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(ProtocolError::BadWiring {
                    operator: v.name.clone(),
                    problem,
                });
            }
        }
        self.topological_order().map(|_| ())
    }

    /// Vertices in an order where every edge goes forward, or the cycle error.
    pub fn topological_order(&self) -> Result<Vec<VertexId>, ProtocolError> {
        let n = self.vertices.len();
        let mut in_degree = vec![0usize; n];
        for e in &self.edges {
            in_degree[e.to.index()] += 1;
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| in_degree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(VertexId(i as u32));
            for e in self.edges.iter().filter(|e| e.from.index() == i) {
                let to = e.to.index();
                in_degree[to] -= 1;
                if in_degree[to] == 0 {
                    ready.push(to);
                }
            }
        }
        match in_degree.iter().position(|&d| d > 0) {
            Some(i) => Err(ProtocolError::Cycle {
                operator: self.vertices[i].name.clone(),
            }),
            None => Ok(order),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex(id: u32, name: &str, kind: VertexKind, parallelism: u32) -> Vertex {
        Vertex {
            id: VertexId(id),
            name: name.into(),
            uid: None,
            kind,
            parallelism,
            keyed: false,
        }
    }

    fn edge(from: u32, to: u32, partitioning: Partitioning) -> Edge {
        Edge {
            from: VertexId(from),
            to: VertexId(to),
            partitioning,
        }
    }

    fn pipeline() -> JobGraph {
        let mut g = JobGraph::new("test");
        g.vertices = vec![
            vertex(0, "src", VertexKind::Source, 2),
            vertex(1, "map", VertexKind::Operator, 2),
            vertex(2, "sink", VertexKind::Sink, 1),
        ];
        g.edges = vec![
            edge(0, 1, Partitioning::Forward),
            edge(1, 2, Partitioning::Rebalance),
        ];
        g
    }

    #[test]
    fn a_valid_pipeline_passes_and_round_trips_through_json() {
        let g = pipeline();
        g.validate().unwrap();
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<JobGraph>(&json).unwrap(), g);
    }

    #[test]
    fn cycles_are_named() {
        let mut g = pipeline();
        g.vertices[2].kind = VertexKind::Operator;
        g.edges.push(edge(2, 1, Partitioning::Rebalance));
        assert_eq!(
            g.validate(),
            Err(ProtocolError::Cycle {
                operator: "map".into()
            })
        );
    }

    #[test]
    fn dangling_edges_zero_parallelism_and_forward_mismatch_are_errors() {
        let mut g = pipeline();
        g.edges.push(edge(1, 9, Partitioning::Hash));
        assert!(matches!(
            g.validate(),
            Err(ProtocolError::DanglingEdge {
                missing: VertexId(9),
                ..
            })
        ));

        let mut g = pipeline();
        g.vertices[1].parallelism = 0;
        let err = g.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "operator 'map' has parallelism 0; it must be at least 1"
        );

        let mut g = pipeline();
        g.edges[1].partitioning = Partitioning::Forward;
        assert!(matches!(
            g.validate(),
            Err(ProtocolError::ForwardParallelismMismatch { .. })
        ));
    }

    #[test]
    fn operators_without_inputs_and_parallelism_above_max_are_errors() {
        let mut g = pipeline();
        g.edges.remove(0);
        assert!(matches!(g.validate(), Err(ProtocolError::BadWiring { .. })));

        let mut g = pipeline();
        g.max_parallelism = 1;
        assert!(matches!(
            g.validate(),
            Err(ProtocolError::ParallelismAboveMax { .. })
        ));
    }
}
