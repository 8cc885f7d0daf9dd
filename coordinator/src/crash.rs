//! Crash hooks for tests: `WEIR_TEST_CRASH_AT=POINT[:N]` makes the
//! coordinator abort (as abruptly as SIGKILL: no cleanup runs) the `N`th
//! time (default the first) it reaches `POINT`, to test the dangerous
//! moments deterministically. Without the variable the hooks do nothing.
//!
//! | point | where |
//! |---|---|
//! | `after-manifest` | a checkpoint's manifest is written, its pointer is not |
//! | `after-pointer` | its pointer is written, its commit marker is not, and no sink was told |
//! | `during-retention` | retention deleted one file of an old checkpoint |
//! | `after-stop-trigger` | a stop-with-savepoint's trigger was handed to the workers' connections |
//! | `after-stop-recorded` | its savepoint is written and the stop recorded, and no sink was told |

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a hook.
pub const VARIABLE: &str = "WEIR_TEST_CRASH_AT";

struct Armed {
    point: String,
    nth: u32,
    seen: AtomicU32,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(VARIABLE).ok()?;
            let (point, nth) = match value.split_once(':') {
                Some((point, nth)) => (point.to_owned(), nth.parse().unwrap_or(1)),
                None => (value.clone(), 1),
            };
            tracing::warn!(%point, nth, "crash hook armed ({VARIABLE}): this coordinator will abort there");
            Some(Armed {
                point,
                nth,
                seen: AtomicU32::new(0),
            })
        })
        .as_ref()
}

/// Logs that the hooks are armed, if they are (call at start).
pub fn announce() {
    let _ = armed();
}

/// Aborts the process if the hook armed for `point` is due.
pub fn point(point: &str) {
    let Some(armed) = armed() else { return };
    if armed.point != point {
        return;
    }
    if armed.seen.fetch_add(1, Ordering::SeqCst) + 1 == armed.nth {
        eprintln!("weir coordinator: crash hook {point} reached; aborting");
        std::process::abort();
    }
}
