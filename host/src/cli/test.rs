//! `agentgate test`: run the policy sets' scenario cases.

use super::{EXIT_ALLOW, EXIT_DENY, EXIT_USAGE};
use agentgate::policy_test::{self, Keys};
use clap::Args;
use std::path::PathBuf;

/// Run policy tests: every `tests/*.toml` case of a policy set (or of every set under a
/// directory), with real tokens, proofs and identities minted for the case's facts with
/// throw-away keys, decided by the component as in production.
///
/// Prints each case, `N passed, N failed`, and the policies no case made determining.
/// Exit status: 0 all passed, 1 a case failed, 2 a set could not be loaded.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// A policy set (a directory with `agentgate.toml` and `tests/`) or a directory of sets.
    #[arg(default_value = "policies")]
    dir: PathBuf,
    /// Print only failures and the summary.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: TestArgs) -> anyhow::Result<u8> {
    let sets = policy_test::find_sets(&args.dir)?;
    if sets.is_empty() {
        eprintln!("agentgate: no policy sets under {} (a set has `agentgate.toml` and `tests/`)", args.dir.display());
        return Ok(EXIT_USAGE);
    }
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for set in sets {
        match policy_test::run_set(&set, &Keys::ThrowAway) {
            Err(e) => {
                broken += 1;
                eprintln!("{}: {e:#}", set.display());
            }
            Ok(result) => {
                println!("{}  ({} cases; {})", result.dir.display(), result.cases.len(), result.summary);
                for case in &result.cases {
                    match &case.failure {
                        None => {
                            passed += 1;
                            if !args.quiet {
                                println!("  ok    {}", case.name);
                            }
                        }
                        Some(why) => {
                            failed += 1;
                            println!("  FAIL  {} ({})\n        {why}", case.name, case.file.display());
                        }
                    }
                }
                if result.never_determining.is_empty() {
                    println!("  coverage: every policy was determining in some case");
                } else {
                    let ids: Vec<String> = result.never_determining.iter().map(|i| format!("`{i}`")).collect();
                    println!("  coverage: never determining: {}", ids.join(", "));
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if broken > 0 {
        EXIT_USAGE
    } else if failed > 0 {
        EXIT_DENY
    } else {
        EXIT_ALLOW
    })
}
