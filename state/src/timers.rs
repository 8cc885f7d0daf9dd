//! Keyed timers in event time and processing time.
//!
//! A timer is a `(timestamp, key)` pair in one [`TimeDomain`]. Registering
//! the same pair twice keeps one timer (as in Flink), so an operator may
//! register on every record without growing the queue. Timers are state:
//! they belong to the key group of their key and move with it.

use crate::codec::{decode, encode, to_json};
use crate::error::StateError;
use crate::serialized::KvTable;
use crate::store::{ErasedTable, FrozenTable, JsonEntry, StateKey, StateKind};
use rustc_hash::{FxHashMap, FxHashSet};
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};
use weir_protocol::key_group::key_group_of;
use weir_protocol::KeyGroup;

/// The clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the operator's watermark reaches the timestamp.
    EventTime,
    /// Fires when the wall clock (milliseconds since the Unix epoch) reaches it.
    ProcessingTime,
}

/// A timer that has come due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer<K> {
    /// The key it was registered for.
    pub key: K,
    /// The time it was registered for, in milliseconds.
    pub timestamp: i64,
    /// Which clock it follows.
    pub domain: TimeDomain,
}

#[derive(Debug, Clone)]
struct TimerQueue<K> {
    by_time: BTreeMap<i64, VecDeque<K>>,
    registered: FxHashSet<(i64, K)>,
}

impl<K: StateKey> TimerQueue<K> {
    fn new() -> Self {
        Self {
            by_time: BTreeMap::new(),
            registered: FxHashSet::default(),
        }
    }

    fn register(&mut self, key: &K, timestamp: i64) -> bool {
        if !self.registered.insert((timestamp, key.clone())) {
            return false;
        }
        self.by_time
            .entry(timestamp)
            .or_default()
            .push_back(key.clone());
        true
    }

    fn delete(&mut self, key: &K, timestamp: i64) -> bool {
        if !self.registered.remove(&(timestamp, key.clone())) {
            return false;
        }
        if let Some(keys) = self.by_time.get_mut(&timestamp) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_time.remove(&timestamp);
            }
        }
        true
    }

    fn pop_due(&mut self, up_to: i64) -> Option<(i64, K)> {
        let mut first = self.by_time.first_entry()?;
        let timestamp = *first.key();
        if timestamp > up_to {
            return None;
        }
        let keys = first.get_mut();
        // Fire keys in registration order.
        let key = keys.pop_front()?;
        if keys.is_empty() {
            first.remove();
        }
        self.registered.remove(&(timestamp, key.clone()));
        Some((timestamp, key))
    }

    fn next(&self) -> Option<i64> {
        self.by_time.keys().next().copied()
    }
}

#[derive(Debug, Clone)]
struct Queues<K> {
    event_time: TimerQueue<K>,
    processing_time: TimerQueue<K>,
}

/// Event-time and processing-time timers of one operator subtask.
///
/// Copy-on-write as a whole: a snapshot shares the queues, and the first
/// change afterwards copies them.
#[derive(Debug)]
pub struct TimerTable<K> {
    name: String,
    max_parallelism: u32,
    queues: Arc<Queues<K>>,
    /// In a store of bytes: every timer is also written there (write-through).
    persisted: Option<KvTable>,
}

impl<K: StateKey> TimerTable<K> {
    pub(crate) fn new(name: &str, max_parallelism: u32) -> Self {
        Self {
            name: name.to_owned(),
            max_parallelism,
            queues: Arc::new(Queues {
                event_time: TimerQueue::new(),
                processing_time: TimerQueue::new(),
            }),
            persisted: None,
        }
    }

