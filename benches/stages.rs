//! Per stage, natively: JWS parsing, ES256 verification (RustCrypto plain, with a pinned or a
//! learned table, aws-lc), the DPoP proof checks, and Cedar.
//!
//! `cargo bench --bench stages`

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use agentgate_engine::authorizer::context::ContextFacts;
use agentgate_engine::authorizer::{AuthzCall, PrincipalKind};
use agentgate_engine::dpop::{self, ProofCheck};
use agentgate_engine::jose::es256::{Es256Signature, RustCryptoVerifier, SignatureVerifier};
use agentgate_engine::jose::jws;
use agentgate_engine::jose::precomputed::{self, FixedBaseTable, LEARNED_WINDOW, PINNED_WINDOW};
use agentgate_engine::{Engine, Settings};
use common::{ENTITIES, Fixture, URI};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn jws_parse(c: &mut Criterion) {
    let f = Fixture::mail();
    c.bench_function("jws/parse_access_token", |b| b.iter(|| jws::parse(black_box(&f.token), 8192).unwrap()));
}

fn es256(c: &mut Criterion) {
    let f = Fixture::mail();
    let (input, sig) = f.token.rsplit_once('.').unwrap();
    let sig = Es256Signature::from_bytes(&agentgate_engine::jose::base64url::decode(sig).unwrap()).unwrap();
    let key = f.issuer.public_key();
    let point: p256::ProjectivePoint = key.verifying_key().as_affine().into();
    let pinned = FixedBaseTable::new(point, PINNED_WINDOW);
    let learned = FixedBaseTable::new(point, LEARNED_WINDOW);
    let _ = precomputed::generator_table();
    let mut group = c.benchmark_group("es256_verify");
    group.bench_function("p256_verify", |b| {
        b.iter(|| assert!(p256::ecdsa::signature::Verifier::verify(key.verifying_key(), black_box(input.as_bytes()), sig.signature()).is_ok()))
    });
    group.bench_function("p256_pinned_table", |b| b.iter(|| assert!(precomputed::verify(&pinned, black_box(input.as_bytes()), sig.signature()))));
    group.bench_function("p256_learned_table", |b| b.iter(|| assert!(precomputed::verify(&learned, black_box(input.as_bytes()), sig.signature()))));
    group.bench_function("aws_lc", |b| b.iter(|| assert!(agentgate::native_crypto::AwsLcVerifier.verify(&key, black_box(input.as_bytes()), &sig))));
    group.finish();
    c.bench_function("es256_tables/build_learned_w6", |b| b.iter(|| FixedBaseTable::new(black_box(point), LEARNED_WINDOW)));
    c.bench_function("es256_tables/build_pinned_w8", |b| b.iter(|| FixedBaseTable::new(black_box(point), PINNED_WINDOW)));
}

fn dpop_checks(c: &mut Criterion) {
    let f = Fixture::mail();
    let settings: Settings = serde_json::from_str(&f.config.engine.settings_json).unwrap();
    let verifier = RustCryptoVerifier::new();
    let jkt = f.agent.thumbprint();
    let ath = dpop::ath(&f.token);
    let mut group = c.benchmark_group("dpop/verify");
    for (name, v) in [("rustcrypto_learned_key", &verifier as &dyn SignatureVerifier), ("aws_lc", &agentgate::native_crypto::AwsLcVerifier)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || f.call().credentials.dpop.unwrap(),
                |proof| {
                    let check = ProofCheck {
                        settings: &settings,
                        now: agentgate::mint::now() as i64,
                        method: "GET",
                        uri: URI,
                        ath: &ath,
                        bound_key: &jkt,
                        nonces: None,
                    };
                    dpop::verify(black_box(&proof), check, v).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn cedar(c: &mut Criterion) {
    let f = Fixture::mail();
    let engine = Engine::new(&f.config.engine, Box::new(agentgate::state::LocalState::default())).unwrap();
    let facts = ContextFacts {
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
    let resource = agentgate_engine::EntityRef { type_name: "Mailbox".into(), id: "alice".into() };
    let call = AuthzCall {
        principal_kind: PrincipalKind::Agent,
        principal_id: "spiffe://agents.example/mail-assistant",
        action: "mail:read",
        resource: &resource,
        facts: &facts,
        input: None,
        entities: Some(ENTITIES),
    };
    assert!(engine.authorizer().authorize(&call).unwrap().allowed);
    c.bench_function("cedar/authorize_mail_read", |b| b.iter(|| engine.authorizer().authorize(black_box(&call)).unwrap()));
}

criterion_group!(benches, jws_parse, es256, dpop_checks, cedar);
criterion_main!(benches);
