//! Subcommands. One struct per subcommand; every flag documented so `--help` is enough.

mod analyze;
mod bundle;
mod check;
mod component;
mod demo;
mod explain;
mod fmt;
mod gateway;
mod mint;
mod receipt;
mod replay;
mod resolve;
mod revoke;
mod schema;
mod serve;
mod test;
mod validate;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status: the call was allowed.
pub const EXIT_ALLOW: u8 = 0;
/// Exit status: the call was denied.
pub const EXIT_DENY: u8 = 1;
/// Exit status: unusable configuration or malformed input.
pub const EXIT_USAGE: u8 = 2;

/// How a subcommand prints its result (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable.
    Text,
    /// Machine-readable JSON.
    Json,
}

/// agentgate: verify and authorize every call an AI agent makes on a user's behalf.
///
/// Access tokens (RFC 9068, ES256) delegated user → agent (RFC 8693 `act`), DPoP proofs
/// (RFC 9449), agent workload identity (WIMSE / SPIFFE) and Cedar policies, decided inside a
/// sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "agentgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Analyze(analyze::AnalyzeArgs),
    Check(check::CheckArgs),
    Validate(validate::ValidateArgs),
    Test(test::TestArgs),
    Explain(explain::ExplainArgs),
    Bundle(bundle::BundleArgs),
    Fmt(fmt::FmtArgs),
    Schema(schema::SchemaArgs),
    Demo(demo::DemoArgs),
    Component(component::ComponentArgs),
    Gateway(gateway::GatewayArgs),
    Mint(mint::MintArgs),
    Receipt(receipt::ReceiptArgs),
    Replay(replay::ReplayArgs),
    Resolve(resolve::ResolveArgs),
    Revoke(revoke::RevokeArgs),
    Unrevoke(revoke::UnrevokeArgs),
    Revocations(revoke::RevocationsArgs),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Check(args) => check::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Test(args) => test::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Component(args) => component::run(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Mint(args) => mint::run(args),
        Command::Receipt(args) => receipt::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Resolve(args) => resolve::run(args),
        Command::Revoke(args) => revoke::revoke(args),
        Command::Unrevoke(args) => revoke::unrevoke(args),
        Command::Revocations(args) => revoke::revocations(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("agentgate: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENTGATE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The shipped demo policies: `./policies` when run from the repository, else the copy next to
/// the sources this binary was built from.
pub fn policies_dir() -> PathBuf {
    let local = PathBuf::from("policies");
    if local.join("mail").join("agentgate.toml").exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("policies")
}

/// The demo configuration used when `--config` is not given.
pub fn default_config() -> PathBuf {
    policies_dir().join("mail").join("agentgate.toml")
}
