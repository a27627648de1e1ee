//! The access token (RFC 9068 §4, RFC 8725): an ES256 `at+jwt` from a configured issuer,
//! delegated by a user (`sub`) to an agent (`act`), optionally bound to a key (`cnf.jkt`).

use crate::claims::{self, ClaimError};
use crate::delegation::DelegationChain;
use crate::jose::es256::SignatureVerifier;
use crate::jose::jwk::quote;
use crate::jose::jws::{self, VerifiedJws};
use crate::jose::media_type::typ_matches;
use crate::settings::Settings;
use crate::trust::TrustStore;
use serde_json::Value;

/// Header members that would let the token name its own key (RFC 8725 §2.9, §3.10). Keys come only
/// from the configured JWKS, so their presence is an attack or a misconfigured issuer.
const KEY_SOURCE_HEADERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// A verified access token: every claim below was signed by a trusted issuer and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAccessToken {
    /// `iss`.
    pub issuer: String,
    /// `kid` of the issuer key that signed it.
    pub kid: String,
    /// `sub`: the user.
    pub subject: String,
    /// `client_id`.
    pub client_id: String,
    /// `jti`.
    pub jti: String,
    /// `iat`.
    pub issued_at: i64,
    /// `exp`.
    pub expires_at: i64,
    /// `nbf`.
    pub not_before: Option<i64>,
    /// `scope`, split.
    pub scopes: Vec<String>,
    /// Nested `act`.
    pub chain: DelegationChain,
    /// `cnf.jkt`: the thumbprint of the key the token is bound to.
    pub bound_key: Option<String>,
    /// `status.status_list`: where the token's status is published.
    pub status: Option<crate::status_list::StatusRef>,
}

/// What an access token is checked against.
#[derive(Debug, Clone, Copy)]
pub struct TokenCheck<'a> {
    /// Audiences, limits.
    pub settings: &'a Settings,
    /// Issuers and keys.
    pub trust: &'a TrustStore,
    /// Now, unix seconds.
    pub now: i64,
}

/// Verifies `token` completely. The error is the reason for an `invalid_token` deny.
pub fn verify(token: &str, check: TokenCheck<'_>, verifier: &dyn SignatureVerifier) -> Result<VerifiedAccessToken, String> {
    let verified = verify_timeless(token, check, verifier)?;
    check_times(&verified, check)?;
    Ok(verified)
}

/// Everything that does not depend on the clock: structure, key, signature, claims. Its result may
/// be cached for the same token bytes; `check_times` must still run on every use.
pub fn verify_timeless(token: &str, check: TokenCheck<'_>, verifier: &dyn SignatureVerifier) -> Result<VerifiedAccessToken, String> {
    let limits = &check.settings.limits;
    let jws = jws::parse(token, limits.max_token_bytes).map_err(|e| format!("access token {e}"))?;
    match jws.header_str("typ") {
        Some(typ) if typ_matches(typ, "at+jwt") => {}
        Some(typ) => return Err(format!("access token has `typ` {}, expected `at+jwt`", quote(typ))),
        None => return Err("access token has no `typ` header, expected `at+jwt`".into()),
    }
    if let Some(name) = KEY_SOURCE_HEADERS.iter().find(|h| jws.header().contains_key(**h)) {
        return Err(format!("access token carries a `{name}` header; keys come only from the configured JWKS"));
    }
    let kid = match jws.header().get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        Some(_) => return Err("access token has a `kid` that is not a non-empty string".into()),
        None => return Err("access token has no `kid` header".into()),
    };
    let issuer = match jws.unverified_claim("iss") {
        Some(Value::String(iss)) => iss.clone(),
        Some(_) => return Err("access token has an `iss` that is not a string".into()),
        None => return Err("access token lacks the required claim `iss`".into()),
    };
    let Some(keys) = check.trust.issuer(&issuer) else {
        return Err(format!("access token issuer {} is not trusted", quote(&issuer)));
    };
    let Some(key) = keys.get(&kid) else {
        return Err(format!("access token key id {} is not in the JWKS of issuer {}", quote(&kid), quote(&issuer)));
    };
    let verified =
        jws.verify(&key.key, verifier).map_err(|_| format!("access token signature does not verify with key {} of issuer {}", quote(&kid), quote(&issuer)))?;
    check_claims(&verified, issuer, kid, check).map_err(|e| format!("access token {e}"))
}

