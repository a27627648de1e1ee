//! `agentgate validate`: check a configuration, its keys and its policies.

use super::{EXIT_ALLOW, EXIT_USAGE};
use agentgate::config;
use agentgate::replay::InMemoryReplayStore;
use agentgate::{Runtime, RuntimeOptions, VerifierError};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// Validate a configuration: settings, key files, and every policy against the schema.
///
/// Exit status: 0 valid, 2 a problem (printed as `file:line:col: message`).
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Configuration file (default: the demo config in `policies/mail/`).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<u8> {
    let path = args.config.unwrap_or_else(super::default_config);
    let loaded = match config::load(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EXIT_USAGE);
        }
    };
    let runtime = Runtime::new(RuntimeOptions::from_section(&loaded.file.runtime), Arc::new(InMemoryReplayStore::default()))?;
    match runtime.verifier(&loaded.engine) {
        Ok(_) => {
            println!(
                "{}: ok ({} policy files, {} issuers, {} trust domains)",
                path.display(),
                loaded.engine.policies.len(),
                loaded.file.issuers.len(),
                loaded.file.trust_domains.len()
            );
            Ok(EXIT_ALLOW)
        }
        Err(VerifierError::Config(message)) => {
            eprintln!("{message}");
            Ok(EXIT_USAGE)
        }
        Err(e) => Err(e.into()),
    }
}
