//! `agentgate serve`: the decision service next to a proxy or called by an app.
//!
//! One wasmtime `Engine` and one pre-initialized component per configuration generation; a pool
//! of instances that requests check out, so both cores decide in parallel; one deployment state
//! (proof ids, the revocation list — in memory or in Valkey/Redis, `crate::state`) shared by every
//! instance and generation. Reloads build the next generation off the request path and swap it in
//! atomically; a configuration that fails to load or validate changes nothing.

pub mod audit;
pub mod authzen;
mod connections;
pub mod decision_api;
pub mod forward;
pub mod http_map;
pub mod metrics;
pub mod origin;
pub mod proxy;
pub mod resource_metadata;
pub mod routes;

use crate::component::{ComponentVerifier, Runtime, RuntimeOptions};
use crate::config::{self, LoadedConfig, McpEntry};
use crate::decision_log::{DecisionLog, LogEntry};
use crate::jwks_fetch::HttpsFetcher;
use crate::receipts::ReceiptFacts;
use crate::receipts::digest::ConfigDigests;
use crate::state::DeploymentState;
use agentgate_engine::recorded::RecordedCall;
use agentgate_engine::{CheckRequest, Decision};
use anyhow::Context as _;
use audit::{Audit, AuditLine};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use metrics::{Gauges, Metrics};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How to start the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// Overrides `[server] listen`.
    pub listen: Option<String>,
}

/// One configuration generation: everything a request needs, swapped as a whole on reload.
pub struct Deployment {
    generation: u64,
    config: LoadedConfig,
    runtime: Runtime,
    idle: Mutex<Vec<ComponentVerifier>>,
    routes: Vec<routes::Route>,
    origins: origin::Origins,
    mcp: Option<McpEntry>,
    pool_size: usize,
    decision_api: decision_api::Guard,
    /// What the deployment's `WWW-Authenticate` challenges carry besides the decision.
    challenge: http_map::ChallengeParams,
    /// The digests of the policies, schema and settings in force (receipts, `/healthz`).
    digests: ConfigDigests,
    /// `[decision_log]` is on: decisions come with the call as authorized.
    record_calls: bool,
}

impl Deployment {
    /// The configuration generation (1 at start).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The configuration this generation was built from.
    pub fn config(&self) -> &LoadedConfig {
        &self.config
    }

