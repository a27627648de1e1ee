//! `agentgate serve` in reverse-proxy mode in front of an MCP endpoint (`[server] upstream`,
//! docs/mcp.md), field by field: tool calls decided from the JSON-RPC body, denials as JSON-RPC
//! errors with the decision's status and challenges, step-up, `tools/list` filtering (JSON and
//! event streams), streaming without buffering, RFC 9728 metadata, and every refusal before a
//! decision. The upstream here is a small JSON-RPC responder that records what it receives; the
//! official SDK on both ends is `tests/mcp_sdk.rs`.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::mint::{self, AccessTokenSpec};
use serde_json::{Value, json};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::root;
use support::serve::{Deployment, Keys, Running, agent, header, keys, start};

const MCP: &str = "https://files.example.com/mcp";
const ASSISTANT: &str = "spiffe://agents.example/files-assistant";
const METADATA: &str = "https://files.example.com/.well-known/oauth-protected-resource";

/// What the upstream received: (method, JSON-RPC method, headers).
type Received = Arc<Mutex<Vec<(String, String, axum::http::HeaderMap)>>>;

/// The MCP server stand-in: answers `tools/list` with `policies/mcp/tools.json` (as an event
/// stream when the request carries `x-test-sse`), `tools/call` with the tool's name, `GET` with an
/// event stream whose second event waits for `release`.
struct Upstream {
    addr: SocketAddr,
    received: Received,
    release: Arc<tokio::sync::Notify>,
}

