//! Shared bench fixture: the mail demo, its TEST-ONLY keys, and calls with fresh proofs.

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

use agentgate::config::{self, CryptoPlacement, LoadedConfig};
use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate::state::LocalState;
use agentgate::{CheckRequest, ComponentVerifier, Engine, Runtime, RuntimeOptions};
use agentgate_engine::state::ProofLimits;
use agentgate_engine::{Credentials, EntityRef, HttpRequest};
use std::path::PathBuf;
use std::sync::Arc;

pub const URI: &str = "https://mail.example.com/mailboxes/alice/messages";
pub const ENTITIES: &str = r#"[{"uid":{"type":"Mailbox","id":"alice"},"attrs":{"owner":{"__entity":{"type":"User","id":"alice"}}},"parents":[]}]"#;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn key(name: &str) -> KeyPair {
    KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys").join(name)).unwrap()).unwrap()
}

pub struct Fixture {
    pub config: LoadedConfig,
    pub issuer: KeyPair,
    pub agent: KeyPair,
    pub token: String,
    pub shape: CallShape,
}

/// Who calls what: the token's facts and the request (the mail demo's by default).
#[derive(Debug, Clone)]
pub struct CallShape {
    pub user: String,
    pub actor: String,
    pub scopes: Vec<String>,
    pub audience: String,
    pub uri: String,
    pub action: String,
    pub resource: EntityRef,
    pub entities: String,
}

impl CallShape {
    /// alice's mail assistant reading her mailbox.
    pub fn mail() -> Self {
        CallShape {
            user: "alice".into(),
            actor: "spiffe://agents.example/mail-assistant".into(),
            scopes: vec!["mail.read".into()],
            audience: "https://mail.example.com".into(),
            uri: URI.into(),
            action: "mail:read".into(),
            resource: EntityRef { type_name: "Mailbox".into(), id: "alice".into() },
            entities: ENTITIES.into(),
        }
    }
}

impl Fixture {
    pub fn mail() -> Self {
        Fixture::with_config(config::load(&root().join("policies/mail/agentgate.toml")).unwrap())
    }

    pub fn with_config(config: LoadedConfig) -> Self {
        Fixture::with_shape(config, CallShape::mail())
    }

    pub fn with_shape(config: LoadedConfig, shape: CallShape) -> Self {
        let issuer = key("issuer.TEST-ONLY.private.jwk.json");
        let agent = key("agent.TEST-ONLY.private.jwk.json");
        let mut f = Fixture { config, issuer, agent, token: String::new(), shape };
        f.token = f.mint_token();
        f
    }

    /// A fresh bound token for the shape's agent (alice's assistant), valid for an hour.
    pub fn mint_token(&self) -> String {
        let s = &self.shape;
        let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", &s.user, &s.audience);
        spec.scopes = s.scopes.clone();
        spec.actors = vec![s.actor.clone()];
        spec.lifetime_secs = 3600;
        spec.bound_key = Some(self.agent.thumbprint());
        spec.sign(&self.issuer)
    }

    /// A call with `token` and a fresh proof (minted outside the timed section).
    pub fn call_with(&self, token: &str) -> CheckRequest {
        let s = &self.shape;
        let proof = mint::dpop_proof(&self.agent, "GET", &s.uri, token, mint::now(), None);
        CheckRequest {
            credentials: Credentials { authorization: Some(format!("DPoP {token}")), dpop: Some(proof), agent_identity: None },
            http: Some(HttpRequest { method: "GET".into(), uri: s.uri.clone() }),
            action: s.action.clone(),
            resource: s.resource.clone(),
            context_json: None,
            entities_json: Some(s.entities.clone()),
            now: None,
        }
    }

    /// The repeated-token call: the fixture's token, a fresh proof.
    pub fn call(&self) -> CheckRequest {
        self.call_with(&self.token)
    }

    /// A first-seen call: a fresh token and a fresh proof.
    pub fn fresh_call(&self) -> CheckRequest {
        self.call_with(&self.mint_token())
    }

    /// The native engine, warmed up (issuer tables built) and with the agent key learned.
    pub fn native(&self) -> Engine {
        let engine = Engine::new(&self.config.engine, Box::new(roomy_state())).unwrap();
        engine.warm_up();
        for _ in 0..3 {
            assert!(engine.check(&self.call()).allowed);
        }
        engine
    }

    /// A component verifier in a long-lived instance, warmed up likewise.
    pub fn component(&self, crypto: CryptoPlacement) -> ComponentVerifier {
        self.component_with(RuntimeOptions { crypto, ..RuntimeOptions::default() })
    }

    /// A component verifier deciding through `state` (a deployment's state, e.g. on Redis),
    /// warmed up likewise: the proofs of the warm-up calls go to `state` too.
    pub fn component_on(&self, crypto: CryptoPlacement, state: Arc<dyn agentgate::SharedState>) -> ComponentVerifier {
        self.component_with_state(RuntimeOptions { crypto, ..RuntimeOptions::default() }, state)
    }

    pub fn component_with(&self, options: RuntimeOptions) -> ComponentVerifier {
        self.component_with_state(options, Arc::new(roomy_state()))
    }

    pub fn component_with_state(&self, options: RuntimeOptions, state: Arc<dyn agentgate::SharedState>) -> ComponentVerifier {
        let runtime = Runtime::new(options, state).unwrap();
        let mut verifier = runtime.verifier(&self.config.engine).unwrap();
        verifier.warm_up().unwrap();
        for _ in 0..3 {
            let d = verifier.check(&self.call());
            assert!(d.allowed, "{d:?}");
        }
        verifier
    }
}

/// The in-memory deployment state with room for every proof a bench makes: a run decides hundreds
/// of thousands of calls with one agent key, and the default bound (10,000 live proofs per key)
/// would refuse them as a flood.
pub fn roomy_state() -> LocalState {
    LocalState::with_limits(ProofLimits { capacity: 10_000_000, per_key: 10_000_000 })
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

/// What `DeploymentState` itself timed around each `remember_proof` inside checks
/// (warm-ups included), from its `/metrics` histogram: the store's share of a check.
pub fn store_round_trips(metrics: &agentgate::state::StoreMetrics, backend: &str) -> String {
    let mut text = String::new();
    metrics.render(backend, &mut text);
    let value = |name: &str| -> f64 { text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0) };
    let count = value(&format!("agentgate_store_round_trip_seconds_count{{backend=\"{backend}\"}}"));
    let sum = value(&format!("agentgate_store_round_trip_seconds_sum{{backend=\"{backend}\"}}"));
    let share = |le: &str| 100.0 * value(&format!("agentgate_store_round_trip_seconds_bucket{{backend=\"{backend}\",le=\"{le}\"}}")) / count.max(1.0);
    format!(
        "{count} store round trips inside the checks, mean {:.1} µs; ≤ 50 µs: {:.0} %, ≤ 100 µs: {:.0} %, ≤ 250 µs: {:.0} %, ≤ 500 µs: {:.0} %",
        sum / count.max(1.0) * 1e6,
        share("0.00005"),
        share("0.0001"),
        share("0.00025"),
        share("0.0005"),
    )
}