    /// A timer table kept in a store of bytes, loaded with the timers
    /// already there.
    pub(crate) fn serialized(table: KvTable, max_parallelism: u32) -> Result<Self, StateError> {
        let mut timers = Self::new(&table.name, max_parallelism);
        for key_group in table.range.iter() {
            let prefix = table.prefix(key_group);
            for (key, _) in table.kv.scan(&prefix)? {
                let (event_time, timestamp, user_key) =
                    decode_timer_key::<K>(&key[prefix.len()..], &table.name)?;
                let domain = if event_time {
                    TimeDomain::EventTime
                } else {
                    TimeDomain::ProcessingTime
                };
                timers.queue(domain).register(&user_key, timestamp);
            }
        }
        timers.persisted = Some(table);
        Ok(timers)
    }

    /// The stored key of a timer.
    fn persisted_key(
        &self,
        table: &KvTable,
        domain: TimeDomain,
        key: &K,
        timestamp: i64,
    ) -> Result<Vec<u8>, StateError> {
        let mut bytes = table
            .prefix(key_group_of(key, self.max_parallelism))
            .to_vec();
        bytes.push(u8::from(domain == TimeDomain::EventTime));
        // Sign bit flipped: big-endian bytes then sort like the numbers.
        bytes.extend(((timestamp as u64) ^ (1 << 63)).to_be_bytes());
        bytes.extend(encode(key, &self.name)?);
        Ok(bytes)
    }

    fn persist(
        &self,
        domain: TimeDomain,
        key: &K,
        timestamp: i64,
        present: bool,
    ) -> Result<(), StateError> {
        let Some(table) = &self.persisted else {
            return Ok(());
        };
        let bytes = self.persisted_key(table, domain, key, timestamp)?;
        if present {
            table.kv.put(&bytes, &[])
        } else {
            table.kv.delete(&bytes)
        }
    }

    fn queue(&mut self, domain: TimeDomain) -> &mut TimerQueue<K> {
        let queues = Arc::make_mut(&mut self.queues);
        match domain {
            TimeDomain::EventTime => &mut queues.event_time,
            TimeDomain::ProcessingTime => &mut queues.processing_time,
        }
    }

    /// Registers a timer; returns false if the same one was already set.
    pub fn register(
        &mut self,
        domain: TimeDomain,
        key: &K,
        timestamp: i64,
    ) -> Result<bool, StateError> {
        let added = self.queue(domain).register(key, timestamp);
        if added {
            self.persist(domain, key, timestamp, true)?;
        }
        Ok(added)
    }

    /// Deletes a timer; returns false if it was not set.
    pub fn delete(
        &mut self,
        domain: TimeDomain,
        key: &K,
        timestamp: i64,
    ) -> Result<bool, StateError> {
        let removed = self.queue(domain).delete(key, timestamp);
        if removed {
            self.persist(domain, key, timestamp, false)?;
        }
        Ok(removed)
    }

    /// Removes and returns the earliest timer of `domain` due at `up_to`
    /// (timestamp `<= up_to`). Call until `None`: timers registered while
    /// firing are returned too if they are due.
    pub fn pop_due(
        &mut self,
        domain: TimeDomain,
        up_to: i64,
    ) -> Result<Option<Timer<K>>, StateError> {
        // Look before taking a mutable (possibly copying) borrow.
        if self.next_timestamp(domain).is_none_or(|t| t > up_to) {
            return Ok(None);
        }
        let Some((timestamp, key)) = self.queue(domain).pop_due(up_to) else {
            return Ok(None);
        };
        self.persist(domain, &key, timestamp, false)?;
        Ok(Some(Timer {
            key,
            timestamp,
            domain,
        }))
    }

    /// Timestamp of the earliest timer of `domain`.
    pub fn next_timestamp(&self, domain: TimeDomain) -> Option<i64> {
        match domain {
            TimeDomain::EventTime => self.queues.event_time.next(),
            TimeDomain::ProcessingTime => self.queues.processing_time.next(),
        }
    }

    /// Number of timers set in `domain`.
    pub fn len(&self, domain: TimeDomain) -> usize {
        match domain {
            TimeDomain::EventTime => self.queues.event_time.registered.len(),
            TimeDomain::ProcessingTime => self.queues.processing_time.registered.len(),
        }
    }
}

