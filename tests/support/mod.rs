//! Shared test support: the vector file model and runners for every host.

// PANIC SAFETY: test support; a failed expectation is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

pub mod policy_gen;
pub mod redis;
pub mod serve;

use agentgate::config::{self, LoadedConfig};
use agentgate::state::LocalState;
use agentgate::wire::RequestJson;
use agentgate::{Decide, Decision, Engine, Runtime, RuntimeOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The repository root (the root package's manifest directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/agentgate`: the root package has no bin target, so no CARGO_BIN_EXE; the
/// workspace test run builds host's bin next to this test's `deps/` directory.
pub fn agentgate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap(); // target/<profile>/deps/<test>-<hash>
    let bin = exe.parent().unwrap().parent().unwrap().join(format!("agentgate{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: run `cargo test --workspace --release`", bin.display());
    bin
}

/// One vector file: a configuration and a sequence of calls with their expected decisions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// What the vector shows.
    pub intent: String,
    /// Config file, relative to the repository root.
    pub config: String,
    /// Revocation list set before the steps, when the vector needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocations: Option<Value>,
    /// What the host's `state` import holds or answers for this vector (default: a fresh,
    /// empty store with the default bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_state: Option<HostStateSpec>,
    /// Calls, in order (later steps see earlier ones, e.g. replays).
    pub steps: Vec<Step>,
}

/// The host state a vector runs against (see tests/CONFORMANCE.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostStateSpec {
    /// The most live proofs the store keeps for one proof key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_proofs_per_key: Option<u32>,
    /// The host's revocation list: canonical ids, each as its JSON array.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<Vec<String>>,
    /// Every state call answers `unavailable` with this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// The Status List Tokens the host serves, by `uri`; any other `uri` is unavailable.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub status_lists: std::collections::BTreeMap<String, String>,
}

/// The `state` import a vector's host provides: a fresh proof store with the vector's bounds, the
/// vector's host revocation list, or a store that cannot answer.
#[derive(Debug)]
pub struct VectorState {
    spec: HostStateSpec,
    proofs: LocalState,
}

impl VectorState {
    pub fn new(spec: Option<&HostStateSpec>) -> Self {
        let spec = spec.cloned().unwrap_or_default();
        let limits = agentgate_engine::state::ProofLimits {
            per_key: spec.max_proofs_per_key.unwrap_or(agentgate_engine::state::ProofLimits::default().per_key),
            ..agentgate_engine::state::ProofLimits::default()
        };
        VectorState { proofs: LocalState::with_limits(limits), spec }
    }
}

impl agentgate::SharedState for VectorState {
    fn remember_proof(&self, proof: &agentgate_engine::ProofUse<'_>) -> agentgate_engine::ProofAnswer {
        match &self.spec.unavailable {
            Some(why) => agentgate_engine::ProofAnswer::Unavailable(why.clone()),
            None => self.proofs.remember_proof(proof),
        }
    }
    fn check_revoked(&self, ids: &[String], _now: u64) -> agentgate_engine::RevocationAnswer {
        if let Some(why) = &self.spec.unavailable {
            return agentgate_engine::RevocationAnswer::Unavailable(why.clone());
        }
        let listed: Vec<String> = self.spec.revoked.iter().map(|id| serde_json::to_string(id).unwrap()).collect();
        match ids.iter().position(|id| listed.contains(id)) {
            Some(i) => agentgate_engine::RevocationAnswer::Revoked(i),
            None => agentgate_engine::RevocationAnswer::Clear,
        }
    }
    fn status_list(&self, uri: &str, known_digest: Option<&str>) -> agentgate_engine::StatusListAnswer {
        use agentgate_engine::StatusListAnswer;
        if let Some(why) = &self.spec.unavailable {
            return StatusListAnswer::Unavailable(why.clone());
        }
        match self.spec.status_lists.get(uri) {
            Some(token) if Some(agentgate_engine::status_list::digest(token).as_str()) == known_digest => StatusListAnswer::Unchanged,
            Some(token) => StatusListAnswer::Current(token.clone()),
            None => StatusListAnswer::Unavailable(format!("this host has no status list at `{uri}`")),
        }
    }
}

