//! The engine's port to state that outlives one call: single-use proof ids, the host's revocation
//! list and token status lists. A component instance cannot keep them (it may live for one call,
//! and a deployment may run on many nodes), so the host provides them; in the component this port
//! is the WIT `state` import.
//!
//! Every answer can be `Unavailable`: a host that cannot consult its store says so instead of
//! guessing, and the engine denies the call with `unavailable` (fail closed).

/// One use of a DPoP proof, remembered for its acceptance window (RFC 9449 §11.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofUse<'a> {
    /// RFC 7638 thumbprint of the proof key: hosts bound the live entries per key with it.
    pub key_thumbprint: &'a str,
    /// base64url SHA-256 of the proof's `jti`: fixed size, never the raw value.
    pub jti_hash: &'a str,
    /// Seconds from the engine's now during which the proof could still be accepted: the host
    /// keeps the entry at least that long, as a relative lifetime on its own clock.
    pub ttl_secs: u32,
}

/// What the host knows about a proof use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofAnswer {
    /// First use; it is now remembered.
    Fresh,
    /// Seen before within its window.
    Replayed,
    /// The key already has this many live proofs, the most the host allows one key.
    KeyLimit(u32),
    /// The store could not answer; why, without secrets.
    Unavailable(String),
}

/// What the host's revocation list says about a call's revocation ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationAnswer {
    /// None is revoked.
    Clear,
    /// The id at this index is revoked.
    Revoked(usize),
    /// The list could not be consulted.
    Unavailable(String),
}

/// What the host has for a token status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusListAnswer {
    /// The token whose digest the engine sent is still current.
    Unchanged,
    /// The current Status List Token (compact JWS), unverified.
    Current(String),
    /// No usable list; why.
    Unavailable(String),
}

/// State provided by the host. Implementations must be atomic where the WIT says so: two calls
/// racing on one proof, on any node, get exactly one `Fresh`.
pub trait SharedState: Send + Sync {
    /// Remembers a proof use (check and insert in one step).
    fn remember_proof(&self, proof: &ProofUse<'_>) -> ProofAnswer;

    /// Looks up revocation ids (canonical ids, `revocation::RevocationId`) in the host's list.
    fn check_revoked(&self, ids: &[String], now: u64) -> RevocationAnswer;

    /// The Status List Token at `uri`; `known_digest` is the digest of the one the engine holds.
    fn status_list(&self, uri: &str, known_digest: Option<&str>) -> StatusListAnswer;
}

mod proof_memory;
pub use proof_memory::{ProofLimits, ProofMemory};
