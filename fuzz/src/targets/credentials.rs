//! The credentials one by one, each signed by the harness so that mutations reach the rules
//! behind the signature check:
//!
//! - `access_token` (access_token.rs, claims.rs, delegation.rs): flags, token header, claims;
//! - `dpop` (dpop.rs): flags, proof header, proof claims (`$ath`, `$nonce`), method, URI;
//! - `identity` (identity.rs, spiffe.rs): flags, header, claims, the token's actor;
//! - `status_list` (status_list.rs): flags, header, claims, the `uri` the token names, indexes.
//!
//! Flags bits 0–1 choose the signer (`harness::Signer`); `Absent` takes the header section as the
//! whole credential, unsigned, so literal tokens (two parts, JSON serialization…) are fuzzed too.

use super::verifier;
use crate::harness::{self, AGENT, ISSUER, MAIL_URI, NOW, Sections, Signer, bound_mail_token, deployment, keys, replace, sign_raw};
use crate::oracle;
use agentgate::mint::KeyPair;
use agentgate_engine::access_token::{self, TokenCheck};
use agentgate_engine::decision::Outcome;
use agentgate_engine::dpop::{self, ProofCheck};
use agentgate_engine::identity::{self, IdentityKind};
use agentgate_engine::nonce::NonceIssuer;
use agentgate_engine::spiffe::SpiffeId;
use agentgate_engine::status_list::{self, ListCheck};
use serde_json::Value;
use std::sync::OnceLock;

/// The credential a target checks: signed by `key` (or as `signer` says), or the literal text.
fn credential(s: &Sections<'_>, key: &KeyPair, header: &[u8], claims: &[u8]) -> (String, Signer) {
    let signer = Signer::from_bits(s.flags);
    match signer {
        Signer::Absent => (String::from_utf8_lossy(header).into_owned(), signer),
        _ => (sign_raw(key, signer, header, claims), signer),
    }
}

pub fn access_token(data: &[u8]) {
    let s = Sections::new(data);
    let (token, signer) = credential(&s, &keys().issuer, s.bytes(0), s.bytes(1));
    // Bits 2–3: the mail demo (depth 4), the home demo (depth 2, another audience), payments.
    let d = deployment([0, 1, 6, 0][usize::from((s.flags >> 2) & 3)]);
    let check = TokenCheck { settings: &d.settings, trust: &d.trust, now: NOW };
    let verified = access_token::verify(&token, check, verifier());
    // What the engine caches (the clock-free part) plus the clock check is the same verdict.
    let split = access_token::verify_timeless(&token, check, verifier()).and_then(|v| access_token::check_times(&v, check).map(|()| v));
    assert_eq!(verified, split, "`verify` and `verify_timeless` + `check_times` disagree");
    match verified {
        Err(reason) => assert!(!reason.is_empty(), "a rejection without a reason"),
        Ok(v) => {
            assert_eq!(signer, Signer::Trusted, "accepted a token signed as {signer:?}");
            let at = oracle::check_token(d, &token, NOW);
            let c = &at.claims;
            assert_eq!(Some(v.subject.as_str()), oracle::string(c, "sub"));
            assert_eq!(Some(v.jti.as_str()), oracle::string(c, "jti"));
            assert_eq!(Some(v.client_id.as_str()), oracle::string(c, "client_id"));
            assert_eq!((Some(v.issued_at), Some(v.expires_at)), (oracle::date(c, "iat"), oracle::date(c, "exp")));
            assert_eq!(v.chain.subjects(), oracle::actors(c).unwrap_or_default(), "the chain is not the `act` nesting");
            let jkt = c.get("cnf").and_then(|cnf| cnf.get("jkt")).and_then(Value::as_str);
            assert_eq!(v.bound_key.as_deref(), jkt, "the bound key is not `cnf.jkt`");
            if let Some(jkt) = jkt {
                assert!(oracle::b64(jkt).is_some_and(|b| b.len() == 32), "accepted a `cnf.jkt` that is not a SHA-256 thumbprint");
            }
            let scope = c.get("scope").and_then(Value::as_str).unwrap_or_default();
            assert_eq!(v.scopes.join(" "), scope, "the scopes are not the `scope` claim");
            let status = c.get("status").map(|st| (st["status_list"]["idx"].as_u64(), st["status_list"]["uri"].as_str()));
            assert_eq!(v.status.as_ref().map(|r| (Some(r.idx), Some(r.uri.as_str()))), status, "the status reference is not the claim's");
        }
    }
}

/// The nonce issuer of the mail-nonce configuration.
fn nonces() -> &'static NonceIssuer {
    static NONCES: OnceLock<NonceIssuer> = OnceLock::new();
    NONCES.get_or_init(|| NonceIssuer::new(deployment(2).settings.dpop.nonce.as_ref().unwrap()).unwrap())
}

