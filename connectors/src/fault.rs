//! Crash points: places where a connector can kill its own process, so
//! that tests can crash a real run inside each window of a two-phase
//! commit (before the pre-commit, between pre-commit and checkpoint, between
//! checkpoint and commit) rather than hoping a `kill -9` lands there.
//!
//! Off unless the environment variable `WEIR_CRASH_AT` names a point,
//! as `point` or `point:n` (the `n`-th time this process passes it;
//! default 1). The process then aborts on the spot: no destructor runs and
//! nothing is flushed, as after a `kill -9`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The configured point and how many passes it takes.
fn configured() -> Option<&'static (String, u32)> {
    static POINT: OnceLock<Option<(String, u32)>> = OnceLock::new();
    POINT
        .get_or_init(|| {
            let spec = std::env::var("WEIR_CRASH_AT").ok()?;
            let (point, count) = match spec.rsplit_once(':') {
                Some((point, n)) => (point.to_owned(), n.parse().ok()?),
                None => (spec, 1),
            };
            Some((point, count))
        })
        .as_ref()
}

/// Aborts the process if `point` is the configured crash point and this is
/// its `n`-th pass.
pub(crate) fn crash_point(point: &str) {
    crash_point_after(point, || {});
}

/// The same, running `before_crash` first when it crashes: to put the
/// process into the state the window is about (records on the broker in a
/// transaction nobody pre-committed) rather than leave it to timing.
pub(crate) fn crash_point_after(point: &str, before_crash: impl FnOnce()) {
    static PASSES: AtomicU32 = AtomicU32::new(0);
    let Some((configured, n)) = configured() else {
        return;
    };
    if configured == point && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        before_crash();
        eprintln!("weir: crashing at {point} (WEIR_CRASH_AT)");
        std::process::abort();
    }
}
