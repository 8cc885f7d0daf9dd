//! Keyed process functions: per-key logic with keyed state and timers.
//!
//! A [`KeyedProcessFunction`] sees one record at a time together with a
//! [`KeyedContext`] scoped to that record's key: state handles read and
//! write that key's state, timers are registered for that key, and
//! [`on_timer`](KeyedProcessFunction::on_timer) is called with the same
//! context when a timer fires.

use crate::basic::TimestampFn;
use crate::data::{Batch, Data, Key, Timestamp, MAX_WATERMARK};
use crate::error::OperatorError;
use crate::output::Output;
use crate::record_task::records_of;
use crate::task::{OperatorTask, TaskInfo, TaskSnapshot};
use std::marker::PhantomData;
use std::sync::Arc;
use weir_protocol::{Epoch, KeyGroup};
use weir_state::{
    KeyedStateStore, ListTable, MapTable, StateKey, StateValue, TableId, TimeDomain, TimerTable,
    ValueTable,
};

/// Extracts a record's key.
pub type KeyFn<K, T> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Per-key logic over a [`KeyedStream`](crate::KeyedStream).
///
/// The function is cloned once per subtask; [`open`](Self::open) runs on
/// each clone before any record and is where state is declared.
pub trait KeyedProcessFunction: Clone + Send + Sync + 'static {
    /// The key type of the input stream.
    type Key: Key;
    /// Input records.
    type In: Data;
    /// Output records.
    type Out: Data;

    /// Declares the state this function uses.
    fn open(&mut self, _state: &mut StateRegistry<'_, Self::Key>) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Handles one record; `ctx` is scoped to the record's key.
    fn process(
        &mut self,
        record: Self::In,
        ctx: &mut KeyedContext<'_, Self::Key, Self::Out>,
    ) -> Result<(), OperatorError>;

    /// A timer registered for `ctx.key()` fired at `timestamp`.
    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _domain: TimeDomain,
        _ctx: &mut KeyedContext<'_, Self::Key, Self::Out>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Called once when the input has ended and every event-time timer has fired.
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Declares keyed state in [`KeyedProcessFunction::open`].
pub struct StateRegistry<'a, K> {
    store: &'a mut KeyedStateStore,
    _key: PhantomData<fn() -> K>,
}

impl<K: Key> StateRegistry<'_, K> {
    /// A single value per key.
    pub fn value<V: StateValue>(&mut self, name: &str) -> Result<ValueState<K, V>, OperatorError> {
        Ok(ValueState {
            id: self.store.value_table(name)?,
        })
    }

    /// A map per key.
    pub fn map<MK: StateKey, MV: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<MapState<K, MK, MV>, OperatorError> {
        Ok(MapState {
            id: self.store.map_table(name)?,
        })
    }

    /// A list per key.
    pub fn list<V: StateValue>(&mut self, name: &str) -> Result<ListState<K, V>, OperatorError> {
        Ok(ListState {
            id: self.store.list_table(name)?,
        })
    }
}

/// Everything a keyed process function may do for the current key.
pub struct KeyedContext<'a, K, O> {
    key: &'a K,
    key_group: KeyGroup,
    timestamp: Option<Timestamp>,
    watermark: Timestamp,
    store: &'a mut KeyedStateStore,
    timers: TableId<TimerTable<K>>,
    out: &'a mut Output<O>,
}

impl<K: Key, O: Data> KeyedContext<'_, K, O> {
    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }

    /// Event time of the current record (or of the firing event-time timer),
    /// when the stream has timestamps.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The wall clock, in ms since the Unix epoch.
    pub fn processing_time(&self) -> Timestamp {
        weir_protocol::time::now_timestamp()
    }

    /// Emits a record downstream.
    #[inline]
    pub fn emit(&mut self, record: O) -> Result<(), OperatorError> {
        self.out.collect(record)
    }

    /// Fires [`on_timer`](KeyedProcessFunction::on_timer) for this key once
    /// the watermark reaches `timestamp`.
    pub fn register_event_time_timer(&mut self, timestamp: Timestamp) -> Result<(), OperatorError> {
        let key = self.key;
        self.timer_table()?
            .register(TimeDomain::EventTime, key, timestamp)?;
        Ok(())
    }

    /// Fires [`on_timer`](KeyedProcessFunction::on_timer) for this key once
    /// the wall clock reaches `timestamp` (ms since the Unix epoch).
    pub fn register_processing_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), OperatorError> {
        let key = self.key;
        self.timer_table()?
            .register(TimeDomain::ProcessingTime, key, timestamp)?;
        Ok(())
    }

    /// Removes a timer set for this key; no-op if none.
    pub fn delete_timer(
        &mut self,
        domain: TimeDomain,
        timestamp: Timestamp,
    ) -> Result<(), OperatorError> {
        let key = self.key;
        self.timer_table()?.delete(domain, key, timestamp)?;
        Ok(())
    }

    fn timer_table(&mut self) -> Result<&mut TimerTable<K>, OperatorError> {
        Ok(self.store.table_mut(self.timers)?)
    }
}

