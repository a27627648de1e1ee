//! A development issuer: P-256 keys, access tokens, DPoP proofs and workload identity tokens.
//! For tests, demos and walkthroughs only — the verifier never needs it.

use agentgate_engine::jose::base64url;
use agentgate_engine::jose::es256::PublicKey;
use agentgate_engine::jose::jwk::EcPublicJwk;
use anyhow::{Context as _, bail};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// A P-256 private key with its `kid`.
#[derive(Clone)]
pub struct KeyPair {
    /// Key id.
    pub kid: String,
    key: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh random key.
    pub fn generate(kid: impl Into<String>) -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        loop {
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            // A uniformly random 32-byte string is a valid scalar except with probability ~2^-32.
            if let Ok(key) = SigningKey::from_slice(&seed) {
                return Ok(KeyPair { kid: kid.into(), key });
            }
        }
    }

    /// A deterministic key from 32 secret bytes (test vectors); fails for the rare non-scalar.
    pub fn from_secret_bytes(kid: impl Into<String>, secret: &[u8; 32]) -> anyhow::Result<Self> {
        let key = SigningKey::from_slice(secret).map_err(|_| anyhow::anyhow!("not a P-256 scalar"))?;
        Ok(KeyPair { kid: kid.into(), key })
    }

    /// The RustCrypto signing key (for tests that need raw signatures).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// A key from a private JWK (`kty` `EC`, `crv` `P-256`, `d`, `x`, `y`, optional `kid`).
    pub fn from_jwk(text: &str) -> anyhow::Result<Self> {
        let jwk: Value = serde_json::from_str(text).context("private JWK is not JSON")?;
        let d = jwk.get("d").and_then(Value::as_str).context("private JWK has no `d`")?;
        if jwk.get("kty").and_then(Value::as_str) != Some("EC") || jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
            bail!("private JWK is not an EC P-256 key");
        }
        let d = base64url::decode(d).map_err(|_| anyhow::anyhow!("private JWK `d` is not base64url"))?;
        let key = SigningKey::from_slice(&d).map_err(|_| anyhow::anyhow!("private JWK `d` is not a P-256 scalar"))?;
        let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let pair = KeyPair { kid, key };
        for (member, value) in [("x", pair.public_jwk().get("x").cloned()), ("y", pair.public_jwk().get("y").cloned())] {
            if jwk.get(member) != value.as_ref() {
                bail!("private JWK `{member}` does not belong to its `d`");
            }
        }
        Ok(pair)
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        let point = self.key.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let coord = |range: std::ops::Range<usize>| -> [u8; 32] {
            let mut out = [0u8; 32];
            if let Some(src) = bytes.get(range) {
                out.copy_from_slice(src);
            }
            out
        };
        // A verifying key is always a valid point, so this cannot fail; fall back defensively.
        PublicKey::from_coordinates(&coord(1..33), &coord(33..65)).unwrap_or_else(|_| unreachable_key())
    }

    /// The public JWK with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = EcPublicJwk::from_public_key(self.public_key()).to_json();
        if let Value::Object(m) = &mut jwk {
            if !self.kid.is_empty() {
                m.insert("kid".into(), json!(self.kid));
            }
            m.insert("alg".into(), json!("ES256"));
            m.insert("use".into(), json!("sig"));
        }
        jwk
    }

    /// The bare public JWK (`kty`, `crv`, `x`, `y`), as DPoP proofs embed it.
    pub fn bare_public_jwk(&self) -> Value {
        EcPublicJwk::from_public_key(self.public_key()).to_json()
    }

    /// The private JWK (contains `d`: handle as a secret).
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.public_jwk();
        if let Value::Object(m) = &mut jwk {
            m.insert("d".into(), json!(base64url::encode(&self.key.to_bytes())));
        }
        jwk
    }

    /// RFC 7638 thumbprint.
    pub fn thumbprint(&self) -> String {
        EcPublicJwk::from_public_key(self.public_key()).thumbprint()
    }

    /// Signs `header` and `claims` as a compact JWS (ES256, r‖s).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", base64url::encode(header.to_string().as_bytes()), base64url::encode(claims.to_string().as_bytes()));
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", base64url::encode(&signature.to_bytes()))
    }
}

