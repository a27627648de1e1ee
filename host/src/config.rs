//! `agentgate.toml`: what the operator writes. Paths are relative to the file. Loading reads every
//! file it names and produces the engine configuration that crosses into the component.

use agentgate_engine::settings::{DpopMode, DpopSettings, IdentitySettings, Limits, NonceSettings};
use agentgate_engine::trust::{IssuerSource, TrustConfig, TrustDomainSource};
use agentgate_engine::{EngineConfig, Settings, SourceText};
use serde::Deserialize;
use std::path::{Component, Path, PathBuf};

/// The schema file every policy directory must contain.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn at(path: &Path, e: impl std::fmt::Display) -> Self {
        ConfigError(format!("{}: {e}", path.display()))
    }
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Audiences that identify this service.
    pub audiences: Vec<String>,
    /// Directory with `*.cedar` files and `schema.cedarschema`.
    pub policies: PathBuf,
    /// Evaluate only the policies whose scope can match a call (default); `false` evaluates every
    /// policy on every call (the same answers, for ruling the index out).
    #[serde(default = "default_policy_index")]
    pub policy_index: bool,
    /// Revocation list (JSON), reloaded when it changes.
    #[serde(default)]
    pub revocations: Option<PathBuf>,
    /// Trusted authorization servers.
    #[serde(default)]
    pub issuers: Vec<IssuerEntry>,
    /// Trusted agent trust domains.
    #[serde(default)]
    pub trust_domains: Vec<TrustDomainEntry>,
    /// Time and size limits.
    #[serde(default)]
    pub limits: Limits,
    /// Proof-of-possession settings.
    #[serde(default)]
    pub dpop: DpopEntry,
    /// Agent identity settings.
    #[serde(default)]
    pub identity: IdentitySettings,
    /// Sandbox limits for the component.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// `agentgate serve`: listener, trusted proxies, size limits.
    #[serde(default)]
    pub server: ServerSection,
    /// Forward-auth route table: HTTP method + path template → Cedar action and resource.
    #[serde(default)]
    pub routes: Vec<agentgate_engine::routing::RouteSpec>,
    /// MCP Streamable-HTTP endpoint, authorized per tool from its `Mcp-Method` / `Mcp-Name`.
    #[serde(default)]
    pub mcp: Option<McpEntry>,
    /// Decision audit log.
    #[serde(default)]
    pub audit: AuditSection,
    /// Where state shared across calls lives: proof ids, the revocation list, status lists.
    #[serde(default)]
    pub state: StateSection,
    /// OAuth Protected Resource Metadata (RFC 9728) for clients that discover the authorization
    /// server from the resource (MCP clients).
    #[serde(default)]
    pub protected_resource: Option<ProtectedResourceSection>,
    /// Signed decision receipts (docs/receipts.md).
    #[serde(default)]
    pub receipts: Option<ReceiptsSection>,
    /// The decision log `agentgate replay` reads (docs/replay.md); off unless configured.
    #[serde(default)]
    pub decision_log: Option<DecisionLogSection>,
}

/// `[decision_log]`: one JSON line per decision that reached the policies, for `agentgate
/// replay`. Read at start: a change takes effect at the next restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogSection {
    /// The file, relative to the configuration file.
    pub path: PathBuf,
    /// Rotate before the file would pass this size (default 64 MiB).
    #[serde(default = "default_log_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept: `path.1` (newest) … `path.keep` (default 5).
    #[serde(default = "default_log_keep")]
    pub keep: u32,
    /// Lines queued for the writer; beyond that lines are dropped (and counted), never waited for.
    #[serde(default = "default_log_queue")]
    pub queue_lines: usize,
}

impl DecisionLogSection {
    /// Where the log goes, its path taken relative to the directory of `config_path`.
    pub fn target(&self, config_path: &Path) -> crate::decision_log::LogTarget {
        crate::decision_log::LogTarget { path: join(config_path.parent().unwrap_or(Path::new("")), &self.path), max_bytes: self.max_bytes, keep: self.keep }
    }
}