/// Handles are plain table ids: copyable whatever their type parameters.
macro_rules! handle_impls {
    ($name:ident<$($param:ident),+>) => {
        impl<$($param),+> Clone for $name<$($param),+> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<$($param),+> Copy for $name<$($param),+> {}
        impl<$($param),+> std::fmt::Debug for $name<$($param),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.id)
            }
        }
    };
}

/// A handle to one value per key.
pub struct ValueState<K, V> {
    id: TableId<ValueTable<K, V>>,
}

handle_impls!(ValueState<K, V>);

impl<K: Key, V: StateValue> ValueState<K, V> {
    /// The current key's value.
    #[inline]
    pub fn get<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
    ) -> Result<Option<V>, OperatorError> {
        Ok(ctx.store.table_mut(self.id)?.get(ctx.key_group, ctx.key)?)
    }

    /// Sets the current key's value.
    #[inline]
    pub fn set<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        value: V,
    ) -> Result<(), OperatorError> {
        Ok(ctx
            .store
            .table_mut(self.id)?
            .put(ctx.key_group, ctx.key, value)?)
    }

    /// Replaces the current key's value by `f(old)` (`None` clears it) and
    /// returns the new value.
    #[inline]
    pub fn update<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, OperatorError> {
        Ok(ctx
            .store
            .table_mut(self.id)?
            .update(ctx.key_group, ctx.key, f)?)
    }

    /// Clears the current key's value.
    pub fn clear<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>) -> Result<(), OperatorError> {
        ctx.store
            .table_mut(self.id)?
            .remove(ctx.key_group, ctx.key)?;
        Ok(())
    }
}

/// A handle to one map per key.
pub struct MapState<K, MK, MV> {
    id: TableId<MapTable<K, MK, MV>>,
}

handle_impls!(MapState<K, MK, MV>);

impl<K: Key, MK: StateKey, MV: StateValue> MapState<K, MK, MV> {
    /// The value under `user_key` in the current key's map.
    pub fn get<O: Data>(
        &self,
        ctx: &KeyedContext<'_, K, O>,
        user_key: &MK,
    ) -> Result<Option<MV>, OperatorError> {
        Ok(ctx
            .store
            .table(self.id)?
            .get(ctx.key_group, ctx.key, user_key)?)
    }

    /// Sets `user_key` in the current key's map.
    pub fn insert<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        user_key: MK,
        value: MV,
    ) -> Result<(), OperatorError> {
        Ok(ctx
            .store
            .table_mut(self.id)?
            .put(ctx.key_group, ctx.key, user_key, value)?)
    }

    /// Removes `user_key` from the current key's map.
    pub fn remove<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        user_key: &MK,
    ) -> Result<Option<MV>, OperatorError> {
        Ok(ctx
            .store
            .table_mut(self.id)?
            .remove(ctx.key_group, ctx.key, user_key)?)
    }

    /// All entries of the current key's map, in no particular order.
    pub fn entries<O: Data>(
        &self,
        ctx: &KeyedContext<'_, K, O>,
    ) -> Result<Vec<(MK, MV)>, OperatorError> {
        Ok(ctx.store.table(self.id)?.entries(ctx.key_group, ctx.key)?)
    }

    /// Clears the current key's map.
    pub fn clear<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>) -> Result<(), OperatorError> {
        Ok(ctx
            .store
            .table_mut(self.id)?
            .clear(ctx.key_group, ctx.key)?)
    }
}

/// A handle to one list per key.
pub struct ListState<K, V> {
    id: TableId<ListTable<K, V>>,
}

handle_impls!(ListState<K, V>);

impl<K: Key, V: StateValue> ListState<K, V> {
    /// Appends to the current key's list.
    pub fn push<O: Data>(
        &self,
        ctx: &mut KeyedContext<'_, K, O>,
        value: V,
    ) -> Result<(), OperatorError> {
        Ok(ctx
            .store
            .table_mut(self.id)?
            .push(ctx.key_group, ctx.key, value)?)
    }

    /// The current key's list.
    pub fn get<O: Data>(&self, ctx: &KeyedContext<'_, K, O>) -> Result<Vec<V>, OperatorError> {
        Ok(ctx.store.table(self.id)?.get(ctx.key_group, ctx.key)?)
    }

