//! Per-call latency: the same check natively and in the component (in-guest and host crypto), in
//! one run, plus ES256 verification and Cedar evaluation alone.
//!
//! `cargo bench --bench check` (HTML reports in `target/criterion/`).

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentgate::config::{self, CryptoPlacement, LoadedConfig};
use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate::replay::InMemoryReplayStore;
use agentgate::{CheckRequest, Decide, Engine, Runtime, RuntimeOptions};
use agentgate_engine::jose::es256::{Es256Signature, RustCryptoVerifier, SignatureVerifier};
use agentgate_engine::{Credentials, EntityRef, HttpRequest};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

const URI: &str = "https://mail.example.com/mailboxes/alice/messages";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Fixture {
    config: LoadedConfig,
    agent: KeyPair,
    token: String,
}

fn fixture() -> Fixture {
    let config = config::load(&root().join("policies/mail/agentgate.toml")).unwrap();
    let issuer = KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys/issuer.TEST-ONLY.private.jwk.json")).unwrap()).unwrap();
    let agent = KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys/agent.TEST-ONLY.private.jwk.json")).unwrap()).unwrap();
    let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", "alice", "https://mail.example.com");
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec!["spiffe://agents.example/mail-assistant".into()];
    spec.lifetime_secs = 3600;
    spec.bound_key = Some(agent.thumbprint());
    let token = spec.sign(&issuer);
    Fixture { config, agent, token }
}

impl Fixture {
    /// A bound call with a fresh proof (minted outside the timed section).
    fn bound_call(&self) -> CheckRequest {
        let proof = mint::dpop_proof(&self.agent, "GET", URI, &self.token, mint::now(), None);
        CheckRequest {
            credentials: Credentials { authorization: Some(format!("DPoP {}", self.token)), dpop: Some(proof), agent_identity: None },
            http: Some(HttpRequest { method: "GET".into(), uri: URI.into() }),
            action: "mail:read".into(),
            resource: EntityRef { type_name: "Mailbox".into(), id: "alice".into() },
            context_json: None,
            entities_json: Some(r#"[{"uid":{"type":"Mailbox","id":"alice"},"attrs":{"owner":{"__entity":{"type":"User","id":"alice"}}},"parents":[]}]"#.into()),
            now: None,
        }
    }
}

fn bench_check(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("bound_call");
    let mut deciders: Vec<(&str, Box<dyn Decide>)> = vec![("native", Box::new(Engine::new(&f.config.engine, Box::new(InMemoryReplayStore::default())).unwrap()))];
    for (name, crypto) in [("component_guest_crypto", CryptoPlacement::Guest), ("component_host_crypto", CryptoPlacement::Host)] {
        let runtime = Runtime::new(RuntimeOptions { crypto, ..RuntimeOptions::default() }, Arc::new(InMemoryReplayStore::default())).unwrap();
        deciders.push((name, Box::new(runtime.verifier(&f.config.engine).unwrap())));
    }
    for (name, decider) in deciders.iter_mut() {
        assert!(decider.decide(&f.bound_call()).allowed, "{name} must allow the bench call");
        group.bench_function(*name, |b| {
            b.iter_batched(|| f.bound_call(), |req| black_box(decider.decide(&req)), BatchSize::SmallInput)
        });
    }
    group.finish();
}

fn bench_primitives(c: &mut Criterion) {
    let f = fixture();
    let (input, sig) = f.token.rsplit_once('.').unwrap();
    let sig = Es256Signature::from_bytes(&agentgate_engine::jose::base64url::decode(sig).unwrap()).unwrap();
    let issuer = KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys/issuer.TEST-ONLY.private.jwk.json")).unwrap()).unwrap();
    let key = issuer.public_key();
    let mut group = c.benchmark_group("es256_verify");
    group.bench_function("rustcrypto_p256", |b| b.iter(|| assert!(RustCryptoVerifier.verify(black_box(&key), black_box(input.as_bytes()), black_box(&sig)))));
    group.bench_function("aws_lc", |b| {
        b.iter(|| assert!(agentgate::native_crypto::AwsLcVerifier.verify(black_box(&key), black_box(input.as_bytes()), black_box(&sig))))
    });
    group.finish();

    let engine = Engine::new(&f.config.engine, Box::new(InMemoryReplayStore::default())).unwrap();
    let facts = agentgate_engine::authorizer::context::ContextFacts {
        user: "alice".into(),
        scopes: vec!["mail.read".into()],
        chain: vec!["spiffe://agents.example/mail-assistant".into()],
        issuer: "https://auth.demo.agentgate.dev".into(),
        token_id: "t".into(),
        client_id: "c".into(),
        age_secs: 1,
        lifetime_secs: 300,
        expires_in_secs: 299,
        proof_bound: true,
        method: "GET".into(),
        uri: URI.into(),
        key: f.agent.thumbprint(),
        ..Default::default()
    };
    let request = f.bound_call();
    let call = agentgate_engine::authorizer::AuthzCall {
        principal_kind: agentgate_engine::authorizer::PrincipalKind::Agent,
        principal_id: "spiffe://agents.example/mail-assistant",
        action: "mail:read",
        resource: &request.resource,
        facts: &facts,
        input: None,
        entities: request.entities_json.as_deref(),
    };
    assert!(engine.authorizer().authorize(&call).unwrap().allowed);
    c.bench_function("cedar/authorize_mail_read", |b| b.iter(|| black_box(engine.authorizer().authorize(black_box(&call)).unwrap())));
}

criterion_group!(benches, bench_check, bench_primitives);
criterion_main!(benches);
