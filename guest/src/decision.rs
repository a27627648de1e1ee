//! The answer to one call: an outcome from a fixed list, a human reason, and what was verified.

use serde::{Deserialize, Serialize};

/// Why a call was allowed or denied. The snake_case names are stable API: decision JSON, audit
/// lines, metrics and the HTTP mapping all use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Every check passed and a policy permits the call.
    Allowed,
    /// Credentials are valid, but no policy permits the call or a `forbid` applies.
    PolicyDenied,
    /// The request itself is malformed.
    InvalidRequest,
    /// The access token or the agent identity token is missing, malformed, expired or untrusted.
    InvalidToken,
    /// The DPoP proof is missing, malformed, or does not match the request or the token's key.
    InvalidDpopProof,
    /// The proof lacks the current server nonce.
    UseDpopNonce,
    /// The token, user, an agent of the chain or the proof key is revoked.
    Revoked,
    /// The proof's `jti` was already used.
    Replayed,
    /// The engine failed: set by hosts for a trap or an exhausted budget, and by the engine for an
    /// internal failure (a clock before 1970, a poisoned lock).
    EngineError,
    /// State the decision depends on (replay store, revocation list, status list) could not be
    /// consulted; the call is denied rather than decided on a guess.
    Unavailable,
    /// The proof key has as many live proofs as the host allows one key.
    RateLimited,
    /// Credentials are valid, but the token lacks a scope that a permitting policy asks for
    /// (`@scope`); the decision names it (`required_scope`) so the client can step up.
    InsufficientScope,
}

impl Outcome {
    /// Every outcome, in the documented order.
    pub const ALL: [Outcome; 12] = [
        Outcome::Allowed,
        Outcome::PolicyDenied,
        Outcome::InvalidRequest,
        Outcome::InvalidToken,
        Outcome::InvalidDpopProof,
        Outcome::UseDpopNonce,
        Outcome::Revoked,
        Outcome::Replayed,
        Outcome::EngineError,
        Outcome::Unavailable,
        Outcome::RateLimited,
        Outcome::InsufficientScope,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::PolicyDenied => "policy_denied",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::InvalidToken => "invalid_token",
            Outcome::InvalidDpopProof => "invalid_dpop_proof",
            Outcome::UseDpopNonce => "use_dpop_nonce",
            Outcome::Revoked => "revoked",
            Outcome::Replayed => "replayed",
            Outcome::EngineError => "engine_error",
            Outcome::Unavailable => "unavailable",
            Outcome::RateLimited => "rate_limited",
            Outcome::InsufficientScope => "insufficient_scope",
        }
    }

    /// Parses a stable name back into an outcome.
    pub fn from_name(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A denial before or instead of policy evaluation: the outcome and a human reason.
///
/// Reasons are lowercase, carry values in backticks and never contain a raw credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The machine-readable outcome (never `Allowed`).
    pub outcome: Outcome,
    /// What exactly was wrong.
    pub reason: String,
    /// A fresh DPoP nonce, with `UseDpopNonce`.
    pub dpop_nonce: Option<String>,
}

impl Denial {
    /// A denial with `outcome` and `reason`.
    pub fn new(outcome: Outcome, reason: impl Into<String>) -> Self {
        Denial { outcome, reason: reason.into(), dpop_nonce: None }
    }
    /// `invalid_request`.
    pub fn request(reason: impl Into<String>) -> Self {
        Denial::new(Outcome::InvalidRequest, reason)
    }
    /// `invalid_token`.
    pub fn token(reason: impl Into<String>) -> Self {
        Denial::new(Outcome::InvalidToken, reason)
    }
    /// `invalid_dpop_proof`.
    pub fn proof(reason: impl Into<String>) -> Self {
        Denial::new(Outcome::InvalidDpopProof, reason)
    }
}

/// The decision for one call, as returned through every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// True only when `outcome` is `Allowed`.
    pub allowed: bool,
    /// The machine-readable outcome.
    pub outcome: Outcome,
    /// A human-readable reason.
    pub reason: String,
    /// Ids of the policies that determined the decision.
    pub policies: Vec<String>,
    /// Errors raised while evaluating policies.
    pub errors: Vec<String>,
    /// Cedar principal (`Agent::"id"` or `User::"id"`), once the token is verified.
    pub principal: Option<String>,
    /// The user the call is made for (the token's `sub`).
    pub user: Option<String>,
    /// Delegation chain, current actor first.
    pub chain: Vec<String>,
    /// The access token's `jti`.
    pub token_id: Option<String>,
    /// RFC 7638 thumbprint of the proof key (`cnf.jkt`), for bound calls.
    pub key_thumbprint: Option<String>,
    /// A fresh DPoP nonce the client must use.
    pub dpop_nonce: Option<String>,
    /// With `InsufficientScope`: the token scope that would permit the call.
    pub required_scope: Option<String>,
}

impl Decision {
    /// A deny built from a denial, with whatever was verified before it happened.
    pub fn denied(denial: Denial, verified: VerifiedFacts) -> Self {
        Decision { outcome: denial.outcome, reason: denial.reason, dpop_nonce: denial.dpop_nonce, ..Decision::from_facts(verified) }
    }

    /// The decision of the policies' answer for a call whose credentials gave `verified` (or of
    /// the denial that stopped it before or at the policies).
    pub(crate) fn of_answer(answer: Result<crate::authorizer::PolicyAnswer, Denial>, verified: VerifiedFacts) -> Self {
        match answer {
            Ok(answer) => Decision {
                allowed: answer.allowed,
                outcome: match (answer.allowed, &answer.required_scope) {
                    (true, _) => Outcome::Allowed,
                    (false, Some(_)) => Outcome::InsufficientScope,
                    (false, None) => Outcome::PolicyDenied,
                },
                reason: answer.reason,
                policies: answer.policies,
                errors: answer.errors,
                required_scope: answer.required_scope,
                ..Decision::from_facts(verified)
            },
            Err(denial) => Decision::denied(denial, verified),
        }
    }

    /// An `engine_error` deny, used by hosts when the component fails.
    pub fn engine_error(reason: impl Into<String>) -> Self {
        Decision { reason: reason.into(), ..Decision::from_facts(VerifiedFacts::default()) }
    }

    /// A decision carrying `facts`, denied with `engine_error` until the caller says otherwise.
    pub(crate) fn from_facts(facts: VerifiedFacts) -> Self {
        Decision {
            allowed: false,
            outcome: Outcome::EngineError,
            reason: String::new(),
            policies: Vec::new(),
            errors: Vec::new(),
            principal: facts.principal,
            user: facts.user,
            chain: facts.chain,
            token_id: facts.token_id,
            key_thumbprint: facts.key_thumbprint,
            dpop_nonce: None,
            required_scope: None,
        }
    }
}

/// What the engine has verified so far; carried into the decision and the audit line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifiedFacts {
    /// Cedar principal.
    pub principal: Option<String>,
    /// User (`sub`).
    pub user: Option<String>,
    /// Delegation chain, current actor first.
    pub chain: Vec<String>,
    /// Token `jti`.
    pub token_id: Option<String>,
    /// Proof key thumbprint.
    pub key_thumbprint: Option<String>,
}
