//! Policy tests: the scenario cases next to a policy set (`tests/*.toml`), minted and decided
//! through the component exactly as production calls are, with the expected decision, outcome and
//! determining policies checked, and coverage — which policies no case ever made determining.
//! `agentgate test` runs them with throw-away keys; `agentgate demo` with the TEST-ONLY demo keys.

use crate::config::{self, LoadedConfig};
use crate::mint::{self, KeyPair};
use crate::scenario::{self, Case, Expect, ScenarioKeys};
use crate::{Runtime, RuntimeOptions};
use agentgate_engine::Decision;
use agentgate_engine::authorizer::Authorizer;
use agentgate_engine::trust::TrustConfig;
use anyhow::Context as _;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which keys the credentials are minted with.
// One value per test run: boxing the key pairs would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Keys {
    /// Fresh keys for this run; the set's issuer JWKS and trust bundles are replaced by theirs.
    ThrowAway,
    /// Given keys that the set's configuration already trusts (the TEST-ONLY demo keys).
    Configured { issuer: KeyPair, agent: KeyPair, trust_domain: KeyPair },
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The file the case is in.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
    /// The decision made.
    pub decision: Decision,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

/// One set's results.
#[derive(Debug, Clone)]
pub struct SetResult {
    /// The set's directory.
    pub dir: PathBuf,
    /// The config's DPoP mode, for display.
    pub summary: String,
    /// Every case.
    pub cases: Vec<CaseResult>,
    /// Policies (by id) that no case made determining.
    pub never_determining: Vec<String>,
}

/// The policy sets at `dir`: the directory itself when it holds `agentgate.toml`, else every
/// subdirectory that holds one and a `tests/` directory.
pub fn find_sets(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.join("agentgate.toml").exists() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("agentgate.toml").exists() && p.join("tests").is_dir())
        .collect();
    sets.sort();
    Ok(sets)
}

/// The least wall-clock budget of one call under `agentgate test`.
const CASE_CALL_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs every case of the set at `dir`.
pub fn run_set(dir: &Path, keys: &Keys) -> anyhow::Result<SetResult> {
    let loaded = config::load(&dir.join("agentgate.toml"))?;
    let (engine_config, scenario_keys) = prepare(&loaded, keys)?;
    // The call budget is wall-clock time, which a busy machine (a CI runner compiling and
    // testing in parallel) can exhaust on any call: a policy case must not fail for that. Cases
    // judge decisions; the budget itself is tested where it is enforced (tests/sandbox.rs).
    let deployed = RuntimeOptions::from_section(&loaded.file.runtime);
    let options = RuntimeOptions { call_timeout: deployed.call_timeout.max(CASE_CALL_BUDGET), ..deployed };
    let runtime = Runtime::new(options, Arc::new(crate::state::LocalState::default()))?;
    let mut verifier = runtime.verifier(&engine_config)?;
    let policy_ids: BTreeSet<String> = Authorizer::new(&loaded.engine.policies, &loaded.engine.schema)
        .map_err(anyhow::Error::msg)?
        .policy_set()
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    let mut determining = BTreeSet::new();
    let mut cases = Vec::new();
    for file in case_files(&dir.join("tests"))? {
        for case in scenario::read_cases(&file)?.cases {
            let request =
                scenario::mint_request(&case, &scenario_keys, &loaded, mint::now()).with_context(|| format!("{}: case `{}`", file.display(), case.name))?;
            let decision = verifier.check(&request);
            determining.extend(decision.policies.iter().cloned());
            let failure = judge(&case, &decision);
            cases.push(CaseResult { file: file.clone(), name: case.name, decision, failure });
        }
    }
    let never_determining = policy_ids.difference(&determining).cloned().collect();
    let summary = format!("audience {}, dpop {}", loaded.file.audiences.join(", "), loaded.file.dpop.mode.as_str());
    Ok(SetResult { dir: dir.to_path_buf(), summary, cases, never_determining })
}

/// The engine configuration and minting keys for a run.
fn prepare(loaded: &LoadedConfig, keys: &Keys) -> anyhow::Result<(agentgate_engine::EngineConfig, ScenarioKeys)> {
    let issuer_name = loaded.file.issuers.first().map(|i| i.issuer.clone()).context("the configuration has no `[[issuers]]`")?;
    match keys {
        Keys::Configured { issuer, agent, trust_domain } => {
            Ok((loaded.engine.clone(), ScenarioKeys { issuer: issuer.clone(), issuer_name, agent: agent.clone(), trust_domain: Some(trust_domain.clone()) }))
        }
        Keys::ThrowAway => {
            let issuer = KeyPair::generate("agentgate-test-issuer")?;
            let agent = KeyPair::generate("agentgate-test-agent")?;
            let domain = KeyPair::generate("agentgate-test-domain")?;
            let mut trust: TrustConfig = serde_json::from_str(&loaded.engine.trust_json)?;
            for i in &mut trust.issuers {
                i.jwks = mint::jwks(&[&issuer]).to_string();
                i.source = "throw-away test key".into();
            }
            for td in &mut trust.trust_domains {
                td.bundle = mint::spiffe_bundle(&[&domain]).to_string();
                td.source = "throw-away test key".into();
            }
            let mut engine = loaded.engine.clone();
            engine.trust_json = serde_json::to_string(&trust)?;
            Ok((engine, ScenarioKeys { issuer, issuer_name, agent, trust_domain: Some(domain) }))
        }
    }
}

/// Why a decision does not meet the case's expectations, if it does not.
fn judge(case: &Case, decision: &Decision) -> Option<String> {
    let got = format!("{} ({}: {})", if decision.allowed { "allow" } else { "deny" }, decision.outcome, decision.reason);
    if decision.allowed != (case.expect == Expect::Allow) {
        let want = if case.expect == Expect::Allow { "allow" } else { "deny" };
        return Some(format!("expected {want}, got {got}"));
    }
    if let Some(outcome) = &case.outcome
        && outcome != decision.outcome.as_str()
    {
        return Some(format!("expected outcome `{outcome}`, got {got}"));
    }
    if let Some(scope) = &case.required_scope
        && Some(scope) != decision.required_scope.as_ref()
    {
        return Some(format!("expected the step-up scope `{scope}`, got {got}"));
    }
    if let Some(expected) = &case.policies {
        let mut want = expected.clone();
        want.sort();
        let mut have = decision.policies.clone();
        have.sort();
        if want != have {
            return Some(format!("expected determining policies {want:?}, got {have:?}"));
        }
    }
    None
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