/// A `state` import whose vector state is swapped per vector, for tests that keep one runtime
/// (one pre-initialized component, one bundle) across many vectors.
#[derive(Debug, Default)]
pub struct StateSlot(std::sync::Mutex<Option<Arc<VectorState>>>);

impl StateSlot {
    /// A fresh store for the next vector.
    pub fn reset(&self, spec: Option<&HostStateSpec>) {
        *self.0.lock().unwrap() = Some(Arc::new(VectorState::new(spec)));
    }

    fn current(&self) -> Arc<VectorState> {
        self.0.lock().unwrap().get_or_insert_with(|| Arc::new(VectorState::new(None))).clone()
    }
}

impl agentgate::SharedState for StateSlot {
    fn remember_proof(&self, proof: &agentgate_engine::ProofUse<'_>) -> agentgate_engine::ProofAnswer {
        self.current().remember_proof(proof)
    }
    fn check_revoked(&self, ids: &[String], now: u64) -> agentgate_engine::RevocationAnswer {
        self.current().check_revoked(ids, now)
    }
    fn status_list(&self, uri: &str, known_digest: Option<&str>) -> agentgate_engine::StatusListAnswer {
        self.current().status_list(uri, known_digest)
    }
}

/// One call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The request (its `now` pins the clock).
    pub request: RequestJson,
    /// What every host must answer.
    pub expect: Expect,
}

/// The expected decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow` or `deny`.
    pub decision: String,
    /// Outcome name.
    pub outcome: String,
    /// A phrase the reason must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_contains: Option<String>,
    /// Determining policies, exactly (sorted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Whether the decision carries a fresh DPoP nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_nonce: Option<bool>,
}

/// Every vector file, sorted by name.
pub fn vector_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root().join("tests/vectors")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    files
}

