//! OAuth Token Status List (draft-ietf-oauth-status-list-21): a token may carry
//! `status.status_list {idx, uri}`; the Status List Token published at `uri` says, in `bits` bits
//! per token, whether it is valid (0x00), invalid (0x01), suspended (0x02) or in an
//! application-specific state.
//!
//! The Status List Token is a credential like any other here: a compact JWS with `typ`
//! `statuslist+jwt`, signed by a key of the issuer trusted for that token's status lists (its own
//! issuer unless configured otherwise), its `sub` equal to the `uri` the token names (§5.1), not
//! expired. The list is ZLIB-compressed (RFC 1950) and inflated with a bound, so a small
//! compressed bomb cannot take memory (§4.1, §13). Status values other than "valid" deny: the
//! engine cannot honour a state it does not know (fail closed).

use crate::claims::{self, ClaimError};
use crate::jose::base64url;
use crate::jose::es256::SignatureVerifier;
use crate::jose::json::JsonObject;
use crate::jose::jwk::quote;
use crate::jose::jws;
use crate::jose::media_type::typ_matches;
use crate::trust::KeySet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The draft revision these rules follow.
pub const DRAFT: &str = "draft-ietf-oauth-status-list-21";

/// How an issuer's tokens are checked against status lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusListMode {
    /// Every token must reference a status list, and it is checked.
    Required,
    /// A token that references a status list is checked; others pass.
    #[default]
    WhenPresent,
    /// References are ignored.
    Off,
}

impl StatusListMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusListMode::Required => "required",
            StatusListMode::WhenPresent => "when-present",
            StatusListMode::Off => "off",
        }
    }
}

/// A token's reference into a status list (§6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRef {
    /// The index of the token's entry.
    pub idx: u64,
    /// Where the Status List Token is published.
    pub uri: String,
}

/// Reads `status.status_list` from verified claims, if present.
pub fn reference(claims: &JsonObject) -> Result<Option<StatusRef>, String> {
    let Some(status) = claims.get("status") else { return Ok(None) };
    let Value::Object(status) = status else {
        return Err("has a `status` claim that is not a JSON object".into());
    };
    let Some(list) = status.get("status_list") else {
        // Other status mechanisms may exist (§6.1); none is understood here, so none can pass.
        let names: Vec<String> = status.keys().map(|k| format!("`{}`", k.escape_default())).collect();
        return Err(format!("has a `status` claim without `status_list` ({}); no other status mechanism is supported", names.join(", ")));
    };
    let Value::Object(list) = list else {
        return Err("has a `status.status_list` that is not a JSON object".into());
    };
    let idx = list.get("idx").and_then(Value::as_u64).ok_or("has a `status.status_list.idx` that is not a non-negative integer")?;
    let uri = match list.get("uri") {
        Some(Value::String(uri)) if uri.starts_with("https://") || uri.starts_with("http://") => uri.clone(),
        _ => return Err("has a `status.status_list.uri` that is not an http(s) URI".into()),
    };
    Ok(Some(StatusRef { idx, uri }))
}

/// A verified Status List Token's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    /// Bits per entry: 1, 2, 4 or 8.
    bits: u8,
    /// The inflated byte array.
    bytes: Vec<u8>,
    /// `iat` of the token.
    pub issued_at: i64,
    /// `exp` of the token.
    pub expires_at: Option<i64>,
    /// `ttl` of the token, seconds.
    pub ttl_secs: Option<u64>,
    /// base64url SHA-256 of the token text: how host and engine name this version.
    pub digest: String,
}

/// What a Status List Token is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ListCheck<'a> {
    /// The `uri` the referenced token names.
    pub uri: &'a str,
    /// The issuer trusted for this list, and its keys.
    pub issuer: &'a str,
    /// That issuer's keys.
    pub keys: &'a KeySet,
    /// Now, unix seconds.
    pub now: i64,
    /// Leeway for `exp` and `iat`.
    pub skew_secs: i64,
    /// Largest accepted token text.
    pub max_token_bytes: usize,
    /// Largest accepted inflated list.
    pub max_list_bytes: usize,
}

