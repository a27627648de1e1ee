//! The local copy of a deployment's revocation list. A background thread polls the backend for
//! the list's version every `refresh` (a `stat` for a file, one `GET` for Redis) and loads the
//! list only when the version changed, so lookups on the request path are a hash-set probe in
//! native memory, never a parse — whatever the list's size, and whatever the number of pooled
//! instances (finding 13 of the first outside review).
//!
//! Contact with a shared store must be recent: when the version could not be confirmed for
//! `max_staleness`, lookups answer `unavailable` (fail closed) until it can. A list whose content
//! is unusable (a malformed file) keeps the last good list in force, as before.

use super::{Backend, ListVersion, StoreError, StoreMetrics};
use agentgate_engine::revocation::RevocationList;
use agentgate_engine::state::RevocationAnswer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// The revocation list in force on this node.
#[derive(Debug)]
pub struct RevocationMirror {
    list: RwLock<Arc<RevocationList>>,
    version: Mutex<Option<ListVersion>>,
    /// Milliseconds since `started` of the last confirmed contact with the store (0: never).
    contact_ms: AtomicU64,
    started: Instant,
    max_staleness: Option<Duration>,
    generation: AtomicU64,
    failed_loads: AtomicU64,
    last_error: Mutex<Option<String>>,
    stop: AtomicBool,
    metrics: Arc<StoreMetrics>,
}

impl RevocationMirror {
    /// Loads the list once now, then keeps it current from a background thread every `refresh`.
    pub fn start(backend: Arc<dyn Backend>, refresh: Duration, max_staleness: Option<Duration>, metrics: Arc<StoreMetrics>) -> Arc<Self> {
        let mirror = Arc::new(RevocationMirror {
            list: RwLock::new(Arc::new(RevocationList::default())),
            version: Mutex::new(None),
            contact_ms: AtomicU64::new(0),
            started: Instant::now(),
            max_staleness,
            generation: AtomicU64::new(0),
            failed_loads: AtomicU64::new(0),
            last_error: Mutex::new(None),
            stop: AtomicBool::new(false),
            metrics,
        });
        mirror.sync(backend.as_ref());
        let weak = Arc::downgrade(&mirror);
        std::thread::Builder::new()
            .name("agentgate-revocations".into())
            .spawn(move || poll(weak, backend, refresh))
            .map(drop)
            .unwrap_or_else(|e| tracing::error!("could not start the revocation list poller: {e}"));
        mirror
    }

    /// Checks the backend once and loads the list if its version changed.
    pub fn sync(&self, backend: &dyn Backend) {
        let result = backend.revocations_version().and_then(|version| {
            self.contact();
            let known = self.version.lock().ok().and_then(|v| v.clone());
            if known.as_ref() == Some(&version) {
                return Ok(());
            }
            // A shared store whose list went back to version 0 lost it (restarted without
            // persistence): write this node's copy back rather than lift every revocation.
            if let (Ok(0), Some(Ok(floor))) = (version.parse::<u64>(), known.as_deref().map(str::parse::<u64>))
                && floor > 0
            {
                let list = self.list.read().map(|l| Arc::clone(&l)).ok();
                if let Some(list) = list.filter(|l| !l.is_empty()) {
                    if backend.restore_revocations(&list, floor)? {
                        tracing::warn!(entries = list.len(), "the store lost the revocation list (restarted empty?): restored it from this node's copy");
                    }
                    return Ok(());
                }
            }
            let (version, list) = backend.load_revocations()?;
            let entries = list.len();
            if let Ok(mut slot) = self.list.write() {
                *slot = Arc::new(list);
            }
            if let Ok(mut v) = self.version.lock() {
                *v = Some(version);
            }
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            self.metrics.revocation_entries(entries);
            if generation > 1 {
                tracing::info!(entries, generation, backend = backend.kind(), "revocation list reloaded");
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
            }
            Err(e) => self.failed(&e),
        }
    }

    fn contact(&self) {
        // Never 0, which means "never".
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        self.contact_ms.store(ms, Ordering::Release);
    }

    fn failed(&self, e: &StoreError) {
        self.failed_loads.fetch_add(1, Ordering::Relaxed);
        self.metrics.store_error(e);
        let message = e.to_string();
        let changed = self.last_error.lock().map(|mut last| last.replace(message.clone()).as_deref() != Some(message.as_str())).unwrap_or(true);
        if changed {
            tracing::warn!(error = %message, "revocation list not reloaded; the last good list stays in force");
        }
    }

    /// Time since the store last confirmed the list's version, if ever.
    fn since_contact(&self) -> Option<Duration> {
        let ms = self.contact_ms.load(Ordering::Acquire);
        (ms > 0).then(|| self.started.elapsed().saturating_sub(Duration::from_millis(ms)))
    }

    /// Looks up a call's canonical revocation ids.
    pub fn lookup(&self, ids: &[String], now: u64) -> RevocationAnswer {
        if let Some(max) = self.max_staleness {
            match self.since_contact() {
                None => return RevocationAnswer::Unavailable("the shared revocation list has not been loaded yet".into()),
                Some(age) if age > max => {
                    return RevocationAnswer::Unavailable(format!(
                        "the shared revocation list was last confirmed current {} ms ago, more than `revocation_max_staleness_ms` ({} ms)",
                        age.as_millis(),
                        max.as_millis()
                    ));
                }
                Some(_) => {}
            }
        }
        self.lookup_last_good(ids, now)
    }

    /// Looks up ids in the last list loaded, however old.
    pub fn lookup_last_good(&self, ids: &[String], now: u64) -> RevocationAnswer {
        let list = self.list.read().map(|l| Arc::clone(&l));
        match list {
            Ok(list) => list.lookup(ids, now).map_or(RevocationAnswer::Clear, RevocationAnswer::Revoked),
            Err(_) => RevocationAnswer::Unavailable("the revocation list lock is poisoned".into()),
        }
    }

    /// Entries in force.
    pub fn entries(&self) -> usize {
        self.list.read().map(|l| l.len()).unwrap_or(0)
    }

    /// Lists loaded so far (1 after the first load).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Version checks or loads that failed.
    pub fn failed_loads(&self) -> u64 {
        self.failed_loads.load(Ordering::Relaxed)
    }

    /// The error of the last attempt, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// What `/healthz` shows.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "entries": self.entries(),
            "generation": self.generation(),
            "confirmed_ms_ago": self.since_contact().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "max_staleness_ms": self.max_staleness.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "last_error": self.last_error(),
        })
    }
}

impl Drop for RevocationMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The poller: ends when the mirror is dropped.
fn poll(mirror: Weak<RevocationMirror>, backend: Arc<dyn Backend>, refresh: Duration) {
    loop {
        std::thread::sleep(refresh);
        let Some(mirror) = mirror.upgrade() else { return };
        if mirror.stop.load(Ordering::Acquire) {
            return;
        }
        mirror.sync(backend.as_ref());
    }
}
