//! The policy index against plain Cedar: random schema-valid policy sets mixing every scope form,
//! random calls with random entity hierarchies, decided with the index and by Cedar over the
//! whole set, compared field for field — in the authorizer, and as whole bound calls on every
//! host (native, the three component builds) against a deployment with `policy_index = false`.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::config;
use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate_engine::authorizer::context::ContextFacts;
use agentgate_engine::authorizer::{Authorizer, AuthzCall, PolicyAnswer, PrincipalKind, SourceText};
use agentgate_engine::{CheckRequest, Credentials, Denial, EntityRef};
use support::policy_gen::{self, Gen, GenCall, Universe};
use support::{HOSTS, decider, root};

fn authorizer(policies: &str) -> Authorizer {
    let file = |name: &str, text: &str| SourceText { name: name.to_owned(), text: text.to_owned() };
    Authorizer::new(&[file("generated.cedar", policies)], &file("schema.cedarschema", policy_gen::SCHEMA))
        .unwrap_or_else(|e| panic!("the generator wrote a set Cedar rejects:\n{e}"))
}

fn facts(call: &GenCall, lifetime_secs: i64) -> ContextFacts {
    ContextFacts {
        user: call.user.clone(),
        scopes: call.scopes.clone(),
        chain: call.agent.iter().cloned().collect(),
        issuer: "https://auth.demo.agentgate.dev".into(),
        lifetime_secs,
        expires_in_secs: lifetime_secs,
        ..ContextFacts::default()
    }
}

