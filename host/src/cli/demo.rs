//! `agentgate demo`: the shipped scenario sets, decided end to end inside the component with
//! credentials minted now from the demo's TEST-ONLY keys.

use super::{EXIT_ALLOW, EXIT_DENY};
use agentgate::mint::KeyPair;
use agentgate::policy_test::{self, Keys};
use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};

/// Run the demo scenarios (mail assistant, home automation, ...) and show each decision.
///
/// Tokens, proofs and identities are minted at run time with the TEST-ONLY keys in
/// `policies/keys/`, so nothing expires. (`agentgate test` runs the same cases with throw-away
/// keys.)
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory holding the scenario sets (default: `policies/`).
    #[arg(long)]
    policies: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<u8> {
    let root = args.policies.unwrap_or_else(super::policies_dir);
    let keys = demo_keys(&root.join("keys"))?;
    let mut mismatches = 0;
    for set in policy_test::find_sets(&root)? {
        let result = policy_test::run_set(&set, &keys)?;
        println!("\n{}  ({})", result.dir.display(), result.summary);
        for case in &result.cases {
            let d = &case.decision;
            let mark = match (&case.failure, d.allowed) {
                (Some(_), _) => "✗ UNEXPECTED",
                (None, true) => "allow",
                (None, false) => "deny ",
            };
            if case.failure.is_some() {
                mismatches += 1;
            }
            println!("  {mark}  {}\n         {}: {}", case.name, d.outcome, d.reason);
        }
    }
    if mismatches > 0 {
        println!("\n{mismatches} decision(s) differed from what the scenario files expect");
        return Ok(EXIT_DENY);
    }
    println!("\nevery decision matched its scenario (see `policies/*/tests/*.toml`)");
    Ok(EXIT_ALLOW)
}

/// The TEST-ONLY demo keys the demo configurations trust.
fn demo_keys(dir: &Path) -> anyhow::Result<Keys> {
    let read = |name: &str| -> anyhow::Result<KeyPair> {
        let path = dir.join(name);
        KeyPair::from_jwk(&std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{}", path.display()))
    };
    Ok(Keys::Configured {
        issuer: read("issuer.TEST-ONLY.private.jwk.json")?,
        agent: read("agent.TEST-ONLY.private.jwk.json")?,
        trust_domain: read("trust-domain.TEST-ONLY.private.jwk.json")?,
    })
}
