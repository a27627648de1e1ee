//! Token status lists through `agentgate serve`: fetched from the `uri` a token names (a list
//! server on a loopback port, lists built here), verified, applied, refreshed after their `ttl`,
//! kept while unreachable up to `status_list_max_age_secs` and refused after, never fetched
//! through a redirect; in a fleet, fetched once and shared through Redis, never replaced there by
//! an older list.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::mint::{AccessTokenSpec, StatusListSpec};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::serve::*;

/// What the list server answers: a status and a body (or a redirect target).
#[derive(Clone)]
enum Answer {
    List(String),
    Status(u16),
    Redirect(String),
}

struct ListServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
}

impl ListServer {
    fn uri(&self) -> String {
        format!("http://{}/status/1", self.addr)
    }
    fn serve(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

fn list_server() -> ListServer {
    let answer = Arc::new(Mutex::new(Answer::Status(404)));
    let fetches = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, f) = (answer.clone(), fetches.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(move || {
                let (a, f) = (a.clone(), f.clone());
                async move {
                    use axum::response::IntoResponse;
                    f.fetch_add(1, Ordering::SeqCst);
                    match a.lock().unwrap().clone() {
                        Answer::List(token) => ([("content-type", "application/statuslist+jwt")], token).into_response(),
                        Answer::Status(code) => axum::http::StatusCode::from_u16(code).unwrap().into_response(),
                        Answer::Redirect(to) => (axum::http::StatusCode::FOUND, [("location", to)]).into_response(),
                    }
                }
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    ListServer { addr, answer, fetches }
}

/// A bound call for alice by the assistant whose token is entry `idx` of the list at `uri`.
fn call_with_status(r: &Running, k: &Keys, idx: u64, uri: &str) -> (u16, String) {
    let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", "alice", "https://mail.example.com");
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec![ASSISTANT.into()];
    spec.bound_key = Some(k.agent.thumbprint());
    spec.status = Some((idx, uri.to_owned()));
    let t = spec.sign(&k.issuer);
    let resp = nginx_call(r, "/mailboxes/alice/messages", &t, &proof(k, &t, URI, None));
    let status = resp.status().as_u16();
    if status == 200 {
        return (200, "allowed".into());
    }
    let body: Value = body_json(resp);
    (status, format!("{}: {}", body["outcome"].as_str().unwrap_or_default(), body["reason"].as_str().unwrap_or_default()))
}

fn until(limit: Duration, mut call: impl FnMut() -> (u16, String), done: impl Fn(&(u16, String)) -> bool) -> (u16, String) {
    let started = Instant::now();
    loop {
        let got = call();
        if done(&got) || started.elapsed() > limit {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn deployment(state: &str) -> Deployment {
    Deployment::new("", &format!("\n[server]\nexternal_origins = [\"https://mail.example.com\"]\n\n[state]\n{state}\n"))
}

#[test]
fn serve_fetches_verifies_applies_and_refreshes_a_status_list() {
    let lists = list_server();
    let k = keys();
    let mut spec = StatusListSpec::new(&lists.uri(), vec![0, 1, 2, 0]);
    spec.bits = 2;
    spec.ttl_secs = Some(1);
    lists.serve(Answer::List(spec.sign(&k.issuer)));
    let r = start(&deployment("status_list_refresh_secs = 60"));
    // The first call waits a moment for the first fetch; a retry is always fine.
    let first = until(Duration::from_secs(5), || call_with_status(&r, &k, 0, &lists.uri()), |o| o.0 == 200);
    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(
        call_with_status(&r, &k, 1, &lists.uri()),
        (401, format!("revoked: access token is invalid (0x01) in its status list `{}` (index 1)", lists.uri()))
    );
    assert!(call_with_status(&r, &k, 2, &lists.uri()).1.contains("is suspended (0x02)"));
    assert_eq!(
        call_with_status(&r, &k, 4, &lists.uri()).1,
        format!("invalid_token: access token status index 4 is beyond the status list `{}` (4 entries)", lists.uri())
    );
    // The issuer revokes entry 0; the list's `ttl` (1 s) brings it in without a restart.
    spec.entries = vec![1, 1, 2, 0];
    spec.issued_at += 1;
    lists.serve(Answer::List(spec.sign(&k.issuer)));
    let revoked = until(Duration::from_secs(5), || call_with_status(&r, &k, 0, &lists.uri()), |o| o.0 == 401);
    assert!(revoked.1.starts_with("revoked: access token is invalid (0x01)"), "{revoked:?}");
    let health: Value = body_json(agent().get(&r.url("/healthz")).call().unwrap());
    assert_eq!(health["store"]["status_lists"]["lists"][0]["uri"], Value::String(lists.uri()));
}

#[test]
fn an_unreachable_list_is_kept_until_its_maximum_age_then_calls_fail_closed() {
    let lists = list_server();
    let k = keys();
    let mut spec = StatusListSpec::new(&lists.uri(), vec![0; 8]);
    spec.ttl_secs = Some(1);
    lists.serve(Answer::List(spec.sign(&k.issuer)));
    let r = start(&deployment("status_list_refresh_secs = 1\nstatus_list_max_age_secs = 3"));
    assert_eq!(until(Duration::from_secs(5), || call_with_status(&r, &k, 0, &lists.uri()), |o| o.0 == 200).0, 200);
    let broken_at = Instant::now();
    lists.serve(Answer::Status(500));
    // The last good copy stays in force while it is younger than the maximum age...
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(call_with_status(&r, &k, 0, &lists.uri()).0, 200, "the last good list is used until its maximum age");
    // ...then the call fails closed, saying why.
    let failed = until(Duration::from_secs(8), || call_with_status(&r, &k, 0, &lists.uri()), |o| o.0 != 200);
    assert!(broken_at.elapsed() >= Duration::from_secs(2), "failed closed too early: {:?}", broken_at.elapsed());
    assert_eq!(failed.0, 403, "nginx dialect: `unavailable` is a 403");
    assert!(failed.1.starts_with("unavailable: the status list") && failed.1.contains("more than `status_list_max_age_secs` (3 s)"), "{failed:?}");
    assert!(failed.1.contains("the server answered 500"), "the fetch error is named: {failed:?}");
    // Back: calls go through again.
    lists.serve(Answer::List(spec.sign(&k.issuer)));
    assert_eq!(until(Duration::from_secs(5), || call_with_status(&r, &k, 0, &lists.uri()), |o| o.0 == 200).0, 200);
}

#[test]
fn a_status_list_behind_a_redirect_or_forged_is_never_used() {
    let lists = list_server();
    let k = keys();
    let r = start(&deployment(""));
    lists.serve(Answer::Redirect("https://elsewhere.example/status/1".into()));
    let refused = until(Duration::from_secs(3), || call_with_status(&r, &k, 0, &lists.uri()), |o| o.1.contains("redirect"));
    assert_eq!(refused.0, 403);
    assert!(refused.1.contains("(a redirect); status lists are fetched from the `uri` the token names only"), "{refused:?}");
    // A list signed by a key the issuer does not publish: refused by the host before it is kept.
    let rogue = agentgate::mint::KeyPair::generate("demo-issuer-2026-11").unwrap();
    let other = list_server();
    other.serve(Answer::List(StatusListSpec::new(&other.uri(), vec![0; 8]).sign(&rogue)));
    let forged = until(Duration::from_secs(3), || call_with_status(&r, &k, 0, &other.uri()), |o| o.1.contains("signature"));
    assert!(forged.1.contains("status list token signature does not verify"), "{forged:?}");
}

#[test]
fn a_fleet_fetches_a_list_once_and_shares_it_and_the_store_never_takes_an_older_list() {
    let Some(redis) = support::redis::start_or_skip("a_fleet_fetches_a_list_once") else { return };
    let lists = list_server();
    let k = keys();
    let spec = StatusListSpec::new(&lists.uri(), vec![0, 1]);
    let newer = spec.sign(&k.issuer);
    lists.serve(Answer::List(newer.clone()));
    let prefix = format!("agentgate-test:{}:", agentgate::mint::random_id());
    let d = Deployment::fleet_node(&redis.url(), &prefix, "");
    let (a, b) = (start(&d), start(&d));
    assert_eq!(until(Duration::from_secs(5), || call_with_status(&a, &k, 0, &lists.uri()), |o| o.0 == 200).0, 200);
    assert_eq!(lists.fetches.load(Ordering::SeqCst), 1);
    // Node B takes the copy node A shared: the issuer is not asked again.
    assert_eq!(until(Duration::from_secs(5), || call_with_status(&b, &k, 1, &lists.uri()), |o| o.0 == 401).1.split(':').next(), Some("revoked"));
    assert_eq!(lists.fetches.load(Ordering::SeqCst), 1, "the second node used the shared copy");
    // The store keeps the newer list when an older one is offered.
    let section = agentgate::config::StateSection {
        backend: agentgate::config::BackendKind::Redis,
        url: Some(redis.url()),
        key_prefix: prefix,
        ..agentgate::config::StateSection::default()
    };
    let backend = agentgate::state::redis::RedisBackend::connect(&section, Arc::default()).unwrap();
    use agentgate::state::Backend as _;
    let older = StatusListSpec { issued_at: spec.issued_at - 600, ..spec.clone() }.sign(&k.issuer);
    let kept = backend.offer_status_list(&lists.uri(), &older, spec.issued_at - 600, agentgate::mint::now()).unwrap().unwrap();
    assert_eq!(kept.0, newer, "an older list never replaces a newer one");
    let even_newer = StatusListSpec { issued_at: spec.issued_at + 60, entries: vec![1, 1], ..spec }.sign(&k.issuer);
    let kept = backend.offer_status_list(&lists.uri(), &even_newer, agentgate::mint::now() + 60, agentgate::mint::now()).unwrap().unwrap();
    assert_eq!(kept.0, even_newer, "a newer list replaces it");
}
