//! The host's one WIT adapter: generated bindings for `agentgate:verifier`, the host side of the
//! imports (`replay`, `crypto`), and conversions between WIT and engine types.
//!
//! Bindings are generated for the `gate-accelerated` world. It is `gate` plus the `crypto` import,
//! so the same linker instantiates both components (a `gate` component simply ignores `crypto`).

use agentgate_engine::{CheckRequest, Decision, EngineConfig, Outcome, ReplayGuard};
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
use generated::agentgate::verifier::{crypto, replay, types as wit};
use generated::exports::agentgate::verifier::engine as wit_engine;

/// Per-store host state.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) replay: Arc<dyn ReplayGuard>,
    /// Proof keys accepted during the current batch (AuthZEN `evaluations` sharing one HTTP call's
    /// proof): a key seen again within the batch is not a replay.
    pub(crate) batch: Option<std::collections::HashSet<String>>,
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

impl replay::Host for HostState {
    fn remember(&mut self, key: String, expires_at: u64) -> bool {
        match &mut self.batch {
            Some(seen) if seen.contains(&key) => true,
            Some(seen) => {
                let fresh = self.replay.remember(&key, expires_at);
                if fresh {
                    seen.insert(key);
                }
                fresh
            }
            None => self.replay.remember(&key, expires_at),
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
    }
}
