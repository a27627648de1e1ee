//! Checking a receipt: its signature under a published key, and optionally that a request and a
//! policy directory are the ones it names. `agentgate receipt verify` is the command line to it.

use super::RECEIPT_TYP;
use super::digest::{self, ConfigDigests};
use crate::native_crypto::AwsLcVerifier;
use agentgate_engine::CheckRequest;
use agentgate_engine::jose::json::{JsonObject, parse_object};
use agentgate_engine::jose::jwk::EcPublicJwk;
use agentgate_engine::jose::jws;
use serde_json::Value;
use std::path::Path;

/// The largest receipt accepted (a receipt is about a kilobyte).
pub const MAX_RECEIPT_BYTES: usize = 64 * 1024;

/// A receipt whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    /// The key that signed it.
    pub kid: String,
    /// Its claims.
    pub claims: JsonObject,
}

impl VerifiedReceipt {
    /// The configuration digests it names.
    pub fn config(&self) -> Option<ConfigDigests> {
        self.claims.get("config").and_then(|c| serde_json::from_value(c.clone()).ok())
    }

    /// The request digest it names.
    pub fn request_digest(&self) -> Option<&str> {
        self.claims.get("request").and_then(Value::as_str)
    }

    /// Whether `request` is the request it was issued for.
    pub fn matches_request(&self, request: &CheckRequest) -> bool {
        self.request_digest() == Some(digest::request_digest(request).as_str())
    }

    /// Which of the policies and schema digests of the directory `dir` differ from the
    /// receipt's (empty: both match).
    pub fn policy_dir_mismatches(&self, dir: &Path) -> Result<Vec<&'static str>, String> {
        let (policies, schema) = digest::policy_dir_digests(dir)?;
        let config = self.config().ok_or("the receipt names no configuration digests")?;
        let mut differ = Vec::new();
        if config.policies != policies {
            differ.push("policies");
        }
        if config.schema != schema {
            differ.push("schema");
        }
        Ok(differ)
    }
}

/// Verifies `receipt` (a compact JWS) against the keys of `jwks` (a JWKS document).
pub fn verify(receipt: &str, jwks: &str) -> Result<VerifiedReceipt, String> {
    let receipt = receipt.trim();
    let parsed = jws::parse(receipt, MAX_RECEIPT_BYTES).map_err(|e| format!("the receipt {e}"))?;
    match parsed.header_str("typ") {
        Some(RECEIPT_TYP) => {}
        Some(other) => return Err(format!("the receipt has `typ` `{}`, not `{RECEIPT_TYP}`", other.escape_default())),
        None => return Err(format!("the receipt has no `typ`; receipts have `{RECEIPT_TYP}`")),
    }
    let kid = parsed.header_str("kid").ok_or("the receipt has no `kid`")?.to_owned();
    let key = find_key(jwks, &kid)?;
    match parsed.verify(key.public_key(), &AwsLcVerifier) {
        Ok(verified) => Ok(VerifiedReceipt { kid, claims: verified.claims }),
        Err(_) => Err(format!("the receipt's signature does not verify under the key `{}`", kid.escape_default())),
    }
}

/// The key with id `kid` in a JWKS document.
fn find_key(jwks: &str, kid: &str) -> Result<EcPublicJwk, String> {
    let document = parse_object(jwks.as_bytes()).map_err(|e| format!("the JWKS {e}"))?;
    let Some(Value::Array(keys)) = document.get("keys") else { return Err("the JWKS has no `keys` array".into()) };
    let key = keys
        .iter()
        .filter_map(Value::as_object)
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .ok_or_else(|| format!("the JWKS has no key `{}` (receipt keys are published at `{}`)", kid.escape_default(), super::JWKS_PATH))?;
    if key.get("alg").is_some_and(|alg| alg != "ES256") {
        return Err(format!("the JWKS key `{}` is not for ES256", kid.escape_default()));
    }
    EcPublicJwk::from_object(key).map_err(|e| format!("the JWKS key `{}` {e}", kid.escape_default()))
}