fn default_log_max_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_log_keep() -> u32 {
    5
}

fn default_log_queue() -> usize {
    16 * 1024
}

/// `[receipts]`: sign decisions in the host with an ES256 key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsSection {
    /// The private JWK receipts are signed with (`agentgate mint keygen --private-out`).
    pub key: PathBuf,
    /// Public JWKs (or JWKS files) of keys that signed receipts before: still published at
    /// `/.well-known/agentgate-receipt-keys`, so that those receipts keep verifying.
    #[serde(default)]
    pub previous_keys: Vec<PathBuf>,
    /// Which decisions get a receipt: `allows`, `verified` (allows and the denials of calls whose
    /// token verified; the default) or `all`.
    #[serde(default)]
    pub sign: crate::receipts::SignWhen,
}

fn default_policy_index() -> bool {
    true
}

/// `[state]`: the store behind replay protection and revocation (host/src/state/).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    /// `memory` (this process only; the default) or `redis` (Valkey/Redis, shared by a fleet).
    pub backend: BackendKind,
    /// `redis://host:port/db` or `rediss://…` (TLS). No credentials here: see `username_file`,
    /// `password_file`, `password_env`.
    pub url: Option<String>,
    /// File holding the ACL user name (relative to the config file).
    pub username_file: Option<PathBuf>,
    /// File holding the password (relative to the config file).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// PEM file with the CA that signs the server's certificate (`rediss://`), in addition to
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Prefix of every key this deployment writes, so deployments can share one store.
    pub key_prefix: String,
    /// Connections kept open to the store.
    pub pool_size: u32,
    /// Budget of one store round trip, in milliseconds. Must leave room in the call budget
    /// (`[runtime] call_timeout_ms`), so a slow store reads as `unavailable`, not as a timeout.
    pub timeout_ms: u64,
    /// Budget of opening a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// What a call gets while the store cannot answer: `deny` (fail closed, the default) or
    /// `local` (decide with this node's own memory: proofs are single-use only on this node,
    /// revocations are the last copy fetched; logged and counted).
    pub on_unavailable: OnUnavailable,
    /// Most live proof ids the memory backend (and the local fallback) holds.
    pub max_proofs: usize,
    /// Most live proof ids of one proof key, in any backend.
    pub max_proofs_per_key: u32,
    /// How often the revocation list's version is checked, in milliseconds.
    pub revocation_refresh_ms: u64,
    /// How long a copy of the shared revocation list may go unconfirmed before lookups fail
    /// closed, in milliseconds.
    pub revocation_max_staleness_ms: u64,
    /// Refuse to start unless the store's `maxmemory-policy` is `noeviction` (an evicted proof
    /// id would be a silent replay). Turn off only for a store that cannot report its policy
    /// and is known not to evict.
    pub require_noeviction: bool,
    /// Token status lists are fetched again after this many seconds (or their `ttl`, if
    /// shorter).
    pub status_list_refresh_secs: u64,
    /// A status list that could not be refreshed is used for at most this many seconds after its
    /// last successful fetch; then calls that need it fail closed (`unavailable`).
    pub status_list_max_age_secs: u64,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            backend: BackendKind::Memory,
            url: None,
            username_file: None,
            password_file: None,
            password_env: None,
            ca_file: None,
            key_prefix: "agentgate:".into(),
            pool_size: 16,
            timeout_ms: 50,
            connect_timeout_ms: 200,
            on_unavailable: OnUnavailable::Deny,
            max_proofs: 1_000_000,
            max_proofs_per_key: 10_000,
            revocation_refresh_ms: 200,
            revocation_max_staleness_ms: 2_000,
            require_noeviction: true,
            status_list_refresh_secs: 300,
            status_list_max_age_secs: 3600,
        }
    }
}

