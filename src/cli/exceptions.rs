//! `weir jobs exceptions JOB`: a job's restarts, newest first: when, why,
//! what restarted, how long the recovery took and the tier each restored
//! subtask's state came from. It reads `GET /v1/jobs/{id}/exceptions`, as
//! the dashboard does.

use crate::cli::checkpoints::{table, utc};
use crate::cli::jobs::{client, Remote};
use clap::Args;
use std::collections::BTreeMap;
use weir_coordinator::history::RestartScope;

/// Arguments of `weir jobs exceptions`.
#[derive(Debug, Args)]
pub struct ExceptionsArgs {
    /// The job's id or number.
    pub job: String,
    /// The coordinator.
    #[command(flatten)]
    pub remote: Remote,
}

/// Prints the restart history.
pub fn run(args: ExceptionsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let history = client(&args.remote)?.exceptions(&args.job)?;
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(&history)?);
        return Ok(());
    }
    println!(
        "{}: {} restart(s) in all{}",
        history.job_id,
        history.restarts,
        history
            .failure
            .as_deref()
            .map_or_else(String::new, |f| format!("; last failure: {f}"))
    );
    let mut rows = table(&[
        "DETECTED", "SCOPE", "ATTEMPT", "RECOVERY", "RESTORED", "CAUSE",
    ]);
    for restart in &history.exceptions {
        let mut tiers: BTreeMap<String, usize> = BTreeMap::new();
        for restored in &restart.restored {
            *tiers.entry(restored.tier.to_string()).or_default() += 1;
        }
        let restored: Vec<String> = tiers.iter().map(|(t, n)| format!("{n} {t}")).collect();
        rows.add_row(vec![
            utc(restart.detected_at_ms as i64),
            match restart.scope {
                RestartScope::Global => "global".to_owned(),
                RestartScope::Regional => format!("regions {:?}", restart.regions),
            },
            restart.attempt.to_string(),
            restart
                .recovery_ms
                .map_or("running…".into(), |ms| format!("{ms:.0} ms")),
            if restored.is_empty() {
                "-".into()
            } else {
                restored.join(", ")
            },
            restart.cause.clone(),
        ]);
    }
    println!("{rows}");
    Ok(())
}
