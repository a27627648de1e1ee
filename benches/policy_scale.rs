//! Policy-set scale: the mail policies plus 10, 100, 1,000 and 10,000 generated per-agent
//! policies; Cedar alone natively and the whole bound call in the component.
//!
//! `cargo bench --bench policy_scale`

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use agentgate::config;
use agentgate::config::CryptoPlacement;
use common::{Fixture, root};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// A deployment directory with the mail schema and policies plus `n` generated policies.
fn deployment(n: usize) -> (tempfile::TempDir, config::LoadedConfig) {
    let dir = tempfile::tempdir().unwrap();
    for name in ["schema.cedarschema", "mail.cedar", "delegation.cedar"] {
        std::fs::copy(root().join("policies/mail").join(name), dir.path().join(name)).unwrap();
    }
    let generated: String = (0..n)
        .map(|i| {
            format!(
                "@id(\"agent-{i}\")\npermit (principal == Agent::\"spiffe://agents.example/agent-{i}\", action == Action::\"mail:read\", resource)\nwhen {{ context.scopes.contains(\"mail.read\") && context.token.lifetime_secs <= {} }};\n",
                600 + i
            )
        })
        .collect();
    std::fs::write(dir.path().join("generated.cedar"), generated).unwrap();
    let keys = root().join("policies/keys");
    let toml = format!(
        "audiences = [\"https://mail.example.com\"]\npolicies = \".\"\n[[issuers]]\nissuer = \"https://auth.demo.agentgate.dev\"\njwks = \"{}\"\n[dpop]\nmode = \"required\"\n[runtime]\ncreate_timeout_ms = 120000\n",
        keys.join("demo-issuer.TEST-ONLY.jwks.json").display()
    );
    std::fs::write(dir.path().join("agentgate.toml"), toml).unwrap();
    let loaded = config::load(&dir.path().join("agentgate.toml")).unwrap();
    (dir, loaded)
}

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_scale");
    group.sample_size(20);
    for n in [10usize, 100, 1_000, 10_000] {
        let (_dir, loaded) = deployment(n);
        let f = Fixture::with_config(loaded);
        let mut native = f.native();
        group.bench_with_input(BenchmarkId::new("native_bound_call", n), &n, |b, _| {
            b.iter_batched(|| f.call(), |req| assert!(native.check(black_box(&req)).allowed), BatchSize::SmallInput)
        });
        let mut component = f.component(CryptoPlacement::Host);
        group.bench_with_input(BenchmarkId::new("component_host_crypto_bound_call", n), &n, |b, _| {
            b.iter_batched(|| f.call(), |req| assert!(component.check(black_box(&req)).allowed), BatchSize::SmallInput)
        });
        let _ = &mut native;
    }
    group.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
