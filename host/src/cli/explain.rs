//! `agentgate explain`: a decision and why.

use super::Format;
use super::{EXIT_ALLOW, EXIT_DENY, EXIT_USAGE};
use agentgate::config;
use agentgate::state::LocalState;
use agentgate::wire::{DecisionJson, RequestJson};
use agentgate_engine::{Engine, Trace};
use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

/// Explain a decision: every check performed with its result, the Cedar request as built
/// (principal, action, resource, context), and the determining policies with their source text.
///
/// Runs the engine natively (the same code as the component; the shared vectors hold both to
/// identical decisions). Credentials are never printed.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Configuration file (default: the demo config in `policies/mail/`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Evaluate at this time (unix seconds) instead of the wall clock.
    #[arg(long)]
    now: Option<u64>,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Request JSON file, or `-` for standard input.
    request: PathBuf,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<u8> {
    let text = if args.request.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(&args.request).with_context(|| format!("reading {}", args.request.display()))?
    };
    let request = match RequestJson::parse(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentgate: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let loaded = config::load(&args.config.unwrap_or_else(super::default_config))?;
    let engine = Engine::new(&loaded.engine, Box::new(LocalState::default())).map_err(anyhow::Error::msg)?;
    let mut trace = Trace::default();
    let decision = engine.check_traced(&request.to_check_request(args.now), Some(&mut trace));
    let policies: Vec<serde_json::Value> = decision
        .policies
        .iter()
        .map(|id| match engine.authorizer().policy_source(id) {
            Some(src) => json!({"id": id, "file": loaded.source_shown(&src.file), "line": src.line, "text": src.text}),
            None => json!({"id": id}),
        })
        .collect();
    match args.format {
        Format::Json => {
            let out = json!({
                "decision": DecisionJson::from(&decision),
                "checks": trace.steps.iter().map(|(step, result)| json!({"check": step, "result": result})).collect::<Vec<_>>(),
                "cedar_request": trace.request.as_ref().map(|r| json!({"principal": r.principal, "action": r.action, "resource": r.resource, "context": r.context, "policies_evaluated": r.policies_selected, "policies_in_set": r.policies_total})),
                "entities": request.entities,
                "determining_policies": policies,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Text => {
            println!("decision: {} ({})", if decision.allowed { "allow" } else { "deny" }, decision.outcome);
            println!("reason:   {}\n", decision.reason);
            println!("checks:");
            for (step, result) in &trace.steps {
                println!("  {step:<16} {result}");
            }
            match &trace.request {
                Some(r) => {
                    println!("\ncedar request:");
                    println!("  principal  {}", r.principal);
                    println!("  action     {}", r.action);
                    println!("  resource   {}", r.resource);
                    let context = serde_json::to_string_pretty(&r.context)?.replace('\n', "\n             ");
                    println!("  context    {context}");
                    if let Some(entities) = &request.entities {
                        let entities = serde_json::to_string_pretty(entities)?.replace('\n', "\n             ");
                        println!("  entities   {entities}");
                    }
                    println!("  policies   {} of {} evaluated (the index skips those whose scope cannot match)", r.policies_selected, r.policies_total);
                }
                None => println!("\ncedar request: not built (the call was decided before policy evaluation)"),
            }
            if !decision.policies.is_empty() {
                println!("\ndetermining policies:");
                for id in &decision.policies {
                    match engine.authorizer().policy_source(id) {
                        Some(src) => {
                            println!("  {id}  ({}:{})", loaded.source_shown(&src.file), src.line);
                            for line in src.text.lines() {
                                println!("    {line}");
                            }
                        }
                        None => println!("  {id}"),
                    }
                }
            }
            if !decision.errors.is_empty() {
                println!("\npolicy errors (those policies were skipped):");
                for e in &decision.errors {
                    println!("  {e}");
                }
            }
        }
    }
    Ok(if decision.allowed { EXIT_ALLOW } else { EXIT_DENY })
}
