//! `weir checkpoints dump CHECKPOINT --operator OP`: keyed state as rows.
//!
//! State is stored in a compact binary encoding without type information,
//! so the dump decodes it with the operator's own declarations: it builds
//! the job from the registry (by the manifest's job name unless `--job`
//! says otherwise), opens the operator with empty state, and uses the
//! tables it declares to decode every entry of the checkpoint.

use super::table;
use crate::cli::error_chain;
use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt16Array};
use arrow_schema::{DataType, Field, Schema};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use weir_coordinator::CheckpointCatalog;
use weir_operators::job::{JobOptions, JobParams, JobRegistry};
use weir_operators::output::{OutputWiring, TaskCounters};
use weir_operators::task::{OperatorTask, SourceWaker, VertexFactory};
use weir_operators::TaskInfo;
use weir_protocol::{CheckpointManifest, OperatorState, StateFileFormat, SubtaskState};
use weir_state::{
    snapshot, CheckpointStorage, KeyedStateStore, MemoryBackend, NativeFiles, RocksDbBackend,
    StateBackend, StateRow,
};

/// Output formats of `dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DumpFormat {
    /// A table for people.
    Table,
    /// One JSON array of rows.
    Json,
    /// An Arrow IPC file (columns state, key_group, key, value; keys and
    /// values as JSON text).
    Arrow,
    /// A Parquet file with the same columns.
    Parquet,
}

/// Arguments of `weir checkpoints dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The checkpoint directory: `{checkpoint-dir}/{job}/chk-NNNNNNNNNN` (URL or path).
    pub checkpoint: String,
    /// The operator whose keyed state to decode (its name or uid).
    #[arg(long)]
    pub operator: String,
    /// Only this state (by name).
    #[arg(long)]
    pub state: Option<String>,
    /// Only this key (as shown, e.g. `42` or `"word"`).
    #[arg(long)]
    pub key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Table)]
    pub format: DumpFormat,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The registered job that wrote the checkpoint [default: the manifest's job].
    #[arg(long)]
    pub job: Option<String>,
    /// Parameters the job needs to be built (`key=value`); values do not
    /// change state types, but required ones must be given.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
}

/// The operator, opened with empty state from the job's code.
fn open_operator(
    registry: &JobRegistry,
    job: &str,
    params: &[String],
    manifest: &CheckpointManifest,
    operator: &str,
) -> Result<Box<dyn OperatorTask>, Box<dyn std::error::Error>> {
    let params = JobParams::split_pairs(params)?;
    let options = JobOptions {
        max_parallelism: manifest.max_parallelism,
        ..JobOptions::default()
    };
    let dataflow = registry.build(job, &params, &options)?;
    let vertex = dataflow
        .graph()
        .vertices
        .iter()
        .find(|v| v.name == operator || v.uid.as_deref() == Some(operator))
        .ok_or_else(|| format!("job '{job}' has no operator '{operator}'"))?;
    let VertexFactory::Operator(make) = dataflow.factory(vertex.id) else {
        return Err(format!("operator '{operator}' is a source; it has no keyed state").into());
    };
    let info = TaskInfo {
        job: job.to_owned(),
        vertex: vertex.id,
        operator: operator.to_owned(),
        state_id: vertex.state_id().to_owned(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: manifest.max_parallelism,
        state_backend: Arc::new(MemoryBackend),
        checkpointing: false,
        attempt: "dump".into(),
        restored: None,
        others_running: false,
        waker: SourceWaker::none(),
    };
    let wiring = OutputWiring {
        edges: Vec::new(),
        batch_size: 1,
        counters: Arc::new(TaskCounters::default()),
    };
    make(&info, wiring).map_err(|e| error_chain(&e).into())
}

/// Decodes every keyed-state entry of `state` (one operator of a checkpoint).
fn decode_rows(
    store: &KeyedStateStore,
    storage: &CheckpointStorage,
    job_id: &str,
    state: &OperatorState,
) -> Result<Vec<StateRow>, Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    for subtask in &state.subtasks {
        let Some(backend) = native_backend(subtask)? else {
            for file in &subtask.files {
                let bytes = storage.get_checked(job_id, file)?;
                for span in &file.key_groups {
                    let section = snapshot::section(&bytes, span, &file.path)?;
                    rows.extend(store.dump_section(span.key_group, section)?);
                }
            }
            continue;
        };
        let mut native = NativeFiles::new(backend, subtask.key_groups);
        for file in &subtask.files {
            if let StateFileFormat::Native { name, .. } = &file.format {
                native
                    .files
                    .push((name.clone(), storage.get_checked(job_id, file)?));
            }
        }
        let reader = native_reader(&native.backend)?;
        rows.extend(store.dump_native(reader.as_ref(), &native)?);
    }
    Ok(rows)
}

