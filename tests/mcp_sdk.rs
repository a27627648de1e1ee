//! Proven with the official SDK: `agentgate serve` in reverse-proxy mode guards a real MCP server
//! built with `@modelcontextprotocol/sdk` (tests/js/mcp/server.mjs: Streamable HTTP, stateful,
//! the tools of policies/mcp/tools.json over a temporary `/workspace/`) for the SDK's own client
//! (tests/js/mcp/client.mjs: discovery from the 401's `WWW-Authenticate` with the SDK's helpers,
//! tokens from `agentgate mint` for the advertised resource, DPoP proofs from the independent
//! `dpop` package, filtered `tools/list`, policy and scope refusals, a replayed proof, progress
//! streamed before the tool returns). Through `serve` with `[dpop] mode = "required"` and
//! Bearer-only, and through the wasi:http gateway (`agentgate gateway run`, DPoP required).
//! See tests/js/mcp/README.md.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{agentgate_bin, root};

/// The baseline, the DPoP suite through `serve` and through the gateway, the Bearer-only suite.
const EXPECTED_PASSES: usize = 1 + 10 + 10 + 9;

/// A child process, killed (and reaped) when the test ends, also on panic.
struct Proc {
    name: &'static str,
    child: Child,
    log: Option<PathBuf>,
}

impl Proc {
    /// Panics with the process's log when it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited early ({status}):\n{}", self.name, self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let Some(log) = &self.log else { return String::new() };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Starts the SDK server on free ports; its first stdout line names them.
fn start_server(js: &Path, workspace: &Path, dir: &Path) -> (Proc, u16, u16) {
    let log = dir.join("mcp-server.log");
    let mut child = Command::new("node")
        .arg("mcp/server.mjs")
        .arg(workspace)
        .current_dir(js)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut proc = Proc { name: "the SDK MCP server", child, log: Some(log) };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining, so the server never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
        proc.assert_running();
        panic!("the SDK MCP server did not say its ports within 30 s");
    };
    let ports: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        proc.assert_running();
        panic!("the SDK MCP server's first line `{line}`: {e}")
    });
    let port = |k: &str| u16::try_from(ports[k].as_u64().unwrap()).unwrap();
    let (mcp, control) = (port("mcp"), port("control"));
    (proc, mcp, control)
}

