//! Merging the watermarks of an operator's input channels.

use weir_operators::{Timestamp, MAX_WATERMARK};

/// Tracks the watermark of each input channel; the operator's watermark is
/// their minimum, and an ended channel no longer holds it back.
///
/// A pure state machine: inputs are the facts observed on channels,
/// outputs are the operator watermarks to deliver (each strictly larger
/// than the last).
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    per_channel: Vec<Timestamp>,
    current: Timestamp,
}

impl InputWatermarks {
    /// `channels` inputs, none of which has sent a watermark.
    pub fn new(channels: usize) -> Self {
        Self {
            per_channel: vec![Timestamp::MIN; channels],
            current: Timestamp::MIN,
        }
    }

    /// The operator's current watermark.
    pub fn current(&self) -> Timestamp {
        self.current
    }

    /// Channel `channel` delivered `watermark`; returns the operator's new
    /// watermark if it advanced. A watermark lower than the channel's last
    /// one is ignored.
    pub fn observe(&mut self, channel: usize, watermark: Timestamp) -> Option<Timestamp> {
        let slot = &mut self.per_channel[channel];
        if watermark <= *slot {
            return None;
        }
        *slot = watermark;
        self.advance()
    }

    /// Channel `channel` ended; returns the new watermark if it advanced
    /// (to [`MAX_WATERMARK`] once every channel has ended).
    pub fn end(&mut self, channel: usize) -> Option<Timestamp> {
        self.per_channel[channel] = MAX_WATERMARK;
        self.advance()
    }

    fn advance(&mut self) -> Option<Timestamp> {
        let min = self
            .per_channel
            .iter()
            .copied()
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
}
