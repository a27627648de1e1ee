//! `agentgate analyze diff` with the real solver (Debian's cvc5; `.ci/run` installs it): policy
//! pairs with known answers — the same set, a widened scope, a removed `forbid`, a narrowed
//! scope — each counterexample decided again here by Cedar's authorizer to show the claimed
//! difference; a solver that never answers is "unknown" (exit 2), never "safe"; no solver at all
//! says what to install.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn solver_present() -> bool {
    let present = Command::new("cvc5").arg("--version").output().is_ok_and(|o| o.status.success());
    if !present {
        assert!(std::env::var_os("CI").is_none(), "cvc5 is required in CI (`.ci/run` installs it)");
        eprintln!("SKIPPED: cvc5 is not installed (apt-get install cvc5)");
    }
    present
}

/// A copy of `policies/mail`'s policy files in `dir/name`, each edited by `edit`.
fn mail_set(dir: &Path, name: &str, edit: impl Fn(&str, String) -> String) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    for file in ["schema.cedarschema", "mail.cedar", "delegation.cedar"] {
        let text = std::fs::read_to_string(support::root().join("policies/mail").join(file)).unwrap();
        std::fs::write(out.join(file), edit(file, text)).unwrap();
    }
    out
}

/// `agentgate analyze diff OLD NEW --format json [extra]`: (exit status, report).
fn diff(old: &Path, new: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let out = Command::new(support::agentgate_bin())
        .args(["analyze", "diff"])
        .arg(old)
        .arg(new)
        .args(["--format", "json"])
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap(), report, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn environment<'a>(report: &'a Value, principal: &str, action: &str) -> &'a Value {
    report["environments"].as_array().unwrap().iter().find(|e| e["principal"] == principal && e["action"] == format!("Action::\"{action}\"")).unwrap()
}

/// Decides a counterexample again with Cedar's authorizer over the policy files of `dir`.
fn decide(dir: &Path, counterexample: &Value) -> bool {
    let mut text = String::new();
    for file in ["mail.cedar", "delegation.cedar"] {
        text.push_str(&std::fs::read_to_string(dir.join(file)).unwrap());
    }
    let parsed: cedar_policy::PolicySet = text.parse().unwrap();
    // The engine names policies by `@id`; so does the report.
    let mut set = cedar_policy::PolicySet::new();
    for p in parsed.policies() {
        let id = p.annotation("id").unwrap().to_owned();
        set.add(p.new_id(cedar_policy::PolicyId::new(id))).unwrap();
    }
    let schema: cedar_policy::Schema = std::fs::read_to_string(dir.join("schema.cedarschema")).unwrap().parse().unwrap();
    let request = &counterexample["request"];
    let uid = |v: &Value| v.as_str().unwrap().parse::<cedar_policy::EntityUid>().unwrap();
    let action = uid(&request["action"]);
    let context = cedar_policy::Context::from_json_value(request["context"].clone(), Some((&schema, &action))).unwrap();
    let request = cedar_policy::Request::new(uid(&request["principal"]), action, uid(&request["resource"]), context, Some(&schema)).unwrap();
    let entities = cedar_policy::Entities::from_json_value(counterexample["entities"].clone(), Some(&schema)).unwrap();
    cedar_policy::Authorizer::new().is_authorized(&request, &set, &entities).decision() == cedar_policy::Decision::Allow
}

