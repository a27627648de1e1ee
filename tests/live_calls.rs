//! Calls minted at test time, with keys generated in the test and the wall clock: the revocation
//! file edited while running (through the deployment state serve uses: the memory backend and
//! its mirror), the compromised-agent scenario, replays across threads.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::component::ComponentVerifier;
use agentgate::config::StateSection;
use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate::state::{DeploymentState, LocalState};
use agentgate::{CheckRequest, Decision, Outcome, Runtime, RuntimeOptions};
use agentgate_engine::{Credentials, EntityRef, HttpRequest};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{TempDeployment, mail_deployment};

const ISSUER: &str = "https://as.test.example";
const URI: &str = "https://mail.example.com/mailboxes/alice/messages";
const ASSISTANT: &str = "spiffe://agents.example/mail-assistant";

struct World {
    issuer: KeyPair,
    agent: KeyPair,
    deployment: TempDeployment,
}

fn world() -> World {
    let issuer = KeyPair::generate("live-issuer").unwrap();
    let agent = KeyPair::generate("live-agent").unwrap();
    let deployment = mail_deployment(ISSUER, &mint::jwks(&[&issuer]), None, "revocations = \"revoked.json\"", "\n[dpop]\nmode = \"required\"\n");
    write_atomically(&deployment.dir.path().join("revoked.json"), "{}");
    World { issuer, agent, deployment }
}

/// A fresh bound call by `actor` for alice's mailbox.
fn call(w: &World, actor: &str) -> CheckRequest {
    let mut spec = AccessTokenSpec::new(ISSUER, "alice", "https://mail.example.com");
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec![actor.into()];
    spec.bound_key = Some(w.agent.thumbprint());
    let token = spec.sign(&w.issuer);
    let proof = mint::dpop_proof(&w.agent, "GET", URI, &token, mint::now(), None);
    CheckRequest {
        credentials: Credentials { authorization: Some(format!("DPoP {token}")), dpop: Some(proof), agent_identity: None },
        http: Some(HttpRequest { method: "GET".into(), uri: URI.into() }),
        action: "mail:read".into(),
        resource: EntityRef { type_name: "Mailbox".into(), id: "alice".into() },
        context_json: None,
        entities_json: Some(
            json!([{"uid": {"type": "Mailbox", "id": "alice"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "alice"}}}, "parents": []}]).to_string(),
        ),
        now: None,
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A verifier deciding through the deployment state `serve` uses: proofs in memory, the
/// revocation file mirrored off the request path.
fn gate(w: &World) -> (ComponentVerifier, Arc<DeploymentState>) {
    let section = StateSection { revocation_refresh_ms: 50, revocation_max_staleness_ms: 1000, ..StateSection::default() };
    let state = DeploymentState::open(&section, Some(w.deployment.dir.path().join("revoked.json"))).unwrap();
    let runtime = Runtime::new(RuntimeOptions::default(), Arc::clone(&state) as Arc<dyn agentgate::SharedState>).unwrap();
    let engine = agentgate::EngineConfig { revocations_json: String::new(), ..w.deployment.config.engine.clone() };
    (runtime.verifier(&engine).unwrap(), state)
}

/// Decides fresh calls by `actor` until one has `outcome` (the mirror polls every 50 ms).
fn eventually(gate: &mut ComponentVerifier, w: &World, actor: &str, outcome: Outcome) -> Decision {
    let started = Instant::now();
    loop {
        let d = gate.check(&call(w, actor));
        if d.outcome == outcome || started.elapsed() > Duration::from_secs(3) {
            return d;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_compromised_agent_is_refused_without_a_restart() {
    let w = world();
    let (mut gate, _) = gate(&w);
    let d = gate.check(&call(&w, ASSISTANT));
    assert!(d.allowed, "{d:?}");

    // The operator learns the assistant is compromised and revokes it.
    write_atomically(&w.deployment.dir.path().join("revoked.json"), &json!({"agents": [ASSISTANT]}).to_string());
    let d = eventually(&mut gate, &w, ASSISTANT, Outcome::Revoked);
    assert_eq!(d.outcome, Outcome::Revoked);
    assert_eq!(d.reason, "agent `spiffe://agents.example/mail-assistant` is revoked");

    // Other agents of the same user are unaffected.
    let d = gate.check(&call(&w, "spiffe://agents.example/calendar-assistant"));
    assert!(d.allowed, "{d:?}");
}

#[test]
fn a_revocation_file_edited_in_place_takes_effect_and_a_broken_edit_keeps_the_last_good_list() {
    let w = world();
    let (mut gate, state) = gate(&w);
    let mirror = state.mirror();
    let path = w.deployment.dir.path().join("revoked.json");
    assert!(gate.check(&call(&w, ASSISTANT)).allowed);

    // In-place edit (not a rename): revoke the user.
    std::fs::write(&path, r#"{"users": ["alice"]}"#).unwrap();
    let d = eventually(&mut gate, &w, ASSISTANT, Outcome::Revoked);
    assert_eq!((d.outcome, d.reason.as_str()), (Outcome::Revoked, "user `alice` is revoked"));

    // A broken edit (typo'd member name, then invalid JSON) keeps the last good list in force.
    let failures = mirror.failed_loads();
    std::fs::write(&path, r#"{"user": []}"#).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gate.check(&call(&w, ASSISTANT)).outcome, Outcome::Revoked, "the last good list stays in force");
    assert!(mirror.last_error().unwrap().contains("unknown member `user`"), "{:?}", mirror.last_error());
    assert!(mirror.failed_loads() > failures);
    std::fs::write(&path, r#"{"users": ["#).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gate.check(&call(&w, ASSISTANT)).outcome, Outcome::Revoked);

    // Fixed: the empty list applies again.
    write_atomically(&path, r#"{"users": []}"#);
    let d = eventually(&mut gate, &w, ASSISTANT, Outcome::Allowed);
    assert!(d.allowed, "{d:?}");
    assert_eq!(mirror.last_error(), None);
}

#[test]
fn a_proof_replayed_on_another_thread_is_refused_exactly_once() {
    let w = world();
    let runtime = Runtime::new(RuntimeOptions::default(), Arc::new(LocalState::default())).unwrap();
    for round in 0..10 {
        let request = Arc::new(call(&w, ASSISTANT));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                // Each thread has its own instance; the replay store behind them is shared.
                let mut verifier = runtime.verifier(&w.deployment.config.engine).unwrap();
                let request = Arc::clone(&request);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    verifier.check(&request).outcome
                })
            })
            .collect();
        let mut outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        outcomes.sort_by_key(|o| o.as_str());
        assert_eq!(outcomes, vec![Outcome::Allowed, Outcome::Replayed], "round {round}");
    }
}

#[test]
fn a_token_minted_now_is_allowed_and_one_minted_for_another_audience_is_not() {
    let w = world();
    let (mut gate, _) = gate(&w);
    assert!(gate.check(&call(&w, ASSISTANT)).allowed);

    let mut spec = AccessTokenSpec::new(ISSUER, "alice", "https://calendar.example.com");
    spec.bound_key = Some(w.agent.thumbprint());
    let token = spec.sign(&w.issuer);
    let mut request = call(&w, ASSISTANT);
    request.credentials.authorization = Some(format!("DPoP {token}"));
    request.credentials.dpop = Some(mint::dpop_proof(&w.agent, "GET", URI, &token, mint::now(), None));
    let d = gate.check(&request);
    assert_eq!(d.outcome, Outcome::InvalidToken);
    assert_eq!(d.reason, "access token audience `https://calendar.example.com` does not include this service");
}
