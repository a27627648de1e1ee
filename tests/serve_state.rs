//! `agentgate serve` and its deployment state in memory, as the first outside review tried it:
//! a large revocation list on a loaded pool (finding 13), revocation edits and the compiled
//! artifact cache (finding 16), and one key flooding the proof store (finding 6).

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::serve::*;

/// Finding 13: each pooled instance used to parse the revocation list on the request path, inside
/// the call budget; with 400,000 ids 16 concurrent calls got `engine_error`. The list now lives
/// once, natively, off the request path.
#[test]
fn a_large_revocation_list_does_not_slow_or_fail_calls() {
    let d = Deployment::standard();
    let k = keys();
    let mut spec = agentgate::mint::AccessTokenSpec::new("https://auth.demo.agentgate.dev", "alice", "https://mail.example.com");
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec![ASSISTANT.into()];
    spec.bound_key = Some(k.agent.thumbprint());
    let revoked_jti = spec.jti.clone();
    let revoked_token = spec.sign(&k.issuer);
    let mut jti: Vec<String> = (0..400_000).map(|i| format!("revoked-token-{i:07}-padding-to-look-like-a-real-id")).collect();
    jti.push(revoked_jti);
    std::fs::write(d.path("revoked.json"), json!({ "jti": jti }).to_string()).unwrap();
    let r = start(&d);
    let t = token(&k, ASSISTANT);
    let outcomes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (r, k, t) = (&r, &k, &t);
                s.spawn(move || (0..4).map(|_| nginx_call(r, "/mailboxes/alice/messages", t, &proof(k, t, URI, None)).status().as_u16()).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(outcomes.iter().all(|s| *s == 200), "{outcomes:?}");
    let resp = nginx_call(&r, "/mailboxes/alice/messages", &revoked_token, &proof(&k, &revoked_token, URI, None));
    assert_eq!(resp.status(), 401);
    assert_eq!(body_json(resp)["outcome"], "revoked");
    let metrics = agent().get(&r.url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(metrics.contains("agentgate_revocation_entries 400001"), "{}", metrics.lines().filter(|l| l.contains("revocation")).collect::<Vec<_>>().join("\n"));
}

/// Finding 6: one holder of one valid bound token could fill the replay store for everyone. A
/// key now holds at most `max_proofs_per_key` live proofs; others are untouched.
#[test]
fn one_key_cannot_fill_the_memory_store_for_everyone() {
    let d = Deployment::new("", "\n[server]\nexternal_origins = [\"https://mail.example.com\"]\n\n[state]\nmax_proofs_per_key = 20\n");
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let statuses: Vec<(u16, String)> = (0..25)
        .map(|_| {
            let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None));
            let status = resp.status().as_u16();
            (status, if status == 200 { "allowed".into() } else { body_json(resp)["outcome"].as_str().unwrap().to_owned() })
        })
        .collect();
    assert_eq!(statuses.iter().filter(|s| s.0 == 200).count(), 20, "{statuses:?}");
    assert_eq!(statuses[24], (403, "rate_limited".into()), "nginx dialect: 403 with the outcome");
    // The same key through AuthZEN: still limited, said plainly.
    let body = body_json(post_json(&r, "/access/v1/evaluation", &evaluation(&k, &t, "alice")));
    assert_eq!(body["context"]["outcome"], json!("rate_limited"));
    assert!(body["context"]["reason"].as_str().unwrap().contains("already has 20 live proofs"), "{body}");
    // Another key (another caller with its own token) goes on.
    let other = agentgate::mint::KeyPair::generate("bob-agent").unwrap();
    let mut spec = agentgate::mint::AccessTokenSpec::new("https://auth.demo.agentgate.dev", "bob", "https://mail.example.com");
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec![ASSISTANT.into()];
    spec.bound_key = Some(other.thumbprint());
    let token_b = spec.sign(&k.issuer);
    let proof_b = agentgate::mint::dpop_proof(&other, "GET", "https://mail.example.com/mailboxes/bob/messages", &token_b, agentgate::mint::now(), None);
    assert_eq!(nginx_call(&r, "/mailboxes/bob/messages", &token_b, &proof_b).status(), 200);
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cached_artifacts(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|e| e.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "cwasm")).count()).unwrap_or(0)
}

/// Finding 16: the compiled snapshot's key included the revocation list, so every `revoked.json`
/// edit wrote a new 17.5 MB artifact. The snapshot no longer holds the list: edits (and the
/// reloads around them) add nothing to the cache. Through the real binary, with its own cache.
#[test]
fn revocation_edits_add_nothing_to_the_artifact_cache() {
    let d = Deployment::standard();
    let cache = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(support::agentgate_bin())
        .args(["serve", "--config"])
        .arg(d.path("agentgate.toml"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("AGENTGATE_CACHE_DIR", cache.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve(child);
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    while agent().get(&healthz).call().map(|r| r.status() != 200).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(120), "serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let generation = |body: Value| body["generation"].as_u64().unwrap();
    let after_start = cached_artifacts(cache.path());
    assert!(after_start >= 1, "the first start compiles and caches");
    for i in 0..4 {
        std::fs::write(d.path("revoked.json"), json!({ "agents": [format!("spiffe://agents.example/revoked-{i}")] }).to_string()).unwrap();
        // Reload the configuration as well: a new generation is built, from the same snapshot.
        let before = generation(body_json(agent().get(&healthz).call().unwrap()));
        assert!(Command::new("kill").args(["-HUP", &serve.0.id().to_string()]).status().unwrap().success());
        let started = Instant::now();
        while generation(body_json(agent().get(&healthz).call().unwrap())) == before {
            assert!(started.elapsed() < Duration::from_secs(60), "no reload after SIGHUP");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(cached_artifacts(cache.path()), after_start, "revocation edits and reloads wrote new artifacts");
}
