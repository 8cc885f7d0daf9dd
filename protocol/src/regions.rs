//! Pipelined regions of a job graph, as Flink's region failover defines
//! them: the sets of subtasks that exchange records with one another,
//! directly or through others. Every exchange in Weir is pipelined (there
//! are no blocking, batch-style exchanges), so a forward edge joins
//! subtask `i` of its ends and any other edge (hash, rebalance, broadcast)
//! joins every subtask of both ends. A failure in one region leaves the
//! others untouched (pure).

use crate::cluster::{TaskPlacement, WorkerId};
use crate::graph::{JobGraph, Partitioning};
use crate::ids::VertexId;
use std::collections::{BTreeMap, BTreeSet};

/// One subtask of a graph: its vertex and index.
pub type Task = (VertexId, u32);

/// The graph's pipelined regions, each its tasks in (vertex, subtask)
/// order, the regions ordered by their first task. A graph with a keyed
/// (or rebalance, or broadcast) exchange on every path is one region.
pub fn pipelined_regions(graph: &JobGraph) -> Vec<Vec<Task>> {
    // One union-find node per task, numbered by vertex, then subtask.
    let mut first = Vec::with_capacity(graph.vertices.len());
    let mut tasks = Vec::new();
    for vertex in &graph.vertices {
        first.push(tasks.len());
        tasks.extend((0..vertex.parallelism).map(|s| (vertex.id, s)));
    }
    let index_of = |id: VertexId| graph.vertices.iter().position(|v| v.id == id);
    let mut parent: Vec<usize> = (0..tasks.len()).collect();
    fn root(parent: &mut [usize], mut node: usize) -> usize {
        while parent[node] != node {
            parent[node] = parent[parent[node]];
            node = parent[node];
        }
        node
    }
    fn join(parent: &mut [usize], a: usize, b: usize) {
        let (a, b) = (root(parent, a), root(parent, b));
        parent[a.max(b)] = a.min(b);
    }
    for edge in &graph.edges {
        let (Some(from), Some(to)) = (index_of(edge.from), index_of(edge.to)) else {
            continue;
        };
        let (from_n, to_n) = (
            graph.vertices[from].parallelism as usize,
            graph.vertices[to].parallelism as usize,
        );
        match edge.partitioning {
            Partitioning::Forward => {
                for i in 0..from_n.min(to_n) {
                    join(&mut parent, first[from] + i, first[to] + i);
                }
            }
            Partitioning::Hash | Partitioning::Rebalance | Partitioning::Broadcast => {
                for i in 0..from_n {
                    join(&mut parent, first[from], first[from] + i);
                }
                for j in 0..to_n {
                    join(&mut parent, first[from], first[to] + j);
                }
            }
        }
    }
    let mut regions: Vec<Vec<Task>> = Vec::new();
    let mut region_of_root = std::collections::HashMap::new();
    for (node, task) in tasks.iter().enumerate() {
        let r = root(&mut parent, node);
        let at = *region_of_root.entry(r).or_insert_with(|| {
            regions.push(Vec::new());
            regions.len() - 1
        });
        regions[at].push(*task);
    }
    for region in &mut regions {
        region.sort();
    }
    regions.sort();
    regions
}

/// A graph's pipelined regions with the region of every task: what a
/// failover decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionMap {
    regions: Vec<Vec<Task>>,
    of: BTreeMap<Task, u32>,
}

impl RegionMap {
    /// The regions of `graph` ([`pipelined_regions`]).
    pub fn of(graph: &JobGraph) -> Self {
        let regions = pipelined_regions(graph);
        let of = regions
            .iter()
            .enumerate()
            .flat_map(|(r, tasks)| tasks.iter().map(move |t| (*t, r as u32)))
            .collect();
        Self { regions, of }
    }

    /// How many regions there are.
    pub fn len(&self) -> u32 {
        self.regions.len() as u32
    }

    /// Whether the graph has no task at all.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Whether a failure can restart less than the whole job.
    pub fn is_regional(&self) -> bool {
        self.regions.len() > 1
    }

    /// The region of subtask `subtask` of `vertex`.
    pub fn region_of(&self, vertex: u32, subtask: u32) -> Option<u32> {
        self.of.get(&(VertexId(vertex), subtask)).copied()
    }