impl StateSection {
    /// Checks the section against the call budget; paths are resolved against `dir`.
    fn validate(&self, runtime: &RuntimeSection) -> Result<(), String> {
        match (self.backend, &self.url) {
            (BackendKind::Redis, None) => return Err("`[state] backend = \"redis\"` needs `url`".into()),
            (BackendKind::Memory, Some(_)) => return Err("`[state] url` is set but `backend` is `memory`".into()),
            _ => {}
        }
        if let Some(url) = &self.url {
            let parsed = url::Url::parse(url).map_err(|e| format!("`[state] url` is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "redis" | "rediss" | "valkey" | "valkeys") {
                return Err(format!("`[state] url` has the scheme `{}`; use `redis://` or `rediss://`", parsed.scheme()));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err("`[state] url` carries credentials; put them in `username_file` / `password_file` or `password_env` instead".into());
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms.saturating_mul(2) > runtime.call_timeout_ms {
            return Err(format!(
                "`[state] timeout_ms` is {}, but it must be at least 1 and at most half of `[runtime] call_timeout_ms` ({}), so that a slow store reads as `unavailable`",
                self.timeout_ms, runtime.call_timeout_ms
            ));
        }
        if self.pool_size == 0 || self.max_proofs == 0 || self.max_proofs_per_key == 0 {
            return Err("`[state] pool_size`, `max_proofs` and `max_proofs_per_key` must be positive".into());
        }
        if self.status_list_refresh_secs == 0 || self.status_list_max_age_secs < self.status_list_refresh_secs {
            return Err("`[state] status_list_max_age_secs` must be at least `status_list_refresh_secs` (and that positive)".into());
        }
        if self.revocation_refresh_ms == 0 || self.revocation_max_staleness_ms < self.revocation_refresh_ms.saturating_mul(2) {
            return Err("`[state] revocation_max_staleness_ms` must be at least twice `revocation_refresh_ms` (and that positive)".into());
        }
        Ok(())
    }

    /// The section with its file paths resolved against `dir`.
    fn resolved(mut self, dir: &Path) -> Self {
        for path in [&mut self.username_file, &mut self.password_file, &mut self.ca_file].into_iter().flatten() {
            *path = join(dir, path);
        }
        self
    }
}

/// `[state] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In this process.
    #[default]
    Memory,
    /// Valkey or Redis.
    Redis,
}

/// `[state] on_unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Deny (outcome `unavailable`).
    #[default]
    Deny,
    /// Decide with this node's own state, logged and counted.
    Local,
}

impl OnUnavailable {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::Deny => "deny",
            OnUnavailable::Local => "local",
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on.
    pub listen: String,
    /// Origins (`scheme://host[:port]`) clients use to reach the protected service. The external
    /// URI a DPoP proof must name is built from one of these — never from an unchecked `Host`.
    pub external_origins: Vec<String>,
    /// Peers whose `X-Forwarded-*` / `X-Original-*` headers are believed (CIDR).
    pub trusted_proxies: Vec<String>,
    /// The proxy in front: `nginx`, `traefik`, `caddy` or `envoy`. Only that proxy's headers are
    /// read: Traefik and Caddy pass client headers through, so guessing the dialect from headers
    /// would let a client choose what is authorized.
    pub proxy: ProxyKind,
    /// Path prefix of the forward-auth endpoint (Envoy appends the original path to it).
    pub forward_auth_prefix: String,
    /// The identifier of this PDP in AuthZEN metadata (default `http://<listen>`).
    pub pdp_url: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest accepted total size of request headers.
    pub max_header_bytes: usize,
    /// Idle verifier instances kept per worker pool.
    pub pool_size: usize,
    /// Seconds between checks of the configuration files for changes.
    pub watch_interval_secs: u64,
    /// Seconds between refreshes of JWKS fetched from URLs.
    pub jwks_refresh_secs: u64,
    /// After a watched file changes, how long (milliseconds) every watched file must stay
    /// unchanged before the reload reads them: a file still being written is not applied.
    pub reload_settle_ms: u64,
    /// Who may call the decision APIs (`/access/v1/evaluation(s)`, `/v1/check`).
    pub decision_api: DecisionApiSection,
    /// Most items in one `/access/v1/evaluations` request (413 above).
    pub max_batch_items: usize,
    /// Seconds a client has to send a request's headers, from the first byte of the request (or
    /// from the connection's start); the connection is closed after that.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress.
    pub idle_timeout_secs: u64,
    /// Seconds one request may take, body included (408 after that).
    pub request_timeout_secs: u64,
    /// Most connections open at once. At the cap, the connection idle (or sending headers) the
    /// longest is closed to make room; when every connection has a request in progress, the new
    /// one is closed.
    pub max_connections: usize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT; connections still open
    /// then (idle, half-sent, or stuck) are closed.
    pub drain_timeout_secs: u64,
    /// Reverse-proxy mode: `http://host[:port]` of the service agentgate protects. Every request
    /// that is not one of agentgate's own endpoints is decided (MCP calls from their JSON-RPC
    /// body, other paths by the route table) and, when allowed, forwarded there, the response
    /// streamed back.
    pub upstream: Option<String>,
}

/// `[server.decision_api]`: authentication of the decision APIs. Forward-auth keeps its own rule
/// (`trusted_proxies`); `/healthz`, `/metrics` and the AuthZEN metadata stay open.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionApiSection {
    /// Turns authentication off: anyone who reaches the port may ask. Must be said explicitly.
    pub open: bool,
    /// Client addresses (CIDR) allowed to call; default loopback only.
    pub allowed_clients: Vec<String>,
    /// File holding a shared secret (at least 32 bytes); callers then send
    /// `Authorization: Bearer <secret>` as well.
    pub bearer_token_file: Option<PathBuf>,
}

