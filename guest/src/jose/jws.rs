//! Compact JWS (RFC 7515 §7.1) with ES256 only. `UnverifiedJws` → `VerifiedJws`: claims are only
//! reachable after the signature has been checked with a key the caller chose.

use super::base64url;
use super::es256::{Es256Signature, PublicKey, SignatureFormatError, SignatureVerifier};
use super::json::{JsonError, JsonObject, parse_object};
use super::jwk::quote;
use serde_json::Value;

/// The only accepted `alg`, compared case-sensitively (RFC 8725 §3.1; `es256` is not `ES256`).
pub const ES256: &str = "ES256";

/// Why a compact JWS was rejected before its signature was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Empty input.
    #[error("is empty")]
    Empty,
    /// Over the configured size limit.
    #[error("is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Size in bytes.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Not exactly three dot-separated parts (JWE has five; JSON serialization has none).
    #[error("has {0} dot-separated parts, a compact JWS has 3")]
    WrongPartCount(usize),
    /// A part is not strict base64url.
    #[error("has a {0} that is not base64url without padding")]
    Base64(&'static str),
    /// The header or payload is not an acceptable JSON object.
    #[error("has a {part} that {error}")]
    Json {
        /// `header` or `payload`.
        part: &'static str,
        /// What was wrong.
        error: JsonError,
    },
    /// `alg` is missing or not `ES256`.
    #[error("has `alg` {0}, only `ES256` is accepted")]
    Algorithm(String),
    /// `crit` is present: no extensions are supported (RFC 7515 §4.1.11).
    #[error("has a `crit` header, no JWS extensions are supported")]
    Critical,
    /// The signature bytes are malformed.
    #[error("has a signature that {0}")]
    Signature(SignatureFormatError),
}

/// A parsed compact JWS whose signature has not been checked.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    header: JsonObject,
    claims: JsonObject,
    signing_input: &'a str,
    signature: Es256Signature,
}

/// A JWS whose ES256 signature was verified; its claims may be used.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    /// The protected header.
    pub header: JsonObject,
    /// The claims set.
    pub claims: JsonObject,
}

/// Parses a compact JWS strictly: size limit, 3 parts, strict base64url, UTF-8 JSON objects with
/// unique member names, `alg` exactly `ES256`, no `crit`, a 64-byte r‖s signature in range.
pub fn parse(token: &str, limit: usize) -> Result<UnverifiedJws<'_>, JwsError> {
    if token.is_empty() {
        return Err(JwsError::Empty);
    }
    if token.len() > limit {
        return Err(JwsError::TooLarge { size: token.len(), limit });
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(JwsError::WrongPartCount(parts.len()));
    };
    let header_bytes = base64url::decode(header_b64).map_err(|_| JwsError::Base64("header"))?;
    let header = parse_object(&header_bytes).map_err(|error| JwsError::Json { part: "header", error })?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == ES256 => {}
        Some(Value::String(alg)) => return Err(JwsError::Algorithm(quote(alg))),
        Some(_) => return Err(JwsError::Algorithm("that is not a string".into())),
        None => return Err(JwsError::Algorithm("missing".into())),
    }
    if header.contains_key("crit") {
        return Err(JwsError::Critical);
    }
    let payload_bytes = base64url::decode(payload_b64).map_err(|_| JwsError::Base64("payload"))?;
    let claims = parse_object(&payload_bytes).map_err(|error| JwsError::Json { part: "payload", error })?;
    let signature_bytes = base64url::decode(signature_b64).map_err(|_| JwsError::Base64("signature"))?;
    let signature = Es256Signature::from_bytes(&signature_bytes).map_err(JwsError::Signature)?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token.get(..signing_input_len).ok_or(JwsError::WrongPartCount(parts.len()))?;
    Ok(UnverifiedJws { header, claims, signing_input, signature })
}

impl<'a> UnverifiedJws<'a> {
    /// The protected header (safe to read: it only selects keys and validators).
    pub fn header(&self) -> &JsonObject {
        &self.header
    }

    /// A header member as a string, if present and a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// An unverified claim, for key selection only (`iss`, the SPIFFE ID in `sub`).
    pub fn unverified_claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// The bytes that were signed (`header.payload`).
    pub fn signing_input(&self) -> &'a str {
        self.signing_input
    }

    /// Checks the signature with `key`; on success the claims become usable. On failure the
    /// unverified JWS comes back whole, so the caller can try the next candidate key without
    /// parsing again (moved, not boxed: a failed verify allocates nothing).
    #[allow(clippy::result_large_err)]
    pub fn verify(self, key: &PublicKey, verifier: &dyn SignatureVerifier) -> Result<VerifiedJws, Self> {
        if verifier.verify(key, self.signing_input.as_bytes(), &self.signature) {
            Ok(VerifiedJws { header: self.header, claims: self.claims })
        } else {
            Err(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::es256::RustCryptoVerifier;
    use crate::jose::jwk::EcPublicJwk;

    /// RFC 7515 Appendix A.3: ES256 with the A.3.1 key.
    const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    const A3_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    fn a3_key() -> Option<PublicKey> {
        let obj = parse_object(A3_JWK.as_bytes()).ok()?;
        Some(EcPublicJwk::from_object(&obj).ok()?.public_key().clone())
    }

    #[test]
    fn rfc7515_a3_verifies() {
        let key = a3_key();
        let jws = parse(A3_JWS, 8192);
        let verified = match (key, jws) {
            (Some(k), Ok(j)) => j.verify(&k, &RustCryptoVerifier::new()).ok(),
            _ => None,
        };
        let claims = verified.map(|v| v.claims);
        assert_eq!(claims.as_ref().and_then(|c| c.get("iss")).and_then(Value::as_str), Some("joe"));
        assert_eq!(claims.as_ref().and_then(|c| c.get("exp")).and_then(Value::as_u64), Some(1_300_819_380));
    }

    #[test]
    fn rfc7515_a3_with_a_flipped_bit_fails() {
        let mut bytes = A3_JWS.as_bytes().to_vec();
        let last = bytes.len() - 2;
        if let Some(b) = bytes.get_mut(last) {
            *b = if *b == b'1' { b'2' } else { b'1' };
        }
        let tampered = String::from_utf8(bytes).unwrap_or_default();
        let ok = match (a3_key(), parse(&tampered, 8192)) {
            (Some(k), Ok(j)) => j.verify(&k, &RustCryptoVerifier::new()).is_ok(),
            _ => false,
        };
        assert!(!ok);
    }

    #[test]
    fn structural_errors() {
        assert_eq!(parse("", 100).err(), Some(JwsError::Empty));
        assert_eq!(parse("a.b", 100).err(), Some(JwsError::WrongPartCount(2)));
        assert_eq!(parse("a.b.c.d.e", 100).err(), Some(JwsError::WrongPartCount(5)));
        assert_eq!(parse(A3_JWS, 100).err(), Some(JwsError::TooLarge { size: A3_JWS.len(), limit: 100 }));
        let none = format!("{}.e30.", base64url::encode(br#"{"alg":"none"}"#));
        assert_eq!(parse(&none, 1000).err(), Some(JwsError::Algorithm("`none`".into())));
        let crit = format!("{}.e30.AA", base64url::encode(br#"{"alg":"ES256","crit":["exp"]}"#));
        assert_eq!(parse(&crit, 1000).err(), Some(JwsError::Critical));
    }
}
