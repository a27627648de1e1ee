//! The fuzz corpora, replayed on stable: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the same target function libFuzzer runs
//! (`fuzz/src/lib.rs`, compiled here with `#[path]`), with the same invariants. CI never builds
//! the fuzzer; it checks here that nothing the campaigns found (or will find again) panics,
//! allows what it must not, or decides differently natively and in the component.
//!
//! `differential` replays a bounded, evenly spread subset (`DIFFERENTIAL_FILES`): every file
//! costs a component call per build. `AGENTGATE_FUZZ_REPLAY_ALL=1` replays all of it.

// PANIC SAFETY: test code; a broken invariant is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

// The fuzz crate's modules at this crate's root, as `fuzz/src/lib.rs` has them at its own: they
// name each other through `crate::`.
#[path = "../fuzz/src/harness.rs"]
mod harness;
#[path = "../fuzz/src/oracle.rs"]
mod oracle;
#[path = "../fuzz/src/registry.rs"]
mod registry;
#[path = "../fuzz/src/seeds.rs"]
pub mod seeds;
#[path = "../fuzz/src/targets/mod.rs"]
mod targets;

/// The names the tests below use.
mod fuzz {
    pub use crate::registry::{TARGETS, run};
    pub use crate::seeds;
}

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Files of the `differential` corpus replayed by default.
const DIFFERENTIAL_FILES: usize = 400;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// At most `n` of `files`, spread evenly.
fn spread(files: Vec<PathBuf>, n: usize) -> Vec<PathBuf> {
    if files.len() <= n || std::env::var_os("AGENTGATE_FUZZ_REPLAY_ALL").is_some() {
        return files;
    }
    let step = files.len() as f64 / n as f64;
    (0..n).map(|i| files[(i as f64 * step) as usize].clone()).collect()
}

/// Replays `target`'s corpus and regressions; fails naming every input that broke an invariant.
fn replay(target: &str) {
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
    let corpus = if target == "differential" { spread(corpus, DIFFERENTIAL_FILES) } else { corpus };
    let inputs: Vec<PathBuf> = corpus.into_iter().chain(files(&fuzz_dir().join("regressions").join(target))).collect();
    let mut failures = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| fuzz::run(target, &data))) {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned())).unwrap_or_default();
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{target}: {} of {} inputs broke an invariant:\n{}", failures.len(), inputs.len(), failures.join("\n"));
}

#[test]
fn every_target_has_a_corpus_and_a_function() {
    let dirs: Vec<String> = files(&fuzz_dir().join("fuzz_targets")).iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    let names: Vec<String> = fuzz::TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(dirs, sorted, "fuzz/fuzz_targets/ and fuzz::TARGETS list different targets");
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*
    };
}

replay_tests!(
    jws,
    access_token,
    dpop,
    identity,
    status_list,
    revocation,
    routing,
    entities_context,
    request_json,
    engine,
    differential,
    policy_index,
    config,
    authzen,
    forward_auth,
);

/// Writes the seed inputs (`fuzz/src/seeds.rs`) to `fuzz/corpus/<target>/seed-<name>`, as
/// `fuzz/tools/write_seeds.rs` does from the nightly fuzz build, without building the fuzzer:
/// `cargo test --release --test fuzz_corpora -- --ignored write_seed_corpora`.
#[test]
#[ignore = "writes files: run by hand to refresh the seeds in fuzz/corpus/"]
fn write_seed_corpora() {
    for (target, seeds) in fuzz::seeds::all() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let mut used = std::collections::BTreeSet::new();
        for (name, bytes) in seeds {
            let mut file = format!("seed-{name}");
            let mut n = 2;
            while !used.insert(file.clone()) {
                file = format!("seed-{name}-{n}");
                n += 1;
            }
            std::fs::write(dir.join(&file), bytes).unwrap();
        }
    }
}
