//! End to end: a bound agent call (access token + DPoP proof + Cedar) natively, in the component
//! with in-guest crypto (the build every host gets) and in the component with host crypto — in one run, next to the reference line, one native
//! aws-lc ES256 verify. Repeated token (same bytes, fresh proof) and first-seen
//! token (fresh token and proof).
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

criterion_group!(benches, reference, repeated_token, first_seen_token);
criterion_main!(benches);
