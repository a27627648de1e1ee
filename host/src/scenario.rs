//! Scenario cases: a call described by its *verified facts* (user, agents, scopes, token lifetime,
//! proof, identity) plus the action and resource. The runner mints real credentials for each case,
//! so a case exercises exactly the production path. Used by `agentgate demo` and `agentgate test`.

use crate::config::LoadedConfig;
use crate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate_engine::spiffe::SpiffeId;
use agentgate_engine::{CheckRequest, Credentials, DpopMode, EntityRef, HttpRequest};
use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// A file of cases (`[[case]]` tables).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The cases.
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

/// One scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows.
    pub name: String,
    /// The user (`sub`).
    pub user: String,
    /// Actors, current first; empty when the user calls directly.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Token lifetime (`exp - iat`), seconds.
    #[serde(default = "default_lifetime")]
    pub lifetime_secs: u64,
    /// Token age at the time of the call, seconds.
    #[serde(default)]
    pub age_secs: u64,
    /// Bind the token to the agent key and send a DPoP proof; default: when the config's DPoP mode
    /// is `required`.
    #[serde(default)]
    pub bound: Option<bool>,
    /// Send a verified workload identity for the current agent (a SPIFFE ID).
    #[serde(default)]
    pub identity: bool,
    /// The HTTP request; default `POST` to the first audience.
    #[serde(default)]
    pub http: Option<HttpRequest>,
    /// Cedar action.
    pub action: String,
    /// Resource.
    pub resource: EntityRef,
    /// Caller attributes (`context.input`).
    #[serde(default)]
    pub context: Option<Value>,
    /// Cedar entities.
    #[serde(default)]
    pub entities: Option<Value>,
    /// Expected decision: `allow` or `deny`.
    pub expect: Expect,
    /// Expected outcome name, when it matters (`policy_denied`, `revoked`...).
    #[serde(default)]
    pub outcome: Option<String>,
    /// Expected determining policies (any order).
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// Expected step-up scope of an `insufficient_scope` deny (`@scope` on the permit).
    #[serde(default)]
    pub required_scope: Option<String>,
}

fn default_lifetime() -> u64 {
    300
}

/// The expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// Reads a case file (TOML).
pub fn read_cases(path: &Path) -> anyhow::Result<CaseFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}", path.display()))
}

/// The keys a scenario is minted with.
#[derive(Debug, Clone)]
pub struct ScenarioKeys {
    /// The issuer's signing key (its `kid` must be in the issuer's JWKS).
    pub issuer: KeyPair,
    /// The issuer name (`iss`).
    pub issuer_name: String,
    /// The agent's key (bound with `cnf.jkt`, signs proofs).
    pub agent: KeyPair,
    /// The trust domain key that signs workload identities.
    pub trust_domain: Option<KeyPair>,
}

/// Builds the request for `case` with freshly minted credentials, evaluated at `now`.
pub fn mint_request(case: &Case, keys: &ScenarioKeys, config: &LoadedConfig, now: u64) -> anyhow::Result<CheckRequest> {
    let audience = config.file.audiences.first().context("the config has no audience")?;
    let bound = case.bound.unwrap_or(config.file.dpop.mode == DpopMode::Required);
    let issued_at = now.saturating_sub(case.age_secs);
    let mut spec = AccessTokenSpec::new(&keys.issuer_name, &case.user, audience);
    spec.scopes = case.scopes.clone();
    spec.actors = case.agents.clone();
    spec.issued_at = issued_at;
    spec.lifetime_secs = case.lifetime_secs;
    spec.client_id = "agentgate-scenario".into();
    if bound {
        spec.bound_key = Some(keys.agent.thumbprint());
    }
    let token = spec.sign(&keys.issuer);
    let http = case.http.clone().unwrap_or_else(|| HttpRequest { method: "POST".into(), uri: audience.clone() });
    let dpop = bound.then(|| mint::dpop_proof(&keys.agent, &http.method, &http.uri, &token, now, None));
    let agent_identity = if case.identity {
        let agent = case.agents.first().context("`identity = true` needs an agent")?;
        SpiffeId::parse(agent).map_err(|e| anyhow::anyhow!("agent `{agent}` is not a SPIFFE ID: it {e}"))?;
        let domain_key = keys.trust_domain.as_ref().context("no trust domain key for workload identities")?;
        Some(mint::workload_identity(domain_key, agent, &keys.agent, now, 3600))
    } else {
        None
    };
    Ok(CheckRequest {
        credentials: Credentials { authorization: Some(format!("{} {token}", if bound { "DPoP" } else { "Bearer" })), dpop, agent_identity },
        http: Some(http),
        action: case.action.clone(),
        resource: case.resource.clone(),
        context_json: case.context.as_ref().map(Value::to_string),
        entities_json: case.entities.as_ref().map(Value::to_string),
        now: Some(now),
    })
}