#[test]
fn known_changes_are_proved_with_counterexamples_that_cedar_confirms() {
    if !solver_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let original = mail_set(dir.path(), "original", |_, t| t);

    // The same set: every question proved "no", in every environment.
    let (code, report, stderr) = diff(&original, &original, &[], &[]);
    assert_eq!(code, 0, "{report} {stderr}");
    let environments = report["environments"].as_array().unwrap();
    assert_eq!(environments.len(), 4, "Agent and User × mail:read and mail:send on Mailbox: {report}");
    assert!(environments.iter().all(|e| e["grants"]["answer"] == "none" && e["revokes"]["answer"] == "none"), "{report}");
    assert!(report["solver"].as_str().unwrap().contains("cvc5"), "{report}");

    // A widened scope: `mail-read-own` without the owner check grants reading others' mail.
    let widened = mail_set(dir.path(), "widened", |file, t| match file {
        "mail.cedar" => {
            t.replace("when { context.scopes.contains(\"mail.read\") && resource.owner == context.user };", "when { context.scopes.contains(\"mail.read\") };")
        }
        _ => t,
    });
    let (code, report, _) = diff(&original, &widened, &[], &[]);
    assert_eq!(code, 1, "{report}");
    for principal in ["Agent", "User"] {
        let read = environment(&report, principal, "mail:read");
        assert_eq!(read["grants"]["answer"], "found", "{read}");
        assert_eq!(read["revokes"]["answer"], "none", "{read}");
        let example = &read["grants"];
        assert_eq!(example["new"], serde_json::json!({"allowed": true, "policies": ["mail-read-own"]}), "{example}");
        assert_eq!(example["old"]["allowed"], false);
        // Decided again here, independently of the report: the difference is real.
        assert!(!decide(&original, example) && decide(&widened, example), "{example}");
        let send = environment(&report, principal, "mail:send");
        assert_eq!((send["grants"]["answer"].as_str(), send["revokes"]["answer"].as_str()), (Some("none"), Some("none")));
    }

    // The reverse direction is a narrowing: nothing new is granted (exit 0), and the report shows
    // what is taken away.
    let (code, report, _) = diff(&widened, &original, &[], &[]);
    assert_eq!(code, 0, "{report}");
    let read = environment(&report, "Agent", "mail:read");
    assert_eq!((read["grants"]["answer"].as_str(), read["revokes"]["answer"].as_str()), (Some("none"), Some("found")));
    assert!(decide(&widened, &read["revokes"]) && !decide(&original, &read["revokes"]));

    // A removed `forbid`: without `mail-send-no-sub-agents`, a sub-agent may send.
    let unforbidden = mail_set(dir.path(), "unforbidden", |file, t| match file {
        "delegation.cedar" => t.split("// Only the agent the user chose may send").next().unwrap().to_owned(),
        _ => t,
    });
    let (code, report, _) = diff(&original, &unforbidden, &[], &[]);
    assert_eq!(code, 1, "{report}");
    let send = environment(&report, "Agent", "mail:send");
    assert_eq!(send["grants"]["answer"], "found", "{send}");
    let example = &send["grants"];
    assert!(example["request"]["context"]["delegation"]["depth"].as_i64().unwrap() > 1, "the counterexample is a sub-agent: {example}");
    assert_eq!(example["old"]["policies"], serde_json::json!(["mail-send-no-sub-agents"]), "{example}");
    assert!(!decide(&original, example) && decide(&unforbidden, example));

    // The text form says the same.
    let out = Command::new(support::agentgate_bin()).args(["analyze", "diff"]).arg(&original).arg(&unforbidden).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("Agent, Action::\"mail:send\", Mailbox:\n  NEW grants what OLD denied: YES, for example\n"), "{text}");
    assert!(text.contains("4 environments (This is cvc5 version 1.0.3"), "{text}");
    assert!(text.contains("NEW grants more in 2, less in 0; unknown in 0"), "{text}");
}

