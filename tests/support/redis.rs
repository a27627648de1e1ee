//! A real Redis (Debian's `redis-server`, or `valkey-server`) on a free loopback port, started and
//! stopped by the test: no system service, no mock. `.ci/run` installs the package.

// PANIC SAFETY: test support.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running store.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// The TLS port, for a store started with `start_tls_or_skip`.
    pub tls_port: Option<u16>,
    binary: String,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

/// A store that also speaks TLS (`rediss://`) with a certificate for 127.0.0.1 signed by a CA
/// made for the test (`openssl`); `ca_file` is the CA to trust.
pub fn start_tls_or_skip(test: &str) -> Option<(Redis, std::path::PathBuf)> {
    let binary = match binary() {
        Some(b) => b,
        None => {
            assert!(std::env::var_os("CI").is_none(), "redis-server is required in CI (`.ci/run` installs it)");
            eprintln!("SKIPPED: {test}: redis-server (or valkey-server) is not installed");
            return None;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let d = d.as_path();
    let openssl =
        |args: &[&str]| assert!(Command::new("openssl").args(args).current_dir(d).stderr(Stdio::null()).status().unwrap().success(), "openssl {args:?}");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=agentgate test CA (TEST-ONLY)",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let tls_port = free_port();
    let extra: Vec<String> = [
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        d.join("server.crt").display().to_string(),
        "--tls-key-file".into(),
        d.join("server.key").display().to_string(),
        "--tls-ca-cert-file".into(),
        d.join("ca.crt").display().to_string(),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
    .to_vec();
    let ca = d.join("ca.crt");
    let mut redis = Redis { child: None, port: free_port(), tls_port: Some(tls_port), binary, extra, dir };
    redis.spawn();
    Some((redis, ca))
}

/// The server binary, if installed.
pub fn binary() -> Option<String> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/bin/valkey-server", "/usr/local/bin/valkey-server"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

/// The store for a test, or `None` (with a `SKIPPED` note) where it is not installed outside CI.
pub fn start_or_skip(test: &str) -> Option<Redis> {
    start_or_skip_with(test, &[])
}

/// Like `start_or_skip`, with extra server arguments (`--maxmemory-policy allkeys-lru`…).
pub fn start_or_skip_with(test: &str, extra: &[&str]) -> Option<Redis> {
    match binary() {
        Some(binary) => Some(Redis::start(&binary, extra)),
        None => {
            assert!(std::env::var_os("CI").is_none(), "redis-server is required in CI (`.ci/run` installs it)");
            eprintln!("SKIPPED: {test}: redis-server (or valkey-server) is not installed");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Redis {
    fn start(binary: &str, extra: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            tls_port: None,
            binary: binary.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--dir".into(), self.dir.path().display().to_string()]);
        args.extend(self.extra.iter().cloned());
        let child = Command::new(&self.binary).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `rediss://127.0.0.1:<tls port>/0`.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port.unwrap())
    }

    /// Runs one command through a raw RESP connection; returns the reply as text.
    pub fn cli(&self, args: &[&str]) -> String {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return String::new() };
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut command = format!("*{}\r\n", args.len());
        for a in args {
            command.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        if stream.write_all(command.as_bytes()).is_err() {
            return String::new();
        }
        let mut buf = [0u8; 65536];
        let n = stream.read(&mut buf).unwrap_or(0);
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        // Simple strings and integers: the text after the type byte.
        reply.trim_start_matches(['+', ':', '-']).trim_end().to_owned()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Freezes the server (SIGSTOP): connections open, nothing answers.
    pub fn pause(&self) {
        assert!(Command::new("kill").args(["-STOP", &self.pid().to_string()]).status().unwrap().success());
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        assert!(Command::new("kill").args(["-CONT", &self.pid().to_string()]).status().unwrap().success());
    }

    /// Kills the server (its data is gone: nothing is persisted).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