/// The `iss` of a Status List Token, read without verifying it (for a host choosing keys).
pub fn unverified_issuer(token: &str) -> Option<String> {
    let jws = jws::parse(token, usize::MAX).ok()?;
    jws.unverified_claim("iss").and_then(Value::as_str).map(str::to_owned)
}

/// The `kid` of a Status List Token, read without verifying it.
pub fn unverified_kid(token: &str) -> Option<String> {
    jws::parse(token, usize::MAX).ok()?.header_str("kid").map(str::to_owned)
}

/// The `iat` of a Status List Token, read without verifying it (a host ordering copies it has
/// verified).
pub fn unverified_issued_at(token: &str) -> Option<u64> {
    jws::parse(token, usize::MAX).ok()?.unverified_claim("iat").and_then(Value::as_u64)
}

/// base64url SHA-256 of a Status List Token's text.
pub fn digest(token: &str) -> String {
    base64url::encode(&Sha256::digest(token.as_bytes()))
}

/// Verifies a Status List Token (§5.1, §8.3) and inflates its list.
pub fn verify(token: &str, check: ListCheck<'_>, verifier: &dyn SignatureVerifier) -> Result<StatusList, String> {
    let jws = jws::parse(token, check.max_token_bytes).map_err(|e| format!("status list token {e}"))?;
    match jws.header_str("typ") {
        Some(typ) if typ_matches(typ, "statuslist+jwt") => {}
        Some(typ) => return Err(format!("status list token has `typ` {}, expected `statuslist+jwt`", quote(typ))),
        None => return Err("status list token has no `typ` header, expected `statuslist+jwt`".into()),
    }
    if let Some(name) = ["jwk", "jku", "x5u", "x5c"].iter().find(|h| jws.header().contains_key(**h)) {
        return Err(format!("status list token carries a `{name}` header; keys come only from the configured JWKS"));
    }
    let kid = match jws.header_str("kid") {
        Some(kid) if !kid.is_empty() => kid.to_owned(),
        _ => return Err("status list token has no `kid` header".into()),
    };
    let Some(key) = check.keys.get(&kid) else {
        return Err(format!("status list token key id {} is not in the JWKS of issuer {}", quote(&kid), quote(check.issuer)));
    };
    let verified = jws
        .verify(&key.key, verifier)
        .map_err(|_| format!("status list token signature does not verify with key {} of issuer {}", quote(&kid), quote(check.issuer)))?;
    let c = &verified.claims;
    let claim = |e: ClaimError| format!("status list token {e}");
    let sub = claims::required_str(c, "sub").map_err(claim)?;
    if sub != check.uri {
        return Err(format!("status list token `sub` {} is not the `uri` the token names {}", quote(sub), quote(check.uri)));
    }
    if let Some(iss) = c.get("iss")
        && iss.as_str() != Some(check.issuer)
    {
        return Err(format!("status list token `iss` is not the issuer trusted for this list {}", quote(check.issuer)));
    }
    let issued_at = claims::required_date(c, "iat").map_err(claim)?;
    if issued_at > check.now.saturating_add(check.skew_secs) {
        return Err(format!("status list token was issued in the future (`iat` {issued_at}, now {})", check.now));
    }
    let expires_at = claims::numeric_date(c, "exp").map_err(claim)?;
    if let Some(exp) = expires_at
        && check.now >= exp.saturating_add(check.skew_secs)
    {
        return Err(format!("status list token expired at {exp} (now {})", check.now));
    }
    let ttl_secs = match c.get("ttl") {
        None => None,
        Some(v) => Some(v.as_u64().filter(|t| *t > 0).ok_or("status list token `ttl` is not a positive number of seconds")?),
    };
    let Some(Value::Object(list)) = c.get("status_list") else {
        return Err("status list token lacks the `status_list` object".into());
    };
    let bits = match list.get("bits").and_then(Value::as_u64) {
        Some(b @ (1 | 2 | 4 | 8)) => u8::try_from(b).unwrap_or(1),
        _ => return Err("status list `bits` is not 1, 2, 4 or 8".into()),
    };
    let compressed = match list.get("lst") {
        Some(Value::String(lst)) => base64url::decode(lst).map_err(|_| "status list `lst` is not base64url".to_owned())?,
        _ => return Err("status list lacks the string `lst`".into()),
    };
    let bytes = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, check.max_list_bytes).map_err(|e| match e.status {
        miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
            format!("status list inflates to more than {} bytes (`limits.max_status_list_bytes`); refused", check.max_list_bytes)
        }
        _ => "status list `lst` is not a ZLIB stream".to_owned(),
    })?;
    Ok(StatusList { bits, bytes, issued_at, expires_at, ttl_secs, digest: digest(token) })
}

