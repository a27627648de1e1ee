//! The one WIT adapter: exports the engine through `agentgate:verifier/engine` and implements the
//! engine's ports (shared state, optionally signature verification) with the world's imports. All
//! conversions between WIT types and domain types happen here and nowhere else.

#[cfg(not(feature = "host-crypto"))]
wit_bindgen::generate!({ path: "../wit", world: "gate" });
#[cfg(feature = "host-crypto")]
wit_bindgen::generate!({ path: "../wit", world: "gate-accelerated" });

use crate::state::{ProofAnswer, ProofUse, RevocationAnswer, SharedState, StatusListAnswer};
use crate::{CheckRequest, Credentials, Engine, EngineConfig, EntityRef, HttpRequest, Outcome, SourceText};
use agentgate::verifier::types as wit;
use exports::agentgate::verifier::engine as wit_engine;
use std::sync::{Arc, Mutex};

struct Component;

/// The engine built by `preload`, captured in the instance's memory when it is snapshotted.
static PRELOADED: Mutex<Option<Arc<Engine>>> = Mutex::new(None);

impl Guest for Component {
    fn preload(config_json: String) -> Result<(), String> {
        let config: EngineConfig = serde_json::from_str(&config_json).map_err(|e| format!("preload: the config JSON is invalid: {e}"))?;
        let engine = build_engine(config)?;
        engine.warm_up();
        let mut slot = PRELOADED.lock().map_err(|_| "preload: lock poisoned".to_owned())?;
        *slot = Some(Arc::new(engine));
        Ok(())
    }
}

impl wit_engine::Guest for Component {
    type Verifier = ComponentVerifier;
}

/// The exported `verifier` resource: one engine (shared with other handles when preloaded).
struct ComponentVerifier {
    engine: Arc<Engine>,
}

/// The deployment's state, provided by the host through the `state` import.
struct HostState;

impl SharedState for HostState {
    fn remember_proof(&self, proof: &ProofUse<'_>) -> ProofAnswer {
        use agentgate::verifier::state as wit_state;
        let answer = wit_state::remember_proof(&wit_state::ProofUse {
            key_thumbprint: proof.key_thumbprint.to_owned(),
            jti_hash: proof.jti_hash.to_owned(),
            ttl_secs: proof.ttl_secs,
        });
        match answer {
            wit_state::ProofAnswer::Fresh => ProofAnswer::Fresh,
            wit_state::ProofAnswer::Replayed => ProofAnswer::Replayed,
            wit_state::ProofAnswer::KeyLimit(n) => ProofAnswer::KeyLimit(n),
            wit_state::ProofAnswer::Unavailable(why) => ProofAnswer::Unavailable(why),
        }
    }

    fn check_revoked(&self, ids: &[String], now: u64) -> RevocationAnswer {
        use agentgate::verifier::state as wit_state;
        match wit_state::check_revoked(ids, now) {
            wit_state::RevocationAnswer::Clear => RevocationAnswer::Clear,
            // An index outside the query is a broken host: name no id, but deny.
            wit_state::RevocationAnswer::Revoked(i) => RevocationAnswer::Revoked(usize::try_from(i).unwrap_or(usize::MAX)),
            wit_state::RevocationAnswer::Unavailable(why) => RevocationAnswer::Unavailable(why),
        }
    }

    fn status_list(&self, uri: &str, known_digest: Option<&str>) -> StatusListAnswer {
        use agentgate::verifier::state as wit_state;
        match wit_state::status_list(uri, known_digest) {
            wit_state::StatusListAnswer::Unchanged => StatusListAnswer::Unchanged,
            wit_state::StatusListAnswer::Current(token) => StatusListAnswer::Current(token),
            wit_state::StatusListAnswer::Unavailable(why) => StatusListAnswer::Unavailable(why),
        }
    }
}

#[cfg(feature = "host-crypto")]
struct HostCrypto;

#[cfg(feature = "host-crypto")]
impl crate::jose::es256::SignatureVerifier for HostCrypto {
    fn verify(&self, key: &crate::jose::es256::PublicKey, message: &[u8], signature: &crate::jose::es256::Es256Signature) -> bool {
        agentgate::verifier::crypto::verify_es256(key.sec1(), message, signature.raw())
    }
}