/// Reads a vector.
pub fn read_vector(path: &Path) -> Vector {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads a config named relative to the repository root.
pub fn load_config(rel: &str) -> LoadedConfig {
    config::load(&root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A process-wide runtime for the portable component (compiled once per test binary).
pub fn runtime(crypto: agentgate::config::CryptoPlacement) -> Runtime {
    use std::sync::OnceLock;
    static GUEST: OnceLock<Runtime> = OnceLock::new();
    static HOST: OnceLock<Runtime> = OnceLock::new();
    let cell = match crypto {
        agentgate::config::CryptoPlacement::Guest => &GUEST,
        agentgate::config::CryptoPlacement::Host => &HOST,
    };
    cell.get_or_init(|| {
        let options = RuntimeOptions { crypto, ..RuntimeOptions::default() };
        Runtime::new(options, Arc::new(LocalState::default())).unwrap()
    })
    .clone()
}

/// The hosts every vector runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The engine compiled natively.
    Native,
    /// The `gate` component (in-guest crypto) under wasmtime: what `agentgate` runs by default,
    /// and what Node and bundles get.
    Component,
    /// The accelerated component under wasmtime (ES256 through the host import).
    ComponentHostCrypto,
}

pub const HOSTS: [Host; 3] = [Host::Native, Host::Component, Host::ComponentHostCrypto];

/// A fresh decider for `config` on `host`, with its own replay store.
pub fn decider(host: Host, config: &LoadedConfig) -> Box<dyn Decide> {
    decider_with(host, config, None)
}

/// A fresh decider for `config` on `host` whose `state` import follows `state`.
pub fn decider_with(host: Host, config: &LoadedConfig, state: Option<&HostStateSpec>) -> Box<dyn Decide> {
    match host {
        Host::Native => Box::new(Engine::new(&config.engine, Box::new(VectorState::new(state))).unwrap()),
        Host::Component | Host::ComponentHostCrypto => {
            let crypto = if host == Host::ComponentHostCrypto { agentgate::config::CryptoPlacement::Host } else { agentgate::config::CryptoPlacement::Guest };
            // A runtime per decider keeps replay stores apart between vectors. The vectors test
            // decisions, not latency: a generous budget keeps a loaded CI machine (a cold
            // instance building key tables while other tests run) from reading as a trap.
            let options = RuntimeOptions { crypto, call_timeout: std::time::Duration::from_secs(2), ..RuntimeOptions::default() };
            let rt = Runtime::new(options, Arc::new(VectorState::new(state))).unwrap();
            Box::new(rt.verifier(&config.engine).unwrap_or_else(|e| panic!("{}: {e}", config.path.display())))
        }
    }
}

/// Runs a vector on a host; returns every decision.
pub fn run_vector(vector: &Vector, host: Host) -> Vec<Decision> {
    let config = load_config(&vector.config);
    let mut d = decider_with(host, &config, vector.host_state.as_ref());
    if let Some(revocations) = &vector.revocations {
        d.set_revocations(&revocations.to_string()).unwrap();
    }
    vector.steps.iter().map(|s| d.decide(&s.request.to_check_request(None))).collect()
}

/// Checks a decision against an expectation; returns the mismatch, if any.
pub fn mismatch(expect: &Expect, d: &Decision) -> Option<String> {
    let decision = if d.allowed { "allow" } else { "deny" };
    let mut problems = Vec::new();
    if expect.decision != decision {
        problems.push(format!("decision `{decision}`, expected `{}`", expect.decision));
    }
    if expect.outcome != d.outcome.as_str() {
        problems.push(format!("outcome `{}`, expected `{}`", d.outcome, expect.outcome));
    }
    if let Some(phrase) = &expect.reason_contains
        && !d.reason.contains(phrase.as_str())
    {
        problems.push(format!("reason `{}` lacks `{phrase}`", d.reason));
    }
    if let Some(policies) = &expect.policies {
        let mut got = d.policies.clone();
        got.sort();
        if &got != policies {
            problems.push(format!("policies {got:?}, expected {policies:?}"));
        }
    }
    if let Some(nonce) = expect.dpop_nonce
        && d.dpop_nonce.is_some() != nonce
    {
        problems.push(format!("dpop_nonce {:?}, expected present={nonce}", d.dpop_nonce));
    }
    (!problems.is_empty()).then(|| format!("{} (reason: {})", problems.join("; "), d.reason))
}

/// A throw-away deployment: the mail demo's schema and policies with other trust material.
pub struct TempDeployment {
    pub dir: tempfile::TempDir,
    pub config: LoadedConfig,
}

/// Writes a config using the mail demo's policies, the given issuer JWKS and trust bundle, extra
/// top-level keys (`top_toml`, e.g. `revocations = "…"`) and extra tables (`tables_toml`).
pub fn mail_deployment(issuer: &str, jwks: &Value, bundle: Option<&Value>, top_toml: &str, tables_toml: &str) -> TempDeployment {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for entry in std::fs::read_dir(root().join("policies/mail")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.extension().is_some_and(|e| e == "cedar" || e == "cedarschema") {
            std::fs::copy(&path, policies.join(name)).unwrap();
        }
    }
    std::fs::write(dir.path().join("issuer.jwks.json"), jwks.to_string()).unwrap();
    std::fs::write(dir.path().join("revoked.json"), "{}").unwrap();
    let mut toml = format!(
        "audiences = [\"https://mail.example.com\"]\npolicies = \"policies\"\n{top_toml}\n\n[[issuers]]\nissuer = \"{issuer}\"\njwks = \"issuer.jwks.json\"\n"
    );
    if let Some(bundle) = bundle {
        std::fs::write(dir.path().join("bundle.json"), bundle.to_string()).unwrap();
        toml.push_str("\n[[trust_domains]]\ntrust_domain = \"agents.example\"\nbundle = \"bundle.json\"\n");
    }
    toml.push_str(tables_toml);
    let path = dir.path().join("agentgate.toml");
    std::fs::write(&path, toml).unwrap();
    let config = config::load(&path).unwrap();
    TempDeployment { dir, config }
}

/// Accepts every proof id and revokes nothing, so the same pre-signed requests can be decided
/// again and again (profiles and pool tests; never a deployment's state).
pub struct AcceptEveryProof;

impl agentgate::SharedState for AcceptEveryProof {
    fn remember_proof(&self, _proof: &agentgate_engine::ProofUse<'_>) -> agentgate_engine::ProofAnswer {
        agentgate_engine::ProofAnswer::Fresh
    }
    fn check_revoked(&self, _ids: &[String], _now: u64) -> agentgate_engine::RevocationAnswer {
        agentgate_engine::RevocationAnswer::Clear
    }
    fn status_list(&self, _uri: &str, _known_digest: Option<&str>) -> agentgate_engine::StatusListAnswer {
        agentgate_engine::StatusListAnswer::Unavailable("no status lists here".into())
    }
}
