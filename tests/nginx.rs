//! A real nginx (Debian's package) with `auth_request` in front of a small upstream, with
//! `agentgate serve` as the authorizer, all on loopback ports: an allowed agent call reaches the
//! upstream with the agent/user headers; a denied one gets 403 and an invalid proof 401 with
//! `WWW-Authenticate`, and the upstream never sees either. `.ci/run` installs nginx.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::serve::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_binary() -> Option<String> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"].iter().find(|p| Path::new(p).exists()).map(|p| p.to_string())
}

fn start_nginx(dir: &Path, port: u16, agentgate: SocketAddr, upstream: SocketAddr) -> Nginx {
    let binary = nginx_binary().unwrap();
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let as_root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
    let d = dir.display();
    // The documented agentgate pattern (docs/proxies.md, "nginx"): auth_request to /forward-auth with the
    // original method and URI; TLS terminates before nginx, so the scheme is https.
    let conf = format!(
        r#"{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location = /_agentgate {{
      internal;
      proxy_pass http://{agentgate}/forward-auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host $host;
    }}
    location / {{
      auth_request /_agentgate;
      auth_request_set $agentgate_agent $upstream_http_x_agentgate_agent;
      auth_request_set $agentgate_user $upstream_http_x_agentgate_user;
      auth_request_set $agentgate_chain $upstream_http_x_agentgate_chain;
      auth_request_set $agentgate_decision $upstream_http_x_agentgate_decision_id;
      auth_request_set $agentgate_principal $upstream_http_x_agentgate_principal;
      auth_request_set $dpop_nonce $upstream_http_dpop_nonce;
      add_header DPoP-Nonce $dpop_nonce always;
      auth_request_set $agentgate_receipt $upstream_http_agentgate_receipt;
      add_header Agentgate-Receipt $agentgate_receipt always;
      proxy_set_header Agentgate-Receipt $agentgate_receipt;
      proxy_set_header X-Agentgate-Agent $agentgate_agent;
      proxy_set_header X-Agentgate-User $agentgate_user;
      proxy_set_header X-Agentgate-Chain $agentgate_chain;
      proxy_set_header X-Agentgate-Decision-Id $agentgate_decision;
      proxy_set_header X-Agentgate-Principal $agentgate_principal;
      proxy_set_header Authorization "";
      proxy_set_header DPoP "";
      proxy_set_header Workload-Identity-Token "";
      proxy_pass http://{upstream};
    }}
  }}
}}
"#,
        user = if as_root { "user root;" } else { "" },
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(binary)
        .args(["-e", "stderr", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "nginx did not start; see {}/error.log", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx(child)
}

#[test]
fn nginx_auth_request_in_front_of_an_upstream() {
    if nginx_binary().is_none() {
        assert!(std::env::var_os("CI").is_none(), "nginx is required in CI (`.ci/run` installs it)");
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
        return;
    }
    let deployment = Deployment::standard();
    let gate = start(&deployment);
    let (upstream_addr, seen) = recording_upstream();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = start_nginx(dir.path(), port, gate.addr, upstream_addr);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let call = |path: &str, proof: &str| {
        agent()
            .get(&format!("http://127.0.0.1:{port}{path}"))
            .header("Host", "mail.example.com")
            .header("Authorization", &format!("DPoP {t}"))
            .header("DPoP", proof)
            .call()
            .unwrap()
    };

    // Allowed: the upstream answers and sees who is calling for whom.
    let mut resp = call("/mailboxes/alice/messages", &proof(&k, &t, URI, None));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body_mut().read_to_string().unwrap(), "hello from upstream");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let h = &seen[0].headers;
        assert_eq!(h.get("x-agentgate-agent").map(String::as_str), Some(ASSISTANT));
        assert_eq!(h.get("x-agentgate-user").map(String::as_str), Some("alice"));
        assert_eq!(h.get("x-agentgate-chain").map(String::as_str), Some(ASSISTANT));
        assert!(h.get("x-agentgate-decision-id").is_some_and(|v| !v.is_empty()));
        assert!(h.get("authorization").is_none_or(String::is_empty), "credentials are not passed through");
    }

    // Denied by policy: 403, the upstream is not called.
    let resp = call("/mailboxes/bob/messages", &proof(&k, &t, "https://mail.example.com/mailboxes/bob/messages", None));
    assert_eq!(resp.status(), 403);

    // An invalid proof (for another URI): 401 with the DPoP challenge from agentgate.
    let resp = call("/mailboxes/alice/messages", &proof(&k, &t, "https://mail.example.com/elsewhere", None));
    assert_eq!(resp.status(), 401);
    let challenge = header(&resp, "www-authenticate");
    assert!(challenge.starts_with(r#"DPoP error="invalid_dpop_proof""#), "{challenge}");

    // A replayed proof: 401 as well.
    let p = proof(&k, &t, URI, None);
    assert_eq!(call("/mailboxes/alice/messages", &p).status(), 200);
    assert_eq!(call("/mailboxes/alice/messages", &p).status(), 401);

    // A path with no route maps to 403, never to a 500 from nginx.
    let resp = call("/admin", &proof(&k, &t, "https://mail.example.com/admin", None));
    assert_eq!(resp.status(), 403);

    assert_eq!(seen.lock().unwrap().len(), 2, "the upstream saw only the two allowed calls");
}

/// Decision receipts through nginx: the upstream of an allowed call receives the allow's receipt,
/// and the client of a call denied by policy receives the deny's (`add_header … always`).
#[test]
fn nginx_hands_receipts_to_the_upstream_and_to_denied_clients() {
    if nginx_binary().is_none() {
        assert!(std::env::var_os("CI").is_none(), "nginx is required in CI (`.ci/run` installs it)");
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
        return;
    }
    let deployment = Deployment::new("", "\n[server]\nexternal_origins = [\"https://mail.example.com\"]\n\n[receipts]\nkey = \"receipt.key.jwk\"\n");
    let key = agentgate::mint::KeyPair::generate("nginx-receipts").unwrap();
    std::fs::write(deployment.path("receipt.key.jwk"), key.private_jwk().to_string()).unwrap();
    let jwks = agentgate::mint::jwks(&[&key]).to_string();
    let gate = start(&deployment);
    let (upstream_addr, seen) = recording_upstream();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = start_nginx(dir.path(), port, gate.addr, upstream_addr);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let call = |owner: &str| {
        let uri = format!("https://mail.example.com/mailboxes/{owner}/messages");
        agent()
            .get(&format!("http://127.0.0.1:{port}/mailboxes/{owner}/messages"))
            .header("Host", "mail.example.com")
            .header("Authorization", &format!("DPoP {t}"))
            .header("DPoP", &proof(&k, &t, &uri, None))
            .call()
            .unwrap()
    };
    assert_eq!(call("alice").status(), 200);
    let forwarded = seen.lock().unwrap()[0].headers.get("agentgate-receipt").cloned().expect("the upstream receives the receipt");
    let receipt = agentgate::receipts::verify::verify(&forwarded, &jwks).unwrap();
    assert_eq!(receipt.claims["decision"], "allow");
    assert_eq!(receipt.claims["user"], "alice");
    assert_eq!(Some(&receipt.claims["jti"]), seen.lock().unwrap()[0].headers.get("x-agentgate-decision-id").map(|v| serde_json::json!(v)).as_ref());

    let resp = call("bob");
    assert_eq!(resp.status(), 403);
    let receipt = agentgate::receipts::verify::verify(&header(&resp, "agentgate-receipt"), &jwks).unwrap();
    assert_eq!((receipt.claims["decision"].as_str(), receipt.claims["outcome"].as_str()), (Some("deny"), Some("policy_denied")));
    assert_eq!(seen.lock().unwrap().len(), 1, "the denied call never reached the upstream");
}

/// Issue 10: a fleet node whose store is down answers `unavailable` in a way nginx keeps closed:
/// 403 (anything but 2xx/401/403 would be nginx's own 500, and never an allow), and the
/// upstream is never called; when the store is back, calls go through again without a restart.
#[test]
fn nginx_keeps_a_store_outage_closed_and_recovers_with_the_store() {
    if nginx_binary().is_none() {
        assert!(std::env::var_os("CI").is_none(), "nginx is required in CI (`.ci/run` installs it)");
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
        return;
    }
    let Some(mut redis) = support::redis::start_or_skip("nginx_keeps_a_store_outage_closed") else { return };
    let deployment = Deployment::fleet_node(&redis.url(), "agentgate-test:nginx:", "");
    let gate = start(&deployment);
    let (upstream_addr, seen) = recording_upstream();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = start_nginx(dir.path(), port, gate.addr, upstream_addr);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let call = || {
        agent()
            .get(&format!("http://127.0.0.1:{port}/mailboxes/alice/messages"))
            .header("Host", "mail.example.com")
            .header("Authorization", &format!("DPoP {t}"))
            .header("DPoP", &proof(&k, &t, URI, None))
            .call()
            .unwrap()
            .status()
    };
    assert_eq!(call(), 200);
    redis.kill();
    for _ in 0..3 {
        assert_eq!(call(), 403, "the store is down: denied, not a 5xx and never an allow");
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "the upstream saw only the call made while the store was up");
    redis.restart_empty();
    let started = Instant::now();
    while call() != 200 {
        assert!(started.elapsed() < Duration::from_secs(5), "the node did not recover after the store came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}
