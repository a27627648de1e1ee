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

/// Sources are named relative to the config's directory, so one deployment copied to two places
/// is one engine config: the second start loads the first one's snapshot instead of taking its own,
/// and an unannotated policy's id (`file:line`) does not depend on where the copy lives.
#[test]
fn two_copies_of_one_deployment_share_one_snapshot_and_name_their_policies_alike() {
    let copy = |to: &std::path::Path| {
        for set in ["home", "keys"] {
            std::fs::create_dir(to.join(set)).unwrap();
            for entry in std::fs::read_dir(root().join("policies").join(set)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    std::fs::copy(&path, to.join(set).join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        std::fs::write(
            to.join("home/zz-unannotated.cedar"),
            "forbid (principal, action == Action::\"lock:unlock\", resource) when { context.delegation.depth > 5 };\n",
        )
        .unwrap();
        agentgate::config::load(&to.join("home/agentgate.toml")).unwrap()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (copy(a.path()), copy(b.path()));
    assert_eq!(serde_json::to_string(&first.engine).unwrap(), serde_json::to_string(&second.engine).unwrap());
    let names: Vec<&str> = first.engine.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["devices.cedar", "locks.cedar", "zz-unannotated.cedar"]);
    assert_eq!(first.engine.schema.name, "schema.cedarschema");
    assert_eq!(first.source_path("zz-unannotated.cedar"), Some(a.path().join("home/zz-unannotated.cedar")));
    assert_eq!(first.source_path("elsewhere.cedar"), None);

    let cache = tempfile::tempdir().unwrap();
    let options = RuntimeOptions { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeOptions::default() };
    let entries = || std::fs::read_dir(cache.path()).unwrap().count();
    Runtime::preinitialized(options.clone(), Arc::new(LocalState::default()), &first.engine).unwrap();
    let after_first = entries();
    assert_eq!(after_first, 1, "the snapshot is cached");
    let runtime = Runtime::preinitialized(options, Arc::new(LocalState::default()), &second.engine).unwrap();
    assert_eq!(entries(), after_first, "the second copy reuses the first one's snapshot");
    let engine = agentgate_engine::Engine::new(&second.engine, Box::new(LocalState::default())).unwrap();
    assert!(engine.authorizer().policy_source("zz-unannotated.cedar:1").is_some(), "an unannotated policy is `file:line`");
    drop(runtime);
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
