//! Wall-clock time as the API and the control store report it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch at `at` (an instant in the past).
pub fn wall_ms(at: Instant) -> u64 {
    now_ms().saturating_sub(Instant::now().saturating_duration_since(at).as_millis() as u64)
}
