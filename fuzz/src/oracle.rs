//! Independent checks of what an allow implies, written from the specifications rather than from
//! the engine's code: a plain base64url decoder, `serde_json`, aws-lc for ES256. If the engine
//! allows a call these checks reject, one of them is wrong, and a security bug is the likelier.

use crate::harness::{Deployment, HOST_REVOKED_AGENT, ISSUER, ISSUER_KID, keys, status_lists};
use agentgate::mint::KeyPair;
use agentgate_engine::settings::DpopMode;
use agentgate_engine::status_list::StatusListMode;
use agentgate_engine::{CheckRequest, Decision, Outcome};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A compact JWS read the lenient way (any JSON parser would do).
#[derive(Debug, Clone)]
pub struct Jws {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub signing_input: String,
    pub signature: Vec<u8>,
}

/// Canonical base64url without padding, decoded.
pub fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok().filter(|bytes| URL_SAFE_NO_PAD.encode(bytes) == text)
}

/// Three canonical base64url parts, JSON objects for header and payload.
pub fn jws(text: &str) -> Option<Jws> {
    let parts: Vec<&str> = text.split('.').collect();
    let [h, p, s] = parts.as_slice() else { return None };
    let decode = b64;
    let object = |bytes: Vec<u8>| match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    Some(Jws { header: object(decode(h)?)?, claims: object(decode(p)?)?, signing_input: format!("{h}.{p}"), signature: decode(s)? })
}

/// True if `jws` carries a valid ES256 signature under the public key `sec1` (uncompressed).
pub fn verifies(jws: &Jws, sec1: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, sec1).verify(jws.signing_input.as_bytes(), &jws.signature).is_ok()
}

/// True if `jws` was signed by `key`.
pub fn signed_by(jws: &Jws, key: &KeyPair) -> bool {
    let public = key.public_key();
    verifies(jws, public.sec1())
}

/// `typ` names `application/<expected>` (RFC 7515 §4.1.9: case-insensitive, prefix optional).
pub fn typ_is(header: &Map<String, Value>, expected: &str) -> bool {
    let Some(typ) = header.get("typ").and_then(Value::as_str) else { return false };
    let lower = typ.to_ascii_lowercase();
    lower == expected || lower.strip_prefix("application/") == Some(expected)
}

/// A NumericDate, fractions floored.
pub fn date(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f.floor() as i64))
}

/// A non-empty string claim.
pub fn string<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `aud` as a list.
pub fn audiences(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The `act` chain's subjects, outermost first; `None` if a level is not an object with a `sub`.
pub fn actors(claims: &Map<String, Value>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut current = claims.get("act");
    while let Some(act) = current {
        let act = act.as_object()?;
        out.push(string(act, "sub")?.to_owned());
        current = act.get("act");
    }
    Some(out)
}

/// RFC 7638 thumbprint of a P-256 JWK and its uncompressed point, from the decoded coordinates.
pub fn ec_jwk(jwk: &Map<String, Value>) -> Option<(String, Vec<u8>)> {
    if jwk.get("kty")?.as_str()? != "EC" || jwk.get("crv")?.as_str()? != "P-256" {
        return None;
    }
    let x = URL_SAFE_NO_PAD.decode(jwk.get("x")?.as_str()?).ok().filter(|b| b.len() == 32)?;
    let y = URL_SAFE_NO_PAD.decode(jwk.get("y")?.as_str()?).ok().filter(|b| b.len() == 32)?;
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, URL_SAFE_NO_PAD.encode(&x), URL_SAFE_NO_PAD.encode(&y));
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    Some((thumbprint, sec1))
}

/// What every decision must satisfy, allowed or not.
pub fn check_shape(decision: &Decision) {
    assert_eq!(decision.allowed, decision.outcome == Outcome::Allowed, "`allowed` disagrees with outcome `{}`", decision.outcome);
    if !decision.allowed {
        assert!(!decision.reason.is_empty(), "a deny ({}) without a reason", decision.outcome);
    }
    if decision.outcome == Outcome::UseDpopNonce {
        assert!(decision.dpop_nonce.is_some(), "`use_dpop_nonce` without a nonce");
    }
}

