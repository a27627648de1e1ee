//! `agentgate component`: write the decision component, for other hosts (Node via jco, edge
//! workers, any component runtime).

use agentgate::component::{ACCELERATED_COMPONENT, PORTABLE_COMPONENT};
use agentgate::config::CryptoPlacement;
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;

/// Write the embedded decision component (`wasm32-wasip2`) to a file.
///
/// `--crypto guest` (default) writes the portable `gate` world; `--crypto host` the
/// `gate-accelerated` world, which imports `agentgate:verifier/crypto` from its host.
#[derive(Debug, Args)]
pub struct ComponentArgs {
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// `guest` or `host`: where ES256 verification runs.
    #[arg(long, value_parser = parse_crypto, default_value = "guest")]
    crypto: CryptoPlacement,
    /// Withdrawn: the wide-arithmetic build (see `run`).
    #[arg(long, hide = true)]
    wide_arithmetic: bool,
}

fn parse_crypto(s: &str) -> Result<CryptoPlacement, String> {
    match s {
        "guest" => Ok(CryptoPlacement::Guest),
        "host" => Ok(CryptoPlacement::Host),
        _ => Err("expected `guest` or `host`".into()),
    }
}

pub fn run(args: ComponentArgs) -> anyhow::Result<u8> {
    if args.wide_arithmetic {
        // Said plainly to anyone whose scripts still ask for it.
        anyhow::bail!(
            "the wide-arithmetic build is withdrawn: the compiler (LLVM 22) miscompiles signed 64-bit overflow checks under that proposal, which made Cedar's `*` err; use the portable build (no flag)"
        );
    }
    let bytes = match args.crypto {
        CryptoPlacement::Guest => PORTABLE_COMPONENT,
        CryptoPlacement::Host => ACCELERATED_COMPONENT,
    };
    std::fs::write(&args.out, bytes).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(super::EXIT_ALLOW)
}