    /// The digests of the configuration in force.
    pub fn digests(&self) -> &ConfigDigests {
        &self.digests
    }
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl Deployment {
    /// Validates `config` and pre-initializes its component; nothing is served from it until the
    /// caller swaps it in.
    fn build(config: LoadedConfig, generation: u64, state: Arc<DeploymentState>) -> anyhow::Result<Self> {
        let server = &config.file.server;
        let routes = routes::compile(&config.file.routes).map_err(anyhow::Error::msg)?;
        let origins = origin::Origins::new(&server.trusted_proxies, &server.external_origins).map_err(anyhow::Error::msg)?;
        let decision_api = decision_api::Guard::new(&config).map_err(anyhow::Error::msg)?;
        let digests = ConfigDigests::of(&config.engine).map_err(anyhow::Error::msg)?;
        let mut options = RuntimeOptions::from_section(&config.file.runtime);
        options.pooling = Some(u32::try_from(server.pool_size.saturating_mul(2).max(4)).unwrap_or(u32::MAX));
        // The revocation list is the deployment state's (a live mirror behind the `state` import),
        // not baked into the snapshot: an edit of the list neither re-snapshots nor re-parses in
        // every instance.
        let engine = agentgate_engine::EngineConfig { revocations_json: String::new(), ..config.engine.clone() };
        state.status_lists().configure(&engine).map_err(anyhow::Error::msg)?;
        let runtime = Runtime::preinitialized(options, state, &engine)?;
        // Build one instance now: a configuration the component rejects fails here, not on the
        // first request.
        let first = runtime.preloaded_verifier().map_err(|e| anyhow::anyhow!("{e}"))?;
        let idle = Mutex::new(vec![first]);
        let challenge = http_map::ChallengeParams {
            resource_metadata: config.file.protected_resource.as_ref().map(|p| p.metadata_url()).transpose().map_err(anyhow::Error::msg)?,
            dpop: config.file.dpop.mode != agentgate_engine::DpopMode::Off,
        };
        let record_calls = config.file.decision_log.is_some();
        Ok(Deployment {
            generation,
            pool_size: server.pool_size.max(1),
            mcp: config.file.mcp.clone(),
            config,
            runtime,
            idle,
            routes,
            origins,
            decision_api,
            challenge,
            digests,
            record_calls,
        })
    }

    /// Checks an instance out of the pool (or starts one), runs `f` on it, and returns it.
    fn with_instance<T>(&self, f: impl FnOnce(&mut ComponentVerifier) -> T) -> Result<T, Box<Decision>> {
        let gate = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut gate = match gate {
            Some(g) => g,
            None => self.runtime.preloaded_verifier().map_err(|e| Box::new(Decision::engine_error(format!("could not start a decision instance: {e}"))))?,
        };
        let out = f(&mut gate);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.pool_size
        {
            idle.push(gate);
        }
        Ok(out)
    }

    /// Which of `tools` the caller of an allowed `tools/list` `request` may see (see
    /// `agentgate_engine::Engine::visible_tools`); the proof is not spent again.
    pub fn visible_tools(&self, request: &CheckRequest, tools: &[String]) -> Result<Vec<bool>, Box<Decision>> {
        self.with_instance(|gate| gate.visible_tools(request, tools))?
    }

    /// Decides one call on an instance from the pool (`batch`: several calls sharing one proof).
    pub fn decide_all(&self, requests: &[CheckRequest], mut stop: impl FnMut(usize, &Decision) -> bool) -> Vec<Decided> {
        let decided = self.with_instance(|gate| {
            let batch = requests.len() > 1;
            if batch {
                gate.begin_batch();
            }
            let mut out = Vec::with_capacity(requests.len());
            for (index, request) in requests.iter().enumerate() {
                let started = Instant::now();
                let (decision, call) = if self.record_calls { gate.check_recorded(request) } else { (gate.check(request), None) };
                let latency = started.elapsed();
                let done = stop(index, &decision);
                out.push(Decided { decision, latency, call });
                if done {
                    break;
                }
            }
            if batch {
                gate.end_batch();
            }
            out
        });
        decided.unwrap_or_else(|d| requests.iter().map(|_| Decided::host((*d).clone())).collect())
    }

    /// Decides one call.
    pub fn decide(&self, request: &CheckRequest) -> Decided {
        self.decide_all(std::slice::from_ref(request), |_, _| false).pop().unwrap_or_else(|| Decided::host(Decision::engine_error("no decision was made")))
    }
}

/// A decision as the engine made it: how long it took and, with `[decision_log]`, the call as
/// authorized when it reached the policies.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The decision.
    pub decision: Decision,
    /// Time in the engine.
    pub latency: Duration,
    /// The call as authorized, for the decision log.
    pub call: Option<RecordedCall>,
}

impl Decided {
    /// A decision the host made without the engine: no engine time, nothing to log.
    pub fn host(decision: Decision) -> Self {
        Decided { decision, latency: Duration::ZERO, call: None }
    }

    /// The host answers `decision` instead of the engine's. The call stays logged only if the
    /// decision is unchanged: a log line must not claim the policies decided what the host did.
    pub fn answered_as(self, decision: Decision) -> Self {
        let call = if decision == self.decision { self.call } else { None };
        Decided { decision, latency: self.latency, call }
    }
}

/// Everything the handlers share.
pub struct AppState {
    deployment: RwLock<Arc<Deployment>>,
    state: Arc<DeploymentState>,
    metrics: Metrics,
    audit: Audit,
    /// `[decision_log]`, opened at start.
    decision_log: Option<DecisionLog>,
    config_path: PathBuf,
    fetcher: HttpsFetcher,
    reload_lock: Mutex<()>,
    last_reload_error: Mutex<Option<String>>,
    /// The watched files as they were when the generation in force (or the last failed attempt)
    /// read them.
    applied: Mutex<Stamps>,
    /// The address actually listened on (for AuthZEN metadata when `pdp_url` is not set).
    bound: std::sync::OnceLock<SocketAddr>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("config_path", &self.config_path).finish_non_exhaustive()
    }
}

/// Shared state handle.
pub type Shared = Arc<AppState>;

