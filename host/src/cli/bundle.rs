//! `agentgate bundle`: one self-contained component with a deployment baked in.

use agentgate::config::{self, CryptoPlacement};
use agentgate::{Runtime, RuntimeOptions};
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;

/// Write one component with the policies, schema, keys and settings of a configuration baked in
/// and validated, loadable by any component host with no files beside it
/// (`verifier.preloaded()`; `agentgate check --component FILE`).
///
/// The component is the decision engine pre-initialized with wasmtime-wizer: the snapshot holds
/// the parsed policies and the precomputed key tables, so a fresh instance decides at once. The
/// revocation list in force at build time is baked in too; `set-revocations` replaces it at run
/// time.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Output component.
    #[arg(long)]
    out: PathBuf,
    /// `guest` (portable `gate` world, default) or `host` (`gate-accelerated`: ES256 imported).
    #[arg(long, default_value = "guest")]
    crypto: String,
}

pub fn run(args: BundleArgs) -> anyhow::Result<u8> {
    let loaded = config::load(&args.config)?;
    let mut options = RuntimeOptions::from_section(&loaded.file.runtime);
    options.crypto = match args.crypto.as_str() {
        "guest" => CryptoPlacement::Guest,
        "host" => CryptoPlacement::Host,
        other => anyhow::bail!("`--crypto {other}`: expected `guest` or `host`"),
    };
    let bytes = Runtime::bundle(&options, &loaded.engine).with_context(|| format!("bundling {}", args.config.display()))?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} ({} bytes) with {} baked in", args.out.display(), bytes.len(), args.config.display());
    Ok(super::EXIT_ALLOW)
}
