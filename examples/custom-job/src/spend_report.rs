//! `spend-report`: what each customer spent per window, against their
//! lifetime total and their recent average, flagging spikes.
//!
//! ```text
//! Generator ─▶ map(Purchase) ─▶ key_by(customer) ─▶ tumbling window (sum) ─▶
//!   key_by(customer) ─▶ SpendTracker (value + map state, event-time timer) ─▶ sink
//! ```
//!
//! Every output line is a pure function of the input (the generator's
//! events are a function of the seed), so a run that crashed and restored
//! writes exactly the lines of a run that did not.

use serde::{Deserialize, Serialize};
use std::fmt;
use weir::job::{JobContext, JobDefinition, JobError, ParamKind, ParamSpec};
use weir::operators::Dataflow;
use weir::prelude::*;

/// The job, as registered.
pub const DEFINITION: JobDefinition = JobDefinition {
    name: "spend-report",
    description: "per customer and window: purchases, spend, lifetime spend, spikes",
    params: &[
        ParamSpec {
            name: "events",
            kind: ParamKind::UInt,
            default: Some("200_000"),
            help: "purchases to generate (one per millisecond of event time)",
        },
        ParamSpec {
            name: "customers",
            kind: ParamKind::UInt,
            default: Some("100"),
            help: "distinct customers",
        },
        ParamSpec {
            name: "window",
            kind: ParamKind::Duration,
            default: Some("1s"),
            help: "length of the tumbling spend windows (event time)",
        },
        ParamSpec {
            name: "history",
            kind: ParamKind::Duration,
            default: Some("5s"),
            help: "how far back the recent average looks",
        },
        ParamSpec {
            name: "rate",
            kind: ParamKind::UInt,
            default: Some("0"),
            help: "purchases per second over all subtasks (0: as fast as possible)",
        },
        ParamSpec {
            name: "seed",
            kind: ParamKind::UInt,
            default: Some("7"),
            help: "seed of the generated purchases",
        },
    ],
    build,
};

/// One purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    /// Who bought.
    pub customer: u64,
    /// What it cost, in cents.
    pub cents: u64,
    /// When (event time, ms).
    pub at: i64,
}

impl From<GeneratedEvent> for Purchase {
    fn from(event: GeneratedEvent) -> Self {
        Self {
            customer: event.key,
            cents: event.value.unsigned_abs(),
            at: event.timestamp,
        }
    }
}

/// Purchases and cents of one window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spend;

impl AggregateFunction for Spend {
    type In = Purchase;
    type Acc = (u64, u64);
    type Out = (u64, u64);

    fn create_accumulator(&self) -> (u64, u64) {
        (0, 0)
    }

    fn add(&self, (purchases, cents): &mut (u64, u64), purchase: &Purchase) {
        *purchases += 1;
        *cents += purchase.cents;
    }

    fn result(&self, accumulator: (u64, u64)) -> (u64, u64) {
        accumulator
    }
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendReport {
    /// The customer.
    pub customer: u64,
    /// Start of the window (ms).
    pub window_start: i64,
    /// Purchases in the window.
    pub purchases: u64,
    /// Cents spent in the window.
    pub cents: u64,
    /// Cents spent in every window up to and including this one.
    pub lifetime_cents: u64,
    /// Average cents per window over the earlier windows of the history
    /// (0 when there are none).
    pub recent_average: u64,
    /// Whether this window's spend is more than twice the recent average.
    pub spike: bool,
}

impl fmt::Display for SpendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{},{},{}",
            self.customer,
            self.window_start,
            self.purchases,
            self.cents,
            self.lifetime_cents,
            self.recent_average,
            if self.spike { "SPIKE" } else { "-" }
        )
    }
}

/// Per customer: cents spent in all windows so far.
type LifetimeCents = ValueState<u64, u64>;
/// Per customer: window start → cents spent in it.
type RecentWindows = MapState<u64, i64, u64>;

