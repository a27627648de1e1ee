//! Policy-set scale: a bound agent call against multi-tenant policy sets of 10, 100, 1,000,
//! 10,000 and 100,000 policies (`tests/support/policy_gen.rs`: ten rules of mixed scope shape per
//! tenant — `principal ==`, `principal in` a team or the tenant, `is … in`, `resource in` a folder
//! or the tenant, action lists and the `docs` group — and five shared unscoped or type-scoped
//! rules), natively and in the component (host crypto), with the policy index; the 10,000 set
//! again with the index off; and 10,000 policies the index cannot narrow (one action, one
//! principal type, told apart by `when`). Before the timings, each set's load: native engine build
//! time and resident-memory growth, the index's own build time and growth, the component's
//! verifier build time (pre-initialization included), and how many policies the call evaluates.
//!
//! `cargo bench --bench policy_scale` (`POLICY_SCALE_SETS=indexed/100000` runs one set)

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
#[path = "../tests/support/policy_gen.rs"]
mod policy_gen;

use agentgate::config::{self, CryptoPlacement};
use agentgate::{Engine, Runtime, RuntimeOptions};
use agentgate_engine::EntityRef;
use agentgate_engine::Trace;
use agentgate_engine::authorizer::index::PolicyIndex;
use common::{CallShape, Fixture, roomy_state, root};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use policy_gen::Universe;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Tenant 0's first agent reading a public document in folder 0 of its tenant for `t0-user-0`:
/// permitted by `t0-agent0-read` (the agent's own rule), with the team, tenant and folder
/// memberships that the `in` rules look at.
fn shape() -> CallShape {
    let entities = format!(
        r#"[{{"uid":{{"type":"Agent","id":"{agent}"}},"attrs":{{}},"parents":[{{"type":"Tenant","id":"t0"}},{{"type":"Team","id":"t0-team-0"}}]}},
            {{"uid":{{"type":"Team","id":"t0-team-0"}},"attrs":{{}},"parents":[{{"type":"Tenant","id":"t0"}}]}},
            {{"uid":{{"type":"User","id":"t0-user-0"}},"attrs":{{}},"parents":[{{"type":"Tenant","id":"t0"}}]}},
            {{"uid":{{"type":"Folder","id":"t0-folder-0"}},"attrs":{{}},"parents":[{{"type":"Tenant","id":"t0"}}]}},
            {{"uid":{{"type":"Document","id":"t0-doc-0"}},"attrs":{{"owner":{{"__entity":{{"type":"User","id":"t0-user-0"}}}},"public":true,"size":10}},"parents":[{{"type":"Folder","id":"t0-folder-0"}}]}}]"#,
        agent = Universe::agent(0, 0)
    );
    CallShape {
        user: "t0-user-0".into(),
        actor: Universe::agent(0, 0),
        scopes: vec!["docs.read".into()],
        audience: "https://docs.example.com".into(),
        uri: "https://docs.example.com/documents/t0-doc-0".into(),
        action: "doc:read".into(),
        resource: EntityRef { type_name: "Document".into(), id: "t0-doc-0".into() },
        entities,
    }
}

/// A deployment of the generated schema and `policies`.
fn deployment(policies: &str, index: bool) -> (tempfile::TempDir, config::LoadedConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.cedarschema"), policy_gen::SCHEMA).unwrap();
    std::fs::write(dir.path().join("generated.cedar"), policies).unwrap();
    let jwks = root().join("policies/keys/demo-issuer.TEST-ONLY.jwks.json");
    let toml = format!(
        "audiences = [\"https://docs.example.com\"]\npolicies = \".\"\npolicy_index = {index}\n[[issuers]]\nissuer = \"https://auth.demo.agentgate.dev\"\njwks = \"{}\"\n[dpop]\nmode = \"required\"\n",
        jwks.display()
    );
    std::fs::write(dir.path().join("agentgate.toml"), toml).unwrap();
    let loaded = config::load(&dir.path().join("agentgate.toml")).unwrap();
    (dir, loaded)
}

/// The replay store as deployed, but with room for every proof of one key a whole run sends:
/// criterion sends one key tens of thousands of proofs within their 60 s window, past the default
/// per-key bound of 10,000.
/// Resident set size of this process, KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