    /// Removes and returns the current key's list.
    pub fn take<O: Data>(&self, ctx: &mut KeyedContext<'_, K, O>) -> Result<Vec<V>, OperatorError> {
        Ok(ctx.store.table_mut(self.id)?.take(ctx.key_group, ctx.key)?)
    }
}

/// Runs a [`KeyedProcessFunction`] as a task.
pub(crate) struct KeyedProcessOperator<P: KeyedProcessFunction> {
    name: String,
    function: P,
    key: KeyFn<P::Key, P::In>,
    timestamps: Option<TimestampFn<P::In>>,
    store: KeyedStateStore,
    timers: TableId<TimerTable<P::Key>>,
    watermark: Timestamp,
    out: Output<P::Out>,
}

impl<P: KeyedProcessFunction> KeyedProcessOperator<P> {
    pub(crate) fn open(
        info: &TaskInfo,
        mut function: P,
        key: KeyFn<P::Key, P::In>,
        timestamps: Option<TimestampFn<P::In>>,
        out: Output<P::Out>,
    ) -> Result<Self, OperatorError> {
        let mut store = match &info.restored {
            Some(restored) => info
                .state_backend
                .open_keyed_from(info.state_scope(), &restored.native)?,
            None => info.state_backend.open_keyed(info.state_scope())?,
        };
        if let Some(restored) = &info.restored {
            for (key_group, section) in &restored.key_groups {
                store.restore_key_group(*key_group, section)?;
            }
        }
        let timers = store.timer_table("_timers")?;
        function.open(&mut StateRegistry {
            store: &mut store,
            _key: PhantomData,
        })?;
        Ok(Self {
            name: info.operator.clone(),
            function,
            key,
            timestamps,
            store,
            timers,
            watermark: Timestamp::MIN,
            out,
        })
    }

    fn fire_timers(&mut self, domain: TimeDomain, up_to: Timestamp) -> Result<(), OperatorError> {
        while let Some(timer) = self.store.table_mut(self.timers)?.pop_due(domain, up_to)? {
            let key_group = self.store.key_group_of(&timer.key)?;
            let mut ctx = KeyedContext {
                key: &timer.key,
                key_group,
                timestamp: match domain {
                    TimeDomain::EventTime => Some(timer.timestamp),
                    TimeDomain::ProcessingTime => None,
                },
                watermark: self.watermark,
                store: &mut self.store,
                timers: self.timers,
                out: &mut self.out,
            };
            self.function.on_timer(timer.timestamp, domain, &mut ctx)?;
        }
        Ok(())
    }
}

impl<P: KeyedProcessFunction> OperatorTask for KeyedProcessOperator<P> {
    fn process(&mut self, batch: Batch) -> Result<(), OperatorError> {
        for record in records_of::<P::In>(&self.name, batch)? {
            let key = (self.key)(&record);
            let key_group = self.store.key_group_of(&key)?;
            let timestamp = self.timestamps.as_ref().map(|ts| ts(&record));
            let mut ctx = KeyedContext {
                key: &key,
                key_group,
                timestamp,
                watermark: self.watermark,
                store: &mut self.store,
                timers: self.timers,
                out: &mut self.out,
            };
            self.function.process(record, &mut ctx)?;
        }
        Ok(())
    }

    fn inputs_idle(&mut self) -> Result<(), OperatorError> {
        self.out.mark_idle()
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), OperatorError> {
        self.watermark = watermark;
        self.fire_timers(TimeDomain::EventTime, watermark)?;
        if watermark == MAX_WATERMARK {
            self.function.finish()?;
        }
        self.out.emit_watermark(watermark)
    }

    fn processing_time(&mut self, now: Timestamp) -> Result<(), OperatorError> {
        self.fire_timers(TimeDomain::ProcessingTime, now)
    }

    fn next_processing_deadline(&self) -> Option<Timestamp> {
        self.store
            .table(self.timers)
            .ok()
            .and_then(|t| t.next_timestamp(TimeDomain::ProcessingTime))
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        self.out.flush()
    }

    fn checkpoint(&mut self, epoch: Epoch) -> Result<TaskSnapshot, OperatorError> {
        let keyed = self.store.snapshot(epoch)?;
        self.out.emit_barrier(epoch)?;
        Ok(TaskSnapshot {
            keyed: Some(keyed),
            operator_state: None,
        })
    }

    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), OperatorError> {
        self.store.checkpoint_complete(epoch);
        Ok(())
    }

    fn keyed_state(&mut self) -> Option<&mut KeyedStateStore> {
        Some(&mut self.store)
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        self.out.end_of_data()
    }

    fn close(&mut self) -> Result<(), OperatorError> {
        self.out.end_of_stream()
    }

    fn suspend(&mut self) -> Result<(), OperatorError> {
        self.out.suspend();
        Ok(())
    }
}
