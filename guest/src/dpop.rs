//! DPoP proofs (RFC 9449 §4.3, §6, §7): one ES256 `dpop+jwt` per call, signed by the agent's key,
//! naming this request (`htm`, `htu`), this token (`ath`) and a fresh `jti`.

use crate::claims::{self, ClaimError};
use crate::decision::{Denial, Outcome};
use crate::jose::base64url;
use crate::jose::es256::SignatureVerifier;
use crate::jose::json::JsonObject;
use crate::jose::jwk::{EcPublicJwk, quote};
use crate::jose::jws;
use crate::jose::media_type::typ_matches;
use crate::nonce::NonceIssuer;
use crate::settings::Settings;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

/// Longest accepted proof `jti` (RFC 9449 §11.1: reject overly large values).
const MAX_JTI_BYTES: usize = 256;

/// A verified proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof key.
    pub thumbprint: String,
    /// `jti`.
    pub jti: String,
    /// `iat`.
    pub issued_at: i64,
    /// The request URI, normalized.
    pub uri: String,
}

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ProofCheck<'a> {
    /// Window and limits.
    pub settings: &'a Settings,
    /// Now, unix seconds.
    pub now: i64,
    /// The request method.
    pub method: &'a str,
    /// The request URI as the client addressed it.
    pub uri: &'a str,
    /// The expected `ath`: base64url(SHA-256(access token)), see `ath`.
    pub ath: &'a str,
    /// The token's `cnf.jkt`.
    pub bound_key: &'a str,
    /// Server nonces, when configured.
    pub nonces: Option<&'a NonceIssuer>,
}

/// Verifies the `DPoP` header value against the request and the token.
pub fn verify(header: &str, check: ProofCheck<'_>, verifier: &dyn SignatureVerifier) -> Result<VerifiedProof, Denial> {
    let invalid = |reason: String| Denial::proof(reason);
    // §4.3 #1: one DPoP header. Proxies fold repeated headers with commas; JWS never has one.
    if header.contains(',') {
        return Err(invalid("more than one DPoP proof was presented".into()));
    }
    let jws = jws::parse(header, check.settings.limits.max_token_bytes).map_err(|e| invalid(format!("DPoP proof {e}")))?;
    match jws.header_str("typ") {
        Some(typ) if typ_matches(typ, "dpop+jwt") => {}
        Some(typ) => return Err(invalid(format!("DPoP proof has `typ` {}, expected `dpop+jwt`", quote(typ)))),
        None => return Err(invalid("DPoP proof has no `typ` header, expected `dpop+jwt`".into())),
    }
    let Some(Value::Object(jwk_object)) = jws.header().get("jwk") else {
        return Err(invalid("DPoP proof has no `jwk` header object".into()));
    };
    let jwk = EcPublicJwk::from_object(jwk_object).map_err(|e| invalid(format!("DPoP proof `jwk` {e}")))?;
    // Cheap before costly: a key other than the token's is refused before any curve arithmetic,
    // so cycling proof keys against one stolen token costs the attacker more than the gate.
    let thumbprint = jwk.thumbprint();
    if thumbprint != check.bound_key {
        // RFC 9449 §7.1 answers a key-binding mismatch with `invalid_token`: the token is being
        // used by someone who does not hold its key.
        return Err(Denial::token(format!("DPoP proof key {} does not match the token's `cnf.jkt` {}", quote(&thumbprint), quote(check.bound_key))));
    }
    let verified = jws.verify(jwk.public_key(), verifier).map_err(|_| invalid("DPoP proof signature does not verify with its `jwk`".into()))?;
    let c = &verified.claims;
    let claim = |e: ClaimError| invalid(format!("DPoP proof {e}"));

    let jti = claims::required_str(c, "jti").map_err(claim)?;
    if jti.len() > MAX_JTI_BYTES {
        return Err(invalid(format!("DPoP proof `jti` is longer than {MAX_JTI_BYTES} bytes")));
    }
    let htm = claims::required_str(c, "htm").map_err(claim)?;
    let htu = claims::required_str(c, "htu").map_err(claim)?;
    let issued_at = claims::required_date(c, "iat").map_err(claim)?;
    let ath = claims::required_str(c, "ath").map_err(claim)?;

    if htm != check.method {
        return Err(invalid(format!("DPoP proof `htm` {} does not match the request method {}", quote(htm), quote(check.method))));
    }
    let request_uri = normalize_uri(check.uri).map_err(|e| Denial::request(format!("request URI {e}")))?;
    let proof_uri = normalize_uri(htu).map_err(|e| invalid(format!("DPoP proof `htu` {e}")))?;
    if proof_uri != request_uri {
        return Err(invalid(format!("DPoP proof `htu` {} does not match the request URI {}", quote(&proof_uri), quote(&request_uri))));
    }
    check_age(issued_at, check)?;
    if let Some(nonces) = check.nonces {
        check_nonce(c, nonces, check.now)?;
    }
    if ath != check.ath {
        return Err(invalid("DPoP proof `ath` does not match the access token".into()));
    }
    Ok(VerifiedProof { thumbprint, jti: jti.to_owned(), issued_at, uri: request_uri })
}

