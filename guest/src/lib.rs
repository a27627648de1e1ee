//! agentgate's decision engine.
//!
//! Verifies the credentials an AI agent presents on one call — an ES256 access token delegated by
//! a user (RFC 9068, RFC 8693 `act`), a DPoP proof (RFC 9449), an optional workload identity
//! (WIMSE WIT / SPIFFE JWT-SVID) — and authorizes the action with Cedar policies.
//!
//! Plain Rust, no WIT or wasmtime types: `component` is the one adapter that exports this engine
//! through the WIT interface when built for `wasm32-wasip2`. Natively it is an rlib used by the
//! host, the tests and the benches.

// PANIC SAFETY: tests may unwrap; the engine itself may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod access_token;
pub mod authorizer;
pub mod claims;
pub mod decision;
pub mod delegation;
pub mod dpop;
pub mod engine;
pub mod http_answer;
pub mod identity;
pub mod jose;
pub mod mcp;
pub mod nonce;
pub mod recorded;
pub mod request;
pub mod revocation;
pub mod routing;
pub mod settings;
pub mod spiffe;
pub mod state;
pub mod status_list;
pub mod token_cache;
pub mod trust;

// The generated bindings export `#[unsafe(no_mangle)]` entry points.
#[cfg(all(target_arch = "wasm32", feature = "component"))]
#[allow(unsafe_code)]
mod component;

pub use authorizer::SourceText;
pub use decision::{Decision, Denial, Outcome, VerifiedFacts};
pub use engine::{Engine, EngineConfig, Trace};
pub use request::{CheckRequest, Credentials, EntityRef, HttpRequest};
pub use settings::{DpopMode, Settings};
pub use state::{ProofAnswer, ProofUse, RevocationAnswer, SharedState, StatusListAnswer};
pub use trust::TrustConfig;