pub fn dpop(data: &[u8]) {
    let s = Sections::new(data);
    let token = bound_mail_token();
    let ath = dpop::ath(token);
    let with_nonces = s.flags & 4 != 0;
    let claims = replace(&replace(s.bytes(1), "$ath", &ath), "$nonce", &nonces().current(NOW));
    let (proof, signer) = credential(&s, &keys().agent, s.bytes(0), &claims);
    let method = Some(s.text(2)).filter(|m| !m.is_empty()).unwrap_or_else(|| "GET".into());
    let uri = Some(s.text(3)).filter(|u| !u.is_empty()).unwrap_or_else(|| MAIL_URI.into());
    // Bit 3: the token is bound to another key than the one the proofs are made with.
    let bound = if s.flags & 8 != 0 { keys().attacker.thumbprint() } else { keys().agent.thumbprint() };
    let d = deployment(if with_nonces { 2 } else { 0 });
    let check = ProofCheck { settings: &d.settings, now: NOW, method: &method, uri: &uri, ath: &ath, bound_key: &bound, nonces: with_nonces.then(nonces) };
    match dpop::verify(&proof, check, verifier()) {
        Err(denial) => {
            let expected = [Outcome::InvalidDpopProof, Outcome::InvalidToken, Outcome::InvalidRequest, Outcome::UseDpopNonce];
            assert!(expected.contains(&denial.outcome), "a proof denied with `{}`", denial.outcome);
            assert!(!denial.reason.is_empty() || denial.outcome == Outcome::UseDpopNonce, "a denial without a reason");
            assert_eq!(denial.dpop_nonce.is_some(), denial.outcome == Outcome::UseDpopNonce, "a nonce on the wrong outcome");
        }
        Ok(verified) => {
            assert_eq!(signer, Signer::Trusted, "accepted a proof signed as {signer:?}");
            let p = oracle::jws(&proof).expect("accepted a proof that is not a canonical compact JWS");
            assert!(oracle::typ_is(&p.header, "dpop+jwt"), "accepted a proof whose `typ` is not `dpop+jwt`");
            let jwk = p.header.get("jwk").and_then(Value::as_object).expect("accepted a proof without a `jwk` object");
            assert!(!jwk.contains_key("d"), "accepted a proof carrying its private key");
            let (thumbprint, sec1) = oracle::ec_jwk(jwk).expect("accepted a proof whose `jwk` is not a P-256 key");
            assert!(oracle::verifies(&p, &sec1), "accepted a proof whose signature does not verify with its `jwk`");
            assert_eq!(thumbprint, bound, "accepted a proof made with another key than the bound one");
            assert_eq!(verified.thumbprint, bound);
            assert_eq!(p.claims.get("htm").and_then(Value::as_str), Some(method.as_str()), "accepted a proof for another method");
            let htu = p.claims.get("htu").and_then(Value::as_str).expect("accepted a proof without `htu`");
            assert_eq!(dpop::normalize_uri(htu).ok().as_deref(), Some(verified.uri.as_str()), "`htu` does not normalize to the request URI");
            assert_eq!(dpop::normalize_uri(&uri).ok().as_deref(), Some(verified.uri.as_str()));
            assert_eq!(p.claims.get("ath").and_then(Value::as_str), Some(ath.as_str()), "accepted a proof for another token");
            let iat = oracle::date(&p.claims, "iat").expect("accepted a proof without `iat`");
            assert_eq!(iat, verified.issued_at);
            let (max_age, max_future) = (d.settings.dpop.max_age_secs as i64, d.settings.dpop.max_future_secs as i64);
            assert!(iat >= NOW - max_age && iat <= NOW + max_future, "accepted a proof issued at {iat}");
            assert_eq!(oracle::string(&p.claims, "jti"), Some(verified.jti.as_str()));
            assert!(verified.jti.len() <= 256, "accepted a `jti` of {} bytes", verified.jti.len());
            if with_nonces {
                let nonce = p.claims.get("nonce").and_then(Value::as_str).expect("accepted a proof without the server nonce");
                assert!(nonces().accepts(nonce, NOW), "accepted a proof with a stale nonce");
            }
        }
    }
}

