//! Writes the seed inputs of `seeds::all()` to `fuzz/corpus/<target>/seed-<name>`, reusing the
//! fuzz build (no root-workspace build): `cargo +nightly fuzz run -O write_seeds`.
//!
//! It is a libFuzzer binary only so that `cargo fuzz build` links it like the targets (the
//! sanitizer-coverage runtime comes with libFuzzer); it does its work in the `init` block and
//! exits before fuzzing anything. It is not a target: it lives outside `fuzz_targets/`, which
//! `tests/fuzz_corpora.rs` compares with `TARGETS`.

#![no_main]

use std::collections::BTreeSet;

fn write_seeds() {
    let corpus = agentgate_fuzz::harness::root().join("fuzz/corpus");
    let mut total = 0;
    for (target, seeds) in agentgate_fuzz::seeds::all() {
        assert!(agentgate_fuzz::TARGETS.iter().any(|(n, _)| *n == target), "seeds for an unknown target `{target}`");
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        // Names repeat (a vector step gives `jws` its token, proof and identity): number them.
        let mut used = BTreeSet::new();
        for (name, bytes) in seeds {
            let mut file = format!("seed-{name}");
            let mut n = 2;
            while !used.insert(file.clone()) {
                file = format!("seed-{name}-{n}");
                n += 1;
            }
            std::fs::write(dir.join(&file), &bytes).unwrap();
            total += 1;
        }
        eprintln!("{target}: {} seeds", used.len());
    }
    eprintln!("{total} seeds written under {}", corpus.display());
}

libfuzzer_sys::fuzz_target!(
    init: {
        write_seeds();
        std::process::exit(0);
    },
    |_data: &[u8]| {}
);
