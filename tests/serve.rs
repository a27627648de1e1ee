//! `agentgate serve` over real HTTP on loopback: AuthZEN (single, batch, metadata, malformed
//! bodies), forward-auth in each proxy's dialect, the DPoP challenges, limits, metrics, audit
//! lines without credentials, revocation and hot reload under concurrent load.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::serve::*;

#[test]
fn authzen_evaluation_allows_denies_and_describes_itself() {
    let d = Deployment::standard();
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);

    let resp = agent()
        .post(&r.url("/access/v1/evaluation"))
        .header("content-type", "application/json")
        .header("X-Request-ID", "req-42")
        .send(evaluation(&k, &t, "alice").to_string())
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-request-id"), "req-42");
    let body = body_json(resp);
    assert_eq!(body["decision"], true, "{body}");
    assert_eq!(body["context"]["outcome"], "allowed");
    assert_eq!(body["context"]["policies"], json!(["mail-read-own"]));

    // A deny is 200 {"decision": false} with the reason in `context` (§10.1.2).
    let resp = post_json(&r, "/access/v1/evaluation", &evaluation(&k, &t, "bob"));
    assert_eq!(resp.status(), 200);
    let body = body_json(resp);
    assert_eq!(body["decision"], false);
    assert_eq!(body["context"]["outcome"], "policy_denied");

    // Unknown members are ignored (§10.1.1).
    let mut e = evaluation(&k, &t, "alice");
    e["unknown"] = json!({"x": 1});
    e["context"]["time"] = json!("1985-10-26T01:22-07:00");
    assert_eq!(body_json(post_json(&r, "/access/v1/evaluation", &e))["decision"], true);

    // The verified agent must be the subject the caller names.
    let mut e = evaluation(&k, &t, "alice");
    e["subject"]["id"] = json!("spiffe://agents.example/other");
    let body = body_json(post_json(&r, "/access/v1/evaluation", &e));
    assert_eq!(body["decision"], false);
    assert_eq!(body["context"]["outcome"], "invalid_request");
    assert_eq!(body["context"]["reason"], "the verified agent `spiffe://agents.example/mail-assistant` is not the subject `spiffe://agents.example/other`");

    let meta = body_json(agent().get(&r.url("/.well-known/authzen-configuration")).call().unwrap());
    let base = meta["policy_decision_point"].as_str().unwrap().to_owned();
    assert_eq!(meta["access_evaluation_endpoint"], format!("{base}/access/v1/evaluation"));
    assert_eq!(meta["access_evaluations_endpoint"], format!("{base}/access/v1/evaluations"));
}

