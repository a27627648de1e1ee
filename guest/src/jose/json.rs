//! Strict JSON for JOSE headers and claims: UTF-8, an object at the top, no duplicate member
//! names at any depth (RFC 7515 §4, RFC 7519 §4; a last-wins parser would let an attacker hide a
//! claim from one component and show it to another).

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A JSON object whose members were checked for duplicates at every depth.
pub type JsonObject = Map<String, Value>;

/// Why a JSON text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The bytes are not UTF-8 (RFC 8725 §3.7).
    #[error("is not UTF-8")]
    NotUtf8,
    /// A member name occurs twice in one object.
    #[error("has the member `{0}` twice")]
    DuplicateMember(String),
    /// Valid JSON, but not an object.
    #[error("is not a JSON object")]
    NotAnObject,
    /// Not valid JSON.
    #[error("is not valid JSON ({0})")]
    Syntax(String),
}

/// Parses `bytes` as one JSON object, rejecting duplicate member names at any depth.
pub fn parse_object(bytes: &[u8]) -> Result<JsonObject, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::NotUtf8)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = match de.deserialize_any(StrictVisitor) {
        Ok(v) => v,
        Err(e) => return Err(classify(e)),
    };
    de.end().map_err(classify)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

const DUPLICATE_MARK: &str = "agentgate-duplicate-member:";

fn classify(e: serde_json::Error) -> JsonError {
    let text = e.to_string();
    match text.strip_prefix(DUPLICATE_MARK) {
        Some(rest) => {
            // serde_json appends " at line L column C"; keep only the name.
            let name = rest.rsplit_once(" at line ").map_or(rest, |(n, _)| n);
            JsonError::DuplicateMember(name.to_owned())
        }
        None => JsonError::Syntax(text),
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE_MARK}{key}")));
            }
            let value = access.next_value_seed(StrictSeed)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

struct StrictSeed;

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_objects_and_rejects_everything_else() {
        assert!(parse_object(br#"{"a":1,"b":{"c":[1,2,{"d":null}]}}"#).is_ok());
        assert_eq!(parse_object(br#"{"a":1,"a":2}"#), Err(JsonError::DuplicateMember("a".into())));
        assert_eq!(parse_object(br#"{"a":{"b":1,"b":1}}"#), Err(JsonError::DuplicateMember("b".into())));
        assert_eq!(parse_object(br#"{"a":[{"x":1,"x":1}]}"#), Err(JsonError::DuplicateMember("x".into())));
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"\"s\""), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"{\"a\":\"\xff\"}"), Err(JsonError::NotUtf8));
        assert!(matches!(parse_object(b"{\"a\":1} x"), Err(JsonError::Syntax(_))));
        assert!(matches!(parse_object(br#"{"a":"\ud800"}"#), Err(JsonError::Syntax(_))), "lone surrogate");
        assert!(matches!(parse_object(b""), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "1");
        assert!(matches!(parse_object(deep.as_bytes()), Err(JsonError::Syntax(_))));
    }
}
