//! `agentgate replay`: decide logged calls again under a new configuration's policies.

use super::Format;
use agentgate::config;
use agentgate::decision_log::replay::{Replayer, Report};
use anyhow::Context as _;
use clap::Args;
use std::io::BufReader;
use std::path::PathBuf;

/// Decide every call of a decision log (`[decision_log]`) again with a new configuration's
/// policies and schema, and print what changed.
///
/// The recorded facts stand: credentials are not verified again. Counts the calls by old → new
/// decision and lists each call whose decision changed with its old and new determining
/// policies; every line that cannot be replayed (another record form, a call the new schema
/// rejects, a damaged line) is listed with its reason.
///
/// Exit status: 1 when any call denied before is allowed now; else 2 when any line could not be
/// replayed (or the configuration or a log cannot be read); else 0.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Decision log files, in order (e.g. `decisions.jsonl.2 decisions.jsonl.1 decisions.jsonl`).
    #[arg(long = "log", required = true, num_args = 1..)]
    logs: Vec<PathBuf>,
    /// The configuration whose policies and schema decide the calls again.
    #[arg(long, short)]
    config: PathBuf,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Threads deciding lines side by side (default: one per core). The report is the same.
    #[arg(long)]
    jobs: Option<usize>,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    let loaded = config::load(&args.config)?;
    let replayer = Replayer::new(&loaded.engine.policies, &loaded.engine.schema).map_err(anyhow::Error::msg)?;
    let workers = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let mut report = Report::default();
    for log in &args.logs {
        let file = std::fs::File::open(log).with_context(|| format!("opening the decision log {}", log.display()))?;
        let source = log.display().to_string();
        replayer.replay(&source, BufReader::new(file), &mut report, workers).with_context(|| format!("reading the decision log {source}"))?;
    }
    match args.format {
        Format::Text => print!("{}", report.render_text()),
        Format::Json => {
            let mut json = serde_json::to_value(&report)?;
            if let Some(object) = json.as_object_mut() {
                object.insert("exit".into(), report.exit_code().into());
            }
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }
    Ok(report.exit_code())
}