impl Default for DecisionApiSection {
    fn default() -> Self {
        DecisionApiSection { open: false, allowed_clients: vec!["127.0.0.1/32".into(), "::1/128".into()], bearer_token_file: None }
    }
}

/// A secret read from a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// A secret from a string, for tests.
    #[doc(hidden)]
    pub fn for_tests(secret: &str) -> Self {
        Secret(secret.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Shortest accepted decision-API bearer secret.
pub const MIN_SECRET_BYTES: usize = 32;

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8181".into(),
            external_origins: Vec::new(),
            trusted_proxies: vec!["127.0.0.1/32".into(), "::1/128".into()],
            proxy: ProxyKind::Nginx,
            forward_auth_prefix: "/forward-auth".into(),
            pdp_url: None,
            max_body_bytes: 256 * 1024,
            max_header_bytes: 32 * 1024,
            pool_size: 64,
            watch_interval_secs: 1,
            jwks_refresh_secs: 300,
            reload_settle_ms: 500,
            decision_api: DecisionApiSection::default(),
            max_batch_items: 64,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            request_timeout_secs: 30,
            max_connections: 1024,
            drain_timeout_secs: 10,
            upstream: None,
        }
    }
}

/// The proxy that calls forward-auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    /// nginx `auth_request`: `X-Original-Method`, `X-Original-URI`, `X-Forwarded-Proto/Host`.
    #[default]
    Nginx,
    /// Traefik ForwardAuth: `X-Forwarded-Method/Proto/Host/Uri`.
    Traefik,
    /// Caddy forward_auth: `X-Forwarded-Method/Proto/Host/Uri`.
    Caddy,
    /// Envoy ext_authz (HTTP service): the original method, the path after the prefix, `Host`.
    Envoy,
}

/// `[mcp]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpEntry {
    /// The MCP endpoint path.
    pub path: String,
    /// Resource id for calls that name no tool, prompt or resource (`McpServer::"<server>"`).
    pub server: String,
    /// Origins (`scheme://host[:port]`) whose browsers may call the endpoint; a request with an
    /// `Origin` header not listed is refused (403, DNS-rebinding defence). Empty: not checked.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// `[protected_resource]`: OAuth 2.0 Protected Resource Metadata (RFC 9728), served at
