//! `agentgate fmt`: format Cedar policy files with Cedar's own formatter.

use super::{EXIT_ALLOW, EXIT_DENY, EXIT_USAGE};
use agentgate_engine::authorizer::diagnostics::locate;
use anyhow::Context as _;
use cedar_policy::PolicySet;
use cedar_policy_formatter::{Config, policies_str_to_pretty};
use clap::Args;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

/// Format Cedar policy files (`*.cedar`) with Cedar's formatter (`cedar-policy-formatter`).
///
/// Comments are kept; the formatter checks that every policy means the same after formatting.
/// Rewrites changed files in place and prints `formatted <file>` for each. With `--check`, writes
/// nothing and prints `would reformat <file>` instead.
///
/// Exit status: 0 every file is (now) formatted, 1 with `--check` when a file would change,
/// 2 when a file cannot be read or parsed (printed as `file:line:col: message`).
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Only report files that would change (exit 1 if any); write nothing.
    #[arg(long)]
    check: bool,
    /// Maximum line width.
    #[arg(long, default_value_t = 80)]
    line_width: usize,
    /// Spaces per indentation level.
    #[arg(long, default_value_t = 2)]
    indent_width: u8,
    /// Policy files, or directories searched recursively for `*.cedar` (default: `policies/` in the
    /// current directory).
    paths: Vec<PathBuf>,
}

pub fn run(args: FmtArgs) -> anyhow::Result<u8> {
    // Unlike `demo`, no fallback to the sources' `policies/`: this command writes.
    if args.paths.is_empty() && !Path::new("policies").is_dir() {
        eprintln!("agentgate: no `policies/` directory here; name the policy files or directories to format");
        return Ok(EXIT_USAGE);
    }
    let roots = if args.paths.is_empty() { vec![PathBuf::from("policies")] } else { args.paths.clone() };
    let mut files = Vec::new();
    for root in &roots {
        collect(root, &mut files)?;
    }
    if files.is_empty() {
        eprintln!("agentgate: no `*.cedar` files under {}", roots.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "));
        return Ok(EXIT_USAGE);
    }
    let config = Config { line_width: args.line_width, indent_width: isize::from(args.indent_width) };
    let (mut changed, mut broken) = (0usize, 0usize);
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let pretty = match format(&file.display().to_string(), &text, &config) {
            Ok(pretty) => pretty,
            Err(lines) => {
                broken += 1;
                for line in lines {
                    eprintln!("{line}");
                }
                continue;
            }
        };
        if pretty == text {
            continue;
        }
        changed += 1;
        if args.check {
            println!("would reformat {}", file.display());
        } else {
            std::fs::write(file, &pretty).with_context(|| format!("writing {}", file.display()))?;
            println!("formatted {}", file.display());
        }
    }
    if broken > 0 {
        return Ok(EXIT_USAGE);
    }
    if args.check && changed > 0 {
        eprintln!("agentgate: {changed} of {} policy files would be reformatted; run `agentgate fmt`", files.len());
        return Ok(EXIT_DENY);
    }
    Ok(EXIT_ALLOW)
}

/// The formatted text, or `file:line:col: message` lines saying why the file cannot be formatted.
fn format(name: &str, text: &str, config: &Config) -> Result<String, Vec<String>> {
    // Parse first with the engine's parser, for errors with positions; the formatter's own errors
    // carry none.
    if let Err(errors) = PolicySet::from_str(text) {
        return Err(errors.iter().map(|e| locate(name, text, e)).collect());
    }
    policies_str_to_pretty(text, config).map_err(|e| vec![format!("{name}: the formatter failed: {e}")])
}

/// `path` itself when it is a file, else every `*.cedar` below it, sorted.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, out)?;
        } else if entry.extension().is_some_and(|e| e == "cedar") {
            out.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn formats_and_keeps_comments() {
        let text = "// who may read\n@id(\"r\") permit(principal,action==Action::\"read\",resource)when{context.scopes.contains(\"a\")};\n";
        let pretty = format("x.cedar", text, &Config { line_width: 80, indent_width: 2 }).unwrap();
        assert!(pretty.starts_with("// who may read\n@id(\"r\")\npermit (\n"), "{pretty}");
        assert_eq!(format("x.cedar", &pretty, &Config { line_width: 80, indent_width: 2 }).unwrap(), pretty);
    }

    #[test]
    fn a_syntax_error_has_a_position() {
        let errors = format("x.cedar", "permit (principal, action, resource)\nwhen { context. };\n", &Config { line_width: 80, indent_width: 2 }).unwrap_err();
        assert!(errors[0].starts_with("x.cedar:2:"), "{errors:?}");
    }
}