/// Keeps each customer's lifetime spend (value state) and the spend of
/// their recent windows (map state, window start → cents); an event-time
/// timer drops a window from the map once it is older than the history.
#[derive(Debug, Clone)]
pub struct SpendTracker {
    window_ms: i64,
    history_ms: i64,
    lifetime: Option<LifetimeCents>,
    recent: Option<RecentWindows>,
}

impl SpendTracker {
    /// Windows of `window_ms`; averages over the windows that started at
    /// most `history_ms` before.
    pub fn new(window_ms: i64, history_ms: i64) -> Self {
        Self {
            window_ms,
            history_ms,
            lifetime: None,
            recent: None,
        }
    }

    fn states(&self) -> Result<(LifetimeCents, RecentWindows), OperatorError> {
        match (self.lifetime, self.recent) {
            (Some(lifetime), Some(recent)) => Ok((lifetime, recent)),
            _ => Err(OperatorError::user("spend tracker used before open")),
        }
    }
}

impl KeyedProcessFunction for SpendTracker {
    type Key = u64;
    type In = Windowed<u64, (u64, u64)>;
    type Out = SpendReport;

    fn open(&mut self, state: &mut StateRegistry<'_, u64>) -> Result<(), OperatorError> {
        self.lifetime = Some(state.value("lifetime-cents")?);
        self.recent = Some(state.map("recent-windows")?);
        Ok(())
    }

    fn process(
        &mut self,
        window: Windowed<u64, (u64, u64)>,
        ctx: &mut KeyedContext<'_, u64, SpendReport>,
    ) -> Result<(), OperatorError> {
        let (lifetime, recent) = self.states()?;
        let (purchases, cents) = window.value;
        // Only windows within the history count, whether or not their
        // clean-up timer has fired yet: timers fire with the watermark,
        // which may lag, and the output must not depend on when.
        let earlier: Vec<u64> = recent
            .entries(ctx)?
            .into_iter()
            .filter(|(start, _)| *start < window.start && *start >= window.start - self.history_ms)
            .map(|(_, cents)| cents)
            .collect();
        let recent_average = match earlier.len() as u64 {
            0 => 0,
            n => earlier.iter().sum::<u64>() / n,
        };
        let lifetime_cents = lifetime
            .update(ctx, |total| Some(total.unwrap_or(0) + cents))?
            .unwrap_or(cents);
        recent.insert(ctx, window.start, cents)?;
        // Once the watermark is past this, no window that could count this
        // one in its history is still to come.
        ctx.register_event_time_timer(window.end + self.history_ms)?;
        ctx.emit(SpendReport {
            customer: window.key,
            window_start: window.start,
            purchases,
            cents,
            lifetime_cents,
            recent_average,
            spike: recent_average > 0 && cents > 2 * recent_average,
        })
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_, u64, SpendReport>,
    ) -> Result<(), OperatorError> {
        let (_, recent) = self.states()?;
        for (start, _) in recent.entries(ctx)? {
            if start + self.window_ms + self.history_ms <= timestamp {
                recent.remove(ctx, &start)?;
            }
        }
        Ok(())
    }
}

fn build(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let p = &ctx.params;
    if p.uint("customers") == 0 {
        return Err(ctx.invalid("customers must be at least 1"));
    }
    let window_ms = p.duration("window").as_millis() as i64;
    if window_ms == 0 {
        return Err(ctx.invalid("window must be at least 1ms"));
    }
    let history_ms = p.duration("history").as_millis() as i64;
    let job = ctx.builder();
    let purchases = job
        .source(
            Generator::new(p.uint("events"), p.uint("customers"), p.uint("seed"))
                .with_rate(p.uint("rate")),
        )
        .uid("purchases")
        .map(Purchase::from)
        .uid("to-purchase")
        .assign_timestamps(|p| p.at, std::time::Duration::ZERO)
        .uid("timestamps");
    let reports = purchases
        .key_by(|p| p.customer)
        .window(TumblingWindows::of(p.duration("window")))
        .aggregate(Spend)
        .uid("spend-per-window")
        .key_by(|w| w.key)
        .process(SpendTracker::new(window_ms, history_ms))
        .uid("spend-tracker");
    ctx.sink(reports).uid("report-sink");
    ctx.finish(job)
}
