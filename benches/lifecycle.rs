//! Instance lifecycle: compiling vs loading the precompiled artifact, a fresh instance with
//! `create(config)` vs a fresh instance of the pre-initialized snapshot, on-demand vs pooling
//! allocation, and the time from a fresh instance to its first decision.
//!
//! `cargo bench --bench lifecycle`

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use agentgate::component::PORTABLE_COMPONENT;
use agentgate::config::CryptoPlacement;
use agentgate::state::LocalState;
use agentgate::{Runtime, RuntimeOptions};
use common::Fixture;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn compile_vs_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("component");
    group.sample_size(10).measurement_time(Duration::from_secs(40));
    let engine = wasmtime::Engine::default();
    group.bench_function("compile_cranelift", |b| b.iter(|| wasmtime::component::Component::new(&engine, black_box(PORTABLE_COMPONENT)).unwrap()));
    group.finish();

    let dir = tempfile::tempdir().unwrap();
    let options = || RuntimeOptions { cache_dir: Some(dir.path().to_path_buf()), ..RuntimeOptions::default() };
    drop(Runtime::new(options(), Arc::new(LocalState::default())).unwrap());
    c.bench_function("component/runtime_new_from_cached_artifact", |b| b.iter(|| Runtime::new(options(), Arc::new(LocalState::default())).unwrap()));
}

fn instances(c: &mut Criterion) {
    let f = Fixture::mail();
    let mut group = c.benchmark_group("fresh_instance");
    for (alloc, pooling) in [("on_demand", None), ("pooling", Some(64))] {
        let options = RuntimeOptions { pooling, ..RuntimeOptions::default() };
        let runtime = Runtime::new(options.clone(), Arc::new(LocalState::default())).unwrap();
        group.bench_function(format!("create_config/{alloc}"), |b| b.iter(|| runtime.verifier(black_box(&f.config.engine)).unwrap()));
        let preinit = Runtime::preinitialized(options, Arc::new(LocalState::default()), &f.config.engine).unwrap();
        group.bench_function(format!("preinitialized/{alloc}"), |b| b.iter(|| preinit.preloaded_verifier().unwrap()));
    }
    group.finish();
}

fn first_decision(c: &mut Criterion) {
    let f = Fixture::mail();
    let mut group = c.benchmark_group("fresh_instance_to_first_decision");
    for (name, crypto) in [("guest_crypto", CryptoPlacement::Guest), ("host_crypto", CryptoPlacement::Host)] {
        let options = RuntimeOptions { crypto, pooling: Some(64), ..RuntimeOptions::default() };
        let runtime = Runtime::new(options.clone(), Arc::new(LocalState::default())).unwrap();
        group.bench_function(format!("create_config/{name}"), |b| {
            b.iter_batched(
                || f.call(),
                |req| {
                    let mut v = runtime.verifier(&f.config.engine).unwrap();
                    assert!(v.check(&req).allowed)
                },
                BatchSize::SmallInput,
            )
        });
        let preinit = Runtime::preinitialized(options, Arc::new(LocalState::default()), &f.config.engine).unwrap();
        group.bench_function(format!("preinitialized/{name}"), |b| {
            b.iter_batched(
                || f.call(),
                |req| {
                    let mut v = preinit.preloaded_verifier().unwrap();
                    assert!(v.check(&req).allowed)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, compile_vs_load, instances, first_decision);
criterion_main!(benches);