#[allow(clippy::panic)]
fn unreachable_key() -> PublicKey {
    // PANIC SAFETY: a p256 verifying key is a valid curve point by construction.
    panic!("p256 produced a verifying key that is not on the curve")
}

/// A JWKS document for public keys.
pub fn jwks(keys: &[&KeyPair]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
}

/// A SPIFFE bundle for public keys (`use` = `jwt-svid`).
pub fn spiffe_bundle(keys: &[&KeyPair]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut jwk = k.public_jwk();
            if let Value::Object(m) = &mut jwk {
                m.insert("use".into(), json!("jwt-svid"));
                m.remove("alg");
            }
            jwk
        })
        .collect();
    json!({ "keys": keys, "spiffe_sequence": 1, "spiffe_refresh_hint": 300 })
}

/// A random identifier with 128 bits of entropy, base64url.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness a fixed id is still unique enough for a dev token, but say so.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::warn!("no randomness available for a token id");
    }
    base64url::encode(&bytes)
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What to put in an access token.
#[derive(Debug, Clone)]
pub struct AccessTokenSpec {
    /// `iss`.
    pub issuer: String,
    /// `sub`: the user.
    pub subject: String,
    /// `aud`.
    pub audience: Vec<String>,
    /// `client_id`.
    pub client_id: String,
    /// `scope` tokens.
    pub scopes: Vec<String>,
    /// Actors, current first (nested `act`).
    pub actors: Vec<String>,
    /// `iat`.
    pub issued_at: u64,
    /// `exp - iat`.
    pub lifetime_secs: u64,
    /// `jti`.
    pub jti: String,
    /// Thumbprint for `cnf.jkt`.
    pub bound_key: Option<String>,
    /// `status.status_list`: the token's index in the status list at a URI.
    pub status: Option<(u64, String)>,
}

impl AccessTokenSpec {
    /// A token for `subject` from `issuer` to `audience`, valid from now for 5 minutes.
    pub fn new(issuer: &str, subject: &str, audience: &str) -> Self {
        AccessTokenSpec {
            issuer: issuer.into(),
            subject: subject.into(),
            audience: vec![audience.into()],
            client_id: "agentgate-dev-client".into(),
            scopes: Vec::new(),
            actors: Vec::new(),
            issued_at: now(),
            lifetime_secs: 300,
            jti: random_id(),
            bound_key: None,
            status: None,
        }
    }

    /// The claims set.
    pub fn claims(&self) -> Value {
        let mut c = Map::new();
        c.insert("iss".into(), json!(self.issuer));
        c.insert("sub".into(), json!(self.subject));
        c.insert(
            "aud".into(),
            match self.audience.as_slice() {
                [one] => json!(one),
                many => json!(many),
            },
        );
        c.insert("client_id".into(), json!(self.client_id));
        c.insert("iat".into(), json!(self.issued_at));
        c.insert("exp".into(), json!(self.issued_at + self.lifetime_secs));
        c.insert("jti".into(), json!(self.jti));
        if !self.scopes.is_empty() {
            c.insert("scope".into(), json!(self.scopes.join(" ")));
        }
        if let Some(act) = self.actors.iter().rev().fold(None, |inner: Option<Value>, sub| {
            let mut a = Map::new();
            a.insert("sub".into(), json!(sub));
            if let Some(i) = inner {
                a.insert("act".into(), i);
            }
            Some(Value::Object(a))
        }) {
            c.insert("act".into(), act);
        }
        if let Some(jkt) = &self.bound_key {
            c.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        if let Some((idx, uri)) = &self.status {
            c.insert("status".into(), json!({ "status_list": { "idx": idx, "uri": uri } }));
        }
        Value::Object(c)
    }

    /// Signs the token with the issuer key.
    pub fn sign(&self, issuer_key: &KeyPair) -> String {
        issuer_key.sign(&json!({"typ": "at+jwt", "alg": "ES256", "kid": issuer_key.kid}), &self.claims())
    }
}

/// What to put in a Status List Token (draft-ietf-oauth-status-list-21 §5.1).
#[derive(Debug, Clone)]
pub struct StatusListSpec {
    /// The list's URI: its `sub`, and the `uri` tokens name.
    pub uri: String,
    /// `iss`; `None` leaves it out.
    pub issuer: Option<String>,
    /// Bits per entry: 1, 2, 4 or 8.
    pub bits: u8,
    /// Each entry's status, in index order.
    pub entries: Vec<u8>,
    /// `iat`.
    pub issued_at: u64,
    /// `exp - iat`; `None` leaves `exp` out.
    pub lifetime_secs: Option<u64>,
    /// `ttl`.
    pub ttl_secs: Option<u64>,
}

impl StatusListSpec {
    /// A one-bit list of `entries` at `uri`, issued now, valid for a day, to be refreshed hourly.
    pub fn new(uri: &str, entries: Vec<u8>) -> Self {
        StatusListSpec { uri: uri.into(), issuer: None, bits: 1, entries, issued_at: now(), lifetime_secs: Some(86_400), ttl_secs: Some(3600) }
    }

