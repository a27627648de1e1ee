//! `agentgate demo`: the shipped scenario sets, decided end to end inside the component with
//! credentials minted now from the demo's TEST-ONLY keys.

use super::{EXIT_ALLOW, EXIT_DENY};
use agentgate::config::{self, LoadedConfig};
use agentgate::mint::{self, KeyPair};
use agentgate::replay::InMemoryReplayStore;
use agentgate::scenario::{self, Expect, ScenarioKeys};
use agentgate::{Runtime, RuntimeOptions};
use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Run the demo scenarios (mail assistant, home automation, ...) and show each decision.
///
/// Tokens, proofs and identities are minted at run time with the TEST-ONLY keys in
/// `policies/keys/`, so nothing expires.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory holding the scenario sets (default: `policies/`).
    #[arg(long)]
    policies: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<u8> {
    let root = args.policies.unwrap_or_else(super::policies_dir);
    let keys = demo_keys(&root.join("keys"))?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("agentgate.toml").exists() && p.join("tests").is_dir())
        .collect();
    sets.sort();
    let mut mismatches = 0;
    let replay = Arc::new(InMemoryReplayStore::default());
    for set in &sets {
        let loaded = config::load(&set.join("agentgate.toml"))?;
        let runtime = Runtime::new(RuntimeOptions::from_section(&loaded.file.runtime), replay.clone())?;
        let mut verifier = runtime.verifier(&loaded.engine)?;
        println!("\n{}  (audience {}, dpop {})", set.display(), loaded.file.audiences.join(", "), loaded.file.dpop.mode.as_str());
        for file in case_files(&set.join("tests"))? {
            for case in scenario::read_cases(&file)?.cases {
                let request = scenario::mint_request(&case, &keys_for(&keys, &loaded), &loaded, mint::now())?;
                let decision = verifier.check(&request);
                let matches = (decision.allowed == (case.expect == Expect::Allow))
                    && case.outcome.as_deref().is_none_or(|o| o == decision.outcome.as_str());
                if !matches {
                    mismatches += 1;
                }
                let mark = if !matches { "✗ UNEXPECTED" } else if decision.allowed { "allow" } else { "deny " };
                println!("  {mark}  {}\n         {}: {}", case.name, decision.outcome, decision.reason);
            }
        }
    }
    if mismatches > 0 {
        println!("\n{mismatches} decision(s) differed from what the scenario files expect");
        return Ok(EXIT_DENY);
    }
    println!("\nevery decision matched its scenario (see `policies/*/tests/*.toml`)");
    Ok(EXIT_ALLOW)
}

/// The TEST-ONLY demo keys.
pub struct DemoKeys {
    issuer: KeyPair,
    agent: KeyPair,
    trust_domain: KeyPair,
}

pub fn demo_keys(dir: &Path) -> anyhow::Result<DemoKeys> {
    let read = |name: &str| -> anyhow::Result<KeyPair> {
        let path = dir.join(name);
        KeyPair::from_jwk(&std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{}", path.display()))
    };
    Ok(DemoKeys {
        issuer: read("issuer.TEST-ONLY.private.jwk.json")?,
        agent: read("agent.TEST-ONLY.private.jwk.json")?,
        trust_domain: read("trust-domain.TEST-ONLY.private.jwk.json")?,
    })
}

fn keys_for(keys: &DemoKeys, loaded: &LoadedConfig) -> ScenarioKeys {
    ScenarioKeys {
        issuer: keys.issuer.clone(),
        issuer_name: loaded.file.issuers.first().map(|i| i.issuer.clone()).unwrap_or_default(),
        agent: keys.agent.clone(),
        trust_domain: Some(keys.trust_domain.clone()),
    }
}

fn case_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}