/// The state backend whose own format a subtask's files are in, or `None`
/// for key-group sections; as restore does, a subtask whose files mix
/// formats is refused.
fn native_backend(subtask: &SubtaskState) -> Result<Option<&str>, String> {
    let mut backend: Option<&str> = None;
    let mut sections = false;
    for file in &subtask.files {
        match &file.format {
            StateFileFormat::Native { backend: theirs, .. } => match backend {
                Some(ours) if ours != theirs => {
                    return Err(format!(
                        "subtask {} of the checkpoint mixes files of the {ours} and {theirs} state backends ({}); a subtask's state is written by one backend",
                        subtask.subtask, file.path
                    ))
                }
                _ => backend = Some(theirs),
            },
            StateFileFormat::KeyGroupSections => sections = true,
        }
    }
    match backend {
        Some(backend) if sections => Err(format!(
            "subtask {} of the checkpoint mixes key-group sections with files of the {backend} state backend; a subtask's state is written in one format",
            subtask.subtask
        )),
        backend => Ok(backend),
    }
}

/// The backend that reads snapshot files in `backend`'s own format.
fn native_reader(backend: &str) -> Result<Box<dyn StateBackend>, Box<dyn std::error::Error>> {
    if backend == weir_state::rocks::BACKEND {
        return Ok(Box::new(RocksDbBackend::default_location()));
    }
    Err(format!("the checkpoint holds files in the format of the {backend} state backend, which this build does not have").into())
}

/// The registered job that wrote `manifest`: `given` (`--job`), or the one
/// the manifest names, which must be registered.
pub(crate) fn job_of(
    registry: &JobRegistry,
    manifest: &CheckpointManifest,
    given: Option<&str>,
) -> Result<String, Box<dyn std::error::Error>> {
    if let Some(job) = given {
        return Ok(job.to_owned());
    }
    match registry.get(&manifest.job) {
        Ok(_) => Ok(manifest.job.clone()),
        Err(error) => Err(format!(
            "{error}: pass --job with the name of the job that wrote checkpoint {} (checkpoints of a cluster written before savepoints existed name the job id instead)",
            manifest.epoch
        )
        .into()),
    }
}

/// Every keyed-state entry of `operator` in checkpoint `manifest`,
/// decoded with the code of registered job `job`.
pub(crate) fn keyed_rows(
    registry: &JobRegistry,
    catalog: &CheckpointCatalog,
    manifest: &CheckpointManifest,
    operator: &str,
    job: &str,
    params: &[String],
) -> Result<Vec<StateRow>, Box<dyn std::error::Error>> {
    let state = manifest
        .operator(operator)
        .ok_or_else(|| format!("checkpoint {} has no operator '{operator}'", manifest.epoch))?;
    let mut task = open_operator(registry, job, params, manifest, operator)?;
    let store = task
        .keyed_state()
        .ok_or_else(|| format!("operator '{operator}' keeps no keyed state"))?;
    decode_rows(store, catalog.storage(), catalog.job(), state)
}

