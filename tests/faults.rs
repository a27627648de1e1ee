//! Issue "Hardening II", fault injection: the faults not already covered elsewhere (see the table
//! in docs/security.md, "Fault injection"). A broken edit of each watched file keeps the last good
//! generation; a broken revocation file keeps the last good list; the guest running out of memory
//! mid-call is an `engine_error` deny and the next call is decided; shutdown under load answers
//! every in-flight request in full and leaves only complete audit lines; a panic in the guest
//! (a component whose `check` executes `unreachable`) is an `engine_error` deny.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::{Outcome, Runtime, RuntimeOptions};
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::serve::*;

const ALICE: &str = "/mailboxes/alice/messages";

// ---------------------------------------------------------------------------------------------
// A broken reload of each watched file keeps the last good generation

#[test]
fn a_broken_edit_of_the_config_schema_or_jwks_keeps_the_last_good_generation() {
    let d = Deployment::new("", "\n[server]\nexternal_origins = [\"https://mail.example.com\"]\nwatch_interval_secs = 1\nreload_settle_ms = 100\n");
    // The issuer's JWKS as a file of the deployment (the standard one points into the repository).
    let repo_jwks = support::root().join("policies/keys/demo-issuer.TEST-ONLY.jwks.json");
    let jwks_text = std::fs::read_to_string(&repo_jwks).unwrap();
    std::fs::write(d.path("issuer.jwks.json"), &jwks_text).unwrap();
    let config = d.path("agentgate.toml");
    let config_text = std::fs::read_to_string(&config).unwrap().replace(&repo_jwks.display().to_string(), "issuer.jwks.json");
    std::fs::write(&config, &config_text).unwrap();
    let schema = d.path("policies/schema.cedarschema");
    let schema_text = std::fs::read_to_string(&schema).unwrap();

    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let allowed = || nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None)).status().as_u16();
    assert_eq!(allowed(), 200);
    assert_eq!(r.state.deployment().generation(), 1);

    // Per file: broken versions (each a failed reload, what its error names), then the good one.
    let unreachable_jwks = config_text.replace("jwks = \"issuer.jwks.json\"", "jwks = \"http://127.0.0.1:9/jwks.json\"");
    assert_ne!(unreachable_jwks, config_text);
    // (file, its good text, [(a broken text, what the failure names)])
    type Breakages<'a> = (&'a Path, &'a str, Vec<(String, &'a str)>);
    let broken: [Breakages; 3] = [
        (&config, &config_text, vec![(format!("{config_text}\n[server\nlisten = "), "agentgate.toml"), (unreachable_jwks, "http://127.0.0.1:9/jwks.json")]),
        (&schema, &schema_text, vec![("entity User {\n".to_owned(), "schema.cedarschema")]),
        (&d.path("issuer.jwks.json"), &jwks_text, vec![("{\"keys\": [".to_owned(), "issuer.jwks.json")]),
    ];
    let mut generation = 1;
    let mut failures = 0;
    for (path, good, bad_versions) in broken {
        for (bad, named) in bad_versions {
            let failed_before = r.state.metrics().failed_reloads();
            replace_file(path, &bad);
            wait_for(&format!("the failed reload naming {named}"), Duration::from_secs(30), || r.state.metrics().failed_reloads() > failed_before);
            failures += 1;
            // The last good generation stays in force and still decides.
            assert_eq!(r.state.deployment().generation(), generation, "{named}");
            assert_eq!(allowed(), 200, "{named}: the last good generation decides");
            let (status, health) = healthz(&r);
            assert_eq!(status, 200, "a failed reload does not make the node unhealthy: {health}");
            assert_eq!(health["generation"], generation, "{health}");
            let error = health["last_reload_error"].as_str().unwrap_or_else(|| panic!("{named}: no last_reload_error in {health}"));
            assert!(error.contains(named), "{named}: {error}");
            assert_eq!(metric(&metrics(&r), "agentgate_reloads_total{result=\"failed\"}"), failures);
        }

        // A good edit after it is applied: a new generation, the error cleared.
        let ok_before = r.state.metrics().successful_reloads();
        replace_file(path, good);
        wait_for(&format!("the repaired {}", path.display()), Duration::from_secs(60), || r.state.deployment().generation() > generation);
        generation = r.state.deployment().generation();
        assert_eq!(r.state.last_reload_error(), None, "{}", path.display());
        assert!(r.state.metrics().successful_reloads() > ok_before);
        assert_eq!(allowed(), 200, "{}: the repaired generation decides", path.display());
        assert_eq!(healthz(&r).1["last_reload_error"], Value::Null);
    }
    assert_eq!(metric(&metrics(&r), "agentgate_reloads_total{result=\"failed\"}"), 4);
}

