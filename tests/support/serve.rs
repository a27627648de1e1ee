//! A running `agentgate serve` on loopback for tests, with minted credentials.

// PANIC SAFETY: test support.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

use super::root;
use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate::server::{self, ServeOptions, Shared};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub const URI: &str = "https://mail.example.com/mailboxes/alice/messages";
pub const ASSISTANT: &str = "spiffe://agents.example/mail-assistant";

/// Every log line the servers in this test binary write.
pub fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct Capture;
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt().with_env_filter("debug,cranelift=warn,wasmtime=warn,hyper=warn").with_writer(|| Capture).try_init();
        Mutex::new(Vec::new())
    })
}

/// A deployment directory: the mail demo's policies, the TEST-ONLY demo keys, and `extra` TOML.
pub struct Deployment {
    pub dir: tempfile::TempDir,
}

impl Deployment {
    pub fn new(top: &str, server: &str) -> Self {
        Deployment::build(Some("revoked.json"), top, server)
    }

    /// A fleet node: the standard deployment with its state in the store at `redis_url` (under
    /// `prefix`), the revocation list there too.
    pub fn fleet_node(redis_url: &str, prefix: &str, state_extra: &str) -> Self {
        let server = format!(
            "\n[server]\nexternal_origins = [\"https://mail.example.com\"]\nwatch_interval_secs = 1\n\n[state]\nbackend = \"redis\"\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\nrevocation_refresh_ms = 100\nrevocation_max_staleness_ms = 1000\n{state_extra}\n"
        );
        Deployment::build(None, "", &server)
    }

    fn build(revocations: Option<&str>, top: &str, server: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        for name in ["schema.cedarschema", "mail.cedar", "delegation.cedar"] {
            std::fs::copy(root().join("policies/mail").join(name), policies.join(name)).unwrap();
        }
        std::fs::write(dir.path().join("revoked.json"), "{}").unwrap();
        std::fs::write(dir.path().join("nonce.secret"), "agentgate-serve-test-nonce-secret-0123456789").unwrap();
        let keys = root().join("policies/keys");
        let revocations = revocations.map(|file| format!("revocations = \"{file}\"")).unwrap_or_default();
        let toml = format!(
            r#"audiences = ["https://mail.example.com"]
policies = "policies"
{revocations}
{top}

[[issuers]]
issuer = "https://auth.demo.agentgate.dev"
jwks = "{jwks}"

[dpop]
mode = "required"
{server}

[audit]
path = "audit.jsonl"

[[routes]]
method = "GET"
path = "/mailboxes/{{owner}}/messages"
action = "mail:read"
resource = {{ type = "Mailbox", id = "{{owner}}", attrs = {{ owner = {{ type = "User", id = "{{owner}}" }} }} }}
"#,
            jwks = keys.join("demo-issuer.TEST-ONLY.jwks.json").display(),
        );
        std::fs::write(dir.path().join("agentgate.toml"), toml).unwrap();
        Deployment { dir }
    }

