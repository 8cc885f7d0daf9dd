//! `weir checkpoints diff A B`: what changed between two checkpoints.

use super::dump::keyed_rows;
use super::{bytes, table};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use weir_coordinator::CheckpointCatalog;
use weir_operators::job::JobRegistry;
use weir_protocol::CheckpointManifest;
use weir_state::StateRow;

/// Arguments of `weir checkpoints diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older checkpoint directory (URL or path).
    pub a: String,
    /// The newer checkpoint directory (URL or path).
    pub b: String,
    /// The registered job that wrote them [default: A's manifest's job].
    #[arg(long)]
    pub job: Option<String>,
    /// Parameters the job needs to be built (`key=value`).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// How one state of one operator changed.
#[derive(Debug, Serialize)]
pub struct StateDiff {
    /// The operator.
    pub operator: String,
    /// The state's name.
    pub state: String,
    /// Entries in A.
    pub entries_a: usize,
    /// Entries in B.
    pub entries_b: usize,
    /// Keys in B only.
    pub added: usize,
    /// Keys in A only.
    pub removed: usize,
    /// Keys in both with different values.
    pub changed: usize,
}

/// How one operator's files changed.
#[derive(Debug, Serialize)]
pub struct OperatorSize {
    /// The operator.
    pub operator: String,
    /// Bytes of state in A.
    pub bytes_a: u64,
    /// Bytes of state in B.
    pub bytes_b: u64,
}

/// Everything `diff` reports.
#[derive(Debug, Serialize)]
pub struct CheckpointDiff {
    /// Per operator, the size of its state files.
    pub sizes: Vec<OperatorSize>,
    /// Per operator and state, the keys added, removed and changed.
    pub states: Vec<StateDiff>,
}

fn operator_bytes(manifest: &CheckpointManifest, operator: &str) -> u64 {
    manifest
        .operator(operator)
        .map(|o| {
            o.subtasks
                .iter()
                .flat_map(|s| &s.files)
                .map(|f| f.size)
                .sum()
        })
        .unwrap_or(0)
}

fn by_state(rows: Vec<StateRow>) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut states: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for row in rows {
        states
            .entry(row.state)
            .or_default()
            .insert(row.key.to_string(), row.value.to_string());
    }
    states
}

/// Compares two checkpoints.
pub fn run(args: DiffArgs, registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    let (catalog_a, epoch_a) = CheckpointCatalog::open_checkpoint(&args.a)?;
    let (catalog_b, epoch_b) = CheckpointCatalog::open_checkpoint(&args.b)?;
    let (a, b) = (catalog_a.manifest(epoch_a)?, catalog_b.manifest(epoch_b)?);
    let job = super::dump::job_of(registry, &a, args.job.as_deref())?;
    let keyed = |m: &CheckpointManifest| -> BTreeSet<String> {
        m.operators
            .iter()
            .filter(|o| o.subtasks.iter().any(|s| !s.files.is_empty()))
            .map(|o| o.name.clone())
            .collect()
    };
    let operators: BTreeSet<String> = keyed(&a).union(&keyed(&b)).cloned().collect();
    let mut diff = CheckpointDiff {
        sizes: Vec::new(),
        states: Vec::new(),
    };
    for operator in &operators {
        diff.sizes.push(OperatorSize {
            operator: operator.clone(),
            bytes_a: operator_bytes(&a, operator),
            bytes_b: operator_bytes(&b, operator),
        });
        let rows = |catalog: &CheckpointCatalog, m: &CheckpointManifest| match m.operator(operator)
        {
            Some(_) => keyed_rows(registry, catalog, m, operator, &job, &args.params).map(by_state),
            None => Ok(BTreeMap::new()),
        };
        let (states_a, states_b) = (rows(&catalog_a, &a)?, rows(&catalog_b, &b)?);
        let names: BTreeSet<&String> = states_a.keys().chain(states_b.keys()).collect();
        let empty = BTreeMap::new();
        for name in names {
            let (in_a, in_b) = (
                states_a.get(name).unwrap_or(&empty),
                states_b.get(name).unwrap_or(&empty),
            );
            diff.states.push(StateDiff {
                operator: operator.clone(),
                state: name.clone(),
                entries_a: in_a.len(),
                entries_b: in_b.len(),
                added: in_b.keys().filter(|k| !in_a.contains_key(*k)).count(),
                removed: in_a.keys().filter(|k| !in_b.contains_key(*k)).count(),
                changed: in_a
                    .iter()
                    .filter(|(k, v)| in_b.get(*k).is_some_and(|w| w != *v))
                    .count(),
            });
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&diff)?);
        return Ok(());
    }
    println!("checkpoint {} → checkpoint {}", a.epoch, b.epoch);
    let mut sizes = table(&["OPERATOR", "SIZE A", "SIZE B", "CHANGE"]);
    for s in &diff.sizes {
        let change = s.bytes_b as i128 - s.bytes_a as i128;
        let sign = if change < 0 { "-" } else { "+" };
        sizes.add_row(vec![
            s.operator.clone(),
            bytes(s.bytes_a),
            bytes(s.bytes_b),
            format!("{sign}{}", bytes(change.unsigned_abs() as u64)),
        ]);
    }
    println!("{sizes}");
    let mut states = table(&[
        "OPERATOR",
        "STATE",
        "ENTRIES A",
        "ENTRIES B",
        "ADDED",
        "REMOVED",
        "CHANGED",
    ]);
    for s in &diff.states {
        states.add_row(vec![
            s.operator.clone(),
            s.state.clone(),
            s.entries_a.to_string(),
            s.entries_b.to_string(),
            s.added.to_string(),
            s.removed.to_string(),
            s.changed.to_string(),
        ]);
    }
    println!("{states}");
    Ok(())
}
