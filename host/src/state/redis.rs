//! The `redis` backend: Valkey or Redis shared by every node of a deployment.
//!
//! - Proofs: one atomic round trip per proof — a Lua script (`EVALSHA`) that refuses a known id,
//!   refuses a key over its per-key bound, and otherwise `SET`s the id with a relative expiry
//!   (`PX`), so the store's clock never matters. Two nodes racing on one proof get exactly one
//!   `fresh`.
//! - Revocations: a hash (canonical id → expiry) and a version counter, changed together by a
//!   script; nodes poll the version (`GET`) and reload the hash when it moved.
//! - Safety: an evicted proof id would be a silent replay, so every new connection checks that
//!   `maxmemory-policy` is `noeviction`; a full store then refuses writes (`OOM`), which reads as
//!   `unavailable` — fail closed.
//! - Timeouts: every round trip has `timeout_ms` (below the call budget), every connection
//!   `connect_timeout_ms`; a connection that saw any error is discarded, never reused (a late
//!   reply would otherwise answer the next command).

use super::{Backend, ListVersion, StoreError, StoreMetrics};
use crate::config::StateSection;
use agentgate_engine::revocation::{RevocationId, RevocationList};
use agentgate_engine::state::{ProofAnswer, ProofUse};
use std::sync::Arc;
use std::time::Duration;

/// Checks and records one proof use. KEYS: the proof id, the key's counter. ARGV: lifetime in
/// ms, the per-key bound. Returns 1 (fresh), 0 (replayed) or -1 (the key is at its bound). The
/// counter lives as long as the first proof of its window, so it counts the key's live proofs.
const REMEMBER_PROOF: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local live = tonumber(redis.call('GET', KEYS[2]) or '0')
if live >= tonumber(ARGV[2]) then return -1 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return 1
";

/// Adds a revocation and moves the version. KEYS: the hash, the version. ARGV: id, entry.
const REVOKE: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
";

/// Removes a revocation and moves the version if it was there. Returns 1 if removed.
const UNREVOKE: &str = r"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 then redis.call('INCR', KEYS[2]) end
return removed
";

/// Keeps the newer of two verified status lists. KEYS: the list. ARGV: token, iat, fetched,
/// lifetime in seconds. Returns the token and fetch time kept.
const OFFER_STATUS_LIST: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'iat', 'token', 'fetched')
local iat, new_iat = tonumber(cur[1]), tonumber(ARGV[2])
if iat and (iat > new_iat or (iat == new_iat and cur[2] ~= ARGV[1])) then return {cur[2], cur[3]} end
redis.call('HSET', KEYS[1], 'iat', ARGV[2], 'token', ARGV[1], 'fetched', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {ARGV[1], ARGV[3]}
";

/// A pooled connection, discarded after any error.
struct Conn {
    inner: redis::Connection,
    broken: bool,
}

/// Opens connections with timeouts and checks the store's eviction policy on each.
#[derive(Debug, Clone)]
struct Connector {
    client: redis::Client,
    connect_timeout: Duration,
    timeout: Duration,
    require_noeviction: bool,
}

impl r2d2::ManageConnection for Connector {
    type Connection = Conn;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<Conn, redis::RedisError> {
        let mut inner = self.client.get_connection_with_timeout(self.connect_timeout)?;
        inner.set_read_timeout(Some(self.timeout))?;
        inner.set_write_timeout(Some(self.timeout))?;
        if self.require_noeviction {
            let policy: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query(&mut inner)?;
            match policy.get(1).map(String::as_str) {
                Some("noeviction") => {}
                other => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "the store may evict keys",
                        format!(
                            "its `maxmemory-policy` is `{}`; an evicted proof id would be a silent replay, so agentgate needs `noeviction` \
                             (or set `[state] require_noeviction = false` for a store known not to evict)",
                            other.unwrap_or("unknown")
                        ),
                    )));
                }
            }
        }
        Ok(Conn { inner, broken: false })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query::<String>(&mut conn.inner).map(drop)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || !redis::ConnectionLike::is_open(&conn.inner)
    }
}

