//! The sandbox around the component: a call that runs out of time or memory is an
//! `engine_error` deny, never a hang, a crash or an allow — and the next call gets a fresh instance.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::state::LocalState;
use agentgate::{Outcome, Runtime, RuntimeOptions, VerifierError};
use std::sync::Arc;
use std::time::Duration;
use support::{load_config, read_vector, root};

/// A valid vector whose call we can replay against tight budgets.
fn allowed_vector() -> support::Vector {
    read_vector(&root().join("tests/vectors/006_home_thermostat_with_input.json"))
}

/// Large but schema-valid entities: lots of devices for the engine to parse.
fn heavy(request: &mut agentgate::CheckRequest) {
    let devices: Vec<serde_json::Value> = (0..2500)
        .map(|i| serde_json::json!({"uid": {"type": "Device", "id": format!("d{i}")}, "attrs": {"kind": "light"}, "parents": [{"type": "Home", "id": "alice-home"}]}))
        .collect();
    let mut entities: Vec<serde_json::Value> = serde_json::from_str(request.entities_json.as_deref().unwrap()).unwrap();
    entities.extend(devices);
    request.entities_json = Some(serde_json::Value::Array(entities).to_string());
}

#[test]
fn a_call_over_its_time_budget_is_an_engine_error_and_the_next_call_recovers() {
    let vector = allowed_vector();
    let config = load_config(&vector.config);
    let mut limits = config.engine.clone();
    // Allow the big entities document through the size limit so that it reaches the parser.
    limits.settings_json = limits.settings_json.replace("\"max_entities_bytes\":262144", "\"max_entities_bytes\":4194304");
    let options = RuntimeOptions { call_timeout: Duration::from_millis(1), ..RuntimeOptions::default() };
    let runtime = Runtime::new(options, Arc::new(LocalState::default())).unwrap();
    let mut verifier = runtime.verifier(&limits).unwrap();
    let mut request = vector.steps[0].request.to_check_request(None);
    heavy(&mut request);
    let d = verifier.check(&request);
    assert!(!d.allowed);
    assert_eq!(d.outcome, Outcome::EngineError, "{d:?}");
    assert_eq!(d.reason, "the decision component exceeded its time budget of 1 ms");

    // A normal call on the same verifier still decides (a fresh instance replaced the trapped one;
    // with 1 ms it may also run out, but it must never allow wrongly or hang).
    let d = verifier.check(&vector.steps[0].request.to_check_request(None));
    assert!(d.allowed || d.outcome == Outcome::EngineError, "{d:?}");
}

#[test]
fn a_generous_budget_decides_the_heavy_call() {
    let vector = allowed_vector();
    let config = load_config(&vector.config);
    let mut limits = config.engine.clone();
    limits.settings_json = limits.settings_json.replace("\"max_entities_bytes\":262144", "\"max_entities_bytes\":4194304");
    let runtime = Runtime::new(RuntimeOptions::default(), Arc::new(LocalState::default())).unwrap();
    let mut verifier = runtime.verifier(&limits).unwrap();
    let mut request = vector.steps[0].request.to_check_request(None);
    heavy(&mut request);
    let d = verifier.check(&request);
    assert!(d.allowed, "{d:?}");
}

#[test]
fn a_memory_limit_too_small_for_the_policies_fails_creation_cleanly() {
    let config = load_config("policies/mail/agentgate.toml");
    let options = RuntimeOptions { memory_limit_bytes: 1 << 20, ..RuntimeOptions::default() };
    let runtime = Runtime::new(options, Arc::new(LocalState::default())).unwrap();
    match runtime.verifier(&config.engine) {
        Err(VerifierError::Runtime(e)) => {
            let text = format!("{e:#}");
            assert!(text.contains("memory limit") || text.contains("trapped"), "{text}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
}

#[test]
fn an_oversized_entities_document_is_refused_before_parsing() {
    let vector = allowed_vector();
    let config = load_config(&vector.config);
    let runtime = Runtime::new(RuntimeOptions::default(), Arc::new(LocalState::default())).unwrap();
    let mut verifier = runtime.verifier(&config.engine).unwrap();
    let mut request = vector.steps[0].request.to_check_request(None);
    heavy(&mut request);
    let d = verifier.check(&request);
    assert_eq!(d.outcome, Outcome::InvalidRequest);
    assert!(d.reason.starts_with("`entities` is ") && d.reason.ends_with("bytes, over the limit of 262144"), "{}", d.reason);
}

#[test]
fn unusable_configuration_is_an_error_naming_file_and_line() {
    let mut config = load_config("policies/mail/agentgate.toml").engine;
    config.policies[0].text.push_str("\npermit(principal, action == Action::\"mail:read\", resource) when { context.nope };\n");
    let runtime = Runtime::new(RuntimeOptions::default(), Arc::new(LocalState::default())).unwrap();
    let name = config.policies[0].name.clone();
    let lines = config.policies[0].text.lines().count();
    match runtime.verifier(&config) {
        Err(VerifierError::Config(message)) => {
            assert!(message.starts_with(&format!("{name}:{lines}:")), "{message}");
            assert!(message.contains("nope"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}
