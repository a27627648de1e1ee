//! `agentgate serve`: the decision service next to a proxy or called by an app.
//!
//! One wasmtime `Engine` and one pre-initialized component per configuration generation; a pool
//! of instances that requests check out, so both cores decide in parallel; one deployment state
//! (proof ids, the revocation list — in memory or in Valkey/Redis, `crate::state`) shared by every
//! instance and generation. Reloads build the next generation off the request path and swap it in
//! atomically; a configuration that fails to load or validate changes nothing.

pub mod audit;
pub mod authzen;
pub mod forward;
pub mod http_map;
pub mod metrics;
pub mod origin;
pub mod routes;

use crate::component::{ComponentVerifier, Runtime, RuntimeOptions};
use crate::config::{self, LoadedConfig, McpEntry};
use crate::jwks_fetch::HttpsFetcher;
use crate::state::DeploymentState;
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
}

impl Deployment {
    /// The configuration generation (1 at start).
    pub fn generation(&self) -> u64 {
        self.generation
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
        Ok(Deployment { generation, pool_size: server.pool_size.max(1), mcp: config.file.mcp.clone(), config, runtime, idle, routes, origins })
    }

    /// Decides one call on an instance from the pool (`batch`: several calls sharing one proof).
    pub fn decide_all(&self, requests: &[CheckRequest], mut stop: impl FnMut(usize, &Decision) -> bool) -> Vec<(Decision, Duration)> {
        let gate = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut gate = match gate {
            Some(g) => g,
            None => match self.runtime.preloaded_verifier() {
                Ok(v) => v,
                Err(e) => {
                    let d = Decision::engine_error(format!("could not start a decision instance: {e}"));
                    return requests.iter().map(|_| (d.clone(), Duration::ZERO)).collect();
                }
            },
        };
        let batch = requests.len() > 1;
        if batch {
            gate.begin_batch();
        }
        let mut out = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let started = Instant::now();
            let decision = gate.check(request);
            let elapsed = started.elapsed();
            let done = stop(index, &decision);
            out.push((decision, elapsed));
            if done {
                break;
            }
        }
        if batch {
            gate.end_batch();
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.pool_size
        {
            idle.push(gate);
        }
        out
    }

    /// Decides one call.
    pub fn decide(&self, request: &CheckRequest) -> (Decision, Duration) {
        self.decide_all(std::slice::from_ref(request), |_, _| false)
            .pop()
            .unwrap_or_else(|| (Decision::engine_error("no decision was made"), Duration::ZERO))
    }
}

/// Everything the handlers share.
pub struct AppState {
    deployment: RwLock<Arc<Deployment>>,
    state: Arc<DeploymentState>,
    metrics: Metrics,
    audit: Audit,
    config_path: PathBuf,
    fetcher: HttpsFetcher,
    reload_lock: Mutex<()>,
    last_reload_error: Mutex<Option<String>>,
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

    /// Counts and audits a decision.
    pub fn record(&self, api: &'static str, request: &CheckRequest, decision: &Decision, latency: Duration, decision_id: &str, request_id: Option<&str>) {
        self.metrics.record(decision.outcome, latency);
        self.audit.write(AuditLine {
            time: audit::now_rfc3339(),
            decision_id: decision_id.to_owned(),
            api,
            decision: if decision.allowed { "allow" } else { "deny" },
            outcome: decision.outcome.as_str().to_owned(),
            reason: decision.reason.clone(),
            agent: decision.chain.first().cloned(),
            user: decision.user.clone(),
            chain: decision.chain.clone(),
            action: request.action.clone(),
            resource: agentgate_engine::authorizer::entity_display(&request.resource.type_name, &request.resource.id),
            policies: decision.policies.clone(),
            token_id: decision.token_id.clone(),
            key_thumbprint: decision.key_thumbprint.clone(),
            latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            request_id: request_id.map(str::to_owned),
        });
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
    pub fn reload(&self, why: &str) -> bool {
        let Ok(_guard) = self.reload_lock.lock() else { return false };
        let current = self.deployment();
        let result = config::load_with(&self.config_path, &self.fetcher).map_err(anyhow::Error::from).and_then(|loaded| {
            // The store and the revocation file belong to the running state: proof ids remembered
            // so far must stay remembered, so a change to them takes a restart.
            if loaded.file.state != *self.state.section() || loaded.revocations_path != current.config.revocations_path {
                anyhow::bail!("`[state]` or `revocations` changed; they take effect at the next restart");
            }
            Deployment::build(loaded, current.generation + 1, Arc::clone(&self.state))
        });
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
        }
    }

    /// The deployment's shared state (proof ids, revocations).
    pub fn shared_state(&self) -> &Arc<DeploymentState> {
        &self.state
    }
}

/// A unique decision id: 128 random bits, base64url.
pub fn decision_id() -> String {
    crate::mint::random_id()
}

