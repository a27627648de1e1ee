//! The wasi:http gateway component, pre-initialized with the mail deployment, served by a
//! wasi:http host (`wasmtime-wasi-http`, one instance per request as `wasmtime serve` does) in
//! front of a real upstream on a loopback port.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::gateway::{self, WasiHttpHost};
use support::serve::{ASSISTANT, Deployment, Recorded, URI, agent, header, keys, proof, recording_upstream, token};

#[test]
fn the_gateway_forwards_allowed_calls_and_answers_denials_itself() {
    let deployment = Deployment::standard();
    let config = agentgate::config::load(&deployment.path("agentgate.toml")).unwrap();
    let (upstream_addr, seen) = recording_upstream();
    let component = gateway::build(&config, &format!("http://{upstream_addr}"), gateway::StatePlacement::Instance).unwrap();
    let host = WasiHttpHost::new(&component, None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            host.serve(listener, std::future::pending()).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
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

    assert_eq!(seen.lock().unwrap().len(), 1, "the upstream saw only the allowed call");
}

#[test]
fn building_a_gateway_needs_an_origin_and_routes() {
    let deployment = Deployment::new("", "\n[server]\nexternal_origins = []\n");
    let config = agentgate::config::load(&deployment.path("agentgate.toml")).unwrap();
    let err = gateway::build(&config, "http://127.0.0.1:1", gateway::StatePlacement::Instance).unwrap_err();
    assert!(format!("{err:#}").contains("external_origins"), "{err:#}");
}