impl AppState {
    /// The generation in force.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.deployment.read().map(|d| Arc::clone(&d)).unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Counts and audits a decision made under `deployment`, with its receipt when `[receipts]`
    /// asks for one, and logs the call with `[decision_log]`; returns what to answer with.
    /// Free-text fields are clipped (`audit::MAX_FIELD_BYTES`) so a line stays bounded whatever
    /// the caller sent. With `[audit] required`, a decision whose line cannot be queued becomes an
    /// `engine_error` deny (without a receipt or a decision-log line: what they would show was
    /// not recorded).
    pub fn record(
        &self,
        deployment: &Deployment,
        api: &'static str,
        request: &CheckRequest,
        decided: Decided,
        decision_id: &str,
        request_id: Option<&str>,
    ) -> Recorded {
        let Decided { decision, latency, call } = decided;
        use audit::{MAX_CHAIN, MAX_FIELD_BYTES, clip};
        let field = |text: &str| clip(text, MAX_FIELD_BYTES);
        let receipt = deployment.config.receipts.as_ref().and_then(|signer| {
            let facts = ReceiptFacts { decision_id, issued_at: crate::mint::now(), request, config: &deployment.digests };
            match signer.receipt(&decision, &facts)? {
                Ok(receipt) => {
                    self.metrics.receipt(true);
                    Some(receipt)
                }
                Err(e) => {
                    self.metrics.receipt(false);
                    tracing::error!(decision_id, error = %e, "the decision's receipt could not be signed");
                    None
                }
            }
        });
        let queued = self.audit.write(AuditLine {
            time: audit::now_rfc3339(),
            decision_id: decision_id.to_owned(),
            api,
            decision: if decision.allowed { "allow" } else { "deny" },
            outcome: decision.outcome.as_str().to_owned(),
            reason: clip(&decision.reason, 4 * MAX_FIELD_BYTES),
            agent: decision.chain.first().map(|a| field(a)),
            user: decision.user.as_deref().map(field),
            chain: decision.chain.iter().take(MAX_CHAIN).map(|a| field(a)).collect(),
            action: field(&request.action),
            resource: agentgate_engine::authorizer::entity_display(&field(&request.resource.type_name), &field(&request.resource.id)),
            policies: decision.policies.iter().take(MAX_CHAIN).map(|p| field(p)).collect(),
            token_id: decision.token_id.as_deref().map(field),
            key_thumbprint: decision.key_thumbprint.as_deref().map(field),
            latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            request_id: request_id.map(str::to_owned),
            receipt: receipt.clone(),
        });
        if !queued && self.audit.required() {
            let denial = Decision::engine_error("the audit line of this decision could not be queued and `[audit] required` is set");
            self.metrics.record(denial.outcome, latency);
            return Recorded { decision: denial, receipt: None };
        }
        self.metrics.record(decision.outcome, latency);
        if let (Some(log), Some(call)) = (&self.decision_log, &call) {
            match LogEntry::new(decision_id, api, &deployment.digests.digest, &decision, call) {
                Ok(entry) => {
                    log.write(entry);
                }
                Err(e) => tracing::error!(decision_id, error = %e, "the decision could not be logged"),
            }
        }
        Recorded { decision, receipt }
    }

    /// Waits (at most `timeout`) until the decision log has written every line queued so far.
    pub fn flush_decision_log(&self, timeout: Duration) -> bool {
        self.decision_log.as_ref().is_none_or(|log| log.flush(timeout))
    }

    /// With `[audit] required`, the deny that replaces every decision while audit lines are being
    /// lost (decided before the engine runs, so no proof is spent).
    pub fn audit_denial(&self) -> Option<Decision> {
        if !self.audit.required() {
            return None;
        }
        self.audit.health().err().map(|reason| Decision::engine_error(format!("{reason}; `[audit] required` is set, so calls are denied")))
    }

