//! The `agentgate` command line: exit codes, JSON output, messages, and the README walkthrough
//! (mint → check for a bound call, a replay and a revocation).

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn agentgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentgate")).args(args).current_dir(repo()).output().unwrap()
}

fn agentgate_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The request of the first step of a shared vector.
fn vector_request(name: &str) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("tests/vectors").join(name)).unwrap()).unwrap();
    v["steps"][0]["request"].to_string()
}

#[test]
fn check_prints_an_allow_and_exits_0() {
    let out = agentgate_stdin(&["check", "--config", "policies/mail/agentgate.toml", "-"], &vector_request("001_mail_bound_agent_reads_own_inbox.json"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["outcome"], "allowed");
    assert_eq!(d["policies"], serde_json::json!(["mail-read-own"]));
    assert_eq!(d["principal"], r#"Agent::"spiffe://agents.example/mail-assistant""#);
    assert_eq!(d["user"], "alice");
}

#[test]
fn check_prints_a_deny_and_exits_1() {
    let out = agentgate_stdin(&["check", "--config", "policies/mail/agentgate.toml", "-"], &vector_request("002_mail_other_users_mailbox_denied.json"));
    assert_eq!(out.status.code(), Some(1));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((d["decision"].as_str(), d["outcome"].as_str()), (Some("deny"), Some("policy_denied")));
}

#[test]
fn check_with_native_engine_agrees() {
    let out =
        agentgate_stdin(&["check", "--native", "--config", "policies/mail/agentgate.toml", "-"], &vector_request("001_mail_bound_agent_reads_own_inbox.json"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn malformed_requests_exit_2_with_a_message() {
    let out = agentgate_stdin(&["check", "-"], "{not json");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("agentgate: -: malformed request:"), "{}", text(&out.stderr));

    let out = agentgate_stdin(&["check", "-"], r#"{"action":"mail:read","resource":{"type":"Mailbox","id":"a"},"dpopp":"x"}"#);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown field `dpopp`"), "{}", text(&out.stderr));

    let out = agentgate_stdin(&["check", "-"], r#"{"action":"mail:read","resource":{"type":"Mailbox","id":"a"},"context":[1]}"#);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`context` must be a JSON object"), "{}", text(&out.stderr));
}

#[test]
fn an_unusable_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentgate.toml");
    std::fs::write(&config, "audiences = []\npolicies = \"nowhere\"\n").unwrap();
    let out = agentgate_stdin(&["check", "--config", config.to_str().unwrap(), "-"], &vector_request("001_mail_bound_agent_reads_own_inbox.json"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nowhere"), "{}", text(&out.stderr));
}

fn broken_policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("policies/mail");
    for name in ["schema.cedarschema", "mail.cedar", "delegation.cedar", "revoked.json"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    let toml = std::fs::read_to_string(src.join("agentgate.toml")).unwrap().replace("../keys/", &format!("{}/", repo().join("policies/keys").display()));
    std::fs::write(dir.path().join("agentgate.toml"), toml).unwrap();
    std::fs::write(
        dir.path().join("zz-broken.cedar"),
        "// a typo in an attribute\npermit (principal, action == Action::\"mail:read\", resource)\nwhen { context.scope.contains(\"mail.read\") };\n",
    )
    .unwrap();
    dir
}

#[test]
fn validate_accepts_the_demo_configs() {
    for set in ["mail", "home", "mcp", "payments"] {
        let out = agentgate(&["validate", "--config", &format!("policies/{set}/agentgate.toml")]);
        assert_eq!(out.status.code(), Some(0), "{set}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(": ok ("), "{}", text(&out.stdout));
    }
}

#[test]
fn validate_points_at_file_line_and_column_of_a_broken_policy() {
    let dir = broken_policy_dir();
    let out = agentgate(&["validate", "--config", dir.path().join("agentgate.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let expected = format!("{}:3:8:", dir.path().join("zz-broken.cedar").display());
    assert!(err.contains(&expected), "expected `{expected}` in:\n{err}");
    assert!(err.contains("scope"), "{err}");
}

#[test]
fn demo_runs_every_scenario_and_shows_allows_and_denies() {
    let out = agentgate(&["demo"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("allowed: permitted by `mail-read-own`"), "{stdout}");
    assert!(stdout.contains("policy_denied: forbidden by `home-no-agent-locks`"), "{stdout}");
    assert!(stdout.contains("revoked: agent `spiffe://agents.example/compromised-assistant` is revoked"), "{stdout}");
    assert!(stdout.contains("every decision matched its scenario"), "{stdout}");
}

#[test]
fn mint_help_says_it_is_a_development_issuer() {
    let out = agentgate(&["mint", "--help"]);
    assert!(text(&out.stdout).contains("DEVELOPMENT AND TEST ISSUER"), "{}", text(&out.stdout));
}

fn run_ok(args: &[&str]) -> String {
    let out = agentgate(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

fn check_file(dir: &Path, name: &str, request: &Value) -> (i32, Value) {
    let path = dir.join(name);
    std::fs::write(&path, request.to_string()).unwrap();
    let out = agentgate(&["check", "--config", "policies/mail/agentgate.toml", path.to_str().unwrap()]);
    (out.status.code().unwrap(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// The README walkthrough: mint a bound token and a proof with the TEST-ONLY demo keys, check it,
/// replay the proof, and revoke the agent.
#[test]
fn readme_walkthrough_mint_check_replay_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let token = run_ok(&[
        "mint",
        "token",
        "--key",
        "policies/keys/issuer.TEST-ONLY.private.jwk.json",
        "--iss",
        "https://auth.demo.agentgate.dev",
        "--sub",
        "alice",
        "--aud",
        "https://mail.example.com",
        "--agent",
        "spiffe://agents.example/mail-assistant",
        "--scope",
        "mail.read",
        "--bind",
        "policies/keys/agent.TEST-ONLY.private.jwk.json",
    ]);
    let uri = "https://mail.example.com/mailboxes/alice/messages";
    let proof = run_ok(&["mint", "proof", "--key", "policies/keys/agent.TEST-ONLY.private.jwk.json", "--method", "GET", "--uri", uri, "--token", &token]);
    let request = serde_json::json!({
        "authorization": format!("DPoP {token}"),
        "dpop": proof,
        "http": {"method": "GET", "uri": uri},
        "action": "mail:read",
        "resource": {"type": "Mailbox", "id": "alice"},
        "entities": [{"uid": {"type": "Mailbox", "id": "alice"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "alice"}}}, "parents": []}],
    });
    let (code, d) = check_file(dir.path(), "call.json", &request);
    assert_eq!(code, 0, "{d}");
    assert_eq!(d["key_thumbprint"], run_ok(&["mint", "thumbprint", "--key", "policies/keys/agent.TEST-ONLY.private.jwk.json"]));

    // The same proof twice in one run: the second use is a replay.
    let path = dir.path().join("call.json");
    let out = agentgate(&["check", "--config", "policies/mail/agentgate.toml", path.to_str().unwrap(), path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("\"outcome\": \"allowed\"") && stdout.contains("\"outcome\": \"replayed\""), "{stdout}");

    // A stolen token used with another key is refused.
    let thief = dir.path().join("thief.jwk");
    agentgate(&["mint", "keygen", "--kid", "thief", "--private-out", thief.to_str().unwrap()]);
    let stolen_proof = run_ok(&["mint", "proof", "--key", thief.to_str().unwrap(), "--method", "GET", "--uri", uri, "--token", &token]);
    let mut stolen = request.clone();
    stolen["dpop"] = Value::String(stolen_proof);
    let (code, d) = check_file(dir.path(), "stolen.json", &stolen);
    assert_eq!((code, d["outcome"].as_str()), (1, Some("invalid_token")), "{d}");

    // The demo's revocation file lists `compromised-assistant`; a token for it is refused.
    let token = run_ok(&[
        "mint",
        "token",
        "--key",
        "policies/keys/issuer.TEST-ONLY.private.jwk.json",
        "--iss",
        "https://auth.demo.agentgate.dev",
        "--sub",
        "alice",
        "--aud",
        "https://mail.example.com",
        "--agent",
        "spiffe://agents.example/compromised-assistant",
        "--scope",
        "mail.read",
        "--bind",
        "policies/keys/agent.TEST-ONLY.private.jwk.json",
    ]);
    let proof = run_ok(&["mint", "proof", "--key", "policies/keys/agent.TEST-ONLY.private.jwk.json", "--method", "GET", "--uri", uri, "--token", &token]);
    let mut revoked = request.clone();
    revoked["authorization"] = Value::String(format!("DPoP {token}"));
    revoked["dpop"] = Value::String(proof);
    let (code, d) = check_file(dir.path(), "revoked.json", &revoked);
    assert_eq!((code, d["outcome"].as_str()), (1, Some("revoked")), "{d}");
}

#[test]
fn validate_reports_json_with_positions() {
    let dir = broken_policy_dir();
    let out = agentgate(&["validate", "--format", "json", "--config", dir.path().join("agentgate.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let p = &report["problems"][0];
    assert_eq!(p["file"], dir.path().join("zz-broken.cedar").display().to_string());
    assert_eq!((p["line"].as_u64(), p["column"].as_u64()), (Some(3), Some(8)));
    assert_eq!(p["help"], "did you mean `scopes`?");
    // The text form shows the source snippet.
    let out = agentgate(&["validate", "--config", dir.path().join("agentgate.toml").to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(err.contains("when { context.scope.contains(\"mail.read\") };"), "{err}");
    assert!(err.contains("help: did you mean `scopes`?"), "{err}");
}

#[test]
fn validate_checks_routes_against_the_schema() {
    let dir = broken_policy_dir();
    std::fs::remove_file(dir.path().join("zz-broken.cedar")).unwrap();
    let config = dir.path().join("agentgate.toml");
    let toml = std::fs::read_to_string(&config).unwrap().replace("action = \"mail:send\"", "action = \"mail:delete\"");
    std::fs::write(&config, toml).unwrap();
    let out = agentgate(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("route `POST /mailboxes/{owner}/messages`: action `mail:delete` is not declared in the schema"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn test_runs_every_policy_set_and_reports_coverage() {
    let out = agentgate(&["test", "policies"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("policies/mail  ("), "{stdout}");
    assert!(stdout.contains("  ok    alice's assistant reads alice's inbox"), "{stdout}");
    assert!(stdout.contains("coverage:"), "{stdout}");
}

#[test]
fn test_reports_a_failing_case_and_uncovered_policies() {
    let dir = broken_policy_dir();
    std::fs::remove_file(dir.path().join("zz-broken.cedar")).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("tests/cases.toml"),
        r#"
[[case]]
name = "reading bob's mailbox (wrongly expected to be allowed)"
user = "alice"
agents = ["spiffe://agents.example/mail-assistant"]
scopes = ["mail.read"]
action = "mail:read"
resource = { type = "Mailbox", id = "bob" }
entities = [{ uid = { type = "Mailbox", id = "bob" }, attrs = { owner = { __entity = { type = "User", id = "bob" } } }, parents = [] }]
expect = "allow"

[[case]]
name = "reading her own"
user = "alice"
agents = ["spiffe://agents.example/mail-assistant"]
scopes = ["mail.read"]
action = "mail:read"
resource = { type = "Mailbox", id = "alice" }
entities = [{ uid = { type = "Mailbox", id = "alice" }, attrs = { owner = { __entity = { type = "User", id = "alice" } } }, parents = [] }]
expect = "allow"
policies = ["mail-read-own"]
"#,
    )
    .unwrap();
    let out = agentgate(&["test", dir.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("  FAIL  reading bob's mailbox (wrongly expected to be allowed)"), "{stdout}");
    assert!(stdout.contains("expected allow, got deny (policy_denied: no policy permits"), "{stdout}");
    assert!(stdout.contains("  ok    reading her own"), "{stdout}");
    assert!(stdout.contains("never determining: `mail-max-depth-2`, `mail-send-no-sub-agents`, `mail-send-own`"), "{stdout}");
    assert!(stdout.ends_with("1 passed, 1 failed\n"), "{stdout}");
}

#[test]
fn explain_shows_checks_request_and_policy_source() {
    let out = agentgate_stdin(&["explain", "--config", "policies/mail/agentgate.toml", "-"], &vector_request("003_mail_sub_agent_send_forbidden.json"));
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    for expected in [
        "decision: deny (policy_denied)",
        "  access token     valid: issuer `https://auth.demo.agentgate.dev`",
        "  dpop proof       valid: key `",
        "  principal  Agent::\"spiffe://agents.example/summarizer\"",
        "\"depth\": 2",
        "  mail-send-no-sub-agents  (policies/mail/delegation.cedar:7)",
        "    forbid (\n      principal,\n      action == Action::\"mail:send\",\n      resource\n    )\n    when { context.delegation.depth > 1 };",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
    let request: Value = serde_json::from_str(&vector_request("003_mail_sub_agent_send_forbidden.json")).unwrap();
    let token = request["authorization"].as_str().unwrap().trim_start_matches("DPoP ");
    assert!(!stdout.contains(token) && !stdout.contains(request["dpop"].as_str().unwrap()), "credentials are never printed");
    let out = agentgate_stdin(
        &["explain", "--format", "json", "--config", "policies/mail/agentgate.toml", "-"],
        &vector_request("001_mail_bound_agent_reads_own_inbox.json"),
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"]["outcome"], "allowed");
    assert_eq!(json["determining_policies"][0]["id"], "mail-read-own");
    assert_eq!(json["cedar_request"]["action"], "Action::\"mail:read\"");
}

#[test]
fn a_bundled_component_decides_without_files() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("gate.wasm");
    run_ok(&["bundle", "--config", "policies/mail/agentgate.toml", "--out", bundle.to_str().unwrap()]);
    for (vector, code, outcome) in
        [("001_mail_bound_agent_reads_own_inbox.json", 0, "allowed"), ("002_mail_other_users_mailbox_denied.json", 1, "policy_denied")]
    {
        let out = agentgate_stdin(&["check", "--component", bundle.to_str().unwrap(), "-"], &vector_request(vector));
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        let d: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d["outcome"], outcome);
    }
    // A configuration the engine refuses cannot be bundled.
    let broken = broken_policy_dir();
    let out = agentgate(&["bundle", "--config", broken.path().join("agentgate.toml").to_str().unwrap(), "--out", dir.path().join("x.wasm").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("scope"), "{}", text(&out.stderr));
}

#[test]
fn component_writes_each_build_and_says_the_wide_arithmetic_build_is_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, flags: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["component", "--out", out.to_str().unwrap()];
        args.extend_from_slice(flags);
        run_ok(&args);
        std::fs::read(out).unwrap()
    };
    let portable = write("gate.wasm", &[]);
    let accelerated = write("gate-accelerated.wasm", &["--crypto", "host"]);
    // A component, not a core module: the preamble's layer field is 1.
    for bytes in [&portable, &accelerated] {
        assert_eq!(bytes[..4], *b"\0asm");
        assert_eq!(bytes[6..8], [1, 0]);
    }
    assert_ne!(portable, accelerated);

    let out = agentgate(&["component", "--out", dir.path().join("x.wasm").to_str().unwrap(), "--wide-arithmetic"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("the wide-arithmetic build is withdrawn"), "{}", text(&out.stderr));
    assert!(!dir.path().join("x.wasm").exists());
}

/// Issue 11 #18: `validate` shows a JWKS URL without its user-info or query.
#[test]
fn validate_never_shows_credentials_of_a_jwks_url() {
    let dir = broken_policy_dir();
    std::fs::remove_file(dir.path().join("zz-broken.cedar")).unwrap();
    let config = dir.path().join("agentgate.toml");
    let jwks = format!("{}/demo-issuer.TEST-ONLY.jwks.json", repo().join("policies/keys").display());
    let dead = "http://agentuser:s3cretpass@127.0.0.1:9/jwks?access_token=tok3nvalue";
    let toml = std::fs::read_to_string(&config).unwrap().replace(&format!("jwks = \"{jwks}\""), &format!("jwks = \"{dead}\""));
    assert!(toml.contains(dead));
    std::fs::write(&config, toml).unwrap();
    for format in ["text", "json"] {
        let out = agentgate(&["validate", "--format", format, "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{format}");
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(shown.contains("http://127.0.0.1:9/jwks?<redacted>"), "{format}: {shown}");
        for secret in ["agentuser", "s3cretpass", "tok3nvalue"] {
            assert!(!shown.contains(secret), "{format} shows `{secret}`: {shown}");
        }
    }
}

/// `revoke`, `unrevoke` and `revocations list` on the memory backend edit the deployment's
/// revocation file atomically; ambiguous or incomplete targets are refused with a precise message;
/// `validate` warns about a bare `kid` and names the keys it hits.
#[test]
fn revoke_unrevoke_and_list_edit_the_revocation_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = repo().join("policies/keys");
    std::fs::write(dir.path().join("revoked.json"), r#"{"keys": ["demo-issuer-2026-11"]}"#).unwrap();
    let config = dir.path().join("agentgate.toml");
    std::fs::write(
        &config,
        format!(
            "audiences = [\"https://mail.example.com\"]\npolicies = \"{}\"\nrevocations = \"revoked.json\"\n\n[[issuers]]\nissuer = \"https://auth.demo.agentgate.dev\"\njwks = \"{}\"\n",
            repo().join("policies/mail").display(),
            keys.join("demo-issuer.TEST-ONLY.jwks.json").display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let validate = agentgate(&["validate", "--config", c]);
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate.stderr));
    let warning = text(&validate.stderr);
    assert!(
        warning.contains("`keys` entry `demo-issuer-2026-11` is a bare `kid`")
            && warning.contains(r#"{"issuer": "https://auth.demo.agentgate.dev", "kid": "demo-issuer-2026-11"}"#),
        "{warning}"
    );

    let out = agentgate(&["revoke", "--config", c, "--agent", "spiffe://agents.example/bad", "--expires", "4102444800"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).trim(), "revoked agent `spiffe://agents.example/bad` until 4102444800 (memory backend)");
    let out = agentgate(&["revoke", "--config", c, "--kid", "k1", "--issuer", "https://auth.demo.agentgate.dev"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&agentgate(&["revocations", "list", "--config", c]).stdout).unwrap();
    assert_eq!(listed["agents"], serde_json::json!([{"id": "spiffe://agents.example/bad", "expires": 4102444800u64}]));
    assert_eq!(listed["keys"], serde_json::json!(["demo-issuer-2026-11", {"issuer": "https://auth.demo.agentgate.dev", "kid": "k1"}]));
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("revoked.json")).unwrap()).unwrap();
    assert_eq!(on_disk, listed, "the file holds what the list shows");

    let out = agentgate(&["unrevoke", "--config", c, "--agent", "spiffe://agents.example/bad"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = agentgate(&["unrevoke", "--config", c, "--agent", "spiffe://agents.example/bad"]);
    assert_eq!(out.status.code(), Some(1), "lifting what is not revoked exits 1");
    assert_eq!(text(&out.stderr).trim(), "agent `spiffe://agents.example/bad` was not revoked");

    // Refused targets.
    let refused = |args: &[&str], message: &str| {
        let mut all = vec!["revoke", "--config", c];
        all.extend_from_slice(args);
        let out = agentgate(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(message), "{args:?}: {}", text(&out.stderr));
    };
    refused(&["--kid", "k1"], "`--kid` needs `--issuer` or `--trust-domain`");
    refused(&["--agent", "a", "--issuer", "https://as"], "`--issuer` does not scope `--agent`");
    refused(&["--agent", "a", "--user", "u"], "cannot be used with");
    refused(&["--agent", "a", "--expires", "soon"], "neither unix seconds nor a duration");
    refused(&["--agent", "a", "--expires", "3600"], "`3600` is in 1970: for a duration write `3600s`");
}
