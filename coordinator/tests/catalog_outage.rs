//! The choice of a restore point against a real S3 server (s3s-fs): a
//! store that answers with corrupt checkpoints falls back past them (and,
//! with none left, answers "none"), while a store that does not answer is
//! an error saying so, never "no checkpoint".

#[path = "../../tests/support/s3.rs"]
mod s3;

use weir_coordinator::CheckpointCatalog;
use weir_protocol::checkpoint::{paths, MANIFEST_VERSION};
use weir_protocol::{
    CheckpointManifest, Epoch, KeyGroupRange, OperatorState, StateFile, SubtaskState, VertexId,
};
use weir_state::{storage_unavailable_in, CheckpointStorage};

const JOB: &str = "job";

/// A complete checkpoint `epoch` of one subtask with one file.
fn write_checkpoint(storage: &CheckpointStorage, epoch: u64) {
    let epoch = Epoch(epoch);
    let bytes = format!("the state as of checkpoint {}", epoch.0).into_bytes();
    let path = format!("{}/0-0/db/000001.sst", paths::checkpoint_name(epoch));
    storage
        .put(&format!("{}/{path}", paths::job_dir(JOB)), bytes.clone())
        .unwrap();
    let manifest = CheckpointManifest {
        version: MANIFEST_VERSION,
        job: JOB.into(),
        epoch,
        triggered_at_ms: 0,
        completed_at_ms: 0,
        max_parallelism: 128,
        is_final: false,
        leader_term: None,
        savepoint: false,
        operators: vec![OperatorState {
            vertex: VertexId(0),
            name: "keyed".into(),
            uid: None,
            parallelism: 1,
            subtasks: vec![SubtaskState {
                subtask: 0,
                key_groups: KeyGroupRange::new(0, 128),
                files: vec![StateFile {
                    path,
                    size: bytes.len() as u64,
                    crc32c: crc32c::crc32c(&bytes),
                    key_groups: Vec::new(),
                    format: weir_protocol::StateFileFormat::Native {
                        backend: "rocksdb".into(),
                        name: "000001.sst".into(),
                    },
                }],
                operator_state: None,
            }],
        }],
    };
    storage
        .put(
            &paths::manifest(JOB, epoch),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
    assert!(storage
        .put_if_absent(&paths::committed(JOB, epoch), Vec::new())
        .unwrap());
}

/// Flips a byte of checkpoint `epoch`'s file, keeping its size.
fn corrupt(server: &s3::S3Server, epoch: u64) {
    let file = server
        .root()
        .join(s3::BUCKET)
        .join("checkpoints")
        .join(JOB)
        .join(paths::checkpoint_name(Epoch(epoch)))
        .join("0-0/db/000001.sst");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
}

#[test]
fn corrupt_checkpoints_are_answers_and_an_unreachable_store_is_not() {
    let Some(mut server) = s3::S3Server::start() else {
        return;
    };
    let options = server.options();
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("s3://{}/checkpoints", s3::BUCKET);
    let storage = CheckpointStorage::open_with_options(&url, &options).unwrap();
    for epoch in 1..=3 {
        write_checkpoint(&storage, epoch);
    }
    let catalog = CheckpointCatalog::new(storage, JOB);
    let chosen = |checksums| {
        catalog
            .latest_for_restart(Some(Epoch(3)), None, checksums)
            .map(|m| m.map(|m| m.epoch.0))
    };
    assert_eq!(chosen(true).unwrap(), Some(3));

    // The newest is corrupt: the one before it.
    corrupt(&server, 3);
    assert_eq!(chosen(true).unwrap(), Some(2));
    // Every one is corrupt: the store answers that none is usable.
    corrupt(&server, 2);
    corrupt(&server, 1);
    assert_eq!(chosen(true).unwrap(), None);

    // The store is away: an error saying so, whether it is asked to list
    // or to read.
    server.kill();
    for checksums in [false, true] {
        let error = chosen(checksums).unwrap_err();
        assert!(storage_unavailable_in(&error), "{error}");
    }
    // Back: the same answer as before.
    server.restart();
    assert_eq!(chosen(true).unwrap(), None);
}