    /// The identifier of this PDP: `[server] pdp_url`, else `http://<the bound address>`.
    pub fn pdp_url(&self) -> String {
        let d = self.deployment();
        let server = &d.config.file.server;
        match (&server.pdp_url, self.bound.get()) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(addr)) => format!("http://{addr}"),
            (None, None) => format!("http://{}", server.listen),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The error of the last failed reload, if the last reload failed.
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_reload_error.lock().ok().and_then(|e| e.clone())
    }

    /// Loads the configuration again and swaps it in if it is usable; returns whether it was.
    /// Only a generation whose files did not change while it was read and built is swapped in
    /// (see `load_generation`).
    pub fn reload(&self, why: &str) -> bool {
        let Ok(_guard) = self.reload_lock.lock() else { return false };
        let current = self.deployment();
        let (result, stamps) = load_generation(&self.config_path, &self.fetcher, current.config.sources.clone(), |loaded| {
            // The store and the revocation file belong to the running state: proof ids remembered
            // so far must stay remembered, so a change to them takes a restart.
            if loaded.file.state != *self.state.section() || loaded.revocations_path != current.config.revocations_path {
                anyhow::bail!("`[state]` or `revocations` changed; they take effect at the next restart");
            }
            if loaded.file.decision_log != current.config.file.decision_log {
                anyhow::bail!("`[decision_log]` changed; it takes effect at the next restart");
            }
            Deployment::build(loaded, current.generation + 1, Arc::clone(&self.state))
        });
        if let Ok(mut applied) = self.applied.lock() {
            *applied = stamps;
        }
        match result {
            Ok(next) => {
                let generation = next.generation;
                if let Ok(mut slot) = self.deployment.write() {
                    *slot = Arc::new(next);
                }
                self.metrics.reload(true);
                if let Ok(mut e) = self.last_reload_error.lock() {
                    *e = None;
                }
                tracing::info!(generation, why, "configuration reloaded");
                true
            }
            Err(e) => {
                self.metrics.reload(false);
                let message = format!("{e:#}");
                // Messages name sources by their shown (redacted) form; a URL the library quoted
                // in full is redacted here too.
                let message = redact_urls_in(&message);
                tracing::error!(why, error = %message, "configuration reload failed; the last good configuration stays in force");
                if let Ok(mut slot) = self.last_reload_error.lock() {
                    *slot = Some(message);
                }
                false
            }
        }
    }

    fn gauges(&self) -> Gauges {
        let d = self.deployment();
        Gauges {
            replay_entries: self.state.backend().proofs_held(),
            revocation_failures: self.state.mirror().failed_loads(),
            generation: d.generation,
            audit: self.audit.stats(),
            decision_log: self.decision_log.as_ref().map(DecisionLog::stats),
        }
    }

    /// The deployment's shared state (proof ids, revocations).
    pub fn shared_state(&self) -> &Arc<DeploymentState> {
        &self.state
    }
}

/// A decision as answered: the decision and, with `[receipts]`, its signed receipt.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The decision.
    pub decision: Decision,
    /// The compact JWS receipt, when one was signed.
    pub receipt: Option<String>,
}

/// A unique decision id: 128 random bits, base64url.
pub fn decision_id() -> String {
    crate::mint::random_id()
}

/// The `X-Request-ID` of a request, if it is a sane value: one header, 1 to 200 visible ASCII
/// characters. Anything else is neither echoed nor audited.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all("x-request-id").iter();
    let (first, second) = (values.next(), values.next());
    if second.is_some() {
        return None;
    }
    first.and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic())).map(str::to_owned)
}

/// Builds the shared state: loads the configuration and the first generation.
pub fn state(options: &ServeOptions) -> anyhow::Result<Shared> {
    let fetcher = HttpsFetcher::default();
    // The deployment state (store, revocation mirror) is opened once, with the first loaded
    // configuration, and kept for every generation after it.
    let mut opened: Option<Arc<DeploymentState>> = None;
    // The first generation is read like every later one: its files must not change while it is
    // built, else it is built again.
    let (built, applied) = load_generation(&options.config, &fetcher, Vec::new(), |loaded| {
        let shared = match &opened {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared = DeploymentState::open(&loaded.file.state, loaded.revocations_path.clone())?;
                opened = Some(Arc::clone(&shared));
                shared
            }
        };
        Deployment::build(loaded, 1, shared)
    });
    let deployment = built?;
    let shared = opened.ok_or_else(|| anyhow::anyhow!("the deployment state was not opened"))?;
    let section = &deployment.config.file.audit;
    // Like every path in the file, the audit log is relative to it.
    let audit_path = match section.path.as_str() {
        "-" => "-".to_owned(),
        relative => options.config.parent().unwrap_or(Path::new(".")).join(relative).display().to_string(),
    };
    let audit = Audit::open(&audit_path, section.queue_lines, section.required).with_context(|| format!("opening the audit log `{audit_path}`"))?;
    let decision_log = match &deployment.config.file.decision_log {
        None => None,
        Some(section) => {
            let target = section.target(&options.config);
            Some(DecisionLog::open(&target, section.queue_lines).with_context(|| format!("opening the decision log `{}`", target.path.display()))?)
        }
    };
    Ok(Arc::new(AppState {
        deployment: RwLock::new(Arc::new(deployment)),
        state: shared,
        metrics: Metrics::default(),
        audit,
        decision_log,
        config_path: options.config.clone(),
        fetcher,
        reload_lock: Mutex::new(()),
        last_reload_error: Mutex::new(None),
        applied: Mutex::new(applied),
        bound: std::sync::OnceLock::new(),
    }))
}

