//! Load: `wrk` against `agentgate serve` on loopback for a fixed time, every request a bound
//! agent call through forward-auth with its own DPoP proof (pre-minted, so replay protection
//! stays on). Reports checks/s and latency percentiles, then stops by itself.
//!
//! `cargo bench --bench load -- [SECONDS] [CONNECTIONS] [guest|host] [memory|fleet]` (needs
//! `wrk`: `apt-get install wrk`). The third argument is `[runtime] crypto`: where ES256 runs
//! (default `guest`). The fourth is the deployment:
//!
//! - `memory` (default): one node, `[state] backend = "memory"`, on 2 worker threads; one `wrk`
//!   with 2 threads and all the connections.
//! - `fleet`: a real `redis-server` (started on a free loopback port, stopped at the end) and two
//!   nodes, each `[state] backend = "redis"` with the same key prefix, each on 1 worker thread;
//!   two `wrk` processes, one per node, each with 1 thread, half the connections and its own
//!   disjoint half of the proofs. Needs `redis-server` (or `valkey-server`).
//!
//! Either way the worker threads (2) and `wrk` threads (2) are the same in total, the decisions
//! themselves run on tokio's blocking pool, and every process shares the same cores. The last
//! line, `RESULT …`, is for `benches/fleet-load.sh` (median of three runs). Any non-2xx answer or
//! socket error fails the run.

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
#[path = "../tests/support/redis.rs"]
mod redis_server;

use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate::server::{self, ServeOptions};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const URI: &str = "https://mail.example.com/mailboxes/alice/messages";

/// Every request's proof comes from one agent key, far more often than any agent would send
/// them; the default per-key bound (10,000 live proofs per 61 s window) would answer
/// `rate_limited` within the first seconds, so the bench lifts it.
const STATE_MEMORY: &str = "\n[state]\nmax_proofs_per_key = 100000000\n";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One running `serve` node.
struct Node {
    addr: std::net::SocketAddr,
    state: server::Shared,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn start_node(config: PathBuf, workers: usize) -> Node {
    let options = ServeOptions { config, listen: None };
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
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
    Node { addr, state, stop, thread }
}

/// The wrk script: each wrk thread sends its own slice of `proofs` (no proof is sent twice), and
/// the run's latency histogram (µs → count, every distinct value) is written to `histogram`.
fn wrk_script(token: &str, proofs: &Path, threads: usize, histogram: &Path) -> String {
    format!(
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
    if i % {threads} == id then table.insert(proofs, line) end
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
function done(summary, latency, requests)
  local f = io.open("{histogram}", "w")
  for i = 1, #latency do
    local value, count = latency(i)
    f:write(string.format("%d %d\n", value, count))
  end
  f:close()
end
"#,
        proofs = proofs.display(),
        histogram = histogram.display(),
    )
}

/// A latency histogram: µs → requests.
type Histogram = BTreeMap<u64, u64>;

fn read_histogram(path: &Path) -> Histogram {
    let mut h = Histogram::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let (value, count) = line.split_once(' ').unwrap();
        *h.entry(value.parse().unwrap()).or_default() += count.parse::<u64>().unwrap();
    }
    h
}

/// The value at percentile `p` (0–100): the smallest latency with at least `p` % of the
/// requests at or below it.
fn percentile(h: &Histogram, p: f64) -> f64 {
    let total: u64 = h.values().sum();
    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (value, count) in h {
        seen += count;
        if seen >= rank {
            return *value as f64 / 1000.0;
        }
    }
    0.0
}

const PERCENTILES: [f64; 4] = [50.0, 75.0, 90.0, 99.0];

fn percentiles_line(h: &Histogram) -> String {
    PERCENTILES.iter().map(|p| format!("p{p} {:.2} ms", percentile(h, *p))).collect::<Vec<_>>().join(", ")
}