/// A Redis (or Valkey) store.
pub struct RedisBackend {
    pool: r2d2::Pool<Connector>,
    /// For one fresh connection past the pool, after a pooled one turned out dead.
    connector: Connector,
    keys: Keys,
    timeout: Duration,
    per_key: u32,
    remember: redis::Script,
    revoke: redis::Script,
    unrevoke: redis::Script,
    offer_status_list: redis::Script,
    /// How long a shared status list is kept without a new offer.
    status_list_keep_secs: u64,
    /// Shown in errors and `/healthz`: the URL without credentials (it never has any).
    url: String,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").field("url", &self.url).field("prefix", &self.keys.prefix).finish_non_exhaustive()
    }
}

/// The keys of one deployment.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn proof(&self, proof: &ProofUse<'_>) -> String {
        format!("{}proof:{}:{}", self.prefix, proof.key_thumbprint, proof.jti_hash)
    }
    fn proofs_of_key(&self, thumbprint: &str) -> String {
        format!("{}proofs-per-key:{thumbprint}", self.prefix)
    }
    fn revocations(&self) -> String {
        format!("{}revocations", self.prefix)
    }
    fn revocations_version(&self) -> String {
        format!("{}revocations:version", self.prefix)
    }
    fn status_list(&self, uri: &str) -> String {
        // Hashed: a URI may be long and hold anything.
        format!("{}status-list:{}", self.prefix, crate::component::cache::hex_digest(uri.as_bytes()))
    }
}

