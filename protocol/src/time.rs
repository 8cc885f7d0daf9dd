//! Wall-clock time in the unit every timestamp of Weir uses: milliseconds
//! since the Unix epoch (event and processing time, the API's and the
//! control store's times).
//!
//! Reading the clock is the edge; the pure decisions of the coordinator and
//! the runtime take `now` as an argument and never call this themselves.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now (0 on a clock set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// [`now_ms`] as a signed timestamp, the type of event and processing time.
pub fn now_timestamp() -> i64 {
    now_ms() as i64
}

/// Milliseconds since the Unix epoch at `at` (an instant in the past).
pub fn wall_ms(at: Instant) -> u64 {
    now_ms().saturating_sub(Instant::now().saturating_duration_since(at).as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_instant_in_the_past_maps_to_an_earlier_wall_time() {
        let before = now_ms();
        let past = Instant::now() - Duration::from_millis(1500);
        let at = wall_ms(past);
        assert!(
            at + 1500 >= before && at + 1400 <= now_ms(),
            "{at} vs {before}"
        );
        assert_eq!(now_timestamp() / 1000, now_ms() as i64 / 1000);
    }
}