#[test]
fn a_broken_revocation_file_keeps_the_last_good_list() {
    let d = Deployment::standard();
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let call = || {
        let resp = nginx_call(&r, ALICE, &t, &proof(&k, &t, URI, None));
        let status = resp.status().as_u16();
        let outcome = if status == 200 { String::new() } else { body_json(resp)["outcome"].as_str().unwrap_or_default().to_owned() };
        (status, outcome)
    };
    assert_eq!(call().0, 200);
    let revoked = d.path("revoked.json");
    // The last good list revokes the assistant.
    replace_file(&revoked, &json!({"agents": [ASSISTANT]}).to_string());
    wait_for("the revocation", Duration::from_secs(10), || call().0 != 200);
    assert_eq!(call(), (401, "revoked".to_owned()));

    // Broken edits (cut JSON, an empty file): the assistant stays revoked; the failures are counted
    // and shown.
    for (bad, says) in [("{\"agents\": [\"spiffe://agents.ex", "revoked.json"), ("", "the file is empty")] {
        let before = metric(&metrics(&r), "agentgate_revocation_reload_failures_total");
        replace_file(&revoked, bad);
        wait_for("the failed revocation reload", Duration::from_secs(10), || metric(&metrics(&r), "agentgate_revocation_reload_failures_total") > before);
        assert_eq!(call(), (401, "revoked".to_owned()), "a broken list never lifts a revocation ({bad:?})");
        let (status, health) = healthz(&r);
        assert_eq!(status, 200, "{health}");
        let error = health["store"]["revocations"]["last_error"].as_str().unwrap_or_else(|| panic!("no revocation error in {health}"));
        assert!(error.contains(says), "{error}");
    }

    // A good edit after them is applied.
    replace_file(&revoked, "{}");
    wait_for("the repaired list", Duration::from_secs(10), || call().0 == 200);
    assert_eq!(healthz(&r).1["store"]["revocations"]["last_error"], Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Memory exhaustion in the guest, mid-call

#[test]
fn running_out_of_guest_memory_mid_call_is_an_engine_error_and_the_next_call_is_decided() {
    let vector = support::read_vector(&support::root().join("tests/vectors/006_home_thermostat_with_input.json"));
    let config = support::load_config(&vector.config);
    let mut engine = config.engine.clone();
    // Let a large entities document through the size limit so the guest parses it.
    engine.settings_json = engine.settings_json.replace("\"max_entities_bytes\":262144", "\"max_entities_bytes\":67108864");
    assert!(engine.settings_json.contains("67108864"));
    // What `[runtime] memory_limit_mib = 32` gives; a generous time budget, so only memory runs out.
    let options = RuntimeOptions { memory_limit_bytes: 32 << 20, call_timeout: Duration::from_secs(60), ..RuntimeOptions::default() };
    let runtime = Runtime::new(options, Arc::new(support::AcceptEveryProof)).unwrap();
    let mut verifier = runtime.verifier(&engine).unwrap();
    let normal = vector.steps[0].request.to_check_request(None);
    assert!(verifier.check(&normal).allowed, "the limit leaves room for a normal call");

    let with_devices =
        |count: usize| {
            let mut request = vector.steps[0].request.to_check_request(None);
            let mut entities: Vec<Value> = serde_json::from_str(request.entities_json.as_deref().unwrap()).unwrap();
            entities.extend((0..count).map(
                |i| json!({"uid": {"type": "Device", "id": format!("d{i}")}, "attrs": {"kind": "light"}, "parents": [{"type": "Home", "id": "alice-home"}]}),
            ));
            request.entities_json = Some(Value::Array(entities).to_string());
            request
        };
    // A document that fits in the guest's memory but whose parsing does not, and one larger than
    // the whole memory: each traps, is denied, and the next call gets a fresh instance.
    for (count, what) in [(150_000, "parsing"), (400_000, "copying in")] {
        let request = with_devices(count);
        let d = verifier.check(&request);
        assert!(!d.allowed, "{what}: {d:?}");
        assert_eq!(d.outcome, Outcome::EngineError, "{what}: {}", d.reason);
        // The reason says what happened, without the guest's backtrace.
        assert_eq!(d.reason, "the decision component exceeded its memory limit", "{what}");
        let next = verifier.check(&normal);
        assert!(next.allowed, "{what}: the next call is decided: {next:?}");
    }
}

/// The portable component with the body of the core function behind `verifier.check` replaced by
/// `unreachable` instructions: what a panic in the guest executes (`panic = "abort"`). The
/// function keeps its size and locals, so the module stays valid and only a call traps.
fn component_that_panics_in_check() -> Vec<u8> {
    use wasmparser::{ExternalKind, Parser, Payload, TypeRef};
    let mut component = agentgate::component::PORTABLE_COMPONENT.to_vec();
    // Walk every core module of the component (parse_all descends into nested modules) and find
    // the one exporting the core function behind `verifier.check`, then that function's body.
    let (mut imported_functions, mut defined, mut check) = (0u32, 0u32, None);
    let mut target = None;
    for payload in Parser::new(0).parse_all(&component) {
        match payload.expect("the shipped component parses") {
            Payload::ModuleSection { .. } => (imported_functions, defined, check) = (0, 0, None),
            Payload::ImportSection(imports) => {
                // Imported functions come first in the function index space.
                imported_functions = imports.into_imports().filter(|i| matches!(i.as_ref().unwrap().ty, TypeRef::Func(_))).count() as u32;
            }
            Payload::ExportSection(exports) => {
                check = exports
                    .into_iter()
                    .map(Result::unwrap)
                    .find(|e| e.kind == ExternalKind::Func && e.name.ends_with("#[method]verifier.check"))
                    .map(|e| e.index);
            }
            Payload::CodeSectionEntry(body) => {
                if check == Some(imported_functions + defined) {
                    let instructions = body.get_binary_reader_for_operators().unwrap().original_position();
                    target = Some(instructions..body.range().end - 1);
                }
                defined += 1;
            }
            _ => {}
        }
    }
    let instructions = target.expect("a core module exports verifier.check");
    assert_eq!(component[instructions.end], 0x0b, "a body ends with `end`");
    component[instructions].fill(0x00);
    component
}

#[test]
fn a_guest_panic_mid_call_is_an_engine_error_deny_without_a_backtrace() {
    let vector = support::read_vector(&support::root().join("tests/vectors/006_home_thermostat_with_input.json"));
    let config = support::load_config(&vector.config);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate-that-panics.wasm");
    std::fs::write(&path, component_that_panics_in_check()).unwrap();
    let options = RuntimeOptions { component_file: Some(path), ..RuntimeOptions::default() };
    let runtime = Runtime::new(options, Arc::new(support::AcceptEveryProof)).unwrap();
    // Loading the policies does not run `check`: the verifier is created.
    let mut verifier = runtime.verifier(&config.engine).unwrap();
    let request = vector.steps[0].request.to_check_request(None);
    // Every call traps (each on a fresh instance after the first): each is a deny that says what
    // happened and carries no wasm backtrace.
    for attempt in 0..3 {
        let d = verifier.check(&request);
        assert!(!d.allowed, "attempt {attempt}: {d:?}");
        assert_eq!(d.outcome, Outcome::EngineError, "attempt {attempt}: {}", d.reason);
        assert_eq!(d.reason, "the decision component trapped: wasm `unreachable` instruction executed", "attempt {attempt}");
    }
    // The same request on the unmodified component is allowed: the deny came from the fault.
    let mut intact = Runtime::new(RuntimeOptions::default(), Arc::new(support::AcceptEveryProof)).unwrap().verifier(&config.engine).unwrap();
    assert!(intact.check(&request).allowed);
}

// ---------------------------------------------------------------------------------------------
// SIGTERM under load

const BODY_BYTES: usize = 256 * 1024;

/// An upstream that answers each request 1.5 s after receiving it, with a 256 KiB body; counts
/// the requests it has received.
fn slow_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1500));
                let body = "x".repeat(BODY_BYTES);
                let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {BODY_BYTES}\r\nconnection: close\r\n\r\n{body}");
            });
        }
    });
    (addr, received)
}