    /// A copy of the shipped policy set `policies/<set>` whose `agentgate.toml` trusts the TEST-ONLY
    /// keys where they are, audits to a file, and has `edit` applied to its text.
    pub fn shipped(set: &str, edit: impl FnOnce(String) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(root().join("policies").join(set)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
            }
        }
        let config = dir.path().join("agentgate.toml");
        let keys = format!("{}/", root().join("policies/keys").display());
        let toml = std::fs::read_to_string(&config).unwrap().replace("../keys/", &keys);
        std::fs::write(&config, edit(format!("{toml}\n[audit]\npath = \"audit.jsonl\"\n"))).unwrap();
        Deployment { dir }
    }

    pub fn standard() -> Self {
        Deployment::new(
            "",
            "\n[server]\nexternal_origins = [\"https://mail.example.com\"]\nwatch_interval_secs = 1\nmax_header_bytes = 16384\nmax_body_bytes = 65536\n",
        )
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the server to stop (as SIGTERM does) and waits until `serve_on` has returned; the
    /// time that took.
    pub fn shutdown(mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        started.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn start(deployment: &Deployment) -> Running {
    let _ = logs();
    let options = ServeOptions { config: deployment.path("agentgate.toml"), listen: None };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let state = server::load_state(&options).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ready_tx.send((listener.local_addr().unwrap(), state.clone())).unwrap();
            server::serve_on(listener, state, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let (addr, state) = ready_rx.recv_timeout(Duration::from_secs(120)).unwrap();
    Running { addr, state, stop: Some(stop_tx), thread: Some(thread) }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().new_agent()
}

pub struct Keys {
    pub issuer: KeyPair,
    pub agent: KeyPair,
}

pub fn keys() -> Keys {
    let key = |n: &str| KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys").join(n)).unwrap()).unwrap();
    Keys { issuer: key("issuer.TEST-ONLY.private.jwk.json"), agent: key("agent.TEST-ONLY.private.jwk.json") }
}

pub fn token(k: &Keys, actor: &str) -> String {
    let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", "alice", "https://mail.example.com");
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec![actor.into()];
    spec.bound_key = Some(k.agent.thumbprint());
    spec.sign(&k.issuer)
}

pub fn proof(k: &Keys, token: &str, uri: &str, nonce: Option<&str>) -> String {
    mint::dpop_proof(&k.agent, "GET", uri, token, mint::now(), nonce)
}

/// The server's `/metrics` text.
pub fn metrics(r: &Running) -> String {
    let mut resp = agent().get(&r.url("/metrics")).call().unwrap();
    resp.body_mut().read_to_string().unwrap()
}

/// The value of the metric line that starts with `name` (labels included).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or_else(|| panic!("no `{name}` in\n{text}"))
}

/// `/healthz`: its status and body.
pub fn healthz(r: &Running) -> (u16, Value) {
    let resp = agent().get(&r.url("/healthz")).call().unwrap();
    let status = resp.status().as_u16();
    (status, body_json(resp))
}

/// Polls `f` every 50 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to `path` the recommended way: a temporary file, synced, renamed over the old one.
pub fn replace_file(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// An nginx-style forward-auth call.
pub fn nginx_call(r: &Running, path: &str, token: &str, proof: &str) -> ureq::http::Response<ureq::Body> {
    nginx_call_at(&r.url(""), path, token, proof)
}

/// An nginx-style forward-auth call to the server at `base` (`http://host:port`).
pub fn nginx_call_at(base: &str, path: &str, token: &str, proof: &str) -> ureq::http::Response<ureq::Body> {
    agent()
        .get(&format!("{base}/forward-auth"))
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", path)
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "mail.example.com")
        .header("Authorization", &format!("DPoP {token}"))
        .header("DPoP", proof)
        .call()
        .unwrap()
}

pub fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> String {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

pub fn body_json(resp: ureq::http::Response<ureq::Body>) -> Value {
    let mut resp = resp;
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
}

pub fn post_json(r: &Running, path: &str, body: &Value) -> ureq::http::Response<ureq::Body> {
    agent().post(&r.url(path)).header("content-type", "application/json").send(body.to_string()).unwrap()
}

pub fn evaluation(k: &Keys, token: &str, resource_owner: &str) -> Value {
    json!({
        "subject": {"type": "agent", "id": ASSISTANT},
        "action": {"name": "mail:read"},
        "resource": {"type": "Mailbox", "id": resource_owner, "properties": {"owner": {"type": "User", "id": resource_owner}}},
        "context": {"authorization": format!("DPoP {token}"), "dpop": proof(k, token, URI, None), "http": {"method": "GET", "uri": URI}},
    })
}

/// One request an upstream received.
pub struct Recorded {
    pub uri: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
}

/// What a recording upstream has received so far.
pub type Seen = std::sync::Arc<Mutex<Vec<Recorded>>>;

/// A tiny upstream on a loopback port that records every request and answers 200
/// `hello from upstream` with the header `x-upstream: yes`.
pub fn recording_upstream() -> (SocketAddr, Seen) {
    let seen: Seen = Seen::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
                let recorded = recorded.clone();
                async move {
                    let headers = headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
                    recorded.lock().unwrap().push(Recorded { uri: uri.to_string(), headers, body });
                    ([("x-upstream", "yes")], "hello from upstream")
                }
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    (addr, seen)
}