#[test]
fn authzen_malformed_bodies_are_400() {
    let d = Deployment::standard();
    let r = start(&d);
    for (body, phrase) in [
        ("{not json", "malformed evaluation request"),
        (r#"{"subject":{"type":"agent","id":"a"},"resource":{"type":"Mailbox","id":"a"}}"#, "`action` is required"),
        (r#"{"action":{"name":"mail:read"}}"#, "`resource` is required"),
        (r#"{"action":{"name":"mail:read"},"resource":{"type":"Mailbox","id":"a"},"context":[1]}"#, "`context` must be a JSON object"),
    ] {
        let resp = agent().post(&r.url("/access/v1/evaluation")).header("content-type", "application/json").send(body).unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err = body_json(resp);
        assert!(err["error"].as_str().unwrap().contains(phrase), "{err}");
    }
    let resp = agent()
        .post(&r.url("/access/v1/evaluations"))
        .header("content-type", "application/json")
        .send(r#"{"options":{"evaluations_semantic":"maybe"}}"#)
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[test]
fn authzen_batch_semantics_share_one_proof() {
    let d = Deployment::standard();
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let shared = evaluation(&k, &t, "alice");
    let items = json!([
        {"resource": {"type": "Mailbox", "id": "alice", "properties": {"owner": {"type": "User", "id": "alice"}}}},
        {"resource": {"type": "Mailbox", "id": "bob", "properties": {"owner": {"type": "User", "id": "bob"}}}},
        {"resource": {"type": "Mailbox", "id": "alice", "properties": {"owner": {"type": "User", "id": "alice"}}}},
    ]);
    let batch = |semantic: Option<&str>, context: &Value| {
        let mut b = json!({"subject": shared["subject"], "action": shared["action"], "context": context, "evaluations": items});
        if let Some(s) = semantic {
            b["options"] = json!({"evaluations_semantic": s});
        }
        b
    };
    // One HTTP call's proof serves every item of its batch (a second batch with it is a replay).
    let context = shared["context"].clone();
    let all = body_json(post_json(&r, "/access/v1/evaluations", &batch(None, &context)));
    let decisions: Vec<bool> = all["evaluations"].as_array().unwrap().iter().map(|e| e["decision"].as_bool().unwrap()).collect();
    assert_eq!(decisions, vec![true, false, true], "{all}");
    let replayed = body_json(post_json(&r, "/access/v1/evaluations", &batch(None, &context)));
    assert_eq!(replayed["evaluations"][0]["context"]["outcome"], "replayed");

    let fresh = || {
        let mut c = shared["context"].clone();
        c["dpop"] = json!(proof(&k, &t, URI, None));
        c
    };
    let first_deny = body_json(post_json(&r, "/access/v1/evaluations", &batch(Some("deny_on_first_deny"), &fresh())));
    assert_eq!(first_deny["evaluations"].as_array().unwrap().len(), 2, "{first_deny}");
    let first_permit = body_json(post_json(&r, "/access/v1/evaluations", &batch(Some("permit_on_first_permit"), &fresh())));
    assert_eq!(first_permit["evaluations"].as_array().unwrap().len(), 1, "{first_permit}");
    assert_eq!(first_permit["evaluations"][0]["decision"], true);

    // No items: a single evaluation of the top-level request.
    let single = json!({"subject": shared["subject"], "action": shared["action"], "resource": shared["resource"], "context": fresh()});
    assert_eq!(body_json(post_json(&r, "/access/v1/evaluations", &single))["decision"], true);
    // A malformed item is a deny with an error, the others still decide.
    let mut b = batch(None, &fresh());
    b["evaluations"][1] = json!({"resource": {"type": "", "id": "x"}});
    let mixed = body_json(post_json(&r, "/access/v1/evaluations", &b));
    assert_eq!(mixed["evaluations"][1]["context"]["error"]["status"], 400, "{mixed}");
    assert_eq!(mixed["evaluations"][2]["decision"], true);
}

#[test]
fn forward_auth_speaks_every_proxy_dialect() {
    let k = keys();
    let t = token(&k, ASSISTANT);
    let path = "/mailboxes/alice/messages";

    let nginx = Deployment::standard();
    let r = start(&nginx);
    let resp = nginx_call(&r, &format!("{path}?page=2"), &t, &proof(&k, &t, URI, None));
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-agentgate-agent"), ASSISTANT);
    assert_eq!(header(&resp, "x-agentgate-user"), "alice");
    assert_eq!(header(&resp, "x-agentgate-chain"), ASSISTANT);
    assert!(!header(&resp, "x-agentgate-decision-id").is_empty());
    drop(r);

    // Traefik ForwardAuth and Caddy forward_auth: a GET with X-Forwarded-*.
    for proxy in ["traefik", "caddy"] {
        let d = Deployment::new("", &format!("\n[server]\nproxy = \"{proxy}\"\nexternal_origins = [\"https://mail.example.com\"]\n"));
        let r = start(&d);
        let forwarded = |method: &str, uri: &str, proof_uri: &str| {
            agent()
                .get(&r.url("/forward-auth"))
                .header("X-Forwarded-Method", method)
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "mail.example.com")
                .header("X-Forwarded-Uri", uri)
                .header("Authorization", &format!("DPoP {t}"))
                .header("DPoP", &proof(&k, &t, proof_uri, None))
                // A client-sent nginx header must not change what is authorized.
                .header("X-Original-Method", "GET")
                .header("X-Original-URI", path)
                .call()
                .unwrap()
        };
        let resp = forwarded("GET", path, URI);
        assert_eq!(resp.status(), 200, "{proxy}");
        assert_eq!(header(&resp, "x-agentgate-user"), "alice");
        let resp = forwarded("DELETE", "/admin/purge", "https://mail.example.com/admin/purge");
        assert_eq!(resp.status(), 400, "{proxy}: the client's X-Original-* are ignored");
        assert_eq!(body_json(resp)["reason"], "no route for `DELETE /admin/purge`");
    }

    // Envoy ext_authz (HTTP service): the original method, the path after the prefix, Host.
    let envoy = Deployment::new("", "\n[server]\nproxy = \"envoy\"\nexternal_origins = [\"https://mail.example.com\"]\n");
    let r = start(&envoy);
    let resp = agent()
        .get(&r.url(&format!("/forward-auth{path}")))
        .header("Host", "mail.example.com")
        .header("X-Forwarded-Proto", "https")
        .header("Authorization", &format!("DPoP {t}"))
        .header("DPoP", &proof(&k, &t, URI, None))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-agentgate-agent"), ASSISTANT);
    // `/` behind Envoy arrives as the prefix with a trailing slash; with no route it is a 400.
    let resp = agent().get(&r.url("/forward-auth/")).header("Host", "mail.example.com").call().unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(body_json(resp)["reason"], "no route for `GET /`");
}

#[test]
fn forward_auth_denials_have_the_right_status_and_challenge() {
    let d = Deployment::standard();
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);

    // Policy says no: 403.
    let resp = nginx_call(&r, "/mailboxes/bob/messages", &t, &proof(&k, &t, "https://mail.example.com/mailboxes/bob/messages", None));
    assert_eq!(resp.status(), 403);
    assert_eq!(body_json(resp)["outcome"], "policy_denied");

    // A proof for another URI: 401 with a DPoP challenge.
    let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, "https://mail.example.com/other", None));
    assert_eq!(resp.status(), 401);
    let challenge = header(&resp, "www-authenticate");
    assert!(challenge.starts_with(r#"DPoP error="invalid_dpop_proof", error_description="DPoP proof `htu`"#), "{challenge}");
    assert!(challenge.ends_with(r#"algs="ES256""#), "{challenge}");

    // A replayed proof: 401 invalid_dpop_proof.
    let p = proof(&k, &t, URI, None);
    assert_eq!(nginx_call(&r, "/mailboxes/alice/messages", &t, &p).status(), 200);
    let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &p);
    assert_eq!(resp.status(), 401);
    assert_eq!(body_json(resp)["outcome"], "replayed");

    // No credentials: a challenge without an error code (RFC 6750 §3.1).
    let resp = agent()
        .get(&r.url("/forward-auth"))
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/mailboxes/alice/messages")
        .header("X-Forwarded-Host", "mail.example.com")
        .header("X-Forwarded-Proto", "https")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "www-authenticate"), r#"DPoP algs="ES256""#);

    // No route: 403 for nginx (anything else would become a 500).
    let resp = nginx_call(&r, "/calendars/alice", &t, &proof(&k, &t, "https://mail.example.com/calendars/alice", None));
    assert_eq!(resp.status(), 403);
    assert_eq!(body_json(resp)["reason"], "no route for `GET /calendars/alice`");
    // A dot segment matches no route, whatever the template.
    let resp = nginx_call(&r, "/mailboxes/alice/messages/../../admin", &t, &proof(&k, &t, URI, None));
    assert_eq!(resp.status(), 403);

    // An origin that is not configured: the external URI is never taken from an arbitrary host.
    let resp = agent()
        .get(&r.url("/forward-auth"))
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/mailboxes/alice/messages")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "evil.example.com")
        .header("Authorization", &format!("DPoP {t}"))
        .header("DPoP", &proof(&k, &t, "https://evil.example.com/mailboxes/alice/messages", None))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(body_json(resp)["reason"].as_str().unwrap().contains("is not a configured external origin"));
}

#[test]
fn forwarded_headers_from_an_untrusted_peer_are_refused() {
    let d = Deployment::new("", "\n[server]\nexternal_origins = [\"https://mail.example.com\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None));
    assert_eq!(resp.status(), 403);
    assert!(body_json(resp)["reason"].as_str().unwrap().contains("not a trusted proxy"));
}

#[test]
fn a_nonce_challenge_carries_the_nonce_and_the_retry_passes() {
    let d = Deployment::new("", "\n[dpop.nonce]\nsecret_file = \"nonce.secret\"\n\n[server]\nexternal_origins = [\"https://mail.example.com\"]\n");
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None));
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate").starts_with(r#"DPoP error="use_dpop_nonce""#));
    assert_eq!(header(&resp, "cache-control"), "no-store");
    let nonce = header(&resp, "dpop-nonce");
    assert!(!nonce.is_empty());
    let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, Some(&nonce)));
    assert_eq!(resp.status(), 200);
}