/// `/.well-known/oauth-protected-resource` and its path-inserted form, and named in every 401.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProtectedResourceSection {
    /// The resource identifier: an `https` URL (`http` only on loopback), one of `audiences`
    /// (RFC 8707, RFC 9068).
    pub resource: String,
    /// Issuer identifiers of the authorization servers that issue tokens for it (each a
    /// configured `[[issuers]]` issuer).
    pub authorization_servers: Vec<String>,
    /// Scopes clients may ask for.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// A human-readable name.
    #[serde(default)]
    pub resource_name: Option<String>,
    /// Where developers read about it.
    #[serde(default)]
    pub resource_documentation: Option<String>,
}

impl ProtectedResourceSection {
    /// The metadata URL for the resource (RFC 9728 §3.1: the well-known path inserted between
    /// the host and the resource's path).
    pub fn metadata_url(&self) -> Result<String, String> {
        let url = url::Url::parse(&self.resource).map_err(|e| format!("`[protected_resource] resource` is not a URL: {e}"))?;
        let path = url.path().trim_end_matches('/');
        Ok(format!("{}/.well-known/oauth-protected-resource{path}", url.origin().ascii_serialization()))
    }

    /// The path `serve` answers the metadata at (and the bare well-known path).
    pub fn metadata_path(&self) -> Result<String, String> {
        let url = url::Url::parse(&self.resource).map_err(|e| format!("`[protected_resource] resource` is not a URL: {e}"))?;
        Ok(format!("/.well-known/oauth-protected-resource{}", url.path().trim_end_matches('/')))
    }

    /// The metadata document (RFC 9728 §2). `dpop_required`: every token must be DPoP-bound.
    pub fn document(&self, dpop_required: bool) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            // Tokens are read from `Authorization` only (RFC 6750 §2.1), never from a body or query.
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256"],
            "dpop_bound_access_tokens_required": dpop_required,
        });
        if let Some(object) = doc.as_object_mut() {
            if !self.scopes_supported.is_empty() {
                object.insert("scopes_supported".into(), serde_json::json!(self.scopes_supported));
            }
            if let Some(name) = &self.resource_name {
                object.insert("resource_name".into(), serde_json::json!(name));
            }
            if let Some(docs) = &self.resource_documentation {
                object.insert("resource_documentation".into(), serde_json::json!(docs));
            }
        }
        doc
    }

    /// Checks the section against the rest of the configuration.
    fn validate(&self, file: &ConfigFile) -> Result<(), String> {
        let url = url::Url::parse(&self.resource).map_err(|e| format!("`[protected_resource] resource` is not a URL: {e}"))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        // RFC 9728 §1.2: an https URL. Plain http only on loopback, for local development.
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`[protected_resource] resource` `{}` must be an https URL (http only on loopback) without query or fragment (RFC 9728 §1.2)",
                self.resource
            ));
        }
        if !file.audiences.contains(&self.resource) {
            return Err(format!(
                "`[protected_resource] resource` `{}` is not one of `audiences`: tokens for it would be refused (RFC 8707, RFC 9068 §4)",
                self.resource
            ));
        }
        if self.authorization_servers.is_empty() {
            return Err("`[protected_resource] authorization_servers` is empty: clients could not find where to get a token".into());
        }
        for server in &self.authorization_servers {
            if !file.issuers.iter().any(|i| &i.issuer == server) {
                return Err(format!("`[protected_resource] authorization_servers` names `{server}`, which is not a configured `[[issuers]]` issuer"));
            }
        }
        Ok(())
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// `-` for standard output, or a file to append to (reopened on SIGHUP, for log rotation).
    pub path: String,
    /// Fail closed: while audit lines cannot be written (queue full, write errors), every
    /// decision endpoint denies with outcome `engine_error`.
    pub required: bool,
    /// Lines queued for the writer; beyond that lines are dropped (and counted), never waited for.
    pub queue_lines: usize,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection { path: "-".into(), required: false, queue_lines: 16 * 1024 }
    }
}