fn upstream() -> Upstream {
    let received = Received::default();
    let release = Arc::new(tokio::sync::Notify::new());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, gate) = (received.clone(), release.clone());
    let tools: Value = serde_json::from_str(&std::fs::read_to_string(root().join("policies/mcp/tools.json")).unwrap()).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(move |method: axum::http::Method, headers: axum::http::HeaderMap, body: String| {
                let (seen, gate, tools) = (seen.clone(), gate.clone(), tools.clone());
                async move {
                    use axum::response::IntoResponse as _;
                    let message: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let rpc_method = message["method"].as_str().unwrap_or("").to_owned();
                    seen.lock().unwrap().push((method.to_string(), rpc_method.clone(), headers.clone()));
                    if method == axum::http::Method::GET {
                        return ([("content-type", "text/event-stream")], async_stream(gate)).into_response();
                    }
                    let id = message["id"].clone();
                    let answer = match rpc_method.as_str() {
                        "tools/list" => json!({"jsonrpc": "2.0", "id": id, "result": tools["result"].clone()}),
                        "tools/call" => json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": format!("called {}", message["params"]["name"].as_str().unwrap_or(""))}]}}),
                        _ if id.is_null() => return axum::http::StatusCode::ACCEPTED.into_response(),
                        _ => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
                    };
                    if headers.contains_key("x-test-sse") {
                        let sse = format!("event: message\nid: 1\ndata: {answer}\n\n");
                        return ([("content-type", "text/event-stream"), ("mcp-session-id", "session-1")], sse).into_response();
                    }
                    ([("content-type", "application/json"), ("mcp-session-id", "session-1")], answer.to_string()).into_response()
                }
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    Upstream { addr, received, release }
}

/// Two server-sent events; the second only after `gate` is notified.
fn async_stream(gate: Arc<tokio::sync::Notify>) -> axum::body::Body {
    let (mut tx, body) = http_body_util::channel::Channel::<axum::body::Bytes>::new(2);
    tokio::spawn(async move {
        let _ = tx.send_data(axum::body::Bytes::from_static(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n")).await;
        gate.notified().await;
        let _ = tx.send_data(axum::body::Bytes::from_static(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n")).await;
    });
    axum::body::Body::new(body)
}

/// A copy of `policies/mcp` in reverse-proxy mode in front of `upstream`, with the protected
/// resource metadata; `extra` is appended to `[server]`'s neighbours (e.g. `[dpop]` changes go
/// through `replace`).
fn deployment(upstream: SocketAddr, mcp_extra: &str, replace: &[(&str, &str)]) -> Deployment {
    Deployment::shipped("mcp", |toml| {
        let mut toml = toml.replace("[server]\n", &format!("[server]\nupstream = \"http://{upstream}\"\n"));
        toml = toml.replace("[mcp]\n", &format!("[mcp]\n{mcp_extra}\n"));
        for (from, to) in replace {
            assert!(toml.contains(from), "{from}");
            toml = toml.replace(from, to);
        }
        toml + "\n[protected_resource]\nresource = \"https://files.example.com\"\nauthorization_servers = [\"https://auth.demo.agentgate.dev\"]\nscopes_supported = [\"files.read\", \"files.write\", \"files.delete\"]\n"
    })
}

fn token(k: &Keys, scopes: &str, audience: &str) -> String {
    let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", "alice", audience);
    spec.scopes = scopes.split_whitespace().map(str::to_owned).collect();
    spec.actors = vec![ASSISTANT.into()];
    spec.bound_key = Some(k.agent.thumbprint());
    spec.sign(&k.issuer)
}

fn proof(k: &Keys, method: &str, token: &str) -> String {
    mint::dpop_proof(&k.agent, method, MCP, token, mint::now(), None)
}

/// A `POST /mcp` as a client on `https://files.example.com` sends it (through a trusted proxy
/// that names the external origin).
fn post(r: &Running, auth: Option<(&str, &str)>, body: &str, extra: &[(&str, &str)]) -> ureq::http::Response<ureq::Body> {
    let mut request = agent()
        .post(&r.url("/mcp"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "files.example.com")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some((token, proof)) = auth {
        request = request.header("Authorization", &format!("DPoP {token}")).header("DPoP", proof);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send(body.to_owned()).unwrap()
}

fn call(name: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}}).to_string()
}

fn json_body(resp: ureq::http::Response<ureq::Body>) -> Value {
    let mut resp = resp;
    let text = resp.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn challenges(resp: &ureq::http::Response<ureq::Body>) -> Vec<String> {
    resp.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn tool_calls_are_decided_from_the_body_and_forwarded_without_credentials(up: &Upstream, r: &Running) {
    let k = keys();
    let t = token(&k, "files.read files.write", "https://files.example.com");

    let resp = post(r, Some((&t, &proof(&k, "POST", &t))), &call("read_file", json!({"path": "/workspace/notes.md"})), &[("mcp-session-id", "session-1")]);
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "mcp-session-id"), "session-1", "the session id passes back");
    assert!(!header(&resp, "x-agentgate-decision-id").is_empty());
    assert_eq!(json_body(resp)["result"]["content"][0]["text"], "called read_file");
    {
        let received = up.received.lock().unwrap();
        let (method, rpc, headers) = received.last().unwrap();
        assert_eq!((method.as_str(), rpc.as_str()), ("POST", "tools/call"));
        assert_eq!(headers["x-agentgate-agent"], ASSISTANT);
        assert_eq!(headers["x-agentgate-user"], "alice");
        assert_eq!(headers["mcp-session-id"], "session-1");
        for withheld in ["authorization", "dpop"] {
            assert!(!headers.contains_key(withheld), "the upstream must not receive `{withheld}`");
        }
    }

    // An argument rule: writes stay inside /workspace/. Denied calls never reach the upstream.
    let before = up.received.lock().unwrap().len();
    let resp = post(r, Some((&t, &proof(&k, "POST", &t))), &call("write_file", json!({"path": "/etc/passwd", "content": "x"})), &[]);
    assert_eq!(resp.status(), 403);
    assert!(challenges(&resp).is_empty(), "a policy deny is not a challenge");
    let body = json_body(resp);
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32001);
    assert_eq!(body["error"]["data"]["outcome"], "policy_denied");
    let resp = post(r, Some((&t, &proof(&k, "POST", &t))), &call("write_file", json!({"path": "/workspace/a.md", "content": "x"})), &[]);
    assert_eq!(resp.status(), 200, "the same tool with an argument the rules permit");
    assert_eq!(up.received.lock().unwrap().len(), before + 1, "only the allowed write was forwarded");

    // A spoofed identity header from the caller never reaches the upstream.
    let resp = post(r, Some((&t, &proof(&k, "POST", &t))), &call("read_file", json!({"path": "/workspace/a"})), &[("x-agentgate-user", "mallory")]);
    assert_eq!(resp.status(), 200);
    assert_eq!(up.received.lock().unwrap().last().unwrap().2["x-agentgate-user"], "alice");
}

fn a_missing_scope_is_a_step_up_and_credentials_failures_carry_the_metadata(r: &Running) {
    let k = keys();
    let t = token(&k, "files.read files.write", "https://files.example.com");

    let resp = post(r, Some((&t, &proof(&k, "POST", &t))), &call("delete_file", json!({"path": "/workspace/old.md"})), &[]);
    assert_eq!(resp.status(), 403);
    let c = challenges(&resp);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c[0].starts_with(r#"Bearer error="insufficient_scope", error_description="the token lacks the scope `files.delete`"#), "{c:?}");
    assert!(c[0].contains(r#"scope="files.delete""#) && c[0].contains(&format!(r#"resource_metadata="{METADATA}""#)), "{c:?}");
    assert!(c[1].starts_with(r#"DPoP error="insufficient_scope""#), "{c:?}");
    let body = json_body(resp);
    assert_eq!(body["error"]["data"]["outcome"], "insufficient_scope");
    assert_eq!(body["error"]["data"]["required_scope"], "files.delete");

    // No credentials: the client is pointed at the metadata, Bearer challenge first.
    let resp = post(r, None, &call("read_file", json!({"path": "/workspace/a"})), &[]);
    assert_eq!(resp.status(), 401);
    assert_eq!(challenges(&resp), vec![format!(r#"Bearer resource_metadata="{METADATA}""#), format!(r#"DPoP algs="ES256", resource_metadata="{METADATA}""#)]);
    assert_eq!(json_body(resp)["error"]["data"]["outcome"], "invalid_token");

    // A replayed proof.
    let p = proof(&k, "POST", &t);
    assert_eq!(post(r, Some((&t, &p)), &call("read_file", json!({"path": "/workspace/a"})), &[]).status(), 200);
    let resp = post(r, Some((&t, &p)), &call("read_file", json!({"path": "/workspace/a"})), &[]);
    assert_eq!(resp.status(), 401);
    assert!(challenges(&resp)[1].starts_with(r#"DPoP error="invalid_dpop_proof""#));
    assert_eq!(json_body(resp)["error"]["data"]["outcome"], "replayed");

    // A token for another resource (RFC 8707): refused through the MCP path too.
    let other = token(&k, "files.read", "https://mail.example.com");
    let resp = post(r, Some((&other, &proof(&k, "POST", &other))), &call("read_file", json!({"path": "/workspace/a"})), &[]);
    assert_eq!(resp.status(), 401);
    let body = json_body(resp);
    assert_eq!(body["error"]["data"]["outcome"], "invalid_token");
    assert!(body["error"]["message"].as_str().unwrap().contains("audience"), "{body}");
}

fn tools_list_is_filtered_to_what_the_caller_could_call(r: &Running) {
    let k = keys();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let names = |v: &Value| -> Vec<String> { v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect() };

    let t = token(&k, "files.read files.write", "https://files.example.com");
    let resp = post(r, Some((&t, &proof(&k, "POST", &t))), list, &[]);
    assert_eq!(resp.status(), 200);
    // write_file stays: its forbid reads the path, so some paths are permitted. delete_file needs
    // `files.delete`; the admin tools are forbidden to agents whatever the arguments.
    assert_eq!(names(&json_body(resp)), ["list_directory", "read_file", "search_files", "write_file"]);

    let t = token(&k, "files.read", "https://files.example.com");
    let resp = post(r, Some((&t, &proof(&k, "POST", &t))), list, &[("x-test-sse", "1")]);
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    let mut resp = resp;
    let text = resp.body_mut().read_to_string().unwrap();
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    assert_eq!(names(&serde_json::from_str(data).unwrap()), ["list_directory", "read_file", "search_files"], "filtered inside the event stream");
    assert!(text.contains("event: message\nid: 1\n"), "the event's other fields are kept: {text}");
}

fn event_streams_are_relayed_as_they_arrive(up: &Upstream, r: &Running) {
    let k = keys();
    let t = token(&k, "files.read", "https://files.example.com");
    let resp = agent()
        .get(&r.url("/mcp"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "files.example.com")
        .header("accept", "text/event-stream")
        .header("Authorization", &format!("DPoP {t}"))
        .header("DPoP", &mint::dpop_proof(&k.agent, "GET", MCP, &t, mint::now(), None))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.received.lock().unwrap().last().unwrap().0, "GET");
    let released = Arc::new(AtomicBool::new(false));
    let (flag, gate) = (released.clone(), up.release.clone());
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        flag.store(true, Ordering::SeqCst);
        gate.notify_one();
    });
    let mut reader = resp.into_body().into_reader();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while !first.ends_with(b"\n\n") {
        assert_eq!(reader.read(&mut byte).unwrap(), 1, "the stream ended early");
        first.push(byte[0]);
    }
    assert!(!released.load(Ordering::SeqCst), "the first event arrived only after the upstream sent the second: the stream was buffered");
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("notifications/message"), "{rest}");
    releaser.join().unwrap();
}

fn malformed_or_inconsistent_requests_are_refused_before_a_decision(up: &Upstream, r: &Running) {
    let k = keys();
    let t = token(&k, "files.read", "https://files.example.com");
    let refused = |body: &str, extra: &[(&str, &str)]| {
        let resp = post(r, Some((&t, &proof(&k, "POST", &t))), body, extra);
        let status = resp.status().as_u16();
        let body = json_body(resp);
        assert_eq!(body["error"]["data"]["outcome"], "invalid_request", "{body}");
        (status, body["error"]["code"].as_i64().unwrap(), body["error"]["message"].as_str().unwrap().to_owned(), body["id"].clone())
    };
    let good = call("read_file", json!({"path": "/workspace/a"}));
    let (status, code, message, _) = refused("{", &[]);
    assert_eq!((status, code), (400, -32700), "{message}");
    let (status, code, message, _) = refused(&format!("[{good}]"), &[]);
    assert_eq!((status, code, message.as_str()), (400, -32600, "JSON-RPC batches are not accepted: send one message per request"));
    let (status, code, message, _) = refused(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"write_file"}}"#, &[]);
    assert_eq!((status, code, message.as_str()), (400, -32600, "the body has the member `name` twice"));
    let (status, code, _, id) = refused(r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{}}"#, &[]);
    assert_eq!((status, code, id), (400, -32602, json!("x")), "invalid params answer the request's id");
    let (status, _, message, id) = refused(&good, &[("mcp-name", "write_file")]);
    assert_eq!((status, message.as_str(), id), (400, "`Mcp-Name` says `write_file` but the body names `read_file`", json!(7)));
    let (status, _, message, _) = refused(&good, &[("mcp-method", "tools/list")]);
    assert_eq!((status, message.as_str()), (400, "`Mcp-Method` says `tools/list` but the body's method is `tools/call`"));
    let (status, _, message, _) = refused(&good, &[("mcp-protocol-version", "2024-11-05")]);
    assert_eq!((status, message.as_str()), (400, "unsupported `MCP-Protocol-Version` `2024-11-05`: this server accepts 2025-11-25, 2025-06-18, 2025-03-26"));
    let (status, _, message, _) = refused(&good, &[("origin", "https://evil.example")]);
    assert_eq!((status, message.as_str()), (403, "the origin `https://evil.example` is not allowed to call this MCP server"));
    let big = call("write_file", json!({"path": "/workspace/a", "content": "x".repeat(8192)}));
    let (status, _, message, _) = refused(&big, &[]);
    assert_eq!((status, message.as_str()), (413, "the body is over the limit of 4096 bytes (or was cut off)"));
    // Consistent headers, a supported version and an allowed origin pass.
    let resp = post(
        r,
        Some((&t, &proof(&k, "POST", &t))),
        &good,
        &[("mcp-name", "read_file"), ("mcp-method", "tools/call"), ("mcp-protocol-version", "2025-11-25"), ("origin", "https://app.example.com")],
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(up.received.lock().unwrap().iter().filter(|(m, _, _)| m == "POST").count(), 1, "nothing refused reached the upstream");
    let resp = agent().put(&r.url("/mcp")).header("X-Forwarded-Host", "files.example.com").send("{}").unwrap();
    assert_eq!((resp.status().as_u16(), header(&resp, "allow")), (405, "GET, POST, DELETE".to_owned()));
}

#[test]
fn protected_resource_metadata_is_served_and_bearer_only_deployments_challenge_with_bearer() {
    let up = upstream();
    let d = deployment(up.addr, "", &[("mode = \"required\"", "mode = \"off\"")]);
    let r = start(&d);
    let resp = agent().get(&r.url("/.well-known/oauth-protected-resource")).call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json_body(resp),
        json!({
            "resource": "https://files.example.com",
            "authorization_servers": ["https://auth.demo.agentgate.dev"],
            "scopes_supported": ["files.read", "files.write", "files.delete"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256"],
            "dpop_bound_access_tokens_required": false,
        })
    );
    assert_eq!(agent().get(&r.url("/.well-known/oauth-protected-resource/other")).call().unwrap().status(), 404);
    let resp = post(&r, None, &call("read_file", json!({"path": "/workspace/a"})), &[]);
    assert_eq!(resp.status(), 401);
    assert_eq!(challenges(&resp), vec![format!(r#"Bearer resource_metadata="{METADATA}""#)]);
    // A bearer token (unbound) is accepted in this deployment.
    let k = keys();
    let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", "alice", "https://files.example.com");
    spec.scopes = vec!["files.read".into()];
    spec.actors = vec![ASSISTANT.into()];
    let bearer = spec.sign(&k.issuer);
    let resp = agent()
        .post(&r.url("/mcp"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "files.example.com")
        .header("Authorization", &format!("Bearer {bearer}"))
        .send(call("read_file", json!({"path": "/workspace/a"})))
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = agent()
        .post(&r.url("/mcp"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "files.example.com")
        .header("Authorization", &format!("Bearer {bearer}x"))
        .send(call("read_file", json!({"path": "/workspace/a"})))
        .unwrap();
    assert_eq!(resp.status(), 401);
    let c = challenges(&resp);
    assert_eq!(c.len(), 1);
    assert!(c[0].starts_with(r#"Bearer error="invalid_token""#) && c[0].ends_with(&format!(r#"resource_metadata="{METADATA}""#)), "{c:?}");
}

/// One deployment, one server: what a default reverse-proxy deployment does (each part builds
/// on nothing the others leave behind; one server keeps the suite's start-up cost down).
#[test]
fn a_default_deployment_decides_forwards_steps_up_and_filters() {
    let up = upstream();
    let d = deployment(up.addr, "", &[]);
    let r = start(&d);
    tool_calls_are_decided_from_the_body_and_forwarded_without_credentials(&up, &r);
    a_missing_scope_is_a_step_up_and_credentials_failures_carry_the_metadata(&r);
    tools_list_is_filtered_to_what_the_caller_could_call(&r);
}

/// A stricter deployment: `[mcp] allowed_origins`, a 4 KiB body cap, and an idle timeout (1 s)
/// shorter than the pause between two events of a stream.
#[test]
fn a_strict_deployment_refuses_before_deciding_and_streams_past_its_idle_timeout() {
    let up = upstream();
    let d =
        deployment(up.addr, "allowed_origins = [\"https://app.example.com\"]", &[("[server]\n", "[server]\nmax_body_bytes = 4096\nidle_timeout_secs = 1\n")]);
    let r = start(&d);
    malformed_or_inconsistent_requests_are_refused_before_a_decision(&up, &r);
    event_streams_are_relayed_as_they_arrive(&up, &r);
}
