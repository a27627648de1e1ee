//! The wasi:http gateway component, pre-initialized with the mail deployment, served by a
//! wasi:http host (`wasmtime-wasi-http`, one instance per request as `wasmtime serve` does) in
//! front of a real upstream on a loopback port. The default build keeps proof ids per instance;
//! the `--state host` build imports agentgate's `state`, backed here by a real Redis shared by
//! two gateway hosts.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::gateway::{self, StatePlacement, WasiHttpHost};
use std::net::SocketAddr;
use support::serve::{ASSISTANT, Deployment, Recorded, URI, agent, header, keys, proof, recording_upstream, token};

/// Serves `host` on a loopback port from its own runtime; returns the address.
fn serve(host: WasiHttpHost) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            host.serve(listener, std::future::pending()).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

#[test]
fn the_gateway_forwards_allowed_calls_and_answers_denials_itself() {
    let deployment = Deployment::standard();
    let config = agentgate::config::load(&deployment.path("agentgate.toml")).unwrap();
    let (upstream_addr, seen) = recording_upstream();
    let component = gateway::build(&config, &format!("http://{upstream_addr}"), StatePlacement::Instance).unwrap();
    let addr = serve(WasiHttpHost::new(&component, None).unwrap());
    let k = keys();
    let t = token(&k, ASSISTANT);
    let url = |path: &str| format!("http://{addr}{path}");

    // Allowed: forwarded with the identity headers, without the credentials, response relayed.
    let mut resp = agent()
        .get(&url("/mailboxes/alice/messages?page=1"))
        .header("Authorization", &format!("DPoP {t}"))
        .header("DPoP", &proof(&k, &t, URI, None))
        .header("X-Agentgate-User", "mallory")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-upstream"), "yes");
    assert_eq!(resp.body_mut().read_to_string().unwrap(), "hello from upstream");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let Recorded { uri, headers: h, .. } = &seen[0];
        assert_eq!(uri, "/mailboxes/alice/messages?page=1");
        assert_eq!(h.get("x-agentgate-agent").map(String::as_str), Some(ASSISTANT));
        assert_eq!(h.get("x-agentgate-user").map(String::as_str), Some("alice"), "a forged identity header is replaced");
        assert!(h.get("x-agentgate-decision-id").is_some());
        assert!(h.get("authorization").is_none() && h.get("dpop").is_none(), "credentials stay at the gateway");
    }

    // Denied by policy: 403 from the gateway.
    let resp = agent()
        .get(&url("/mailboxes/bob/messages"))
        .header("Authorization", &format!("DPoP {t}"))
        .header("DPoP", &proof(&k, &t, "https://mail.example.com/mailboxes/bob/messages", None))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(support::serve::body_json(resp)["outcome"], "policy_denied");

    // An invalid proof: 401 with the DPoP challenge.
    let resp = agent()
        .get(&url("/mailboxes/alice/messages"))
        .header("Authorization", &format!("DPoP {t}"))
        .header("DPoP", &proof(&k, &t, "https://mail.example.com/other", None))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate").starts_with(r#"DPoP error="invalid_dpop_proof""#));

    // No route: 400.
    let resp = agent().get(&url("/admin")).call().unwrap();
    assert_eq!(resp.status(), 400);

    // Repeated credentials: the gateway folds them and the engine refuses the fold (issue 11 #1).
    let resp = agent()
        .get(&url("/mailboxes/alice/messages"))
        .header("Authorization", &format!("DPoP {t}"))
        .header("Authorization", &format!("DPoP {t}"))
        .header("DPoP", &proof(&k, &t, URI, None))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(support::serve::body_json(resp)["outcome"], "invalid_request");
    let p = proof(&k, &t, URI, None);
    let resp =
        agent().get(&url("/mailboxes/alice/messages")).header("Authorization", &format!("DPoP {t}")).header("DPoP", &p).header("DPoP", &p).call().unwrap();
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate").contains("more than one DPoP proof"));

    assert_eq!(seen.lock().unwrap().len(), 1, "the upstream saw only the allowed call");
}

/// Issue 10 part 3: the gateway built with `--state host` gets proofs and revocations from the
/// host. Two gateway hosts (two nodes) share one Redis: a proof forwarded by one is a replay at
/// the other, and a store outage is `unavailable` (503, Retry-After) rather than a forwarded call.
#[test]
fn a_gateway_with_host_state_shares_replay_protection_across_nodes() {
    let Some(mut redis) = support::redis::start_or_skip("a_gateway_with_host_state_shares_replay_protection_across_nodes") else { return };
    let deployment = Deployment::fleet_node(&redis.url(), "agentgate-test:gateway:", "");
    let config = agentgate::config::load(&deployment.path("agentgate.toml")).unwrap();
    let (upstream_addr, seen) = recording_upstream();
    let component = gateway::build(&config, &format!("http://{upstream_addr}"), StatePlacement::Host).unwrap();
    // A shared-state build refuses to run without the deployment's state, and the per-instance
    // build refuses to be given one it would ignore.
    assert!(format!("{:#}", WasiHttpHost::new(&component, None).unwrap_err()).contains("--config"));
    let node = || {
        let state = agentgate::state::DeploymentState::open(&config.file.state, None).unwrap();
        state.status_lists().configure(&config.engine).unwrap();
        serve(WasiHttpHost::new(&component, Some(state)).unwrap())
    };
    let (a, b) = (node(), node());
    let k = keys();
    let t = token(&k, ASSISTANT);
    let call = |addr: SocketAddr, p: &str| {
        agent().get(&format!("http://{addr}/mailboxes/alice/messages")).header("Authorization", &format!("DPoP {t}")).header("DPoP", p).call().unwrap()
    };
    let p = proof(&k, &t, URI, None);
    assert_eq!(call(a, &p).status(), 200);
    let again = call(b, &p);
    assert_eq!(again.status(), 401, "the proof forwarded by node A is a replay at node B");
    assert_eq!(support::serve::body_json(again)["outcome"], "replayed");
    assert_eq!(call(b, &proof(&k, &t, URI, None)).status(), 200);
    redis.kill();
    let down = call(a, &proof(&k, &t, URI, None));
    assert_eq!(down.status(), 503);
    assert_eq!(header(&down, "retry-after"), "1");
    assert_eq!(support::serve::body_json(down)["outcome"], "unavailable");
    assert_eq!(seen.lock().unwrap().len(), 2, "nothing was forwarded while the store was down");
}

#[test]
fn building_a_gateway_needs_an_origin_and_routes() {
    let deployment = Deployment::new("", "\n[server]\nexternal_origins = []\n");
    let config = agentgate::config::load(&deployment.path("agentgate.toml")).unwrap();
    let err = gateway::build(&config, "http://127.0.0.1:1", gateway::StatePlacement::Instance).unwrap_err();
    assert!(format!("{err:#}").contains("external_origins"), "{err:#}");
}
