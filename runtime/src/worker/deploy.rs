//! Running deployments: each on its own thread with the [`LocalEngine`],
//! wired to its peers through the exchange; checkpoint events are
//! forwarded to the coordinator tagged with the job and attempt.

use super::deployments::{ReplicaTargets, Running};
use super::{ControlLink, DataflowBuilder, RunningMap};
use crate::cancel::CancelToken;
use crate::checkpoint::replicas::StateReplicas;
use crate::checkpoint::replication::Replication;
use crate::engine::config::{CheckpointRun, EngineConfig, RestoreSource};
use crate::engine::{LocalEngine, WorkerPart};
use crate::error::RuntimeError;
use crate::net::Exchange;
use std::sync::Arc;
use weir_protocol::cluster::{BackendKind, Deployment, DeploymentOutcome, SubtaskRestore};
use weir_protocol::wire::ToCoordinator;
use weir_protocol::{ControlCommand, FailureKind, WorkerEvent, WorkerId};
use weir_state::{CheckpointStorage, MemoryBackend, StateBackend};

/// What every deployment thread of this worker shares.
#[derive(Clone)]
pub(super) struct DeployContext {
    pub(super) me: WorkerId,
    pub(super) exchange: Exchange,
    pub(super) link: ControlLink,
    pub(super) build: DataflowBuilder,
    pub(super) rocksdb: Arc<dyn StateBackend>,
    pub(super) replicas: Arc<StateReplicas>,
    pub(super) channel_capacity: usize,
    pub(super) running: RunningMap,
    pub(super) metrics: crate::metrics::WorkerMetrics,
}

