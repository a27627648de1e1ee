//! The compiled-artifact cache: Cranelift compiles the component once (seconds); later starts
//! load the precompiled artifact from disk (read, hashed and deserialized: tens of milliseconds).
//!
//! A `.cwasm` is native code, so the cache trusts nothing it did not check itself, on the objects
//! it actually uses (never a path checked earlier):
//!
//! - the directory is opened component by component from `/` with `openat(O_DIRECTORY |
//!   O_NOFOLLOW)` after resolving symlinks once, and each opened directory is checked with
//!   `fstat`: the cache directory must be owned by the current user and not writable by group or
//!   others; every parent must be owned by root or the current user, and may be writable by
//!   group or others only with the sticky bit (like `/tmp`, where nobody else can rename or
//!   delete our entries);
//! - an artifact is opened with `openat(O_NOFOLLOW)` relative to that directory and checked with
//!   `fstat` (a regular file, owned by the current user, not writable by group or others);
//! - an artifact is `agentgate-cwasm1` + SHA-256(payload) + payload; the hash is checked on the
//!   bytes read from the opened descriptor before wasmtime deserializes them from memory (no
//!   file is ever mapped), so a corrupt or truncated file is recompiled, not loaded.
//!
//! Anything refused is logged with a warning and the component is compiled in memory instead.
//! The cache keeps the `AGENTGATE_CACHE_MAX_ENTRIES` (default 8) most recently used artifacts:
//! a hit touches its file, a write evicts the least recently used beyond that.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::path::{Component as PathComponent, Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Artifacts kept by default.
pub const DEFAULT_MAX_ENTRIES: usize = 8;
/// The file header: format name and version.
const MAGIC: &[u8; 16] = b"agentgate-cwasm1";
/// Largest artifact read back.
const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;
/// A write left behind by a crashed process is removed after this long.
const STALE_PARTIAL_SECS: i64 = 3600;

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

/// How many artifacts the cache keeps: `$AGENTGATE_CACHE_MAX_ENTRIES`, else 8 (at least 1).
pub fn max_entries() -> usize {
    std::env::var("AGENTGATE_CACHE_MAX_ENTRIES").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(DEFAULT_MAX_ENTRIES).max(1)
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
    let name = format!("{}.cwasm", artifact_key(engine, digest.as_bytes()));
    load_through(engine, dir, &name, max_entries(), || Ok(bytes.to_vec()))
}

/// Loads a component derived from `inputs` (e.g. a pre-initialized snapshot), producing its bytes
/// with `make` only when no cached compilation exists.
pub fn load_derived(engine: &Engine, inputs: &[&[u8]], dir: Option<&Path>, make: impl FnOnce() -> anyhow::Result<Vec<u8>>) -> anyhow::Result<Component> {
    let Some(dir) = dir else {
        return Ok(Component::new(engine, make()?)?);
    };
    let joined: Vec<u8> = inputs.iter().flat_map(|part| Sha256::digest(part).to_vec()).collect();
    let name = format!("{}.cwasm", artifact_key(engine, &joined));
    load_through(engine, dir, &name, max_entries(), make)
}

/// The cached artifact `name` in `dir` if it passes every check, else a fresh compilation (stored
/// when the directory passes its checks, then the cache is trimmed to `keep` artifacts).
fn load_through(engine: &Engine, dir: &Path, name: &str, keep: usize, make: impl FnOnce() -> anyhow::Result<Vec<u8>>) -> anyhow::Result<Component> {
    let cache = match CacheDir::open(dir) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!("not using the compiled-artifact cache: {e}; compiling in memory");
            None
        }
    };
    if let Some(cache) = &cache {
        match cache.read(name) {
            Ok(Some(payload)) => {
                // SAFETY: `payload` was read from a file that passed the ownership and mode checks
                // above, and its SHA-256 matches the hash stored with it by `write`, which stores
                // only `precompile_component` output of an engine with the same compatibility
                // hash (part of the name). wasmtime checks the header again and copies the bytes
                // into its own memory; no file is mapped.
                #[allow(unsafe_code)]
                let loaded = unsafe { Component::deserialize(engine, &payload) };
                match loaded {
                    Ok(component) => return Ok(component),
                    Err(e) => tracing::warn!("ignoring the cached artifact `{}`: {e:#}", cache.shown(name)),
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("ignoring the cached artifact `{}`: {e}; recompiling", cache.shown(name)),
        }
    }
    let compiled = engine.precompile_component(&make()?)?;
    if let Some(cache) = &cache {
        if let Err(e) = cache.write(name, &compiled) {
            tracing::warn!("could not cache the compiled component in `{}`: {e}", cache.path.display());
        }
        cache.evict(keep, name);
    }
    // SAFETY: `compiled` was produced just now by this engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok(component)
}

/// Why the cache directory or an artifact was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A system call failed.
    #[error("`{path}`: {error}")]
    Io {
        /// What was being opened.
        path: String,
        /// The error.
        error: String,
    },
    /// Owned by someone else.
    #[error("`{path}` is owned by uid {owner}, not by the current user (uid {me}){or_root}")]
    Owner {
        /// The object.
        path: String,
        /// Its owner.
        owner: u32,
        /// The current user.
        me: u32,
        /// ` or root` for parents.
        or_root: &'static str,
    },
    /// Writable by group or others.
    #[error("`{path}` is writable by group or others (mode `{mode:o}`){hint}")]
    Writable {
        /// The object.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// What would make it acceptable.
        hint: &'static str,
    },
    /// Not a directory / not a regular file.
    #[error("`{path}` is not a {expected}")]
    Kind {
        /// The object.
        path: String,
        /// `directory` or `regular file`.
        expected: &'static str,
    },
    /// The file is not a complete artifact with a matching hash.
    #[error("`{path}` is corrupt or truncated ({why})")]
    Integrity {
        /// The file.
        path: String,
        /// What did not match.
        why: &'static str,
    },
}