struct Case {
    name: &'static str,
    n: usize,
    policies: String,
    index: bool,
}

fn cases() -> Vec<Case> {
    let indexed = |n: usize| Case { name: "indexed", n, policies: policy_gen::tenant_policies(n).0, index: true };
    let mut cases: Vec<Case> = [10usize, 100, 1_000, 10_000].into_iter().map(indexed).collect();
    cases.push(Case { name: "index_off", n: 10_000, policies: policy_gen::tenant_policies(10_000).0, index: false });
    cases.push(Case { name: "unindexable", n: 10_000, policies: policy_gen::unindexable_policies(10_000), index: true });
    // Last: minutes to load (Cedar's parser and strict validation), natively and in the guest.
    cases.push(indexed(100_000));
    // `POLICY_SCALE_SETS=indexed/100000,unindexable/10000` runs just those.
    match std::env::var("POLICY_SCALE_SETS") {
        Ok(only) => cases.into_iter().filter(|c| only.split(',').any(|s| s == format!("{}/{}", c.name, c.n))).collect(),
        Err(_) => cases,
    }
}

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_scale");
    group.sample_size(20);
    for case in cases() {
        let (_dir, loaded) = deployment(&case.policies, case.index);
        let f = Fixture::with_shape(loaded, shape());

        // Load: the native engine, then the index alone over the same set.
        let (rss, start) = (rss_kib(), Instant::now());
        let native = Engine::new(&f.config.engine, Box::new(roomy_state())).unwrap();
        let (engine_time, engine_kib) = (start.elapsed(), rss_kib().saturating_sub(rss));
        let (rss, start) = (rss_kib(), Instant::now());
        let index = PolicyIndex::new(native.authorizer().policy_set());
        let (index_time, index_kib) = (start.elapsed(), rss_kib().saturating_sub(rss));
        let total = index.len();
        drop(index);
        let mut trace = Trace::default();
        let first = native.check_traced(&f.call(), Some(&mut trace));
        assert!(first.allowed, "{first:?}");
        let evaluated = trace.request.as_ref().map_or(0, |r| r.policies_selected);
        eprintln!(
            "LOAD {} {}: {} policies; native engine {:.0} ms (+{} KiB RSS), index {:.1} ms (+{} KiB RSS); the call evaluates {evaluated} of {total}",
            case.name,
            case.n,
            total,
            engine_time.as_secs_f64() * 1e3,
            engine_kib,
            index_time.as_secs_f64() * 1e3,
            index_kib,
        );
        // The component: a larger memory limit and budget for the 100,000-policy set.
        let options = RuntimeOptions {
            crypto: CryptoPlacement::Host,
            memory_limit_bytes: 1 << 30,
            create_timeout: Duration::from_secs(600),
            ..RuntimeOptions::default()
        };
        let start = Instant::now();
        let component = Runtime::new(options, std::sync::Arc::new(roomy_state())).and_then(|rt| Ok(rt.verifier(&f.config.engine)?));
        match &component {
            Ok(_) => eprintln!("LOAD {} {}: component verifier {:.1} s", case.name, case.n, start.elapsed().as_secs_f64()),
            Err(e) => eprintln!("LOAD {} {}: component verifier failed after {:.1} s: {e:#}", case.name, case.n, start.elapsed().as_secs_f64()),
        }
        for _ in 0..3 {
            assert!(native.check(&f.call()).allowed);
        }
        bench_allowed_call(&mut group, &format!("native_bound_call/{}", case.name), case.n, &f, |req| native.check(req));
        let Ok(mut component) = component else { continue };
        for _ in 0..3 {
            assert!(component.check(&f.call()).allowed);
        }
        bench_allowed_call(&mut group, &format!("component_host_crypto_bound_call/{}", case.name), case.n, &f, |req| component.check(req));
    }
    group.finish();
}

/// Times one decider on the fixture's bound call, each decision checked to be an allow.
fn bench_allowed_call(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    f: &Fixture,
    mut decide: impl FnMut(&agentgate::CheckRequest) -> agentgate::Decision,
) {
    group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
        b.iter_batched(
            || f.call(),
            |req| {
                let d = decide(black_box(&req));
                assert!(d.allowed, "{d:?}")
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, scale);
criterion_main!(benches);