/// Writes an `agentgate serve` config in reverse-proxy mode in front of `upstream`.
fn write_config(dir: &Path, port: u16, upstream: u16, dpop: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let keys = root().join("policies/keys");
    let origin = format!("http://127.0.0.1:{port}");
    let toml = format!(
        r#"audiences = ["{origin}/mcp"]
policies = "{policies}"

[[issuers]]
issuer = "https://auth.demo.agentgate.dev"
jwks = "{jwks}"

[[trust_domains]]
trust_domain = "agents.example"
bundle = "{bundle}"

[limits]
clock_skew_secs = 30
max_token_lifetime_secs = 3600
max_delegation_depth = 3

[dpop]
mode = "{dpop}"

[server]
listen = "127.0.0.1:{port}"
upstream = "http://127.0.0.1:{upstream}"
external_origins = ["{origin}"]

[mcp]
path = "/mcp"
server = "files"

[protected_resource]
resource = "{origin}/mcp"
authorization_servers = ["https://auth.demo.agentgate.dev"]
scopes_supported = ["files.read", "files.write", "files.delete"]

[audit]
path = "audit.jsonl"
"#,
        policies = root().join("policies/mcp").display(),
        jwks = keys.join("demo-issuer.TEST-ONLY.jwks.json").display(),
        bundle = keys.join("agents.example.TEST-ONLY.bundle.json").display(),
    );
    let path = dir.join("agentgate.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn start_gate(name: &'static str, config: &Path) -> Proc {
    let log = config.with_file_name("agentgate.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(agentgate_bin())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--workers")
        .arg("2")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Proc { name, child, log: Some(log) }
}

/// The wasi:http gateway built from `config` (shared state: proofs single-use across its
/// per-request instances) and run by agentgate's own wasi:http host on `port`.
fn start_wasi_gateway(config: &Path, port: u16, upstream: u16) -> Proc {
    let component = config.with_file_name("gateway.wasm");
    let out = Command::new(agentgate_bin())
        .args(["gateway", "build", "--state", "host", "--upstream", &format!("http://127.0.0.1:{upstream}"), "--config"])
        .arg(config)
        .arg("--out")
        .arg(&component)
        .output()
        .unwrap();
    assert!(out.status.success(), "agentgate gateway build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let log = config.with_file_name("gateway.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(agentgate_bin())
        .args(["gateway", "run", "--listen", &format!("127.0.0.1:{port}"), "--component"])
        .arg(&component)
        .arg("--config")
        .arg(config)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Proc { name: "the wasi:http gateway", child, log: Some(log) }
}

/// Polls the gateway's metadata (bounded) until it answers: everything it serves goes through the
/// component, which has no `/healthz`.
fn wait_metadata(gate: &mut Proc, port: u16) {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().new_agent();
    let started = Instant::now();
    loop {
        gate.assert_running();
        if agent.get(&format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp")).call().is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{} did not answer within 120 s:\n{}", gate.name, gate.log_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `/healthz` (bounded) until the gateway answers.
fn wait_healthy(gate: &mut Proc, port: u16) {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().new_agent();
    let started = Instant::now();
    loop {
        gate.assert_running();
        if agent.get(&format!("http://127.0.0.1:{port}/healthz")).call().is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{} did not become healthy within 120 s:\n{}", gate.name, gate.log_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The count after `# <key> ` in node's TAP summary.
fn tap_count(out: &str, key: &str) -> Option<usize> {
    out.lines().rev().find_map(|l| l.strip_prefix(&format!("# {key} ")).and_then(|n| n.trim().parse().ok()))
}

#[test]
fn the_official_sdk_client_and_server_through_agentgate() {
    let js = root().join("tests/js");
    if !have("node") || !have("npm") {
        assert!(std::env::var_os("CI").is_none(), "Node.js and npm are required in CI (`.ci/run` installs them)");
        eprintln!("SKIPPED: Node.js 20+ and npm are not installed; the MCP SDK test did not run");
        return;
    }
    let started = Instant::now();
    let bin = agentgate_bin();
    let sdk_installed = ["@modelcontextprotocol/sdk", "dpop", "jose"].iter().all(|p| js.join("node_modules").join(p).join("package.json").exists());
    if !sdk_installed {
        let out = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&js).output().unwrap();
        assert!(out.status.success(), "npm ci failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }

    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("workspace");
    std::fs::create_dir(&workspace).unwrap();
    let (mut server, mcp_port, control_port) = start_server(&js, &workspace, dir.path());

    let (dpop_port, bearer_port) = (free_port(), free_port());
    let mut dpop_gate = start_gate("agentgate (DPoP required)", &write_config(&dir.path().join("dpop"), dpop_port, mcp_port, "required"));
    let mut bearer_gate = start_gate("agentgate (Bearer only)", &write_config(&dir.path().join("bearer"), bearer_port, mcp_port, "off"));
    let gateway_port = free_port();
    let mut wasi_gateway = start_wasi_gateway(&write_config(&dir.path().join("gateway"), gateway_port, mcp_port, "required"), gateway_port, mcp_port);
    wait_healthy(&mut dpop_gate, dpop_port);
    wait_healthy(&mut bearer_gate, bearer_port);
    wait_metadata(&mut wasi_gateway, gateway_port);
    let ready = started.elapsed();

    let mut child = Command::new("node")
        .args(["--test", "--test-reporter=tap", "--test-timeout=60000", "mcp/client.mjs"])
        .current_dir(&js)
        .env("AGENTGATE_BIN", &bin)
        .env("MCP_DIRECT_URL", format!("http://127.0.0.1:{mcp_port}/mcp"))
        .env("MCP_DPOP_URL", format!("http://127.0.0.1:{dpop_port}/mcp"))
        .env("MCP_BEARER_URL", format!("http://127.0.0.1:{bearer_port}/mcp"))
        .env("MCP_GATEWAY_URL", format!("http://127.0.0.1:{gateway_port}/mcp"))
        .env("MCP_CONTROL_URL", format!("http://127.0.0.1:{control_port}"))
        .env("MCP_WORKSPACE", &workspace)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = child.wait().unwrap();
    let errors = errors.join().unwrap();
    server.assert_running();

    let (passed, failed) = (tap_count(&out, "pass"), tap_count(&out, "fail"));
    eprintln!(
        "MCP SDK through agentgate: node tests {passed:?} passed, {failed:?} failed ({:.1} s to start the SDK server, serve twice and the gateway, {:.1} s in all)",
        ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let diagnostics = || {
        format!(
            "{out}\n{errors}\n--- SDK server log:\n{}\n--- {}:\n{}\n--- {}:\n{}\n--- {}:\n{}",
            server.log_tail(),
            dpop_gate.name,
            dpop_gate.log_tail(),
            bearer_gate.name,
            bearer_gate.log_tail(),
            wasi_gateway.name,
            wasi_gateway.log_tail()
        )
    };
    assert!(status.success() && failed == Some(0), "the SDK client test failed ({status}):\n{}", diagnostics());
    assert_eq!(passed, Some(EXPECTED_PASSES), "node tests passed (some were skipped?):\n{}", diagnostics());
}
