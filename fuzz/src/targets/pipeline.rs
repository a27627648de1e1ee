//! The decision pipeline.
//!
//! - `entities_context` (authorizer/): the Cedar request built from caller `context` and
//!   `entities`. Input: flags (bits 0–1 the policy set: mail, home, payments, MCP; bit 2 an agent
//!   or a user principal; bits 3–4 proof-bound, agent verified), then action, resource type,
//!   resource id, principal id, `input` JSON, `entities` JSON, scopes, NUL-separated.
//! - `request_json` (host wire.rs, `/v1/check`, then `Engine::check`): the request JSON as
//!   `agentgate check` and the vectors write it, decided by the demo whose schema declares its
//!   action. Input: the JSON text.
//! - `engine` (engine.rs, `Engine::check`): a whole call with credentials the harness signs.
//!   Input: a signers byte (bits 0–1 token, 2–3 proof, 4–5 identity: `harness::Signer`), a
//!   configuration byte (`harness::CONFIGS`, modulo; bit 7 the component build for
//!   `differential`), then token header, token claims, proof header, proof claims (`$ath`,
//!   `$nonce`), identity header, identity claims, and the request JSON (`$token`, `$proof`,
//!   `$identity`), NUL-separated.
//! - `differential`: the `engine` input decided natively and in the component (`agentgate::
//!   Runtime`, the guest-crypto build or the host-crypto build): identical decisions.

use crate::harness::{
    AGENT, CONFIGS, Deployment, FuzzState, ISSUER, MAIL_URI, NOW, Sections, Signer, deployment, deployment_for_action, keys, replace, sign_raw,
};
use crate::oracle;
use agentgate::wire::RequestJson;
use agentgate::{ComponentVerifier, Runtime, RuntimeOptions};
use agentgate_engine::authorizer::context::ContextFacts;
use agentgate_engine::authorizer::{AuthzCall, PrincipalKind};
use agentgate_engine::decision::{Denial, Outcome};
use agentgate_engine::{CheckRequest, Decision, EntityRef};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub fn entities_context(data: &[u8]) {
    let s = Sections::new(data);
    let d = deployment([0, 1, 6, 7][usize::from(s.flags & 3)]);
    let kind = if s.flags & 4 == 0 { PrincipalKind::Agent } else { PrincipalKind::User };
    let principal = Some(s.text(3)).filter(|p| !p.is_empty()).unwrap_or_else(|| if kind == PrincipalKind::Agent { AGENT.into() } else { "alice".into() });
    let (action, resource) = (s.text(0), EntityRef { type_name: s.text(1), id: s.text(2) });
    let (input, entities) = (Some(s.text(4)).filter(|t| !t.is_empty()), Some(s.text(5)).filter(|t| !t.is_empty()));
    let scopes = Some(s.text(6)).filter(|t| !t.is_empty()).unwrap_or_else(|| "mail.read".into());
    let facts = ContextFacts {
        user: "alice".into(),
        scopes: scopes.split(' ').map(str::to_owned).collect(),
        chain: if kind == PrincipalKind::Agent { vec![principal.clone()] } else { Vec::new() },
        issuer: ISSUER.into(),
        token_id: "fuzz-at-0001".into(),
        client_id: "mail-assistant-app".into(),
        age_secs: 10,
        lifetime_secs: 300,
        expires_in_secs: 290,
        proof_bound: s.flags & 8 != 0,
        method: "GET".into(),
        uri: MAIL_URI.into(),
        key: if s.flags & 8 != 0 { keys().agent.thumbprint() } else { String::new() },
        agent_verified: s.flags & 16 != 0,
        trust_domain: if s.flags & 16 != 0 { "agents.example".into() } else { String::new() },
        agent_id: if s.flags & 16 != 0 { principal.clone() } else { String::new() },
    };
    let call = AuthzCall {
        principal_kind: kind,
        principal_id: &principal,
        action: &action,
        resource: &resource,
        facts: &facts,
        input: input.as_deref(),
        entities: entities.as_deref(),
    };
    let authorizer = d.engine.authorizer();
    let first = authorizer.authorize(&call);
    // Again: the entities come from the cache this time; the answer must not change.
    let second = authorizer.authorize(&call);
    assert_eq!(
        first.as_ref().map(normalized_answer).map_err(without_help),
        second.as_ref().map(normalized_answer).map_err(without_help),
        "a second evaluation answered differently"
    );
    // `explain` builds the same request: if it cannot, neither could the decision, and for the
    // same reason.
    if let Err(denial) = authorizer.describe(&call) {
        assert_eq!(first.as_ref().err().map(without_help), Some(without_help(&denial)), "`explain` failed where the decision did not");
    }
    match first {
        Ok(answer) => {
            assert!(!answer.reason.is_empty(), "an answer without a reason");
            if answer.allowed {
                assert!(!answer.policies.is_empty(), "allowed with no determining policy");
            }
        }
        Err(denial) => {
            assert!(matches!(denial.outcome, Outcome::InvalidRequest | Outcome::PolicyDenied), "a request denied with `{}`", denial.outcome);
            assert!(!denial.reason.is_empty(), "a denial without a reason");
        }
    }
}

/// An answer with its policy lists sorted (Cedar reports them from a hash set).
/// A denial's outcome and its message without the help. With several bad attributes in one
/// entity, Cedar 4.14 reports the first it meets in its attribute map's hash order (seeded per
/// map), so two parses of one document can name different errors under the same message, each
/// with its own help (the fourth campaign's find, kept in `regressions/entities_context/`).
fn without_help(d: &Denial) -> (Outcome, String) {
    (d.outcome, d.reason.split(" (help: ").next().unwrap_or_default().to_owned())
}

