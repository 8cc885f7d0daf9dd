//! Barrier alignment: the pure decision of when an operator with several
//! input channels has received a checkpoint's barrier on all of them.
//!
//! A channel that delivered `Barrier(n)` is blocked (not read) until every
//! open channel has delivered it; then the operator snapshots. A closed
//! channel counts as having delivered every barrier.

use weir_protocol::Epoch;

/// What the operator does after a barrier or a channel closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Keep reading the unblocked channels.
    Wait,
    /// Every open channel delivered the barrier of this epoch: snapshot now;
    /// all channels are unblocked.
    Aligned(Epoch),
}

/// Tracks which channels delivered the barrier being aligned.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    blocked: Vec<bool>,
    closed: Vec<bool>,
    epoch: Option<Epoch>,
}

impl BarrierAligner {
    /// An aligner for `channels` input channels.
    pub fn new(channels: usize) -> Self {
        Self {
            blocked: vec![false; channels],
            closed: vec![false; channels],
            epoch: None,
        }
    }

    /// Whether `channel` must not be read now.
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.blocked[channel]
    }

    /// The epoch being aligned, if any.
    pub fn aligning(&self) -> Option<Epoch> {
        self.epoch
    }

    /// `channel` delivered `Barrier(epoch)`.
    ///
    /// A barrier older than the one being aligned is stale and ignored; a
    /// newer one abandons the current alignment (its checkpoint can no
    /// longer complete) and starts aligning the newer.
    pub fn on_barrier(&mut self, channel: usize, epoch: Epoch) -> Alignment {
        match self.epoch {
            Some(current) if epoch < current => return Alignment::Wait,
            Some(current) if epoch > current => self.blocked.fill(false),
            _ => {}
        }
        self.epoch = Some(epoch);
        self.blocked[channel] = true;
        self.check()
    }

    /// `channel` closed: it will deliver no more barriers.
    pub fn on_closed(&mut self, channel: usize) -> Alignment {
        self.closed[channel] = true;
        self.blocked[channel] = false;
        if self.epoch.is_some() {
            self.check()
        } else {
            Alignment::Wait
        }
    }

    fn check(&mut self) -> Alignment {
        let complete = self
            .blocked
            .iter()
            .zip(&self.closed)
            .all(|(blocked, closed)| *blocked || *closed);
        match (complete, self.epoch) {
            (true, Some(epoch)) => {
                self.blocked.fill(false);
                self.epoch = None;
                Alignment::Aligned(epoch)
            }
            _ => Alignment::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_when_every_channel_delivered_the_barrier() {
        let mut a = BarrierAligner::new(3);
        assert_eq!(a.on_barrier(1, Epoch(1)), Alignment::Wait);
        assert!(a.is_blocked(1) && !a.is_blocked(0));
        assert_eq!(a.on_barrier(0, Epoch(1)), Alignment::Wait);
        assert_eq!(a.on_barrier(2, Epoch(1)), Alignment::Aligned(Epoch(1)));
        assert!(!a.is_blocked(0) && !a.is_blocked(1) && !a.is_blocked(2));
        assert_eq!(a.aligning(), None);
    }

    #[test]
    fn a_single_channel_aligns_at_once() {
        let mut a = BarrierAligner::new(1);
        assert_eq!(a.on_barrier(0, Epoch(7)), Alignment::Aligned(Epoch(7)));
    }

    #[test]
    fn closed_channels_count_as_delivered() {
        let mut a = BarrierAligner::new(2);
        a.on_closed(1);
        assert_eq!(a.on_barrier(0, Epoch(2)), Alignment::Aligned(Epoch(2)));
        let mut b = BarrierAligner::new(2);
        assert_eq!(b.on_barrier(0, Epoch(3)), Alignment::Wait);
        assert_eq!(b.on_closed(1), Alignment::Aligned(Epoch(3)));
    }

    #[test]
    fn stale_barriers_are_ignored_and_newer_ones_take_over() {
        let mut a = BarrierAligner::new(2);
        a.on_barrier(0, Epoch(5));
        assert_eq!(a.on_barrier(1, Epoch(4)), Alignment::Wait);
        assert!(!a.is_blocked(1));
        assert_eq!(a.on_barrier(1, Epoch(6)), Alignment::Wait);
        assert!(!a.is_blocked(0) && a.is_blocked(1));
        assert_eq!(a.on_barrier(0, Epoch(6)), Alignment::Aligned(Epoch(6)));
    }
}