impl<K: StateKey> ErasedTable for TimerTable<K> {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> StateKind {
        StateKind::Timers
    }
    fn entries(&mut self) -> usize {
        self.queues.event_time.registered.len() + self.queues.processing_time.registered.len()
    }
    fn flush(&mut self) -> Result<(), StateError> {
        Ok(())
    }
    fn freeze(&self) -> Option<Box<dyn FrozenTable>> {
        if self.persisted.is_some() {
            return None;
        }
        Some(Box::new(FrozenTimers {
            name: self.name.clone(),
            max_parallelism: self.max_parallelism,
            queues: self.queues.clone(),
            by_key_group: OnceLock::new(),
        }))
    }
    fn decode_section(&self, bytes: &[u8]) -> Result<Vec<JsonEntry>, StateError> {
        let timers: Vec<StoredTimer<K>> = decode(bytes, &self.name)?;
        timers.iter().map(|t| timer_json(t, &self.name)).collect()
    }
    fn decode_raw(&self, key: &[u8], _value: &[u8]) -> Result<JsonEntry, StateError> {
        timer_json(&decode_timer_key::<K>(key, &self.name)?, &self.name)
    }
    fn restore_key_group(&mut self, _key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let timers: Vec<StoredTimer<K>> = decode(bytes, &self.name)?;
        for (event_time, timestamp, key) in timers {
            let domain = if event_time {
                TimeDomain::EventTime
            } else {
                TimeDomain::ProcessingTime
            };
            self.register(domain, &key, timestamp)?;
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A timer as stored in a snapshot: (is event time, timestamp, key).
type StoredTimer<K> = (bool, i64, K);

/// Timers as they were at a snapshot; grouped by key group on first use.
struct FrozenTimers<K> {
    name: String,
    max_parallelism: u32,
    queues: Arc<Queues<K>>,
    by_key_group: OnceLock<FxHashMap<KeyGroup, Vec<StoredTimer<K>>>>,
}

impl<K: StateKey> FrozenTable for FrozenTimers<K> {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> StateKind {
        StateKind::Timers
    }
    fn encode_key_group(&self, key_group: KeyGroup) -> Result<Option<Vec<u8>>, StateError> {
        let grouped = self.by_key_group.get_or_init(|| {
            let mut grouped: FxHashMap<KeyGroup, Vec<StoredTimer<K>>> = FxHashMap::default();
            for (event_time, queue) in [
                (true, &self.queues.event_time),
                (false, &self.queues.processing_time),
            ] {
                for (timestamp, keys) in &queue.by_time {
                    for key in keys {
                        grouped
                            .entry(key_group_of(key, self.max_parallelism))
                            .or_default()
                            .push((event_time, *timestamp, key.clone()));
                    }
                }
            }
            grouped
        });
        match grouped.get(&key_group) {
            Some(timers) => encode(timers, &self.name).map(Some),
            None => Ok(None),
        }
    }
}

/// Splits a persisted timer key (after its prefix) into its parts.
fn decode_timer_key<K: StateKey>(bytes: &[u8], table: &str) -> Result<StoredTimer<K>, StateError> {
    if bytes.len() < 9 {
        return Err(StateError::Corrupt {
            path: table.to_owned(),
            problem: "a persisted timer key is too short".into(),
        });
    }
    let event_time = bytes[0] == 1;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&bytes[1..9]);
    let timestamp = (u64::from_be_bytes(ts) ^ (1 << 63)) as i64;
    Ok((event_time, timestamp, decode(&bytes[9..], table)?))
}

/// A timer for people: key, and `{"domain", "timestamp"}` as the value.
fn timer_json<K: StateKey>(timer: &StoredTimer<K>, table: &str) -> Result<JsonEntry, StateError> {
    let (event_time, timestamp, key) = timer;
    let domain = if *event_time {
        "event_time"
    } else {
        "processing_time"
    };
    Ok((
        to_json(key, table)?,
        serde_json::json!({ "domain": domain, "timestamp": timestamp }),
    ))
}
