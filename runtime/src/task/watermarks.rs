//! Merging the watermarks of an operator's input channels.

use weir_operators::{Timestamp, MAX_WATERMARK};

/// Tracks the watermark of each input channel; the operator's watermark is
/// the minimum over the channels that are active. An ended channel no
/// longer holds it back; nor does an idle one (its source said that no
/// records follow for now, e.g. a Kafka partition without new records),
/// until a record or watermark on it makes it active again.
///
/// A pure state machine: inputs are the facts observed on channels,
/// outputs are the operator watermarks to deliver (each strictly larger
/// than the last) and whether the operator itself became idle.
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    per_channel: Vec<Timestamp>,
    idle: Vec<bool>,
    ended: Vec<bool>,
    current: Timestamp,
}

/// What a channel going idle changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// The active channels' minimum advanced to this.
    Advanced(Timestamp),
    /// Every channel that has not ended is idle: the operator is idle too,
    /// and says so downstream.
    AllIdle,
    /// Nothing changed.
    Unchanged,
}

impl InputWatermarks {
    /// `channels` inputs, none of which has sent a watermark.
    pub fn new(channels: usize) -> Self {
        Self {
            per_channel: vec![Timestamp::MIN; channels],
            idle: vec![false; channels],
            ended: vec![false; channels],
            current: Timestamp::MIN,
        }
    }

    /// The operator's current watermark.
    pub fn current(&self) -> Timestamp {
        self.current
    }

    /// Channel `channel` delivered `watermark` (which makes it active);
    /// returns the operator's new watermark if it advanced. A watermark
    /// lower than the channel's last one is ignored.
    pub fn observe(&mut self, channel: usize, watermark: Timestamp) -> Option<Timestamp> {
        self.idle[channel] = false;
        let slot = &mut self.per_channel[channel];
        if watermark <= *slot {
            return None;
        }
        *slot = watermark;
        self.advance()
    }

    /// Channel `channel` delivered records: it is active again. (It holds
    /// the watermark back from its last watermark on; that cannot move the
    /// operator's watermark, which never goes back.)
    #[inline]
    pub fn activate(&mut self, channel: usize) {
        self.idle[channel] = false;
    }

    /// Channel `channel` said it is idle.
    pub fn idle(&mut self, channel: usize) -> IdleOutcome {
        if self.idle[channel] || self.ended[channel] {
            return IdleOutcome::Unchanged;
        }
        self.idle[channel] = true;
        if self.all_idle() {
            return IdleOutcome::AllIdle;
        }
        self.advance()
            .map_or(IdleOutcome::Unchanged, IdleOutcome::Advanced)
    }

    /// Channel `channel` ended; returns the new watermark if it advanced
    /// (to [`MAX_WATERMARK`] once every channel has ended).
    pub fn end(&mut self, channel: usize) -> Option<Timestamp> {
        self.per_channel[channel] = MAX_WATERMARK;
        self.ended[channel] = true;
        self.idle[channel] = false;
        self.advance()
    }

    /// Some channel is open and every open channel is idle.
    fn all_idle(&self) -> bool {
        let mut open = self
            .ended
            .iter()
            .zip(&self.idle)
            .filter(|(ended, _)| !**ended);
        let mut any = false;
        let all = open.all(|(_, idle)| {
            any = true;
            *idle
        });
        any && all
    }

    fn advance(&mut self) -> Option<Timestamp> {
        // An idle channel does not hold the watermark back, but idle
        // channels alone do not carry it to the end of time either.
        if self.all_idle() {
            return None;
        }
        let min = self
            .per_channel
            .iter()
            .zip(&self.idle)
            .filter(|(_, idle)| !**idle)
            .map(|(w, _)| *w)
            .min()
            .unwrap_or(MAX_WATERMARK);
        if min > self.current {
            self.current = min;
            Some(min)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_channel_holds_the_watermark() {
        let mut w = InputWatermarks::new(2);
        assert_eq!(w.observe(0, 10), None);
        assert_eq!(w.observe(1, 5), Some(5));
        assert_eq!(w.observe(1, 20), Some(10));
        assert_eq!(w.observe(0, 8), None, "regressions are ignored");
        assert_eq!(w.current(), 10);
    }

    #[test]
    fn ended_channels_release_the_watermark_and_all_ended_is_max() {
        let mut w = InputWatermarks::new(2);
        w.observe(0, 3);
        assert_eq!(w.end(1), Some(3));
        assert_eq!(w.end(0), Some(MAX_WATERMARK));
        assert_eq!(w.end(0), None);
    }

    #[test]
    fn no_channels_means_end_of_time() {
        let mut w = InputWatermarks::new(0);
        assert_eq!(w.advance(), Some(MAX_WATERMARK));
    }

    #[test]
    fn idle_channels_do_not_hold_the_watermark_back() {
        let mut w = InputWatermarks::new(3);
        w.observe(0, 10);
        w.observe(1, 20);
        assert_eq!(w.idle(2), IdleOutcome::Advanced(10));
        assert_eq!(w.idle(2), IdleOutcome::Unchanged, "idle twice is once");
        assert_eq!(w.observe(0, 30), Some(20));
    }

    #[test]
    fn every_open_channel_idle_makes_the_operator_idle_without_advancing() {
        let mut w = InputWatermarks::new(2);
        w.observe(0, 5);
        w.observe(1, 7);
        assert_eq!(w.end(0), Some(7));
        assert_eq!(w.idle(1), IdleOutcome::AllIdle);
        assert_eq!(
            w.current(),
            7,
            "an idle channel beside an ended one is not the end of time"
        );
        assert_eq!(
            w.idle(0),
            IdleOutcome::Unchanged,
            "an ended channel cannot go idle"
        );
    }

    #[test]
    fn a_channel_that_resumes_holds_the_watermark_again() {
        let mut w = InputWatermarks::new(2);
        w.observe(0, 100);
        assert_eq!(w.idle(1), IdleOutcome::Advanced(100));
        w.activate(1);
        assert_eq!(w.observe(0, 200), None, "channel 1 is behind again");
        assert_eq!(w.observe(1, 150), Some(150));
        assert_eq!(
            w.idle(0),
            IdleOutcome::Unchanged,
            "channel 1 alone is at 150"
        );
        assert_eq!(w.observe(1, 300), Some(300));
    }

    #[test]
    fn the_last_channel_ending_after_others_went_idle_is_not_the_end() {
        let mut w = InputWatermarks::new(2);
        assert_eq!(w.idle(0), IdleOutcome::Unchanged);
        assert_eq!(w.end(1), None, "channel 0 is idle, not ended");
        assert_eq!(w.end(0), Some(MAX_WATERMARK));
    }
}
