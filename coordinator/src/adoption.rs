//! Adoption after a leader change (pure): may the new leader take over an
//! attempt that the workers kept running, instead of restarting it?
//!
//! The control store says which attempt each unfinished job last deployed
//! and on which workers. Each of those workers, when it registers with the
//! new leader, reports the deployments it runs ([`DeploymentReport`]). The
//! attempt is adopted once every one of its workers reported it running
//! (or finished); it is restarted from the latest checkpoint as soon as one
//! cannot take part (it runs another attempt, or failed), or when the
//! workers have not all reported by the deadline. A final checkpoint in
//! flight is no reason to restart: sources wait until a final checkpoint
//! completed, so the new leader takes another one at once.

use std::collections::{BTreeMap, BTreeSet};
use weir_protocol::cluster::{DeploymentOutcome, DeploymentReport};
use weir_protocol::WorkerId;

/// The attempt the control store says is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedAttempt {
    /// The attempt number.
    pub attempt: u32,
    /// The workers it was deployed to.
    pub workers: BTreeSet<WorkerId>,
    /// Where the job stands with a stop-with-savepoint.
    pub stop: StopState,
}

/// Where a job stands with a stop-with-savepoint, by its control record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StopState {
    /// None was triggered (or the attempt that triggered one restarted).
    #[default]
    None,
    /// One was triggered and not recorded as done: its sources stopped,
    /// and only the leader that triggered it could have finished it.
    InFlight,
    /// It is recorded as done: the job never runs again.
    Done,
}

/// What the new leader heard from one worker of the attempt.
pub type Heard = BTreeMap<WorkerId, Option<DeploymentReport>>;

/// What to do with the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdoptionDecision {
    /// Some workers have not reported yet.
    Wait,
    /// Every worker runs (or finished) its part: adopt the attempt.
    Adopt,
    /// Every worker's part finished: the job is done.
    Finished,
    /// The attempt cannot be adopted: restart from the latest checkpoint.
    Restart(String),
    /// The job was stopped with a savepoint: cancel what still runs and
    /// end it (restoring the savepoint commits what its sinks had pending).
    Stopped,
}

/// One worker's deployments of job `job`'s attempt `attempt`, from all
/// it reported: the whole-job deployment, or (a job deployed region by
/// region) those of its regions at the attempts `region_attempts` names,
/// merged into one report of the attempt. `None` when it runs none of it,
/// or not every region `expected` says it runs (a leader that died while
/// redeploying regions). The second part lists the reports matched,
/// (attempt, region).
pub fn reports_of_attempt(
    reports: &[DeploymentReport],
    job: u32,
    attempt: u32,
    region_attempts: &BTreeMap<u32, u32>,
    expected: Option<&BTreeSet<u32>>,
) -> (Option<DeploymentReport>, Vec<(u32, Option<u32>)>) {
    let ours: Vec<&DeploymentReport> = reports
        .iter()
        .filter(|r| r.job_number == job)
        .filter(|r| match r.region {
            None => r.attempt == attempt,
            Some(part) => {
                part.job_attempt == attempt && region_attempts.get(&part.region) == Some(&r.attempt)
            }
        })
        .collect();
    let matched: Vec<(u32, Option<u32>)> = ours
        .iter()
        .map(|r| (r.attempt, r.region.map(|p| p.region)))
        .collect();
    let regions: BTreeSet<u32> = matched.iter().filter_map(|(_, r)| *r).collect();
    if !regions.is_empty() && expected.is_some_and(|expected| *expected != regions) {
        return (None, Vec::new());
    }
    let merged = match ours.as_slice() {
        [] => None,
        [one] if one.region.is_none() => Some((*one).clone()),
        parts => {
            let ended: Vec<&DeploymentOutcome> =
                parts.iter().filter_map(|r| r.ended.as_ref()).collect();
            let failed = ended
                .iter()
                .find(|o| !matches!(o, DeploymentOutcome::Finished { .. }));
            let ended = match failed {
                Some(outcome) => Some((*outcome).clone()),
                None if ended.len() == parts.len() => {
                    let (mut events_in, mut records_out) = (0, 0);
                    for outcome in &ended {
                        if let DeploymentOutcome::Finished {
                            events_in: e,
                            records_out: r,
                        } = outcome
                        {
                            events_in += e;
                            records_out += r;
                        }
                    }
                    Some(DeploymentOutcome::Finished {
                        events_in,
                        records_out,
                    })
                }
                None => None,
            };
            Some(DeploymentReport {
                job_number: job,
                attempt,
                region: None,
                started: parts.iter().all(|r| r.started),
                restored: parts.iter().flat_map(|r| r.restored.clone()).collect(),
                finished_sources: parts
                    .iter()
                    .flat_map(|r| r.finished_sources.clone())
                    .collect(),
                final_triggered: parts.iter().any(|r| r.final_triggered),
                ended,
            })
        }
    };
    (merged, matched)
}