/// What an accepted access token must be, for `d` at `now`: present, signed by the trusted
/// issuer key, valid now, for this service. Panics with the broken rule; returns it read.
pub fn check_token(d: &Deployment, token: &str, now: i64) -> Jws {
    let s = &d.settings;
    let skew = i64::try_from(s.limits.clock_skew_secs).unwrap();
    let who = d.name;
    let at = jws(token).unwrap_or_else(|| panic!("{who}: accepted a token that is not a canonical compact JWS"));
    assert!(signed_by(&at, &keys().issuer), "{who}: accepted a token not signed by the trusted issuer key");
    assert_eq!(at.header.get("alg").and_then(Value::as_str), Some("ES256"), "{who}: accepted a token with `alg` other than ES256");
    assert!(typ_is(&at.header, "at+jwt"), "{who}: accepted a token whose `typ` is not `at+jwt`");
    assert_eq!(at.header.get("kid").and_then(Value::as_str), Some(ISSUER_KID), "{who}: accepted a token whose `kid` is not the issuer key's");
    for forbidden in ["crit", "jwk", "jku", "x5u", "x5c"] {
        assert!(!at.header.contains_key(forbidden), "{who}: accepted a token with a `{forbidden}` header");
    }
    let c = &at.claims;
    assert_eq!(c.get("iss").and_then(Value::as_str), Some(ISSUER), "{who}: accepted a token of another issuer");
    assert!(string(c, "sub").is_some(), "{who}: accepted a token without `sub`");
    assert!(string(c, "jti").is_some(), "{who}: accepted a token without `jti`");
    assert!(string(c, "client_id").is_some(), "{who}: accepted a token without `client_id`");
    let exp = date(c, "exp").unwrap_or_else(|| panic!("{who}: accepted a token without a NumericDate `exp`"));
    let iat = date(c, "iat").unwrap_or_else(|| panic!("{who}: accepted a token without a NumericDate `iat`"));
    assert!(exp > iat, "{who}: accepted a token with `exp` {exp} <= `iat` {iat}");
    assert!(u64::try_from(exp - iat).unwrap() <= s.limits.max_token_lifetime_secs, "{who}: accepted a token living {}s", exp - iat);
    assert!(now < exp + skew, "{who}: accepted a token expired at {exp} (now {now})");
    assert!(iat <= now + skew, "{who}: accepted a token issued in the future ({iat})");
    if c.contains_key("nbf") {
        let nbf = date(c, "nbf").unwrap_or_else(|| panic!("{who}: accepted a token with a malformed `nbf`"));
        assert!(nbf <= now + skew, "{who}: accepted a token not valid before {nbf}");
    }
    assert!(audiences(c).iter().any(|a| s.audiences.contains(a)), "{who}: accepted a token for another audience");
    let chain = actors(c).unwrap_or_else(|| panic!("{who}: accepted a token with a malformed `act`"));
    assert!(chain.len() <= s.limits.max_delegation_depth as usize, "{who}: accepted a chain of {} actors", chain.len());
    at
}

