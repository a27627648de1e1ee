//! The host's one WIT adapter: generated bindings for `agentgate:verifier`, the host side of the
//! imports (`state`, `crypto`), and conversions between WIT and engine types.
//!
//! Bindings are generated for the `gate-accelerated` world. It is `gate` plus the `crypto` import,
//! so the same linker instantiates both components (a `gate` component simply ignores `crypto`).

use agentgate_engine::state::{ProofAnswer, ProofUse, RevocationAnswer, SharedState, StatusListAnswer};
use agentgate_engine::{CheckRequest, Decision, EngineConfig, Outcome};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, component::HasSelf};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod generated {
    #![allow(missing_docs, missing_debug_implementations, clippy::all)]
    wasmtime::component::bindgen!({ path: "../wit", world: "gate-accelerated" });
}

pub use generated::GateAccelerated as Gate;
pub use generated::GateAcceleratedPre as GatePre;
use generated::agentgate::verifier::{crypto, state as wit_state, types as wit};
use generated::exports::agentgate::verifier::engine as wit_engine;

/// Per-store host state.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) imports: StateImports,
}

/// The host side of the `state` import: the deployment's shared state, plus the proofs of the
/// batch under way.
pub struct StateImports {
    state: Arc<dyn SharedState>,
    /// Proofs accepted during the current batch (AuthZEN `evaluations` sharing one HTTP call's
    /// proof), by key thumbprint and `jti` hash: a proof seen again within the batch is not a replay.
    pub(crate) batch: Option<std::collections::HashSet<(String, String)>>,
    /// Store round trips may block for their timeout: inside an async host (the gateway), tell
    /// tokio so it moves other tasks off this thread.
    blocking_hint: bool,
}

impl std::fmt::Debug for StateImports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateImports").finish_non_exhaustive()
    }
}

impl StateImports {
    /// The imports of a synchronous host (the decision pool).
    pub fn new(state: Arc<dyn SharedState>) -> Self {
        StateImports { state, batch: None, blocking_hint: false }
    }

    /// The imports of a host running on a multi-threaded tokio runtime.
    pub fn on_tokio(state: Arc<dyn SharedState>) -> Self {
        StateImports { state, batch: None, blocking_hint: true }
    }

    fn call<T>(&self, op: impl FnOnce(&dyn SharedState) -> T) -> T {
        if self.blocking_hint { tokio::task::block_in_place(|| op(self.state.as_ref())) } else { op(self.state.as_ref()) }
    }
}

/// Adds the `agentgate:verifier/state` import alone to a linker (the gateway's world).
pub fn add_state_to_linker<T: 'static>(linker: &mut wasmtime::component::Linker<T>, get: fn(&mut T) -> &mut StateImports) -> wasmtime::Result<()> {
    wit_state::add_to_linker::<T, HasSelf<StateImports>>(linker, get)
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState").finish_non_exhaustive()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wit::Host for HostState {}

impl wit_state::Host for HostState {
    fn remember_proof(&mut self, proof: wit_state::ProofUse) -> wit_state::ProofAnswer {
        self.imports.remember_proof(proof)
    }

    fn check_revoked(&mut self, ids: Vec<String>, now: u64) -> wit_state::RevocationAnswer {
        self.imports.check_revoked(ids, now)
    }

    fn status_list(&mut self, uri: String, known_digest: Option<String>) -> wit_state::StatusListAnswer {
        self.imports.status_list(uri, known_digest)
    }
}

impl wit_state::Host for StateImports {
    fn remember_proof(&mut self, proof: wit_state::ProofUse) -> wit_state::ProofAnswer {
        let id = (proof.key_thumbprint, proof.jti_hash);
        if self.batch.as_ref().is_some_and(|seen| seen.contains(&id)) {
            return wit_state::ProofAnswer::Fresh;
        }
        let answer = self.call(|state| state.remember_proof(&ProofUse { key_thumbprint: &id.0, jti_hash: &id.1, ttl_secs: proof.ttl_secs }));
        if answer == ProofAnswer::Fresh
            && let Some(seen) = &mut self.batch
        {
            seen.insert(id);
        }
        match answer {
            ProofAnswer::Fresh => wit_state::ProofAnswer::Fresh,
            ProofAnswer::Replayed => wit_state::ProofAnswer::Replayed,
            ProofAnswer::KeyLimit(n) => wit_state::ProofAnswer::KeyLimit(n),
            ProofAnswer::Unavailable(why) => wit_state::ProofAnswer::Unavailable(why),
        }
    }