/// The `X-Request-ID` of a request, if it is a sane value.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
}

/// Builds the shared state: loads the configuration and the first generation.
pub fn state(options: &ServeOptions) -> anyhow::Result<Shared> {
    let fetcher = HttpsFetcher::default();
    let loaded = config::load_with(&options.config, &fetcher)?;
    // Like every path in the file, the audit log is relative to it.
    let audit_path = match loaded.file.audit.path.as_str() {
        "-" => "-".to_owned(),
        relative => options.config.parent().unwrap_or(Path::new(".")).join(relative).display().to_string(),
    };
    let audit = Audit::open(&audit_path).with_context(|| format!("opening the audit log `{audit_path}`"))?;
    let shared = DeploymentState::open(&loaded.file.state, loaded.revocations_path.clone())?;
    let deployment = Deployment::build(loaded, 1, Arc::clone(&shared))?;
    Ok(Arc::new(AppState {
        deployment: RwLock::new(Arc::new(deployment)),
        state: shared,
        metrics: Metrics::default(),
        audit,
        config_path: options.config.clone(),
        fetcher,
        reload_lock: Mutex::new(()),
        last_reload_error: Mutex::new(None),
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
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/.well-known/authzen-configuration", get(authzen::metadata))
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/v1/check", post(authzen::check))
        .route(&prefix, any(forward::forward_auth))
        .route(&format!("{prefix}/"), any(forward::forward_auth))
        .route(&format!("{prefix}/{{*rest}}"), any(forward::forward_auth))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(max_headers, header_limit))
        .with_state(state)
}

/// Refuses requests whose headers are larger than the configured cap (431), and echoes
/// `X-Request-ID` on every response.
async fn header_limit(State(max): State<usize>, request: Request, next: Next) -> Response {
    let size: usize = request.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    let request_id = request.headers().get("x-request-id").cloned();
    let mut response = if size > max {
        (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, axum::Json(serde_json::json!({"error": format!("request headers are {size} bytes, over the limit of {max}")})))
            .into_response()
    } else {
        next.run(request).await
    };
    if let Some(id) = request_id {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

async fn healthz(State(state): State<Shared>) -> Response {
    let d = state.deployment();
    let last_error = state.last_reload_error.lock().ok().and_then(|e| e.clone());
    let shared = Arc::clone(&state.state);
    // One round trip to the store, off the async threads.
    let store = tokio::task::spawn_blocking(move || shared.health()).await.unwrap_or_else(|e| serde_json::json!({"reachable": false, "error": e.to_string()}));
    // A node whose store cannot answer denies every bound call (`unavailable`): not healthy.
    let store_ok = store.get("reachable").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let status = if store_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if store_ok { "ok" } else { "store_unavailable" },
        "generation": d.generation,
        "config": state.config_path.display().to_string(),
        "last_reload_error": last_error,
        "store": store,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    let mut body = state.metrics.render(&state.gauges());
    state.state.metrics().render(state.state.backend().kind(), &mut body);
    let mut response = body.into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

/// Watches every file the configuration was read from (and JWKS URLs) and reloads on change;
/// SIGHUP reloads at once.
fn spawn_reloader(state: Shared) {
    let interval = Duration::from_secs(state.deployment().config.file.server.watch_interval_secs.max(1));
    let watched = state.clone();
    std::thread::Builder::new()
        .name("agentgate-reload".into())
        .spawn(move || {
            let mut stamps = file_stamps(&watched.deployment().config.sources);
            let mut jwks_due = Instant::now() + jwks_interval(&watched);
            loop {
                std::thread::sleep(interval);
                let d = watched.deployment();
                let now = file_stamps(&d.config.sources);
                let jwks_changed = if Instant::now() >= jwks_due {
                    jwks_due = Instant::now() + jwks_interval(&watched);
                    jwks_urls_changed(&watched, &d)
                } else {
                    false
                };
                if now != stamps || jwks_changed {
                    let ok = watched.reload(if jwks_changed { "JWKS changed" } else { "file changed" });
                    // After a failed reload, wait for the next edit rather than retrying this one.
                    stamps = if ok { file_stamps(&watched.deployment().config.sources) } else { now };
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
    trust.issuers.iter().filter(|i| config::is_url(&i.source)).any(|issuer| match state.fetcher.fetch_fresh(&issuer.source) {
        Ok(fresh) => fresh != issuer.jwks,
        Err(e) => {
            tracing::warn!(url = %issuer.source, error = %e, "JWKS refresh failed; the last good keys stay in force");
            false
        }
    })
}

fn file_stamps(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths.iter().map(|p| stamp(p)).collect()
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
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

/// Serves `state` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve_on(listener: tokio::net::TcpListener, state: Shared, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let _ = state.bound.set(listener.local_addr()?);
    spawn_reloader(state.clone());
    tracing::info!(addr = %listener.local_addr()?, config = %state.config_path.display(), "agentgate serving");
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
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
