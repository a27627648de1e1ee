//! Issue 11 ("Hardening I"), the HTTP service findings, each against a real `agentgate serve` on
//! loopback: repeated decision headers (#1), decision-API authentication (#9), batch caps and
//! JSON-only bodies (#10), hot reload consistency (#11), connection timeouts, cap and drain (#12),
//! a stalled or failing audit sink (#15, #19), redacted URLs (#18) and request hygiene (#19).

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::serve::*;

const ALICE: &str = "/mailboxes/alice/messages";

/// The standard deployment with `[server]` keys added and the `[audit]` table replaced.
fn deployment(server_extra: &str, audit: Option<&str>) -> Deployment {
    let d = Deployment::new("", &format!("\n[server]\nexternal_origins = [\"https://mail.example.com\"]\nmax_body_bytes = 262144\n{server_extra}\n"));
    if let Some(audit) = audit {
        let path = d.path("agentgate.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace("[audit]\npath = \"audit.jsonl\"\n", &format!("[audit]\n{audit}\n"));
        std::fs::write(&path, text).unwrap();
    }
    d
}

/// A raw HTTP/1.1 exchange: writes `request`, returns what the server answered before closing
/// (or before `wait`).
fn raw(r: &Running, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(r.addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// #1 repeated headers that feed a decision

#[test]
fn repeated_forwarded_headers_are_refused_in_every_dialect() {
    let k = keys();
    let t = token(&k, ASSISTANT);
    let nginx = deployment("", None);
    let r = start(&nginx);
    let base = || agent().get(&r.url("/forward-auth")).header("Authorization", &format!("DPoP {t}")).header("DPoP", &proof(&k, &t, URI, None));
    let full = [("X-Original-Method", "GET"), ("X-Original-URI", ALICE), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "mail.example.com")];
    for (repeat, second) in [
        ("X-Original-Method", "DELETE"),
        ("X-Original-URI", "/mailboxes/bob/messages"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "evil.example.com"),
    ] {
        let mut req = base();
        for (name, value) in full {
            req = req.header(name, value);
        }
        let resp = req.header(repeat, second).call().unwrap();
        assert_eq!(resp.status(), 403, "{repeat}");
        let body = body_json(resp);
        assert_eq!(body["outcome"], "invalid_request");
        assert_eq!(body["reason"], format!("the header `{repeat}` appears more than once"));
    }
    drop(r);

    for proxy in ["traefik", "caddy"] {
        let d = Deployment::new("", &format!("\n[server]\nproxy = \"{proxy}\"\nexternal_origins = [\"https://mail.example.com\"]\n"));
        let r = start(&d);
        for repeat in ["X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Proto", "X-Forwarded-Host"] {
            let resp = agent()
                .get(&r.url("/forward-auth"))
                .header("X-Forwarded-Method", "GET")
                .header("X-Forwarded-Uri", ALICE)
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "mail.example.com")
                .header(repeat, "x")
                .header("Authorization", &format!("DPoP {t}"))
                .header("DPoP", &proof(&k, &t, URI, None))
                .call()
                .unwrap();
            assert_eq!(resp.status(), 400, "{proxy} {repeat}");
            assert_eq!(body_json(resp)["reason"], format!("the header `{repeat}` appears more than once"));
        }
    }

    // Envoy reads `Host`: two of them are refused too.
    let envoy = Deployment::new("", "\n[server]\nproxy = \"envoy\"\nexternal_origins = [\"https://mail.example.com\"]\n");
    let r = start(&envoy);
    let answer = raw(
        &r,
        format!(
            "GET /forward-auth{ALICE} HTTP/1.1\r\nHost: mail.example.com\r\nHost: evil.example.com\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("the header `Host` appears more than once"), "{answer}");
}

// ---------------------------------------------------------------------------------------------
// #9 decision-API authentication

#[test]
fn the_decision_apis_authenticate_their_callers() {
    let k = keys();
    let t = token(&k, ASSISTANT);
    // Loopback is not among the allowed clients: refused, with a JSON body; forward-auth and the
    // open endpoints are untouched.
    let d = deployment("\n[server.decision_api]\nallowed_clients = [\"10.0.0.0/8\"]\n", None);
    let r = start(&d);
    for path in ["/access/v1/evaluation", "/access/v1/evaluations", "/v1/check"] {
        let resp = post_json(&r, path, &evaluation(&k, &t, "alice"));
        assert_eq!(resp.status(), 403, "{path}");
        assert_eq!(body_json(resp)["error"], "the decision API does not accept calls from `127.0.0.1` (see `[server.decision_api] allowed_clients`)");
    }
    assert_eq!(nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status(), 200);
    assert_eq!(agent().get(&r.url("/healthz")).call().unwrap().status(), 200);
    assert_eq!(agent().get(&r.url("/metrics")).call().unwrap().status(), 200);
    drop(r);

    // A bearer secret on top of the address rule.
    let d = deployment("\n[server.decision_api]\nbearer_token_file = \"api.secret\"\n", None);
    let secret = "decision-api-TEST-ONLY-secret-0123456789abcdef";
    std::fs::write(d.path("api.secret"), format!("{secret}\n")).unwrap();
    let r = start(&d);
    let call = |auth: Option<&str>| {
        let mut req = agent().post(&r.url("/access/v1/evaluation")).header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send(evaluation(&k, &t, "alice").to_string()).unwrap()
    };
    let resp = call(None);
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "www-authenticate"), "Bearer realm=\"agentgate decision API\"");
    assert_eq!(body_json(resp)["error"], "the decision API requires `Authorization: Bearer <secret>`");
    let resp = call(Some("Bearer wrong-secret"));
    assert_eq!(resp.status(), 401);
    assert_eq!(body_json(resp)["error"], "the decision API bearer secret is wrong");
    let resp = call(Some(&format!("Bearer {secret}")));
    assert_eq!(resp.status(), 200);
    assert_eq!(body_json(resp)["decision"], true);
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(!logs.contains(secret), "the secret is never logged");
    drop(r);

    // A short secret is a configuration error.
    let d = deployment("\n[server.decision_api]\nbearer_token_file = \"api.secret\"\n", None);
    std::fs::write(d.path("api.secret"), "short").unwrap();
    let e = agentgate::server::state(&agentgate::server::ServeOptions { config: d.path("agentgate.toml"), listen: None }).unwrap_err();
    assert!(format!("{e:#}").contains("the decision API bearer secret must be at least 32 bytes"), "{e:#}");

    // `open = true`: anyone.
    let d = deployment("\n[server.decision_api]\nopen = true\nallowed_clients = [\"10.0.0.0/8\"]\n", None);
    let r = start(&d);
    assert_eq!(body_json(post_json(&r, "/access/v1/evaluation", &evaluation(&k, &t, "alice")))["decision"], true);
}

