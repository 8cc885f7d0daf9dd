//! What a worker does for checkpoints besides the tasks' own snapshots.
//!
//! - [`snapshots`]: writes task snapshots to checkpoint storage off the
//!   task threads and sends the acks; skips snapshots of aborted
//!   checkpoints.
//! - [`replicas`]: [`StateReplicas`](replicas::StateReplicas), the worker's
//!   local copies of checkpoint files (its own and those peers push to it),
//!   the first two tiers of replicated state.
//! - [`replication`]: [`Replication`](replication::Replication), the service
//!   that keeps a copy of each uploaded file and pushes it to the peers
//!   through the data exchange.
//! - [`restore`]: which state each subtask of a new deployment resumes
//!   from, read from the nearest tier whose copy verifies.
//! - [`catch_up`]: a new spare's copy of its share of the latest
//!   checkpoint, from storage into `replicas`, at a bounded rate.
//!
//! `snapshots` uses `replication`, which uses `replicas` and the exchange;
//! `restore` reads `replicas`. Nothing here is used by the exchange: pushed
//! files reach `replicas` through the exchange's `FileInbox`.

pub mod catch_up;
pub mod replicas;
pub mod replication;
pub mod restore;
pub mod snapshots;
