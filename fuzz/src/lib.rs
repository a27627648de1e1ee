//! agentgate's fuzz targets, as plain functions over bytes.
//!
//! `fuzz_targets/<name>.rs` hands libFuzzer's input to [`run`]; `tests/fuzz_corpora.rs` (root
//! package, stable) compiles this same file with `#[path]` and replays every committed corpus
//! through the same functions, so CI checks the same invariants without libFuzzer.
//!
//! Every target returns normally for any input; a broken invariant is a panic, which libFuzzer
//! records as a crash and the replay test as a failure. Targets past a signature check sign what
//! they fuzz: the harness holds the TEST-ONLY keys (`policies/keys/`) and signs the mutated
//! header and claims bytes, so mutations reach the claim and binding rules (see `harness`).

// PANIC SAFETY: a fuzz target reports a broken invariant by panicking; that is the crash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

pub mod harness;
pub mod oracle;
pub mod seeds;
pub mod targets;

mod registry;
pub use registry::{TARGETS, run};