// ---------------------------------------------------------------------------------------------
// #10 batch caps, shared defaults, bounded audit lines, JSON only

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

#[test]
fn a_small_batch_cannot_cost_gigabytes() {
    let d = deployment("", None);
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    // The reviewer's shape: a large top-level default and thousands of tiny items, ~70 KB.
    let big = "x".repeat(20_000);
    let items: Vec<Value> = (0..5000).map(|_| json!({})).collect();
    let body = json!({
        "subject": {"type": "agent", "id": ASSISTANT, "properties": {"blob": big}},
        "action": {"name": "mail:read"},
        "resource": {"type": "Mailbox", "id": big, "properties": {"owner": {"type": "User", "id": "alice"}}},
        "context": {"authorization": format!("DPoP {t}"), "dpop": proof(&k, &t, URI, None), "http": {"method": "GET", "uri": URI}, "input": {"blob": big}},
        "evaluations": items,
    })
    .to_string();
    assert!((60_000..90_000).contains(&body.len()), "{}", body.len());
    let rss_before = rss_kib();
    let started = Instant::now();
    let resp = agent().post(&r.url("/access/v1/evaluations")).header("content-type", "application/json").send(&body).unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(body_json(resp)["error"], "`evaluations` has 5000 items, over the limit of 64 (`[server] max_batch_items`)");
    assert!(started.elapsed() < Duration::from_secs(2), "refused quickly: {:?}", started.elapsed());
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 100, "RSS grew by {grown_mib} MiB");

    // At the cap the batch runs; the big default is not repeated into audit lines.
    let items: Vec<Value> = (0..64).map(|_| json!({})).collect();
    let mut at_cap: Value = serde_json::from_str(&body).unwrap();
    at_cap["evaluations"] = json!(items);
    let resp = post_json(&r, "/access/v1/evaluations", &at_cap);
    assert_eq!(resp.status(), 200);
    assert_eq!(body_json(resp)["evaluations"].as_array().unwrap().len(), 64);
    wait_for("the audit lines", Duration::from_secs(10), || std::fs::read_to_string(d.path("audit.jsonl")).unwrap_or_default().lines().count() >= 64);
    let audit = std::fs::read_to_string(d.path("audit.jsonl")).unwrap();
    for line in audit.lines() {
        assert!(line.len() < 4096, "audit line of {} bytes", line.len());
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["resource"].as_str().unwrap().ends_with("[20000 bytes]\""), "{}", v["resource"]);
    }
}