#[test]
fn a_solver_that_never_answers_is_unknown_and_no_solver_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let original = mail_set(dir.path(), "original", |_, t| t);

    // A "solver" that prints a version and then never answers a query.
    let stuck = dir.path().join("stuck-solver");
    std::fs::write(&stuck, "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'This is cvc5 version 0-stuck'; exit 0; fi\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&stuck, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // (Two sets that differ: identical sets are proved equal without asking the solver.)
    let widened = mail_set(dir.path(), "widened", |file, t| match file {
        "mail.cedar" => t.replace("&& resource.owner == context.user", ""),
        _ => t,
    });
    let started = std::time::Instant::now();
    let (code, report, stderr) = diff(&original, &widened, &["--timeout-ms", "200"], &[("CVC5", stuck.to_str().unwrap())]);
    assert_eq!(code, 2, "unknown is never safe: {report} {stderr}");
    let environments = report["environments"].as_array().unwrap();
    assert_eq!(environments.len(), 4);
    assert!(environments.iter().all(|e| e["grants"]["answer"] == "unknown" && e["grants"]["reason"] == "the solver did not answer within 200 ms"), "{report}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "each query is abandoned at its limit");

    // No solver at all.
    let (code, _, stderr) = diff(&original, &original, &[], &[("CVC5", "/nonexistent/cvc5")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`agentgate analyze` needs the SMT solver cvc5: install it (Debian and Ubuntu: `apt-get install cvc5`"), "{stderr}");
}

#[test]
fn lint_proves_what_can_err_never_applies_never_allows_and_what_no_one_can_do() {
    if !solver_present() {
        return;
    }
    // Every shipped set is clean: nothing can err, every policy applies and every permit can
    // allow, every action can be performed by someone; nothing unknown.
    for set in ["mail", "home", "mcp", "payments"] {
        let out = Command::new(support::agentgate_bin())
            .args(["analyze", "lint", "--format", "json"])
            .arg(support::root().join("policies").join(set))
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{set}: {report}");
        assert_eq!(report["findings"], serde_json::json!([]), "{set}: {report}");
    }

    // Known answers: a condition that overflows, one that cannot hold, and a `forbid` of every
    // send, which leaves `mail-send-own` nothing to allow and no one able to send.
    let dir = tempfile::tempdir().unwrap();
    let flawed = mail_set(dir.path(), "flawed", |file, t| match file {
        "mail.cedar" => {
            t + "\n@id(\"overflow\")\npermit (principal, action == Action::\"mail:read\", resource)\nwhen { context.delegation.depth * 4611686018427387904 > 1 };\n"
                + "\n@id(\"contradiction\")\npermit (principal, action == Action::\"mail:read\", resource)\nwhen { context.delegation.depth < 0 && context.delegation.depth > 0 };\n"
                + "\n@id(\"no-sending\")\nforbid (principal, action == Action::\"mail:send\", resource);\n"
        }
        _ => t,
    });
    let out = Command::new(support::agentgate_bin()).args(["analyze", "lint", "--format", "json"]).arg(&flawed).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}");
    let findings = report["findings"].as_array().unwrap();
    let kinds: Vec<(String, String)> =
        findings.iter().map(|f| (f["kind"].as_str().unwrap().to_owned(), f["policy"].as_str().or(f["action"].as_str()).unwrap().to_owned())).collect();
    assert_eq!(
        kinds,
        [
            ("can_err", "overflow"),
            ("can_err", "overflow"),
            ("never_allows", "mail-send-own"),
            ("never_applies", "contradiction"),
            ("no_one_can_perform", "Action::\"mail:send\""),
        ]
        .map(|(k, p)| (k.to_owned(), p.to_owned())),
        "{report}"
    );
    // The overflow is shown by Cedar itself on the solver's example, for agents and users.
    let environments: Vec<&str> = findings.iter().filter(|f| f["kind"] == "can_err").map(|f| f["environment"].as_str().unwrap()).collect();
    assert_eq!(environments, ["Agent, Action::\"mail:read\", Mailbox", "User, Action::\"mail:read\", Mailbox"]);
    for f in findings.iter().filter(|f| f["kind"] == "can_err") {
        let errors = f["example"]["errors"].as_array().unwrap();
        assert!(errors.iter().any(|e| e.as_str().unwrap().contains("overflow")), "{f}");
    }
}

/// Runs `agentgate analyze <what> DIR --format json`: (exit status, report).
fn analyze_dir(what: &str, dir: &Path) -> (i32, Value) {
    let out = Command::new(support::agentgate_bin()).args(["analyze", what, "--format", "json"]).arg(dir).output().unwrap();
    (out.status.code().unwrap(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

#[test]
fn no_agent_does_more_than_its_user_in_any_shipped_set_and_a_broader_agent_rule_is_caught() {
    if !solver_present() {
        return;
    }
    // Every shipped set is proved, in every agent environment, with no exemption.
    for (set, environments) in [("mail", 2), ("home", 4), ("mcp", 10), ("payments", 2)] {
        let (code, report) = analyze_dir("delegation", &support::root().join("policies").join(set));
        assert_eq!(code, 0, "{set}: {report}");
        let envs = report["environments"].as_array().unwrap();
        assert_eq!(envs.len(), environments, "{set}: {report}");
        assert!(envs.iter().all(|e| e["answer"] == "never"), "{set}: {report}");
        assert_eq!(report["exemptions"], serde_json::json!([]), "{set}");
    }

    // An agent rule broader than the user's: agents read any mailbox, users only their own.
    let dir = tempfile::tempdir().unwrap();
    let rule = "\n@id(\"agents-read-any\")\npermit (principal is Agent, action == Action::\"mail:read\", resource)\nwhen { context.scopes.contains(\"mail.read\") };\n";
    let broader = mail_set(dir.path(), "broader", |file, t| if file == "mail.cedar" { t + rule } else { t });
    let (code, report) = analyze_dir("delegation", &broader);
    assert_eq!(code, 1, "{report}");
    let read = report["environments"].as_array().unwrap().iter().find(|e| e["action"] == "Action::\"mail:read\"").unwrap();
    assert_eq!(read["answer"], "amplifies", "{report}");
    assert_eq!(read["agent_allowed_by"], serde_json::json!(["agents-read-any"]));
    // Decided again here: the agent's request is allowed; the user's own, direct, is denied.
    let example = &read["example"];
    assert!(decide(&broader, example), "{example}");
    let mut direct = example.clone();
    direct["request"]["principal"] = Value::String(format!("User::\"{}\"", example["request"]["context"]["user"]["__entity"]["id"].as_str().unwrap()));
    direct["request"]["context"]["delegation"] = serde_json::json!({"depth": 0, "chain": [], "actors": []});
    direct["request"]["context"]["agent"] = serde_json::json!({"verified": false, "trust_domain": "", "id": ""});
    assert!(!decide(&broader, &direct), "{direct}");
    let send = report["environments"].as_array().unwrap().iter().find(|e| e["action"] == "Action::\"mail:send\"").unwrap();
    assert_eq!(send["answer"], "never");

    // The same rule with a named exemption is listed, not reported.
    let exempt = mail_set(dir.path(), "exempt", |file, t| {
        if file == "mail.cedar" {
            t + &rule.replace("@id(\"agents-read-any\")", "@id(\"agents-read-any\")\n@delegation_exemption(\"triage of the shared inbox\")")
        } else {
            t
        }
    });
    let (code, report) = analyze_dir("delegation", &exempt);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["exemptions"], serde_json::json!([["agents-read-any", "triage of the shared inbox"]]));

    // A use of the chain the rewrite does not cover is unknown, never "never".
    let uncovered = mail_set(dir.path(), "uncovered", |file, t| {
        if file == "delegation.cedar" {
            t + "\n@id(\"chain-equals\")\nforbid (principal, action, resource)\nwhen { context.delegation.chain == [\"x\"] };\n"
        } else {
            t
        }
    });
    let (code, report) = analyze_dir("delegation", &uncovered);
    assert_eq!(code, 2, "{report}");
    assert!(
        report["environments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["answer"] == "unknown"
                && e["reason"] == "`chain-equals`: a use of `context.delegation.chain` that the user-direct rewrite does not cover"),
        "{report}"
    );
}
