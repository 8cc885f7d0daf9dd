//! Weir's keyed state: where operators keep per-key values, maps, lists and
//! timers, organized by key group so that it can be snapshotted, restored
//! and redistributed one key group at a time.
//!
//! # Layout
//!
//! - [`backend`]: the [`StateBackend`] trait (the contract every backend
//!   keeps) and [`MemoryBackend`], the in-memory implementation.
//! - [`rocks`]: [`RocksDbBackend`], state in RocksDB keyed by key group,
//!   with incremental checkpoints of its SST files.
//! - [`store`]: [`KeyedStateStore`], the state of one operator subtask: a
//!   registry of named tables over the subtask's key-group range. Operators
//!   reach tables through typed [`TableId`]s.
//! - `by_key_group`: heap storage, one copy-on-write map per key group,
//!   and the key/value encoding.
//! - [`tables`]: the typed tables, [`ValueTable`], [`MapTable`] and
//!   [`ListTable`], each partitioned by key group.
//! - [`snapshot`]: the snapshot file format: key-group sections with a
//!   checksum, written from frozen (copy-on-write) tables.
//! - [`storage`]: [`CheckpointStorage`], checkpoint files on `object_store`
//!   (local disk; S3 by URL) behind a blocking API with a stated contract.
//! - [`owned_dir`]: [`OwnedDir`](owned_dir::OwnedDir), a local directory a
//!   process owns under a shared parent, held by a file lock so that the
//!   next process deletes those of killed ones.
//! - [`timers`]: [`TimerTable`], event-time and processing-time timers per key.
//! - [`error`]: [`StateError`], the one error type of this crate, and
//!   whether an error means that checkpoint storage is unavailable.
//!
//! `backend` creates `store`s; a `store` owns `tables` and `timers`.

#![warn(missing_docs)]

pub mod backend;
mod by_key_group;
pub mod error;
pub mod owned_dir;
pub mod rocks;
pub mod snapshot;
pub mod storage;
pub mod store;
pub mod tables;
pub mod timers;

pub use backend::{MemoryBackend, StateBackend, StateScope};
pub use error::{failure_kind, storage_unavailable_in, StateError};
pub use rocks::{RestoredDb, RocksDbBackend};
pub use snapshot::{EncodedSnapshot, StoreSnapshot};
pub use storage::CheckpointStorage;
pub use store::{JsonEntry, StateRow};
pub use store::{KeyedStateStore, StateKey, StateKind, StateValue, TableId};
pub use tables::{ListTable, MapTable, ValueTable};
pub use timers::{TimeDomain, Timer, TimerTable};
