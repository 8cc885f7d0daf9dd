//! The checkpoint driver's side of savepoints, against real local storage:
//! what it tells the workers, and in which order. A stop's sinks may
//! commit only once its savepoint is written; when it cannot be written the
//! job is failed (to resume from its checkpoint) and never told to commit.

use crossbeam_channel::{unbounded, Receiver, Sender};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use weir_coordinator::driver::{CheckpointDriver, DriverConfig};
use weir_coordinator::savepoint::{SavepointDone, SavepointRequest};
use weir_coordinator::tracker::CheckpointConfig;
use weir_coordinator::CheckpointCatalog;
use weir_protocol::{
    ControlCommand, Edge, Epoch, JobGraph, KeyGroupRange, Partitioning, SubtaskId, SubtaskState,
    TaskAck, Vertex, VertexId, VertexKind, WorkerEvent,
};
use weir_state::CheckpointStorage;

/// A source and a sink, one subtask each.
fn graph() -> JobGraph {
    let mut graph = JobGraph::new("job");
    for (i, kind) in [VertexKind::Source, VertexKind::Sink]
        .into_iter()
        .enumerate()
    {
        graph.vertices.push(Vertex {
            id: VertexId(i as u32),
            name: format!("v{i}"),
            uid: None,
            kind,
            parallelism: 1,
            keyed: false,
        });
    }
    graph.edges.push(Edge {
        from: VertexId(0),
        to: VertexId(1),
        partitioning: Partitioning::Forward,
    });
    graph
}

struct Running {
    events: Sender<WorkerEvent>,
    commands: Receiver<ControlCommand>,
    savepoints: Sender<SavepointRequest>,
    thread: std::thread::JoinHandle<()>,
}

/// A driver whose interval never comes: only savepoints trigger.
fn start(root: &std::path::Path) -> Running {
    let storage = CheckpointStorage::open(root.to_str().unwrap()).unwrap();
    let config = DriverConfig {
        checkpoint: CheckpointConfig {
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(30),
            min_pause: Duration::ZERO,
            ..CheckpointConfig::default()
        },
        retained: 3,
    };
    let (savepoints, requests) = unbounded();
    let driver = CheckpointDriver::new(
        CheckpointCatalog::new(storage, "job"),
        &graph(),
        config,
        None,
    )
    .unwrap()
    .with_savepoints(requests);
    let (events, events_rx) = unbounded();
    let (commands_tx, commands) = unbounded();
    let thread = std::thread::spawn(move || {
        driver.run(&events_rx, &commands_tx);
    });
    Running {
        events,
        commands,
        savepoints,
        thread,
    }
}

fn ask(
    running: &Running,
    stop: bool,
    dir: &std::path::Path,
) -> Receiver<Result<SavepointDone, String>> {
    let (reply, outcome) = crossbeam_channel::bounded(1);
    running
        .savepoints
        .send(SavepointRequest {
            stop,
            dir: CheckpointStorage::open(dir.to_str().unwrap()).unwrap(),
            reply,
            cancelled: Arc::new(AtomicBool::new(false)),
        })
        .unwrap();
    outcome
}

fn next(running: &Running) -> ControlCommand {
    running
        .commands
        .recv_timeout(Duration::from_secs(10))
        .expect("a command")
}

/// Both subtasks ack `epoch`.
fn ack_all(running: &Running, epoch: Epoch) {
    for vertex in 0..2 {
        running
            .events
            .send(WorkerEvent::Ack(TaskAck {
                epoch,
                task: SubtaskId {
                    vertex: VertexId(vertex),
                    index: 0,
                },
                state: SubtaskState {
                    subtask: 0,
                    key_groups: KeyGroupRange { start: 0, end: 0 },
                    files: Vec::new(),
                    operator_state: Some("{\"position\":7}".into()),
                },
                timing: Default::default(),
            }))
            .unwrap();
    }
}

fn triggered(command: ControlCommand) -> (Epoch, bool) {
    match command {
        ControlCommand::TriggerCheckpoint { epoch, stop, .. } => (epoch, stop),
        other => panic!("expected a trigger, got {other:?}"),
    }
}

fn finish(running: Running) {
    drop(running.events);
    running.thread.join().unwrap();
}

#[test]
fn a_stop_is_committed_only_after_its_savepoint_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&dir.path().join("ck"));
    let outcome = ask(&running, true, &dir.path().join("sp"));
    let (epoch, stop) = triggered(next(&running));
    assert!(stop, "the trigger is a stop");
    ack_all(&running, epoch);
    assert_eq!(
        next(&running),
        ControlCommand::CheckpointCompleted { epoch }
    );
    // By the time the sinks hear of it, the savepoint is complete.
    let savepoint = dir
        .path()
        .join("sp/job")
        .join(format!("chk-{:010}", epoch.0));
    assert!(savepoint.join("COMMITTED").exists() && savepoint.join("manifest.json").exists());
    let done = outcome
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert!(done.stopped);
    // Nothing follows a stop: once the driver has ended, no other command
    // was sent.
    let commands = running.commands.clone();
    finish(running);
    assert_eq!(commands.try_iter().count(), 0);
}

#[test]
fn a_stop_whose_savepoint_cannot_be_written_fails_the_job_instead_of_committing() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&dir.path().join("ck"));
    // `{dir}/job` is a file: the savepoint's directory cannot be made.
    let blocked = dir.path().join("sp");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("job"), "in the way").unwrap();
    let outcome = ask(&running, true, &blocked);
    let (epoch, _) = triggered(next(&running));
    ack_all(&running, epoch);
    let problem = outcome
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap_err();
    assert!(problem.contains("writing the savepoint"), "{problem}");
    match next(&running) {
        ControlCommand::FailJob { reason } => assert!(reason.contains("resuming"), "{reason}"),
        other => panic!("the sinks must not commit: {other:?}"),
    }
    finish(running);
}

#[test]
fn a_plain_savepoint_commits_first_and_the_job_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&dir.path().join("ck"));
    let outcome = ask(&running, false, &dir.path().join("sp"));
    let (epoch, stop) = triggered(next(&running));
    assert!(!stop);
    ack_all(&running, epoch);
    assert_eq!(
        next(&running),
        ControlCommand::CheckpointCompleted { epoch }
    );
    let done = outcome
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert!(!done.stopped);
    // A second savepoint goes on the next checkpoint.
    let again = ask(&running, false, &dir.path().join("sp"));
    let (second, _) = triggered(next(&running));
    assert!(second > epoch);
    ack_all(&running, second);
    assert_eq!(
        next(&running),
        ControlCommand::CheckpointCompleted { epoch: second }
    );
    assert!(again.recv_timeout(Duration::from_secs(10)).unwrap().is_ok());
    finish(running);
}
