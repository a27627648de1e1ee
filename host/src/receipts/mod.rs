//! Signed decision receipts: a compact JWS per decision that binds the decision, the
//! configuration it was made under (`digest::ConfigDigests`), the verified facts (token `iss` and
//! `jti`, proof key, user and agent chain) and a digest of the request as decided. Signed in the
//! host with aws-lc: the signing key never enters a component, a bundle or a snapshot.
//!
//! docs/receipts.md is the reference: claims, canonical forms, rotation, verification.

pub mod digest;
pub mod verify;

use agentgate_engine::jose::base64url;
use agentgate_engine::jose::json::parse_object;
use agentgate_engine::jose::jwk::EcPublicJwk;
use agentgate_engine::{CheckRequest, Decision};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use digest::ConfigDigests;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The JOSE `typ` of a receipt.
pub const RECEIPT_TYP: &str = "agentgate-receipt+jwt";

/// The path `agentgate serve` publishes the receipt keys at (a JWKS: current and previous keys).
pub const JWKS_PATH: &str = "/.well-known/agentgate-receipt-keys";

/// Which decisions get a receipt (`[receipts] sign`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignWhen {
    /// Allows only.
    Allows,
    /// Allows, and denies of calls whose access token verified (policy denials, missing scopes,
    /// revoked or replayed calls): a caller without a valid token cannot make the service sign.
    #[default]
    Verified,
    /// Every decision, including denials of garbage. Each costs one ES256 signature, which
    /// anyone who can reach the service can cause.
    All,
}

impl SignWhen {
    /// Whether `decision` gets a receipt.
    pub fn applies(self, decision: &Decision) -> bool {
        match self {
            SignWhen::Allows => decision.allowed,
            SignWhen::Verified => decision.allowed || decision.token_id.is_some(),
            SignWhen::All => true,
        }
    }

    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            SignWhen::Allows => "allows",
            SignWhen::Verified => "verified",
            SignWhen::All => "all",
        }
    }
}

/// The receipt signing key, its `kid`, and the public keys verifiers are offered.
pub struct ReceiptSigner {
    key: EcdsaKeyPair,
    kid: String,
    /// The protected header, base64url: the same for every receipt of this key.
    header: String,
    jwks: Value,
    sign: SignWhen,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSigner").field("kid", &self.kid).field("sign", &self.sign).finish_non_exhaustive()
    }
}

impl ReceiptSigner {
    /// A signer from a private P-256 JWK (as `agentgate mint keygen` writes it) and the public
    /// JWKs or JWKS documents of previous keys, still published so that older receipts verify.
    /// Errors never quote the private key.
    pub fn new(private_jwk: &str, previous: &[(String, String)], sign: SignWhen) -> Result<Self, String> {
        let object = parse_object(private_jwk.as_bytes()).map_err(|e| format!("the receipt key {e}"))?;
        let d = match object.get("d") {
            Some(Value::String(d)) => base64url::decode(d).map_err(|_| "the receipt key's `d` is not base64url".to_owned())?,
            _ => return Err("the receipt key has no private member `d`: `key` must be a private JWK (`agentgate mint keygen --private-out`)".into()),
        };
        let mut public_members = object.clone();
        public_members.remove("d");
        let public = EcPublicJwk::from_object(&public_members).map_err(|e| format!("the receipt key {e}"))?;
        let key = EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &d, public.public_key().sec1())
            .map_err(|_| "the receipt key's `d` is not the private key of its `x` and `y`".to_owned())?;
        let kid = match object.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
            Some(_) => return Err("the receipt key's `kid` must be a non-empty string".into()),
            None => public.thumbprint(),
        };
        let mut keys = vec![published(&public, &kid)];
        for (source, text) in previous {
            for (public, kid) in previous_keys(text).map_err(|e| format!("{source}: {e}"))? {
                if keys.iter().any(|k| k.get("kid").and_then(Value::as_str) == Some(kid.as_str())) {
                    return Err(format!("{source}: the key id `{kid}` is already published; every receipt key needs its own `kid`"));
                }
                keys.push(published(&public, &kid));
            }
        }
        let header = base64url::encode(json!({ "alg": "ES256", "typ": RECEIPT_TYP, "kid": kid }).to_string().as_bytes());
        Ok(ReceiptSigner { key, kid, header, jwks: json!({ "keys": keys }), sign })
    }

    /// The key id receipts carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS to publish: the current key first, then the previous ones.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// Which decisions get a receipt.
    pub fn sign_when(&self) -> SignWhen {
        self.sign
    }

    /// The receipt of one decision, or `None` when `[receipts] sign` leaves it out.
    pub fn receipt(&self, decision: &Decision, facts: &ReceiptFacts<'_>) -> Option<Result<String, String>> {
        self.sign.applies(decision).then(|| self.sign_claims(&claims(decision, facts)))
    }

    /// Signs `claims` as a compact JWS with the receipt header.
    pub fn sign_claims(&self, claims: &impl Serialize) -> Result<String, String> {
        let payload = serde_json::to_vec(claims).map_err(|e| format!("the receipt's claims could not be written: {e}"))?;
        let input = format!("{}.{}", self.header, base64url::encode(&payload));
        let signature = self.key.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| "signing the receipt failed".to_owned())?;
        Ok(format!("{input}.{}", base64url::encode(signature.as_ref())))
    }
}

