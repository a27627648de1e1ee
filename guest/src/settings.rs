//! Verification settings: what this service accepts. Parsed from the host's `settings-json`.

use serde::{Deserialize, Serialize};

/// Everything configurable about verification, apart from trust material and policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Audience values that identify this service; a token's `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// Time and size limits.
    #[serde(default)]
    pub limits: Limits,
    /// Proof-of-possession requirements.
    #[serde(default)]
    pub dpop: DpopSettings,
    /// Agent workload identity requirements.
    #[serde(default)]
    pub identity: IdentitySettings,
    /// Evaluate only the policies whose scope can match a call (`authorizer/index.rs`). Off, every
    /// call evaluates every policy: the same answers, slower with many policies. A switch for
    /// ruling the index out, and the reference of the differential tests.
    #[serde(default = "default_policy_index")]
    pub policy_index: bool,
}

fn default_policy_index() -> bool {
    true
}

/// Time and size limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Leeway for `exp`, `nbf` and `iat` of tokens (RFC 7519 §4.1.4: "a few minutes" at most).
    pub clock_skew_secs: u64,
    /// Longest accepted `exp - iat` of an access token.
    pub max_token_lifetime_secs: u64,
    /// Most actors accepted in a nested `act` chain.
    pub max_delegation_depth: u32,
    /// Largest accepted credential (token, proof, identity), in bytes.
    pub max_token_bytes: usize,
    /// Largest accepted caller `context` JSON, in bytes.
    pub max_context_bytes: usize,
    /// Largest accepted caller `entities` JSON, in bytes.
    pub max_entities_bytes: usize,
    /// Verified access tokens kept per engine, so a repeated token skips its signature check
    /// (0 disables the cache).
    pub token_cache_entries: usize,
    /// Largest accepted Status List Token, in bytes.
    pub max_status_list_token_bytes: usize,
    /// Largest accepted status list once inflated, in bytes (a compressed list that would inflate
    /// past it is refused unread).
    pub max_status_list_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            clock_skew_secs: 30,
            max_token_lifetime_secs: 3600,
            max_delegation_depth: 4,
            max_token_bytes: 8192,
            max_context_bytes: 64 * 1024,
            max_entities_bytes: 256 * 1024,
            token_cache_entries: 4096,
            max_status_list_token_bytes: 1024 * 1024,
            max_status_list_bytes: 2 * 1024 * 1024,
        }
    }
}

/// When a DPoP proof is required (RFC 9449).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DpopMode {
    /// Every call needs a DPoP-bound token and a proof; bearer tokens are rejected.
    Required,
    /// Bound tokens (`cnf.jkt`) need a proof; unbound bearer tokens are accepted.
    #[default]
    WhenBound,
    /// Proofs are not checked, so bound tokens are rejected (they cannot be honoured).
    Off,
}

impl DpopMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DpopMode::Required => "required",
            DpopMode::WhenBound => "when-bound",
            DpopMode::Off => "off",
        }
    }
}

/// Proof-of-possession settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopSettings {
    /// When a proof is required.
    pub mode: DpopMode,
    /// Oldest accepted proof `iat`, in seconds before now (RFC 9449 §11.1).
    pub max_age_secs: u64,
    /// Furthest accepted proof `iat` in the future, in seconds (client clock offset).
    pub max_future_secs: u64,
    /// Server nonces (RFC 9449 §8); absent means nonces are not required.
    pub nonce: Option<NonceSettings>,
}

impl Default for DpopSettings {
    fn default() -> Self {
        DpopSettings { mode: DpopMode::default(), max_age_secs: 60, max_future_secs: 5, nonce: None }
    }
}

/// Stateless server nonces: an HMAC over a time step, so every instance agrees without sharing state.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceSettings {
    /// HMAC key, at least 32 bytes.
    pub secret: String,
    /// Length of one nonce period; the current and the previous period's nonces are accepted.
    #[serde(default = "default_nonce_step")]
    pub step_secs: u64,
}

fn default_nonce_step() -> u64 {
    60
}

// The secret must not reach logs through Debug.
impl std::fmt::Debug for NonceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceSettings").field("secret", &"<redacted>").field("step_secs", &self.step_secs).finish()
    }
}

/// Agent workload identity settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    /// Every call must carry a verified workload identity for its agent.
    pub required: bool,
    /// Audiences accepted in JWT-SVIDs; empty means the service's `audiences`.
    pub audiences: Vec<String>,
}

/// Upper bounds on settings themselves, so a typo cannot switch a check off.
const MAX_CLOCK_SKEW_SECS: u64 = 300;
const MAX_PROOF_WINDOW_SECS: u64 = 600;
const MIN_NONCE_SECRET_BYTES: usize = 32;

impl Settings {
    /// Checks the settings for values that would weaken verification.
    pub fn validate(&self) -> Result<(), String> {
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err("`audiences` must list at least one non-empty audience".into());
        }
        let l = &self.limits;
        if l.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return Err(format!("`limits.clock_skew_secs` is {}, the most allowed is {MAX_CLOCK_SKEW_SECS}", l.clock_skew_secs));
        }
        if l.max_token_lifetime_secs == 0 {
            return Err("`limits.max_token_lifetime_secs` must be positive".into());
        }
        if l.max_token_bytes < 256 {
            return Err(format!("`limits.max_token_bytes` is {}, at least 256 is needed for any token", l.max_token_bytes));
        }
        let d = &self.dpop;
        if d.max_age_secs > MAX_PROOF_WINDOW_SECS || d.max_future_secs > MAX_PROOF_WINDOW_SECS {
            return Err(format!("`dpop.max_age_secs` and `dpop.max_future_secs` must be at most {MAX_PROOF_WINDOW_SECS}"));
        }
        if let Some(nonce) = &d.nonce {
            if nonce.secret.len() < MIN_NONCE_SECRET_BYTES {
                return Err(format!("`dpop.nonce` secret must be at least {MIN_NONCE_SECRET_BYTES} bytes"));
            }
            if nonce.step_secs == 0 || nonce.step_secs > MAX_PROOF_WINDOW_SECS {
                return Err(format!("`dpop.nonce.step_secs` must be between 1 and {MAX_PROOF_WINDOW_SECS}"));
            }
        }
        Ok(())
    }

    /// Audiences accepted for agent identity tokens.
    pub fn identity_audiences(&self) -> &[String] {
        if self.identity.audiences.is_empty() { &self.audiences } else { &self.identity.audiences }
    }
}