/// The HTTP routes.
pub fn router(state: Shared) -> Router {
    let d = state.deployment();
    let server = &d.config.file.server;
    let prefix = server.forward_auth_prefix.trim_end_matches('/').to_owned();
    let max_body = server.max_body_bytes;
    let max_headers = server.max_header_bytes;
    // The decision APIs: authenticated callers (`[server.decision_api]`), JSON bodies only. The
    // outer layer runs first: an unauthenticated caller learns nothing about the body rules.
    let decision_apis = Router::new()
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/v1/check", post(authzen::check))
        .route_layer(middleware::from_fn(decision_api::require_json))
        .route_layer(middleware::from_fn_with_state(state.clone(), decision_api::authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/.well-known/authzen-configuration", get(authzen::metadata))
        .route(crate::receipts::JWKS_PATH, get(receipt_keys))
        .route(resource_metadata::WELL_KNOWN, get(resource_metadata::metadata))
        .route(&format!("{}/{{*resource}}", resource_metadata::WELL_KNOWN), get(resource_metadata::metadata))
        .merge(decision_apis)
        .route(&prefix, any(forward::forward_auth))
        .route(&format!("{prefix}/"), any(forward::forward_auth))
        .route(&format!("{prefix}/{{*rest}}"), any(forward::forward_auth))
        // Reverse-proxy mode (`[server] upstream`): everything else is decided and forwarded.
        .fallback(proxy::proxy)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(max_headers, header_limit))
        .with_state(state)
}

/// Refuses requests whose headers are larger than the configured cap (431), and echoes a sane
/// `X-Request-ID` (the rule of [`request_id`]) on every response.
async fn header_limit(State(max): State<usize>, request: Request, next: Next) -> Response {
    let size: usize = request.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    let request_id = request_id(request.headers()).and_then(|id| HeaderValue::from_str(&id).ok());
    let mut response = if size > max {
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            axum::Json(serde_json::json!({"error": format!("request headers are {size} bytes, over the limit of {max}")})),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    if let Some(id) = request_id {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

/// 200 `"status": "ok"`, or 503 `"status": "unhealthy"` with a `reason` while audit lines are
/// being lost or the state store cannot be reached.
async fn healthz(State(state): State<Shared>) -> Response {
    let d = state.deployment();
    let last_error = state.last_reload_error.lock().ok().and_then(|e| e.clone());
    let shared = Arc::clone(&state.state);
    // One round trip to the store, off the async threads.
    let store = tokio::task::spawn_blocking(move || shared.health()).await.unwrap_or_else(|e| serde_json::json!({"reachable": false, "error": e.to_string()}));
    // A node whose store cannot answer denies every bound call (`unavailable`): not healthy.
    let store = match store.get("reachable").and_then(serde_json::Value::as_bool) {
        Some(true) => Ok(store),
        _ => Err(store),
    };
    let audit = state.audit.health();
    let healthy = audit.is_ok() && store.is_ok();
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let reason = match (&audit, &store) {
        (Err(reason), _) => Some(reason.clone()),
        (Ok(()), Err(_)) => Some("the state store cannot be reached: calls that need it are denied (`unavailable`)".to_owned()),
        (Ok(()), Ok(_)) => None,
    };
    let mut body = serde_json::json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "generation": d.generation,
        "config": state.config_path.display().to_string(),
        "last_reload_error": last_error,
        "store": store.unwrap_or_else(|s| s),
        "config_digest": d.digests,
        "receipts": d.config.receipts.as_ref().map(|r| serde_json::json!({ "kid": r.kid(), "sign": r.sign_when().as_str() })),
    });
    if let (Some(reason), Some(object)) = (reason, body.as_object_mut()) {
        object.insert("reason".into(), serde_json::Value::String(reason));
    }
    (status, axum::Json(body)).into_response()
}

/// The receipt keys (current first, then previous) as a JWKS; 404 when receipts are off.
async fn receipt_keys(State(state): State<Shared>) -> Response {
    match &state.deployment().config.receipts {
        Some(signer) => {
            let mut response = axum::Json(signer.jwks().clone()).into_response();
            response.headers_mut().insert("content-type", HeaderValue::from_static("application/jwk-set+json"));
            response
        }
        None => (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "error": "receipts are off (`[receipts]` is not configured)" }))).into_response(),
    }
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    let mut body = state.metrics.render(&state.gauges());
    state.state.metrics().render(state.state.backend().kind(), &mut body);
    let mut response = body.into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

