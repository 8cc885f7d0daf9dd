//! Nexmark queries over the generated auction stream, or over the events
//! `nexmark-to-kafka` wrote into a Kafka topic (`--param source=kafka`).
//!
//! - `nexmark-q5` (hot items): per sliding window (10 s every 2 s), the
//!   auctions with the most bids.
//! - `nexmark-q7` (highest bid): per tumbling window (10 s), the bids with
//!   the highest price.
//!
//! Both aggregate in two steps so that they scale: per auction first (keyed
//! by auction, parallel), then per window over the partial results (keyed by
//! window end), completing each window on an event-time timer when the
//! watermark has passed it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use weir_connectors::format::{Bytes, Json};
use weir_connectors::kafka::KafkaSource;
use weir_operators::job::{JobContext, JobDefinition, JobError, ParamKind, ParamSpec};
use weir_operators::prelude::*;
use weir_operators::Dataflow;

/// Where the events come from, and how many to generate.
const PARAMS: [ParamSpec; 5] = [
    ParamSpec {
        name: "events",
        kind: ParamKind::UInt,
        default: Some("1000000"),
        help: "number of Nexmark events to generate (about 92% are bids)",
    },
    ParamSpec {
        name: "source",
        kind: ParamKind::Choice(&["generator", "kafka"]),
        default: Some("generator"),
        help: "generator: generate the events; kafka: read what nexmark-to-kafka wrote to `topic`",
    },
    ParamSpec {
        name: "brokers",
        kind: ParamKind::Text,
        default: Some(""),
        help: "with source=kafka: bootstrap servers, host:port[,host:port]",
    },
    ParamSpec {
        name: "topic",
        kind: ParamKind::Text,
        default: Some("nexmark"),
        help: "with source=kafka: the topic of the events (read to its end at start)",
    },
    crate::kafka::CONNECTION_PARAMS[1],
];

/// Registration of q5.
pub const Q5: JobDefinition = JobDefinition {
    name: "nexmark-q5",
    description: "Nexmark q5: auctions with the most bids per 10 s window sliding every 2 s",
    params: &PARAMS,
    build: build_q5,
};

/// Registration of q7.
pub const Q7: JobDefinition = JobDefinition {
    name: "nexmark-q7",
    description: "Nexmark q7: the highest bids per 10 s tumbling window",
    params: &PARAMS,
    build: build_q7,
};

/// The parts of a bid the queries use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidSummary {
    /// The auction bid on.
    pub auction: u64,
    /// Who bid.
    pub bidder: u64,
    /// The price, in cents.
    pub price: u64,
    /// Event time, ms.
    pub date_time: Timestamp,
}

/// The bids of the Nexmark stream, with event-time timestamps.
fn bids(ctx: &JobContext, job: &JobBuilder) -> Result<Stream<BidSummary>, JobError> {
    fn bid_summary(event: NexmarkEvent) -> Option<BidSummary> {
        match event {
            NexmarkEvent::Bid(bid) => Some(BidSummary {
                auction: bid.auction as u64,
                bidder: bid.bidder as u64,
                price: bid.price as u64,
                date_time: bid.date_time as Timestamp,
            }),
            _ => None,
        }
    }
    if ctx.params.text("source") == "kafka" {
        if ctx.params.text("brokers").is_empty() {
            return Err(ctx.invalid("source=kafka needs brokers=host:port"));
        }
        // Event time is the records' timestamps (nexmark-to-kafka's event
        // times), with watermarks per partition.
        let source = KafkaSource::new(
            crate::kafka::connection(ctx)?,
            [ctx.params.text("topic")],
            Bytes,
            Json::<NexmarkEvent>::new(),
        )
        .bounded();
        return Ok(job
            .source(source)
            .named("nexmark")
            .uid("nexmark")
            .flat_map(|record| bid_summary(record.value))
            .named("bids")
            .with_timestamps(|bid| bid.date_time));
    }
    Ok(job
        .source(NexmarkSource::new(ctx.params.uint("events")))
        .named("nexmark")
        .flat_map(bid_summary)
        .named("bids")
        // The generator emits each subtask's events in time order.
        .assign_timestamps(|bid| bid.date_time, Duration::ZERO))
}

/// One line of q5's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotItem {
    /// End of the window (exclusive, ms).
    pub window_end: Timestamp,
    /// An auction with the most bids in the window.
    pub auction: u64,
    /// Its number of bids.
    pub bids: u64,
}

impl fmt::Display for HotItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.window_end, self.auction, self.bids)
    }
}

/// Per window end: the largest bid count and the auctions that have it.
#[derive(Debug, Clone, Default)]
pub struct HotItems {
    best: Option<ValueState<Timestamp, (u64, Vec<u64>)>>,
}

impl KeyedProcessFunction for HotItems {
    type Key = Timestamp;
    type In = Windowed<u64, u64>;
    type Out = HotItem;

    fn open(&mut self, state: &mut StateRegistry<'_, Timestamp>) -> Result<(), OperatorError> {
        self.best = Some(state.value("best")?);
        Ok(())
    }