    /// The tasks of region `region`.
    pub fn tasks(&self, region: u32) -> &[Task] {
        self.regions
            .get(region as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The regions with a task on `worker` under `placement`.
    pub fn regions_on(&self, placement: &[TaskPlacement], worker: WorkerId) -> BTreeSet<u32> {
        placement
            .iter()
            .filter(|p| p.worker == worker)
            .filter_map(|p| self.region_of(p.vertex, p.subtask))
            .collect()
    }

    /// The part of `placement` in `region`.
    pub fn placement_of(&self, placement: &[TaskPlacement], region: u32) -> Vec<TaskPlacement> {
        placement
            .iter()
            .filter(|p| self.region_of(p.vertex, p.subtask) == Some(region))
            .copied()
            .collect()
    }

    /// What a failure of `failed` (the regions that lost a task) restarts:
    /// those regions alone while others are left running, else everything.
    pub fn failover(&self, failed: &BTreeSet<u32>) -> Failover {
        if !self.is_regional() || failed.is_empty() || failed.len() >= self.regions.len() {
            Failover::Global
        } else {
            Failover::Regions(failed.clone())
        }
    }
}

/// What a failure restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failover {
    /// Every task of the job, from its latest complete checkpoint.
    Global,
    /// Only these regions; the others keep running.
    Regions(BTreeSet<u32>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Edge, Vertex, VertexKind};

    fn graph(vertices: &[(u32, u32)], edges: &[(u32, u32, Partitioning)]) -> JobGraph {
        let mut graph = JobGraph::new("g");
        for (id, parallelism) in vertices {
            graph.vertices.push(Vertex {
                id: VertexId(*id),
                name: format!("v{id}"),
                uid: None,
                kind: VertexKind::Operator,
                parallelism: *parallelism,
                keyed: false,
            });
        }
        for (from, to, partitioning) in edges {
            graph.edges.push(Edge {
                from: VertexId(*from),
                to: VertexId(*to),
                partitioning: *partitioning,
            });
        }
        graph
    }

    #[test]
    fn a_forward_chain_falls_apart_into_one_region_per_subtask() {
        let chain = graph(
            &[(0, 3), (1, 3), (2, 3)],
            &[(0, 1, Partitioning::Forward), (1, 2, Partitioning::Forward)],
        );
        let regions = pipelined_regions(&chain);
        assert_eq!(regions.len(), 3);
        assert_eq!(
            regions[1],
            vec![(VertexId(0), 1), (VertexId(1), 1), (VertexId(2), 1)]
        );
    }

    #[test]
    fn a_keyed_or_rebalanced_exchange_joins_everything_it_connects() {
        for partitioning in [
            Partitioning::Hash,
            Partitioning::Rebalance,
            Partitioning::Broadcast,
        ] {
            let keyed = graph(
                &[(0, 2), (1, 2), (2, 2)],
                &[(0, 1, partitioning), (1, 2, Partitioning::Forward)],
            );
            let regions = pipelined_regions(&keyed);
            assert_eq!(regions.len(), 1, "{partitioning:?}");
            assert_eq!(regions[0].len(), 6);
        }
    }

    #[test]
    fn two_unconnected_pipelines_are_separate_regions() {
        // 0 → 1 forward at p=2; 2 → 3 keyed at p=2.
        let two = graph(
            &[(0, 2), (1, 2), (2, 2), (3, 2)],
            &[(0, 1, Partitioning::Forward), (2, 3, Partitioning::Hash)],
        );
        let regions = pipelined_regions(&two);
        assert_eq!(regions.len(), 3, "{regions:?}");
        assert_eq!(regions[0], vec![(VertexId(0), 0), (VertexId(1), 0)]);
        assert_eq!(regions[2].len(), 4, "the keyed pipeline is one");
        // A vertex of its own (no edges) is a region per subtask.
        assert_eq!(pipelined_regions(&graph(&[(0, 2)], &[])).len(), 2);
        assert!(pipelined_regions(&JobGraph::new("empty")).is_empty());
    }

    #[test]
    fn a_failure_restarts_only_the_regions_that_lost_a_task() {
        // Two forward chains at p=2: four regions, two per slot.
        let chains = graph(
            &[(0, 2), (1, 2), (2, 2), (3, 2)],
            &[(0, 1, Partitioning::Forward), (2, 3, Partitioning::Forward)],
        );
        let map = RegionMap::of(&chains);
        assert_eq!(map.len(), 4);
        let placement: Vec<TaskPlacement> = (0..4)
            .flat_map(|v| {
                (0..2).map(move |s| TaskPlacement {
                    vertex: v,
                    subtask: s,
                    worker: WorkerId(s + 1),
                })
            })
            .collect();
        let lost = map.regions_on(&placement, WorkerId(1));
        assert_eq!(lost.len(), 2);
        for region in &lost {
            assert!(map.tasks(*region).iter().all(|(_, s)| *s == 0));
            assert_eq!(map.placement_of(&placement, *region).len(), 2);
        }
        assert_eq!(map.failover(&lost), Failover::Regions(lost.clone()));
        let everything: BTreeSet<u32> = (0..4).collect();
        assert_eq!(map.failover(&everything), Failover::Global);
        assert_eq!(map.failover(&BTreeSet::new()), Failover::Global);
        // A connected graph always restarts as a whole.
        let keyed = graph(&[(0, 2), (1, 2)], &[(0, 1, Partitioning::Hash)]);
        assert_eq!(
            RegionMap::of(&keyed).failover(&[0].into_iter().collect()),
            Failover::Global
        );
    }
}
