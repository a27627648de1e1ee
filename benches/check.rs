//! End to end: a bound agent call (access token + DPoP proof + Cedar) natively, in the component
//! with in-guest crypto (the build every host gets) and in the component with host crypto — in one run, next to the reference line, one native
//! aws-lc ES256 verify. Repeated token (same bytes, fresh proof) and first-seen
//! token (fresh token and proof). `receipts/`: what a signed decision receipt (`[receipts]`) adds
//! to a decision: the receipt alone (claims, request digest, one aws-lc ES256 signature), and the
//! host-crypto call with its receipt.
//!
//! `cargo bench --bench check` (HTML reports in `target/criterion/`).

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use agentgate::config::CryptoPlacement;
use agentgate::{Decide, Engine};
use agentgate_engine::jose::es256::{Es256Signature, SignatureVerifier};
use common::Fixture;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn reference(c: &mut Criterion) {
    let f = Fixture::mail();
    let (input, sig) = f.token.rsplit_once('.').unwrap();
    let sig = Es256Signature::from_bytes(&agentgate_engine::jose::base64url::decode(sig).unwrap()).unwrap();
    let key = f.issuer.public_key();
    c.bench_function("reference/aws_lc_es256_verify", |b| {
        b.iter(|| assert!(agentgate::native_crypto::AwsLcVerifier.verify(black_box(&key), black_box(input.as_bytes()), black_box(&sig))))
    });
}

fn deciders(f: &Fixture) -> Vec<(&'static str, Box<dyn Decide>)> {
    let native: Engine = f.native();
    vec![
        ("native", Box::new(native)),
        ("component_guest_crypto", Box::new(f.component(CryptoPlacement::Guest))),
        ("component_host_crypto", Box::new(f.component(CryptoPlacement::Host))),
    ]
}

fn repeated_token(c: &mut Criterion) {
    let f = Fixture::mail();
    let mut group = c.benchmark_group("bound_call/repeated_token");
    for (name, mut decider) in deciders(&f) {
        group.bench_function(name, |b| b.iter_batched(|| f.call(), |req| assert!(decider.decide(black_box(&req)).allowed), BatchSize::SmallInput));
    }
    group.finish();
}

fn first_seen_token(c: &mut Criterion) {
    let f = Fixture::mail();
    let mut group = c.benchmark_group("bound_call/first_seen_token");
    for (name, mut decider) in deciders(&f) {
        group.bench_function(name, |b| b.iter_batched(|| f.fresh_call(), |req| assert!(decider.decide(black_box(&req)).allowed), BatchSize::SmallInput));
    }
    group.finish();
}

fn receipts(c: &mut Criterion) {
    use agentgate::receipts::digest::ConfigDigests;
    use agentgate::receipts::{ReceiptFacts, ReceiptSigner, SignWhen};
    let f = Fixture::mail();
    let key = agentgate::mint::KeyPair::generate("bench-receipts").unwrap();
    let signer = ReceiptSigner::new(&key.private_jwk().to_string(), &[], SignWhen::Verified).unwrap();
    let digests = ConfigDigests::of(&f.config.engine).unwrap();
    let mut decider = f.component(CryptoPlacement::Host);
    let request = f.call();
    let decision = decider.decide(&request);
    assert!(decision.allowed);
    let mut group = c.benchmark_group("receipts");
    group.bench_function("sign_one_allow", |b| {
        b.iter(|| {
            let facts = ReceiptFacts { decision_id: "bench-decision-id-0123456", issued_at: 1_764_547_200, request: black_box(&request), config: &digests };
            assert!(signer.receipt(black_box(&decision), &facts).unwrap().is_ok())
        })
    });
    group.bench_function("component_host_crypto_with_receipt", |b| {
        b.iter_batched(
            || f.call(),
            |req| {
                let decision = decider.decide(black_box(&req));
                let facts = ReceiptFacts { decision_id: "bench-decision-id-0123456", issued_at: 1_764_547_200, request: &req, config: &digests };
                assert!(signer.receipt(&decision, &facts).unwrap().is_ok())
            },
            BatchSize::SmallInput,
        )
    });
    // What a caller without credentials can make the service do: a denial, and with
    // `sign = "all"` a signature too (`verified`, the default, signs none of these).
    let mut garbage = f.call();
    garbage.credentials =
        agentgate_engine::Credentials { authorization: Some("DPoP not-a-token".into()), dpop: Some("not-a-proof".into()), agent_identity: None };
    let all = ReceiptSigner::new(&key.private_jwk().to_string(), &[], SignWhen::All).unwrap();
    group.bench_function("garbage_deny", |b| b.iter(|| assert!(!decider.decide(black_box(&garbage)).allowed)));
    group.bench_function("garbage_deny_signed_under_all", |b| {
        b.iter(|| {
            let decision = decider.decide(black_box(&garbage));
            let facts = ReceiptFacts { decision_id: "bench-decision-id-0123456", issued_at: 1_764_547_200, request: &garbage, config: &digests };
            assert!(all.receipt(&decision, &facts).unwrap().is_ok())
        })
    });
    group.finish();
}

criterion_group!(benches, reference, repeated_token, first_seen_token, receipts);
criterion_main!(benches);
