//! `agentgate check`: decide one request.

use super::{EXIT_ALLOW, EXIT_DENY, EXIT_USAGE};
use agentgate::config;
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
        return print_decisions(&requests, args.now, &mut verifier, None);
    }
    let config_path = args.config.unwrap_or_else(super::default_config);
    let loaded = config::load(&config_path)?;
    let mut decider: Box<dyn Decide> = if args.native {
        Box::new(Engine::new(&loaded.engine, Box::new(LocalState::default())).map_err(anyhow::Error::msg)?)
    } else {
        let runtime = Runtime::new(RuntimeOptions::from_section(&loaded.file.runtime), replay)?;
        Box::new(runtime.verifier(&loaded.engine)?)
    };
    // With `[receipts]`, each decision is signed as `serve` signs it.
    let receipts = match &loaded.receipts {
        Some(signer) => Some((signer.as_ref(), ConfigDigests::of(&loaded.engine).map_err(anyhow::Error::msg)?)),
        None => None,
    };
    print_decisions(&requests, args.now, decider.as_mut(), receipts.as_ref().map(|(s, d)| (*s, d)))
}

fn print_decisions(
    requests: &[RequestJson],
    now: Option<u64>,
    decider: &mut dyn Decide,
    receipts: Option<(&ReceiptSigner, &ConfigDigests)>,
) -> anyhow::Result<u8> {
    let mut all_allowed = true;
    for request in requests {
        let check = request.to_check_request(now);
        let decision = decider.decide(&check);
        all_allowed &= decision.allowed;
        let receipt = match receipts {
            Some((signer, config)) => {
                let facts = ReceiptFacts { decision_id: &mint::random_id(), issued_at: mint::now(), request: &check, config };
                signer.receipt(&decision, &facts).transpose().map_err(anyhow::Error::msg)?
            }
            None => None,
        };
        println!("{}", serde_json::to_string_pretty(&DecisionJson { receipt, ..DecisionJson::from(&decision) })?);
    }
    Ok(if all_allowed { EXIT_ALLOW } else { EXIT_DENY })
}
