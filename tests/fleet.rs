//! One deployment on two nodes: two `agentgate serve` instances sharing one real Redis (started by
//! the test on a free loopback port). A proof accepted at one node is a replay at the other; of
//! many concurrent presentations of one proof exactly one is allowed; a revocation made once is
//! enforced by both; a dead or hung store fails calls closed (`unavailable`) and recovery needs no
//! restart; a store restarted empty is re-seeded with the revocation list by the nodes.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};
use support::redis::{Redis, start_or_skip};
use support::serve::*;

struct Fleet {
    // Kept alive for the servers.
    _deployment: Deployment,
    nodes: Vec<Running>,
    config: std::path::PathBuf,
}

/// Two nodes with one configuration, as a fleet is deployed (the second start maps the first's
/// compiled snapshot from the cache).
fn fleet(redis: &Redis, state_extra: &str) -> Fleet {
    // A prefix per test: tests share nothing even on one store.
    let prefix = format!("agentgate-test:{}:", agentgate::mint::random_id());
    let deployment = Deployment::fleet_node(&redis.url(), &prefix, state_extra);
    let nodes = (0..2).map(|_| start(&deployment)).collect();
    let config = deployment.path("agentgate.toml");
    Fleet { _deployment: deployment, nodes, config }
}

fn outcome(resp: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = resp.status().as_u16();
    if status == 200 {
        return (200, "allowed".into());
    }
    let body: Value = body_json(resp);
    (status, body["outcome"].as_str().unwrap_or_default().to_owned())
}

