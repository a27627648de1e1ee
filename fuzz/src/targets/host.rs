//! The host's inputs: the configuration file and the two HTTP mappings into the engine.
//!
//! - `config` (host config.rs): `agentgate.toml` text, written next to the demo files (a copy of
//!   `policies/` and `tests/configs/` in a scratch directory) and loaded as `agentgate serve`
//!   loads it; then everything the server builds from it before serving (trust store, revocation
//!   list, routes, proxy origins, the decision API guard). Input: the TOML text.
//! - `authzen` (server/authzen.rs): an AuthZEN evaluation, a batch, or a `/v1/check` body,
//!   through the handlers `agentgate serve` routes to. Input: a flags byte (modulo 3: evaluation,
//!   evaluations, `/v1/check`), then the body. `$token` and `$proof` stand for a token and a proof
//!   the harness signs at the wall clock (the handlers take no `now`).
//! - `forward_auth` (server/forward.rs): what a proxy forwards. Input: a flags byte (bits 0–1
//!   the deployment: nginx, Traefik, Envoy, MCP behind nginx; bit 2 an untrusted peer), then
//!   lines: the method, the request target, and `name: value` headers (`$token`, `$proof`).
//!
//! Both HTTP targets decide through the component (the deployments are real `agentgate serve`
//! states with a memory store), and check that an allow needed the harness's own credentials.

use crate::harness::{AGENT, ISSUER, MAIL_AUDIENCE, root};
use agentgate::config::{self, NoFetch};
use agentgate::mint::{self, AccessTokenSpec};
use agentgate::server::{self, ServeOptions, Shared};
use agentgate_engine::revocation::RevocationList;
use agentgate_engine::routing;
use agentgate_engine::settings::Settings;
use agentgate_engine::trust::{TrustConfig, TrustStore};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A scratch copy of the demo files at a fixed place, so that the deployments' compiled
/// components are found in the artifact cache on the next run (the cache key names the files).
fn layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let dir = std::env::temp_dir().join("agentgate-fuzz-layout");
        copy_tree(&root().join("policies"), &dir.join("policies"));
        copy_tree(&root().join("tests/configs"), &dir.join("tests/configs"));
        write_if_changed(&dir.join("policies/mail/nonce.TEST-ONLY.secret"), &std::fs::read(root().join("tests/configs/nonce.TEST-ONLY.secret")).unwrap());
        dir
    })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            write_if_changed(&target, &std::fs::read(&path).unwrap());
        }
    }
}

/// Writes through a temporary file and a rename, and only if the content differs: several
/// processes (libFuzzer jobs, test threads) share the layout.
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Paths are the operator's: one into /dev, /proc or /sys (or spelt with escapes) would make
    // the loader read a device, which is no finding.
    if ["\\", "/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let path = layout().join(format!("policies/mail/fuzz-config-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let loaded = match config::load_with(&path, &NoFetch) {
        Ok(l) => l,
        Err(e) => return assert!(!e.to_string().is_empty(), "a rejection without a reason"),
    };
    // What `serve` builds from a configuration that loaded; none of it may panic.
    let settings: Settings = serde_json::from_str(&loaded.engine.settings_json).expect("the loaded settings do not read back");
    settings.validate().expect("a configuration loaded with settings that do not validate");
    let trust: TrustConfig = serde_json::from_str(&loaded.engine.trust_json).expect("the loaded trust section does not read back");
    let _ = TrustStore::from_config(&trust);
    let _ = RevocationList::parse(&loaded.engine.revocations_json);
    let _ = routing::compile(&loaded.file.routes);
    let server = &loaded.file.server;
    let _ = server::origin::Origins::new(&server.trusted_proxies, &server.external_origins);
    server::decision_api::Guard::new(&loaded).expect("the decision API clients were checked when the configuration loaded");
    let json = serde_json::to_string(&loaded.engine).unwrap();
    assert_eq!(serde_json::from_str::<agentgate_engine::EngineConfig>(&json).unwrap(), loaded.engine, "the engine configuration does not round-trip");
}

/// The deployments the HTTP targets run: (proxy, policy directory, audience).
const SERVERS: [(&str, &str, &str); 4] =
    [("nginx", "mail", MAIL_AUDIENCE), ("traefik", "mail", MAIL_AUDIENCE), ("envoy", "mail", MAIL_AUDIENCE), ("nginx", "mcp", "https://files.example.com")];

