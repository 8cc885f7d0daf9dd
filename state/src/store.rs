//! [`KeyedStateStore`]: the keyed state of one operator subtask.

use crate::backend::StateScope;
use crate::error::StateError;
use crate::rocks::checkpoint::{restore_range, RestoredDb, RocksSnapshot};
use crate::rocks::tables::RocksTable;
use crate::rocks::RocksDb;
use crate::snapshot::{StoreSnapshot, TableBlob};
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
    /// when its data lives in RocksDB, which snapshots as a whole.
    fn freeze(&self) -> Option<Box<dyn FrozenTable>>;
    /// Writes cached changes to RocksDB (nothing on the heap).
    fn flush(&mut self) -> Result<(), StateError>;
    /// Adds the entries of one key group, as encoded by [`FrozenTable::encode_key_group`].
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError>;
    /// The entries of one key group's section, as JSON (key, value).
    fn decode_section(&self, bytes: &[u8]) -> Result<Vec<JsonEntry>, StateError>;
    /// One RocksDB entry of this table (key after its 10-byte prefix), as JSON.
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

pub(crate) fn to_json<T: Serialize>(
    value: &T,
    table: &str,
) -> Result<serde_json::Value, StateError> {
    serde_json::to_value(value).map_err(|e| StateError::Corrupt {
        path: table.to_owned(),
        problem: format!("cannot show a value as JSON: {e}"),
    })
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
    /// The RocksDB instance holding the tables, or `None` for the heap.
    rocksdb: Option<Arc<RocksDb>>,
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
    /// An empty store for `scope`.
    pub(crate) fn new(scope: StateScope) -> Self {
        Self {
            scope,
            rocksdb: None,
            tables: Vec::new(),
            pending: HashMap::new(),
        }
    }

    /// An empty store whose tables live in `db`.
    pub(crate) fn with_rocksdb(scope: StateScope, db: Arc<RocksDb>) -> Self {
        Self {
            rocksdb: Some(db),
            ..Self::new(scope)
        }
    }

    fn rocks_table(&self, name: &str) -> Option<RocksTable> {
        self.rocksdb
            .as_ref()
            .map(|db| RocksTable::new(db.clone(), name, self.scope.key_groups))
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
        let rocks = self.rocks_table(name);
        self.register(name, StateKind::Value, || {
            Ok(match rocks {
                Some(table) => ValueTable::in_rocksdb(table),
                None => ValueTable::new(name, range),
            })
        })
    }

    /// Registers (or finds) a map table.
    pub fn map_table<K: StateKey, MK: StateKey, MV: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<TableId<MapTable<K, MK, MV>>, StateError> {
        let range = self.scope.key_groups;
        let rocks = self.rocks_table(name);
        self.register(name, StateKind::Map, || {
            Ok(match rocks {
                Some(table) => MapTable::in_rocksdb(table),
                None => MapTable::new(name, range),
            })
        })
    }

    /// Registers (or finds) a list table.
    pub fn list_table<K: StateKey, V: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<TableId<ListTable<K, V>>, StateError> {
        let range = self.scope.key_groups;
        let rocks = self.rocks_table(name);
        self.register(name, StateKind::List, || {
            Ok(match rocks {
                Some(table) => ListTable::in_rocksdb(table),
                None => ListTable::new(name, range),
            })
        })
    }

    /// Registers (or finds) a timer table.
    pub fn timer_table<K: StateKey>(
        &mut self,
        name: &str,
    ) -> Result<TableId<TimerTable<K>>, StateError> {
        let max_parallelism = self.scope.max_parallelism;
        let rocks = self.rocks_table(name);
        self.register(name, StateKind::Timers, || match rocks {
            Some(table) => TimerTable::in_rocksdb(table, max_parallelism),
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
        match &self.rocksdb {
            None => Ok(StoreSnapshot::sections(
                self.scope.key_groups,
                self.tables.iter().filter_map(|t| t.freeze()).collect(),
            )),
            Some(db) => {
                for table in &mut self.tables {
                    table.flush()?;
                }
                Ok(StoreSnapshot::rocksdb(RocksSnapshot::take(db, epoch)?))
            }
        }
    }

    /// Checkpoint `epoch` is complete: RocksDB files it uploaded may be
    /// referenced by later checkpoints instead of uploaded again.
    pub fn checkpoint_complete(&self, epoch: Epoch) {
        if let Some(db) = &self.rocksdb {
            db.incremental.confirm(epoch);
        }
    }

    /// Adds the state of the key groups this store owns from a
    /// checkpointed RocksDB instance. Only a RocksDB store can.
    pub fn restore_database(&mut self, restored: &RestoredDb) -> Result<(), StateError> {
        match &self.rocksdb {
            Some(db) => restore_range(db, restored, self.scope.key_groups),
            None => Err(StateError::BackendMismatch {
                operator: self.scope.operator.clone(),
                problem: "the checkpoint was taken with the rocksdb backend; restore it with --state-backend rocksdb".into(),
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

    /// Decodes every entry of a checkpointed RocksDB instance with this
    /// store's (typed) tables.
    pub fn dump_database(&self, restored: &RestoredDb) -> Result<Vec<StateRow>, StateError> {
        let tables: Vec<(u64, &dyn ErasedTable)> = self
            .tables
            .iter()
            .map(|t| (crate::rocks::table_id(t.name()), t.as_ref()))
            .collect();
        let mut rows = Vec::new();
        crate::rocks::checkpoint::scan_checkpointed(restored, &mut |key, value| {
            let key_group = u16::from_be_bytes([key[0], key[1]]);
            let mut id = [0u8; 8];
            id.copy_from_slice(&key[2..10]);
            let id = u64::from_be_bytes(id);
            let Some((_, table)) = tables.iter().find(|(t, _)| *t == id) else {
                return Err(StateError::Corrupt {
                    path: "rocksdb".into(),
                    problem: format!("an entry of key group {key_group} belongs to no state this operator declares"),
                });
            };
            let (key, value) = table.decode_raw(&key[10..], value)?;
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
