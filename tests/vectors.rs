//! The shared conformance vectors (`tests/vectors/*.json`) against every host: the native engine,
//! the portable component and the accelerated component under wasmtime. Each must give the
//! expected decision, and all hosts must give identical decisions.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use support::{HOSTS, Host, mismatch, read_vector, run_vector, vector_files};

#[test]
fn every_vector_passes_on_every_host_with_identical_decisions() {
    let files = vector_files();
    assert!(files.len() >= 100, "expected the full vector suite, found {}", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let vector = read_vector(file);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let results: Vec<(Host, Vec<agentgate::Decision>)> = HOSTS.iter().map(|h| (*h, run_vector(&vector, *h))).collect();
        for (host, decisions) in &results {
            for (i, (step, decision)) in vector.steps.iter().zip(decisions).enumerate() {
                if let Some(problem) = mismatch(&step.expect, decision) {
                    failures.push(format!("{name} step {i} on {host:?}: {problem}"));
                }
            }
        }
        let (_, native) = &results[0];
        for (host, decisions) in &results[1..] {
            if decisions != native {
                failures.push(format!("{name}: {host:?} decided differently from the native engine:\n  native: {native:?}\n  {host:?}: {decisions:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn vectors_cover_every_outcome() {
    let mut seen = std::collections::BTreeSet::new();
    for file in vector_files() {
        for step in read_vector(&file).steps {
            seen.insert(step.expect.outcome);
        }
    }
    for outcome in agentgate::Outcome::ALL {
        if outcome == agentgate::Outcome::EngineError {
            continue; // produced by hosts on traps; covered by tests/sandbox.rs
        }
        assert!(seen.contains(outcome.as_str()), "no vector expects `{outcome}`");
    }
}
