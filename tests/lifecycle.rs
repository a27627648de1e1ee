//! Instance lifecycle: pre-initialized components (policies parsed and key tables built in the
//! snapshot), the pooling allocator, warm-up, and instances that decide like freshly created ones.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::config::CryptoPlacement;
use agentgate::state::LocalState;
use agentgate::{Runtime, RuntimeOptions, VerifierError};
use std::sync::Arc;
use support::{AcceptEveryProof, StateSlot, load_config, mismatch, read_vector, root, vector_files};

#[test]
fn a_preinitialized_component_decides_every_mail_vector_like_the_native_engine() {
    let config = load_config("policies/mail/agentgate.toml");
    for crypto in [CryptoPlacement::Guest, CryptoPlacement::Host] {
        let options = RuntimeOptions { crypto, pooling: Some(8), ..RuntimeOptions::default() };
        let state = Arc::new(StateSlot::default());
        let runtime = Runtime::preinitialized(options, state.clone(), &config.engine).unwrap();
        let mut checked = 0;
        for file in vector_files() {
            let vector = read_vector(&file);
            if vector.config != "policies/mail/agentgate.toml" {
                continue;
            }
            // A fresh instance per vector: the model of per-request edge runtimes.
            state.reset(vector.host_state.as_ref());
            let mut verifier = runtime.preloaded_verifier().unwrap();
            if let Some(revocations) = &vector.revocations {
                verifier.set_revocations(&revocations.to_string()).unwrap();
            }
            for step in &vector.steps {
                let d = verifier.check(&step.request.to_check_request(None));
                if let Some(problem) = mismatch(&step.expect, &d) {
                    panic!("{} ({crypto:?}): {problem}", file.display());
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "{checked}");
    }
}

#[test]
fn a_component_without_a_preloaded_verifier_says_so() {
    let runtime = Runtime::new(RuntimeOptions::default(), Arc::new(LocalState::default())).unwrap();
    match runtime.preloaded_verifier() {
        Err(VerifierError::Config(m)) => assert_eq!(m, "no verifier was preloaded into this component"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn preinitializing_an_unusable_config_fails_with_its_message() {
    let mut config = load_config("policies/home/agentgate.toml").engine;
    config.policies[0].text.push_str("\nforbid (principal, action, resource) when { context.nope };\n");
    let dir = tempfile::tempdir().unwrap();
    let options = RuntimeOptions { cache_dir: Some(dir.path().to_path_buf()), ..RuntimeOptions::default() };
    let err = Runtime::preinitialized(options, Arc::new(LocalState::default()), &config).unwrap_err();
    assert!(format!("{err:#}").contains("nope"), "{err:#}");
}

#[test]
fn a_warmed_up_verifier_decides_like_a_cold_one() {
    let vector = read_vector(&root().join("tests/vectors/001_mail_bound_agent_reads_own_inbox.json"));
    let config = load_config(&vector.config);
    let runtime = Runtime::new(RuntimeOptions::default(), Arc::new(LocalState::default())).unwrap();
    let mut verifier = runtime.verifier(&config.engine).unwrap();
    verifier.warm_up().unwrap();
    let d = verifier.check(&vector.steps[0].request.to_check_request(None));
    assert!(mismatch(&vector.steps[0].expect, &d).is_none(), "{d:?}");
}

/// Pooled slots keep their dirtied pages resident and reset them in place (see
/// `KEEP_RESIDENT_BYTES`): an instance must still start from the snapshot, never from what the
/// previous instance in its slot left behind. One slot, so the second instance reuses it.
#[test]
fn a_reused_pool_slot_starts_from_the_snapshot_not_from_the_previous_instance() {
    let config = load_config("policies/mail/agentgate.toml");
    let vector = read_vector(&root().join("tests/vectors/001_mail_bound_agent_reads_own_inbox.json"));
    let request = vector.steps[0].request.to_check_request(None);
    for crypto in [CryptoPlacement::Guest, CryptoPlacement::Host] {
        let options = RuntimeOptions { crypto, pooling: Some(1), ..RuntimeOptions::default() };
        let runtime = Runtime::preinitialized(options, Arc::new(AcceptEveryProof), &config.engine).unwrap();
        {
            let mut first = runtime.preloaded_verifier().unwrap();
            first.set_revocations(r#"{"agents": ["spiffe://agents.example/mail-assistant"]}"#).unwrap();
            let d = first.check(&request);
            assert_eq!(d.outcome.as_str(), "revoked", "{crypto:?}: {d:?}");
        }
        for round in 0..3 {
            let mut next = runtime.preloaded_verifier().unwrap();
            let d = next.check(&request);
            assert!(d.allowed, "{crypto:?}, instance {round} after the revoking one: {d:?}");
        }
    }
}