impl DeployContext {
    pub(super) fn deploy(&self, deployment: Deployment) {
        let (job, attempt) = (deployment.job_number, deployment.attempt);
        let (part, region) = (deployment.region, deployment.region_index());
        let (commands, commands_rx) = crossbeam_channel::unbounded();
        let cancel = CancelToken::new();
        let mut running = Running::new(attempt, part, commands, cancel.clone());
        // Made here, so that a spare that joins later is added to it.
        let replication = deployment.checkpoints.as_ref().map(|_| {
            let replication = Arc::new(Replication::new(
                self.replicas.clone(),
                self.exchange.clone(),
                deployment
                    .replica_candidates(self.me)
                    .into_iter()
                    .map(|w| w.0)
                    .collect(),
                deployment.replicas,
                self.metrics.clone(),
            ));
            running.replicas = Some(ReplicaTargets {
                replication: replication.clone(),
                me: self.me,
                deployed: deployment.peers.iter().map(|p| p.worker).collect(),
                spares: deployment.spares.iter().map(|p| p.worker).collect(),
                replicas: deployment.replicas,
            });
            replication
        });
        self.running.insert(job, running);
        self.exchange
            .begin_attempt(job, deployment.command_attempt());
        let context = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("deploy-{job}-{attempt}"))
            .spawn(move || {
                tracing::info!(job = %deployment.job_id, attempt, ?region, "deployment starting");
                let outcome = match context.run(&deployment, commands_rx, replication, &cancel) {
                    Ok(report) => DeploymentOutcome::Finished {
                        events_in: report.events_in,
                        records_out: report.records_out,
                    },
                    Err(_) if cancel.is_cancelled() => DeploymentOutcome::Cancelled,
                    Err(error) => {
                        tracing::error!(job = %deployment.job_id, attempt, error = &error as &dyn std::error::Error, "deployment failed");
                        // A restore that met a storage outage is retried by
                        // the coordinator once storage answers again.
                        let kind = weir_state::failure_kind(&error);
                        DeploymentOutcome::Failed {
                            error: weir_protocol::error::chain(&error),
                            kind,
                        }
                    }
                };
                context.exchange.release(job, attempt);
                context.running.ended(job, attempt, part, outcome.clone());
                tracing::info!(job = %deployment.job_id, attempt, ?region, ?outcome, "deployment ended");
                context.link.send(&ToCoordinator::Ended {
                    job_number: job,
                    attempt,
                    region,
                    outcome,
                });
            });
        if let Err(error) = spawned {
            let outcome = DeploymentOutcome::Failed {
                error: format!("could not start the deployment thread: {error}"),
                kind: FailureKind::Task,
            };
            self.running.ended(job, attempt, part, outcome.clone());
            self.link.send(&ToCoordinator::Ended {
                job_number: job,
                attempt,
                region,
                outcome,
            });
        }
    }

    fn run(
        &self,
        deployment: &Deployment,
        commands: crossbeam_channel::Receiver<ControlCommand>,
        replication: Option<Arc<Replication>>,
        cancel: &CancelToken,
    ) -> Result<crate::engine::config::JobReport, RuntimeError> {
        let dataflow = (self.build)(&deployment.spec).map_err(|source| RuntimeError::Build {
            job: deployment.spec.job.clone(),
            source,
        })?;
        if dataflow.graph() != &deployment.graph {
            return Err(RuntimeError::IncompatibleGraph {
                job: deployment.job_id.clone(),
                problem: "this worker builds a different graph from the coordinator's (another build of weir?)".into(),
            });
        }
        self.exchange.connect(self.me.0, &deployment.peers)?;
        let engine = LocalEngine::new(EngineConfig {
            batch_size: deployment.batch_size.max(1),
            channel_capacity: self.channel_capacity,
            state_backend: match deployment.state_backend {
                BackendKind::Memory => Arc::new(MemoryBackend),
                BackendKind::Rocksdb => self.rocksdb.clone(),
            },
            metrics: self.metrics.clone(),
            ..EngineConfig::default()
        });
        let (started, running) = (self.link.clone(), self.running.clone());
        let (job_number, attempt) = (deployment.job_number, deployment.attempt);
        let region = deployment.region_index();
        let part = WorkerPart {
            deployment,
            me: self.me,
            exchange: &self.exchange,
            on_running: Some(Arc::new(move |restored: &[SubtaskRestore]| {
                running.started(job_number, attempt, restored);
                started.send(&ToCoordinator::Started {
                    job_number,
                    attempt,
                    region,
                    restored: restored.to_vec(),
                });
            })),
        };
        let Some(settings) = &deployment.checkpoints else {
            return engine.run_part(&dataflow, Some(&part), None, cancel);
        };
        let open = |url: &str| {
            CheckpointStorage::open(url).map_err(|source| RuntimeError::Restore {
                epoch: weir_protocol::Epoch(0),
                source,
            })
        };
        let restore = match &settings.restore {
            Some(point) => Some(RestoreSource {
                storage: open(&point.storage_url)?,
                job_id: point.job_id.clone(),
                manifest: point.manifest.clone(),
                replicas: Some(self.replicas.clone()),
            }),
            None => None,
        };
        let (events, events_rx) = crossbeam_channel::unbounded::<WorkerEvent>();
        let (link, running) = (self.link.clone(), self.running.clone());
        let forwarder = std::thread::Builder::new()
            .name(format!("events-{job_number}-{attempt}"))
            .spawn(move || {
                for event in events_rx {
                    if let WorkerEvent::SourceFinished { task } = &event {
                        // A new leader learns it from the registration.
                        running.source_finished(job_number, attempt, *task);
                    }
                    link.send(&ToCoordinator::Event {
                        job_number,
                        attempt,
                        region,
                        event,
                    });
                }
            })
            .map_err(|source| RuntimeError::Spawn {
                operator: "event-forwarder".into(),
                subtask: 0,
                source,
            })?;
        // The spares this worker pushes to have no link yet.
        let targets = deployment.replica_peers(self.me);
        let spares: Vec<_> = deployment
            .spares
            .iter()
            .filter(|p| targets.contains(&p.worker))
            .cloned()
            .collect();
        self.exchange.dial_spares(self.me.0, &spares);
        let run = CheckpointRun {
            job_id: settings.job_id.clone(),
            storage: open(&settings.storage_url)?,
            commands,
            events,
            restore,
            replication,
        };
        let result = engine.run_part(&dataflow, Some(&part), Some(run), cancel);
        let _ = forwarder.join();
        result
    }
}
