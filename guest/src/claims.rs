//! Typed reads of JWT claims (RFC 7519 §4.1) from a verified claims set.

use crate::jose::json::JsonObject;
use serde_json::Value;

/// Latest NumericDate accepted (year 9999): beyond it arithmetic on times could overflow.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// Why a claim could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// A required claim is absent.
    #[error("lacks the required claim `{0}`")]
    Missing(&'static str),
    /// A claim has the wrong JSON type or an unusable value.
    #[error("has a `{0}` claim that is not {1}")]
    Invalid(&'static str, &'static str),
}

/// Reads a required non-empty string claim.
pub fn required_str<'a>(claims: &'a JsonObject, name: &'static str) -> Result<&'a str, ClaimError> {
    match claims.get(name) {
        None => Err(ClaimError::Missing(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(ClaimError::Invalid(name, "a non-empty string")),
    }
}

/// Reads an optional string claim.
pub fn optional_str<'a>(claims: &'a JsonObject, name: &'static str) -> Result<Option<&'a str>, ClaimError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ClaimError::Invalid(name, "a string")),
    }
}

/// Reads a NumericDate (RFC 7519 §2): a JSON number of seconds, fractions floored.
pub fn numeric_date(claims: &JsonObject, name: &'static str) -> Result<Option<i64>, ClaimError> {
    let Some(value) = claims.get(name) else { return Ok(None) };
    let invalid = ClaimError::Invalid(name, "a NumericDate");
    let Value::Number(n) = value else { return Err(invalid) };
    if let Some(i) = n.as_i64() {
        return if (0..=MAX_NUMERIC_DATE as i64).contains(&i) { Ok(Some(i)) } else { Err(invalid) };
    }
    match n.as_f64() {
        // The range check makes the cast exact.
        Some(f) if f.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&f) => Ok(Some(f.floor() as i64)),
        _ => Err(invalid),
    }
}

/// Reads a required NumericDate.
pub fn required_date(claims: &JsonObject, name: &'static str) -> Result<i64, ClaimError> {
    numeric_date(claims, name)?.ok_or(ClaimError::Missing(name))
}

/// Reads `aud`: one string or an array of strings (RFC 7519 §4.1.3).
pub fn audiences(claims: &JsonObject) -> Result<Vec<String>, ClaimError> {
    let invalid = ClaimError::Invalid("aud", "a string or an array of strings");
    match claims.get("aud") {
        None => Err(ClaimError::Missing("aud")),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items.iter().map(|v| v.as_str().map(str::to_owned).ok_or(invalid.clone())).collect(),
        Some(_) => Err(invalid),
    }
}

/// Reads `scope`: a space-separated list of scope tokens (RFC 6749 §3.3, RFC 8693 §4.2), where
/// each token is 1*NQCHAR and tokens are separated by exactly one space.
pub fn scopes(claims: &JsonObject) -> Result<Vec<String>, ClaimError> {
    let invalid = ClaimError::Invalid("scope", "a space-separated string of scope tokens");
    match claims.get("scope") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => s
            .split(' ')
            .map(|token| {
                let nqchar = |c: char| matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E');
                if !token.is_empty() && token.chars().all(nqchar) { Ok(token.to_owned()) } else { Err(invalid.clone()) }
            })
            .collect(),
        Some(_) => Err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::json::parse_object;

    fn claims(text: &str) -> JsonObject {
        parse_object(text.as_bytes()).unwrap_or_default()
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date(&claims(r#"{"exp":1700000000}"#), "exp"), Ok(Some(1_700_000_000)));
        assert_eq!(numeric_date(&claims(r#"{"exp":1700000000.9}"#), "exp"), Ok(Some(1_700_000_000)));
        assert_eq!(numeric_date(&claims(r#"{}"#), "exp"), Ok(None));
        for bad in [r#"{"exp":"1700000000"}"#, r#"{"exp":-1}"#, r#"{"exp":1e300}"#, r#"{"exp":true}"#, r#"{"exp":99999999999999}"#] {
            assert_eq!(numeric_date(&claims(bad), "exp"), Err(ClaimError::Invalid("exp", "a NumericDate")), "{bad}");
        }
    }

    #[test]
    fn scope_lists() {
        assert_eq!(scopes(&claims(r#"{"scope":"mail.read mail.send"}"#)), Ok(vec!["mail.read".into(), "mail.send".into()]));
        assert_eq!(scopes(&claims(r#"{}"#)), Ok(vec![]));
        for bad in [r#"{"scope":["a"]}"#, r#"{"scope":"a  b"}"#, r#"{"scope":" a"}"#, r#"{"scope":"a\"b"}"#, r#"{"scope":"a\tb"}"#] {
            assert!(scopes(&claims(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn audience_forms() {
        assert_eq!(audiences(&claims(r#"{"aud":"x"}"#)), Ok(vec!["x".into()]));
        assert_eq!(audiences(&claims(r#"{"aud":["x","y"]}"#)), Ok(vec!["x".into(), "y".into()]));
        assert!(audiences(&claims(r#"{"aud":[]}"#)).is_err());
        assert!(audiences(&claims(r#"{"aud":[1]}"#)).is_err());
        assert_eq!(audiences(&claims(r#"{}"#)), Err(ClaimError::Missing("aud")));
    }
}