fn io(path: &Path, error: impl std::fmt::Display) -> Refusal {
    Refusal::Io { path: path.display().to_string(), error: error.to_string() }
}

/// The checked cache directory, held open.
#[derive(Debug)]
struct CacheDir {
    fd: OwnedFd,
    path: PathBuf,
    uid: u32,
}

impl CacheDir {
    /// Creates `dir` (owner-only) if missing, then opens and checks it and every parent.
    fn open(dir: &Path) -> Result<Self, Refusal> {
        create_private_dir(dir).map_err(|e| io(dir, e))?;
        // Symlinks are resolved once here; the walk below then refuses any symlink it meets, so
        // a link swapped in afterwards fails the walk instead of redirecting it.
        let path = std::fs::canonicalize(dir).map_err(|e| io(dir, e))?;
        let uid = rustix::process::geteuid().as_raw();
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let root = Path::new("/");
        let mut fd = rustix::fs::openat(rustix::fs::CWD, root, dir_flags, Mode::empty()).map_err(|e| io(root, e))?;
        let names: Vec<&std::ffi::OsStr> = path.components().filter_map(|c| if let PathComponent::Normal(n) = c { Some(n) } else { None }).collect();
        let mut walked = PathBuf::from("/");
        check_parent(&fd, &walked, uid)?;
        for (i, name) in names.iter().enumerate() {
            walked.push(name);
            fd = rustix::fs::openat(&fd, *name, dir_flags, Mode::empty()).map_err(|e| io(&walked, e))?;
            if i + 1 == names.len() {
                check_owned(&fd, &walked, uid, FileType::Directory)?;
            } else {
                check_parent(&fd, &walked, uid)?;
            }
        }
        Ok(CacheDir { fd, path, uid })
    }

    fn shown(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }

    /// The payload of artifact `name`: `None` if there is none; an error if the file fails a
    /// check. A good artifact is touched (its modification time marks its last use).
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, Refusal> {
        let path = self.path.join(name);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let size = check_owned(&fd, &path, self.uid, FileType::RegularFile)?;
        if size > MAX_ARTIFACT_BYTES {
            return Err(Refusal::Integrity { path: path.display().to_string(), why: "larger than any artifact" });
        }
        let mut file = std::fs::File::from(fd);
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(|e| io(&path, e))?;
        let payload = verify(&bytes).map_err(|why| Refusal::Integrity { path: path.display().to_string(), why })?;
        // Least recently used goes first at eviction; a failed touch only makes that less exact.
        let _ = file.set_modified(std::time::SystemTime::now());
        Ok(Some(payload.to_vec()))
    }

