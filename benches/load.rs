//! Load: `wrk` against `agentgate serve` on loopback for a fixed time, every request a bound
//! agent call through forward-auth with its own DPoP proof (pre-minted, so replay protection
//! stays on). Reports checks/s and latency percentiles, then stops by itself.
//!
//! `cargo bench --bench load -- [SECONDS] [CONNECTIONS] [guest|host]` (needs `wrk`:
//! `apt-get install wrk`). The third argument is `[runtime] crypto`: where ES256 runs (default
//! `guest`, the portable component).

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate::server::{self, ServeOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const URI: &str = "https://mail.example.com/mailboxes/alice/messages";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let connections: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let crypto = args.get(2).map_or("guest", String::as_str);
    if !matches!(crypto, "guest" | "host") {
        eprintln!("crypto must be `guest` or `host`, not `{crypto}`");
        std::process::exit(2);
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed (apt-get install wrk)");
        std::process::exit(2);
    }

    // A deployment: the mail demo with the audit log in a file, as in production.
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(root().join("policies/mail/agentgate.toml"))
        .map(|c| format!("{c}\n[runtime]\ncrypto = \"{crypto}\"\n"))
        .unwrap()
        .replace("policies = \".\"", &format!("policies = \"{}\"", root().join("policies/mail").display()))
        .replace("\"../keys/", &format!("\"{}/", root().join("policies/keys").display()))
        .replace("revocations = \"revoked.json\"", &format!("revocations = \"{}\"", root().join("policies/mail/revoked.json").display()))
        .replace("path = \"-\"", "path = \"audit.jsonl\"");
    std::fs::write(dir.path().join("agentgate.toml"), config).unwrap();

    // Pre-mint one proof per expected request (generously), in parallel.
    let key = |n: &str| KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys").join(n)).unwrap()).unwrap();
    let issuer = key("issuer.TEST-ONLY.private.jwk.json");
    let agent = key("agent.TEST-ONLY.private.jwk.json");
    let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", "alice", "https://mail.example.com");
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec!["spiffe://agents.example/mail-assistant".into()];
    spec.lifetime_secs = 3600;
    spec.bound_key = Some(agent.thumbprint());
    let token = spec.sign(&issuer);
    // More than the server can answer in `seconds` (~9k/s here with either crypto placement): a
    // proof running out would show as a fast deny, and the bench fails on any deny.
    let count = (seconds as usize) * 16_000;
    let now = mint::now() + 2;
    let proofs: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| (0..count / 2).map(|_| mint::dpop_proof(&agent, "GET", URI, &token, now, None)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let proofs_path = dir.path().join("proofs.txt");
    let mut f = std::fs::File::create(&proofs_path).unwrap();
    for p in &proofs {
        writeln!(f, "{p}").unwrap();
    }
    drop(f);

    // Each wrk thread reads its own slice of the proofs, so no proof is sent twice.
    let script = format!(
        r#"
local token = "{token}"
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  proofs = {{}}
  local i = 0
  for line in io.lines("{proofs}") do
    if i % 2 == id then table.insert(proofs, line) end
    i = i + 1
  end
  n = 0
end
request = function()
  n = n + 1
  local proof = proofs[n] or "exhausted"
  return wrk.format("GET", "/forward-auth", {{
    ["Host"] = "127.0.0.1",
    ["X-Original-Method"] = "GET",
    ["X-Original-URI"] = "/mailboxes/alice/messages",
    ["X-Forwarded-Proto"] = "https",
    ["X-Forwarded-Host"] = "mail.example.com",
    ["Authorization"] = "DPoP " .. token,
    ["DPoP"] = proof,
  }})
end
"#,
        proofs = proofs_path.display()
    );
    std::fs::write(dir.path().join("load.lua"), script).unwrap();

    // The server, on two worker threads (this VM's cores, shared with wrk).
    let options = ServeOptions { config: dir.path().join("agentgate.toml"), listen: None };
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let state = server::load_state(&options).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((listener.local_addr().unwrap(), state.clone())).unwrap();
            server::serve_on(listener, state, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let (addr, state) = rx.recv_timeout(Duration::from_secs(120)).unwrap();

    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(dir.path().join("load.lua"))
        .arg(format!("http://{addr}/forward-auth"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("crypto: {crypto} (the `[runtime] crypto` of the served component)");
    println!("{report}");
    let allowed = state.metrics().decisions(agentgate::Outcome::Allowed);
    let replayed = state.metrics().decisions(agentgate::Outcome::Replayed);
    println!("decisions: {allowed} allowed, {replayed} replayed ({} proofs were minted)", proofs.len());
    let _ = stop_tx.send(());
    let _ = server_thread.join();
    if report.contains("Non-2xx") {
        eprintln!("some requests were not allowed; see above");
        std::process::exit(1);
    }
}