    /// The packed, ZLIB-compressed, base64url list (§4.1: entry 0 in the least significant bits
    /// of byte 0).
    pub fn lst(&self) -> String {
        let bits = usize::from(self.bits.clamp(1, 8));
        let per_byte = 8 / bits;
        let mut bytes = vec![0u8; self.entries.len().div_ceil(per_byte)];
        for (i, value) in self.entries.iter().enumerate() {
            if let Some(byte) = bytes.get_mut(i / per_byte) {
                *byte |= value << ((i % per_byte) * bits);
            }
        }
        base64url::encode(&miniz_oxide::deflate::compress_to_vec_zlib(&bytes, 9))
    }

    /// Signs the list with `key` (the issuer's, or the configured status issuer's).
    pub fn sign(&self, key: &KeyPair) -> String {
        let mut claims = json!({ "sub": self.uri, "iat": self.issued_at, "status_list": { "bits": self.bits, "lst": self.lst() } });
        if let Value::Object(c) = &mut claims {
            if let Some(iss) = &self.issuer {
                c.insert("iss".into(), json!(iss));
            }
            if let Some(lifetime) = self.lifetime_secs {
                c.insert("exp".into(), json!(self.issued_at + lifetime));
            }
            if let Some(ttl) = self.ttl_secs {
                c.insert("ttl".into(), json!(ttl));
            }
        }
        key.sign(&json!({"typ": "statuslist+jwt", "alg": "ES256", "kid": key.kid}), &claims)
    }
}

/// A DPoP proof for `method` `uri` and `access_token`, signed by the agent key.
pub fn dpop_proof(agent_key: &KeyPair, method: &str, uri: &str, access_token: &str, issued_at: u64, nonce: Option<&str>) -> String {
    let mut claims = json!({
        "jti": random_id(),
        "htm": method,
        "htu": uri,
        "iat": issued_at,
        "ath": base64url::encode(&Sha256::digest(access_token.as_bytes())),
    });
    if let (Some(n), Value::Object(m)) = (nonce, &mut claims) {
        m.insert("nonce".into(), json!(n));
    }
    agent_key.sign(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": agent_key.bare_public_jwk()}), &claims)
}

/// A WIMSE Workload Identity Token for `spiffe_id`, binding `agent_key`, signed by the trust
/// domain key.
pub fn workload_identity(domain_key: &KeyPair, spiffe_id: &str, agent_key: &KeyPair, issued_at: u64, lifetime_secs: u64) -> String {
    let mut cnf_jwk = agent_key.bare_public_jwk();
    if let Value::Object(m) = &mut cnf_jwk {
        m.insert("alg".into(), json!("ES256"));
    }
    let claims = json!({
        "iss": "https://agentgate.dev/identity-server",
        "sub": spiffe_id,
        "iat": issued_at,
        "exp": issued_at + lifetime_secs,
        "jti": random_id(),
        "cnf": { "jwk": cnf_jwk },
    });
    domain_key.sign(&json!({"typ": "wit+jwt", "alg": "ES256", "kid": domain_key.kid}), &claims)
}

/// A SPIFFE JWT-SVID for `spiffe_id` and `audience`, signed by the trust domain key.
pub fn jwt_svid(domain_key: &KeyPair, spiffe_id: &str, audience: &str, issued_at: u64, lifetime_secs: u64) -> String {
    let claims = json!({ "sub": spiffe_id, "aud": [audience], "iat": issued_at, "exp": issued_at + lifetime_secs });
    domain_key.sign(&json!({"typ": "JWT", "alg": "ES256", "kid": domain_key.kid}), &claims)
}