/// A public JWK as published: `kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`.
fn published(key: &EcPublicJwk, kid: &str) -> Value {
    let mut jwk = key.to_json();
    if let Value::Object(m) = &mut jwk {
        m.insert("kid".into(), json!(kid));
        m.insert("alg".into(), json!("ES256"));
        m.insert("use".into(), json!("sig"));
    }
    jwk
}

/// The keys of a previous-key file: one public JWK, or a JWKS; each needs a `kid`.
fn previous_keys(text: &str) -> Result<Vec<(EcPublicJwk, String)>, String> {
    let object = parse_object(text.as_bytes()).map_err(|e| format!("the file {e}"))?;
    let jwks: Vec<Value> = match object.get("keys") {
        Some(Value::Array(keys)) => keys.clone(),
        Some(_) => return Err("`keys` is not an array".into()),
        None => vec![Value::Object(object)],
    };
    let mut out = Vec::new();
    for jwk in jwks {
        let Value::Object(jwk) = jwk else { return Err("a key that is not a JSON object".into()) };
        let public = EcPublicJwk::from_object(&jwk).map_err(|e| format!("a previous receipt key {e}"))?;
        let kid = match jwk.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
            _ => return Err("a previous receipt key without a `kid`".into()),
        };
        out.push((public, kid));
    }
    Ok(out)
}

/// What a receipt states besides the decision itself.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptFacts<'a> {
    /// The decision id (the receipt's `jti`).
    pub decision_id: &'a str,
    /// When it was decided, unix seconds (`iat`).
    pub issued_at: u64,
    /// The request as the engine was asked it.
    pub request: &'a CheckRequest,
    /// The configuration in force.
    pub config: &'a ConfigDigests,
}

/// A receipt's claims (docs/receipts.md), borrowed from the decision: serialized once, straight
/// into the JWS payload.
#[derive(Debug, Serialize)]
pub struct ReceiptClaims<'a> {
    jti: &'a str,
    iat: u64,
    decision: &'static str,
    outcome: &'static str,
    policies: &'a [String],
    config: &'a ConfigDigests,
    token: Option<TokenClaims<'a>>,
    jkt: Option<&'a str>,
    user: Option<&'a str>,
    chain: &'a [String],
    principal: Option<&'a str>,
    request: String,
}

/// The verified access token a receipt names.
#[derive(Debug, Serialize)]
struct TokenClaims<'a> {
    iss: Option<String>,
    jti: &'a str,
}

/// The receipt's claims for `decision`.
pub fn claims<'a>(decision: &'a Decision, facts: &ReceiptFacts<'a>) -> ReceiptClaims<'a> {
    // The token's `iss`, read from the very token the engine verified (`token_id` is only set
    // once it verified): the engine's decision does not carry it.
    let token = decision.token_id.as_deref().map(|jti| TokenClaims { iss: token_issuer(facts.request), jti });
    ReceiptClaims {
        jti: facts.decision_id,
        iat: facts.issued_at,
        decision: if decision.allowed { "allow" } else { "deny" },
        outcome: decision.outcome.as_str(),
        policies: &decision.policies,
        config: facts.config,
        token,
        jkt: decision.key_thumbprint.as_deref(),
        user: decision.user.as_deref(),
        chain: &decision.chain,
        principal: decision.principal.as_deref(),
        request: digest::request_digest(facts.request),
    }
}

/// The `iss` of the access token in the request's `Authorization` header. The engine verified
/// this token (strictly: one `iss`, canonical base64url), so reading its payload is enough here.
fn token_issuer(request: &CheckRequest) -> Option<String> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: Option<String>,
    }
    let (_, token) = request.credentials.authorization.as_deref()?.split_once(' ')?;
    let payload = base64url::decode(token.trim().split('.').nth(1)?).ok()?;
    serde_json::from_slice::<Issuer>(&payload).ok()?.iss
}
