//! The deployment state's cost, memory against Redis, in one run (issue 10 §4):
//!
//! - `state/remember_proof/{memory,redis}`: one `Backend::remember_proof` — the raw cost of the
//!   replay check, in this process against one atomic round trip to a real `redis-server` on
//!   loopback (started by the bench on a free port, stopped at the end);
//! - `bound_call_state/{host,guest}_crypto/{memory,redis}`: a whole bound agent call (the
//!   fixture's token, a fresh DPoP proof, Cedar) decided by the component through a
//!   `DeploymentState` — what `agentgate serve` runs — over each backend, so the difference
//!   between the two lines is the Redis round trip inside a real check;
//! - `reference/aws_lc_es256_verify`: the reference line, as in `benches/check.rs`.
//!
//! Every iteration uses a fresh proof id (minted outside the timed section), so every call is a
//! first use and the store records it. The per-key bound is lifted (`max_proofs_per_key`): a
//! bench presents far more proofs from one agent key within one window than any agent would.
//!
//! `cargo bench --bench state` (needs `redis-server` or `valkey-server`: `apt-get install
//! redis-server`; HTML reports in `target/criterion/`).

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
#[path = "../tests/support/redis.rs"]
mod redis_server;

use agentgate::config::{BackendKind, CryptoPlacement, StateSection};
use agentgate::state::memory::MemoryBackend;
use agentgate::state::redis::RedisBackend;
use agentgate::state::{Backend, DeploymentState, StoreMetrics};
use agentgate_engine::jose::es256::{Es256Signature, SignatureVerifier};
use agentgate_engine::state::{ProofAnswer, ProofLimits, ProofUse};
use common::Fixture;
use criterion::{BatchSize, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The lifetime the engine asks for a fresh proof (`max_age_secs` 60 + 1).
const PROOF_TTL_SECS: u32 = 61;

/// `[state]` for a bench: no per-key bound in practice, room for every proof of the run.
fn section(backend: BackendKind, url: &str) -> StateSection {
    let url = (backend == BackendKind::Redis).then(|| url.to_owned());
    StateSection { backend, url, key_prefix: "agentgate-bench:".into(), max_proofs: 100_000_000, max_proofs_per_key: u32::MAX, ..StateSection::default() }
}

fn backend(kind: BackendKind, url: &str) -> Arc<dyn Backend> {
    let s = section(kind, url);
    match kind {
        BackendKind::Memory => Arc::new(MemoryBackend::new(ProofLimits { capacity: s.max_proofs, per_key: s.max_proofs_per_key }, None)),
        BackendKind::Redis => Arc::new(RedisBackend::connect(&s, Arc::new(StoreMetrics::default())).unwrap()),
    }
}

fn reference(c: &mut Criterion) {
    let f = Fixture::mail();
    let (input, sig) = f.token.rsplit_once('.').unwrap();
    let sig = Es256Signature::from_bytes(&agentgate_engine::jose::base64url::decode(sig).unwrap()).unwrap();
    let key = f.issuer.public_key();
    c.bench_function("reference/aws_lc_es256_verify", |b| {
        b.iter(|| assert!(agentgate::native_crypto::AwsLcVerifier.verify(black_box(&key), black_box(input.as_bytes()), black_box(&sig))))
    });
}

/// One `remember_proof`, memory against Redis: the agent's key, a fresh `jti` hash each time.
fn remember_proof(c: &mut Criterion, url: &str) {
    let thumbprint = Fixture::mail().agent.thumbprint();
    let counter = AtomicU64::new(0);
    let fresh_jti_hash = || agentgate_engine::dpop::jti_hash(&format!("state-bench-{}", counter.fetch_add(1, Ordering::Relaxed)));
    let mut group = c.benchmark_group("state/remember_proof");
    for (name, kind) in [("memory", BackendKind::Memory), ("redis", BackendKind::Redis)] {
        let backend = backend(kind, url);
        group.bench_function(name, |b| {
            b.iter_batched(
                fresh_jti_hash,
                |jti_hash| {
                    let proof = ProofUse { key_thumbprint: &thumbprint, jti_hash: &jti_hash, ttl_secs: PROOF_TTL_SECS };
                    assert_eq!(backend.remember_proof(black_box(&proof)).unwrap(), ProofAnswer::Fresh);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A bound call (repeated token, fresh proof) through a `DeploymentState` on each backend.
fn bound_call(c: &mut Criterion, url: &str) {
    let f = Fixture::mail();
    for (group_name, crypto) in [("bound_call_state/host_crypto", CryptoPlacement::Host), ("bound_call_state/guest_crypto", CryptoPlacement::Guest)] {
        let mut group = c.benchmark_group(group_name);
        for (name, kind) in [("memory", BackendKind::Memory), ("redis", BackendKind::Redis)] {
            let s = section(kind, url);
            let metrics = Arc::new(StoreMetrics::default());
            let state = DeploymentState::with_backend(backend(kind, url), &s, Arc::clone(&metrics));
            let mut verifier = f.component_on(crypto, state);
            group.bench_function(name, |b| {
                b.iter_batched(
                    || f.call(),
                    |req| {
                        let d = verifier.check(black_box(&req));
                        assert!(d.allowed, "{d:?}");
                    },
                    BatchSize::SmallInput,
                )
            });
            println!("{group_name}/{name}: {}", common::store_round_trips(&metrics, name));
        }
        group.finish();
    }
}

fn main() {
    // The store lives as long as the run and is stopped when `store` drops (a static would
    // leave the server running after the bench).
    let Some(store) = redis_server::start_or_skip("state bench") else {
        eprintln!("the state bench needs a real store: apt-get install redis-server (or valkey-server)");
        std::process::exit(2);
    };
    let url = store.url();
    let mut c = Criterion::default().configure_from_args();
    reference(&mut c);
    remember_proof(&mut c, &url);
    bound_call(&mut c, &url);
    c.final_summary();
    drop(store);
}
