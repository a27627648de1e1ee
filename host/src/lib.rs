//! agentgate's host: runs the decision component under wasmtime, reads configuration, and offers
//! the CLI and HTTP service. The engine itself lives in the component (`agentgate-engine`).

pub mod analyze;
pub mod component;
pub mod config;
pub mod decision_log;
pub mod gateway;
pub mod jwks_fetch;
pub mod mint;
pub mod native_crypto;
pub mod policy_test;
pub mod receipts;
pub mod scenario;
pub mod server;
pub mod state;
pub mod validate;
pub mod wire;

pub use agentgate_engine::{CheckRequest, Decision, Engine, EngineConfig, Outcome, SharedState};
pub use component::{ComponentVerifier, Runtime, RuntimeOptions, VerifierError};

/// Anything that decides calls: the component under wasmtime or the native engine. Tests and
/// benches run the same requests through each.
pub trait Decide {
    /// Decides one call.
    fn decide(&mut self, request: &CheckRequest) -> Decision;
    /// Decides one call and gives the call as authorized when it reached the policies (for the
    /// decision log).
    fn decide_recorded(&mut self, request: &CheckRequest) -> (Decision, Option<agentgate_engine::recorded::RecordedCall>);
    /// Replaces the revocation list; returns the number of entries in force.
    fn set_revocations(&mut self, json: &str) -> Result<usize, String>;
}

impl Decide for ComponentVerifier {
    fn decide(&mut self, request: &CheckRequest) -> Decision {
        self.check(request)
    }
    fn decide_recorded(&mut self, request: &CheckRequest) -> (Decision, Option<agentgate_engine::recorded::RecordedCall>) {
        self.check_recorded(request)
    }
    fn set_revocations(&mut self, json: &str) -> Result<usize, String> {
        ComponentVerifier::set_revocations(self, json).map(|n| n as usize)
    }
}

impl Decide for Engine {
    fn decide(&mut self, request: &CheckRequest) -> Decision {
        self.check(request)
    }
    fn decide_recorded(&mut self, request: &CheckRequest) -> (Decision, Option<agentgate_engine::recorded::RecordedCall>) {
        self.check_recorded(request)
    }
    fn set_revocations(&mut self, json: &str) -> Result<usize, String> {
        Engine::set_revocations(self, json)
    }
}