/// `exp`, `nbf` and `iat` against the clock, with the configured leeway (RFC 7519 §4.1.4–4.1.6).
pub fn check_times(token: &VerifiedAccessToken, check: TokenCheck<'_>) -> Result<(), String> {
    let skew = i64::try_from(check.settings.limits.clock_skew_secs).unwrap_or(i64::MAX);
    let now = check.now;
    let (exp, iat) = (token.expires_at, token.issued_at);
    if now >= exp.saturating_add(skew) {
        return Err(format!("access token expired at {exp} (now {now}, leeway {skew}s)"));
    }
    if let Some(nbf) = token.not_before
        && now.saturating_add(skew) < nbf
    {
        return Err(format!("access token is not valid before {nbf} (now {now}, leeway {skew}s)"));
    }
    if iat > now.saturating_add(skew) {
        return Err(format!("access token was issued in the future (`iat` {iat}, now {now}, leeway {skew}s)"));
    }
    Ok(())
}

fn check_claims(jws: &VerifiedJws, issuer: String, kid: String, check: TokenCheck<'_>) -> Result<VerifiedAccessToken, String> {
    let c = &jws.claims;
    let limits = &check.settings.limits;
    let text = |e: ClaimError| e.to_string();

    let subject = claims::required_str(c, "sub").map_err(text)?.to_owned();
    let client_id = claims::required_str(c, "client_id").map_err(text)?.to_owned();
    let jti = claims::required_str(c, "jti").map_err(text)?.to_owned();
    let expires_at = claims::required_date(c, "exp").map_err(text)?;
    let issued_at = claims::required_date(c, "iat").map_err(text)?;
    let not_before = claims::numeric_date(c, "nbf").map_err(text)?;
    let audiences = claims::audiences(c).map_err(text)?;

    if expires_at <= issued_at {
        return Err(format!("expires (`exp` {expires_at}) no later than it was issued (`iat` {issued_at})"));
    }
    let lifetime = expires_at.saturating_sub(issued_at);
    if u64::try_from(lifetime).unwrap_or(u64::MAX) > limits.max_token_lifetime_secs {
        return Err(format!("lifetime of {lifetime}s exceeds the limit of {}s", limits.max_token_lifetime_secs));
    }
    if !audiences.iter().any(|aud| check.settings.audiences.contains(aud)) {
        let shown: Vec<String> = audiences.iter().take(4).map(|a| quote(a)).collect();
        return Err(format!("audience {} does not include this service", shown.join(", ")));
    }
    let scopes = claims::scopes(c).map_err(text)?;
    let chain = DelegationChain::from_claims(c, limits.max_delegation_depth)?;
    let bound_key = confirmation(c)?;
    let status = crate::status_list::reference(c)?;
    Ok(VerifiedAccessToken { issuer, kid, subject, client_id, jti, issued_at, expires_at, not_before, scopes, chain, bound_key, status })
}

/// Reads `cnf` (RFC 7800): only the DPoP confirmation `jkt` (RFC 9449 §6.1) is supported. A token
/// bound by any other method — alone or next to `jkt` (`x5t#S256` of RFC 8705 mTLS, `jwk`, `jku`,
/// `kid`…) — cannot be honoured here: ignoring the other member would make a certificate-bound
/// token usable without its certificate, so it is rejected rather than half-checked.
fn confirmation(c: &crate::jose::json::JsonObject) -> Result<Option<String>, String> {
    let Some(cnf) = c.get("cnf") else { return Ok(None) };
    let Value::Object(cnf) = cnf else {
        return Err("has a `cnf` claim that is not a JSON object".into());
    };
    if let Some(other) = cnf.keys().find(|k| k.as_str() != "jkt") {
        return Err(format!(
            "has a `cnf` with `{}`, a confirmation method this service cannot check; only DPoP key binding (`jkt`) is supported",
            other.escape_default()
        ));
    }
    match cnf.get("jkt") {
        Some(Value::String(jkt)) if is_thumbprint(jkt) => Ok(Some(jkt.clone())),
        Some(_) => Err("has a `cnf.jkt` that is not a base64url SHA-256 thumbprint".into()),
        None => Err("has a `cnf` without `jkt`; only DPoP key binding is supported".into()),
    }
}

/// A base64url-encoded SHA-256 digest: 43 characters that decode to 32 bytes.
fn is_thumbprint(text: &str) -> bool {
    text.len() == 43 && crate::jose::base64url::decode(text).is_ok_and(|b| b.len() == 32)
}
