//! The live revocation list: the file named by `revocations = "…"`, re-read when it changes —
//! checked on every call with one `stat`, so an agent revoked on disk is refused on its very next
//! call, with no restart and no watcher latency. A malformed edit keeps the last good list.

use agentgate_engine::revocation::RevocationList;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp { modified: meta.modified().ok(), len: meta.len(), inode })
}

#[derive(Debug)]
struct State {
    stamp: Option<Stamp>,
    json: Arc<str>,
    entries: usize,
    last_error: Option<String>,
}

/// A revocation file shared by every worker.
#[derive(Debug)]
pub struct RevocationFile {
    path: PathBuf,
    generation: AtomicU64,
    failed_reloads: AtomicU64,
    state: Mutex<State>,
}

impl RevocationFile {
    /// Reads the file; it must exist and parse at start-up.
    pub fn open(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let list = RevocationList::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(RevocationFile {
            path: path.to_path_buf(),
            generation: AtomicU64::new(1),
            failed_reloads: AtomicU64::new(0),
            state: Mutex::new(State { stamp: stamp(path), json: text.into(), entries: list.len(), last_error: None }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file if it changed. Returns the generation and the list text in force.
    pub fn refresh(&self) -> (u64, Arc<str>) {
        let Ok(mut state) = self.state.lock() else {
            return (self.generation.load(Ordering::Acquire), Arc::from(""));
        };
        let now = stamp(&self.path);
        if now != state.stamp {
            state.stamp = now;
            match std::fs::read_to_string(&self.path).map_err(|e| e.to_string()).and_then(|t| RevocationList::parse(&t).map(|l| (t, l))) {
                Ok((text, list)) => {
                    state.json = text.into();
                    state.entries = list.len();
                    state.last_error = None;
                    let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                    tracing::info!(path = %self.path.display(), entries = list.len(), generation, "revocation list reloaded");
                }
                Err(e) => {
                    self.failed_reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %self.path.display(), error = %e, "revocation list not reloaded; the last good list stays in force");
                    state.last_error = Some(e);
                }
            }
        }
        (self.generation.load(Ordering::Acquire), Arc::clone(&state.json))
    }

    /// The error of the last reload attempt, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.last_error.clone())
    }

    /// Entries in force.
    pub fn entries(&self) -> usize {
        self.state.lock().map(|s| s.entries).unwrap_or(0)
    }

    /// Reloads that failed and kept the last good list.
    pub fn failed_reloads(&self) -> u64 {
        self.failed_reloads.load(Ordering::Relaxed)
    }
}