#[test]
fn decision_apis_accept_only_json_bodies() {
    let d = deployment("", None);
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    for path in ["/access/v1/evaluation", "/access/v1/evaluations", "/v1/check"] {
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data; boundary=x"), None] {
            let mut req = agent().post(&r.url(path));
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let resp = req.send(evaluation(&k, &t, "alice").to_string()).unwrap();
            assert_eq!(resp.status(), 415, "{path} {content_type:?}");
            assert_eq!(body_json(resp)["error"], "the request body must be `Content-Type: application/json`");
        }
    }
    let resp = agent()
        .post(&r.url("/access/v1/evaluation"))
        .header("content-type", "application/json; charset=utf-8")
        .send(evaluation(&k, &t, "alice").to_string())
        .unwrap();
    assert_eq!(body_json(resp)["decision"], true);
}

// ---------------------------------------------------------------------------------------------
// #19 request ids, UTF-8, duplicate members

#[test]
fn request_hygiene() {
    let d = deployment("", None);
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);

    // X-Request-ID: echoed when sane, never at any length.
    let resp = agent().get(&r.url("/healthz")).header("X-Request-ID", "req-1").call().unwrap();
    assert_eq!(header(&resp, "x-request-id"), "req-1");
    let resp = agent().get(&r.url("/healthz")).header("X-Request-ID", &"a".repeat(5000)).call().unwrap();
    assert_eq!(header(&resp, "x-request-id"), "");

    // Invalid UTF-8: 400 on /v1/check as on AuthZEN.
    let mut bytes = br#"{"action":"mail:read","resource":{"type":"Mailbox","id":"al"#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(br#"ice"}}"#);
    let resp = agent().post(&r.url("/v1/check")).header("content-type", "application/json").send(&bytes[..]).unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(body_json(resp)["error"], "malformed request: the body is not UTF-8");

    // Duplicate members anywhere, including inside `context`: 400.
    let e = evaluation(&k, &t, "alice");
    let dpop = e["context"]["dpop"].as_str().unwrap();
    let text = e.to_string().replacen("\"dpop\":", &format!("\"dpop\":\"{dpop}\",\"dpop\":"), 1);
    let resp = agent().post(&r.url("/access/v1/evaluation")).header("content-type", "application/json").send(&text).unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(body_json(resp)["error"], "malformed evaluation request: the body has the member `dpop` twice");
    let batch = r#"{"evaluations":[],"context":{"input":{"a":1,"a":2}}}"#;
    let resp = agent().post(&r.url("/access/v1/evaluations")).header("content-type", "application/json").send(batch).unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(body_json(resp)["error"], "malformed evaluations request: the body has the member `a` twice");
    let check = r#"{"action":"mail:read","action":"mail:send","resource":{"type":"Mailbox","id":"alice"}}"#;
    let resp = agent().post(&r.url("/v1/check")).header("content-type", "application/json").send(check).unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(body_json(resp)["error"], "malformed request: the body has the member `action` twice");
}

