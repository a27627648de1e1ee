//! `agentgate check`: decide one request.

use super::{EXIT_ALLOW, EXIT_DENY, EXIT_USAGE};
use agentgate::config;
use agentgate::decision_log::{DecisionLog, LogEntry};
use agentgate::mint;
use agentgate::receipts::digest::ConfigDigests;
use agentgate::receipts::{ReceiptFacts, ReceiptSigner};
use agentgate::state::LocalState;
use agentgate::wire::{DecisionJson, RequestJson};
use agentgate::{Decide, Engine, Runtime, RuntimeOptions};
use anyhow::Context as _;
use clap::Args;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

/// Decide requests and print each decision as JSON.
///
/// Several requests are decided in order by one verifier, so a proof used twice shows as a replay.
/// Exit status: 0 all allowed, 1 any denied, 2 unusable configuration or malformed request.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file (default: the demo config in `policies/mail/`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Evaluate at this time (unix seconds) instead of the wall clock.
    #[arg(long)]
    now: Option<u64>,
    /// Run the native engine instead of the WebAssembly component (for comparison).
    #[arg(long, conflicts_with = "component")]
    native: bool,
    /// Run this bundled component (`agentgate bundle`) instead: its configuration is baked in.
    #[arg(long, conflicts_with = "config")]
    component: Option<PathBuf>,
    /// Request JSON files, or `-` for standard input.
    #[arg(required = true)]
    requests: Vec<PathBuf>,
}

pub fn run(args: CheckArgs) -> anyhow::Result<u8> {
    let mut requests = Vec::new();
    for path in &args.requests {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading the request from standard input")?;
            s
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        match RequestJson::parse(&text) {
            Ok(r) => requests.push(r),
            Err(e) => {
                eprintln!("agentgate: {}: {e}", path.display());
                return Ok(EXIT_USAGE);
            }
        }
    }
    let replay = Arc::new(LocalState::default());
    if let Some(component) = args.component {
        let options = RuntimeOptions { component_file: Some(component), ..RuntimeOptions::default() };
        let mut verifier = Runtime::new(options, replay)?.preloaded_verifier()?;
        return print_decisions(&requests, args.now, &mut verifier, None, None);
    }
    let config_path = args.config.unwrap_or_else(super::default_config);
    let loaded = config::load(&config_path)?;
    let mut decider: Box<dyn Decide> = if args.native {
        Box::new(Engine::new(&loaded.engine, Box::new(LocalState::default())).map_err(anyhow::Error::msg)?)
    } else {
        let runtime = Runtime::new(RuntimeOptions::from_section(&loaded.file.runtime), replay)?;
        Box::new(runtime.verifier(&loaded.engine)?)
    };
    let digests = ConfigDigests::of(&loaded.engine).map_err(anyhow::Error::msg)?;
    // With `[receipts]`, each decision is signed as `serve` signs it.
    let receipts = loaded.receipts.as_ref().map(|signer| (signer.as_ref(), &digests));
    // With `[decision_log]`, each decision is logged as `serve` logs it.
    let log = match &loaded.file.decision_log {
        Some(section) => {
            let target = section.target(&config_path);
            let log = DecisionLog::open(&target, requests.len().max(1)).with_context(|| format!("opening the decision log {}", target.path.display()))?;
            Some((log, digests.digest.as_str()))
        }
        None => None,
    };
    let code = print_decisions(&requests, args.now, decider.as_mut(), receipts, log.as_ref().map(|(l, d)| (l, *d)))?;
    if let Some((log, _)) = &log
        && !log.flush(std::time::Duration::from_secs(10))
    {
        anyhow::bail!("the decision log could not be written in 10 s");
    }
    Ok(code)
}

fn print_decisions(
    requests: &[RequestJson],
    now: Option<u64>,
    decider: &mut dyn Decide,
    receipts: Option<(&ReceiptSigner, &ConfigDigests)>,
    log: Option<(&DecisionLog, &str)>,
) -> anyhow::Result<u8> {
    let mut all_allowed = true;
    for request in requests {
        let check = request.to_check_request(now);
        let (decision, call) = if log.is_some() { decider.decide_recorded(&check) } else { (decider.decide(&check), None) };
        all_allowed &= decision.allowed;
        let decision_id = mint::random_id();
        if let (Some((log, config_digest)), Some(call)) = (log, &call) {
            log.write(LogEntry::new(&decision_id, "cli", config_digest, &decision, call).map_err(anyhow::Error::msg)?);
        }
        let receipt = match receipts {
            Some((signer, config)) => {
                let facts = ReceiptFacts { decision_id: &decision_id, issued_at: mint::now(), request: &check, config };
                signer.receipt(&decision, &facts).transpose().map_err(anyhow::Error::msg)?
            }
            None => None,
        };
        println!("{}", serde_json::to_string_pretty(&DecisionJson { receipt, ..DecisionJson::from(&decision) })?);
    }
    Ok(if all_allowed { EXIT_ALLOW } else { EXIT_DENY })
}
