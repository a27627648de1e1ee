//! `agentgate check`: decide one request.

use super::{EXIT_ALLOW, EXIT_DENY, EXIT_USAGE};
use agentgate::config;
use agentgate::replay::InMemoryReplayStore;
use agentgate::wire::{DecisionJson, RequestJson};
use agentgate::{Decide, Engine, Runtime, RuntimeOptions};
use anyhow::Context as _;
use clap::Args;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

/// Decide one request and print the decision as JSON.
///
/// Exit status: 0 allowed, 1 denied, 2 unusable configuration or malformed request.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file (default: the demo config in `policies/mail/`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Evaluate at this time (unix seconds) instead of the wall clock.
    #[arg(long)]
    now: Option<u64>,
    /// Run the native engine instead of the WebAssembly component (for comparison).
    #[arg(long)]
    native: bool,
    /// Request JSON file, or `-` for standard input.
    request: PathBuf,
}

pub fn run(args: CheckArgs) -> anyhow::Result<u8> {
    let text = if args.request.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the request from standard input")?;
        s
    } else {
        std::fs::read_to_string(&args.request).with_context(|| format!("reading {}", args.request.display()))?
    };
    let request = match RequestJson::parse(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentgate: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let config_path = args.config.unwrap_or_else(super::default_config);
    let loaded = config::load(&config_path)?;
    let replay = Arc::new(InMemoryReplayStore::default());
    let mut decider: Box<dyn Decide> = if args.native {
        Box::new(Engine::new(&loaded.engine, Box::new(InMemoryReplayStore::default())).map_err(anyhow::Error::msg)?)
    } else {
        let runtime = Runtime::new(RuntimeOptions::from_section(&loaded.file.runtime), replay)?;
        Box::new(runtime.verifier(&loaded.engine)?)
    };
    let decision = decider.decide(&request.to_check_request(args.now));
    println!("{}", serde_json::to_string_pretty(&DecisionJson::from(&decision))?);
    Ok(if decision.allowed { EXIT_ALLOW } else { EXIT_DENY })
}
