//! Weir's keyed state: where operators keep per-key values, maps, lists and
//! timers, organized by key group so that it can be snapshotted, restored
//! and redistributed one key group at a time.
//!
//! # Layout
//!
//! - [`backend`]: the [`StateBackend`] trait (the contract every backend
//!   keeps) and [`MemoryBackend`], the in-memory implementation.
//! - [`store`]: [`KeyedStateStore`], the state of one operator subtask: a
//!   registry of named tables over the subtask's key-group range. Operators
//!   reach tables through typed [`TableId`]s.
//! - [`tables`]: the typed tables, [`ValueTable`], [`MapTable`] and
//!   [`ListTable`], each partitioned by key group, on the storage of their
//!   kind that `kinds` describes.
//! - `kinds`: the value, map and list store traits, the seam between a
//!   typed table and where its entries live.
//! - `heap`: the stores as objects, one copy-on-write map per key group.
//! - [`serialized`]: the stores as bytes in a [`SortedKv`], the contract a
//!   backend that stores bytes implements.
//! - [`rocks`]: [`RocksDbBackend`], a [`SortedKv`] per subtask in RocksDB,
//!   with incremental checkpoints of its SST files.
//! - `codec`: the postcard encoding of keys and values, and their JSON.
//! - [`snapshot`]: snapshot files: Weir's key-group sections with a
//!   checksum, written from frozen (copy-on-write) tables, or a backend's
//!   own ([`NativeSnapshot`], restored from [`NativeFiles`]).
//! - [`storage`]: [`CheckpointStorage`], checkpoint files on `object_store`
//!   (local disk; S3 by URL) behind a blocking API with a stated contract.
//! - [`owned_dir`]: [`OwnedDir`](owned_dir::OwnedDir), a local directory a
//!   process owns under a shared parent, held by a file lock so that the
//!   next process deletes those of killed ones.
//! - [`timers`]: [`TimerTable`], event-time and processing-time timers per key.
//! - [`error`]: [`StateError`], the one error type of this crate, and
//!   whether an error means that checkpoint storage is unavailable.
//!
//! - `conformance` (feature `conformance`): the test suite every backend
//!   passes, for backends outside this crate too.
//!
//! `backend` creates `store`s; a `store` owns `tables` and `timers`; a
//! table's storage is `heap` or `serialized` on a backend's `SortedKv`.

#![warn(missing_docs)]

pub mod backend;
mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
mod heap;
mod kinds;
pub mod owned_dir;
pub mod rocks;
pub mod serialized;
pub mod snapshot;
pub mod storage;
pub mod store;
pub mod tables;
pub mod timers;

pub use backend::{MemoryBackend, StateBackend, StateScope, VisitEntry};
pub use error::{failure_kind, storage_unavailable_in, StateError};
pub use rocks::RocksDbBackend;
pub use serialized::SortedKv;
pub use snapshot::{EncodedSnapshot, NativeFiles, NativeSnapshot, StoreSnapshot};
pub use storage::CheckpointStorage;
pub use store::{JsonEntry, StateRow};
pub use store::{KeyedStateStore, StateKey, StateKind, StateValue, TableId};
pub use tables::{ListTable, MapTable, ValueTable};
pub use timers::{TimeDomain, Timer, TimerTable};