impl StatusList {
    /// Entries in the list.
    pub fn len(&self) -> u64 {
        (self.bytes.len() as u64).saturating_mul(8 / u64::from(self.bits))
    }

    /// True if the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The status at `idx` (§4.1: entry 0 in the least significant bits of byte 0).
    pub fn status(&self, idx: u64) -> Option<u8> {
        let per_byte = 8 / u64::from(self.bits);
        let byte = self.bytes.get(usize::try_from(idx / per_byte).ok()?)?;
        let shift = (idx % per_byte) * u64::from(self.bits);
        let mask = u8::try_from((1u16 << self.bits) - 1).unwrap_or(u8::MAX);
        Some((byte >> shift) & mask)
    }

    /// Whether the list may still be used at `now`.
    pub fn is_expired(&self, now: i64, skew_secs: i64) -> bool {
        self.expires_at.is_some_and(|exp| now >= exp.saturating_add(skew_secs))
    }
}

/// The meaning of a status value (§7.1); `None` for "valid".
pub fn describe(status: u8) -> Option<String> {
    match status {
        0x00 => None,
        0x01 => Some("invalid (0x01)".into()),
        0x02 => Some("suspended (0x02)".into()),
        other => Some(format!("in the status {other:#04x}, which this service does not know (only 0x00 is valid)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(bits: u8, bytes: &[u8]) -> StatusList {
        StatusList { bits, bytes: bytes.to_vec(), issued_at: 0, expires_at: None, ttl_secs: None, digest: String::new() }
    }

    /// The draft's own examples (§4.1): one bit per entry over [0xb9, 0xa3], two bits over
    /// [0xc9, 0x44, 0xf9].
    #[test]
    fn reads_entries_as_the_draft_packs_them() {
        let one = list(1, &[0xb9, 0xa3]);
        let got: Vec<u8> = (0..16).map(|i| one.status(i).unwrap()).collect();
        assert_eq!(got, [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]);
        assert_eq!(one.len(), 16);
        assert_eq!(one.status(16), None, "past the end");
        let two = list(2, &[0xc9, 0x44, 0xf9]);
        let got: Vec<u8> = (0..12).map(|i| two.status(i).unwrap()).collect();
        assert_eq!(got, [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]);
        assert_eq!(list(4, &[0x21]).status(1), Some(2));
        assert_eq!(list(8, &[7, 9]).status(1), Some(9));
        assert_eq!(list(8, &[7, 9]).status(u64::MAX), None);
    }

    #[test]
    fn the_drafts_compressed_example_inflates() {
        let bytes = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&base64url::decode("eNrbuRgAAhcBXQ").unwrap(), 16).unwrap();
        assert_eq!(bytes, [0xb9, 0xa3]);
        let bomb = miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; 1 << 20], 10);
        assert!(bomb.len() < 2048, "a megabyte of zeros compresses to {} bytes", bomb.len());
        let inflated = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&bomb, 1 << 16);
        assert!(inflated.is_err(), "inflating past the limit is refused");
    }

    #[test]
    fn status_references_are_strict() {
        let parse = |v: serde_json::Value| reference(v.as_object().unwrap());
        assert_eq!(parse(serde_json::json!({})), Ok(None));
        assert_eq!(
            parse(serde_json::json!({"status": {"status_list": {"idx": 3, "uri": "https://as/s/1"}}})),
            Ok(Some(StatusRef { idx: 3, uri: "https://as/s/1".into() }))
        );
        assert!(parse(serde_json::json!({"status": {"status_list": {"idx": -1, "uri": "https://as/s/1"}}})).is_err());
        assert!(parse(serde_json::json!({"status": {"status_list": {"idx": 1, "uri": "ftp://as/s/1"}}})).is_err());
        assert!(parse(serde_json::json!({"status": {"identifier_list": {}}})).unwrap_err().contains("no other status mechanism"));
    }
}