// ---------------------------------------------------------------------------------------------
// #15 + #19 the audit sink

#[test]
fn a_stalled_audit_sink_never_blocks_requests_and_is_reported() {
    let d = deployment("", Some("path = \"audit.fifo\"\nqueue_lines = 4"));
    let fifo = d.path("audit.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A reader that never reads: the pipe fills after ~64 KiB and the writer stalls.
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::File::open(reader_path).unwrap());
    let r = start(&d);
    let _held = reader.join().unwrap();
    let fast = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().new_agent();
    let started = Instant::now();
    for i in 0..600 {
        // No credentials: a cheap 401, audited.
        let resp = fast
            .get(&r.url("/forward-auth"))
            .header("X-Original-Method", "GET")
            .header("X-Original-URI", ALICE)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "mail.example.com")
            .call()
            .unwrap_or_else(|e| panic!("request {i} did not complete: {e}"));
        assert_eq!(resp.status(), 401);
    }
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    let resp = fast.get(&r.url("/healthz")).call().unwrap();
    assert_eq!(resp.status(), 503);
    let health = body_json(resp);
    assert_eq!(health["status"], "unhealthy");
    assert!(health["reason"].as_str().unwrap().contains("audit"), "{health}");
    let text = metrics(&r);
    assert!(metric(&text, "agentgate_audit_lines_dropped_total{reason=\"queue_full\"}") > 0, "{text}");
    // Shutdown is not held by the stalled writer.
    assert!(r.shutdown() < Duration::from_secs(15));
}

#[test]
fn a_failing_audit_log_with_required_fails_closed() {
    let k = keys();
    let t = token(&k, ASSISTANT);
    // Not required: calls are still decided; the loss is visible.
    let d = deployment("", Some("path = \"/dev/full\""));
    let r = start(&d);
    assert_eq!(nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status(), 200);
    wait_for("the write error", Duration::from_secs(10), || agent().get(&r.url("/healthz")).call().unwrap().status() == 503);
    assert!(metric(&metrics(&r), "agentgate_audit_lines_dropped_total{reason=\"write_error\"}") >= 1);
    assert_eq!(nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status(), 200);
    drop(r);

    // Required: once lines cannot be written, every decision endpoint denies.
    let d = deployment("", Some("path = \"/dev/full\"\nrequired = true"));
    let r = start(&d);
    assert_eq!(nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status(), 200, "the sink fails on its first write");
    wait_for("the write error", Duration::from_secs(10), || agent().get(&r.url("/healthz")).call().unwrap().status() == 503);
    let resp = nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None));
    assert_eq!(resp.status(), 403);
    let body = body_json(resp);
    assert_eq!(body["outcome"], "engine_error");
    assert!(body["reason"].as_str().unwrap().contains("`[audit] required` is set, so calls are denied"), "{body}");
    let answer = body_json(post_json(&r, "/access/v1/evaluation", &evaluation(&k, &t, "alice")));
    assert_eq!(answer["decision"], false);
    assert_eq!(answer["context"]["outcome"], "engine_error");
    let checked = body_json(post_json(
        &r,
        "/v1/check",
        &json!({"authorization": format!("DPoP {t}"), "dpop": proof(&k, &t, URI, None), "http": {"method": "GET", "uri": URI}, "action": "mail:read", "resource": {"type": "Mailbox", "id": "alice"}}),
    ));
    assert_eq!(checked["outcome"], "engine_error", "{checked}");
}

