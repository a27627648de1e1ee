//! Token status lists on the host side: fetched from the `uri` a token names, kept, refreshed in
//! the background, and shared through the deployment's store so a fleet fetches each list once
//! per refresh rather than once per node.
//!
//! The component verifies every list it is given. The host verifies too — with the same engine
//! code, natively — before it keeps a list or offers it to the store: a forged or broken list is
//! never shared, and never replaces a good one. Timing follows the list: refreshed after its
//! `ttl` (or `status_list_refresh_secs`), usable until its `exp` and at most
//! `status_list_max_age_secs` after the last successful fetch; past that, calls fail closed
//! (`unavailable`), and until then the last good list stays in force when a fetch fails.

use super::{Backend, StoreError};
use crate::config::StateSection;
use agentgate_engine::jose::es256::SignatureVerifier;
use agentgate_engine::state::StatusListAnswer;
use agentgate_engine::status_list::{self, ListCheck};
use agentgate_engine::trust::TrustStore;
use agentgate_engine::{EngineConfig, Settings, TrustConfig};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most distinct lists kept (a deployment has a handful; the bound stops a flood of URIs).
const MAX_LISTS: usize = 1024;
/// Budget of one HTTP fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two fetches of one list, so a failing issuer is not asked on every call.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a list is checked with: the deployment's trusted issuers and limits.
#[derive(Debug)]
struct Verification {
    trust: TrustStore,
    settings: Settings,
}

/// One kept list.
#[derive(Debug, Clone)]
struct Kept {
    token: Arc<str>,
    digest: String,
    /// When this copy was fetched (from the issuer, or by whichever node stored it).
    fetched_unix: u64,
    /// Refresh once older than this.
    refresh_after: Duration,
    /// The list's `exp`, if any.
    expires_unix: Option<u64>,
}

/// The status lists of a deployment.
pub struct StatusLists {
    backend: Arc<dyn Backend>,
    verification: RwLock<Option<Arc<Verification>>>,
    verifier: Box<dyn SignatureVerifier>,
    kept: Mutex<HashMap<String, Kept>>,
    /// URIs being fetched, and a signal when one finishes.
    fetching: Mutex<HashSet<String>>,
    /// When each list's last fetch started.
    attempts: Mutex<HashMap<String, Instant>>,
    fetched: Condvar,
    last_error: Mutex<HashMap<String, String>>,
    refresh: Duration,
    max_age: Duration,
    first_wait: Duration,
}

impl std::fmt::Debug for StatusLists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusLists").field("refresh", &self.refresh).field("max_age", &self.max_age).finish_non_exhaustive()
    }
}

