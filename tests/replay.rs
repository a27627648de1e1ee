//! The decision log (`[decision_log]`) and `agentgate replay`: real traffic through `agentgate
//! serve` (the check API, AuthZEN and forward-auth) is logged without a credential, a policy
//! change is replayed against it, and the report — counts, each changed call with its old and new
//! determining policies, the lines that cannot be replayed, the exit status — is checked exactly.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use support::serve::*;

fn check_request(k: &Keys, t: &str, action: &str, owner: &str) -> Value {
    let uri = format!("https://mail.example.com/mailboxes/{owner}/messages");
    json!({
        "authorization": format!("DPoP {t}"),
        "dpop": proof(k, t, &uri, None),
        "http": {"method": "GET", "uri": uri},
        "action": action,
        "resource": {"type": "Mailbox", "id": owner},
        "entities": [{"uid": {"type": "Mailbox", "id": owner}, "attrs": {"owner": {"__entity": {"type": "User", "id": owner}}}, "parents": []}],
    })
}

/// `agentgate replay --log <log> --config <config> [extra]`: (exit status, stdout).
fn replay(log: &Path, config: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(support::agentgate_bin()).arg("replay").arg("--log").arg(log).arg("--config").arg(config).args(extra).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty() || out.status.code() == Some(2), "{stderr}");
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

/// A copy of the deployment's configuration in `dir/<name>/`, with its policy files edited.
fn new_config(d: &Deployment, name: &str, edit: impl Fn(&str, String) -> String) -> std::path::PathBuf {
    let root = d.path(name);
    std::fs::create_dir_all(root.join("policies")).unwrap();
    for entry in std::fs::read_dir(d.path("policies")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::write(root.join("policies").join(&file), edit(&file, std::fs::read_to_string(&path).unwrap())).unwrap();
    }
    for file in ["agentgate.toml", "revoked.json", "nonce.secret"] {
        std::fs::copy(d.path(file), root.join(file)).unwrap();
    }
    root.join("agentgate.toml")
}