#[test]
fn shutdown_under_load_answers_every_in_flight_request_and_leaves_whole_audit_lines() {
    const CLIENTS: usize = 8;
    let (upstream, received) = slow_upstream();
    let d = Deployment::new(
        "",
        &format!("\n[server]\nexternal_origins = [\"https://mail.example.com\"]\nupstream = \"http://{upstream}\"\ndrain_timeout_secs = 20\n"),
    );
    let r = start(&d);
    let k = Arc::new(keys());
    let t = Arc::new(token(&k, ASSISTANT));
    let url = r.url(ALICE);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (k, t, url) = (k.clone(), t.clone(), url.clone());
            std::thread::spawn(move || {
                let mut resp = agent()
                    .get(&url)
                    .header("X-Forwarded-Proto", "https")
                    .header("X-Forwarded-Host", "mail.example.com")
                    .header("Authorization", &format!("DPoP {t}"))
                    .header("DPoP", &proof(&k, &t, URI, None))
                    .call()
                    .map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let body = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body))
            })
        })
        .collect();
    // Every request has been decided and forwarded: all are in flight, waiting on the upstream.
    wait_for("the requests to reach the upstream", Duration::from_secs(60), || received.load(Ordering::SeqCst) == CLIENTS);
    let addr = r.addr;
    let took = r.shutdown();
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    for (i, c) in clients.into_iter().enumerate() {
        let (status, body) = c.join().unwrap().unwrap_or_else(|e| panic!("in-flight request {i} was not answered: {e}"));
        assert_eq!(status, 200, "request {i}: {body:.200}");
        assert_eq!(body.len(), BODY_BYTES, "request {i} got its whole answer");
        assert!(body.bytes().all(|b| b == b'x'));
    }
    // The server is gone: a new connection is refused.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "the listener is closed");
    // The audit log: one complete line per decision, nothing half-written.
    let audit = d.path("audit.jsonl");
    wait_for("the audit lines", Duration::from_secs(10), || std::fs::read_to_string(&audit).unwrap_or_default().lines().count() >= CLIENTS);
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(text.ends_with('\n'), "the audit file ends with a whole line");
    assert_eq!(text.lines().count(), CLIENTS, "{text}");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a broken audit line ({e}): {line}"));
        assert_eq!(v["decision"], "allow", "{line}");
    }
}

