//! `agentgate gateway`: the wasi:http gateway component.

use agentgate::config;
use agentgate::gateway::{self, StatePlacement, WasiHttpHost};
use agentgate::state::DeploymentState;
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
        /// Where proof ids and revocations live: `instance` (in each instance, the revocation list
        /// baked in; runs on any wasi:http host) or `host` (imports agentgate's `state`: run it
        /// with `agentgate gateway run --config`, backed by the deployment's store).
        #[arg(long, value_enum, default_value_t = StatePlacement::Instance)]
        state: StatePlacement,
    },
    /// Serve a gateway component with agentgate's own minimal wasi:http host.
    Run {
        /// The component (`agentgate gateway build`).
        #[arg(long)]
        component: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The deployment's configuration, whose `[state]` (and revocation file) backs a gateway
        /// built with `--state host`.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

pub fn run(args: GatewayArgs) -> anyhow::Result<u8> {
    match args.what {
        Gateway::Build { config, upstream, out, state } => {
            let loaded = config::load(&config)?;
            let bytes = gateway::build(&loaded, &upstream, state)?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            match state {
                StatePlacement::Instance => eprintln!("wrote {} ({} bytes): run it with `wasmtime serve -S cli {}`", out.display(), bytes.len(), out.display()),
                StatePlacement::Host => eprintln!(
                    "wrote {} ({} bytes): run it with `agentgate gateway run --component {} --config {}`",
                    out.display(),
                    bytes.len(),
                    out.display(),
                    config.display()
                ),
            }
        }
        Gateway::Run { component, listen, config } => {
            let bytes = std::fs::read(&component).with_context(|| format!("reading {}", component.display()))?;
            let state = match &config {
                Some(path) => {
                    let loaded = config::load(path)?;
                    let state = DeploymentState::open(&loaded.file.state, loaded.revocations_path.clone())?;
                    state.status_lists().configure(&loaded.engine).map_err(anyhow::Error::msg)?;
                    Some(state as std::sync::Arc<dyn agentgate::SharedState>)
                }
                None => None,
            };
            let host = WasiHttpHost::new(&bytes, state)?;
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