#[test]
fn serve_logs_real_traffic_and_replay_reports_a_policy_change_exactly() {
    let d = Deployment::new("", "\n[server]\nexternal_origins = [\"https://mail.example.com\"]\n\n[decision_log]\npath = \"decisions.jsonl\"\n");
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);

    // Five calls reach the policies: three allowed, two denied. One does not (its token does not
    // verify) and is not logged: no policy change can change it.
    let body = body_json(post_json(&r, "/v1/check", &check_request(&k, &t, "mail:read", "alice")));
    assert_eq!(body["decision"], "allow", "{body}");
    let first_id = body["decision_id"].as_str().unwrap().to_owned();
    let body = body_json(post_json(&r, "/v1/check", &check_request(&k, &t, "mail:read", "bob")));
    assert_eq!((body["decision"].as_str(), body["outcome"].as_str()), (Some("deny"), Some("policy_denied")), "{body}");
    let body = body_json(post_json(&r, "/v1/check", &check_request(&k, &t, "mail:send", "alice")));
    assert_eq!(body["decision"], "deny", "{body}");
    let body = body_json(post_json(&r, "/access/v1/evaluation", &evaluation(&k, &t, "alice")));
    assert_eq!(body["decision"], true, "{body}");
    let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None));
    assert_eq!(resp.status(), 200);
    let resp = nginx_call(&r, "/mailboxes/alice/messages", "not-a-token", "not-a-proof");
    assert_eq!(resp.status(), 401);
    let metrics_text = metrics(&r);
    // Shutting down writes what is still queued.
    r.shutdown();

    let log_path = d.path("decisions.jsonl");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let apis: Vec<&str> = lines.iter().map(|l| l["api"].as_str().unwrap()).collect();
    assert_eq!(apis, ["check", "check", "check", "authzen", "forward_auth"]);
    assert_eq!(lines[0]["decision_id"], first_id.as_str());
    assert_eq!(lines[0]["decision"], json!({"allowed": true, "outcome": "allowed", "policies": ["mail-read-own"]}));
    assert_eq!(lines[1]["decision"], json!({"allowed": false, "outcome": "policy_denied", "policies": []}));
    let call = &lines[0]["call"];
    assert_eq!((call["version"].as_u64(), call["principal_kind"].as_str(), call["principal_id"].as_str()), (Some(1), Some("agent"), Some(ASSISTANT)));
    assert_eq!(call["facts"]["user"], "alice");
    assert_eq!(call["facts"]["key"], k.agent.thumbprint().as_str());
    let loaded = agentgate::config::load(&d.path("agentgate.toml")).unwrap();
    let digest = agentgate::receipts::digest::ConfigDigests::of(&loaded.engine).unwrap().digest;
    assert!(lines.iter().all(|l| l["config_digest"] == digest.as_str()));
    assert!(!log.contains(&t), "the log never holds the access token");
    assert!(!log.contains("DPoP "), "nor an authorization header");
    assert_eq!(metric(&metrics_text, "agentgate_decision_log_lines_total{result=\"dropped\"}"), 0);

    // The same policies decide every call the same way.
    let (code, text) = replay(&log_path, &d.path("agentgate.toml"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("replayed 5 decisions\n  allow -> allow  3\n  allow -> deny   0\n  deny  -> allow  0\n  deny  -> deny   2\n"), "{text}");

    // The change: any mailbox may be read with `mail.read`, and alice's mailbox is frozen.
    let changed = new_config(&d, "next", |file, text| match file {
        "mail.cedar" => {
            text.replace(
                "when { context.scopes.contains(\"mail.read\") && resource.owner == context.user };",
                "when { context.scopes.contains(\"mail.read\") };",
            ) + "\n@id(\"freeze-alice\")\nforbid (principal, action == Action::\"mail:read\", resource == Mailbox::\"alice\");\n"
        }
        _ => text,
    });
    let (code, text) = replay(&log_path, &changed, &[]);
    assert_eq!(code, 1, "a call denied before is allowed now: {text}");
    let shown = log_path.display();
    let call = |line: u64, verdicts: &str, what: &str, old: &str, new: &str| {
        format!("  {shown}:{line}  {verdicts}  Agent::\"{ASSISTANT}\" for alice: mail:read on Mailbox::\"{what}\"\n      old: {old}\n      new: {new}\n")
    };
    let expected = format!(
        "replayed 5 decisions\n  allow -> allow  0\n  allow -> deny   3\n  deny  -> allow  1\n  deny  -> deny   1\n  same decision, other determining policies: 0\n  could not be replayed: 0\n\nchanged:\n{}{}{}{}",
        call(1, "allow -> deny", "alice", "allowed by [mail-read-own]", "policy_denied by [freeze-alice]"),
        call(2, "deny -> allow", "bob", "policy_denied by []", "allowed by [mail-read-own]"),
        call(4, "allow -> deny", "alice", "allowed by [mail-read-own]", "policy_denied by [freeze-alice]"),
        call(5, "allow -> deny", "alice", "allowed by [mail-read-own]", "policy_denied by [freeze-alice]"),
    );
    assert_eq!(text, expected);

    let (code, json_text) = replay(&log_path, &changed, &["--format", "json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(report["transitions"], json!({"allow_to_allow": 0, "allow_to_deny": 3, "deny_to_allow": 1, "deny_to_deny": 1}));
    assert_eq!(report["exit"], 1);
    assert_eq!(report["changed"][1]["decision_id"], lines[1]["decision_id"]);
    assert_eq!(report["changed"][1]["new"]["policies"], json!(["mail-read-own"]));
    assert_eq!(report["changed"][0]["old"]["policies"], json!(["mail-read-own"]));

    // A long log (10,001 lines: the five, 2,000 times, and a damaged line among them) gives the
    // same report, in line order, on one thread and on three.
    let long_path = d.path("long.jsonl");
    let mut long = log.repeat(1000);
    long.push_str("{damaged\n");
    long.push_str(&log.repeat(1000));
    std::fs::write(&long_path, long).unwrap();
    let (code_1, one) = replay(&long_path, &changed, &["--format", "json", "--jobs", "1"]);
    let (code_3, three) = replay(&long_path, &changed, &["--format", "json", "--jobs", "3"]);
    assert_eq!((code_1, code_3), (1, 1));
    assert_eq!(one, three, "the report does not depend on the number of threads");
    let report: Value = serde_json::from_str(&three).unwrap();
    assert_eq!(report["transitions"], json!({"allow_to_allow": 0, "allow_to_deny": 6000, "deny_to_allow": 2000, "deny_to_deny": 2000}));
    assert_eq!(report["unreplayable"][0]["line"], 5001);
    let lines_listed: Vec<u64> = report["changed"].as_array().unwrap().iter().map(|c| c["line"].as_u64().unwrap()).collect();
    assert_eq!(lines_listed.len(), 8000);
    assert!(lines_listed.windows(2).all(|w| w[0] < w[1]), "changed calls are listed in line order");
}

#[test]
fn lines_that_cannot_be_replayed_are_each_reported_and_set_the_exit_status() {
    let d = Deployment::new("", "\n[decision_log]\npath = \"decisions.jsonl\"\n");
    // `agentgate check` logs as `serve` does.
    let k = keys();
    let t = token(&k, ASSISTANT);
    let requests: Vec<std::path::PathBuf> = [("read", "mail:read"), ("send", "mail:send")]
        .iter()
        .map(|(name, action)| {
            let path = d.path(&format!("{name}.json"));
            std::fs::write(&path, check_request(&k, &t, action, "alice").to_string()).unwrap();
            path
        })
        .collect();
    let out = Command::new(support::agentgate_bin()).arg("check").arg("--config").arg(d.path("agentgate.toml")).args(&requests).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "the send is denied: {}", String::from_utf8_lossy(&out.stderr));
    let log_path = d.path("decisions.jsonl");
    let mut log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.lines().all(|l| l.contains("\"api\":\"cli\"")), "{log}");

    // Damage: a line that is not JSON, and a call recorded in a form this version does not read.
    let mut future: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    future["call"]["version"] = json!(2);
    log.push_str("{not json\n");
    log.push_str(&format!("{future}\n"));
    std::fs::write(&log_path, &log).unwrap();

    // A schema that no longer declares `mail:send` (and policies without it).
    let narrowed = new_config(&d, "narrowed", |file, text| match file {
        "schema.cedarschema" => {
            text.replace("action \"mail:send\" appliesTo {\n  principal: [Agent, User],\n  resource: Mailbox,\n  context: AgentgateContext,\n};\n", "")
        }
        "mail.cedar" => text.split("// Sending is a separate grant").next().unwrap().to_owned(),
        "delegation.cedar" => text.split("// Only the agent the user chose may send").next().unwrap().to_owned(),
        _ => text,
    });
    let (code, text) = replay(&log_path, &narrowed, &[]);
    assert_eq!(code, 2, "{text}");
    let shown = log_path.display();
    assert!(text.starts_with("replayed 1 decisions\n  allow -> allow  1\n"), "{text}");
    assert!(text.contains("  could not be replayed: 3\n"), "{text}");
    let listed: Vec<&str> = text.split("could not be replayed:\n").nth(1).unwrap().lines().collect();
    assert_eq!(listed.len(), 3, "{text}");
    assert_eq!(listed[0], format!("  {shown}:2: the new schema rejects the recorded call: action `mail:send` is not declared in the schema"));
    assert!(listed[1].starts_with(&format!("  {shown}:3: not a decision-log line: key must be a string at line 1 column 2")), "{}", listed[1]);
    assert_eq!(listed[2], format!("  {shown}:4: the call was recorded in form 2; this agentgate reads form 1"));

    // Unreplayable lines do not hide a deny turned allow: that still exits 1.
    let widened = new_config(&d, "widened", |file, text| match file {
        "mail.cedar" => text + "\n@id(\"anyone-sends\")\npermit (principal, action == Action::\"mail:send\", resource);\n",
        _ => text,
    });
    let (code, text) = replay(&log_path, &widened, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("  deny  -> allow  1\n") && text.contains("  could not be replayed: 2\n"), "{text}");

    // A log that does not exist is a usage error.
    let (code, _) = replay(&d.path("missing.jsonl"), &widened, &[]);
    assert_eq!(code, 2);
}
