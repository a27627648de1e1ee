//! The compiled-artifact cache: Cranelift compiles the component once (seconds); later starts map
//! the precompiled artifact from disk (`deserialize_file`, about a millisecond).

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The cache directory: `$AGENTGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/agentgate`, else
/// `$HOME/.cache/agentgate`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("AGENTGATE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("agentgate"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("agentgate"))
}

/// SHA-256 of `bytes`, hex.
pub fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads `bytes` (whose SHA-256 is `digest`) as a component, through the cache in `dir` when
/// there is one.
pub fn load(engine: &Engine, bytes: &[u8], digest: &str, dir: Option<&Path>) -> anyhow::Result<Component> {
    let Some(dir) = dir else {
        return Ok(Component::new(engine, bytes)?);
    };
    let path = dir.join(format!("{}.cwasm", artifact_key(engine, digest.as_bytes())));
    if path.exists() {
        match deserialize(engine, &path) {
            Ok(component) => return Ok(component),
            // A truncated or foreign file: recompile over it.
            Err(e) => tracing::warn!("ignoring unusable cached artifact {}: {e:#}", path.display()),
        }
    }
    let compiled = engine.precompile_component(bytes)?;
    if let Err(e) = store(dir, &path, &compiled) {
        tracing::warn!("could not cache the compiled component in {}: {e:#}", dir.display());
        // SAFETY: `compiled` was produced just now by this engine.
        #[allow(unsafe_code)]
        return Ok(unsafe { Component::deserialize(engine, &compiled) }?);
    }
    deserialize(engine, &path)
}

/// Loads a component derived from `inputs` (e.g. a pre-initialized snapshot), producing its bytes
/// with `make` only when no cached compilation exists.
pub fn load_derived(engine: &Engine, inputs: &[&[u8]], dir: Option<&Path>, make: impl FnOnce() -> anyhow::Result<Vec<u8>>) -> anyhow::Result<Component> {
    let Some(dir) = dir else {
        return Ok(Component::new(engine, make()?)?);
    };
    let joined: Vec<u8> = inputs.iter().flat_map(|part| Sha256::digest(part).to_vec()).collect();
    let path = dir.join(format!("{}.cwasm", artifact_key(engine, &joined)));
    if path.exists() {
        match deserialize(engine, &path) {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!("ignoring unusable cached artifact {}: {e:#}", path.display()),
        }
    }
    let bytes = make()?;
    let compiled = engine.precompile_component(&bytes)?;
    if let Err(e) = store(dir, &path, &compiled) {
        tracing::warn!("could not cache the compiled component in {}: {e:#}", dir.display());
        // SAFETY: `compiled` was produced just now by this engine.
        #[allow(unsafe_code)]
        return Ok(unsafe { Component::deserialize(engine, &compiled) }?);
    }
    deserialize(engine, &path)
}

fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: the file was written by `store` below from `precompile_component` of an engine with
    // the same configuration (its name includes the engine's compatibility hash) in a directory
    // created owner-only; wasmtime also checks its header before use.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize_file(engine, path) };
    component.map_err(anyhow::Error::from).with_context(|| format!("loading {}", path.display()))
}

fn store(dir: &Path, path: &Path, compiled: &[u8]) -> anyhow::Result<()> {
    create_private_dir(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, compiled)?;
    // Rename is atomic: a concurrent process sees the old file or the whole new one.
    tmp.persist(path)?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// SHA-256 of what identifies the component (its digest, or digests of its inputs) and of
/// wasmtime's compatibility hash (version, flags, target).
fn artifact_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let mut h = Sha256::new();
    h.update(bytes);
    h.update(compat.finish().to_le_bytes());
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}
