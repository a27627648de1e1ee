//! `agentgate gateway`: the wasi:http gateway component.

use agentgate::config;
use agentgate::gateway::{self, WasiHttpHost};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Build or run the wasi:http gateway: a component for any wasi:http host (`wasmtime serve`,
/// Spin) that checks each request and forwards the allowed ones to an upstream.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(subcommand)]
    what: Gateway,
}

#[derive(Debug, Subcommand)]
enum Gateway {
    /// Write the gateway component with a deployment baked in (engine, `[[routes]]`, the first
    /// `[server] external_origins` entry, the upstream): one self-contained file.
    Build {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Where allowed requests go: `http(s)://host[:port]`.
        #[arg(long)]
        upstream: String,
        /// Output component.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve a gateway component with agentgate's own minimal wasi:http host.
    Run {
        /// The component (`agentgate gateway build`).
        #[arg(long)]
        component: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
}

pub fn run(args: GatewayArgs) -> anyhow::Result<u8> {
    match args.what {
        Gateway::Build { config, upstream, out } => {
            let loaded = config::load(&config)?;
            let bytes = gateway::build(&loaded, &upstream)?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {} ({} bytes): run it with `wasmtime serve -S cli {}`", out.display(), bytes.len(), out.display());
        }
        Gateway::Run { component, listen } => {
            let bytes = std::fs::read(&component).with_context(|| format!("reading {}", component.display()))?;
            let host = WasiHttpHost::new(&bytes)?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
                eprintln!("agentgate: gateway {} on http://{}", component.display(), listener.local_addr()?);
                host.serve(listener, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
            })?;
        }
    }
    Ok(super::EXIT_ALLOW)
}