/// Runs `f` on the authorizer's view of a generated call, with a token of `lifetime_secs`.
fn with_authz<R>(call: &GenCall, lifetime_secs: i64, f: impl FnOnce(&AuthzCall<'_>) -> R) -> R {
    let facts = facts(call, lifetime_secs);
    let resource = EntityRef { type_name: call.resource_type.clone(), id: call.resource_id.clone() };
    let (principal_kind, principal_id) = match &call.agent {
        Some(agent) => (PrincipalKind::Agent, agent.as_str()),
        None => (PrincipalKind::User, call.user.as_str()),
    };
    f(&AuthzCall { principal_kind, principal_id, action: &call.action, resource: &resource, facts: &facts, input: None, entities: Some(&call.entities) })
}

/// What kinds of answers a run saw, so that a run that never exercised forbids, errors or a
/// narrowed selection fails instead of passing vacuously.
#[derive(Debug, Default)]
struct Seen {
    calls: usize,
    allowed: usize,
    forbidden: usize,
    not_permitted: usize,
    with_errors: usize,
    request_denials: usize,
    narrowed: usize,
}

impl Seen {
    fn count(&mut self, answer: &Result<PolicyAnswer, Denial>) {
        self.calls += 1;
        match answer {
            Ok(a) if a.allowed => self.allowed += 1,
            Ok(a) if !a.policies.is_empty() => self.forbidden += 1,
            Ok(_) => self.not_permitted += 1,
            Err(_) => self.request_denials += 1,
        }
        if answer.as_ref().is_ok_and(|a| !a.errors.is_empty()) {
            self.with_errors += 1;
        }
    }
}

#[test]
fn the_index_answers_exactly_as_cedar_over_the_whole_set() {
    let mut seen = Seen::default();
    for seed in 1..=24u64 {
        let mut g = Gen::seeded(seed);
        let n = 50 + g.below(400);
        let policies = policy_gen::random_policies(&mut g, &Universe::SMALL, n);
        let a = authorizer(&policies);
        for _ in 0..250 {
            let call = policy_gen::random_call(&mut g, &Universe::SMALL);
            let lifetime = [1, 300, 3600][g.below(3)];
            with_authz(&call, lifetime, |authz| {
                let indexed = a.authorize(authz);
                let whole = a.authorize_without_index(authz);
                assert_eq!(indexed, whole, "seed {seed}: {call:?}\npolicies:\n{policies}");
                seen.count(&indexed);
                if let Ok(built) = a.describe(authz) {
                    assert_eq!(built.policies_total, n);
                    if built.policies_selected < n {
                        seen.narrowed += 1;
                    }
                }
            });
        }
    }
    eprintln!("{seen:?}");
    // Every kind of answer occurred, and the index did narrow.
    assert!(seen.allowed > 100 && seen.forbidden > 100 && seen.not_permitted > 100 && seen.with_errors > 100, "{seen:?}");
    assert!(seen.request_denials < seen.calls / 10, "the generator's calls should reach Cedar: {seen:?}");
    assert!(seen.narrowed > seen.calls * 9 / 10, "{seen:?}");
}

#[test]
fn the_multi_tenant_bench_sets_are_schema_valid_and_narrow_to_one_tenant() {
    let (policies, u) = policy_gen::tenant_policies(1_000);
    let a = authorizer(&policies);
    let mut g = Gen::seeded(7);
    let mut selected = Vec::new();
    for _ in 0..200 {
        let call = policy_gen::random_call(&mut g, &u);
        with_authz(&call, 300, |authz| {
            assert_eq!(a.authorize(authz), a.authorize_without_index(authz), "{call:?}");
            selected.push(a.describe(authz).unwrap().policies_selected);
        });
    }
    // Ten rules per tenant and five shared ones: a call sees its tenant's and the shared ones,
    // never more than 15 of the 1,005.
    assert!(selected.iter().all(|&n| n <= 15), "{selected:?}");
    let unindexable = authorizer(&policy_gen::unindexable_policies(200));
    let call = policy_gen::random_call(&mut Gen::seeded(3), &Universe::SMALL);
    let facts = facts(&call, 300);
    let resource = EntityRef { type_name: "Document".into(), id: "t0-doc-0".into() };
    let authz = AuthzCall {
        principal_kind: PrincipalKind::Agent,
        principal_id: "spiffe://agents.example/t0/agent-0",
        action: "doc:read",
        resource: &resource,
        facts: &facts,
        input: None,
        entities: Some(&call.entities),
    };
    assert_eq!(unindexable.describe(&authz).unwrap().policies_selected, 200, "one action and one principal type: nothing to narrow");
}

/// A Bearer call by `t0-user-0`'s agent with a token of `lifetime_secs`, decided at one instant.
fn agent_call(issuer: &KeyPair, lifetime_secs: u64, jti: &str) -> CheckRequest {
    let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", "t0-user-0", "https://docs.example.com");
    spec.actors = vec![Universe::agent(0, 0)];
    spec.lifetime_secs = lifetime_secs;
    spec.jti = jti.to_owned();
    spec.issued_at = mint::now();
    CheckRequest {
        credentials: Credentials { authorization: Some(format!("Bearer {}", spec.sign(issuer))), dpop: None, agent_identity: None },
        http: None,
        action: "doc:read".into(),
        resource: EntityRef { type_name: "Folder".into(), id: "t0-folder-0".into() },
        context_json: None,
        entities_json: None,
        now: Some(spec.issued_at),
    }
}

fn issuer() -> KeyPair {
    KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys/issuer.TEST-ONLY.private.jwk.json")).unwrap()).unwrap()
}

/// Found by the differential test below: under the wide-arithmetic build that `agentgate` ran by
/// default, LLVM 22 miscompiled the overflow check of Cedar's `*` (llvm/llvm-project#199910), so
/// `600 * 2` "overflowed", the `forbid` erred instead of applying, and the call was allowed. That
/// build is withdrawn (host/build.rs); every host must forbid here.
#[test]
fn a_forbid_that_multiplies_applies_on_every_host() {
    let policies = r#"@id("all") permit (principal, action, resource);
@id("long-lived") forbid (principal, action, resource) when { context.token.lifetime_secs * 2 > 1000 };
@id("overflows") forbid (principal, action, resource) when { context.token.lifetime_secs * 4611686018427387904 < 0 };
"#;
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(dir.path(), policies, true);
    let issuer = issuer();
    for host in HOSTS {
        let mut d = decider(host, &config);
        let short = d.decide(&agent_call(&issuer, 1, &format!("{host:?}-1")));
        assert!(short.allowed, "{host:?}: 1 * 2 and 1 * 2^62 fit: {short:?}");
        assert!(short.errors.is_empty(), "{host:?}: {short:?}");
        let mid = d.decide(&agent_call(&issuer, 300, &format!("{host:?}-300")));
        assert!(mid.allowed, "{host:?}: {mid:?}");
        assert_eq!(
            mid.errors,
            ["error while evaluating policy `overflows`: integer overflow while attempting to multiply the values `300` and `4611686018427387904`"],
            "{host:?}"
        );
        let long = d.decide(&agent_call(&issuer, 600, &format!("{host:?}-600")));
        assert!(!long.allowed, "{host:?}: 600 * 2 > 1000 forbids: {long:?}");
        assert_eq!(long.policies, ["long-lived"], "{host:?}");
        assert_eq!(
            long.errors,
            ["error while evaluating policy `overflows`: integer overflow while attempting to multiply the values `600` and `4611686018427387904`"],
            "{host:?}"
        );
    }
}

/// A deployment of the generated schema and `policies`, with or without the index.
fn deployment(dir: &std::path::Path, policies: &str, index: bool) -> config::LoadedConfig {
    std::fs::write(dir.join("schema.cedarschema"), policy_gen::SCHEMA).unwrap();
    std::fs::write(dir.join("generated.cedar"), policies).unwrap();
    let jwks = root().join("policies/keys/demo-issuer.TEST-ONLY.jwks.json");
    let toml = format!(
        "audiences = [\"https://docs.example.com\"]\npolicies = \".\"\npolicy_index = {index}\n[[issuers]]\nissuer = \"https://auth.demo.agentgate.dev\"\njwks = \"{}\"\n[dpop]\nmode = \"off\"\n",
        jwks.display()
    );
    std::fs::write(dir.join("agentgate.toml"), toml).unwrap();
    config::load(&dir.join("agentgate.toml")).unwrap()
}

#[test]
fn every_host_decides_random_sets_as_cedar_over_the_whole_set() {
    let issuer = issuer();
    let mut g = Gen::seeded(2026);
    let policies = policy_gen::random_policies(&mut g, &Universe::SMALL, 100);
    let (with, without) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let indexed = deployment(with.path(), &policies, true);
    let reference = deployment(without.path(), &policies, false);
    let mut reference = decider(support::Host::Native, &reference);
    let mut hosts: Vec<_> = HOSTS.iter().map(|&h| (h, decider(h, &indexed))).collect();
    let mut outcomes = std::collections::BTreeMap::new();
    for i in 0..120 {
        let call = policy_gen::random_call(&mut g, &Universe::SMALL);
        let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", &call.user, "https://docs.example.com");
        spec.scopes = call.scopes.clone();
        spec.actors = call.agent.iter().cloned().collect();
        spec.lifetime_secs = [1, 300, 3600][i % 3];
        spec.jti = format!("policy-index-{i}");
        // One clock for every host: a one-second token must not expire between two of them.
        let now = mint::now();
        spec.issued_at = now;
        let request = CheckRequest {
            credentials: Credentials { authorization: Some(format!("Bearer {}", spec.sign(&issuer))), dpop: None, agent_identity: None },
            http: None,
            action: call.action.clone(),
            resource: EntityRef { type_name: call.resource_type.clone(), id: call.resource_id.clone() },
            context_json: None,
            entities_json: Some(call.entities.clone()),
            now: Some(now),
        };
        let want = reference.decide(&request);
        *outcomes.entry(format!("{}{}", want.outcome, if want.errors.is_empty() { "" } else { " with errors" })).or_insert(0) += 1;
        for (host, d) in &mut hosts {
            assert_eq!(d.decide(&request), want, "{host:?}, call {i}: {call:?}");
        }
    }
    eprintln!("{outcomes:?}");
    let allowed = outcomes.iter().filter(|(k, _)| k.starts_with("allowed")).map(|(_, n)| n).sum::<i32>();
    assert!(allowed > 10 && outcomes.keys().any(|k| k == "policy_denied with errors"), "{outcomes:?}");
    let denied_by_policy = outcomes.iter().filter(|(k, _)| k.starts_with("policy_denied")).map(|(_, n)| n).sum::<i32>();
    assert!(denied_by_policy > 20, "{outcomes:?}");
}