    fn process(
        &mut self,
        counted: Windowed<u64, u64>,
        ctx: &mut KeyedContext<'_, Timestamp, HotItem>,
    ) -> Result<(), OperatorError> {
        let best = self
            .best
            .ok_or_else(|| OperatorError::user("hot-items used before open"))?;
        best.update(ctx, |old| {
            let (max, mut auctions) = old.unwrap_or_default();
            Some(match counted.value.cmp(&max) {
                std::cmp::Ordering::Greater => (counted.value, vec![counted.key]),
                std::cmp::Ordering::Equal => {
                    auctions.push(counted.key);
                    (max, auctions)
                }
                std::cmp::Ordering::Less => (max, auctions),
            })
        })?;
        ctx.register_event_time_timer(counted.end - 1)
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_, Timestamp, HotItem>,
    ) -> Result<(), OperatorError> {
        let best = self
            .best
            .ok_or_else(|| OperatorError::user("hot-items used before open"))?;
        let Some((bids, mut auctions)) = best.get(ctx)? else {
            return Ok(());
        };
        best.clear(ctx)?;
        auctions.sort_unstable();
        let window_end = *ctx.key();
        for auction in auctions {
            ctx.emit(HotItem {
                window_end,
                auction,
                bids,
            })?;
        }
        Ok(())
    }
}

fn build_q5(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let job = ctx.builder();
    let hot = bids(ctx, &job)?
        .key_by(|bid| bid.auction)
        .window(SlidingWindows::of(
            Duration::from_secs(10),
            Duration::from_secs(2),
        ))
        .aggregate(Count::new())
        .named("bids-per-auction")
        .key_by(|counted| counted.end)
        .process(HotItems::default())
        .named("hot-items");
    ctx.sink(hot);
    ctx.finish(job)
}

/// Keeps the bids with the highest price.
#[derive(Debug, Clone, Copy, Default)]
pub struct HighestBids;

impl AggregateFunction for HighestBids {
    type In = BidSummary;
    type Acc = Vec<BidSummary>;
    type Out = Vec<BidSummary>;

    fn create_accumulator(&self) -> Vec<BidSummary> {
        Vec::new()
    }

    fn add(&self, best: &mut Vec<BidSummary>, bid: &BidSummary) {
        keep_highest(best, *bid);
    }

    fn result(&self, best: Vec<BidSummary>) -> Vec<BidSummary> {
        best
    }
}

fn keep_highest(best: &mut Vec<BidSummary>, bid: BidSummary) {
    match best.first().map(|b| bid.price.cmp(&b.price)) {
        None | Some(std::cmp::Ordering::Equal) => best.push(bid),
        Some(std::cmp::Ordering::Greater) => {
            best.clear();
            best.push(bid);
        }
        Some(std::cmp::Ordering::Less) => {}
    }
}

/// One line of q7's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighestBid {
    /// End of the window (exclusive, ms).
    pub window_end: Timestamp,
    /// A bid with the window's highest price.
    pub bid: BidSummary,
}

impl fmt::Display for HighestBid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.bid;
        write!(
            f,
            "{},{},{},{},{}",
            self.window_end, b.auction, b.bidder, b.price, b.date_time
        )
    }
}

/// Per window end: merges the per-auction highest bids into the window's.
#[derive(Debug, Clone, Default)]
pub struct WindowHighest {
    best: Option<ValueState<Timestamp, Vec<BidSummary>>>,
}

impl KeyedProcessFunction for WindowHighest {
    type Key = Timestamp;
    type In = Windowed<u64, Vec<BidSummary>>;
    type Out = HighestBid;

    fn open(&mut self, state: &mut StateRegistry<'_, Timestamp>) -> Result<(), OperatorError> {
        self.best = Some(state.value("best")?);
        Ok(())
    }

    fn process(
        &mut self,
        partial: Windowed<u64, Vec<BidSummary>>,
        ctx: &mut KeyedContext<'_, Timestamp, HighestBid>,
    ) -> Result<(), OperatorError> {
        let best = self
            .best
            .ok_or_else(|| OperatorError::user("highest-bid used before open"))?;
        best.update(ctx, |old| {
            let mut bids = old.unwrap_or_default();
            for bid in partial.value {
                keep_highest(&mut bids, bid);
            }
            Some(bids)
        })?;
        ctx.register_event_time_timer(partial.end - 1)
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_, Timestamp, HighestBid>,
    ) -> Result<(), OperatorError> {
        let best = self
            .best
            .ok_or_else(|| OperatorError::user("highest-bid used before open"))?;
        let Some(mut bids) = best.get(ctx)? else {
            return Ok(());
        };
        best.clear(ctx)?;
        bids.sort_unstable();
        let window_end = *ctx.key();
        for bid in bids {
            ctx.emit(HighestBid { window_end, bid })?;
        }
        Ok(())
    }
}

fn build_q7(ctx: &JobContext) -> Result<Dataflow, JobError> {
    let job = ctx.builder();
    let highest = bids(ctx, &job)?
        .key_by(|bid| bid.auction)
        .window(TumblingWindows::of(Duration::from_secs(10)))
        .aggregate(HighestBids)
        .named("highest-per-auction")
        .key_by(|partial| partial.end)
        .process(WindowHighest::default())
        .named("highest-bid");
    ctx.sink(highest);
    ctx.finish(job)
}