/// Watches every file the configuration was read from (and JWKS URLs) and reloads on change;
/// SIGHUP reopens the audit log and reloads at once.
fn spawn_reloader(state: Shared) {
    let current = state.deployment();
    let server = &current.config.file.server;
    let interval = Duration::from_secs(server.watch_interval_secs.max(1));
    let settle_for = Duration::from_millis(server.reload_settle_ms);
    let watched = state.clone();
    std::thread::Builder::new()
        .name("agentgate-reload".into())
        .spawn(move || {
            let mut jwks_due = Instant::now() + jwks_interval(&watched);
            loop {
                std::thread::sleep(interval);
                let d = watched.deployment();
                let applied = watched.applied.lock().map(|a| a.clone()).unwrap_or_default();
                let paths: Vec<PathBuf> = applied.iter().map(|(p, _)| p.clone()).collect();
                let jwks_changed = if Instant::now() >= jwks_due {
                    jwks_due = Instant::now() + jwks_interval(&watched);
                    jwks_urls_changed(&watched, &d)
                } else {
                    false
                };
                let files_changed = stamps(&paths) != applied;
                if files_changed {
                    // A file still being written is not read half-way: wait until nothing changes.
                    settle(&paths, settle_for);
                }
                if files_changed || jwks_changed {
                    // Success or failure, `reload` remembers the stamps it read: after a failed
                    // reload the watcher waits for the next edit rather than retrying this one.
                    watched.reload(if jwks_changed { "JWKS changed" } else { "file changed" });
                }
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("could not start the reload watcher: {e}"));

    #[cfg(unix)]
    {
        let hup = state;
        tokio::spawn(async move {
            let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
            while signal.recv().await.is_some() {
                // Log rotation: the file was moved away; write to a new one at the configured path.
                hup.audit.reopen();
                let s = hup.clone();
                let _ = tokio::task::spawn_blocking(move || s.reload("SIGHUP")).await;
            }
        });
    }
}

fn jwks_interval(state: &AppState) -> Duration {
    Duration::from_secs(state.deployment().config.file.server.jwks_refresh_secs.max(10))
}

/// Fetches every JWKS URL; true if one now differs from what the deployment uses.
fn jwks_urls_changed(state: &AppState, d: &Deployment) -> bool {
    let Ok(trust) = serde_json::from_str::<agentgate_engine::TrustConfig>(&d.config.engine.trust_json) else { return false };
    // The trust JSON names URL sources only in their shown (redacted) form: fetch the URLs as
    // configured and compare by issuer.
    d.config.file.issuers.iter().filter(|i| config::is_url(&i.jwks)).any(|issuer| {
        let in_force = trust.issuers.iter().find(|t| t.issuer == issuer.issuer).map(|t| t.jwks.as_str());
        match state.fetcher.fetch_fresh(&issuer.jwks) {
            Ok(fresh) => Some(fresh.as_str()) != in_force,
            Err(e) => {
                tracing::warn!(url = %crate::jwks_fetch::redact_url(&issuer.jwks), error = %e, "JWKS refresh failed; the last good keys stay in force");
                false
            }
        }
    })
}

/// Replaces every URL in `text` by its redacted form ([`crate::jwks_fetch::redact_url`]).
fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("http://").into_iter().chain(rest.find("https://")).min() {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let end = from.find(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'')).unwrap_or(from.len());
        let (url, after) = from.split_at(end);
        out.push_str(&crate::jwks_fetch::redact_url(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// What identifies one version of a file: modification time (with nanoseconds), length and inode.
/// An edit that keeps the length within one timestamp tick still changes the inode when the file
/// is replaced by a rename (the recommended way to edit).
type Stamp = Option<(SystemTime, u64, u64)>;

/// Stamps of watched files, by path.
type Stamps = Vec<(PathBuf, Stamp)>;

fn stamps(paths: &[PathBuf]) -> Stamps {
    paths.iter().map(|p| (p.clone(), stamp(p))).collect()
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

/// Waits until `paths` stay unchanged for `quiet` (at most 20 rounds: a file rewritten without
/// pause is read anyway, and the build check below still catches a change during the build).
fn settle(paths: &[PathBuf], quiet: Duration) {
    if quiet.is_zero() {
        return;
    }
    let mut last = stamps(paths);
    for _ in 0..20 {
        std::thread::sleep(quiet);
        let now = stamps(paths);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Attempts before giving up on files that keep changing while they are read.
const LOAD_ATTEMPTS: usize = 5;

/// Reads the configuration and builds a generation from it, such that no watched file changed
/// between being read and the build finishing: stamps are sampled BEFORE the files are read and
/// again after the build; if any differs the generation may mix old and new files, so it is
/// thrown away and built again. `sources` is the expected file list (the previous generation's);
/// when the configuration names other files, it is read again with their stamps sampled first.
/// Returns the result and the stamps of the files it read (also on failure, so a broken edit is
/// not retried until the next one).
fn load_generation(
    path: &Path,
    fetcher: &HttpsFetcher,
    mut sources: Vec<PathBuf>,
    mut build: impl FnMut(LoadedConfig) -> anyhow::Result<Deployment>,
) -> (anyhow::Result<Deployment>, Stamps) {
    let mut last = Vec::new();
    for _ in 0..LOAD_ATTEMPTS {
        let before = stamps(&sources);
        let loaded = match config::load_with(path, fetcher) {
            Ok(loaded) => loaded,
            Err(e) => return (Err(e.into()), before),
        };
        if loaded.sources != sources {
            // Other files than expected (one added, removed, or a first load): sample them first.
            sources = loaded.sources;
            continue;
        }
        let built = build(loaded);
        let after = stamps(&sources);
        if after == before {
            return (built, before);
        }
        tracing::info!("a configuration file changed while the configuration was built; building again");
        last = after;
    }
    let message = format!("the configuration files kept changing while being read ({LOAD_ATTEMPTS} attempts); the last good configuration stays in force");
    (Err(anyhow::anyhow!(message)), if last.is_empty() { stamps(&sources) } else { last })
}

/// Runs the service until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let state = load_state(&options).await?;
    let listen = options.listen.clone().unwrap_or_else(|| state.deployment().config.file.server.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
    eprintln!("agentgate: serving {} on http://{}", options.config.display(), listener.local_addr()?);
    serve_on(listener, state, shutdown_signal()).await?;
    eprintln!("agentgate: stopped");
    Ok(())
}

/// Loads the configuration and the first generation (blocking work, off the async threads).
pub async fn load_state(options: &ServeOptions) -> anyhow::Result<Shared> {
    let options = options.clone();
    tokio::task::spawn_blocking(move || state(&options)).await?
}

/// Serves `state` on `listener` until `shutdown` completes, then drains: in-flight requests are
/// answered, idle and half-sent connections closed, and whatever is still open after
/// `[server] drain_timeout_secs` is dropped.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let _ = state.bound.set(listener.local_addr()?);
    spawn_reloader(state.clone());
    tracing::info!(addr = %listener.local_addr()?, config = %state.config_path.display(), "agentgate serving");
    let limits = connections::Limits::from_section(&state.deployment().config.file.server);
    let app = router(state.clone());
    connections::serve(listener, app, limits, shutdown).await;
    // Decision-log lines still queued are written before serving ends.
    let flushed = tokio::task::spawn_blocking(move || state.flush_decision_log(Duration::from_secs(5))).await.unwrap_or(false);
    if !flushed {
        tracing::error!("the decision log could not be flushed in 5 s; its last lines may be missing");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    eprintln!("agentgate: shutting down, draining in-flight requests");
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_in_messages_are_redacted_once() {
        let text =
            "issuer `a`: fetching `https://u:p@as.example/jwks?access_token=t0k` failed; see http://127.0.0.1:9/jwks?<redacted> and https://as.example/ok";
        assert_eq!(
            super::redact_urls_in(text),
            "issuer `a`: fetching `https://as.example/jwks?<redacted>` failed; see http://127.0.0.1:9/jwks?<redacted> and https://as.example/ok"
        );
    }
}