/// Calls until `done` holds for the outcome or `limit` passes; returns the last outcome and when
/// it first held.
fn until(limit: Duration, mut call: impl FnMut() -> (u16, String), done: impl Fn(&(u16, String)) -> bool) -> ((u16, String), Duration) {
    let started = Instant::now();
    loop {
        let got = call();
        if done(&got) || started.elapsed() > limit {
            return (got, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_proof_accepted_at_one_node_is_a_replay_at_the_other() {
    let Some(redis) = start_or_skip("a_proof_accepted_at_one_node_is_a_replay_at_the_other") else { return };
    let f = fleet(&redis, "");
    let k = keys();
    let t = token(&k, ASSISTANT);
    let p = proof(&k, &t, URI, None);
    assert_eq!(outcome(nginx_call(&f.nodes[0], "/mailboxes/alice/messages", &t, &p)), (200, "allowed".into()));
    assert_eq!(outcome(nginx_call(&f.nodes[1], "/mailboxes/alice/messages", &t, &p)), (401, "replayed".into()));
    assert_eq!(outcome(nginx_call(&f.nodes[0], "/mailboxes/alice/messages", &t, &p)), (401, "replayed".into()));
    // A fresh proof is fine at either node.
    assert_eq!(outcome(nginx_call(&f.nodes[1], "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None))).0, 200);
}

#[test]
fn concurrent_presentations_of_one_proof_spread_over_both_nodes_give_exactly_one_allow() {
    let Some(redis) = start_or_skip("concurrent_presentations_of_one_proof") else { return };
    let f = fleet(&redis, "");
    let k = keys();
    let t = token(&k, ASSISTANT);
    for round in 0..5 {
        let p = proof(&k, &t, URI, None);
        let barrier = std::sync::Barrier::new(24);
        let outcomes: Vec<(u16, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..24)
                .map(|i| {
                    let (node, t, p, barrier) = (&f.nodes[i % 2], &t, &p, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        outcome(nginx_call(node, "/mailboxes/alice/messages", t, p))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let allowed = outcomes.iter().filter(|o| o.0 == 200).count();
        let replayed = outcomes.iter().filter(|o| o.1 == "replayed").count();
        assert_eq!((allowed, replayed), (1, 23), "round {round}: {outcomes:?}");
    }
}

#[test]
fn a_revocation_made_once_is_enforced_by_every_node_within_a_second() {
    let Some(redis) = start_or_skip("a_revocation_made_once_is_enforced_by_every_node_within_a_second") else { return };
    let f = fleet(&redis, "");
    let k = keys();
    let t = token(&k, ASSISTANT);
    for node in &f.nodes {
        assert_eq!(outcome(nginx_call(node, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None))).0, 200);
    }
    let bin = support::agentgate_bin();
    let revoke = Command::new(&bin).args(["revoke", "--config"]).arg(&f.config).args(["--agent", ASSISTANT, "--expires", "1h"]).output().unwrap();
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    for (i, node) in f.nodes.iter().enumerate() {
        let (got, took) =
            until(Duration::from_secs(3), || outcome(nginx_call(node, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None))), |o| o.1 == "revoked");
        assert_eq!(got, (401, "revoked".into()), "node {i}");
        assert!(took < Duration::from_secs(1), "node {i} took {took:?}");
    }
    // The list as the store holds it, then lifted again.
    let list = Command::new(&bin).args(["revocations", "list", "--config"]).arg(&f.config).output().unwrap();
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed["agents"][0]["id"], json!(ASSISTANT));
    assert!(listed["agents"][0]["expires"].as_u64().unwrap() > agentgate::mint::now());
    let unrevoke = Command::new(&bin).args(["unrevoke", "--config"]).arg(&f.config).args(["--agent", ASSISTANT]).output().unwrap();
    assert!(unrevoke.status.success(), "{}", String::from_utf8_lossy(&unrevoke.stderr));
    for node in &f.nodes {
        let (got, _) = until(Duration::from_secs(3), || outcome(nginx_call(node, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None))), |o| o.0 == 200);
        assert_eq!(got.0, 200);
    }
}

#[test]
fn a_dead_store_fails_calls_closed_and_its_return_needs_no_restart() {
    let Some(mut redis) = start_or_skip("a_dead_store_fails_calls_closed") else { return };
    let f = fleet(&redis, "");
    let k = keys();
    let t = token(&k, ASSISTANT);
    let call = |node: &Running| outcome(nginx_call(node, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None)));
    assert_eq!(call(&f.nodes[0]).0, 200);
    redis.kill();
    for node in &f.nodes {
        // nginx dialect: 403, so nginx denies rather than turning a 5xx into its own 500.
        assert_eq!(call(node), (403, "unavailable".into()));
        let health = agent().get(&node.url("/healthz")).call().unwrap();
        assert_eq!(health.status(), 503);
        assert_eq!(body_json(health)["store"]["reachable"], json!(false));
    }
    // AuthZEN says so too, with the reason.
    let resp = post_json(&f.nodes[1], "/access/v1/evaluation", &evaluation(&k, &t, "alice"));
    let body = body_json(resp);
    assert_eq!(body["decision"], json!(false));
    assert_eq!(body["context"]["outcome"], json!("unavailable"));
    assert!(body["context"]["reason"].as_str().unwrap().contains("could not be consulted"), "{body}");
    redis.restart_empty();
    for (i, node) in f.nodes.iter().enumerate() {
        let (got, took) = until(Duration::from_secs(5), || call(node), |o| o.0 == 200);
        assert_eq!(got.0, 200, "node {i} did not recover ({got:?})");
        eprintln!("node {i} recovered {took:?} after the store came back");
    }
    let metrics = agent().get(&f.nodes[0].url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("agentgate_store_errors_total{backend=\"redis\",kind=\"connection\"}") && !l.ends_with(" 0")), "{metrics}");
    assert!(metrics.contains("agentgate_decisions_total{outcome=\"unavailable\"}"), "{metrics}");
}

#[test]
fn a_hung_store_reads_as_unavailable_within_its_timeout_not_as_an_engine_error() {
    let Some(redis) = start_or_skip("a_hung_store_reads_as_unavailable") else { return };
    let f = fleet(&redis, "");
    let k = keys();
    let t = token(&k, ASSISTANT);
    let call = |node: &Running| outcome(nginx_call(node, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None)));
    assert_eq!(call(&f.nodes[0]).0, 200);
    redis.pause();
    let started = Instant::now();
    let got = call(&f.nodes[0]);
    let took = started.elapsed();
    redis.resume();
    assert_eq!(got, (403, "unavailable".into()), "a hung store must not read as `engine_error`");
    assert!(took < Duration::from_millis(1000), "the call waited {took:?} on a hung store");
    let (got, _) = until(Duration::from_secs(5), || call(&f.nodes[1]), |o| o.0 == 200);
    assert_eq!(got.0, 200, "recovered without a restart");
}

#[test]
fn a_store_that_may_evict_keys_is_refused_at_start() {
    let Some(redis) = support::redis::start_or_skip_with("a_store_that_may_evict_keys_is_refused_at_start", &["--maxmemory-policy", "allkeys-lru"]) else {
        return;
    };
    let d = Deployment::fleet_node(&redis.url(), "agentgate-test:evict:", "");
    let err = agentgate::server::state(&agentgate::server::ServeOptions { config: d.path("agentgate.toml"), listen: None }).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("`maxmemory-policy` is `allkeys-lru`") && text.contains("noeviction"), "{text}");
}

#[test]
fn a_store_restarted_empty_forgets_proofs_but_the_nodes_restore_its_revocations() {
    let Some(mut redis) = start_or_skip("a_store_restarted_empty") else { return };
    let f = fleet(&redis, "");
    let k = keys();
    let t = token(&k, ASSISTANT);
    let bin = support::agentgate_bin();
    let revoke = Command::new(&bin).args(["revoke", "--config"]).arg(&f.config).args(["--agent", "spiffe://agents.example/compromised"]).output().unwrap();
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    let p = proof(&k, &t, URI, None);
    assert_eq!(outcome(nginx_call(&f.nodes[0], "/mailboxes/alice/messages", &t, &p)).0, 200);
    std::thread::sleep(Duration::from_millis(300)); // both nodes load the list
    redis.restart_empty();
    // Replay: the store forgot the proof ids it held. A proof still inside its acceptance window
    // (60 s here) is accepted once more: documented in the README ("Running a fleet"); run the
    // store with persistence (`appendonly yes`) where that matters.
    let (got, _) = until(Duration::from_secs(5), || outcome(nginx_call(&f.nodes[1], "/mailboxes/alice/messages", &t, &p)), |o| o.0 != 403);
    assert_eq!(got.0, 200, "the emptied store accepts the proof once more");
    assert_eq!(outcome(nginx_call(&f.nodes[0], "/mailboxes/alice/messages", &t, &p)), (401, "replayed".into()));
    // Revocations: the nodes notice the list went back to version 0 and write their copy back.
    let list = until(
        Duration::from_secs(5),
        || {
            let out = Command::new(&bin).args(["revocations", "list", "--config"]).arg(&f.config).output().unwrap();
            (0, String::from_utf8_lossy(&out.stdout).into_owned())
        },
        |o| o.1.contains("compromised"),
    );
    assert!(list.0.1.contains("spiffe://agents.example/compromised"), "the revocation was not restored: {}", list.0.1);
}

#[test]
fn rediss_with_the_deployments_ca_works_and_an_untrusted_server_is_unavailable() {
    let Some((redis, ca)) = support::redis::start_tls_or_skip("rediss_with_the_deployments_ca_works") else { return };
    let k = keys();
    let t = token(&k, ASSISTANT);
    let trusted = Deployment::fleet_node(&redis.tls_url(), "agentgate-test:tls:", &format!("ca_file = \"{}\"", ca.display()));
    let node = start(&trusted);
    let p = proof(&k, &t, URI, None);
    assert_eq!(outcome(nginx_call(&node, "/mailboxes/alice/messages", &t, &p)).0, 200);
    assert_eq!(outcome(nginx_call(&node, "/mailboxes/alice/messages", &t, &p)), (401, "replayed".into()));
    // Without the CA, the server's certificate is not trusted: the store is unavailable, never
    // silently used.
    let untrusted = Deployment::fleet_node(&redis.tls_url(), "agentgate-test:tls:", "");
    let node = start(&untrusted);
    assert_eq!(outcome(nginx_call(&node, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None))), (403, "unavailable".into()));
}

#[test]
fn one_key_at_its_bound_is_rate_limited_and_other_keys_go_on() {
    let Some(redis) = start_or_skip("one_key_at_its_bound_is_rate_limited") else { return };
    let f = fleet(&redis, "max_proofs_per_key = 5");
    let k = keys();
    let t = token(&k, ASSISTANT);
    let mut outcomes = Vec::new();
    for i in 0..8 {
        outcomes.push(outcome(nginx_call(&f.nodes[i % 2], "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None))));
    }
    assert_eq!(outcomes.iter().filter(|o| o.0 == 200).count(), 5, "{outcomes:?}");
    // nginx dialect: 403 (a 429 would be a 500 there); the outcome says why.
    assert_eq!(outcomes[7], (403, "rate_limited".into()));
    // Another caller (another key, its own token) is not affected.
    let other = agentgate::mint::KeyPair::generate("other-agent").unwrap();
    let mut spec = agentgate::mint::AccessTokenSpec::new("https://auth.demo.agentgate.dev", "bob", "https://mail.example.com");
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec![ASSISTANT.into()];
    spec.bound_key = Some(other.thumbprint());
    let token_b = spec.sign(&k.issuer);
    let proof_b = agentgate::mint::dpop_proof(&other, "GET", "https://mail.example.com/mailboxes/bob/messages", &token_b, agentgate::mint::now(), None);
    assert_eq!(outcome(nginx_call(&f.nodes[0], "/mailboxes/bob/messages", &token_b, &proof_b)).0, 200);
}