/// SIGHUP reloads every server in the process; the signal is sent in a child process running
/// only the test below, so no other test's server sees it.
#[test]
fn sighup_reopens_the_audit_file() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sighup_reopens_the_audit_file_in_this_process", "--include-ignored", "--test-threads", "1"])
        .env("AGENTGATE_SIGHUP_CHILD", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run by `sighup_reopens_the_audit_file` in a child process"]
fn sighup_reopens_the_audit_file_in_this_process() {
    assert_eq!(std::env::var("AGENTGATE_SIGHUP_CHILD").as_deref(), Ok("1"), "run through `sighup_reopens_the_audit_file`");
    let d = deployment("", None);
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    assert_eq!(nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status(), 200);
    wait_for("the first line", Duration::from_secs(10), || std::fs::read_to_string(d.path("audit.jsonl")).unwrap_or_default().lines().count() == 1);
    // Rotation: the file is moved away, then SIGHUP.
    std::fs::rename(d.path("audit.jsonl"), d.path("audit.jsonl.1")).unwrap();
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for("the new audit file", Duration::from_secs(10), || {
        assert_eq!(nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status(), 200);
        std::thread::sleep(Duration::from_millis(200));
        d.path("audit.jsonl").exists()
    });
    assert_eq!(std::fs::read_to_string(d.path("audit.jsonl.1")).unwrap().lines().count(), 1, "nothing more went to the rotated file");
}

// ---------------------------------------------------------------------------------------------
// #18 URLs are shown redacted

#[test]
fn jwks_url_credentials_never_appear_in_healthz_or_logs() {
    // A JWKS server on loopback that answers the first request only.
    let jwks = std::fs::read_to_string(support::root().join("policies/keys/demo-issuer.TEST-ONLY.jwks.json")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Some(Ok(mut s)) = listener.incoming().next() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}", jwks.len());
        }
    });
    let d = deployment("", None);
    let url = format!("http://agentuser:s3cretpass@127.0.0.1:{port}/jwks?access_token=tok3nvalue&kid=x");
    let config = d.path("agentgate.toml");
    let file_jwks = support::root().join("policies/keys/demo-issuer.TEST-ONLY.jwks.json").display().to_string();
    let text = std::fs::read_to_string(&config).unwrap().replace(&format!("jwks = \"{file_jwks}\""), &format!("jwks = \"{url}\""));
    std::fs::write(&config, &text).unwrap();
    let r = start(&d);
    // The JWKS server is gone: a reload keeps the last good keys and logs the failure.
    assert!(r.state.reload("test"));
    // A dead credentialed URL: the reload fails and /healthz shows why.
    let dead = "http://agentuser:s3cretpass@127.0.0.1:9/jwks?access_token=tok3nvalue";
    replace_file(&config, &text.replace(&url, dead));
    wait_for("the failed reload", Duration::from_secs(30), || r.state.metrics().failed_reloads() >= 1);
    let health = agent().get(&r.url("/healthz")).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(health.contains("http://127.0.0.1:9/jwks?<redacted>"), "{health}");
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(logs.contains(&format!("http://127.0.0.1:{port}/jwks?<redacted>")), "the fetch failure is logged, redacted");
    for secret in ["s3cretpass", "tok3nvalue", "agentuser"] {
        assert!(!health.contains(secret), "/healthz shows `{secret}`: {health}");
        assert!(!logs.contains(secret), "the log shows `{secret}`");
    }
}

// ---------------------------------------------------------------------------------------------
// #11 hot reload

const READ_OWN: &str = "@id(\"mail-read-own\")\npermit (principal, action == Action::\"mail:read\", resource)\nwhen { context.scopes.contains(\"mail.read\") && resource.owner == context.user };\n";

fn forbid_all(id: &str) -> String {
    format!("@id(\"{id}\")\nforbid (principal, action == Action::\"mail:read\", resource);\n")
}