fn normalized_answer(a: &agentgate_engine::authorizer::PolicyAnswer) -> (bool, Vec<String>, Vec<String>, Option<String>) {
    let (mut policies, mut errors) = (a.policies.clone(), a.errors.clone());
    policies.sort();
    errors.sort();
    let reason = (policies.len() <= 1).then(|| a.reason.clone());
    (a.allowed, policies, errors, reason)
}

/// A decision with its policy and error lists sorted, and its reason when it names several
/// policies dropped: Cedar reports determining policies from a hash set, in no fixed order.
pub fn normalized(d: &Decision) -> Decision {
    let mut n = d.clone();
    n.policies.sort();
    n.errors.sort();
    if n.policies.len() > 1 {
        n.reason.clear();
    }
    n
}

/// Decides `req` on `d`'s native engine and checks the invariants: the shape of any decision,
/// what an allow implies, and the same decision a second time (verified-token and status-list
/// caches warm).
fn decide_and_check(d: &Deployment, req: &CheckRequest) -> Decision {
    let decision = d.engine.check(req);
    oracle::check_shape(&decision);
    oracle::check_allowed(d, req, &decision);
    let again = d.engine.check(req);
    assert_eq!(normalized(&decision), normalized(&again), "{}: the same call decided twice gave two decisions", d.name);
    decision
}

pub fn request_json(data: &[u8]) {
    // `/v1/check` parses strictly first; `agentgate check` only by shape. Both must hold up.
    let strict = agentgate::server::authzen::strict_object(data);
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(strict.is_err(), "the strict parser accepted a body that is not UTF-8");
        return;
    };
    let Ok(parsed) = RequestJson::parse(text) else { return };
    let mut req = parsed.to_check_request(None);
    req.now.get_or_insert(NOW as u64);
    let d = deployment_for_action(&req.action);
    decide_and_check(d, &req);
}

/// The `engine` input, signed and assembled: the configuration and the call.
pub fn engine_request(data: &[u8]) -> Option<(usize, CheckRequest)> {
    let signers = data.first().copied().unwrap_or(0);
    let config = usize::from(data.get(1).copied().unwrap_or(0));
    let s = Sections::new(data.get(1..).unwrap_or_default());
    let sign = |key, bits: u8, header: &[u8], claims: &[u8]| match Signer::from_bits(bits) {
        Signer::Absent => String::new(),
        signer => sign_raw(key, signer, header, claims),
    };
    let token = sign(&keys().issuer, signers, s.bytes(0), s.bytes(1));
    let nonce = deployment(2).engine.settings().dpop.nonce.as_ref().map(|n| agentgate_engine::nonce::NonceIssuer::new(n).map(|i| i.current(NOW)));
    let nonce = nonce.and_then(Result::ok).unwrap_or_default();
    let proof_claims = replace(&replace(s.bytes(3), "$ath", &agentgate_engine::dpop::ath(&token)), "$nonce", &nonce);
    let proof = sign(&keys().agent, signers >> 2, s.bytes(2), &proof_claims);
    let identity = sign(&keys().domain, signers >> 4, s.bytes(4), s.bytes(5));
    let text = replace(&replace(&replace(s.bytes(6), "$token", &token), "$proof", &proof), "$identity", &identity);
    let parsed = RequestJson::parse(std::str::from_utf8(&text).ok()?).ok()?;
    let mut req = parsed.to_check_request(None);
    req.now.get_or_insert(NOW as u64);
    Some((config % CONFIGS.len(), req))
}

pub fn engine(data: &[u8]) {
    let Some((config, req)) = engine_request(data) else { return };
    decide_and_check(deployment(config), &req);
}

/// Component verifiers by (configuration, host crypto), each in its own instance.
type Verifiers = Mutex<HashMap<(usize, bool), ComponentVerifier>>;

fn component_runtime(host_crypto: bool) -> &'static Runtime {
    static GUEST: OnceLock<Runtime> = OnceLock::new();
    static HOST: OnceLock<Runtime> = OnceLock::new();
    let cell = if host_crypto { &HOST } else { &GUEST };
    cell.get_or_init(|| {
        let crypto = if host_crypto { agentgate::config::CryptoPlacement::Host } else { agentgate::config::CryptoPlacement::Guest };
        // A generous budget: a slow machine must not read as a trap.
        let options = RuntimeOptions { crypto, call_timeout: std::time::Duration::from_secs(10), ..RuntimeOptions::default() };
        Runtime::new(options, Arc::new(FuzzState)).expect("the component runtime")
    })
}

pub fn differential(data: &[u8]) {
    let Some((config, req)) = engine_request(data) else { return };
    let host_crypto = data.get(1).is_some_and(|b| b & 0x80 != 0);
    let d = deployment(config);
    let native = decide_and_check(d, &req);
    static VERIFIERS: OnceLock<Verifiers> = OnceLock::new();
    let mut verifiers = VERIFIERS.get_or_init(Verifiers::default).lock().unwrap_or_else(|p| p.into_inner());
    let verifier = verifiers
        .entry((config, host_crypto))
        .or_insert_with(|| component_runtime(host_crypto).verifier(&d.loaded.engine).unwrap_or_else(|e| panic!("{}: {e}", d.name)));
    let component = verifier.check(&req);
    assert_eq!(
        normalized(&native),
        normalized(&component),
        "{}: native and component ({}) decided differently",
        d.name,
        if host_crypto { "host crypto" } else { "guest crypto" }
    );
}
