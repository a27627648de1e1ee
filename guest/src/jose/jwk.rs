//! P-256 public keys as JWKs (RFC 7517, RFC 7518 §6.2.1) and their thumbprints (RFC 7638).

use super::base64url;
use super::es256::PublicKey;
use super::json::JsonObject;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 9449 §4.3 #7).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a JWK was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// `kty` is not `EC`.
    #[error("has `kty` {0}, only `EC` keys are accepted")]
    UnsupportedKeyType(String),
    /// `crv` is not `P-256`.
    #[error("has `crv` {0}, only `P-256` is accepted")]
    UnsupportedCurve(String),
    /// A required member is missing or not a string.
    #[error("lacks the string member `{0}`")]
    MissingMember(&'static str),
    /// A coordinate is not 32 bytes of strict base64url.
    #[error("has a `{0}` that is not 32 bytes of base64url")]
    BadCoordinate(&'static str),
    /// The point is not on the curve.
    #[error("is not a point on P-256")]
    NotOnCurve,
    /// A private or symmetric key member is present.
    #[error("contains the private key member `{0}`")]
    PrivateMember(&'static str),
}

/// A validated P-256 public JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcPublicJwk {
    x: [u8; 32],
    y: [u8; 32],
    key: PublicKey,
}

impl EcPublicJwk {
    /// Validates a JWK object: `kty` `EC`, `crv` `P-256`, 32-byte `x` and `y` on the curve,
    /// no private members. Other members (`kid`, `alg`, `use`) are the caller's business.
    pub fn from_object(jwk: &JsonObject) -> Result<Self, JwkError> {
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(JwkError::PrivateMember(member));
        }
        let kty = string_member(jwk, "kty")?;
        if kty != "EC" {
            return Err(JwkError::UnsupportedKeyType(quote(kty)));
        }
        let crv = string_member(jwk, "crv")?;
        if crv != "P-256" {
            return Err(JwkError::UnsupportedCurve(quote(crv)));
        }
        let x = coordinate(jwk, "x")?;
        let y = coordinate(jwk, "y")?;
        let key = PublicKey::from_coordinates(&x, &y).map_err(|_| JwkError::NotOnCurve)?;
        Ok(EcPublicJwk { x, y, key })
    }

    /// Builds the JWK of a public key (used by token minting and tests).
    pub fn from_public_key(key: PublicKey) -> Self {
        let sec1 = key.sec1();
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        x.copy_from_slice(sec1.get(1..33).unwrap_or(&[0u8; 32]));
        y.copy_from_slice(sec1.get(33..65).unwrap_or(&[0u8; 32]));
        EcPublicJwk { x, y, key }
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// RFC 7638 thumbprint: base64url(SHA-256) of the canonical member string, built from the
    /// decoded-and-re-encoded coordinates, never from the sender's JSON text.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, base64url::encode(&self.x), base64url::encode(&self.y));
        base64url::encode(&Sha256::digest(canonical.as_bytes()))
    }

    /// The public JWK as a JSON object (`kty`, `crv`, `x`, `y`).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": base64url::encode(&self.x),
            "y": base64url::encode(&self.y),
        })
    }
}

fn string_member<'a>(jwk: &'a JsonObject, name: &'static str) -> Result<&'a str, JwkError> {
    jwk.get(name).and_then(Value::as_str).ok_or(JwkError::MissingMember(name))
}

fn coordinate(jwk: &JsonObject, name: &'static str) -> Result<[u8; 32], JwkError> {
    let text = string_member(jwk, name)?;
    let bytes = base64url::decode(text).map_err(|_| JwkError::BadCoordinate(name))?;
    bytes.try_into().map_err(|_| JwkError::BadCoordinate(name))
}

/// Backticked, length-capped echo of an attacker-controlled value for error messages.
pub(crate) fn quote(value: &str) -> String {
    const MAX: usize = 64;
    if value.len() <= MAX {
        format!("`{value}`")
    } else {
        let cut = (0..=MAX).rev().find(|i| value.is_char_boundary(*i)).unwrap_or(0);
        format!("`{}…`", value.get(..cut).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::json::parse_object;

    fn jwk(text: &str) -> Result<EcPublicJwk, JwkError> {
        EcPublicJwk::from_object(&parse_object(text.as_bytes()).map_err(|_| JwkError::MissingMember("json"))?)
    }

    #[test]
    fn rfc9449_figure_9_thumbprint() {
        let key = jwk(r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#);
        assert_eq!(key.map(|k| k.thumbprint()).ok().as_deref(), Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
    }

    #[test]
    fn rfc7515_a3_key_thumbprint() {
        let key = jwk(r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#);
        assert_eq!(key.map(|k| k.thumbprint()).ok().as_deref(), Some("oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"));
    }

    #[test]
    fn rejects_private_other_curves_and_bad_points() {
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let d = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
        assert_eq!(jwk(&format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}","d":"{d}"}}"#)), Err(JwkError::PrivateMember("d")));
        assert_eq!(jwk(&format!(r#"{{"kty":"EC","crv":"P-384","x":"{x}","y":"{y}"}}"#)), Err(JwkError::UnsupportedCurve("`P-384`".into())));
        assert_eq!(jwk(&format!(r#"{{"kty":"RSA","crv":"P-256","x":"{x}","y":"{y}"}}"#)), Err(JwkError::UnsupportedKeyType("`RSA`".into())));
        assert_eq!(jwk(&format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}"}}"#)), Err(JwkError::NotOnCurve));
        assert_eq!(jwk(&format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}A","y":"{y}"}}"#)), Err(JwkError::BadCoordinate("x")));
        assert_eq!(jwk(&format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}"}}"#)), Err(JwkError::MissingMember("y")));
        assert_eq!(jwk(r#"{"kty":"oct","k":"AAAA"}"#), Err(JwkError::PrivateMember("k")));
    }
}