#[test]
fn size_limits_health_and_metrics() {
    let d = Deployment::standard();
    let r = start(&d);
    let resp = agent().get(&r.url("/healthz")).header("X-Big", &"x".repeat(20_000)).call().unwrap();
    assert_eq!(resp.status(), 431);
    let resp = agent().post(&r.url("/access/v1/evaluation")).header("content-type", "application/json").send("x".repeat(100_000)).unwrap();
    assert_eq!(resp.status(), 413);
    let health = body_json(agent().get(&r.url("/healthz")).call().unwrap());
    assert_eq!(health["status"], "ok");
    assert_eq!(health["generation"], 1);

    let k = keys();
    let t = token(&k, ASSISTANT);
    assert_eq!(nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None)).status(), 200);
    let mut resp = agent().get(&r.url("/metrics")).call().unwrap();
    assert_eq!(header(&resp, "content-type"), "text/plain; version=0.0.4");
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(text.contains("agentgate_decisions_total{outcome=\"allowed\"} 1"), "{text}");
    assert!(text.contains("agentgate_decision_duration_seconds_count 1"), "{text}");
    assert!(text.contains("agentgate_replay_store_entries 1"), "{text}");
    assert!(text.contains("agentgate_reloads_total{result=\"failed\"} 0"), "{text}");
}