/// Decides from what the workers reported (`None`: the worker registered
/// without this attempt) and whether the deadline has passed.
pub fn decide(
    expected: &ExpectedAttempt,
    heard: &Heard,
    deadline_passed: bool,
) -> AdoptionDecision {
    let attempt = expected.attempt;
    match expected.stop {
        StopState::Done => return AdoptionDecision::Stopped,
        StopState::InFlight => {
            return AdoptionDecision::Restart(
                "a stop-with-savepoint was in flight when the leader changed; resuming from the latest checkpoint".into(),
            )
        }
        StopState::None => {}
    }
    for (worker, report) in heard {
        if !expected.workers.contains(worker) {
            continue;
        }
        let Some(report) = report else {
            return AdoptionDecision::Restart(format!("{worker} no longer runs attempt {attempt}"));
        };
        if report.attempt != attempt {
            return AdoptionDecision::Restart(format!(
                "{worker} runs attempt {} instead of {attempt}",
                report.attempt
            ));
        }
        match &report.ended {
            Some(DeploymentOutcome::Failed { error, .. }) => {
                return AdoptionDecision::Restart(format!("{worker}'s part failed: {error}"))
            }
            Some(DeploymentOutcome::Cancelled) => {
                return AdoptionDecision::Restart(format!("{worker}'s part was cancelled"))
            }
            Some(DeploymentOutcome::Finished { .. }) | None => {}
        }
    }
    let missing: Vec<String> = expected
        .workers
        .iter()
        .filter(|w| !heard.contains_key(w))
        .map(|w| w.to_string())
        .collect();
    if !missing.is_empty() {
        return if deadline_passed {
            AdoptionDecision::Restart(format!(
                "{} did not report attempt {attempt} in time",
                missing.join(", ")
            ))
        } else {
            AdoptionDecision::Wait
        };
    }
    let all_finished = expected.workers.iter().all(|w| {
        matches!(
            heard.get(w),
            Some(Some(DeploymentReport {
                ended: Some(DeploymentOutcome::Finished { .. }),
                ..
            }))
        )
    });
    if all_finished {
        AdoptionDecision::Finished
    } else {
        AdoptionDecision::Adopt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(workers: &[u32]) -> ExpectedAttempt {
        ExpectedAttempt {
            attempt: 4,
            workers: workers.iter().map(|w| WorkerId(*w)).collect(),
            stop: StopState::None,
        }
    }

    fn running(attempt: u32) -> Option<DeploymentReport> {
        Some(DeploymentReport {
            job_number: 1,
            attempt,
            region: None,
            started: true,
            restored: vec![],
            finished_sources: vec![],
            final_triggered: false,
            ended: None,
        })
    }

    fn ended(outcome: DeploymentOutcome) -> Option<DeploymentReport> {
        let mut report = running(4);
        report.as_mut().unwrap().ended = Some(outcome);
        report
    }

    fn heard(entries: &[(u32, Option<DeploymentReport>)]) -> Heard {
        entries
            .iter()
            .map(|(w, r)| (WorkerId(*w), r.clone()))
            .collect()
    }

    #[test]
    fn adopts_once_every_worker_reported_the_attempt_running() {
        let e = expected(&[1, 2, 3]);
        let partial = heard(&[(1, running(4)), (2, running(4))]);
        assert_eq!(decide(&e, &partial, false), AdoptionDecision::Wait);
        let all = heard(&[(1, running(4)), (2, running(4)), (3, running(4))]);
        assert_eq!(decide(&e, &all, false), AdoptionDecision::Adopt);
        // A worker that finished its part already still counts.
        let finished = DeploymentOutcome::Finished {
            events_in: 1,
            records_out: 1,
        };
        let mixed = heard(&[
            (1, running(4)),
            (2, ended(finished.clone())),
            (3, running(4)),
        ]);
        assert_eq!(decide(&e, &mixed, false), AdoptionDecision::Adopt);
        let done = heard(&[
            (1, ended(finished.clone())),
            (2, ended(finished.clone())),
            (3, ended(finished)),
        ]);
        assert_eq!(decide(&e, &done, false), AdoptionDecision::Finished);
    }

    #[test]
    fn restarts_when_a_worker_cannot_take_part() {
        let e = expected(&[1, 2]);
        let cases = [
            (
                heard(&[(1, running(4)), (2, None)]),
                "no longer runs attempt 4",
            ),
            (heard(&[(1, running(3))]), "runs attempt 3 instead of 4"),
            (
                heard(&[(
                    1,
                    ended(DeploymentOutcome::Failed {
                        error: "boom".into(),
                        kind: weir_protocol::FailureKind::Task,
                    }),
                )]),
                "failed: boom",
            ),
            (
                heard(&[(2, ended(DeploymentOutcome::Cancelled))]),
                "was cancelled",
            ),
        ];
        for (heard, why) in cases {
            match decide(&e, &heard, false) {
                AdoptionDecision::Restart(reason) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn restarts_when_workers_are_missing_at_the_deadline() {
        let e = expected(&[1, 2, 3]);
        let partial = heard(&[(2, running(4))]);
        match decide(&e, &partial, true) {
            AdoptionDecision::Restart(reason) => {
                assert!(reason.contains("w1, w3 did not report"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_final_checkpoint_in_flight_is_adopted() {
        let e = expected(&[1]);
        let mut report = running(4);
        report.as_mut().unwrap().final_triggered = true;
        let h = heard(&[(1, report)]);
        // The sources still wait: the new leader takes another (or, when
        // its pointer says it completed, tells the sinks).
        assert_eq!(decide(&e, &h, false), AdoptionDecision::Adopt);
    }

    #[test]
    fn reports_of_workers_outside_the_attempt_do_not_count() {
        let e = expected(&[1]);
        let h = heard(&[(1, running(4)), (9, None)]);
        assert_eq!(decide(&e, &h, false), AdoptionDecision::Adopt);
    }

    #[test]
    fn a_stop_in_flight_restarts_and_a_recorded_stop_ends_the_job() {
        let mut e = expected(&[1, 2]);
        e.stop = StopState::InFlight;
        assert!(matches!(
            decide(&e, &Heard::new(), false),
            AdoptionDecision::Restart(reason) if reason.contains("stop-with-savepoint was in flight")
        ));
        e.stop = StopState::Done;
        assert_eq!(decide(&e, &Heard::new(), false), AdoptionDecision::Stopped);
    }

    #[test]
    fn a_workers_region_deployments_merge_into_one_report_of_the_attempt() {
        use weir_protocol::cluster::RegionPart;
        let region = |region: u32, attempt: u32, ended: Option<DeploymentOutcome>| {
            let mut report = running(attempt).unwrap();
            report.region = Some(RegionPart {
                region,
                job_attempt: 4,
                others_running: false,
            });
            report.finished_sources = vec![];
            report.ended = ended;
            report
        };
        let finished = |n: u64| DeploymentOutcome::Finished {
            events_in: n,
            records_out: n,
        };
        // Region 1 restarted on its own: attempt 7; its old attempt 6 is stale.
        let attempts: BTreeMap<u32, u32> = [(0, 5), (1, 7)].into_iter().collect();
        let reports = vec![region(0, 5, None), region(1, 7, None), region(1, 6, None)];
        let (merged, matched) = reports_of_attempt(&reports, 1, 4, &attempts, None);
        let merged = merged.unwrap();
        assert_eq!(
            (merged.attempt, merged.region, merged.ended),
            (4, None, None)
        );
        assert!(merged.started);
        assert_eq!(matched, vec![(5, Some(0)), (7, Some(1))]);
        // Both finished: the sum; one failed: the failure.
        let done = vec![
            region(0, 5, Some(finished(2))),
            region(1, 7, Some(finished(3))),
        ];
        let (merged, _) = reports_of_attempt(&done, 1, 4, &attempts, None);
        assert_eq!(merged.unwrap().ended, Some(finished(5)));
        let failed = DeploymentOutcome::Failed {
            error: "boom".into(),
            kind: weir_protocol::FailureKind::Task,
        };
        let one_failed = vec![region(0, 5, Some(failed.clone())), region(1, 7, None)];
        let (merged, _) = reports_of_attempt(&one_failed, 1, 4, &attempts, None);
        assert_eq!(merged.unwrap().ended, Some(failed));
        // Another attempt's deployments are not this one's.
        let (merged, matched) = reports_of_attempt(&reports, 1, 3, &attempts, None);
        assert!(merged.is_none() && matched.is_empty());
        // A worker missing one of its regions' deployments runs no part of
        // the attempt: what it runs is cancelled as stale.
        let expected: BTreeSet<u32> = [0, 1, 2].into_iter().collect();
        let (merged, matched) = reports_of_attempt(&reports, 1, 4, &attempts, Some(&expected));
        assert!(merged.is_none() && matched.is_empty());
    }
}