/// `[[issuers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerEntry {
    /// The exact `iss`.
    pub issuer: String,
    /// JWKS: a file, or an `https://` URL (fetched, cached, refreshed in the background; plain
    /// `http://` only for loopback addresses, for tests).
    pub jwks: String,
    /// Token status lists (draft-ietf-oauth-status-list): `required`, `when-present` (default)
    /// or `off`.
    #[serde(default)]
    pub status_list: agentgate_engine::status_list::StatusListMode,
    /// The configured issuer whose keys sign this issuer's status lists (default: itself).
    #[serde(default)]
    pub status_issuer: Option<String>,
}

/// Fetches JWKS documents named by URL.
pub trait JwksFetcher {
    /// The document at `url`.
    fn fetch(&self, url: &str) -> Result<String, String>;
}

/// A fetcher that refuses every URL (for commands that must not touch the network).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFetch;

impl JwksFetcher for NoFetch {
    fn fetch(&self, url: &str) -> Result<String, String> {
        Err(format!("`{url}`: fetching JWKS over the network is not enabled here"))
    }
}

/// True if `jwks` names a URL rather than a file.
pub fn is_url(jwks: &str) -> bool {
    jwks.starts_with("https://") || jwks.starts_with("http://")
}

/// `[[trust_domains]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustDomainEntry {
    /// Trust domain name.
    pub trust_domain: String,
    /// SPIFFE bundle file.
    pub bundle: PathBuf,
}

/// `[dpop]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopEntry {
    /// `required`, `when-bound` or `off`.
    #[serde(default)]
    pub mode: DpopMode,
    /// Oldest accepted proof, seconds.
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
    /// Furthest-future accepted proof, seconds.
    #[serde(default = "default_max_future")]
    pub max_future_secs: u64,
    /// Server nonces.
    #[serde(default)]
    pub nonce: Option<NonceEntry>,
}

fn default_max_age() -> u64 {
    DpopSettings::default().max_age_secs
}
fn default_max_future() -> u64 {
    DpopSettings::default().max_future_secs
}

impl Default for DpopEntry {
    fn default() -> Self {
        let d = DpopSettings::default();
        DpopEntry { mode: d.mode, max_age_secs: d.max_age_secs, max_future_secs: d.max_future_secs, nonce: None }
    }
}

/// `[dpop.nonce]`: the HMAC secret lives in its own file, never in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceEntry {
    /// File holding the secret (at least 32 bytes).
    pub secret_file: PathBuf,
    /// Nonce period in seconds.
    #[serde(default = "default_step")]
    pub step_secs: u64,
}

fn default_step() -> u64 {
    60
}

/// `[runtime]`: the sandbox around each call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Wall-clock budget of one `check`, in milliseconds (epoch interruption).
    pub call_timeout_ms: u64,
    /// Budget for building a verifier (parsing policies and keys), in milliseconds.
    pub create_timeout_ms: u64,
    /// Linear memory limit of one instance, in MiB.
    pub memory_limit_mib: u64,
    /// Where ES256 runs: `guest` (inside the component) or `host` (native, via the crypto import).
    pub crypto: CryptoPlacement,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection { call_timeout_ms: 250, create_timeout_ms: 30_000, memory_limit_mib: 256, crypto: CryptoPlacement::Guest }
    }
}

/// Where signature verification runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CryptoPlacement {
    /// RustCrypto `p256` inside the component (the portable `gate` world).
    #[default]
    Guest,
    /// The host's aws-lc through the `crypto` import (the `gate-accelerated` world).
    Host,
}

/// A loaded configuration: the file plus everything it names, read.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config file.
    pub path: PathBuf,
    /// The file's contents, parsed.
    pub file: ConfigFile,
    /// What crosses into the component.
    pub engine: EngineConfig,
    /// The revocation file, if any.
    pub revocations_path: Option<PathBuf>,
    /// Every file the configuration was read from (for reloads).
    pub sources: Vec<PathBuf>,
    /// The decision APIs' bearer secret (`[server.decision_api] bearer_token_file`), if any.
    pub decision_api_secret: Option<Secret>,
    /// The receipt signer (`[receipts]`), if receipts are on.
    pub receipts: Option<std::sync::Arc<crate::receipts::ReceiptSigner>>,
}