/// What an allowed decision of `d`'s engine for `req` implies, checked from the credentials
/// themselves. Panics with the broken rule.
pub fn check_allowed(d: &Deployment, req: &CheckRequest, decision: &Decision) {
    if !decision.allowed {
        return;
    }
    let s = &d.settings;
    let skew = i64::try_from(s.limits.clock_skew_secs).unwrap();
    let now = req.now.map_or(crate::harness::NOW, |n| i64::try_from(n).unwrap());
    let who = d.name;
    let authorization = req.credentials.authorization.as_deref().unwrap_or_else(|| panic!("{who}: allowed without an `Authorization`"));
    let (scheme, token) = authorization.split_once(' ').unwrap_or_else(|| panic!("{who}: allowed with a malformed `Authorization`"));
    let scheme = scheme.to_ascii_lowercase();
    assert!(scheme == "dpop" || scheme == "bearer", "{who}: allowed with the scheme `{scheme}`");
    let at = check_token(d, token, now);
    let c = &at.claims;
    let (sub, jti) = (string(c, "sub").unwrap_or_default(), string(c, "jti").unwrap_or_default());
    let chain = actors(c).unwrap_or_default();

    // The decision reports what the token says.
    assert_eq!(decision.user.as_deref(), Some(sub), "{who}: the decision's user is not the token's `sub`");
    assert_eq!(decision.token_id.as_deref(), Some(jti), "{who}: the decision's token id is not the token's `jti`");
    assert_eq!(decision.chain, chain, "{who}: the decision's chain is not the token's `act` chain");

    // Key binding and the proof (RFC 9449).
    match c.get("cnf") {
        Some(cnf) => {
            let jkt = cnf.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("jkt")).and_then(Value::as_str);
            let jkt = jkt.unwrap_or_else(|| panic!("{who}: allowed a token whose `cnf` is not just `jkt`"));
            assert_eq!(scheme, "dpop", "{who}: allowed a bound token presented as `Bearer`");
            assert_ne!(s.dpop.mode, DpopMode::Off, "{who}: allowed a bound token with DPoP off");
            let proof = req.credentials.dpop.as_deref().unwrap_or_else(|| panic!("{who}: allowed a bound token without a proof"));
            let p = jws(proof).unwrap_or_else(|| panic!("{who}: allowed a proof that is not a canonical compact JWS"));
            assert_eq!(p.header.get("alg").and_then(Value::as_str), Some("ES256"), "{who}: allowed a proof with `alg` other than ES256");
            assert!(typ_is(&p.header, "dpop+jwt"), "{who}: allowed a proof whose `typ` is not `dpop+jwt`");
            let jwk = p.header.get("jwk").and_then(Value::as_object).unwrap_or_else(|| panic!("{who}: allowed a proof without `jwk`"));
            assert!(!jwk.contains_key("d"), "{who}: allowed a proof carrying a private key");
            let (thumbprint, sec1) = ec_jwk(jwk).unwrap_or_else(|| panic!("{who}: allowed a proof whose `jwk` is not a P-256 key"));
            assert!(verifies(&p, &sec1), "{who}: allowed a proof whose signature does not verify with its `jwk`");
            assert_eq!(thumbprint, jkt, "{who}: allowed a proof made with a key other than the token's `cnf.jkt`");
            assert_eq!(decision.key_thumbprint.as_deref(), Some(jkt), "{who}: the decision's key is not the token's `cnf.jkt`");
            let http = req.http.as_ref().unwrap_or_else(|| panic!("{who}: allowed a proof without the HTTP request"));
            assert_eq!(p.claims.get("htm").and_then(Value::as_str), Some(http.method.as_str()), "{who}: allowed a proof for another method");
            let htu = p.claims.get("htu").and_then(Value::as_str).unwrap_or_else(|| panic!("{who}: allowed a proof without `htu`"));
            let same = agentgate_engine::dpop::normalize_uri(htu).ok().zip(agentgate_engine::dpop::normalize_uri(&http.uri).ok());
            assert!(same.is_some_and(|(a, b)| a == b), "{who}: allowed a proof for `{htu}` on `{}`", http.uri);
            let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
            assert_eq!(p.claims.get("ath").and_then(Value::as_str), Some(ath.as_str()), "{who}: allowed a proof for another token");
            let piat = date(&p.claims, "iat").unwrap_or_else(|| panic!("{who}: allowed a proof without `iat`"));
            let (max_age, max_future) = (i64::try_from(s.dpop.max_age_secs).unwrap(), i64::try_from(s.dpop.max_future_secs).unwrap());
            assert!(piat >= now - max_age && piat <= now + max_future, "{who}: allowed a proof issued at {piat} (now {now})");
            let pjti = string(&p.claims, "jti").unwrap_or_else(|| panic!("{who}: allowed a proof without `jti`"));
            assert!(pjti.len() <= 256, "{who}: allowed a proof `jti` of {} bytes", pjti.len());
            if s.dpop.nonce.is_some() {
                assert!(p.claims.get("nonce").is_some_and(Value::is_string), "{who}: allowed a proof without the server nonce");
            }
        }
        None => {
            assert_eq!(scheme, "bearer", "{who}: allowed an unbound token under the `DPoP` scheme");
            assert_ne!(s.dpop.mode, DpopMode::Required, "{who}: allowed an unbound token where DPoP is required");
            assert_eq!(decision.key_thumbprint, None, "{who}: an unbound call reports a proof key");
        }
    }

    // The agent identity, when presented or required.
    match req.credentials.agent_identity.as_deref() {
        Some(identity) => {
            let current = chain.first().unwrap_or_else(|| panic!("{who}: allowed an identity for a token without an actor"));
            let id = jws(identity).unwrap_or_else(|| panic!("{who}: allowed an identity that is not a canonical compact JWS"));
            assert!(signed_by(&id, &keys().domain), "{who}: allowed an identity not signed by the trust domain key");
            assert_eq!(id.header.get("alg").and_then(Value::as_str), Some("ES256"), "{who}: allowed an identity with `alg` other than ES256");
            assert_eq!(string(&id.claims, "sub"), Some(current.as_str()), "{who}: allowed an identity of another workload");
            let exp = date(&id.claims, "exp").unwrap_or_else(|| panic!("{who}: allowed an identity without `exp`"));
            assert!(now < exp + skew, "{who}: allowed an identity expired at {exp}");
            if let Some(cnf) = id.claims.get("cnf") {
                let key = cnf.get("jwk").and_then(Value::as_object).and_then(ec_jwk).map(|(t, _)| t);
                assert!(key.is_some() && key == decision.key_thumbprint, "{who}: allowed an identity bound to another key than the proof's");
            } else {
                assert!(!typ_is(&id.header, "wit+jwt"), "{who}: allowed a workload identity token without `cnf`");
            }
        }
        None => assert!(!s.identity.required || chain.is_empty(), "{who}: allowed an agent call without the required identity"),
    }

    // Revocations: the configuration's own list and the host's.
    for actor in &chain {
        assert!(!d.revoked_agents.contains(actor) && actor != HOST_REVOKED_AGENT, "{who}: allowed a call through the revoked agent `{actor}`");
    }

    // The token's status list entry.
    if d.status_mode != StatusListMode::Off {
        match c.get("status") {
            None => assert_ne!(d.status_mode, StatusListMode::Required, "{who}: allowed a token without the required status reference"),
            Some(status) => {
                let list = &status["status_list"];
                let (uri, idx) = (list["uri"].as_str(), list["idx"].as_u64());
                let served = uri.and_then(|u| status_lists().get(u)).unwrap_or_else(|| panic!("{who}: allowed a token whose status list is not served"));
                assert!(served.usable, "{who}: allowed a token checked against an unusable status list");
                let entry = idx.and_then(|i| usize::try_from(i).ok()).and_then(|i| served.entries.get(i));
                assert_eq!(entry, Some(&0), "{who}: allowed a token whose status entry is {entry:?}");
            }
        }
    }
    let _ = ISSUER;
}