#[test]
fn audit_lines_and_logs_never_contain_credentials() {
    let d = Deployment::standard();
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let mut secrets = vec![t.clone()];
    let mut statuses = Vec::new();
    for path in ["/mailboxes/alice/messages", "/mailboxes/bob/messages"] {
        let p = proof(&k, &t, &format!("https://mail.example.com{path}"), None);
        secrets.push(p.clone());
        statuses.push(nginx_call(&r, path, &t, &p).status().as_u16());
        statuses.push(nginx_call(&r, path, &t, &p).status().as_u16());
    }
    assert_eq!(statuses, vec![200, 401, 403, 401]);
    let body = evaluation(&k, &t, "alice");
    secrets.push(body["context"]["dpop"].as_str().unwrap().to_owned());
    post_json(&r, "/access/v1/evaluation", &body);
    std::thread::sleep(Duration::from_millis(300));

    let audit = std::fs::read_to_string(d.path("audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5, "{audit}");
    let first = &lines[0];
    for field in ["time", "decision_id", "outcome", "agent", "user", "chain", "action", "resource", "policies", "token_id", "key_thumbprint", "latency_us"] {
        assert!(first.get(field).is_some(), "audit line lacks `{field}`: {first}");
    }
    assert_eq!(first["outcome"], "allowed");
    assert_eq!(first["resource"], r#"Mailbox::"alice""#);
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    for secret in &secrets {
        // Any of the three parts of a JWS (header, payload, signature) would be a leak.
        for part in secret.split('.').filter(|p| p.len() > 20) {
            assert!(!audit.contains(part), "the audit log contains credential material");
            assert!(!logs.contains(part), "the service log contains credential material");
        }
    }
}

#[test]
fn a_revoked_agent_is_refused_within_the_refresh_interval() {
    let d = Deployment::standard();
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    assert_eq!(nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None)).status(), 200);
    let tmp = d.path("revoked.json.tmp");
    std::fs::write(&tmp, json!({"agents": [ASSISTANT]}).to_string()).unwrap();
    std::fs::rename(&tmp, d.path("revoked.json")).unwrap();
    // The list is applied off the request path, polled every `revocation_refresh_ms` (200 ms).
    let revoked_at = std::time::Instant::now();
    let resp = loop {
        let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None));
        if resp.status() != 200 || revoked_at.elapsed() > Duration::from_secs(2) {
            break resp;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(revoked_at.elapsed() < Duration::from_secs(1), "took {:?}", revoked_at.elapsed());
    assert_eq!(resp.status(), 401);
    let body = body_json(resp);
    assert_eq!(body["outcome"], "revoked");
}

#[test]
fn hot_reload_under_load_fails_no_request_and_a_broken_policy_changes_nothing() {
    let d = Deployment::standard();
    let r = start(&d);
    let k = Arc::new(keys());
    let t = Arc::new(token(&k, ASSISTANT));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let completed = Arc::new(AtomicUsize::new(0));
    let addr = r.addr;
    // Two clients calling without pause; any status but 200 (allowed) or 403 (denied after the new
    // policy) is a failed request.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (k, t, stop, failures, completed) = (k.clone(), t.clone(), stop.clone(), failures.clone(), completed.clone());
            std::thread::spawn(move || {
                let url = format!("http://{addr}/forward-auth");
                while !stop.load(Ordering::Relaxed) {
                    match agent()
                        .get(&url)
                        .header("X-Original-Method", "GET")
                        .header("X-Original-URI", "/mailboxes/alice/messages")
                        .header("X-Forwarded-Proto", "https")
                        .header("X-Forwarded-Host", "mail.example.com")
                        .header("Authorization", &format!("DPoP {t}"))
                        .header("DPoP", &proof(&k, &t, URI, None))
                        .call()
                    {
                        Ok(resp) if matches!(resp.status().as_u16(), 200 | 403) => {
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => failures.lock().unwrap().push(format!("status {}", resp.status())),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();

    // Drop the read permission: the next generation denies alice's assistant.
    std::thread::sleep(Duration::from_millis(500));
    replace_file(
        &d.path("policies/mail.cedar"),
        "@id(\"mail-send-own\")\npermit (principal, action == Action::\"mail:send\", resource)\nwhen { context.scopes.contains(\"mail.send\") && resource.owner == context.user };\n",
    );
    // The new policy takes effect. Not necessarily in generation 2: creating the replacement's
    // temporary file already changes the directory, and a reload that starts then reads the old
    // policy (correctly) before the rename triggers the next one.
    wait_for("the new policy", Duration::from_secs(60), || {
        r.state.deployment().generation() >= 2 && nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None)).status() == 403
    });
    let good = r.state.deployment().generation();

    // A broken policy file: the reload fails, the last good set stays, and it is counted.
    replace_file(&d.path("policies/mail.cedar"), "permit (principal, action == Action::\"mail:read\", resource) when { context.nope };\n");
    wait_for("the failed reload", Duration::from_secs(60), || r.state.metrics().failed_reloads() >= 1);
    // At most one more generation: the old file read again when the temporary file appeared.
    assert!(r.state.deployment().generation() <= good + 1, "the broken file built no generation");
    assert!(r.state.last_reload_error().unwrap().contains("nope"));
    assert_eq!(nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None)).status(), 403);

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} failed request(s) during reloads: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(completed.load(Ordering::Relaxed) > 20, "the load kept running through the reloads");
}
