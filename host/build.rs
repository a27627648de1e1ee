//! Builds the decision components: the `agentgate-engine` crate for `wasm32-wasip2`, for the
//! portable `gate` world, for `gate-accelerated` (ES256 imported from the host), and the wasi:http
//! gateway (alone and with agentgate's `state` import). The host embeds them all. The nested cargo
//! uses its own target directory: sharing the outer one would deadlock on cargo's build lock.

// PANIC SAFETY: a build script reports failure by panicking; every panic here says what to do.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use sha2::{Digest, Sha256};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo profile of the component build (see `[profile.wasm]` in the root Cargo.toml).
const DEFAULT_PROFILE: &str = "wasm";

struct Variant {
    /// File name under OUT_DIR.
    file: &'static str,
    /// The package that builds it.
    package: &'static str,
    /// Cargo features of `package`. The build shares the target directory (and so every
    /// dependency) with the plain build: the two cdylibs share a file name, which is fine
    /// because each is copied out right after its own build.
    features: Option<&'static str>,
}

// No wide-arithmetic build. The wasm wide-arithmetic proposal (`i64.mul_wide_u` for P-256's
// 128-bit limb products) made in-guest ES256 ~2.4× faster under wasmtime, but LLVM 22 (Rust 1.95)
// miscompiles the overflow check of a signed 64-bit multiply under it
// (llvm/llvm-project#199910): it compares an operand, not the high half, with the product's
// sign, so every `i64::checked_mul` with a non-zero right operand and a positive product
// reported an overflow. Cedar's `*` is one: a `forbid` whose condition multiplied erred instead
// of applying, and the call was allowed. The feature cannot be kept to the P-256 crates: with
// LTO, LLVM's wasm backend gives every function of the module the union of their features.
// tests/policy_index.rs `a_forbid_that_multiplies_applies_on_every_host` guards a return.

// One cargo invocation each: building both packages together would unify the engine's features
// and give the portable component the accelerated world.
const VARIANTS: [Variant; 4] = [
    Variant { file: "agentgate_gate.wasm", package: "agentgate-engine", features: None },
    Variant { file: "agentgate_gate_accelerated.wasm", package: "agentgate-engine-accelerated", features: None },
    Variant { file: "agentgate_gateway.wasm", package: "agentgate-gateway", features: None },
    // The gateway that imports agentgate's `state` (world `http-gateway-shared`).
    Variant { file: "agentgate_gateway_shared.wasm", package: "agentgate-gateway", features: Some("shared-state") },
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ has a parent").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    // Relative to this package, so that a target directory shared by two checkouts still watches
    // the checkout being built.
    for path in ["../guest/src", "../guest/Cargo.toml", "../guest/accelerated", "../guest/gateway", "../wit", "../Cargo.toml", "../Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=AGENTGATE_GUEST_PROFILE");
    println!("cargo:rerun-if-env-changed=AGENTGATE_GUEST_CARGO");
    let profile = env::var("AGENTGATE_GUEST_PROFILE").unwrap_or_else(|_| DEFAULT_PROFILE.to_owned());
    let target_dir = guest_target_dir(&out_dir);

    // In sequence (cargo's lock on the shared target directory); the later builds reuse the
    // first one's dependencies.
    for variant in &VARIANTS {
        let wasm = build_variant(&root, &target_dir, &profile, variant);
        publish(&out_dir, variant, &wasm);
    }
}

/// Copies a built component into OUT_DIR with its digest.
fn publish(out_dir: &Path, variant: &Variant, wasm: &Path) {
    let bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    std::fs::write(out_dir.join(variant.file), &bytes).unwrap_or_else(|e| panic!("writing OUT_DIR: {e}"));
    // The artifact cache is keyed by the component's digest; computing it here spares every
    // start of the host hashing megabytes.
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(out_dir.join(format!("{}.sha256", variant.file)), digest).unwrap_or_else(|e| panic!("writing OUT_DIR: {e}"));
}

/// `<target dir>/agentgate-guest`, shared by every host profile so the guest builds once.
/// OUT_DIR is `<target dir>/<profile>/build/agentgate-<hash>/out`.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    out_dir.ancestors().nth(4).map(|target| target.join("agentgate-guest")).unwrap_or_else(|| out_dir.join("agentgate-guest"))
}

fn build_variant(root: &Path, target_dir: &Path, profile: &str, variant: &Variant) -> PathBuf {
    // `$AGENTGATE_GUEST_CARGO` overrides the cargo of the component builds: a nightly build of
    // the host (the fuzzer) whose toolchain has no wasm32-wasip2 sends them to stable this way
    // (cargo hands build scripts its own path as `$CARGO`, so that cannot be overridden).
    let cargo = env::var("AGENTGATE_GUEST_CARGO").or_else(|_| env::var("CARGO")).unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["rustc", "--package", variant.package, "--lib", "--crate-type", "cdylib", "--target", "wasm32-wasip2", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(features) = variant.features {
        cmd.args(["--features", features]);
    }
    // The profile's `strip = true` does not reach the wasm-ld that wasm-component-ld runs: the
    // portable component kept a 714 KB `name` section (13 % of it) until the flag went to the
    // linker directly. Names serve debuggers and profilers; a trap is still reported with its
    // kind (backtraces show function indices instead of names).
    cmd.args(["--", "-C", "link-arg=--strip-all"]);
    // The outer build's flags and target are for the host, not for the component; under `cargo
    // clippy` the component is still built (not linted: it is linted on its own target, see
    // .ci/run), so that clippy and the tests share one build of it.
    for var in
        ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "CARGO_BUILD_RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "CLIPPY_ARGS"]
    {
        cmd.env_remove(var);
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("could not run cargo to build the component: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        let hint = if stderr.contains("wasm32-wasip2")
            && (stderr.contains("target may not be installed")
                || stderr.contains("can't find crate for `core`")
                || stderr.contains("can't find crate for `std`"))
        {
            "\n\nthe wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`"
        } else {
            ""
        };
        panic!("building the agentgate component failed:\n{}{hint}", tail.join("\n"));
    }
    let dir = if profile == "dev" { "debug" } else { profile };
    let wasm = target_dir.join("wasm32-wasip2").join(dir).join(format!("{}.wasm", variant.package.replace('-', "_")));
    if !wasm.exists() {
        panic!("the component build succeeded but {} is missing", wasm.display());
    }
    wasm
}
