//! `agentgate resolve`: the configuration as the component receives it.

use agentgate::config;
use clap::Args;
use std::path::PathBuf;

/// Print the resolved engine configuration as JSON: the WIT `config` record (policies, schema,
/// settings, trust material, revocations) with every file read. Other hosts (Node, edge workers)
/// pass it to `verifier.create`. It contains the DPoP nonce secret when one is configured.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Configuration file (default: the demo config in `policies/mail/`).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

pub fn run(args: ResolveArgs) -> anyhow::Result<u8> {
    let path = args.config.unwrap_or_else(super::default_config);
    let loaded = config::load(&path)?;
    println!("{}", serde_json::to_string_pretty(&loaded.engine)?);
    Ok(super::EXIT_ALLOW)
}
