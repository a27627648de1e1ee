//! The JavaScript host (tests/js: the same component transpiled by jco, run by Node) decides every
//! shared vector exactly as the wasmtime host does: `npm ci`, `node prepare.mjs`, `node --test`
//! (vectors on both worlds, host and edge-worker tests), then every decision field by field.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::wire::DecisionJson;
use std::collections::BTreeMap;
use std::process::Command;
use support::{Host, agentgate_bin, read_vector, root, run_vector, vector_files};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn js_host_decides_every_vector_like_wasmtime() {
    let js = root().join("tests/js");
    if Command::new("node").arg("--version").output().is_err() || Command::new("npm").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "Node.js and npm are required in CI (`.ci/run` installs them)");
        eprintln!("SKIPPED: Node.js 20+ and npm are not installed; the JavaScript host's suite did not run");
        return;
    }
    let bin = agentgate_bin();
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build");
    let decisions = dir.path().join("decisions.json");

    if !js.join("node_modules/@bytecodealliance/jco/package.json").exists() {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&js));
    }
    run(Command::new("node").arg("prepare.mjs").current_dir(&js).env("AGENTGATE_BIN", &bin).env("AGENTGATE_JS_BUILD", &build));
    let summary = run(Command::new("node")
        .arg("--test")
        .current_dir(&js)
        .env("AGENTGATE_BIN", &bin)
        .env("AGENTGATE_JS_BUILD", &build)
        .env("AGENTGATE_JS_DECISIONS", &decisions));
    eprintln!("{}", summary.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));

    let js_decisions: BTreeMap<String, Vec<DecisionJson>> = serde_json::from_str(&std::fs::read_to_string(&decisions).unwrap()).unwrap();
    let mut failures = Vec::new();
    for file in vector_files() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let wasmtime: Vec<DecisionJson> = run_vector(&read_vector(&file), Host::Component).iter().map(DecisionJson::from).collect();
        match js_decisions.get(&name) {
            None => failures.push(format!("{name}: no decisions from the JS host")),
            Some(js) if *js != wasmtime => failures.push(format!("{name}:\n  wasmtime: {wasmtime:?}\n  js:       {js:?}")),
            Some(_) => {}
        }
    }
    assert!(failures.is_empty(), "{} vector(s) decided differently in JS:\n{}", failures.len(), failures.join("\n"));
}
