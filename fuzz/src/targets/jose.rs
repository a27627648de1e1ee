//! `jws`: compact JWS parsing (guest/src/jose/) — the strict JSON parser, strict base64url, the
//! JWS structure rules, P-256 JWKs and thumbprints, `typ` matching, the unverified readers hosts
//! use. Input: any bytes (a token, or a JSON text for the strict parser).

use crate::harness::keys;
use crate::oracle;
use agentgate_engine::jose::json::parse_object;
use agentgate_engine::jose::jwk::EcPublicJwk;
use agentgate_engine::jose::media_type::typ_matches;
use agentgate_engine::jose::{base64url, jws};
use agentgate_engine::status_list;
use serde_json::Value;

/// The largest credential the demo configurations accept.
const LIMIT: usize = 8192;

pub fn jws(data: &[u8]) {
    // The strict parser accepts a subset of JSON (no duplicate members) and reads it as any
    // parser would.
    if let Ok(object) = parse_object(data) {
        let lenient: Value = serde_json::from_slice(data).expect("the strict parser accepted what serde_json rejects");
        assert_eq!(lenient, Value::Object(object), "the strict parser read a document differently from serde_json");
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(bytes) = base64url::decode(text) {
        assert_eq!(base64url::encode(&bytes), text, "base64url accepted a non-canonical encoding");
    }
    let _ = (status_list::unverified_issuer(text), status_list::unverified_kid(text), status_list::unverified_issued_at(text));

    let Ok(parsed) = jws::parse(text, LIMIT) else { return };
    assert!(text.len() <= LIMIT, "parsed a token over the size limit");
    let o = oracle::jws(text).expect("parsed a token that is not three canonical base64url parts with JSON object header and payload");
    assert_eq!(o.header.get("alg").and_then(Value::as_str), Some("ES256"), "parsed a token whose `alg` is not exactly `ES256`");
    assert!(!o.header.contains_key("crit"), "parsed a token with `crit`");
    assert_eq!(o.signature.len(), 64, "parsed a signature of {} bytes", o.signature.len());
    assert_eq!(parsed.signing_input(), o.signing_input, "the signing input is not `header.payload`");
    assert_eq!(parsed.header(), &o.header, "the header reads differently from serde_json's reading");
    for name in ["iss", "sub", "exp", "aud"] {
        assert_eq!(parsed.unverified_claim(name), o.claims.get(name), "claim `{name}` reads differently");
    }
    if let Some(typ) = o.header.get("typ").and_then(Value::as_str) {
        for media in ["at+jwt", "dpop+jwt", "wit+jwt", "statuslist+jwt"] {
            let header = o.header.clone();
            assert_eq!(typ_matches(typ, media), oracle::typ_is(&header, media), "`typ` `{typ}` against `{media}`");
        }
    }
    // An embedded JWK (a DPoP proof's) is accepted only if it is a public P-256 point, and its
    // thumbprint is RFC 7638's.
    if let Some(Value::Object(jwk)) = o.header.get("jwk")
        && let Ok(key) = EcPublicJwk::from_object(jwk)
    {
        assert!(!jwk.contains_key("d"), "accepted a JWK with a private member");
        let (thumbprint, sec1) = oracle::ec_jwk(jwk).expect("accepted a JWK that is not EC P-256 with 32-byte coordinates");
        assert_eq!(key.thumbprint(), thumbprint, "the thumbprint is not RFC 7638's");
        assert_eq!(key.public_key().sec1().as_slice(), sec1.as_slice(), "the key is not the JWK's point");
    }
    // The engine's ES256 check agrees with aws-lc (on a sixteenth of the inputs: it costs more
    // than the parse).
    if super::coin(data) < 16 {
        let issuer = keys().issuer.public_key();
        let ours = parsed.verify(&issuer, super::verifier()).is_ok();
        assert_eq!(ours, oracle::signed_by(&o, &keys().issuer), "the engine and aws-lc disagree on a signature");
    }
}
