//! A bundled component (`agentgate bundle`: the configuration baked into a pre-initialized
//! snapshot) answers every vector of its configuration exactly as the runner with config files.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::config::CryptoPlacement;
use agentgate::{Runtime, RuntimeOptions};
use std::sync::Arc;
use support::{Host, StateSlot, load_config, read_vector, run_vector, vector_files};

#[test]
fn a_bundle_decides_like_the_runner_with_config_files() {
    let dir = tempfile::tempdir().unwrap();
    for (config_name, crypto) in [("policies/mail/agentgate.toml", CryptoPlacement::Guest), ("policies/home/agentgate.toml", CryptoPlacement::Host)] {
        let config = load_config(config_name);
        let options = RuntimeOptions { crypto, ..RuntimeOptions::default() };
        let bytes = Runtime::bundle(&options, &config.engine).unwrap();
        let file = dir.path().join("gate.wasm");
        std::fs::write(&file, &bytes).unwrap();
        let state = Arc::new(StateSlot::default());
        let runtime = Runtime::new(RuntimeOptions { component_file: Some(file), ..options }, state.clone()).unwrap();
        let mut compared = 0;
        for path in vector_files() {
            let vector = read_vector(&path);
            if vector.config != config_name {
                continue;
            }
            state.reset(vector.host_state.as_ref());
            let mut bundled = runtime.preloaded_verifier().unwrap();
            if let Some(r) = &vector.revocations {
                bundled.set_revocations(&r.to_string()).unwrap();
            }
            let from_bundle: Vec<_> = vector.steps.iter().map(|s| bundled.check(&s.request.to_check_request(None))).collect();
            let from_files = run_vector(&vector, Host::Component);
            assert_eq!(from_bundle, from_files, "{}", path.display());
            compared += 1;
        }
        assert!(compared > 10, "{config_name}: {compared}");
    }
}
