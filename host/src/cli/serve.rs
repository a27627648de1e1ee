//! `agentgate serve`: the HTTP decision service.

use agentgate::server::{self, ServeOptions};
use clap::Args;
use std::path::PathBuf;

/// Serve decisions over HTTP: AuthZEN 1.0 (`/access/v1/evaluation[s]`), forward-auth for nginx,
/// Envoy, Traefik and Caddy (`/forward-auth`), `POST /v1/check`, `/healthz`, `/metrics`.
///
/// Without `--config` it serves the mail demo (`policies/mail/agentgate.toml`) on
/// 127.0.0.1:8181. Policies, schema, keys and revocations reload when their files change or on
/// SIGHUP; SIGINT/SIGTERM drain in-flight requests and stop.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (default: the demo config in `policies/mail/`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `[server] listen`).
    #[arg(long)]
    listen: Option<String>,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<u8> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.workers {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.build()?;
    let options = ServeOptions { config: args.config.unwrap_or_else(super::default_config), listen: args.listen };
    runtime.block_on(server::serve(options))?;
    Ok(super::EXIT_ALLOW)
}
