//! The list of targets, by name: shared by the libFuzzer binaries (through `lib.rs`) and the
//! stable replay test (`tests/fuzz_corpora.rs`), which compiles the modules at its crate root.

use crate::targets;

/// A fuzz target: it takes the fuzzer's bytes and panics on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target: its name (the corpus directory `fuzz/corpus/<name>`) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("jws", targets::jose::jws),
    ("access_token", targets::credentials::access_token),
    ("dpop", targets::credentials::dpop),
    ("identity", targets::credentials::identity),
    ("status_list", targets::credentials::status_list),
    ("revocation", targets::lists::revocation),
    ("routing", targets::lists::routing),
    ("entities_context", targets::pipeline::entities_context),
    ("request_json", targets::pipeline::request_json),
    ("engine", targets::pipeline::engine),
    ("differential", targets::pipeline::differential),
    ("policy_index", targets::policies::policy_index),
    ("config", targets::host::config),
    ("authzen", targets::host::authzen),
    ("forward_auth", targets::host::forward_auth),
];

/// Runs the target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, target)) => target(data),
        None => panic!("no fuzz target `{name}`"),
    }
}
