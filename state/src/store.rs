//! [`KeyedStateStore`]: the keyed state of one operator subtask.

use crate::backend::{StateBackend, StateScope};
use crate::error::StateError;
use crate::serialized::{split_prefix, table_id, KvTable, SortedKv};
use crate::snapshot::{NativeFiles, StoreSnapshot, TableBlob};
use crate::tables::{ListTable, MapTable, ValueTable};
use crate::timers::TimerTable;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use weir_protocol::key_group::key_group_of;
use weir_protocol::Epoch;
use weir_protocol::{KeyGroup, KeyGroupRange};

/// A type that can key state: hashed stably into a key group, compared for
/// equality, and serializable so that snapshots and other backends can
/// store it.
pub trait StateKey:
    Hash + Eq + Clone + Send + Sync + Debug + Serialize + DeserializeOwned + 'static
{
}
impl<T: Hash + Eq + Clone + Send + Sync + Debug + Serialize + DeserializeOwned + 'static> StateKey
    for T
{
}

/// A type that can be stored as a state value.
pub trait StateValue: Clone + Send + Sync + Debug + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + Debug + Serialize + DeserializeOwned + 'static> StateValue for T {}

/// The kinds of keyed state a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A map per key.
    Map,
    /// A list per key.
    List,
    /// Timers per key.
    Timers,
}

/// A typed handle to one table of a [`KeyedStateStore`].
///
/// Handles are cheap to copy; they are created once when an operator opens
/// and used on every access.
pub struct TableId<T> {
    index: usize,
    _table: PhantomData<fn() -> T>,
}

impl<T> Clone for TableId<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for TableId<T> {}
impl<T> Debug for TableId<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableId({})", self.index)
    }
}

/// What the store needs from every table, whatever its types.
pub(crate) trait ErasedTable: Send {
    fn name(&self) -> &str;
    fn kind(&self) -> StateKind;
    fn entries(&mut self) -> usize;
    /// The table's current contents, shared copy-on-write (cheap); `None`
    /// when its data lives in a [`SortedKv`], which snapshots as a whole.
    fn freeze(&self) -> Option<Box<dyn FrozenTable>>;
    /// Writes cached changes to the [`SortedKv`] (nothing on the heap).
    fn flush(&mut self) -> Result<(), StateError>;
    /// Adds the entries of one key group, as encoded by [`FrozenTable::encode_key_group`].
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError>;
    /// The entries of one key group's section, as JSON (key, value).
    fn decode_section(&self, bytes: &[u8]) -> Result<Vec<JsonEntry>, StateError>;
    /// One entry of this table in a [`SortedKv`] (key after its prefix), as JSON.
    fn decode_raw(&self, key: &[u8], value: &[u8]) -> Result<JsonEntry, StateError>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A state entry decoded for people: (key, value).
pub type JsonEntry = (serde_json::Value, serde_json::Value);

/// One entry of a checkpoint's keyed state, decoded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StateRow {
    /// The state's name.
    pub state: String,
    /// The key group it belongs to.
    pub key_group: KeyGroup,
    /// The key (for map state, `[key, user key]`).
    pub key: serde_json::Value,
    /// The value.
    pub value: serde_json::Value,
}

/// A table as it was when a snapshot was taken; encoded off the processing thread.
pub(crate) trait FrozenTable: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> StateKind;
    /// The entries of one key group, or `None` if it has none.
    fn encode_key_group(&self, key_group: KeyGroup) -> Result<Option<Vec<u8>>, StateError>;
}

/// The keyed state of one operator subtask: named tables over the key
/// groups the subtask owns.
///
/// Every table is partitioned by key group, so a later snapshot can write,
/// and a restore can take, any subset of key groups.
pub struct KeyedStateStore {
    scope: StateScope,
    /// The store of bytes holding the tables, or `None` for the heap.
    kv: Option<Arc<dyn SortedKv>>,
    tables: Vec<Box<dyn ErasedTable>>,
    /// Restored state of tables not registered yet, by table name.
    pending: HashMap<String, Vec<(KeyGroup, TableBlob)>>,
}