fn build_engine(config: EngineConfig) -> Result<Engine, String> {
    #[cfg(feature = "host-crypto")]
    return Engine::with_verifier(&config, Box::new(HostState), Box::new(HostCrypto));
    #[cfg(not(feature = "host-crypto"))]
    return Engine::new(&config, Box::new(HostState));
}

impl wit_engine::GuestVerifier for ComponentVerifier {
    fn create(config: wit_engine::Config) -> Result<wit_engine::Verifier, String> {
        let source = |f: wit_engine::SourceFile| SourceText { name: f.name, text: f.text };
        let config = EngineConfig {
            policies: config.policies.into_iter().map(source).collect(),
            schema: source(config.schema),
            settings_json: config.settings_json,
            trust_json: config.trust_json,
            revocations_json: config.revocations_json,
        };
        let engine = build_engine(config)?;
        Ok(wit_engine::Verifier::new(ComponentVerifier { engine: Arc::new(engine) }))
    }

    fn preloaded() -> Result<wit_engine::Verifier, String> {
        let slot = PRELOADED.lock().map_err(|_| "lock poisoned".to_owned())?;
        let engine = slot.as_ref().ok_or("no verifier was preloaded into this component")?;
        Ok(wit_engine::Verifier::new(ComponentVerifier { engine: Arc::clone(engine) }))
    }

    fn warm_up(&self) {
        self.engine.warm_up();
    }

    fn check(&self, request: wit::CheckRequest) -> wit::Decision {
        let decision = self.engine.check(&from_wit(request));
        to_wit(decision)
    }

    fn check_recorded(&self, request: wit::CheckRequest) -> wit_engine::RecordedDecision {
        let (decision, call) = self.engine.check_recorded(&from_wit(request));
        // Serializing plain strings and numbers cannot fail; were it to, the decision stands
        // and the host logs the call as unrecorded.
        let call_json = call.and_then(|c| serde_json::to_string(&c).ok());
        wit_engine::RecordedDecision { decision: to_wit(decision), call_json }
    }

    fn visible_tools(&self, request: wit::CheckRequest, tools: Vec<String>) -> Result<Vec<bool>, wit::Decision> {
        self.engine.visible_tools(&from_wit(request), &tools).map_err(|d| to_wit(*d))
    }

    fn set_revocations(&self, revocations_json: String) -> Result<u32, String> {
        let count = self.engine.set_revocations(&revocations_json)?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }
}

fn from_wit(r: wit::CheckRequest) -> CheckRequest {
    CheckRequest {
        credentials: Credentials { authorization: r.credentials.authorization, dpop: r.credentials.dpop, agent_identity: r.credentials.agent_identity },
        http: r.http.map(|h| HttpRequest { method: h.method, uri: h.uri }),
        action: r.action,
        resource: EntityRef { type_name: r.resource.type_name, id: r.resource.id },
        context_json: r.context_json,
        entities_json: r.entities_json,
        now: r.now,
    }
}

fn to_wit(d: crate::Decision) -> wit::Decision {
    wit::Decision {
        allowed: d.allowed,
        outcome: outcome_to_wit(d.outcome),
        reason: d.reason,
        determining_policies: d.policies,
        policy_errors: d.errors,
        principal: d.principal,
        on_behalf_of: d.user,
        chain: d.chain,
        token_id: d.token_id,
        key_thumbprint: d.key_thumbprint,
        dpop_nonce: d.dpop_nonce,
        required_scope: d.required_scope,
    }
}

fn outcome_to_wit(o: Outcome) -> wit::Outcome {
    match o {
        Outcome::Allowed => wit::Outcome::Allowed,
        Outcome::PolicyDenied => wit::Outcome::PolicyDenied,
        Outcome::InvalidRequest => wit::Outcome::InvalidRequest,
        Outcome::InvalidToken => wit::Outcome::InvalidToken,
        Outcome::InvalidDpopProof => wit::Outcome::InvalidDpopProof,
        Outcome::UseDpopNonce => wit::Outcome::UseDpopNonce,
        Outcome::Revoked => wit::Outcome::Revoked,
        Outcome::Replayed => wit::Outcome::Replayed,
        Outcome::EngineError => wit::Outcome::EngineError,
        Outcome::Unavailable => wit::Outcome::Unavailable,
        Outcome::RateLimited => wit::Outcome::RateLimited,
        Outcome::InsufficientScope => wit::Outcome::InsufficientScope,
    }
}

export!(Component);