/// `agentgate serve`'s state for deployment `index`, built on first use.
fn server(index: usize) -> &'static Shared {
    static SERVERS_BUILT: [OnceLock<Shared>; 4] = [const { OnceLock::new() }; 4];
    SERVERS_BUILT[index].get_or_init(|| {
        let (proxy, dir, audience) = SERVERS[index];
        let demo = std::fs::read_to_string(root().join("policies").join(dir).join("agentgate.toml")).unwrap();
        // The demo's routes and `[mcp]`, with the server settings of this deployment.
        let tables: String = demo.split("\n[").filter(|t| t.starts_with("[routes]]") || t.starts_with("mcp]")).map(|t| format!("\n[{t}")).collect();
        let text = format!(
            "audiences = [\"{audience}\"]\npolicies = \".\"\n{revocations}\n\
             [[issuers]]\nissuer = \"{ISSUER}\"\njwks = \"../keys/demo-issuer.TEST-ONLY.jwks.json\"\n\n\
             [[trust_domains]]\ntrust_domain = \"agents.example\"\nbundle = \"../keys/agents.example.TEST-ONLY.bundle.json\"\n\n\
             [dpop]\nmode = \"required\"\n\n\
             [server]\nproxy = \"{proxy}\"\nexternal_origins = [\"{audience}\"]\npool_size = 2\n\n\
             [audit]\npath = \"/dev/null\"\n\n[state]\nmax_proofs_per_key = 1000000\n{tables}\n",
            revocations = if dir == "mail" { "revocations = \"revoked.json\"" } else { "" },
        );
        let path = layout().join("policies").join(dir).join(format!("fuzz-{proxy}.toml"));
        write_if_changed(&path, text.as_bytes());
        server::state(&ServeOptions { config: path, listen: None }).unwrap_or_else(|e| panic!("{proxy}/{dir}: {e:#}"))
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap())
}

/// Access tokens for the mail and MCP demos at the wall clock, bound to the agent key; minted
/// again before they age out.
fn fresh_token(audience: &str) -> String {
    static TOKENS: Mutex<Option<(Instant, String, String)>> = Mutex::new(None);
    let mut slot = TOKENS.lock().unwrap_or_else(|p| p.into_inner());
    if slot.as_ref().is_none_or(|(minted, _, _)| minted.elapsed() > Duration::from_secs(20 * 60)) {
        let keys = crate::harness::keys();
        let mint = |aud: &str, scopes: &[&str]| {
            let mut spec = AccessTokenSpec::new(ISSUER, "alice", aud);
            spec.actors = vec![AGENT.into()];
            spec.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
            spec.lifetime_secs = 3600;
            spec.bound_key = Some(keys.agent.thumbprint());
            spec.sign(&keys.issuer)
        };
        *slot = Some((Instant::now(), mint(MAIL_AUDIENCE, &["mail.read", "mail.send"]), mint("https://files.example.com", &["files.read", "files.write"])));
    }
    let (_, mail, files) = slot.as_ref().unwrap();
    if audience == MAIL_AUDIENCE { mail.clone() } else { files.clone() }
}

/// A fresh proof for `method` `uri` and `token`, at the wall clock.
fn fresh_proof(method: &str, uri: &str, token: &str) -> String {
    mint::dpop_proof(&crate::harness::keys().agent, method, uri, token, mint::now(), None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The status and the JSON body (`Null` for an empty one) of a response.
fn answer(response: axum::response::Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = runtime().block_on(axum::body::to_bytes(response.into_body(), 1 << 22)).expect("the response body");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("a response body that is not JSON ({e})")) };
    (status, headers, body)
}

pub fn authzen(data: &[u8]) {
    let Some((flags, body)) = data.split_first() else { return };
    let shared = server(0);
    let token = fresh_token(MAIL_AUDIENCE);
    let body = crate::harness::replace(body, "$token", &token);
    // The proof names the first `http` the body gives (else the mail demo's call).
    let http = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        [&v["context"]["http"], &v["http"], &v["evaluations"][0]["context"]["http"]]
            .into_iter()
            .find_map(|h| Some((h["method"].as_str()?.to_owned(), h["uri"].as_str()?.to_owned())))
    });
    let (method, uri) = http.unwrap_or_else(|| ("GET".into(), crate::harness::MAIL_URI.into()));
    let body = crate::harness::replace(&body, "$proof", &fresh_proof(&method, &uri, &token));
    let presented = body.windows(token.len()).any(|w| w == token.as_bytes());
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let endpoint = flags % 3;
    let state = State(shared.clone());
    let response = runtime().block_on(async {
        let bytes = Bytes::from(body.clone());
        match endpoint {
            0 => server::authzen::evaluation(state, HeaderMap::new(), bytes).await,
            1 => server::authzen::evaluations(state, HeaderMap::new(), bytes).await,
            _ => server::authzen::check(state, HeaderMap::new(), bytes).await,
        }
    });
    let (status, _, answer) = answer(response);
    assert!(matches!(status.as_u16(), 200 | 400 | 413), "answered {status}");
    if status != StatusCode::OK {
        assert!(answer["error"].is_string(), "a {status} without an `error`");
        return;
    }
    let allowed: Vec<&Value> = match endpoint {
        2 => vec![&answer].into_iter().filter(|a| a["decision"] == "allow").collect(),
        _ => {
            let items: Vec<&Value> = match answer["evaluations"].as_array() {
                Some(items) => items.iter().collect(),
                None => vec![&answer],
            };
            for item in &items {
                assert!(item["decision"].is_boolean(), "an evaluation without a boolean `decision`: {item}");
            }
            items.into_iter().filter(|a| a["decision"] == true).collect()
        }
    };
    if allowed.is_empty() {
        return;
    }
    assert!(presented, "allowed without the harness's token: {}", text(&body));
    for a in &allowed {
        let context = if endpoint == 2 { *a } else { &a["context"] };
        assert_eq!(context["user"], "alice", "allowed for another user: {a}");
    }
    // §5.1: a named subject is the verified one.
    if endpoint == 0 {
        match request["subject"]["type"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("agent") => assert_eq!(request["subject"]["id"], AGENT, "allowed for another agent subject"),
            Some("user") => assert_eq!(request["subject"]["id"], "alice", "allowed for another user subject"),
            Some(other) => panic!("allowed with the subject type `{other}`"),
            None => {}
        }
    }
}

