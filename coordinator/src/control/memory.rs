//! [`MemoryPlane`]: control state in this process only. `weir run` uses
//! it (an embedded run is one job in one process: nothing to resume), and
//! so do tests of the coordinator's decisions. Each campaign wins at once
//! with a higher term, and fences the stores of earlier terms, as a new
//! leader would.

use super::{
    ControlPlane, ControlState, ControlStore, CoordinatorAddress, Counters, LeaderInfo, Leadership,
    LeaseClock, LeaseGuard, StoredJob,
};
use crate::error::CoordinatorError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Shared {
    term: u64,
    leader: Option<LeaderInfo>,
    counters: Counters,
    jobs: BTreeMap<u32, StoredJob>,
}

/// Control state in memory, shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct MemoryPlane {
    shared: Arc<Mutex<Shared>>,
}

impl MemoryPlane {
    /// An empty plane.
    pub fn new() -> Self {
        Self::default()
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The store of one term of a [`MemoryPlane`].
#[derive(Debug)]
struct MemoryStore {
    shared: Arc<Mutex<Shared>>,
    term: u64,
}

impl MemoryStore {
    fn fenced(&self, shared: &Shared, what: &str) -> Result<(), CoordinatorError> {
        if shared.term != self.term {
            return Err(CoordinatorError::Fenced {
                term: self.term,
                newer: Some(shared.term),
                what: what.to_owned(),
            });
        }
        Ok(())
    }
}

impl ControlStore for MemoryStore {
    fn term(&self) -> u64 {
        self.term
    }

    fn load(&self) -> Result<ControlState, CoordinatorError> {
        let shared = lock(&self.shared);
        Ok(ControlState {
            counters: shared.counters,
            jobs: shared.jobs.values().cloned().collect(),
        })
    }

    fn put_counters(&self, counters: &Counters) -> Result<(), CoordinatorError> {
        let mut shared = lock(&self.shared);
        self.fenced(&shared, "writing the id counters")?;
        shared.counters = *counters;
        Ok(())
    }

    fn put_job(&self, job: &StoredJob) -> Result<(), CoordinatorError> {
        let mut shared = lock(&self.shared);
        self.fenced(&shared, &format!("writing job {}", job.number))?;
        shared.jobs.insert(job.number, job.clone());
        Ok(())
    }
}

impl ControlPlane for MemoryPlane {
    fn describe(&self) -> String {
        "in memory (this process only)".into()
    }

    fn campaign(&self, me: &CoordinatorAddress) -> Result<Leadership, CoordinatorError> {
        let term = {
            let mut shared = self.shared();
            shared.term += 1;
            shared.leader = Some(LeaderInfo {
                address: me.clone(),
                term: shared.term,
            });
            shared.term
        };
        Ok(Leadership {
            term,
            store: Arc::new(MemoryStore {
                shared: self.shared.clone(),
                term,
            }),
            guard: Arc::new(LeaseGuard::new(LeaseClock::unbounded(Instant::now()))),
            resign: Box::new(|| {}),
        })
    }

    fn leader(&self) -> Result<Option<LeaderInfo>, CoordinatorError> {
        Ok(self.shared().leader.clone())
    }

    fn lease(&self) -> Option<Duration> {
        None
    }
}