    /// Stores `payload` as artifact `name`: written to a new owner-only file, then renamed over
    /// (a reader sees the old file or the whole new one).
    fn write(&self, name: &str, payload: &[u8]) -> Result<(), Refusal> {
        let partial = format!(".{name}.{}.partial", crate::mint::random_id());
        let path = self.path.join(&partial);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, partial.as_str(), flags, Mode::RUSR | Mode::WUSR).map_err(|e| io(&path, e))?;
        let mut file = std::fs::File::from(fd);
        let written = file.write_all(MAGIC).and_then(|()| file.write_all(&Sha256::digest(payload))).and_then(|()| file.write_all(payload));
        let renamed =
            written.map_err(|e| io(&path, e)).and_then(|()| rustix::fs::renameat(&self.fd, partial.as_str(), &self.fd, name).map_err(|e| io(&path, e)));
        if renamed.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, partial.as_str(), AtFlags::empty());
        }
        renamed
    }

    /// Keeps the `keep` most recently used artifacts (always `current`); removes the rest and
    /// partial writes older than an hour.
    fn evict(&self, keep: usize, current: &str) {
        let Ok(entries) = rustix::fs::Dir::read_from(&self.fd) else { return };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut artifacts = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let Ok(stat) = rustix::fs::statat(&self.fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else { continue };
            if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                continue;
            }
            #[allow(clippy::useless_conversion)]
            let modified = (i64::from(stat.st_mtime), i64::try_from(stat.st_mtime_nsec).unwrap_or(0));
            if name.starts_with('.') && name.ends_with(".partial") {
                if now.saturating_sub(modified.0) > STALE_PARTIAL_SECS {
                    let _ = rustix::fs::unlinkat(&self.fd, name.as_str(), AtFlags::empty());
                }
            } else if name.ends_with(".cwasm") && name != current {
                artifacts.push((modified, name));
            }
        }
        // Newest first; `current` takes one of the `keep` places.
        artifacts.sort_by_key(|a| std::cmp::Reverse(a.0));
        for (_, name) in artifacts.iter().skip(keep.saturating_sub(1)) {
            match rustix::fs::unlinkat(&self.fd, name.as_str(), AtFlags::empty()) {
                Ok(()) => tracing::debug!("evicted the cached artifact `{}`", self.shown(name)),
                Err(e) => tracing::warn!("could not evict the cached artifact `{}`: {e}", self.shown(name)),
            }
        }
    }
}

/// A parent directory: owned by root or the current user; writable by group or others only with
/// the sticky bit.
fn check_parent(fd: &impl AsFd, path: &Path, uid: u32) -> Result<(), Refusal> {
    let stat = rustix::fs::fstat(fd).map_err(|e| io(path, e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err(Refusal::Kind { path: path.display().to_string(), expected: "directory" });
    }
    if stat.st_uid != 0 && stat.st_uid != uid {
        return Err(Refusal::Owner { path: path.display().to_string(), owner: stat.st_uid, me: uid, or_root: " or root" });
    }
    let mode = stat.st_mode & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(Refusal::Writable { path: path.display().to_string(), mode, hint: " and has no sticky bit" });
    }
    Ok(())
}

/// The cache directory or an artifact: of `kind`, owned by the current user, not writable by
/// group or others. Returns its size.
fn check_owned(fd: &impl AsFd, path: &Path, uid: u32, kind: FileType) -> Result<u64, Refusal> {
    let stat = rustix::fs::fstat(fd).map_err(|e| io(path, e))?;
    if FileType::from_raw_mode(stat.st_mode) != kind {
        let expected = if kind == FileType::Directory { "directory" } else { "regular file" };
        return Err(Refusal::Kind { path: path.display().to_string(), expected });
    }
    if stat.st_uid != uid {
        return Err(Refusal::Owner { path: path.display().to_string(), owner: stat.st_uid, me: uid, or_root: "" });
    }
    let mode = stat.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Refusal::Writable { path: path.display().to_string(), mode, hint: "" });
    }
    Ok(u64::try_from(stat.st_size).unwrap_or(u64::MAX))
}