fn check_age(iat: i64, check: ProofCheck<'_>) -> Result<(), Denial> {
    let dpop = &check.settings.dpop;
    let max_age = i64::try_from(dpop.max_age_secs).unwrap_or(i64::MAX);
    let max_future = i64::try_from(dpop.max_future_secs).unwrap_or(i64::MAX);
    if iat < check.now.saturating_sub(max_age) {
        return Err(Denial::proof(format!("DPoP proof is too old (`iat` {iat}, now {}, max age {max_age}s)", check.now)));
    }
    if iat > check.now.saturating_add(max_future) {
        return Err(Denial::proof(format!("DPoP proof `iat` {iat} is too far in the future (now {}, max {max_future}s)", check.now)));
    }
    Ok(())
}

fn check_nonce(claims: &JsonObject, nonces: &NonceIssuer, now: i64) -> Result<(), Denial> {
    let fresh = || {
        let mut d = Denial::new(Outcome::UseDpopNonce, "");
        d.dpop_nonce = Some(nonces.current(now));
        d
    };
    match claims.get("nonce") {
        None => Err(Denial { reason: "DPoP proof has no `nonce`; use the server nonce".into(), ..fresh() }),
        Some(Value::String(n)) if nonces.accepts(n, now) => Ok(()),
        Some(_) => Err(Denial { reason: "DPoP proof `nonce` is not current; use the new server nonce".into(), ..fresh() }),
    }
}

/// `ath` for an access token (RFC 9449 §4.2): base64url(SHA-256(token)).
pub fn ath(access_token: &str) -> String {
    base64url::encode(&Sha256::digest(access_token.as_bytes()))
}

/// The `jti` as the replay store keeps it: base64url SHA-256, so the store holds neither raw
/// values of arbitrary size nor anything linkable to the proof text. Stored with the key's
/// thumbprint, so two keys' proofs never collide and a host can bound entries per key.
pub fn jti_hash(jti: &str) -> String {
    base64url::encode(&Sha256::digest(jti.as_bytes()))
}

/// RFC 3986 §6.2.2 / §6.2.3 normalization for comparing `htu` with the request URI: scheme and
/// host lowercased, default port dropped, dot segments removed, empty path as `/` (all by the
/// `url` crate), then percent-encodings uppercased and unreserved characters decoded; query and
/// fragment dropped (RFC 9449 §4.3 #9).
pub fn normalize_uri(text: &str) -> Result<String, String> {
    let url = Url::parse(text).map_err(|e| format!("{} is not an absolute URI ({e})", quote(text)))?;
    let scheme = url.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(format!("{} is not an http(s) URI", quote(text)));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{} carries userinfo", quote(text)));
    }
    let Some(host) = url.host_str() else {
        return Err(format!("{} has no host", quote(text)));
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("{scheme}://{host}{port}{}", normalize_percent_encoding(url.path())))
}

/// Uppercases the hex digits of percent-encodings and decodes those of unreserved characters
/// (RFC 3986 §6.2.2.1, §6.2.2.2), which the `url` crate leaves as written.
fn normalize_percent_encoding(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let triple = (b == b'%').then(|| (bytes.get(i + 1), bytes.get(i + 2)));
        if let Some((Some(&h), Some(&l))) = triple
            && let (Some(hi), Some(lo)) = ((h as char).to_digit(16), (l as char).to_digit(16))
        {
            let decoded = (hi * 16 + lo) as u8;
            if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                out.push(decoded as char);
            } else {
                out.push('%');
                out.push(h.to_ascii_uppercase() as char);
                out.push(l.to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        out.push(b as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_equivalent_uris_alike() {
        let n = |s: &str| normalize_uri(s).unwrap_or_else(|e| e);
        let base = "https://api.example.com/mail/inbox";
        assert_eq!(n(base), base);
        for equivalent in [
            "HTTPS://API.Example.COM/mail/inbox",
            "https://api.example.com:443/mail/inbox",
            "https://api.example.com/mail/./x/../inbox",
            "https://api.example.com/mail/inbox?page=2",
            "https://api.example.com/mail/inbox#top",
            "https://api.example.com/%6Dail/inbox",
        ] {
            assert_eq!(n(equivalent), base, "{equivalent}");
        }
        assert_eq!(n("https://api.example.com"), "https://api.example.com/");
        assert_eq!(n("http://api.example.com:80/"), "http://api.example.com/");
        assert_eq!(n("https://api.example.com/a%2fb"), "https://api.example.com/a%2Fb");
        assert_ne!(n("https://api.example.com:8443/mail/inbox"), base);
        assert_ne!(n("http://api.example.com/mail/inbox"), base);
        assert_ne!(n("https://api.example.org/mail/inbox"), base);
        assert!(normalize_uri("/mail/inbox").is_err());
        assert!(normalize_uri("ftp://x/y").is_err());
        assert!(normalize_uri("https://user@api.example.com/").is_err());
    }
}