/// Requests per second as wrk reports it.
fn requests_per_sec(report: &str) -> f64 {
    report.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let connections: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let crypto = args.get(2).map_or("guest", String::as_str);
    let mode = args.get(3).map_or("memory", String::as_str);
    if !matches!(crypto, "guest" | "host") {
        eprintln!("crypto must be `guest` or `host`, not `{crypto}`");
        std::process::exit(2);
    }
    let fleet = match mode {
        "memory" => false,
        "fleet" => true,
        other => {
            eprintln!("the deployment must be `memory` or `fleet`, not `{other}`");
            std::process::exit(2);
        }
    };
    let nodes = if fleet { 2 } else { 1 };
    if connections < nodes || !connections.is_multiple_of(nodes) {
        eprintln!("CONNECTIONS must be a positive multiple of the number of nodes ({nodes})");
        std::process::exit(2);
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed (apt-get install wrk)");
        std::process::exit(2);
    }
    // The fleet's store, stopped when this drops (at the end of `main`).
    let store = if fleet {
        match redis_server::start_or_skip("load bench, fleet") {
            Some(store) => Some(store),
            None => std::process::exit(2),
        }
    } else {
        None
    };

    // A deployment: the mail demo with the audit log in a file, as in production. The fleet
    // keeps its revocation list in the store (it refuses a `revocations` file).
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("policies/mail/agentgate.toml"))
        .unwrap()
        .replace("policies = \".\"", &format!("policies = \"{}\"", root().join("policies/mail").display()))
        .replace("\"../keys/", &format!("\"{}/", root().join("policies/keys").display()))
        .replace("path = \"-\"", "path = \"audit.jsonl\"");
    let base = match &store {
        None => base.replace("revocations = \"revoked.json\"", &format!("revocations = \"{}\"", root().join("policies/mail/revoked.json").display())),
        Some(_) => base.replace("revocations = \"revoked.json\"\n", ""),
    };
    let state_section = match &store {
        None => STATE_MEMORY.to_owned(),
        Some(store) => format!("\n[state]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"agentgate-load:\"\nmax_proofs_per_key = 100000000\n", store.url()),
    };
    let config = format!("{base}\n[runtime]\ncrypto = \"{crypto}\"\n{state_section}");

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
    // More than the service can answer in `seconds` (~9k/s here with either crypto placement on
    // one node): a proof running out would show as a fast deny, and the bench fails on any deny.
    let count = (seconds as usize) * 16_000;
    let now = mint::now() + 2;
    let proofs: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..2).map(|_| s.spawn(|| (0..count / 2).map(|_| mint::dpop_proof(&agent, "GET", URI, &token, now, None)).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });

    // Per node: its own directory (config, audit log), its own disjoint slice of the proofs and
    // its own wrk script. The node and wrk thread counts keep the totals equal across modes.
    let (workers, wrk_threads) = if fleet { (1, 1) } else { (2, 2) };
    let per_node = proofs.len() / nodes;
    let mut running = Vec::new();
    for (i, slice) in proofs.chunks(per_node).take(nodes).enumerate() {
        let node_dir = dir.path().join(format!("node-{i}"));
        std::fs::create_dir(&node_dir).unwrap();
        std::fs::write(node_dir.join("agentgate.toml"), &config).unwrap();
        let proofs_path = node_dir.join("proofs.txt");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&proofs_path).unwrap());
        for p in slice {
            writeln!(f, "{p}").unwrap();
        }
        f.flush().unwrap();
        drop(f);
        let histogram = node_dir.join("latency.txt");
        std::fs::write(node_dir.join("load.lua"), wrk_script(&token, &proofs_path, wrk_threads, &histogram)).unwrap();
        let node = start_node(node_dir.join("agentgate.toml"), workers);
        running.push((node_dir, histogram, node));
    }

    // All wrk processes at once, one per node.
    let wrks: Vec<_> = running
        .iter()
        .map(|(node_dir, _, node)| {
            Command::new("wrk")
                .args([&format!("-t{wrk_threads}"), &format!("-c{}", connections / nodes), &format!("-d{seconds}s"), "--latency", "-s"])
                .arg(node_dir.join("load.lua"))
                .arg(format!("http://{}/forward-auth", node.addr))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let reports: Vec<String> = wrks.into_iter().map(|w| String::from_utf8_lossy(&w.wait_with_output().unwrap().stdout).into_owned()).collect();

    println!(
        "crypto: {crypto} (the `[runtime] crypto` of the served component); deployment: {}",
        if fleet {
            format!(
                "fleet, 2 nodes on Redis (`{}`), 1 worker thread each, one wrk per node (1 thread, {} connections)",
                store.as_ref().unwrap().url(),
                connections / nodes
            )
        } else {
            format!("one node, memory, 2 worker threads, one wrk (2 threads, {connections} connections)")
        }
    );
    let mut failed = false;
    let mut combined = Histogram::new();
    let mut total_rps = 0.0;
    let mut total_allowed = 0;
    for (i, ((_, histogram, node), report)) in running.iter().zip(&reports).enumerate() {
        println!("--- node {i} ({})\n{report}", node.addr);
        let h = read_histogram(histogram);
        for (value, count) in &h {
            *combined.entry(*value).or_default() += count;
        }
        let rps = requests_per_sec(report);
        total_rps += rps;
        let outcomes: Vec<String> = agentgate::Outcome::ALL
            .iter()
            .filter_map(|o| {
                let n = node.state.metrics().decisions(*o);
                (n > 0).then(|| format!("{n} {}", o.as_str()))
            })
            .collect();
        total_allowed += node.state.metrics().decisions(agentgate::Outcome::Allowed);
        println!("node {i}: {rps:.0} checks/s, {}; decisions: {}", percentiles_line(&h), outcomes.join(", "));
        let store = node.state.shared_state();
        println!("node {i}, {} store: {}", store.backend().kind(), common::store_round_trips(store.metrics(), store.backend().kind()));
        if report.contains("Non-2xx") || report.contains("Socket errors") || rps == 0.0 {
            failed = true;
        }
    }
    println!("combined: {total_rps:.0} checks/s, {}; {total_allowed} allowed ({} proofs were minted)", percentiles_line(&combined), proofs.len());
    println!(
        "RESULT mode={mode} crypto={crypto} nodes={nodes} connections={connections} seconds={seconds} checks_per_s={total_rps:.0} {} failed={failed}",
        PERCENTILES.iter().map(|p| format!("p{p}_ms={:.2}", percentile(&combined, *p))).collect::<Vec<_>>().join(" ")
    );

    for (_, _, node) in running {
        let _ = node.stop.send(());
        let _ = node.thread.join();
    }
    drop(store);
    if failed {
        eprintln!("some requests were not allowed or failed; see above");
        std::process::exit(1);
    }
}
