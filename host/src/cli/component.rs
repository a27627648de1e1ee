//! `agentgate component`: write the decision component, for other hosts (Node via jco, edge
//! workers, any component runtime).

use agentgate::component::{ACCELERATED_COMPONENT, PORTABLE_COMPONENT, WIDE_ARITHMETIC_COMPONENT};
use agentgate::config::CryptoPlacement;
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;

/// Write the embedded decision component (`wasm32-wasip2`) to a file.
///
/// `--crypto guest` (default) writes the portable `gate` world; `--crypto host` the
/// `gate-accelerated` world, which imports `agentgate:verifier/crypto` from its host.
/// `--wide-arithmetic` writes the `gate` build that `agentgate` itself runs: it needs a host with
/// the wasm wide-arithmetic proposal enabled (wasmtime: `Config::wasm_wide_arithmetic(true)`).
#[derive(Debug, Args)]
pub struct ComponentArgs {
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// `guest` or `host`: where ES256 verification runs.
    #[arg(long, value_parser = parse_crypto, default_value = "guest")]
    crypto: CryptoPlacement,
    /// With `--crypto guest`: the build using the wide-arithmetic proposal (wasmtime only).
    #[arg(long)]
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
    let bytes = match (args.crypto, args.wide_arithmetic) {
        (CryptoPlacement::Guest, false) => PORTABLE_COMPONENT,
        (CryptoPlacement::Guest, true) => WIDE_ARITHMETIC_COMPONENT,
        (CryptoPlacement::Host, false) => ACCELERATED_COMPONENT,
        (CryptoPlacement::Host, true) => anyhow::bail!("`--wide-arithmetic` is for `--crypto guest`: the accelerated world does no field arithmetic"),
    };
    std::fs::write(&args.out, bytes).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(super::EXIT_ALLOW)
}
