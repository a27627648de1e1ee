//! `agentgate analyze`: prove things about policy sets with Cedar's symbolic compiler.

use super::{EXIT_USAGE, Format};
use agentgate::analyze::{self, delegation, diff, lint, solver};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Prove properties of policy sets with Cedar's symbolic compiler and the SMT solver cvc5.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(subcommand)]
    what: AnalyzeCommand,
}

#[derive(Debug, Subcommand)]
enum AnalyzeCommand {
    /// Does NEW permit anything OLD did not (and the reverse)? Per request environment of NEW's
    /// schema (principal type × action × resource type), with a counterexample for each
    /// difference, confirmed by Cedar's authorizer.
    ///
    /// Exit status: 1 when NEW grants something OLD did not; else 2 when any question is unknown
    /// (solver out of time, templates, a policy that does not compile) or no solver can be run;
    /// else 0.
    Diff(DiffArgs),
    /// Policies that can err on a well-typed request, that never apply, or permits that never
    /// allow (every match forbidden); actions no one can perform. Each with a counterexample or
    /// as proved, per request environment of the schema.
    ///
    /// Exit status: 1 when anything is found; else 2 when any question is unknown or no solver
    /// can be run; else 0.
    Lint(LintArgs),
    /// No agent can do more than its user: in every `Agent` environment, a request allowed to an
    /// agent acting for `context.user` must be allowed to that user directly (same action,
    /// resource, entities, scopes, token and input; no actors, depth 0). Permits annotated
    /// `@delegation_exemption("why")` are exempt and listed.
    ///
    /// Exit status: 1 when an agent can do more somewhere; else 2 when anything is unknown or no
    /// solver can be run; else 0.
    Delegation(LintArgs),
}

#[derive(Debug, Args)]
struct LintArgs {
    /// The policy directory (`*.cedar` and `schema.cedarschema`).
    dir: PathBuf,
    /// Most time the solver gets for one question, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Args)]
struct DiffArgs {
    /// The policy directory before the change (`*.cedar` and `schema.cedarschema`).
    old: PathBuf,
    /// The policy directory after the change; its schema defines the environments.
    new: PathBuf,
    /// Most time the solver gets for one question, in milliseconds; beyond it the answer is
    /// "unknown".
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<u8> {
    match args.what {
        AnalyzeCommand::Diff(args) => diff_command(args),
        AnalyzeCommand::Lint(args) => lint_command(args),
        AnalyzeCommand::Delegation(args) => delegation_command(args),
    }
}

fn lint_command(args: LintArgs) -> anyhow::Result<u8> {
    let set = load(&args.dir)?;
    let Some((mut solver, version, runtime)) = start_solver(args.timeout_ms)? else { return Ok(EXIT_USAGE) };
    let report = runtime.block_on(lint::lint(&set, &mut solver, version));
    print_report(args.format, &report, report.exit_code(), || report.render_text())
}

fn delegation_command(args: LintArgs) -> anyhow::Result<u8> {
    let set = load(&args.dir)?;
    let Some((mut solver, version, runtime)) = start_solver(args.timeout_ms)? else { return Ok(EXIT_USAGE) };
    let report = runtime.block_on(delegation::delegation(&set, &mut solver, version));
    print_report(args.format, &report, report.exit_code(), || report.render_text())
}

fn load(dir: &std::path::Path) -> anyhow::Result<agentgate_engine::authorizer::Authorizer> {
    analyze::load_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

/// The solver with its version line and a runtime to drive it; `None` (the reason printed) when
/// there is no solver to run.
fn start_solver(timeout_ms: u64) -> anyhow::Result<Option<(solver::Solver, String, tokio::runtime::Runtime)>> {
    let version = match solver::version() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("agentgate: {e}");
            return Ok(None);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(Some((solver::Solver::new(Duration::from_millis(timeout_ms.max(1))), version, runtime)))
}

fn print_report(format: Format, report: &impl serde::Serialize, exit: u8, text: impl FnOnce() -> String) -> anyhow::Result<u8> {
    match format {
        Format::Text => print!("{}", text()),
        Format::Json => {
            let mut json = serde_json::to_value(report)?;
            if let Some(object) = json.as_object_mut() {
                object.insert("exit".into(), exit.into());
            }
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }
    Ok(exit)
}

fn diff_command(args: DiffArgs) -> anyhow::Result<u8> {
    let (old, new) = (load(&args.old)?, load(&args.new)?);
    let Some((mut solver, version, runtime)) = start_solver(args.timeout_ms)? else { return Ok(EXIT_USAGE) };
    let report = runtime.block_on(diff::diff(&old, &new, &mut solver, version));
    print_report(args.format, &report, report.exit_code(), || report.render_text())
}
