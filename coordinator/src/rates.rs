//! Per-operator rates for the dashboard, from the cumulative task figures
//! workers report about once a second ([`TaskFigures`]): records in and
//! out per second, and the share of the last interval each subtask was
//! busy, idle or back-pressured, summed (rates) or averaged (shares) over
//! an operator's subtasks.
//!
//! Pure bookkeeping: reports go in with the time they arrived, views come
//! out for a given `now`. A subtask that stopped reporting (its deployment
//! ended, its worker was lost) drops out after [`STALE_AFTER`]; a counter
//! that went down belongs to a restarted task and starts a new interval.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir_protocol::cluster::TaskFigures;

/// A subtask whose last report is older than this is left out.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// Jobs × operators × subtasks with a report, at most: a worker reporting
/// more (a misbehaving one) has the rest dropped.
pub const MAX_TASKS: usize = 100_000;

/// One operator's rates over the last report interval of its subtasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatorRates {
    /// Records received per second, over its subtasks.
    pub records_in_per_s: f64,
    /// Records sent per second, over its subtasks.
    pub records_out_per_s: f64,
    /// The share of the interval its subtasks were busy (their mean).
    pub busy_ratio: f64,
    /// The share they waited for input.
    pub idle_ratio: f64,
    /// The share they waited for room downstream.
    pub backpressured_ratio: f64,
    /// How full their inputs were (their mean).
    pub input_fill: f64,
    /// Subtasks with a recent report.
    pub reporting_subtasks: u32,
}

#[derive(Debug, Clone, Copy)]
struct Interval {
    records_in_per_s: f64,
    records_out_per_s: f64,
    busy: f64,
    idle: f64,
    backpressured: f64,
}

#[derive(Debug, Clone)]
struct Reported {
    at: Instant,
    figures: TaskFigures,
    last: Option<Interval>,
}

/// The latest report of every subtask, and the interval before it.
#[derive(Debug, Default)]
pub struct TaskRates {
    tasks: BTreeMap<(String, u32, u32), Reported>,
}

impl TaskRates {
    /// Takes the figures a worker reported at `now`.
    pub fn report(&mut self, tasks: Vec<TaskFigures>, now: Instant) {
        self.tasks
            .retain(|_, r| now.saturating_duration_since(r.at) <= STALE_AFTER);
        for figures in tasks {
            let key = (figures.job_id.clone(), figures.vertex, figures.subtask);
            if !self.tasks.contains_key(&key) && self.tasks.len() >= MAX_TASKS {
                continue;
            }
            let last = self.tasks.get(&key).and_then(|before| {
                interval(
                    &before.figures,
                    &figures,
                    now.saturating_duration_since(before.at),
                )
            });
            self.tasks.insert(
                key,
                Reported {
                    at: now,
                    figures,
                    last,
                },
            );
        }
    }

    /// The records each operator of `job_id` received and sent so far (in
    /// its subtasks' current attempts), by vertex id, from recent reports.
    pub fn totals(&self, job_id: &str, now: Instant) -> BTreeMap<u32, (u64, u64)> {
        let mut totals: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for ((job, vertex, _), reported) in &self.tasks {
            if job == job_id && now.saturating_duration_since(reported.at) <= STALE_AFTER {
                let total = totals.entry(*vertex).or_default();
                total.0 += reported.figures.records_in;
                total.1 += reported.figures.records_out;
            }
        }
        totals
    }

    /// Each operator of `job_id` with a recent report, by vertex id.
    pub fn operators(&self, job_id: &str, now: Instant) -> BTreeMap<u32, OperatorRates> {
        let mut operators: BTreeMap<u32, OperatorRates> = BTreeMap::new();
        for ((job, vertex, _), reported) in &self.tasks {
            if job != job_id || now.saturating_duration_since(reported.at) > STALE_AFTER {
                continue;
            }
            let rates = operators.entry(*vertex).or_default();
            rates.reporting_subtasks += 1;
            rates.input_fill += reported.figures.input_fill;
            if let Some(last) = reported.last {
                rates.records_in_per_s += last.records_in_per_s;
                rates.records_out_per_s += last.records_out_per_s;
                rates.busy_ratio += last.busy;
                rates.idle_ratio += last.idle;
                rates.backpressured_ratio += last.backpressured;
            }
        }
        for rates in operators.values_mut() {
            let n = f64::from(rates.reporting_subtasks.max(1));
            rates.busy_ratio /= n;
            rates.idle_ratio /= n;
            rates.backpressured_ratio /= n;
            rates.input_fill /= n;
        }
        operators
    }
}

/// The interval between two reports of one subtask, `elapsed` apart; `None`
/// when the task restarted in between (a counter went down) or no time
/// passed.
fn interval(before: &TaskFigures, after: &TaskFigures, elapsed: Duration) -> Option<Interval> {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0
        || after.records_in < before.records_in
        || after.records_out < before.records_out
        || after.busy_s < before.busy_s
    {
        return None;
    }
    let share = |a: f64, b: f64| ((a - b) / seconds).clamp(0.0, 1.0);
    Some(Interval {
        records_in_per_s: (after.records_in - before.records_in) as f64 / seconds,
        records_out_per_s: (after.records_out - before.records_out) as f64 / seconds,
        busy: share(after.busy_s, before.busy_s),
        idle: share(after.idle_s, before.idle_s),
        backpressured: share(after.backpressured_s, before.backpressured_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(subtask: u32, records: u64, busy_s: f64, backpressured_s: f64) -> TaskFigures {
        TaskFigures {
            job_id: "j-1".into(),
            vertex: 2,
            subtask,
            records_in: records,
            records_out: records / 2,
            busy_s,
            idle_s: 0.0,
            backpressured_s,
            input_fill: 0.5,
        }
    }

    #[test]
    fn rates_are_summed_and_shares_averaged_over_an_operators_subtasks() {
        let t0 = Instant::now();
        let mut rates = TaskRates::default();
        rates.report(vec![figures(0, 0, 0.0, 0.0), figures(1, 0, 0.0, 0.0)], t0);
        let t1 = t0 + Duration::from_secs(2);
        rates.report(
            vec![figures(0, 2_000, 1.0, 1.0), figures(1, 4_000, 2.0, 0.0)],
            t1,
        );
        let operator = &rates.operators("j-1", t1)[&2];
        assert_eq!(operator.reporting_subtasks, 2);
        assert_eq!(operator.records_in_per_s, 1_000.0 + 2_000.0);
        assert_eq!(operator.records_out_per_s, 500.0 + 1_000.0);
        assert_eq!(operator.busy_ratio, (0.5 + 1.0) / 2.0);
        assert_eq!(operator.backpressured_ratio, (0.5 + 0.0) / 2.0);
        assert_eq!(rates.totals("j-1", t1)[&2], (6_000, 3_000));
        assert!(rates.operators("j-2", t1).is_empty());
    }

    #[test]
    fn a_restarted_task_starts_a_new_interval_and_a_silent_one_drops_out() {
        let t0 = Instant::now();
        let mut rates = TaskRates::default();
        rates.report(vec![figures(0, 5_000, 3.0, 0.0)], t0);
        // Counters went down: a new attempt of the task.
        let t1 = t0 + Duration::from_secs(1);
        rates.report(vec![figures(0, 100, 0.1, 0.0)], t1);
        let operator = &rates.operators("j-1", t1)[&2];
        assert_eq!(operator.records_in_per_s, 0.0, "no interval yet");
        assert_eq!(operator.reporting_subtasks, 1);
        let later = t1 + STALE_AFTER + Duration::from_millis(1);
        assert!(rates.operators("j-1", later).is_empty());
    }
}
