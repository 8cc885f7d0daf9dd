//! Weir's shared vocabulary: the types every other crate speaks, and no I/O.
//!
//! # Layout
//!
//! - [`ids`]: identifiers for jobs, vertices and subtasks, and the checkpoint
//!   [`Epoch`](ids::Epoch).
//! - [`checkpoint`]: what a checkpoint is made of (state files with
//!   checksums, per-subtask state, acks, the manifest) and the canonical
//!   storage paths.
//! - [`cluster`]: workers, job submissions, deployments (which worker runs
//!   which subtask, attempt numbers) and the job lifecycle states.
//! - [`control`]: the messages between the checkpoint coordinator and the
//!   workers (trigger, complete, abort; acks, declines, finished sources).
//! - [`graph`]: the logical [`JobGraph`](graph::JobGraph) (operators with a
//!   parallelism, and the edges between them) and its validation.
//! - [`regions`]: the graph's pipelined regions (Flink's failover regions),
//!   the sets of subtasks a failure need not reach beyond.
//! - [`key_group`]: stable key hashing, key groups, and the assignment of
//!   key-group ranges to subtasks; used by the graph (max parallelism), by
//!   the state crate (state is stored per key group) and by the runtime
//!   (hash partitioning).
//! - [`wire`]: the frames between processes: JSON control frames between
//!   workers and the coordinator, rkyv exchange frames between workers,
//!   with length limits and decode errors.
//! - [`framing`]: the length-prefixed frame both connections use, read
//!   from a blocking stream.
//! - [`time`]: wall-clock milliseconds since the epoch, the unit of every
//!   timestamp.
//! - [`error`]: [`ProtocolError`], the one error type of this crate.
//!
//! Everything here is plain data plus pure functions (and the two edges
//! every process needs the same way: reading a frame from a stream, and
//! the wall clock), so it can be shared by the coordinator and the workers
//! without either importing the other.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod cluster;
pub mod control;
pub mod error;
pub mod framing;
pub mod graph;
pub mod ids;
pub mod key_group;
pub mod regions;
pub mod time;
pub mod wire;

pub use checkpoint::{
    AckTiming, CheckpointManifest, OperatorState, StateFile, StateFileFormat, SubtaskState, TaskAck,
};
pub use cluster::{JobSpec, JobState, RunSettings, SubmitRequest, WorkerId};
pub use control::{ControlCommand, FailureKind, WorkerEvent};
pub use error::{ProtocolError, WireError};
pub use graph::{Edge, JobGraph, Partitioning, Vertex, VertexKind};
pub use ids::{Epoch, SubtaskId, VertexId};
pub use key_group::{KeyGroup, KeyGroupRange, StableHasher};