/// The payload of a stored artifact, if its header and hash match.
fn verify(bytes: &[u8]) -> Result<&[u8], &'static str> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or("no agentgate artifact header")?;
    let (hash, payload) = rest.split_at_checked(32).ok_or("no hash")?;
    if Sha256::digest(payload).as_slice() != hash {
        return Err("its SHA-256 does not match the hash stored with it");
    }
    Ok(payload)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
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

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The smallest valid component: the preamble alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn cached(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.ends_with(".cwasm")).collect();
        names.sort();
        names
    }

    /// A cache directory under a private temp dir (the test machine's `/tmp` is sticky).
    fn cache_dir() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        (tmp, dir)
    }

    #[test]
    fn a_good_artifact_is_stored_hashed_and_loaded_back() {
        let (_tmp, dir) = cache_dir();
        let e = engine();
        load_through(&e, &dir, "a.cwasm", 8, || Ok(EMPTY_COMPONENT.to_vec())).unwrap();
        let stored = std::fs::read(dir.join("a.cwasm")).unwrap();
        assert!(stored.starts_with(MAGIC));
        assert_eq!(std::fs::metadata(dir.join("a.cwasm")).unwrap().permissions().mode() & 0o777, 0o600);
        let cache = CacheDir::open(&dir).unwrap();
        assert!(cache.read("a.cwasm").unwrap().is_some());
        // A hit does not compile.
        load_through(&e, &dir, "a.cwasm", 8, || panic!("compiled although the artifact is cached")).unwrap();
    }

    #[test]
    fn a_corrupt_or_truncated_artifact_is_recompiled_not_loaded() {
        let (_tmp, dir) = cache_dir();
        let e = engine();
        load_through(&e, &dir, "a.cwasm", 8, || Ok(EMPTY_COMPONENT.to_vec())).unwrap();
        let path = dir.join("a.cwasm");
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        for (bad, why) in [
            (flipped, "SHA-256 does not match"),
            (good[..good.len() - 3].to_vec(), "SHA-256 does not match"),
            (b"junk".to_vec(), "no agentgate artifact header"),
        ] {
            std::fs::write(&path, &bad).unwrap();
            chmod(&path, 0o600);
            let e2 = CacheDir::open(&dir).unwrap().read("a.cwasm").unwrap_err();
            assert!(e2.to_string().contains(why), "{e2}");
            let mut compiled = false;
            load_through(&e, &dir, "a.cwasm", 8, || {
                compiled = true;
                Ok(EMPTY_COMPONENT.to_vec())
            })
            .unwrap();
            assert!(compiled, "the bad artifact was recompiled");
            assert_eq!(std::fs::read(&path).unwrap(), good, "and replaced by a good one");
        }
    }

    #[test]
    fn a_file_or_directory_others_can_write_is_refused() {
        let (tmp, dir) = cache_dir();
        let e = engine();
        load_through(&e, &dir, "a.cwasm", 8, || Ok(EMPTY_COMPONENT.to_vec())).unwrap();
        let path = dir.join("a.cwasm");

        chmod(&path, 0o666);
        let refused = CacheDir::open(&dir).unwrap().read("a.cwasm").unwrap_err();
        assert!(matches!(refused, Refusal::Writable { .. }), "{refused}");
        let mut compiled = false;
        load_through(&e, &dir, "a.cwasm", 8, || {
            compiled = true;
            Ok(EMPTY_COMPONENT.to_vec())
        })
        .unwrap();
        assert!(compiled, "a world-writable artifact is never loaded");
        chmod(&path, 0o600);

        // The cache directory itself, group-writable: refused, everything compiles in memory.
        chmod(&dir, 0o770);
        let refused = CacheDir::open(&dir).unwrap_err();
        assert!(refused.to_string().contains("is writable by group or others (mode `770`)"), "{refused}");
        let before = std::fs::read(&path).unwrap();
        let mut compiled = false;
        load_through(&e, &dir, "b.cwasm", 8, || {
            compiled = true;
            Ok(EMPTY_COMPONENT.to_vec())
        })
        .unwrap();
        assert!(compiled && !dir.join("b.cwasm").exists(), "nothing is written to a refused directory");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        chmod(&dir, 0o700);

        // A parent writable by others without the sticky bit: refused; with it: accepted.
        chmod(tmp.path(), 0o777);
        assert!(CacheDir::open(&dir).unwrap_err().to_string().contains("has no sticky bit"));
        chmod(tmp.path(), 0o1777);
        assert!(CacheDir::open(&dir).is_ok());
        chmod(tmp.path(), 0o700);
    }

    #[test]
    fn symlinks_are_never_followed() {
        let (tmp, dir) = cache_dir();
        let e = engine();
        load_through(&e, &dir, "a.cwasm", 8, || Ok(EMPTY_COMPONENT.to_vec())).unwrap();
        std::os::unix::fs::symlink(dir.join("a.cwasm"), dir.join("link.cwasm")).unwrap();
        let refused = CacheDir::open(&dir).unwrap().read("link.cwasm").unwrap_err();
        assert!(matches!(refused, Refusal::Io { .. }), "{refused}");
        // A symlinked cache directory is resolved once, then walked without following links.
        std::os::unix::fs::symlink(&dir, tmp.path().join("alias")).unwrap();
        assert!(CacheDir::open(&tmp.path().join("alias")).unwrap().read("a.cwasm").unwrap().is_some());
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_artifacts() {
        let (_tmp, dir) = cache_dir();
        let e = engine();
        for i in 0..5 {
            load_through(&e, &dir, &format!("{i}.cwasm"), 3, || Ok(EMPTY_COMPONENT.to_vec())).unwrap();
            // Distinct modification times even on coarse clocks.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(cached(&dir), vec!["2.cwasm", "3.cwasm", "4.cwasm"]);
        // Using `2` makes it the most recent: the next write evicts `3`.
        load_through(&e, &dir, "2.cwasm", 3, || panic!("cached")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        load_through(&e, &dir, "5.cwasm", 3, || Ok(EMPTY_COMPONENT.to_vec())).unwrap();
        assert_eq!(cached(&dir), vec!["2.cwasm", "4.cwasm", "5.cwasm"]);
    }
}
