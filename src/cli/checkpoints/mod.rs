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
use std::time::{Duration, UNIX_EPOCH};
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

/// `1536` → `1.5 KiB` (IEC units, by `bytesize`).
pub(crate) fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC),
/// the civil date by `humantime`'s RFC 3339 formatting.
pub(crate) fn utc(ms: i64) -> String {
    // A manifest is input: a corrupt or hand-edited one may carry a time
    // before the epoch or after the year 9999, which `humantime` cannot
    // format (it panics).
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    let after_epoch = match u64::try_from(ms) {
        Ok(ms) if ms < YEAR_10000_MS => ms,
        Ok(_) => return format!("{ms} ms (after the year 9999)"),
        Err(_) => return format!("{ms} ms (before 1970)"),
    };
    // `2023-11-14T22:13:20.123Z` → `2023-11-14 22:13:20.123`.
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(after_epoch))
        .to_string()
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_owned()
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
        assert_eq!(utc(-1), "-1 ms (before 1970)");
        assert_eq!(utc(253_402_300_799_999), "9999-12-31 23:59:59.999");
        assert_eq!(
            utc(i64::MAX),
            format!("{} ms (after the year 9999)", i64::MAX)
        );
    }
}