impl StatusLists {
    /// Lists for a deployment with `backend` (shared copies) and the bounds in `section`.
    pub fn new(backend: Arc<dyn Backend>, section: &StateSection) -> Arc<Self> {
        Arc::new(StatusLists {
            backend,
            verification: RwLock::new(None),
            verifier: Box::new(crate::native_crypto::AwsLcVerifier),
            kept: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashSet::new()),
            attempts: Mutex::new(HashMap::new()),
            fetched: Condvar::new(),
            last_error: Mutex::new(HashMap::new()),
            refresh: Duration::from_secs(section.status_list_refresh_secs),
            max_age: Duration::from_secs(section.status_list_max_age_secs),
            first_wait: Duration::from_millis(section.timeout_ms),
        })
    }

    /// Takes the trust material and limits of the configuration in force (at start and on every
    /// reload).
    pub fn configure(&self, config: &EngineConfig) -> Result<(), String> {
        let trust: TrustConfig = serde_json::from_str(&config.trust_json).map_err(|e| format!("trust: {e}"))?;
        let settings: Settings = serde_json::from_str(&config.settings_json).map_err(|e| format!("settings: {e}"))?;
        let verification = Verification { trust: TrustStore::from_config(&trust)?, settings };
        if let Ok(mut slot) = self.verification.write() {
            *slot = Some(Arc::new(verification));
        }
        Ok(())
    }

    /// The answer for the component: the list at `uri`, or `unchanged` if the component holds
    /// the version with `known_digest`.
    pub fn answer(self: &Arc<Self>, uri: &str, known_digest: Option<&str>) -> StatusListAnswer {
        let kept = self.kept(uri);
        let kept = match kept {
            Some(kept) => {
                if age(kept.fetched_unix) > kept.refresh_after {
                    self.fetch_in_background(uri);
                }
                kept
            }
            None => {
                // First sight: fetch now, and wait a moment for it (within the call budget).
                self.fetch_in_background(uri);
                match self.wait_for(uri) {
                    Some(kept) => kept,
                    None => {
                        let why = self.last_error(uri).unwrap_or_else(|| "it is being fetched for the first time; retry shortly".into());
                        return StatusListAnswer::Unavailable(why);
                    }
                }
            }
        };
        if age(kept.fetched_unix) > self.max_age {
            let why = self.last_error(uri).map(|e| format!(": {e}")).unwrap_or_default();
            return StatusListAnswer::Unavailable(format!(
                "the last good copy was fetched {} s ago, more than `status_list_max_age_secs` ({} s){why}",
                age(kept.fetched_unix).as_secs(),
                self.max_age.as_secs()
            ));
        }
        if kept.expires_unix.is_some_and(|exp| now_unix() >= exp) {
            return StatusListAnswer::Unavailable("the newest copy has expired (`exp`), and no newer one could be fetched".into());
        }
        if known_digest == Some(kept.digest.as_str()) { StatusListAnswer::Unchanged } else { StatusListAnswer::Current(kept.token.to_string()) }
    }

    fn kept(&self, uri: &str) -> Option<Kept> {
        self.kept.lock().ok().and_then(|k| k.get(uri).cloned())
    }

    fn last_error(&self, uri: &str) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.get(uri).cloned())
    }

    fn wait_for(&self, uri: &str) -> Option<Kept> {
        let deadline = Instant::now() + self.first_wait;
        let mut fetching = self.fetching.lock().ok()?;
        while fetching.contains(uri) {
            let left = deadline.checked_duration_since(Instant::now())?;
            fetching = self.fetched.wait_timeout(fetching, left).ok()?.0;
        }
        drop(fetching);
        self.kept(uri)
    }

    /// Starts one fetch of `uri` unless one is under way or started less than `RETRY_AFTER` ago.
    fn fetch_in_background(self: &Arc<Self>, uri: &str) {
        if let Ok(mut attempts) = self.attempts.lock() {
            if attempts.get(uri).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
                return;
            }
            if attempts.len() >= MAX_LISTS {
                attempts.clear();
            }
            attempts.insert(uri.to_owned(), Instant::now());
        }
        let Ok(mut fetching) = self.fetching.lock() else { return };
        if !fetching.insert(uri.to_owned()) {
            return;
        }
        drop(fetching);
        let lists = Arc::clone(self);
        let owned = uri.to_owned();
        let spawned = std::thread::Builder::new().name("agentgate-status-list".into()).spawn(move || {
            let result = lists.fetch(&owned);
            lists.record(&owned, result);
        });
        if let Err(e) = spawned {
            self.record(uri, Err(format!("could not start a fetch: {e}")));
        }
    }

    fn record(&self, uri: &str, result: Result<Kept, String>) {
        match result {
            Ok(kept) => {
                if let Ok(mut map) = self.kept.lock() {
                    if map.len() >= MAX_LISTS && !map.contains_key(uri) {
                        map.clear();
                    }
                    map.insert(uri.to_owned(), kept);
                }
                if let Ok(mut errors) = self.last_error.lock() {
                    errors.remove(uri);
                }
            }
            Err(e) => {
                tracing::warn!(uri = %crate::jwks_fetch::redact_url(uri), error = %e, "status list not refreshed; the last good copy stays in force until its maximum age");
                if let Ok(mut errors) = self.last_error.lock() {
                    errors.insert(uri.to_owned(), e);
                }
            }
        }
        if let Ok(mut fetching) = self.fetching.lock() {
            fetching.remove(uri);
        }
        self.fetched.notify_all();
    }

    /// A current copy: the store's, when another node fetched it recently, else the issuer's.
    /// Only a list that verifies is kept or shared, and a shared copy is only ever replaced by a
    /// newer one (`iat`).
    fn fetch(&self, uri: &str) -> Result<Kept, String> {
        let verification = self.verification.read().ok().and_then(|v| v.clone()).ok_or("no configuration to verify status lists with")?;
        let refresh = self.refresh;
        if let Some((token, fetched_unix)) = self.backend.shared_status_list(uri).map_err(|e| e.to_string())?
            && let Ok(kept) = self.verify(&verification, uri, &token, fetched_unix)
            && age(fetched_unix) < kept.refresh_after.min(refresh)
        {
            return Ok(kept);
        }
        let token = fetch_https(uri, verification.settings.limits.max_status_list_token_bytes)?;
        let fetched_unix = now_unix();
        let kept = self.verify(&verification, uri, &token, fetched_unix)?;
        let issued_at = status_list::unverified_issued_at(&token).unwrap_or(0);
        match self.backend.offer_status_list(uri, &token, issued_at, fetched_unix) {
            // The store kept a newer list another node fetched: use that one.
            Ok(Some((winner, winner_fetched))) if winner != token => self.verify(&verification, uri, &winner, winner_fetched),
            Ok(_) => Ok(kept),
            Err(e @ StoreError::Full(_)) | Err(e @ StoreError::Other(_)) => {
                tracing::warn!(error = %e, "could not share a status list through the store; this node keeps its copy");
                Ok(kept)
            }
            Err(_) => Ok(kept),
        }
    }

    fn verify(&self, verification: &Verification, uri: &str, token: &str, fetched_unix: u64) -> Result<Kept, String> {
        // The host does not know which token named `uri`, so not which issuer's policy applies:
        // it accepts a list signed by any issuer that some issuer's policy trusts for status
        // lists (its `iss` when it names one, else the one holding its `kid`). The component
        // then checks the list against the exact issuer of the token at hand.
        let candidates: Vec<&str> =
            verification.trust.issuer_names().filter_map(|name| verification.trust.issuer_policy(name)).map(|p| p.status_issuer.as_str()).collect();
        let kid = status_list::unverified_kid(token);
        let issuer = match status_list::unverified_issuer(token) {
            Some(iss) if candidates.contains(&iss.as_str()) => iss,
            Some(iss) => return Err(format!("the list's `iss` `{}` is no configured status list issuer", iss.escape_default())),
            None => candidates
                .iter()
                .find(|name| kid.as_deref().is_some_and(|kid| verification.trust.issuer(name).is_some_and(|keys| keys.get(kid).is_some())))
                .map(|name| (*name).to_owned())
                .ok_or("no configured status list issuer has the list's `kid`")?,
        };
        let keys = verification.trust.issuer(&issuer).ok_or("no keys for the status list's issuer")?;
        let limits = &verification.settings.limits;
        let check = ListCheck {
            uri,
            issuer: &issuer,
            keys,
            now: i64::try_from(now_unix()).unwrap_or(i64::MAX),
            skew_secs: i64::try_from(limits.clock_skew_secs).unwrap_or(0),
            max_token_bytes: limits.max_status_list_token_bytes,
            max_list_bytes: limits.max_status_list_bytes,
        };
        let list = status_list::verify(token, check, self.verifier.as_ref())?;
        let refresh_after = list.ttl_secs.map_or(self.refresh, |ttl| Duration::from_secs(ttl).min(self.refresh));
        Ok(Kept {
            token: Arc::from(token),
            digest: list.digest,
            fetched_unix,
            refresh_after,
            expires_unix: list.expires_at.and_then(|e| u64::try_from(e).ok()),
        })
    }

    /// What `/healthz` shows.
    pub fn status(&self) -> serde_json::Value {
        let kept = self
            .kept
            .lock()
            .map(|k| k.iter().map(|(uri, kept)| (crate::jwks_fetch::redact_url(uri), age(kept.fetched_unix).as_secs())).collect::<Vec<_>>())
            .unwrap_or_default();
        let errors =
            self.last_error.lock().map(|e| e.iter().map(|(uri, e)| (crate::jwks_fetch::redact_url(uri), e.clone())).collect::<Vec<_>>()).unwrap_or_default();
        serde_json::json!({
            "lists": kept.into_iter().map(|(uri, age)| serde_json::json!({"uri": uri, "fetched_secs_ago": age})).collect::<Vec<_>>(),
            "errors": errors.into_iter().map(|(uri, e)| serde_json::json!({"uri": uri, "error": e})).collect::<Vec<_>>(),
        })
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn age(fetched_unix: u64) -> Duration {
    Duration::from_secs(now_unix().saturating_sub(fetched_unix))
}

/// GET `uri` with the status list media type: `https://` (plain `http://` only to loopback), no
/// redirects (a redirect could lead anywhere), a size bound and a timeout.
fn fetch_https(uri: &str, max_bytes: usize) -> Result<String, String> {
    let shown = crate::jwks_fetch::redact_url(uri);
    crate::jwks_fetch::check_url(uri)?;
    let agent = ureq::Agent::config_builder().timeout_global(Some(FETCH_TIMEOUT)).max_redirects(0).http_status_as_error(false).build().new_agent();
    let mut response = agent.get(uri).header("accept", "application/statuslist+jwt").call().map_err(|e| format!("fetching `{shown}`: {e}"))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(format!("fetching `{shown}`: the server answered {status} (a redirect); status lists are fetched from the `uri` the token names only"));
    }
    if !status.is_success() {
        return Err(format!("fetching `{shown}`: the server answered {status}"));
    }
    let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    response.body_mut().with_config().limit(limit).read_to_string().map(|body| body.trim().to_owned()).map_err(|e| format!("reading `{shown}`: {e}"))
}