pub fn identity(data: &[u8]) {
    let s = Sections::new(data);
    let (token, signer) = credential(&s, &keys().domain, s.bytes(0), s.bytes(1));
    let actor = Some(s.text(2)).filter(|a| !a.is_empty()).unwrap_or_else(|| AGENT.into());
    // Bit 2: the mail demo, or the identity-required configuration (same trust domain).
    let d = deployment(if s.flags & 4 != 0 { 4 } else { 0 });
    let skew = d.settings.limits.clock_skew_secs as i64;
    match identity::verify(&token, &actor, &d.settings, &d.trust, NOW, verifier()) {
        Err(reason) => assert!(!reason.is_empty(), "a rejection without a reason"),
        Ok(id) => {
            assert_eq!(signer, Signer::Trusted, "accepted an identity signed as {signer:?}");
            let o = oracle::jws(&token).expect("accepted an identity that is not a canonical compact JWS");
            assert!(oracle::signed_by(&o, &keys().domain), "accepted an identity not signed by the trust domain key");
            assert_eq!(id.spiffe_id.as_str(), actor, "accepted an identity of another workload");
            assert_eq!(oracle::string(&o.claims, "sub"), Some(actor.as_str()));
            assert!(SpiffeId::parse(&actor).is_ok());
            assert_eq!(id.spiffe_id.trust_domain(), "agents.example");
            assert!(actor.starts_with("spiffe://agents.example/") || actor == "spiffe://agents.example", "trust domain read wrongly from `{actor}`");
            let exp = oracle::date(&o.claims, "exp").expect("accepted an identity without `exp`");
            assert!(NOW < exp + skew, "accepted an expired identity");
            if let Some(nbf) = oracle::date(&o.claims, "nbf") {
                assert!(nbf <= NOW + skew, "accepted an identity not yet valid");
            }
            let cnf = o.claims.get("cnf").and_then(|c| c.get("jwk")).and_then(Value::as_object);
            assert_eq!(id.bound_key, cnf.and_then(oracle::ec_jwk).map(|(t, _)| t), "the bound key is not `cnf.jwk`'s thumbprint");
            if let Some(jwk) = cnf {
                assert_eq!(jwk.get("alg").and_then(Value::as_str), Some("ES256"), "accepted a `cnf.jwk` without `alg` ES256");
            }
            match id.kind {
                IdentityKind::WorkloadIdentityToken => {
                    assert!(oracle::typ_is(&o.header, "wit+jwt"));
                    assert!(id.bound_key.is_some(), "accepted a WIT without `cnf.jwk`");
                }
                IdentityKind::JwtSvid => {
                    assert!(o.header.keys().all(|k| ["alg", "kid", "typ"].contains(&k.as_str())), "accepted a JWT-SVID with other headers");
                    let audiences = oracle::audiences(&o.claims);
                    assert!(audiences.iter().any(|a| d.settings.identity_audiences().contains(a)), "accepted a JWT-SVID for another audience");
                }
            }
        }
    }
}

/// The largest inflated list this target accepts: small, so a bomb is refused quickly.
const MAX_LIST_BYTES: usize = 64 * 1024;

pub fn status_list(data: &[u8]) {
    let s = Sections::new(data);
    let (token, signer) = credential(&s, &keys().issuer, s.bytes(0), s.bytes(1));
    let uri = Some(s.text(2)).filter(|u| !u.is_empty()).unwrap_or_else(|| format!("{ISSUER}/status/1"));
    let d = deployment(0);
    let keyset = d.trust.issuer(ISSUER).expect("the demo issuer is trusted");
    let check = ListCheck {
        uri: &uri,
        issuer: ISSUER,
        keys: keyset,
        now: NOW,
        skew_secs: 30,
        max_token_bytes: d.settings.limits.max_status_list_token_bytes,
        max_list_bytes: MAX_LIST_BYTES,
    };
    let Ok(list) = status_list::verify(&token, check, verifier()) else { return };
    assert_eq!(signer, Signer::Trusted, "accepted a status list signed as {signer:?}");
    let o = oracle::jws(&token).expect("accepted a status list that is not a canonical compact JWS");
    assert!(oracle::typ_is(&o.header, "statuslist+jwt"), "accepted a status list whose `typ` is not `statuslist+jwt`");
    assert_eq!(oracle::string(&o.claims, "sub"), Some(uri.as_str()), "accepted a list for another `uri`");
    assert!(o.claims.get("iss").is_none_or(|i| i.as_str() == Some(ISSUER)), "accepted a list of another issuer");
    let iat = oracle::date(&o.claims, "iat").expect("accepted a list without `iat`");
    assert!(iat <= NOW + 30, "accepted a list issued in the future");
    let exp = oracle::date(&o.claims, "exp");
    assert!(exp.is_none_or(|e| NOW < e + 30), "accepted an expired list");
    assert!(!list.is_expired(NOW, 30), "a list accepted as unexpired reads as expired");
    let bits = o.claims["status_list"]["bits"].as_u64().expect("accepted a list without `bits`");
    assert!(matches!(bits, 1 | 2 | 4 | 8), "accepted `bits` {bits}");
    let lst = o.claims["status_list"]["lst"].as_str().expect("accepted a list without `lst`");
    let compressed = oracle::b64(lst).expect("accepted a non-canonical `lst`");
    let bytes = miniz_oxide::inflate::decompress_to_vec_zlib(&compressed).expect("accepted an `lst` that is not ZLIB");
    assert!(bytes.len() <= MAX_LIST_BYTES, "accepted a list of {} bytes", bytes.len());
    let per_byte = 8 / bits;
    assert_eq!(list.len(), bytes.len() as u64 * per_byte, "the entry count");
    assert_eq!(list.status(list.len()), None, "an entry past the end");
    // The entries the input names (section 3, decimal), and the first and last.
    let named = s.text(3);
    let indexes = named.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok());
    for idx in indexes.chain([0, list.len().saturating_sub(1)]).take(16) {
        let expected = usize::try_from(idx / per_byte).ok().and_then(|i| bytes.get(i)).map(|b| (b >> ((idx % per_byte) * bits)) & ((1u16 << bits) - 1) as u8);
        assert_eq!(list.status(idx), expected, "entry {idx} of a {bits}-bit list");
    }
    let _ = harness::status_lists();
}
