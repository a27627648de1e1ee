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

/// Every vector call that reached the policies is recorded (the verified facts, no credential),
/// survives its JSON form, and decided again from the record alone — no token, proof or clock —
/// gives exactly the decision it got (`agentgate replay` relies on this). A call stopped before
/// the policies has no record.
#[test]
fn recorded_calls_decide_again_to_the_same_decision() {
    use agentgate_engine::recorded::RecordedCall;
    let mut recorded_count = 0;
    for file in vector_files() {
        let vector = read_vector(&file);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let config = support::load_config(&vector.config);
        let engine = agentgate::Engine::new(&config.engine, Box::new(support::VectorState::new(vector.host_state.as_ref()))).unwrap();
        if let Some(revocations) = &vector.revocations {
            engine.set_revocations(&revocations.to_string()).unwrap();
        }
        for (i, step) in vector.steps.iter().enumerate() {
            let (decision, recorded) = engine.check_recorded(&step.request.to_check_request(None));
            let policy_stage = matches!(decision.outcome.as_str(), "allowed" | "policy_denied" | "insufficient_scope");
            let Some(recorded) = recorded else {
                assert!(!policy_stage, "{name} step {i}: `{}` without a recorded call", decision.outcome);
                continue;
            };
            recorded_count += 1;
            let json = serde_json::to_value(&recorded).unwrap();
            let text = json.to_string();
            for credential in [&step.request.authorization, &step.request.dpop, &step.request.agent_identity].into_iter().flatten() {
                let token = credential.rsplit(' ').next().unwrap();
                assert!(!text.contains(token), "{name} step {i}: a credential in the record");
            }
            let again = RecordedCall::parse(&json).unwrap().decide_again(engine.authorizer());
            assert_eq!(again, decision, "{name} step {i}");
        }
    }
    assert!(recorded_count >= 40, "only {recorded_count} calls reached the policies");

    // Another form is refused with a reason, never guessed at.
    let mut json = serde_json::json!({"version": 2});
    assert_eq!(RecordedCall::parse(&json).unwrap_err(), "the call was recorded in form 2; this agentgate reads form 1");
    json["version"] = serde_json::json!(1);
    assert!(RecordedCall::parse(&json).unwrap_err().starts_with("the recorded call is malformed: missing field"), "{json}");
}

/// The component records each call exactly as the native engine does (`check-recorded` in the
/// WIT): the same decision and the same record, on every host, for every vector call.
#[test]
fn every_host_records_the_same_calls() {
    for file in vector_files() {
        let vector = read_vector(&file);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let config = support::load_config(&vector.config);
        let runs: Vec<Vec<_>> = support::HOSTS
            .iter()
            .map(|host| {
                let mut d = support::decider_with(*host, &config, vector.host_state.as_ref());
                if let Some(revocations) = &vector.revocations {
                    d.set_revocations(&revocations.to_string()).unwrap();
                }
                vector.steps.iter().map(|s| d.decide_recorded(&s.request.to_check_request(None))).collect()
            })
            .collect();
        for (host, run) in support::HOSTS.iter().zip(&runs).skip(1) {
            for (i, (got, want)) in run.iter().zip(&runs[0]).enumerate() {
                assert_eq!(got, want, "{name} step {i}: {host:?} and native differ");
            }
        }
    }
}