impl LoadedConfig {
    /// Where the source file the engine knows as `name` (a policy file or the schema, named
    /// relative to the config's directory) is, as the config's own path was given: for messages a
    /// user can open. `None` for any other name.
    pub fn source_path(&self, name: &str) -> Option<PathBuf> {
        let known = self.engine.schema.name == name || self.engine.policies.iter().any(|p| p.name == name);
        known.then(|| self.path.parent().unwrap_or(Path::new("")).join(name))
    }

    /// `name` as a user can open it: `source_path` shown, or `name` itself for any other name.
    pub fn source_shown(&self, name: &str) -> String {
        self.source_path(name).map_or_else(|| name.to_owned(), |p| p.display().to_string())
    }
}

/// Reads `path` and every file it names; JWKS URLs are fetched with the default HTTPS client.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with(path, &crate::jwks_fetch::HttpsFetcher::default())
}

/// Reads `path` and every file it names, fetching JWKS URLs with `fetcher`.
pub fn load_with(path: &Path, fetcher: &dyn JwksFetcher) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::at(path, e))?;
    let mut file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::at(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    file.state.validate(&file.runtime).map_err(|e| ConfigError::at(path, e))?;
    if let Some(pr) = &file.protected_resource {
        pr.validate(&file).map_err(|e| ConfigError::at(path, e))?;
    }
    if let Some(upstream) = &file.server.upstream {
        let url = url::Url::parse(upstream).map_err(|e| ConfigError::at(path, format!("`[server] upstream` is not a URL: {e}")))?;
        if url.scheme() != "http" || url.host_str().is_none() || url.path() != "/" || url.query().is_some() {
            return Err(ConfigError::at(
                path,
                format!("`[server] upstream` `{upstream}` must be `http://host[:port]` (agentgate forwards over plain HTTP to a service beside it)"),
            ));
        }
    }
    file.state = file.state.clone().resolved(dir);
    let mut sources = vec![path.to_path_buf()];
    // `full` is already resolved against the config's directory.
    let mut read = |full: PathBuf| -> Result<(PathBuf, String), ConfigError> {
        let text = std::fs::read_to_string(&full).map_err(|e| ConfigError::at(&full, e))?;
        sources.push(full.clone());
        Ok((full, text))
    };

    let policy_dir = join(dir, &file.policies);
    let mut policy_paths: Vec<PathBuf> = std::fs::read_dir(&policy_dir)
        .map_err(|e| ConfigError::at(&policy_dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "cedar"))
        .collect();
    policy_paths.sort();
    if policy_paths.is_empty() {
        return Err(ConfigError(format!("{}: no `*.cedar` policy files", policy_dir.display())));
    }
    // A source (policy file, schema, key file) is named as the config names it (its path relative
    // to the config's directory, or absolute if the config says so), never by where that
    // directory happens to be: the names are part of the engine config, so two copies of one
    // deployment share a compiled snapshot, and messages read the same on every machine.
    let source_name = |full: &Path| full.strip_prefix(dir).unwrap_or(full).display().to_string();
    let mut policies = Vec::new();
    for p in &policy_paths {
        let (full, text) = read(p.clone())?;
        policies.push(SourceText { name: source_name(&full), text });
    }
    let (schema_path, schema_text) = read(policy_dir.join(SCHEMA_FILE))?;
    let schema = SourceText { name: source_name(&schema_path), text: schema_text };

    let mut trust = TrustConfig::default();
    for issuer in &file.issuers {
        if is_url(&issuer.jwks) {
            let jwks = fetcher.fetch(&issuer.jwks).map_err(|e| ConfigError::at(path, format!("issuer `{}`: {e}", issuer.issuer)))?;
            // `source` is only shown (messages, `/healthz`): never the URL's credentials.
            trust.issuers.push(IssuerSource {
                issuer: issuer.issuer.clone(),
                jwks,
                source: crate::jwks_fetch::redact_url(&issuer.jwks),
                status_list: issuer.status_list,
                status_issuer: issuer.status_issuer.clone(),
            });
        } else {
            let (full, jwks) = read(join(dir, Path::new(&issuer.jwks)))?;
            trust.issuers.push(IssuerSource {
                issuer: issuer.issuer.clone(),
                jwks,
                source: source_name(&full),
                status_list: issuer.status_list,
                status_issuer: issuer.status_issuer.clone(),
            });
        }
    }
    for td in &file.trust_domains {
        let (full, bundle) = read(join(dir, &td.bundle))?;
        trust.trust_domains.push(TrustDomainSource { trust_domain: td.trust_domain.clone(), bundle, source: source_name(&full) });
    }
    let nonce = match &file.dpop.nonce {
        None => None,
        Some(n) => {
            let (_, secret) = read(join(dir, &n.secret_file))?;
            Some(NonceSettings { secret: secret.trim_end().to_owned(), step_secs: n.step_secs })
        }
    };
    let decision_api_secret = match &file.server.decision_api.bearer_token_file {
        None => None,
        Some(f) => {
            let (full, secret) = read(join(dir, f))?;
            let secret = secret.trim().to_owned();
            if secret.len() < MIN_SECRET_BYTES {
                return Err(ConfigError::at(&full, format!("the decision API bearer secret must be at least {MIN_SECRET_BYTES} bytes")));
            }
            if !secret.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::at(&full, "the decision API bearer secret must be visible ASCII (it travels in a header)"));
            }
            Some(Secret(secret))
        }
    };
    let receipts = match &file.receipts {
        None => None,
        Some(section) => {
            let (key_path, key) = read(join(dir, &section.key))?;
            let mut previous = Vec::new();
            for p in &section.previous_keys {
                let (full, text) = read(join(dir, p))?;
                previous.push((full.display().to_string(), text));
            }
            let signer = crate::receipts::ReceiptSigner::new(&key, &previous, section.sign).map_err(|e| ConfigError::at(&key_path, e))?;
            Some(std::sync::Arc::new(signer))
        }
    };
    for cidr in &file.server.decision_api.allowed_clients {
        crate::server::origin::Cidr::parse(cidr).map_err(|e| ConfigError::at(path, format!("`[server.decision_api] allowed_clients`: {e}")))?;
    }
    let settings = Settings {
        audiences: file.audiences.clone(),
        limits: file.limits.clone(),
        dpop: DpopSettings { mode: file.dpop.mode, max_age_secs: file.dpop.max_age_secs, max_future_secs: file.dpop.max_future_secs, nonce },
        identity: file.identity.clone(),
        policy_index: file.policy_index,
    };
    settings.validate().map_err(|e| ConfigError::at(path, e))?;
    // Watched for reloads: a file added to or removed from the policy directory changes its mtime.
    sources.push(policy_dir.clone());
    let revocations_path = file.revocations.as_ref().map(|r| join(dir, r));
    let revocations_json = match &revocations_path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError::at(p, e))?,
        None => String::new(),
    };
    let engine = EngineConfig {
        policies,
        schema,
        settings_json: serde_json::to_string(&settings).map_err(|e| ConfigError(e.to_string()))?,
        trust_json: serde_json::to_string(&trust).map_err(|e| ConfigError(e.to_string()))?,
        revocations_json,
    };
    Ok(LoadedConfig { path: path.to_path_buf(), file, engine, revocations_path, sources, decision_api_secret, receipts })
}

/// `dir/rel` without `.` components, so diagnostics show clean paths.
fn join(dir: &Path, rel: &Path) -> PathBuf {
    dir.join(rel).components().filter(|c| !matches!(c, Component::CurDir)).collect()
}