impl RedisBackend {
    /// Connects to the store in `section`. A store that is down does not stop the start (calls
    /// fail closed until it is back); a store that may evict keys does.
    pub fn connect(section: &StateSection, metrics: Arc<StoreMetrics>) -> anyhow::Result<Self> {
        let url = section.url.clone().ok_or_else(|| anyhow::anyhow!("`[state] url` is required for the redis backend"))?;
        if url.starts_with("rediss://") || url.starts_with("valkeys://") {
            // Another part of the process may have installed it already; either way one is set.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = client(section, &url)?;
        let timeout = Duration::from_millis(section.timeout_ms);
        let connector =
            Connector { client, connect_timeout: Duration::from_millis(section.connect_timeout_ms), timeout, require_noeviction: section.require_noeviction };
        let pool = r2d2::Pool::builder()
            .max_size(section.pool_size)
            .min_idle(Some(0))
            // A checkout waits at most one round trip's budget for a connection.
            .connection_timeout(timeout.max(Duration::from_millis(section.connect_timeout_ms)))
            // Broken connections are detected on return (`has_broken`); a PING per checkout
            // would double every round trip.
            .test_on_check_out(false)
            .error_handler(Box::new(ErrorLog { metrics }))
            .build_unchecked(connector.clone());
        let backend = RedisBackend {
            pool,
            connector,
            keys: Keys { prefix: section.key_prefix.clone() },
            timeout,
            per_key: section.max_proofs_per_key,
            remember: redis::Script::new(REMEMBER_PROOF),
            revoke: redis::Script::new(REVOKE),
            unrevoke: redis::Script::new(UNREVOKE),
            offer_status_list: redis::Script::new(OFFER_STATUS_LIST),
            status_list_keep_secs: section.status_list_max_age_secs,
            url,
        };
        // Fail fast on what a restart cannot fix; start anyway when the store is only down.
        match backend.check_health() {
            Ok(()) => {}
            Err(StoreError::Other(message)) if message.contains("maxmemory-policy") => anyhow::bail!("`{}`: {message}", backend.url),
            Err(e) => tracing::warn!(url = %backend.url, error = %e, "the store is unavailable at start; calls are denied (`unavailable`) until it answers"),
        }
        Ok(backend)
    }

    /// Runs `op` on a pooled connection; any error discards the connection. A pooled connection
    /// found dead (the store restarted, a proxy dropped it) is retried once on a fresh one, so a
    /// store's return costs no failed calls; a timeout is never retried (the budget is spent).
    fn with_conn<T>(&self, op: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        let mut conn = self.pool.get().map_err(|e| self.pool_error(&e))?;
        let e = match op(&mut conn.inner) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        conn.broken = true;
        drop(conn);
        if e.is_timeout() || !(e.is_connection_dropped() || e.is_io_error()) {
            return Err(self.classify(&e));
        }
        use r2d2::ManageConnection as _;
        let mut fresh = self.connector.connect().map_err(|e| self.classify(&e))?;
        op(&mut fresh.inner).map_err(|e| self.classify(&e))
    }

    fn pool_error(&self, e: &r2d2::Error) -> StoreError {
        // r2d2 reports a checkout that waited out its budget; the cause (refused, policy…) went to
        // the error handler. Name the most useful one.
        let text = e.to_string();
        if text.contains("maxmemory-policy") {
            StoreError::Other(text)
        } else {
            StoreError::Connection(format!("no connection to `{}` within {} ms ({text})", self.url, self.pool.connection_timeout().as_millis()))
        }
    }

    fn classify(&self, e: &redis::RedisError) -> StoreError {
        if e.is_timeout() {
            StoreError::Timeout(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
        } else if e.code() == Some("OOM") {
            StoreError::Full(e.to_string())
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            StoreError::Connection(format!("`{}`: {e}", self.url))
        } else {
            StoreError::Other(e.to_string())
        }
    }

    /// The revocations hash as a list.
    fn parse_revocations(fields: Vec<(String, String)>) -> Result<RevocationList, StoreError> {
        let mut entries = Vec::with_capacity(fields.len());
        for (id, entry) in fields {
            let id = RevocationId::from_canonical(&id).map_err(|e| StoreError::Content(format!("the store's revocation list: {e}")))?;
            let entry: serde_json::Value =
                serde_json::from_str(&entry).map_err(|e| StoreError::Content(format!("the store's revocation entry for {}: {e}", id.describe())))?;
            let expires = entry.get("expires").and_then(serde_json::Value::as_u64);
            entries.push((id, expires));
        }
        Ok(RevocationList::from_entries(entries))
    }
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn remember_proof(&self, proof: &ProofUse<'_>) -> Result<ProofAnswer, StoreError> {
        let ttl_ms = u64::from(proof.ttl_secs.max(1)).saturating_mul(1000);
        let answer: i64 = self.with_conn(|conn| {
            self.remember.key(self.keys.proof(proof)).key(self.keys.proofs_of_key(proof.key_thumbprint)).arg(ttl_ms).arg(self.per_key).invoke(conn)
        })?;
        Ok(match answer {
            1 => ProofAnswer::Fresh,
            0 => ProofAnswer::Replayed,
            _ => ProofAnswer::KeyLimit(self.per_key),
        })
    }

    fn revocations_version(&self) -> Result<ListVersion, StoreError> {
        let version: Option<u64> = self.with_conn(|conn| redis::cmd("GET").arg(self.keys.revocations_version()).query(conn))?;
        Ok(version.unwrap_or(0).to_string())
    }

    fn load_revocations(&self) -> Result<(ListVersion, RevocationList), StoreError> {
        // One transaction: the version and the list it names.
        let (version, fields): (Option<u64>, Vec<(String, String)>) = self
            .with_conn(|conn| redis::pipe().atomic().cmd("GET").arg(self.keys.revocations_version()).cmd("HGETALL").arg(self.keys.revocations()).query(conn))?;
        Ok((version.unwrap_or(0).to_string(), Self::parse_revocations(fields)?))
    }

    fn revoke(&self, id: &RevocationId, expires: Option<u64>) -> Result<(), StoreError> {
        let entry = serde_json::json!({ "expires": expires, "at": crate::mint::now() }).to_string();
        self.with_conn(|conn| self.revoke.key(self.keys.revocations()).key(self.keys.revocations_version()).arg(id.canonical()).arg(&entry).invoke::<i64>(conn))
            .map(drop)
    }

    fn unrevoke(&self, id: &RevocationId) -> Result<bool, StoreError> {
        let removed: i64 =
            self.with_conn(|conn| self.unrevoke.key(self.keys.revocations()).key(self.keys.revocations_version()).arg(id.canonical()).invoke(conn))?;
        Ok(removed == 1)
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| redis::cmd("PING").query::<String>(conn)).map(drop)
    }

    fn restore_revocations(&self, list: &RevocationList, version_floor: u64) -> Result<bool, StoreError> {
        let now = crate::mint::now();
        let entries: Vec<(String, String)> =
            list.entries().map(|(id, expires)| (id.to_owned(), serde_json::json!({ "expires": expires, "at": now, "restored": true }).to_string())).collect();
        // Every node that noticed writes its copy (idempotent: the union survives); the first to
        // set the version makes the list current for all.
        for chunk in entries.chunks(1000) {
            self.with_conn(|conn| redis::cmd("HSET").arg(self.keys.revocations()).arg(chunk).query::<i64>(conn))?;
        }
        let set: Option<String> =
            self.with_conn(|conn| redis::cmd("SET").arg(self.keys.revocations_version()).arg(version_floor.saturating_add(1)).arg("NX").query(conn))?;
        Ok(set.is_some())
    }

    fn shared_status_list(&self, uri: &str) -> Result<Option<(String, u64)>, StoreError> {
        let (token, fetched): (Option<String>, Option<u64>) =
            self.with_conn(|conn| redis::cmd("HMGET").arg(self.keys.status_list(uri)).arg("token").arg("fetched").query(conn))?;
        Ok(token.zip(fetched))
    }

    fn offer_status_list(&self, uri: &str, token: &str, issued_at: u64, fetched_unix: u64) -> Result<Option<(String, u64)>, StoreError> {
        let (kept, fetched): (String, u64) = self.with_conn(|conn| {
            self.offer_status_list.key(self.keys.status_list(uri)).arg(token).arg(issued_at).arg(fetched_unix).arg(self.status_list_keep_secs).invoke(conn)
        })?;
        Ok(Some((kept, fetched)))
    }
}

/// Logs (once per distinct message) why connections could not be opened, and counts it.
#[derive(Debug)]
struct ErrorLog {
    metrics: Arc<StoreMetrics>,
}

impl r2d2::HandleError<redis::RedisError> for ErrorLog {
    fn handle_error(&self, error: redis::RedisError) {
        let kind =
            if error.to_string().contains("maxmemory-policy") { StoreError::Other(error.to_string()) } else { StoreError::Connection(error.to_string()) };
        self.metrics.store_error(&kind);
        tracing::warn!(error = %error, "could not open a connection to the store");
    }
}

/// A client for `url` with the credentials from files or the environment, and the extra CA.
fn client(section: &StateSection, url: &str) -> anyhow::Result<redis::Client> {
    use redis::IntoConnectionInfo as _;
    let mut info = url.into_connection_info().map_err(|e| anyhow::anyhow!("`[state] url` `{url}`: {e}"))?;
    let secret = |path: &std::path::Path| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(text.trim_end_matches(['\n', '\r']).to_owned())
    };
    let mut redis_settings = info.redis_settings().clone();
    if let Some(path) = &section.username_file {
        redis_settings = redis_settings.set_username(secret(path)?);
    }
    let password = match (&section.password_file, &section.password_env) {
        (Some(_), Some(_)) => anyhow::bail!("`[state]` names both `password_file` and `password_env`; choose one"),
        (Some(path), None) => Some(secret(path)?),
        (None, Some(var)) => Some(std::env::var(var).map_err(|_| anyhow::anyhow!("`[state] password_env`: the environment variable `{var}` is not set"))?),
        (None, None) => None,
    };
    if let Some(password) = password {
        redis_settings = redis_settings.set_password(password);
    }
    info = info.set_redis_settings(redis_settings);
    match &section.ca_file {
        None => Ok(redis::Client::open(info)?),
        Some(ca) => {
            let root_cert = std::fs::read(ca).map_err(|e| anyhow::anyhow!("`[state] ca_file` {}: {e}", ca.display()))?;
            Ok(redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) })?)
        }
    }
}
