//! `keyed-sum` (W1): a running count and sum per key over generated events.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use weir_operators::job::{JobContext, JobDefinition, JobError, ParamKind, ParamSpec};
use weir_operators::prelude::*;
use weir_operators::{Dataflow, MAX_WATERMARK};

/// The job's registration.
pub const DEFINITION: JobDefinition = JobDefinition {
    name: "keyed-sum",
    description: "per key, a running count and sum of generated events (W1)",
    params: &[
        ParamSpec {
            name: "events",
            kind: ParamKind::UInt,
            default: Some("1000000"),
            help: "number of events to generate",
        },
        ParamSpec {
            name: "keys",
            kind: ParamKind::UInt,
            default: Some("1000"),
            help: "number of distinct keys",
        },
        ParamSpec {
            name: "seed",
            kind: ParamKind::UInt,
            default: Some("42"),
            help: "seed of the generator",
        },
        ParamSpec {
            name: "rate",
            kind: ParamKind::UInt,
            default: Some("0"),
            help: "at most this many events per second (0: unlimited)",
        },
        ParamSpec {
            name: "fail_at",
            kind: ParamKind::UInt,
            default: Some("0"),
            help: "panic once per process when event seq N-1 passes (0: never); exercises recovery",
        },
        ParamSpec {
            name: "emit",
            kind: ParamKind::Choice(&["final", "updates"]),
            default: Some("final"),
            help: "final: one line per key at end of input; updates: every update",
        },
        ParamSpec {
            name: "state_bytes",
            kind: ParamKind::UInt,
            default: Some("0"),
            help: "extra bytes of state per key (state `ballast`), to size state for benchmarks",
        },
        ParamSpec {
            name: "sink",
            kind: ParamKind::Choice(&["output", "discard"]),
            default: Some("output"),
            help:
                "output: to --output (or stdout); discard: count and drop the records (benchmarks)",
        },
        ParamSpec {
            name: "validate",
            kind: ParamKind::Choice(&["off", "on"]),
            default: Some("off"),
            help: "on: drop events whose value is out of range before summing (an operator more: the job's second version, for upgrades)",
        },
    ],
    build,
};

/// The count and sum of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySum {
    /// The key.
    pub key: u64,
    /// Events seen for it.
    pub count: u64,
    /// Sum of their values.
    pub sum: i64,
}

impl fmt::Display for KeySum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.key, self.count, self.sum)
    }
}

/// Keeps `(count, sum)` per key; emits every update, or each key's total
/// when the input ends.
#[derive(Debug, Clone)]
pub struct RunningSum {
    emit_updates: bool,
    totals: Option<ValueState<u64, (u64, i64)>>,
    ballast_bytes: usize,
    ballast: Option<ValueState<u64, Vec<u8>>>,
}

impl RunningSum {
    /// Emits every update when `emit_updates`, otherwise only final totals.
    pub fn new(emit_updates: bool) -> Self {
        Self {
            emit_updates,
            totals: None,
            ballast_bytes: 0,
            ballast: None,
        }
    }

    /// Also keeps `bytes` of ballast state per key (written on its first
    /// event), so benchmarks can size the state.
    pub fn with_ballast(mut self, bytes: usize) -> Self {
        self.ballast_bytes = bytes;
        self
    }

    fn totals(&self) -> Result<ValueState<u64, (u64, i64)>, OperatorError> {
        self.totals
            .ok_or_else(|| OperatorError::user("running-sum used before open"))
    }
}

impl KeyedProcessFunction for RunningSum {
    type Key = u64;
    type In = GeneratedEvent;
    type Out = KeySum;

    fn open(&mut self, state: &mut StateRegistry<'_, u64>) -> Result<(), OperatorError> {
        self.totals = Some(state.value("totals")?);
        if self.ballast_bytes > 0 {
            self.ballast = Some(state.value("ballast")?);
        }
        Ok(())
    }

    fn process(
        &mut self,
        event: GeneratedEvent,
        ctx: &mut KeyedContext<'_, u64, KeySum>,
    ) -> Result<(), OperatorError> {
        let mut first = false;
        let totals = self.totals()?.update(ctx, |old| {
            first = old.is_none();
            let (count, sum) = old.unwrap_or((0, 0));
            Some((count + 1, sum + event.value))
        })?;
        if first {
            if let Some(ballast) = self.ballast {
                // Pseudo-random bytes, so that compression keeps their size.
                let mut x = event.key ^ 0x9e37_79b9_7f4a_7c15;
                let bytes = (0..self.ballast_bytes)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                ballast.set(ctx, bytes)?;
            }
        }
        if self.emit_updates {
            let (count, sum) = totals.unwrap_or_default();
            ctx.emit(KeySum {
                key: event.key,
                count,
                sum,
            })?;
        } else if first {
            // Fires once the input has ended (the final watermark).
            ctx.register_event_time_timer(MAX_WATERMARK)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_, u64, KeySum>,
    ) -> Result<(), OperatorError> {
        if let Some((count, sum)) = self.totals()?.get(ctx)? {
            let key = *ctx.key();
            ctx.emit(KeySum { key, count, sum })?;
        }
        Ok(())
    }
}

/// Set once a `fail_at` fault has fired in this process.
static FAULT_FIRED: AtomicBool = AtomicBool::new(false);

/// Panics the first time (per process) event `seq` passes; for recovery tests.
fn inject_fault(event: GeneratedEvent, seq: u64) -> GeneratedEvent {
    if event.seq == seq && !FAULT_FIRED.swap(true, Ordering::SeqCst) {
        panic!("injected fault at event {seq}");
    }
    event
}

fn build(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let p = &ctx.params;
    if p.uint("keys") == 0 {
        return Err(ctx.invalid("keys must be at least 1"));
    }
    let job = ctx.builder();
    let generator = Generator::new(p.uint("events"), p.uint("keys"), p.uint("seed"));
    // Uids on every operator with state: a savepoint restores into a later
    // version of the job whatever operators it adds.
    let mut events = job
        .source(generator.with_rate(p.uint("rate")))
        .named("events")
        .uid("events");
    let fail_at = p.uint("fail_at");
    if fail_at > 0 {
        events = events
            .map(move |event| inject_fault(event, fail_at - 1))
            .named("fault");
    }
    if p.text("validate") == "on" {
        events = events.filter(|e| (0..1000).contains(&e.value));
    }
    // Half the events cross to another worker's subtask: bitcode's
    // derived code encodes them about 3× cheaper than serde's.
    let sums = events
        .bitcode_codec()
        .key_by(|e| e.key)
        .process(
            RunningSum::new(p.text("emit") == "updates")
                .with_ballast(p.uint("state_bytes") as usize),
        )
        .named("running-sum")
        .uid("running-sum");
    if p.text("sink") == "discard" {
        sums.discard().uid("output");
    } else {
        ctx.sink(sums).uid("output");
    }
    ctx.finish(job)
}
