//! State a deployment keeps beyond one call — single-use DPoP proof ids, the revocation list,
//! token status lists — behind one small trait, `Backend`, with one file per backend: `memory`
//! (one process; the embedded default) and `redis` (Valkey/Redis, shared by every node of a
//! fleet). A third backend is one more file.
//!
//! The engine reaches this state through its `SharedState` port (the WIT `state` import).
//! `DeploymentState` implements that port for `agentgate serve` and `agentgate gateway run`: it
//! asks the backend for proofs (one atomic round trip each), answers revocation lookups from a
//! local mirror kept in step off the request path, and turns a store that cannot answer into
//! `unavailable` — or, when the operator opted in, into a metered, logged local-only check.

pub mod memory;
pub mod metrics;
mod mirror;
pub mod redis;
pub mod status_lists;

use crate::config::{BackendKind, OnUnavailable, StateSection};
use agentgate_engine::revocation::{RevocationId, RevocationList};
use agentgate_engine::state::{ProofAnswer, ProofLimits, ProofMemory, ProofUse, RevocationAnswer, SharedState, StatusListAnswer};
pub use metrics::StoreMetrics;
pub use mirror::RevocationMirror;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a store could not answer. The text never contains a credential or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within its timeout (a hung or overloaded server).
    #[error("the store did not answer within {0} ms")]
    Timeout(u64),
    /// The store could not be reached or the connection broke.
    #[error("the store cannot be reached: {0}")]
    Connection(String),
    /// The store refused a write because it is out of memory (`maxmemory` with `noeviction`).
    #[error("the store is full: {0}")]
    Full(String),
    /// The store's content is unusable (e.g. a malformed revocation file); the last good copy
    /// stays in force.
    #[error("{0}")]
    Content(String),
    /// Anything else the store answered with.
    #[error("the store answered with an error: {0}")]
    Other(String),
}

impl StoreError {
    /// The error's kind, as `/metrics` labels it.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout(_) => "timeout",
            StoreError::Connection(_) => "connection",
            StoreError::Full(_) => "full",
            StoreError::Content(_) => "content",
            StoreError::Other(_) => "other",
        }
    }

    /// True if the store itself could not be consulted (as opposed to holding bad content).
    pub fn is_outage(&self) -> bool {
        !matches!(self, StoreError::Content(_))
    }
}

/// A version of the revocation list: changes whenever the list does.
pub type ListVersion = String;

/// Where a deployment's shared state lives.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `memory` or `redis`, for `/healthz` and `/metrics`.
    fn kind(&self) -> &'static str;

    /// Remembers a proof use in one atomic step (check and insert), bounded per key.
    fn remember_proof(&self, proof: &ProofUse<'_>) -> Result<ProofAnswer, StoreError>;

    /// The current version of the revocation list (cheap: polled every few hundred ms).
    fn revocations_version(&self) -> Result<ListVersion, StoreError>;

    /// The whole revocation list and its version.
    fn load_revocations(&self) -> Result<(ListVersion, RevocationList), StoreError>;

    /// Adds (or replaces) a revocation, with an optional expiry (unix seconds).
    fn revoke(&self, id: &RevocationId, expires: Option<u64>) -> Result<(), StoreError>;

    /// Removes a revocation; false if it was not there.
    fn unrevoke(&self, id: &RevocationId) -> Result<bool, StoreError>;

    /// A round trip that proves the store is usable now (for `/healthz`).
    fn check_health(&self) -> Result<(), StoreError>;

    /// Proof ids held, when known without scanning the store (for `/metrics`).
    fn proofs_held(&self) -> Option<usize> {
        None
    }

    /// Writes `list` back into a store that lost it (restarted empty), as a version above
    /// `version_floor`, unless another node did so first. False when nothing was written.
    fn restore_revocations(&self, _list: &RevocationList, _version_floor: u64) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The status list at `uri` another node fetched and verified, with when it was fetched
    /// (unix seconds). A store that shares nothing answers `None`.
    fn shared_status_list(&self, _uri: &str) -> Result<Option<(String, u64)>, StoreError> {
        Ok(None)
    }

    /// Offers a verified status list (issued at `issued_at`) to the other nodes. The store keeps
    /// it unless it holds a newer one (by `iat`), and answers with the copy it kept.
    fn offer_status_list(&self, _uri: &str, _token: &str, _issued_at: u64, _fetched_unix: u64) -> Result<Option<(String, u64)>, StoreError> {
        Ok(None)
    }
}

/// The state of a running deployment: the engine's `SharedState` for `serve` and `gateway run`.
#[derive(Debug)]
pub struct DeploymentState {
    backend: Arc<dyn Backend>,
    mirror: Arc<RevocationMirror>,
    status_lists: Arc<status_lists::StatusLists>,
    /// Local-only proof memory, used while the store is unavailable if the operator chose
    /// `on_unavailable = "local"`.
    fallback: Option<ProofMemory>,
    metrics: Arc<StoreMetrics>,
    /// When the last "degraded" warning was logged (ms since `started`), to log once a second.
    last_degraded_log_ms: AtomicU64,
    started: Instant,
    section: StateSection,
}

impl DeploymentState {
    /// Opens the backend configured in `section` (with the revocation file of the memory
    /// backend) and starts the revocation mirror.
    pub fn open(section: &StateSection, revocations_file: Option<PathBuf>) -> anyhow::Result<Arc<Self>> {
        let metrics = Arc::new(StoreMetrics::default());
        let backend = open_backend(section, revocations_file, Arc::clone(&metrics))?;
        Ok(Self::with_backend(backend, section, metrics))
    }

