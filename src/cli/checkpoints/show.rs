//! `weir checkpoints show CHECKPOINT`.

use super::{bytes, table, utc};
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use weir_coordinator::{CheckpointCatalog, CheckpointStatus};
use weir_protocol::checkpoint::paths;
use weir_protocol::{CheckpointManifest, StateFile};
use weir_state::snapshot;

/// Arguments of `weir checkpoints show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The checkpoint directory: `{checkpoint-dir}/{job}/chk-NNNNNNNNNN` (URL or path).
    pub checkpoint: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Everything `show` reports.
#[derive(Debug, Serialize)]
pub struct CheckpointDetails {
    /// Whether the commit marker exists.
    pub status: CheckpointStatus,
    /// The manifest as written.
    pub manifest: CheckpointManifest,
    /// Per `operator/subtask`: bytes of each named state (key-group files).
    pub state_sizes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per file: the other complete checkpoints that reference it too.
    pub shared_with: BTreeMap<String, Vec<u64>>,
}

/// Bytes per state name in a key-group section file.
fn state_sizes(
    catalog: &CheckpointCatalog,
    file: &StateFile,
) -> Result<BTreeMap<String, u64>, Box<dyn std::error::Error>> {
    let path = format!("{}/{}", paths::job_dir(catalog.job()), file.path);
    let contents = catalog.storage().get_checked(catalog.job(), file)?;
    let mut sizes = BTreeMap::new();
    for span in &file.key_groups {
        for blob in snapshot::table_blobs(snapshot::section(&contents, span, &path)?)? {
            *sizes.entry(blob.name).or_default() += blob.data.len() as u64;
        }
    }
    Ok(sizes)
}

/// Shows one checkpoint.
pub fn run(args: ShowArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (catalog, epoch) = CheckpointCatalog::open_checkpoint(&args.checkpoint)?;
    let manifest = catalog.manifest(epoch)?;
    let status = if catalog.is_complete(epoch)? {
        CheckpointStatus::Complete
    } else {
        CheckpointStatus::Orphaned
    };
    let mut state = BTreeMap::new();
    for operator in &manifest.operators {
        for subtask in &operator.subtasks {
            let mut sizes = BTreeMap::new();
            for file in &subtask.files {
                match file.native_backend() {
                    None => {
                        for (name, size) in state_sizes(&catalog, file)? {
                            *sizes.entry(name).or_insert(0) += size;
                        }
                    }
                    // A backend's own files are not split by state.
                    Some(backend) => {
                        *sizes.entry(format!("({backend} instance)")).or_insert(0) += file.size;
                    }
                }
            }
            if !sizes.is_empty() {
                state.insert(format!("{}/{}", operator.name, subtask.subtask), sizes);
            }
        }
    }
    let mut shared_with: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for other in catalog.list()? {
        if other.epoch == epoch || other.status != CheckpointStatus::Complete {
            continue;
        }
        let Ok(other_manifest) = catalog.manifest(other.epoch) else {
            continue;
        };
        for file in other_manifest.files() {
            if manifest.files().any(|f| f.path == file.path) {
                shared_with
                    .entry(file.path.clone())
                    .or_default()
                    .push(other.epoch.0);
            }
        }
    }
    let details = CheckpointDetails {
        status,
        manifest,
        state_sizes: state,
        shared_with,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&details)?);
        return Ok(());
    }
    print_details(&catalog, &details);
    Ok(())
}

fn print_details(catalog: &CheckpointCatalog, details: &CheckpointDetails) {
    let m = &details.manifest;
    let total: u64 = m.files().map(|f| f.size).sum();
    println!(
        "checkpoint {} of job '{}' in {}: {}{}",
        m.epoch,
        m.job,
        catalog.storage().url(),
        format!("{:?}", details.status).to_lowercase(),
        if m.is_final { " (final)" } else { "" }
    );
    println!(
        "triggered {} UTC, took {} ms; {} files, {}; {} key groups",
        utc(m.triggered_at_ms),
        m.completed_at_ms - m.triggered_at_ms,
        m.files().count(),
        bytes(total),
        m.max_parallelism
    );
    let mut subtasks = table(&[
        "OPERATOR",
        "SUBTASK",
        "KEY GROUPS",
        "STATE",
        "OPERATOR STATE (positions, pending commits)",
    ]);
    for operator in &m.operators {
        for s in &operator.subtasks {
            let key_groups = if s.key_groups.is_empty() {
                "-".to_string()
            } else {
                format!("{}..{}", s.key_groups.start, s.key_groups.end)
            };
            let state = details
                .state_sizes
                .get(&format!("{}/{}", operator.name, s.subtask))
                .map(|sizes| {
                    sizes
                        .iter()
                        .map(|(name, size)| format!("{name} {}", bytes(*size)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| "-".into());
            subtasks.add_row(vec![
                operator.name.clone(),
                s.subtask.to_string(),
                key_groups,
                state,
                s.operator_state.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    println!("{subtasks}");
    let mut files = table(&["FILE", "SIZE", "CRC32C", "ALSO IN CHECKPOINTS"]);
    for file in m.files() {
        let shared = details
            .shared_with
            .get(&file.path)
            .map(|epochs| {
                epochs
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "-".into());
        files.add_row(vec![
            file.path.clone(),
            bytes(file.size),
            format!("{:08x}", file.crc32c),
            shared,
        ]);
    }
    println!("{files}");
}
