//! Soak: `agentgate serve` (the release binary, a child process) under mixed valid and hostile
//! traffic for a fixed time, loopback only. Every request has one expected status; any other is
//! counted as unexpected. The server's resident memory (VmRSS) and open file descriptors are
//! sampled from `/proc` every few seconds and printed as a curve.
//!
//! `cargo build --release -p agentgate && cargo bench --bench soak -- [MINUTES] [CLIENTS]`
//! (defaults: 10 minutes, 2 client threads). Not part of CI. It passes when:
//!
//! - no request got an unexpected status (and none failed at the socket);
//! - after warm-up, RSS stays within 10 % of its value at minute 2 (for runs shorter than four
//!   minutes, at the run's midpoint);
//! - the open file descriptors at the end are no more than at minute 2.
//!
//! Proofs are minted as the clients go: pre-minted proofs would age out of their 60 s window.

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ALICE_URI: &str = "https://mail.example.com/mailboxes/alice/messages";
/// One sample every this long.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The release binary beside this bench (`target/release/agentgate`).
fn agentgate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("agentgate");
    if !bin.exists() {
        eprintln!("{} is missing: run `cargo build --release -p agentgate` first", bin.display());
        std::process::exit(2);
    }
    bin
}

/// The mail demo, its keys where they are, audited to a file.
fn deployment(dir: &Path) -> PathBuf {
    let config = std::fs::read_to_string(root().join("policies/mail/agentgate.toml"))
        .unwrap()
        .replace("policies = \".\"", &format!("policies = \"{}\"", root().join("policies/mail").display()))
        .replace("\"../keys/", &format!("\"{}/", root().join("policies/keys").display()))
        .replace("revocations = \"revoked.json\"", &format!("revocations = \"{}\"", root().join("policies/mail/revoked.json").display()))
        .replace("path = \"-\"", &format!("path = \"{}\"", dir.join("audit.jsonl").display()));
    let path = dir.join("agentgate.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn start_server(config: &Path, port: u16) -> Child {
    let child = Command::new(agentgate_bin())
        .args(["serve", "--config", config.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = client();
    let started = Instant::now();
    while agent.get(&format!("http://127.0.0.1:{port}/healthz")).call().is_err() {
        assert!(started.elapsed() < Duration::from_secs(120), "serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().new_agent()
}

/// `VmRSS` in KiB and the number of open descriptors of `pid`.
fn sample(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (rss, fds)
}

/// Agents per client thread. Each has its own key and bound token, as real agents do: one key
/// sending hundreds of proofs a second would meet the per-key bound (`rate_limited`), which is
/// `tests/serve_state.rs`'s subject, not this one's.
const AGENTS_PER_CLIENT: usize = 64;

/// The agents one client thread calls as, and a key no token is bound to.
struct Caller {
    agents: Vec<(KeyPair, String)>,
    thief_key: KeyPair,
    bearer_token: String,
}

impl Caller {
    fn new() -> Self {
        let issuer = KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys/issuer.TEST-ONLY.private.jwk.json")).unwrap()).unwrap();
        let spec = |bound: Option<String>| {
            let mut spec = AccessTokenSpec::new("https://auth.demo.agentgate.dev", "alice", "https://mail.example.com");
            spec.scopes = vec!["mail.read".into()];
            spec.actors = vec!["spiffe://agents.example/mail-assistant".into()];
            spec.lifetime_secs = 3600;
            spec.bound_key = bound;
            spec.sign(&issuer)
        };
        let agents = (0..AGENTS_PER_CLIENT)
            .map(|n| {
                let key = KeyPair::generate(format!("soak-agent-{n}")).unwrap();
                let token = spec(Some(key.thumbprint()));
                (key, token)
            })
            .collect();
        Caller { agents, thief_key: KeyPair::generate("thief").unwrap(), bearer_token: spec(None) }
    }
}

/// One request of the mix and the status it must get.
enum Call {
    /// A forward-auth call: Authorization, DPoP (if any), the original URI, extra headers.
    ForwardAuth { authorization: String, dpop: Option<String>, uri_path: &'static str, extra: Option<(&'static str, String)> },
    /// A POST of `body` to `path`.
    Post { path: &'static str, body: String },
}

/// The mix: 2 of every 12 requests are valid allows; the rest are denials and hostile input of
/// every kind the service must refuse cheaply and without growing.
fn call_for(i: u64, c: &Caller, last_proof: &mut Option<(usize, String)>) -> (Call, u16, &'static str) {
    let now = mint::now();
    let which = (i / 12) as usize % c.agents.len();
    let (key, token) = &c.agents[which];
    let fresh = |key: &KeyPair| mint::dpop_proof(key, "GET", ALICE_URI, token, now, None);
    let dpop = |token: &str| format!("DPoP {token}");
    match i % 12 {
        0 | 1 => {
            let proof = fresh(key);
            *last_proof = Some((which, proof.clone()));
            (Call::ForwardAuth { authorization: dpop(token), dpop: Some(proof), uri_path: "/mailboxes/alice/messages", extra: None }, 200, "allowed")
        }
        2 => {
            let (which, replayed) = last_proof.clone().unwrap_or_else(|| (which, fresh(key)));
            let token = &c.agents[which].1;
            (Call::ForwardAuth { authorization: dpop(token), dpop: Some(replayed), uri_path: "/mailboxes/alice/messages", extra: None }, 401, "replayed proof")
        }
        3 => {
            let proof = mint::dpop_proof(key, "GET", "https://mail.example.com/mailboxes/bob/messages", token, now, None);
            (Call::ForwardAuth { authorization: dpop(token), dpop: Some(proof), uri_path: "/mailboxes/bob/messages", extra: None }, 403, "another mailbox")
        }
        4 => (
            Call::ForwardAuth { authorization: "DPoP not.a.jwt".into(), dpop: Some(fresh(key)), uri_path: "/mailboxes/alice/messages", extra: None },
            401,
            "garbage token",
        ),
        5 => (
            Call::ForwardAuth { authorization: dpop(token), dpop: Some(fresh(&c.thief_key)), uri_path: "/mailboxes/alice/messages", extra: None },
            401,
            "a thief's proof key",
        ),
        6 => (
            Call::ForwardAuth {
                authorization: dpop(token),
                dpop: Some(fresh(key)),
                uri_path: "/mailboxes/alice/messages",
                extra: Some(("X-Padding", "a".repeat(40 * 1024))),
            },
            431,
            "oversized headers",
        ),
        7 => (Call::Post { path: "/v1/check", body: "{\"authorization\": ".into() }, 400, "truncated JSON"),
        8 => (Call::Post { path: "/access/v1/evaluation", body: "{\"subject\": 1}".into() }, 400, "malformed AuthZEN body"),
        9 => (Call::ForwardAuth { authorization: String::new(), dpop: None, uri_path: "/mailboxes/alice/messages", extra: None }, 401, "no credentials"),
        10 => (
            Call::ForwardAuth { authorization: format!("Bearer {token}"), dpop: None, uri_path: "/mailboxes/alice/messages", extra: None },
            401,
            "bound token as Bearer",
        ),
        _ => (
            Call::ForwardAuth {
                authorization: format!("Bearer {}", c.bearer_token),
                dpop: Some("x".repeat(9000)),
                uri_path: "/mailboxes/alice/messages",
                extra: None,
            },
            401,
            "oversized proof",
        ),
    }
}

fn send(agent: &ureq::Agent, base: &str, call: Call) -> Result<u16, String> {
    let result = match call {
        Call::ForwardAuth { authorization, dpop, uri_path, extra } => {
            let mut req = agent
                .get(&format!("{base}/forward-auth"))
                .header("X-Original-Method", "GET")
                .header("X-Original-URI", uri_path)
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "mail.example.com");
            if !authorization.is_empty() {
                req = req.header("Authorization", &authorization);
            }
            if let Some(proof) = dpop {
                req = req.header("DPoP", &proof);
            }
            if let Some((name, value)) = extra {
                req = req.header(name, &value);
            }
            req.call()
        }
        Call::Post { path, body } => agent.post(&format!("{base}{path}")).header("content-type", "application/json").send(body),
    };
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let _ = resp.body_mut().read_to_vec();
            Ok(status)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let minutes: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let run_for = Duration::from_secs_f64(minutes * 60.0);
    // The reference sample: minute 2, or the midpoint of a short run.
    let reference_at = if minutes >= 4.0 { Duration::from_secs(120) } else { run_for / 2 };

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = deployment(dir.path());
    let mut server = start_server(&config, port);
    let pid = server.id();
    let base = format!("http://127.0.0.1:{port}");
    println!("soak: {minutes} min, {clients} client threads, `agentgate serve` pid {pid} on {base}");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let unexpected = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|n| {
            let (stop, sent, unexpected, base) = (stop.clone(), sent.clone(), unexpected.clone(), base.clone());
            std::thread::spawn(move || {
                let caller = Caller::new();
                let agent = client();
                let mut last_proof = None;
                let mut i = n as u64;
                while !stop.load(Ordering::Relaxed) {
                    let (call, expected, what) = call_for(i, &caller, &mut last_proof);
                    match send(&agent, &base, call) {
                        Ok(status) if status == expected => {}
                        other => {
                            if unexpected.fetch_add(1, Ordering::Relaxed) < 10 {
                                eprintln!("unexpected: {what}: expected {expected}, got {other:?}");
                            }
                        }
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut curve: Vec<(Duration, u64, usize, u64)> = Vec::new();
    println!("{:>7} {:>10} {:>5} {:>10} {:>10}", "t (s)", "RSS (KiB)", "fds", "requests", "unexpected");
    while started.elapsed() < run_for {
        std::thread::sleep(SAMPLE_EVERY.min(run_for.saturating_sub(started.elapsed())).max(Duration::from_millis(1)));
        let (rss, fds) = sample(pid);
        let t = started.elapsed();
        let n = sent.load(Ordering::Relaxed);
        curve.push((t, rss, fds, n));
        println!("{:>7.0} {rss:>10} {fds:>5} {n:>10} {:>10}", t.as_secs_f64(), unexpected.load(Ordering::Relaxed));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let audit_lines = std::fs::read_to_string(dir.path().join("audit.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
    let _ = server.kill();
    let _ = server.wait();

    let total = sent.load(Ordering::Relaxed);
    let bad = unexpected.load(Ordering::Relaxed);
    let reference = curve.iter().find(|(t, ..)| *t >= reference_at).copied().unwrap_or(curve[0]);
    let after: Vec<_> = curve.iter().filter(|(t, ..)| *t >= reference.0).collect();
    let (min_rss, max_rss) = after.iter().fold((u64::MAX, 0), |(lo, hi), (_, rss, ..)| (lo.min(*rss), hi.max(*rss)));
    let spread = |v: u64| (v as f64 / reference.1 as f64 - 1.0) * 100.0;
    let end = *curve.last().unwrap();
    println!("\n{total} requests ({:.0}/s), {bad} unexpected; {audit_lines} audit lines", total as f64 / started.elapsed().as_secs_f64());
    println!(
        "RSS at {:.0} s (reference): {} KiB; after it: {min_rss}–{max_rss} KiB ({:+.1} % / {:+.1} %); at the end {} KiB",
        reference.0.as_secs_f64(),
        reference.1,
        spread(min_rss),
        spread(max_rss),
        end.1
    );
    println!("fds at the reference: {}, at the end: {}", reference.2, end.2);
    let rss_ok = spread(max_rss).abs() <= 10.0 && spread(min_rss).abs() <= 10.0;
    let fds_ok = end.2 <= reference.2;
    let ok = bad == 0 && rss_ok && fds_ok;
    println!("RESULT unexpected={bad} rss_within_10pct={rss_ok} fds_stable={fds_ok} pass={ok}");
    if !ok {
        std::process::exit(1);
    }
}