impl Debug for KeyedStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStateStore")
            .field("scope", &self.scope)
            .field(
                "tables",
                &self.tables.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyedStateStore {
    /// An empty store for `scope` whose tables live on the heap.
    pub fn on_heap(scope: StateScope) -> Self {
        Self {
            scope,
            kv: None,
            tables: Vec::new(),
            pending: HashMap::new(),
        }
    }

    /// A store for `scope` whose tables live as bytes in `kv` (laid out as
    /// [`crate::serialized`] says), with what `kv` already holds.
    pub fn serialized(scope: StateScope, kv: Arc<dyn SortedKv>) -> Self {
        Self {
            kv: Some(kv),
            ..Self::on_heap(scope)
        }
    }

    fn kv_table(&self, name: &str) -> Option<KvTable> {
        self.kv
            .as_ref()
            .map(|kv| KvTable::new(kv.clone(), name, self.scope.key_groups))
    }

    /// Who owns this state and which key groups it covers.
    pub fn scope(&self) -> &StateScope {
        &self.scope
    }

    /// The key groups this store holds.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.scope.key_groups
    }

    /// The key group of `key`, or an error if this subtask does not own it.
    #[inline]
    pub fn key_group_of<K: StateKey>(&self, key: &K) -> Result<KeyGroup, StateError> {
        let group = key_group_of(key, self.scope.max_parallelism);
        let range = self.scope.key_groups;
        if range.contains(group) {
            Ok(group)
        } else {
            Err(StateError::KeyGroupNotOwned {
                table: self.scope.operator.clone(),
                key_group: group,
                start: range.start,
                end: range.end,
            })
        }
    }

    /// Registers (or finds, when already registered) a value table.
    pub fn value_table<K: StateKey, V: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<TableId<ValueTable<K, V>>, StateError> {
        let range = self.scope.key_groups;
        let home = self.kv_table(name);
        self.register(name, StateKind::Value, || {
            Ok(ValueTable::new(name, range, home))
        })
    }

    /// Registers (or finds) a map table.
    pub fn map_table<K: StateKey, MK: StateKey, MV: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<TableId<MapTable<K, MK, MV>>, StateError> {
        let range = self.scope.key_groups;
        let home = self.kv_table(name);
        self.register(name, StateKind::Map, || {
            Ok(MapTable::new(name, range, home))
        })
    }

    /// Registers (or finds) a list table.
    pub fn list_table<K: StateKey, V: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<TableId<ListTable<K, V>>, StateError> {
        let range = self.scope.key_groups;
        let home = self.kv_table(name);
        self.register(name, StateKind::List, || {
            Ok(ListTable::new(name, range, home))
        })
    }

    /// Registers (or finds) a timer table.
    pub fn timer_table<K: StateKey>(
        &mut self,
        name: &str,
    ) -> Result<TableId<TimerTable<K>>, StateError> {
        let max_parallelism = self.scope.max_parallelism;
        let home = self.kv_table(name);
        self.register(name, StateKind::Timers, || match home {
            Some(table) => TimerTable::serialized(table, max_parallelism),
            None => Ok(TimerTable::new(name, max_parallelism)),
        })
    }

    fn register<T: ErasedTable + 'static>(
        &mut self,
        name: &str,
        kind: StateKind,
        create: impl FnOnce() -> Result<T, StateError>,
    ) -> Result<TableId<T>, StateError> {
        let index = match self.tables.iter().position(|t| t.name() == name) {
            Some(index) => {
                let existing = &self.tables[index];
                if existing.kind() != kind || !existing.as_any().is::<T>() {
                    return Err(StateError::Conflict { name: name.into() });
                }
                index
            }
            None => {
                let mut table = create()?;
                for (key_group, blob) in self.pending.remove(name).unwrap_or_default() {
                    if blob.kind != kind {
                        return Err(StateError::Conflict { name: name.into() });
                    }
                    table.restore_key_group(key_group, &blob.data)?;
                }
                self.tables.push(Box::new(table));
                self.tables.len() - 1
            }
        };
        Ok(TableId {
            index,
            _table: PhantomData,
        })
    }

    /// The table behind `id`.
    #[inline]
    pub fn table_mut<T: 'static>(&mut self, id: TableId<T>) -> Result<&mut T, StateError> {
        let tables = self.tables.len();
        self.tables
            .get_mut(id.index)
            .and_then(|t| t.as_any_mut().downcast_mut::<T>())
            .ok_or(StateError::UnknownHandle {
                id: id.index,
                tables,
            })
    }

    /// The table behind `id`, read-only.
    pub fn table<T: 'static>(&self, id: TableId<T>) -> Result<&T, StateError> {
        self.tables
            .get(id.index)
            .and_then(|t| t.as_any().downcast_ref::<T>())
            .ok_or(StateError::UnknownHandle {
                id: id.index,
                tables: self.tables.len(),
            })
    }

    /// Takes a snapshot: cheap here (copy-on-write); the returned
    /// [`StoreSnapshot`] is encoded later, on any thread, while this store
    /// keeps changing.
    pub fn snapshot(&mut self, epoch: Epoch) -> Result<StoreSnapshot, StateError> {
        match &self.kv {
            None => Ok(StoreSnapshot::sections(
                self.scope.key_groups,
                self.tables.iter().filter_map(|t| t.freeze()).collect(),
            )),
            Some(kv) => {
                for table in &mut self.tables {
                    table.flush()?;
                }
                Ok(StoreSnapshot::native(kv.clone().snapshot(epoch)?))
            }
        }
    }

    /// Checkpoint `epoch` is complete: files it wrote in a backend's own
    /// format may be referenced by later checkpoints instead of written again.
    pub fn checkpoint_complete(&self, epoch: Epoch) {
        if let Some(kv) = &self.kv {
            kv.checkpoint_complete(epoch);
        }
    }

    /// Adds the state of the key groups this store owns from a backend's
    /// own snapshot; only a store of that backend can.
    pub fn restore_native(&mut self, files: &NativeFiles) -> Result<(), StateError> {
        match &self.kv {
            Some(kv) if kv.backend() == files.backend => {
                kv.restore_range(files, self.scope.key_groups)
            }
            _ => Err(StateError::BackendMismatch {
                operator: self.scope.operator.clone(),
                problem: format!(
                    "the checkpoint was taken with the {0} backend; restore it with --state-backend {0}",
                    files.backend
                ),
            }),
        }
    }

    /// Adds the state of one key group, as encoded in a snapshot. Tables
    /// not registered yet receive their part when they are registered.
    pub fn restore_key_group(
        &mut self,
        key_group: KeyGroup,
        bytes: &[u8],
    ) -> Result<(), StateError> {
        let range = self.scope.key_groups;
        if !range.contains(key_group) {
            return Err(StateError::KeyGroupNotOwned {
                table: self.scope.operator.clone(),
                key_group,
                start: range.start,
                end: range.end,
            });
        }
        for blob in crate::snapshot::decode_key_group(bytes)? {
            match self.tables.iter_mut().find(|t| t.name() == blob.name) {
                Some(table) if table.kind() == blob.kind => {
                    table.restore_key_group(key_group, &blob.data)?
                }
                Some(_) => return Err(StateError::Conflict { name: blob.name }),
                None => self
                    .pending
                    .entry(blob.name.clone())
                    .or_default()
                    .push((key_group, blob)),
            }
        }
        Ok(())
    }

    /// Decodes one key group's section of a snapshot file with this store's
    /// (typed) tables; tables this store does not register are an error.
    pub fn dump_section(
        &self,
        key_group: KeyGroup,
        section: &[u8],
    ) -> Result<Vec<StateRow>, StateError> {
        let mut rows = Vec::new();
        for blob in crate::snapshot::decode_key_group(section)? {
            let table = self.table_named(&blob.name)?;
            for (key, value) in table.decode_section(&blob.data)? {
                rows.push(StateRow {
                    state: blob.name.clone(),
                    key_group,
                    key,
                    value,
                });
            }
        }
        Ok(rows)
    }

    /// Decodes every entry of a backend's own snapshot, read by `backend`,
    /// with this store's (typed) tables.
    pub fn dump_native(
        &self,
        backend: &dyn StateBackend,
        files: &NativeFiles,
    ) -> Result<Vec<StateRow>, StateError> {
        let tables: Vec<(u64, &dyn ErasedTable)> = self
            .tables
            .iter()
            .map(|t| (table_id(t.name()), t.as_ref()))
            .collect();
        let mut rows = Vec::new();
        backend.scan_native(files, &mut |key, value| {
            let Some((key_group, id, key)) = split_prefix(key) else {
                return Err(StateError::Corrupt {
                    path: files.backend.clone(),
                    problem: "a key shorter than its key-group and table prefix".into(),
                });
            };
            let Some((_, table)) = tables.iter().find(|(t, _)| *t == id) else {
                return Err(StateError::Corrupt {
                    path: files.backend.clone(),
                    problem: format!("an entry of key group {key_group} belongs to no state this operator declares"),
                });
            };
            let (key, value) = table.decode_raw(key, value)?;
            rows.push(StateRow {
                state: table.name().to_owned(),
                key_group,
                key,
                value,
            });
            Ok(())
        })?;
        Ok(rows)
    }

    fn table_named(&self, name: &str) -> Result<&dyn ErasedTable, StateError> {
        self.tables
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.as_ref())
            .ok_or_else(|| StateError::Corrupt {
                path: name.to_owned(),
                problem: "the checkpoint holds a state this operator does not declare".into(),
            })
    }

    /// Name, kind and number of entries of every table, in registration order.
    pub fn describe(&mut self) -> Vec<(String, StateKind, usize)> {
        self.tables
            .iter_mut()
            .map(|t| (t.name().to_owned(), t.kind(), t.entries()))
            .collect()
    }
}