    fn check_revoked(&mut self, ids: Vec<String>, now: u64) -> wit_state::RevocationAnswer {
        match self.call(|state| state.check_revoked(&ids, now)) {
            RevocationAnswer::Clear => wit_state::RevocationAnswer::Clear,
            RevocationAnswer::Revoked(i) => wit_state::RevocationAnswer::Revoked(u32::try_from(i).unwrap_or(u32::MAX)),
            RevocationAnswer::Unavailable(why) => wit_state::RevocationAnswer::Unavailable(why),
        }
    }

    fn status_list(&mut self, uri: String, known_digest: Option<String>) -> wit_state::StatusListAnswer {
        match self.call(|state| state.status_list(&uri, known_digest.as_deref())) {
            StatusListAnswer::Unchanged => wit_state::StatusListAnswer::Unchanged,
            StatusListAnswer::Current(token) => wit_state::StatusListAnswer::Current(token),
            StatusListAnswer::Unavailable(why) => wit_state::StatusListAnswer::Unavailable(why),
        }
    }
}

impl crypto::Host for HostState {
    fn verify_es256(&mut self, public_key: Vec<u8>, message: Vec<u8>, signature: Vec<u8>) -> bool {
        crate::native_crypto::verify_es256(&public_key, &message, &signature)
    }
}

/// Adds the `agentgate:verifier` imports to a linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    Gate::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

/// The `config` record of the WIT interface.
pub type WitConfig = wit_engine::Config;

pub(crate) fn config_to_wit(config: &EngineConfig) -> wit_engine::Config {
    let file = |f: &agentgate_engine::SourceText| wit_engine::SourceFile { name: f.name.clone(), text: f.text.clone() };
    wit_engine::Config {
        policies: config.policies.iter().map(file).collect(),
        schema: file(&config.schema),
        settings_json: config.settings_json.clone(),
        trust_json: config.trust_json.clone(),
        revocations_json: config.revocations_json.clone(),
    }
}

pub(crate) fn request_to_wit(r: &CheckRequest) -> wit::CheckRequest {
    wit::CheckRequest {
        credentials: wit::Credentials {
            authorization: r.credentials.authorization.clone(),
            dpop: r.credentials.dpop.clone(),
            agent_identity: r.credentials.agent_identity.clone(),
        },
        http: r.http.as_ref().map(|h| wit::HttpRequest { method: h.method.clone(), uri: h.uri.clone() }),
        action: r.action.clone(),
        resource: wit::EntityRef { type_name: r.resource.type_name.clone(), id: r.resource.id.clone() },
        context_json: r.context_json.clone(),
        entities_json: r.entities_json.clone(),
        now: r.now,
    }
}

pub(crate) fn decision_from_wit(d: wit::Decision) -> Decision {
    let outcome = match d.outcome {
        wit::Outcome::Allowed => Outcome::Allowed,
        wit::Outcome::PolicyDenied => Outcome::PolicyDenied,
        wit::Outcome::InvalidRequest => Outcome::InvalidRequest,
        wit::Outcome::InvalidToken => Outcome::InvalidToken,
        wit::Outcome::InvalidDpopProof => Outcome::InvalidDpopProof,
        wit::Outcome::UseDpopNonce => Outcome::UseDpopNonce,
        wit::Outcome::Revoked => Outcome::Revoked,
        wit::Outcome::Replayed => Outcome::Replayed,
        wit::Outcome::EngineError => Outcome::EngineError,
        wit::Outcome::Unavailable => Outcome::Unavailable,
        wit::Outcome::RateLimited => Outcome::RateLimited,
        wit::Outcome::InsufficientScope => Outcome::InsufficientScope,
    };
    Decision {
        // Trust nothing but `allowed` + `Allowed` together: a component that reports one without the
        // other is broken, and a broken component denies.
        allowed: d.allowed && outcome == Outcome::Allowed,
        outcome,
        reason: d.reason,
        policies: d.determining_policies,
        errors: d.policy_errors,
        principal: d.principal,
        user: d.on_behalf_of,
        chain: d.chain,
        token_id: d.token_id,
        key_thumbprint: d.key_thumbprint,
        dpop_nonce: d.dpop_nonce,
        required_scope: d.required_scope,
    }
}