    /// A deployment state over an opened backend.
    pub fn with_backend(backend: Arc<dyn Backend>, section: &StateSection, metrics: Arc<StoreMetrics>) -> Arc<Self> {
        // A memory backend reads a local file: there is no store to lose contact with.
        let staleness = (backend.kind() != "memory").then(|| Duration::from_millis(section.revocation_max_staleness_ms));
        let mirror = RevocationMirror::start(Arc::clone(&backend), Duration::from_millis(section.revocation_refresh_ms), staleness, Arc::clone(&metrics));
        let fallback = (section.on_unavailable == OnUnavailable::Local).then(|| ProofMemory::new(proof_limits(section)));
        metrics.set_degraded_allowed(fallback.is_some());
        let status_lists = status_lists::StatusLists::new(Arc::clone(&backend), section);
        Arc::new(DeploymentState {
            backend,
            mirror,
            status_lists,
            fallback,
            metrics,
            last_degraded_log_ms: AtomicU64::new(0),
            started: Instant::now(),
            section: section.clone(),
        })
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The revocation mirror.
    pub fn mirror(&self) -> &Arc<RevocationMirror> {
        &self.mirror
    }

    /// The status lists kept for the deployment; `configure` them with each configuration.
    pub fn status_lists(&self) -> &Arc<status_lists::StatusLists> {
        &self.status_lists
    }

    /// Store metrics.
    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }

    /// The `[state]` section this state was opened with (a reload may not change it).
    pub fn section(&self) -> &StateSection {
        &self.section
    }

    /// What `/healthz` reports about the store, checked now with one round trip.
    pub fn health(&self) -> serde_json::Value {
        let started = Instant::now();
        let check = self.backend.check_health();
        let mirror = self.mirror.status();
        serde_json::json!({
            "backend": self.backend.kind(),
            "reachable": check.is_ok(),
            "error": check.err().map(|e| e.to_string()),
            "check_ms": started.elapsed().as_secs_f64() * 1000.0,
            "on_unavailable": self.section.on_unavailable.as_str(),
            "revocations": mirror,
            "status_lists": self.status_lists.status(),
        })
    }

    fn degraded(&self, what: &str, error: &StoreError) {
        self.metrics.degraded();
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_degraded_log_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= 1000 && self.last_degraded_log_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(error = %error, "{what}: the store is unavailable; deciding with local state only (`on_unavailable = \"local\"`)");
        }
    }
}

impl SharedState for DeploymentState {
    fn remember_proof(&self, proof: &ProofUse<'_>) -> ProofAnswer {
        let started = Instant::now();
        let result = self.backend.remember_proof(proof);
        self.metrics.proof_round_trip(started.elapsed(), result.as_ref().err());
        match (result, &self.fallback) {
            (Ok(answer), _) => answer,
            (Err(e), Some(local)) if e.is_outage() => {
                self.degraded("replay check", &e);
                local.remember(proof)
            }
            (Err(e), _) => ProofAnswer::Unavailable(e.to_string()),
        }
    }

    fn check_revoked(&self, ids: &[String], now: u64) -> RevocationAnswer {
        match self.mirror.lookup(ids, now) {
            RevocationAnswer::Unavailable(why) if self.fallback.is_some() => {
                self.degraded("revocation check", &StoreError::Connection(why));
                self.mirror.lookup_last_good(ids, now)
            }
            answer => answer,
        }
    }

    fn status_list(&self, uri: &str, known_digest: Option<&str>) -> StatusListAnswer {
        self.status_lists.answer(uri, known_digest)
    }
}

/// State for one process that shares nothing (`agentgate check`, tests, benches): proofs in
/// memory, no host revocation list (the engine applies its own), no status lists.
#[derive(Debug, Default)]
pub struct LocalState {
    proofs: ProofMemory,
}

impl LocalState {
    /// Local state with the given proof bounds.
    pub fn with_limits(limits: ProofLimits) -> Self {
        LocalState { proofs: ProofMemory::new(limits) }
    }

    /// Proofs held.
    pub fn len(&self) -> usize {
        self.proofs.len()
    }

    /// True if no proof is held.
    pub fn is_empty(&self) -> bool {
        self.proofs.is_empty()
    }
}

impl SharedState for LocalState {
    fn remember_proof(&self, proof: &ProofUse<'_>) -> ProofAnswer {
        self.proofs.remember(proof)
    }

    fn check_revoked(&self, _ids: &[String], _now: u64) -> RevocationAnswer {
        RevocationAnswer::Clear
    }

    fn status_list(&self, uri: &str, _known_digest: Option<&str>) -> StatusListAnswer {
        StatusListAnswer::Unavailable(format!("no status list source is configured for `{}`", uri.escape_default()))
    }
}

/// Opens the backend `section` names; the memory backend keeps its revocations in
/// `revocations_file`. Used by `serve`, `gateway run` and the `revoke` commands.
pub fn open_backend(section: &StateSection, revocations_file: Option<PathBuf>, metrics: Arc<StoreMetrics>) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(match section.backend {
        BackendKind::Memory => {
            let backend = memory::MemoryBackend::new(proof_limits(section), revocations_file);
            // A file that does not load at start is a configuration error, not an outage.
            backend.load_revocations().map_err(|e| anyhow::anyhow!("{e}"))?;
            Arc::new(backend)
        }
        BackendKind::Redis => {
            if let Some(file) = revocations_file {
                anyhow::bail!(
                    "`revocations = \"{}\"` names a file, but `[state] backend = \"redis\"` keeps the list in the store: \
                     import it once with `agentgate revocations import`, then remove `revocations` from the config",
                    file.display()
                );
            }
            Arc::new(redis::RedisBackend::connect(section, metrics)?)
        }
    })
}

fn proof_limits(section: &StateSection) -> ProofLimits {
    ProofLimits { capacity: section.max_proofs, per_key: section.max_proofs_per_key }
}
