//! Keyed timers in event time and processing time.
//!
//! A timer is a `(timestamp, key)` pair in one [`TimeDomain`]. Registering
//! the same pair twice keeps one timer (as in Flink), so an operator may
//! register on every record without growing the queue. Timers are state:
//! they belong to the key group of their key and move with it.

use crate::store::{ErasedTable, StateKey, StateKind};
use rustc_hash::FxHashSet;
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};

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

#[derive(Debug)]
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
        self.by_time.entry(timestamp).or_default().push_back(key.clone());
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

/// Event-time and processing-time timers of one operator subtask.
#[derive(Debug)]
pub struct TimerTable<K> {
    name: String,
    event_time: TimerQueue<K>,
    processing_time: TimerQueue<K>,
}

impl<K: StateKey> TimerTable<K> {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            event_time: TimerQueue::new(),
            processing_time: TimerQueue::new(),
        }
    }

    fn queue(&mut self, domain: TimeDomain) -> &mut TimerQueue<K> {
        match domain {
            TimeDomain::EventTime => &mut self.event_time,
            TimeDomain::ProcessingTime => &mut self.processing_time,
        }
    }

    /// Registers a timer; returns false if the same one was already set.
    pub fn register(&mut self, domain: TimeDomain, key: &K, timestamp: i64) -> bool {
        self.queue(domain).register(key, timestamp)
    }

    /// Deletes a timer; returns false if it was not set.
    pub fn delete(&mut self, domain: TimeDomain, key: &K, timestamp: i64) -> bool {
        self.queue(domain).delete(key, timestamp)
    }

    /// Removes and returns the earliest timer of `domain` due at `up_to`
    /// (timestamp `<= up_to`). Call until `None`: timers registered while
    /// firing are returned too if they are due.
    pub fn pop_due(&mut self, domain: TimeDomain, up_to: i64) -> Option<Timer<K>> {
        self.queue(domain)
            .pop_due(up_to)
            .map(|(timestamp, key)| Timer {
                key,
                timestamp,
                domain,
            })
    }

    /// Timestamp of the earliest timer of `domain`.
    pub fn next_timestamp(&self, domain: TimeDomain) -> Option<i64> {
        match domain {
            TimeDomain::EventTime => self.event_time.next(),
            TimeDomain::ProcessingTime => self.processing_time.next(),
        }
    }

    /// Number of timers set in `domain`.
    pub fn len(&self, domain: TimeDomain) -> usize {
        match domain {
            TimeDomain::EventTime => self.event_time.registered.len(),
            TimeDomain::ProcessingTime => self.processing_time.registered.len(),
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
    fn entries(&self) -> usize {
        self.event_time.registered.len() + self.processing_time.registered.len()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