/// Faults present when `serve` starts: there is no last good generation to keep, so the process
/// refuses to start (exit 2) and says which file or URL is at fault, before it listens. A node that
/// cannot fetch its issuer's keys or open its audit log must not come up and answer calls.
#[test]
fn serve_refuses_to_start_on_an_unreachable_jwks_url_or_an_unopenable_audit_log() {
    // (the fault, the edit of agentgate.toml that makes it, what the error names)
    type Fault = (&'static str, Box<dyn Fn(String) -> String>, &'static str);
    let faults: [Fault; 3] = [
        (
            "an unreachable JWKS URL",
            Box::new(|toml: String| toml.replace("jwks = \"", "jwks = \"http://127.0.0.1:9/jwks.json\"\n# was: \"")),
            "issuer `https://auth.demo.agentgate.dev`: fetching `http://127.0.0.1:9/jwks.json`: io: Connection refused",
        ),
        (
            "an audit directory that does not exist",
            Box::new(|toml: String| toml.replace("path = \"audit.jsonl\"", "path = \"no-such-dir/audit.jsonl\"")),
            "opening the audit log `",
        ),
        (
            "an audit path that is a directory",
            Box::new(|toml: String| toml.replace("path = \"audit.jsonl\"", "path = \"policies\"")),
            "opening the audit log `",
        ),
    ];
    for (fault, edit, names) in faults {
        let d = Deployment::standard();
        let config = d.path("agentgate.toml");
        let toml = edit(std::fs::read_to_string(&config).unwrap());
        std::fs::write(&config, &toml).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = std::process::Command::new(support::agentgate_bin())
            .args(["serve", "--config", config.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{fault}: {stderr}");
        assert!(stderr.contains(names), "{fault}: expected `{names}` in: {stderr}");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "{fault}: nothing listens");
    }
}

/// SIGTERM to the real binary (the other shutdown tests complete the same shutdown future
/// in-process): it answers what it was asked, exits 0, and leaves only whole audit lines.
#[test]
fn sigterm_stops_the_real_binary_cleanly_with_whole_audit_lines() {
    let d = Deployment::standard();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(support::agentgate_bin())
        .args(["serve", "--config", d.path("agentgate.toml").to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("serve to start", Duration::from_secs(120), || agent().get(&format!("{base}/healthz")).call().is_ok());
    let k = keys();
    let token = token(&k, ASSISTANT);
    for _ in 0..5 {
        assert_eq!(nginx_call_at(&base, ALICE, &token, &proof(&k, &token, URI, None)).status(), 200);
    }
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let audit = std::fs::read_to_string(d.path("audit.jsonl")).unwrap();
    assert!(audit.ends_with('\n'), "the last line is whole");
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5, "{audit}");
    assert!(lines.iter().all(|l| l["outcome"] == "allowed"), "{audit}");
}
