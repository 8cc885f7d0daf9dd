//! [`DirPlane`]: the standalone coordinator's control state, kept in
//! checkpoint storage (a directory or `s3://`), by default under
//! `{checkpoint-dir}/.weir-control/`:
//!
//! ```text
//! leader.json              the term and address of the coordinator that started last
//! counters.json            the id counters
//! jobs/{number:010}.json   one record per job
//! ```
//!
//! There is one coordinator, so the campaign wins at once: it raises the
//! term in `leader.json`. Before each write a store reads `leader.json`
//! again and refuses to write once a later start raised the term, so a
//! coordinator started twice on the same directory by mistake cannot
//! overwrite the newer one's records. (Object storage offers no
//! compare-and-swap across objects; this check closes the window to one
//! read, where etcd's transactions close it entirely.)

use super::{
    ControlPlane, ControlState, ControlStore, CoordinatorAddress, Counters, LeaderInfo, Leadership,
    LeaseClock, LeaseGuard, StoredJob,
};
use crate::error::CoordinatorError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_state::{CheckpointStorage, StateError};

const LEADER: &str = "leader.json";
const COUNTERS: &str = "counters.json";
const JOBS: &str = "jobs";

/// The name of the control directory inside checkpoint storage.
pub const DEFAULT_DIR: &str = ".weir-control";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaderFile {
    term: u64,
    address: CoordinatorAddress,
    since_ms: u64,
}

/// Control state in a directory of checkpoint storage.
#[derive(Debug, Clone)]
pub struct DirPlane {
    storage: CheckpointStorage,
}

fn corrupt(path: &str, source: serde_json::Error) -> CoordinatorError {
    CoordinatorError::CorruptControlRecord {
        path: path.to_owned(),
        source,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(
    storage: &CheckpointStorage,
    path: &str,
) -> Result<Option<T>, CoordinatorError> {
    match storage.get(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(&format!("{}/{path}", storage.url()), e)),
        Err(StateError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("control records serialize")
}

impl DirPlane {
    /// The control state under `location` (a directory, `file://` or
    /// `s3://` URL), created when missing.
    pub fn open(location: &str) -> Result<Self, CoordinatorError> {
        Ok(Self {
            storage: CheckpointStorage::open(location)?,
        })
    }

    /// Where it is.
    pub fn url(&self) -> &str {
        self.storage.url()
    }
}

struct DirStore {
    storage: CheckpointStorage,
    term: u64,
}

impl DirStore {
    fn check_term(&self, what: &str) -> Result<(), CoordinatorError> {
        let current = read_json::<LeaderFile>(&self.storage, LEADER)?.map_or(0, |l| l.term);
        if current != self.term {
            return Err(CoordinatorError::Fenced {
                term: self.term,
                newer: Some(current),
                what: what.to_owned(),
            });
        }
        Ok(())
    }
}

impl ControlStore for DirStore {
    fn term(&self) -> u64 {
        self.term
    }

    fn load(&self) -> Result<ControlState, CoordinatorError> {
        let counters = read_json(&self.storage, COUNTERS)?.unwrap_or_default();
        let mut jobs: Vec<StoredJob> = Vec::new();
        let mut files = match self.storage.list_files(JOBS) {
            Ok(files) => files,
            Err(StateError::NotFound { .. }) => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        files.sort();
        for (name, _) in files {
            if !name.ends_with(".json") {
                continue;
            }
            let path = format!("{JOBS}/{name}");
            if let Some(job) = read_json(&self.storage, &path)? {
                jobs.push(job);
            }
        }
        jobs.sort_by_key(|j| j.number);
        Ok(ControlState { counters, jobs })
    }

    fn put_counters(&self, counters: &Counters) -> Result<(), CoordinatorError> {
        self.check_term("writing the id counters")?;
        Ok(self.storage.put(COUNTERS, to_json(counters))?)
    }

    fn put_job(&self, job: &StoredJob) -> Result<(), CoordinatorError> {
        self.check_term(&format!("writing job {}", job.number))?;
        let path = format!("{JOBS}/{:010}.json", job.number);
        Ok(self.storage.put(&path, to_json(job))?)
    }

    /// One coordinator writes here: storage that does not answer is an
    /// outage to wait out, not another leader (that one raises the term
    /// in `leader.json`, which the next write reads).
    fn survives_failed_write(&self, error: &CoordinatorError) -> bool {
        weir_state::storage_unavailable_in(error)
    }
}

impl ControlPlane for DirPlane {
    fn describe(&self) -> String {
        format!("standalone, records in {}", self.storage.url())
    }

    fn campaign(&self, me: &CoordinatorAddress) -> Result<Leadership, CoordinatorError> {
        let previous = read_json::<LeaderFile>(&self.storage, LEADER)?.map_or(0, |l| l.term);
        let term = previous + 1;
        let file = LeaderFile {
            term,
            address: me.clone(),
            since_ms: weir_protocol::time::now_ms(),
        };
        self.storage.put(LEADER, to_json(&file))?;
        Ok(Leadership {
            term,
            store: Arc::new(DirStore {
                storage: self.storage.clone(),
                term,
            }),
            guard: Arc::new(LeaseGuard::new(LeaseClock::unbounded(Instant::now()))),
            resign: Box::new(|| {}),
        })
    }

    fn leader(&self) -> Result<Option<LeaderInfo>, CoordinatorError> {
        Ok(
            read_json::<LeaderFile>(&self.storage, LEADER)?.map(|l| LeaderInfo {
                address: l.address,
                term: l.term,
            }),
        )
    }

    fn lease(&self) -> Option<Duration> {
        None
    }
}