/// Dumps one operator's keyed state.
pub fn run(args: DumpArgs, registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    let (catalog, epoch) = CheckpointCatalog::open_checkpoint(&args.checkpoint)?;
    let manifest = catalog.manifest(epoch)?;
    let job = job_of(registry, &manifest, args.job.as_deref())?;
    let mut rows = keyed_rows(
        registry,
        &catalog,
        &manifest,
        &args.operator,
        &job,
        &args.params,
    )?;
    // A key matches as shown (`42`, `"word"`) or, for strings, bare (`word`).
    let wanted_key = args.key.as_ref().map(|k| {
        serde_json::from_str::<serde_json::Value>(k)
            .unwrap_or_else(|_| serde_json::Value::String(k.clone()))
    });
    rows.retain(|row| {
        args.state.as_ref().is_none_or(|s| &row.state == s)
            && wanted_key.as_ref().is_none_or(|k| &row.key == k)
    });
    rows.sort_by(|a, b| (&a.state, a.key.to_string()).cmp(&(&b.state, b.key.to_string())));
    if matches!(args.format, DumpFormat::Arrow | DumpFormat::Parquet) {
        let Some(path) = &args.out else {
            return Err("--format arrow and parquet write a file: give --out FILE".into());
        };
        let file =
            std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let batch = record_batch(&rows)?;
        if args.format == DumpFormat::Arrow {
            let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batch.schema())?;
            writer.write(&batch)?;
            writer.finish()?;
        } else {
            let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
            writer.write(&batch)?;
            writer.close()?;
        }
        eprintln!("{} entries written to {}", rows.len(), path.display());
        return Ok(());
    }
    let text = match args.format {
        DumpFormat::Arrow | DumpFormat::Parquet => unreachable!("written above"),
        DumpFormat::Json => serde_json::to_string_pretty(&rows)? + "\n",
        DumpFormat::Table => {
            let mut out = table(&["STATE", "KEY GROUP", "KEY", "VALUE"]);
            for row in &rows {
                out.add_row(vec![
                    row.state.clone(),
                    row.key_group.to_string(),
                    row.key.to_string(),
                    row.value.to_string(),
                ]);
            }
            format!("{out}\n{} entries\n", rows.len())
        }
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}

/// The rows as one Arrow record batch.
fn record_batch(rows: &[StateRow]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = Schema::new(vec![
        Field::new("state", DataType::Utf8, false),
        Field::new("key_group", DataType::UInt16, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.state.as_str()),
        )),
        Arc::new(UInt16Array::from_iter_values(
            rows.iter().map(|r| r.key_group),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.key.to_string()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.value.to_string()),
        )),
    ];
    RecordBatch::try_new(Arc::new(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::{KeyGroupRange, StateFile};

    fn file(path: &str, format: StateFileFormat) -> StateFile {
        StateFile {
            path: path.into(),
            size: 1,
            crc32c: 0,
            key_groups: Vec::new(),
            format,
        }
    }

    fn native(backend: &str) -> StateFileFormat {
        StateFileFormat::Native {
            backend: backend.into(),
            name: "1.sst".into(),
        }
    }

    fn subtask(files: Vec<StateFile>) -> SubtaskState {
        SubtaskState {
            subtask: 3,
            key_groups: KeyGroupRange::new(0, 8),
            files,
            operator_state: None,
        }
    }

    #[test]
    fn a_subtask_is_read_in_its_one_format_and_a_mix_is_refused() {
        let sections = StateFileFormat::KeyGroupSections;
        assert_eq!(native_backend(&subtask(vec![])), Ok(None));
        assert_eq!(
            native_backend(&subtask(vec![file("a.state", sections.clone())])),
            Ok(None)
        );
        assert_eq!(
            native_backend(&subtask(vec![
                file("a.sst", native("rocksdb")),
                file("b.sst", native("rocksdb"))
            ])),
            Ok(Some("rocksdb"))
        );
        let two_backends = native_backend(&subtask(vec![
            file("a.sst", native("rocksdb")),
            file("b.log", native("other")),
        ]))
        .unwrap_err();
        assert!(
            two_backends.contains("subtask 3") && two_backends.contains("rocksdb and other"),
            "{two_backends}"
        );
        for files in [
            vec![
                file("a.state", sections.clone()),
                file("b.sst", native("rocksdb")),
            ],
            vec![file("b.sst", native("rocksdb")), file("a.state", sections)],
        ] {
            let mixed = native_backend(&subtask(files)).unwrap_err();
            assert!(mixed.contains("mixes key-group sections"), "{mixed}");
        }
    }
}