pub fn forward_auth(data: &[u8]) {
    let Some((flags, rest)) = data.split_first() else { return };
    let index = usize::from(flags & 3);
    let trusted = flags & 4 == 0;
    let (proxy, dir, audience) = SERVERS[index];
    let shared = server(index);
    let mut lines = rest.split(|b| *b == b'\n');
    let method = Method::from_bytes(lines.next().unwrap_or_default()).unwrap_or(Method::GET);
    let target = text(lines.next().unwrap_or_default());
    let mut headers: Vec<(HeaderName, Vec<u8>)> = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let Ok(name) = HeaderName::from_bytes(&line[..colon]) else { continue };
        headers.push((name, line[colon + 1..].trim_ascii().to_vec()));
    }
    // The original request as the dialect reports it (the first copy of each header).
    let first = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| text(v));
    let (original_method, original_target) = match proxy {
        "nginx" => (first("x-original-method"), first("x-original-uri")),
        "traefik" => (first("x-forwarded-method"), first("x-forwarded-uri")),
        _ => (Some(method.to_string()), target.strip_prefix("/forward-auth").map(|t| if t.is_empty() { "/".to_owned() } else { t.to_owned() })),
    };
    let token = fresh_token(audience);
    let uri = format!("{audience}{}", original_target.clone().unwrap_or_default());
    let proof = fresh_proof(original_method.as_deref().unwrap_or("GET"), &uri, &token);
    let mut request = Request::builder().method(method).uri(if target.is_empty() { "/forward-auth" } else { &target });
    let mut presented = false;
    for (name, value) in &headers {
        let value = crate::harness::replace(&crate::harness::replace(value, "$token", &token), "$proof", &proof);
        presented |= name == "authorization" && value.windows(token.len()).any(|w| w == token.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            request = request.header(name, value);
        }
    }
    let Ok(request) = request.body(Body::empty()) else { return };
    let peer: SocketAddr = if trusted { "127.0.0.1:40000" } else { "10.1.2.3:40000" }.parse().unwrap();
    let response = runtime().block_on(server::forward::forward_auth(State(shared.clone()), ConnectInfo(peer), request));
    let (status, answered, _) = answer(response);
    assert!(matches!(status.as_u16(), 200 | 400 | 401 | 403 | 429 | 503), "answered {status}");
    if status == StatusCode::UNAUTHORIZED {
        assert!(answered.contains_key("www-authenticate"), "a 401 without a challenge");
    }
    if status != StatusCode::OK {
        return;
    }
    // An allow: from a trusted proxy, with the harness's credentials, for alice through the
    // agent, on exactly the resource the upstream will serve.
    assert!(trusted, "allowed a forward-auth request from an untrusted peer");
    assert!(presented, "allowed without the harness's token in `Authorization`");
    let header = |name: &str| answered.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("x-agentgate-user").as_deref(), Some("alice"));
    assert_eq!(header("x-agentgate-agent").as_deref(), Some(AGENT));
    let target = original_target.expect("allowed without an original target");
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<String> = path.split('/').skip(1).map(percent_decode_lossy).collect();
    let expected: &[&str] = if dir == "mail" { &["mailboxes", "alice", "messages"] } else { &["mcp"] };
    assert_eq!(segments, expected, "allowed `{target}`, which the upstream reads as another resource");
}

/// Percent-decoding as an upstream would do it (invalid UTF-8 replaced).
fn percent_decode_lossy(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
