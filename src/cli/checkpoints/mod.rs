//! `weir checkpoints …`: look into checkpoint storage directly, with or
//! without a running job. One module per subcommand.
//!
//! - [`list`]: the checkpoints of a job, newest first.
//! - [`show`]: one checkpoint's operators, subtasks, state and files.
//! - [`verify`]: every referenced file exists and matches its checksum.
//! - [`diff`]: per operator and state, the size change and the keys
//!   added, removed and changed between two checkpoints.
//! - [`dump`]: one operator's keyed state as rows of key and value.
//! - [`gc`]: delete checkpoints beyond retention and unreferenced files.

pub mod diff;
pub mod dump;
pub mod gc;
pub mod list;
pub mod show;
pub mod verify;

use clap::Subcommand;
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::Table;
use weir_operators::job::JobRegistry;

/// Subcommands of `weir checkpoints`.
#[derive(Debug, Subcommand)]
pub enum CheckpointsCommand {
    /// One row per checkpoint of a job, newest first.
    List(list::ListArgs),
    /// Operators, subtasks, key groups, state, source positions and files of a checkpoint.
    Show(show::ShowArgs),
    /// Check that every file a checkpoint references exists and matches its checksum.
    Verify(verify::VerifyArgs),
    /// Decode one operator's keyed state into rows of key and value.
    Dump(dump::DumpArgs),
    /// Per operator and state: the size change and the keys added, removed and changed.
    Diff(diff::DiffArgs),
    /// Delete checkpoints beyond retention and files no retained checkpoint references.
    Gc(gc::GcArgs),
}

/// Runs a `weir checkpoints` subcommand.
pub fn run(
    command: CheckpointsCommand,
    registry: &JobRegistry,
) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        CheckpointsCommand::List(args) => list::run(args),
        CheckpointsCommand::Show(args) => show::run(args),
        CheckpointsCommand::Verify(args) => verify::run(args),
        CheckpointsCommand::Dump(args) => dump::run(args, registry),
        CheckpointsCommand::Diff(args) => diff::run(args, registry),
        CheckpointsCommand::Gc(args) => gc::run(args),
    }
}

/// A table for people.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    table
}

/// `1536` → `1.5 KiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
pub(crate) fn utc(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{milli:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000");
    }
}
