//! Agent workload identity: a WIMSE Workload Identity Token (`wit+jwt`, key in `cnf.jwk`) or a
//! SPIFFE JWT-SVID, verified with the bundle of the trust domain named in its `sub` — never `iss`.

use crate::claims::{self, ClaimError};
use crate::jose::es256::SignatureVerifier;
use crate::jose::jwk::{EcPublicJwk, quote};
use crate::jose::jws;
use crate::jose::media_type::typ_matches;
use crate::settings::Settings;
use crate::spiffe::SpiffeId;
use crate::trust::TrustStore;
use serde_json::Value;

/// The kind of identity credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// WIMSE Workload Identity Token.
    WorkloadIdentityToken,
    /// SPIFFE JWT-SVID.
    JwtSvid,
}

/// A verified workload identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// WIT or JWT-SVID.
    pub kind: IdentityKind,
    /// The workload's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// `kid` of the bundle key that signed it.
    pub kid: String,
    /// RFC 7638 thumbprint of that bundle key (revocation lists may name keys by thumbprint).
    pub key_thumbprint: String,
    /// Thumbprint of `cnf.jwk`, when the identity is key-bound (always for a WIT).
    pub bound_key: Option<String>,
}

/// JWT-SVID §2: only these headers may appear.
const SVID_HEADERS: [&str; 3] = ["alg", "kid", "typ"];

/// Verifies the `Workload-Identity-Token` header value for the token's current actor `actor`.
/// Errors are `invalid_token` reasons. An identity for another workload is refused before its
/// signature is checked: cheap checks first.
pub fn verify(
    token: &str,
    actor: &str,
    settings: &Settings,
    trust: &TrustStore,
    now: i64,
    verifier: &dyn SignatureVerifier,
) -> Result<VerifiedIdentity, String> {
    let jws = jws::parse(token, settings.limits.max_token_bytes).map_err(|e| format!("agent identity {e}"))?;
    let kind = match jws.header_str("typ") {
        Some(typ) if typ_matches(typ, "wit+jwt") => IdentityKind::WorkloadIdentityToken,
        None => IdentityKind::JwtSvid,
        Some(typ) if typ == "JWT" || typ == "JOSE" => IdentityKind::JwtSvid,
        Some(typ) => return Err(format!("agent identity has `typ` {}, expected `wit+jwt` or a JWT-SVID", quote(typ))),
    };
    if kind == IdentityKind::JwtSvid
        && let Some(extra) = jws.header().keys().find(|k| !SVID_HEADERS.contains(&k.as_str()))
    {
        return Err(format!("agent identity (JWT-SVID) has the header `{}`, which JWT-SVID §2 forbids", extra.escape_default()));
    }
    let Some(Value::String(sub)) = jws.unverified_claim("sub") else {
        return Err("agent identity lacks a string `sub`".into());
    };
    let spiffe_id = SpiffeId::parse(sub).map_err(|e| format!("agent identity `sub` {} {e}", quote(sub)))?;
    if spiffe_id.as_str() != actor {
        return Err(format!("agent identity {} does not match the token's actor {}", quote(spiffe_id.as_str()), quote(actor)));
    }
    let trust_domain = spiffe_id.trust_domain();
    let Some(keys) = trust.trust_domain(trust_domain) else {
        return Err(format!("agent identity trust domain {} is not trusted", quote(trust_domain)));
    };
    let kid = match jws.header_str("kid") {
        Some(kid) if !kid.is_empty() => kid.to_owned(),
        _ => return Err("agent identity has no `kid` header".into()),
    };
    let Some(key) = keys.get(&kid) else {
        return Err(format!("agent identity key id {} is not in the bundle of trust domain {}", quote(&kid), quote(trust_domain)));
    };
    let verified = jws
        .verify(&key.key, verifier)
        .map_err(|_| format!("agent identity signature does not verify with key {} of trust domain {}", quote(&kid), quote(trust_domain)))?;
    let c = &verified.claims;
    let claim = |e: ClaimError| format!("agent identity {e}");
    let skew = i64::try_from(settings.limits.clock_skew_secs).unwrap_or(i64::MAX);
    let exp = claims::required_date(c, "exp").map_err(claim)?;
    if now >= exp.saturating_add(skew) {
        return Err(format!("agent identity expired at {exp} (now {now}, leeway {skew}s)"));
    }
    if let Some(nbf) = claims::numeric_date(c, "nbf").map_err(claim)?
        && now.saturating_add(skew) < nbf
    {
        return Err(format!("agent identity is not valid before {nbf}"));
    }
    if let Some(iat) = claims::numeric_date(c, "iat").map_err(claim)?
        && iat > now.saturating_add(skew)
    {
        return Err(format!("agent identity was issued in the future (`iat` {iat}, now {now})"));
    }
    let bound_key = match kind {
        IdentityKind::JwtSvid => {
            // JWT-SVID §3.2: `aud` is required and must name this validator.
            let audiences = claims::audiences(c).map_err(claim)?;
            if !audiences.iter().any(|a| settings.identity_audiences().contains(a)) {
                return Err("agent identity (JWT-SVID) audience does not include this service".into());
            }
            confirmation_key(c)?
        }
        IdentityKind::WorkloadIdentityToken => Some(confirmation_key(c)?.ok_or("agent identity (WIT) lacks the required `cnf.jwk`")?),
    };
    Ok(VerifiedIdentity { kind, kid, key_thumbprint: key.thumbprint.clone(), bound_key, spiffe_id })
}

/// `cnf.jwk` (RFC 7800 §3.2) as a thumbprint. WIMSE requires `cnf.jwk.alg`; it must be ES256 here
/// because the DPoP proof made with that key is ES256. (A JWT-SVID with `cnf` is held to the same
/// rule.)
fn confirmation_key(c: &crate::jose::json::JsonObject) -> Result<Option<String>, String> {
    let Some(cnf) = c.get("cnf") else { return Ok(None) };
    let Some(Value::Object(jwk)) = cnf.get("jwk") else {
        return Err("agent identity has a `cnf` without a `jwk` object".into());
    };
    match jwk.get("alg") {
        Some(Value::String(alg)) if alg == "ES256" => {}
        None => return Err("agent identity `cnf.jwk` lacks `alg`, which WIMSE requires".into()),
        Some(_) => return Err("agent identity `cnf.jwk.alg` is not `ES256`".into()),
    }
    let key = EcPublicJwk::from_object(jwk).map_err(|e| format!("agent identity `cnf.jwk` {e}"))?;
    Ok(Some(key.thumbprint()))
}