#[test]
fn an_edit_made_while_a_reload_builds_is_applied_without_sighup() {
    let d = deployment("reload_settle_ms = 100", None);
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    assert_eq!(nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status(), 200);
    // A first edit starts a reload (a new policy set: the build compiles for seconds) …
    replace_file(
        &d.path("policies/extra.cedar"),
        "@id(\"noop\")\nforbid (principal, action == Action::\"mail:send\", resource)\nwhen { context.scopes.contains(\"never-granted\") };\n",
    );
    // The watcher polls every second and settles for 100 ms; the build then takes seconds.
    std::thread::sleep(Duration::from_millis(1500));
    if r.state.deployment().generation() != 1 {
        eprintln!("note: the first reload finished before the second edit; this run did not race them");
    }
    // … and a second edit lands while it builds.
    replace_file(&d.path("policies/forbid.cedar"), &forbid_all("stop-reading"));
    let started = Instant::now();
    // Two builds (the first, thrown away, and its rebuild): seconds alone, longer when the
    // machine is busy with the rest of the suite.
    wait_for("the forbid to be enforced", Duration::from_secs(120), || {
        assert_eq!(r.state.last_reload_error(), None);
        nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status() == 403
    });
    eprintln!("enforced {:?} after the edit", started.elapsed());
    let d2 = r.state.deployment();
    assert!(d2.config().engine.policies.iter().any(|p| p.text.contains("stop-reading")));
}

#[test]
fn a_half_written_policy_file_is_never_applied() {
    let d = deployment("reload_settle_ms = 2000", None);
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    // The file gains a forbid; written in two steps with a pause, its first half parses alone
    // (the read permission without the forbid that follows).
    let full = format!("{READ_OWN}\n{}", forbid_all("stop-reading"));
    let path = d.path("policies/mail.cedar");
    let watcher = {
        let state = r.state.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(25) {
                let dep = state.deployment();
                let text: String = dep.config().engine.policies.iter().map(|p| p.text.clone()).collect();
                seen.push((dep.generation(), text.contains("stop-reading"), text.contains("mail-send-own")));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    f.write_all(READ_OWN.as_bytes()).unwrap();
    f.sync_all().unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    f.write_all(format!("\n{}", forbid_all("stop-reading")).as_bytes()).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
    wait_for("the forbid to be enforced", Duration::from_secs(120), || nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status() == 403);
    let seen = watcher.join().unwrap();
    for (generation, forbid, _) in &seen {
        assert!(*generation == 1 || *forbid, "generation {generation} was built from the half-written file");
    }
}

// ---------------------------------------------------------------------------------------------
// #12 connections: header-read and idle timeouts, a cap, a drain deadline

#[test]
fn half_sent_connections_do_not_starve_healthz() {
    let d = deployment("header_read_timeout_secs = 2\nmax_connections = 64", None);
    let r = start(&d);
    let half: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(r.addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    let fast = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(3))).build().new_agent();
    for _ in 0..5 {
        let resp = fast.get(&r.url("/healthz")).call().unwrap();
        assert_eq!(resp.status(), 200);
    }
    // After the header-read timeout every half-sent connection has been closed.
    std::thread::sleep(Duration::from_secs(3));
    for mut s in half {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a half-sent connection is still open: {e}"),
        }
    }
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let d = deployment("idle_timeout_secs = 1", None);
    let r = start(&d);
    let mut s = TcpStream::connect(r.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700) && waited < Duration::from_secs(5), "closed after {waited:?}");
}

#[test]
fn a_half_sent_request_does_not_hold_shutdown_past_the_drain_deadline() {
    let d = deployment("drain_timeout_secs = 1\nheader_read_timeout_secs = 60\nrequest_timeout_secs = 60", None);
    let r = start(&d);
    // Headers half-sent, and a body half-sent.
    let mut head = TcpStream::connect(r.addr).unwrap();
    head.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut body = TcpStream::connect(r.addr).unwrap();
    body.write_all(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"action\"").unwrap();
    // An idle keep-alive connection.
    let mut idle = TcpStream::connect(r.addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(idle.read(&mut buf).unwrap() > 0);
    std::thread::sleep(Duration::from_millis(300));
    let took = r.shutdown();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}
