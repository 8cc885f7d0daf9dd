//! The Nexmark benchmark's auction events.

use super::Source;
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{Restored, SourcePoll, TaskInfo};
use nexmark::config::NexmarkConfig;
use nexmark::EventGenerator;
use weir_protocol::Epoch;

/// A Nexmark event: a person, an auction or a bid.
pub type NexmarkEvent = nexmark::event::Event;

/// Event time of the first Nexmark event (ms). Fixed, so that runs are
/// reproducible; the generator's default is the wall clock.
pub const NEXMARK_BASE_TIME: u64 = 1_700_000_000_000;

/// Generates the first `events` Nexmark events (persons, auctions and bids
/// in the standard 1:3:46 proportion, 10,000 events per second of event time).
///
/// Subtask `i` of `p` generates the events `i, i + p, i + 2p, …`, so the
/// union of all subtasks is the same at every parallelism.
#[derive(Debug, Clone)]
pub struct NexmarkSource {
    events: u64,
    generator: Option<EventGenerator>,
    remaining: u64,
    emitted: u64,
}

/// The [`NexmarkSource`]'s checkpointed position: events its subtask has
/// emitted.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct NexmarkPosition {
    emitted: u64,
}

impl NexmarkSource {
    /// The first `events` events.
    pub fn new(events: u64) -> Self {
        Self {
            events,
            generator: None,
            remaining: 0,
            emitted: 0,
        }
    }
}

impl Source for NexmarkSource {
    type Out = NexmarkEvent;
    type Position = NexmarkPosition;
    const NAME: &'static str = "nexmark";

    fn open(
        &mut self,
        info: &TaskInfo,
        restored: Option<Restored<NexmarkPosition>>,
    ) -> Result<(), OperatorError> {
        let config = NexmarkConfig {
            base_time: NEXMARK_BASE_TIME,
            ..NexmarkConfig::default()
        };
        let (p, i) = (u64::from(info.parallelism), u64::from(info.subtask));
        self.emitted = 0;
        if let Some(restored) = restored {
            if restored.rescaled() {
                return Err(restored.cannot_rescale("nexmark source"));
            }
            self.emitted = restored.own().map_or(0, |p| p.emitted);
        }
        // Events i, i+p, … below `events`, minus those already emitted.
        self.remaining = self
            .events
            .saturating_sub(i)
            .div_ceil(p)
            .saturating_sub(self.emitted);
        let offset = i + self.emitted * p;
        self.generator = Some(EventGenerator::new(config).with_offset(offset).with_step(p));
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Output<NexmarkEvent>,
        max_records: usize,
    ) -> Result<SourcePoll, OperatorError> {
        let Some(generator) = self.generator.as_mut() else {
            return Ok(SourcePoll::Finished);
        };
        let n = self.remaining.min(max_records as u64);
        for event in generator.take(n as usize) {
            out.collect(event)?;
        }
        self.remaining -= n;
        self.emitted += n;
        Ok(if self.remaining == 0 {
            SourcePoll::Finished
        } else {
            SourcePoll::Ready
        })
    }

    fn position(&mut self, _epoch: Epoch) -> Option<NexmarkPosition> {
        Some(NexmarkPosition {
            emitted: self.emitted,
        })
    }
}
