//! `agentgate validate`: check a configuration, its keys, its routes and its policies.

use super::Format;
use super::{EXIT_ALLOW, EXIT_USAGE};
use agentgate::receipts::digest::ConfigDigests;
use agentgate::state::LocalState;
use agentgate::validate::{self, source_text};
use agentgate::{Runtime, RuntimeOptions, VerifierError};
use agentgate_engine::authorizer::diagnostics::Problem;
use clap::Args;
use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};
use std::path::PathBuf;
use std::sync::Arc;

/// Validate a configuration: settings, key files, routes, and every policy strictly against the
/// schema. Problems point at file, line and column with the source snippet.
///
/// Exit status: 0 valid, 2 a problem.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Configuration file (default: the demo config in `policies/mail/`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// `text` (diagnostics with snippets on stderr) or `json` (a report on stdout).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// A problem as a miette diagnostic, for the graphical renderer.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
struct Rendered {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: Option<SourceSpan>,
    #[help]
    help: Option<String>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<u8> {
    let path = args.config.unwrap_or_else(super::default_config);
    let mut report = validate::validate(&path);
    // The component's own verdict, when the native checks pass: the engine that decides is the
    // one inside the sandbox.
    if report.problems.is_empty()
        && let Some(loaded) = &report.config
    {
        let runtime = Runtime::new(RuntimeOptions::from_section(&loaded.file.runtime), Arc::new(LocalState::default()))?;
        match runtime.verifier(&loaded.engine) {
            Ok(_) => {}
            Err(VerifierError::Config(message)) => report.problems.push(Problem::general(&path.display().to_string(), message)),
            Err(e) => return Err(e.into()),
        }
    }
    // The content hash receipts and `/healthz` show for this configuration.
    let digests = report.config.as_ref().filter(|_| report.problems.is_empty()).and_then(|c| ConfigDigests::of(&c.engine).ok());
    match args.format {
        Format::Json => {
            let json = serde_json::json!({
                "config": path.display().to_string(),
                "ok": report.problems.is_empty(),
                "problems": report.problems,
                "warnings": report.warnings,
                "digest": digests,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Format::Text => {
            let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor());
            for problem in &report.problems {
                let text = report.config.as_ref().and_then(|c| source_text(c, &problem.file));
                match (text, problem.offset) {
                    (Some(text), Some(offset)) => {
                        let rendered = Rendered {
                            message: format!("{}:{}:{}: {}", problem.file, problem.line.unwrap_or(0), problem.column.unwrap_or(0), problem.message),
                            src: NamedSource::new(&problem.file, text.to_owned()),
                            span: Some(SourceSpan::new(offset.into(), problem.length)),
                            help: problem.help.clone(),
                        };
                        let mut out = String::new();
                        let _ = handler.render_report(&mut out, &rendered);
                        eprintln!("{out}");
                    }
                    _ => eprintln!("error: {problem}\n"),
                }
            }
            for warning in &report.warnings {
                eprintln!("warning: {warning}\n");
            }
            if report.problems.is_empty() {
                let loaded = report.config.as_ref();
                println!(
                    "{}: ok ({} policy files, {} issuers, {} trust domains, {} routes)",
                    path.display(),
                    loaded.map_or(0, |c| c.engine.policies.len()),
                    loaded.map_or(0, |c| c.file.issuers.len()),
                    loaded.map_or(0, |c| c.file.trust_domains.len()),
                    loaded.map_or(0, |c| c.file.routes.len()),
                );
                if let Some(d) = &digests {
                    println!("config digest {} (policies {}, schema {}, settings {})", d.digest, d.policies, d.schema, d.settings);
                }
            } else {
                eprintln!("{}: {} problem(s)", path.display(), report.problems.len());
            }
        }
    }
    Ok(if report.problems.is_empty() { EXIT_ALLOW } else { EXIT_USAGE })
}
