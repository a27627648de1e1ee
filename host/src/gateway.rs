//! The wasi:http gateway: building it (the gateway component pre-initialized with a deployment's
//! engine, routes and upstream — one self-contained file for any wasi:http host) and running it
//! (a minimal wasi:http host on tokio + hyper, as `wasmtime serve` does).
//!
//! Two builds: `GatewayState::Instance` imports nothing of agentgate's and runs on any wasi:http
//! host, with proof ids per instance; `GatewayState::Host` imports agentgate's `state`, which
//! `agentgate gateway run --config` backs with the deployment's store (memory or Redis), so proofs
//! are single-use and revocations current across every instance and node.

use crate::component::bindings::{StateImports, add_state_to_linker};
use crate::config::LoadedConfig;
use agentgate_engine::SharedState;
use anyhow::{Context as _, bail};
use hyper::server::conn::http1;
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime::component::{Component, Linker, ResourceTable, Val, wasm_wave};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wasmtime_wizer::Wizer;

/// The gateway component before pre-initialization (world `http-gateway`: no agentgate imports).
pub const GATEWAY_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentgate_gateway.wasm"));
/// The gateway that imports agentgate's `state` (world `http-gateway-shared`).
pub const GATEWAY_SHARED_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentgate_gateway_shared.wasm"));

/// Where a gateway keeps proof ids and gets revocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StatePlacement {
    /// In each instance; the revocation list baked in. Runs on any wasi:http host.
    #[default]
    Instance,
    /// From the host through agentgate's `state` import (`agentgate gateway run --config`).
    Host,
}

/// Per-request host state.
pub struct GatewayState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    imports: StateImports,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState").finish_non_exhaustive()
    }
}

impl GatewayState {
    fn new(state: Arc<dyn SharedState>) -> Self {
        GatewayState { wasi: WasiCtx::builder().build(), http: WasiHttpCtx::new(), table: ResourceTable::new(), imports: StateImports::on_tokio(state) }
    }
}

impl WasiView for GatewayState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for GatewayState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: Default::default() }
    }
}

fn linker(engine: &Engine, placement: StatePlacement) -> anyhow::Result<Linker<GatewayState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    if placement == StatePlacement::Host {
        add_state_to_linker(&mut linker, |s: &mut GatewayState| &mut s.imports)?;
    }
    Ok(linker)
}

/// Which build a gateway component is: whether it imports agentgate's `state`.
pub fn placement_of(engine: &Engine, component: &Component) -> StatePlacement {
    let imports_state = component.component_type().imports(engine).any(|(name, _)| name.starts_with("agentgate:verifier/state"));
    if imports_state { StatePlacement::Host } else { StatePlacement::Instance }
}

/// The gateway component with `config`'s engine, its `[[routes]]`, its first external origin and
/// `upstream` baked in: `wasmtime serve gateway.wasm` needs nothing beside it. With
/// `StatePlacement::Host` the revocation list is left to the host (not baked in).
pub fn build(config: &LoadedConfig, upstream: &str, placement: StatePlacement) -> anyhow::Result<Vec<u8>> {
    let Some(origin) = config.file.server.external_origins.first() else {
        bail!("{}: `[server] external_origins` must name the origin clients use (DPoP proofs name it)", config.path.display());
    };
    if config.file.routes.is_empty() && config.file.mcp.is_none() {
        bail!("{}: the gateway needs `[[routes]]` (or `[mcp]`) to map requests to actions", config.path.display());
    }
    let engine_config = match placement {
        StatePlacement::Instance => config.engine.clone(),
        StatePlacement::Host => agentgate_engine::EngineConfig { revocations_json: String::new(), ..config.engine.clone() },
    };
    let gateway_config = json!({
        "engine": engine_config,
        "upstream": upstream,
        "external_origin": origin,
        "routes": config.file.routes,
        "mcp": mcp_section(config)?,
        "max_body_bytes": config.file.server.max_body_bytes,
    });
    let argument = wasm_wave::to_string(&Val::String(gateway_config.to_string())).map_err(|e| anyhow::anyhow!("encoding the config: {e}"))?;
    let engine = Engine::default();
    let linker = linker(&engine, placement)?;
    // `preload` builds the engine; it consults no state, so a throw-away one serves.
    let mut store = Store::new(&engine, GatewayState::new(Arc::new(crate::state::LocalState::default())));
    let mut wizer = Wizer::new();
    wizer.init_func(format!("preload({argument})"));
    let component = match placement {
        StatePlacement::Instance => GATEWAY_COMPONENT,
        StatePlacement::Host => GATEWAY_SHARED_COMPONENT,
    };
    let run = wizer.run_component(&mut store, component, async |store, component| linker.instantiate_async(store, component).await);
    let (snapshot, results) = crate::component::preinit::block_on(run).map_err(anyhow::Error::from).context("pre-initializing the gateway")?;
    crate::component::preinit::preload_outcome(&results)?;
    Ok(snapshot)
}

/// What the gateway needs of `[mcp]` and `[protected_resource]`: the MCP endpoint (its JSON-RPC
/// bodies decided as `agentgate serve` decides them in reverse-proxy mode), and the RFC 9728
/// metadata the gateway serves and names in its challenges.
fn mcp_section(config: &LoadedConfig) -> anyhow::Result<serde_json::Value> {
    let file = &config.file;
    let metadata = match &file.protected_resource {
        Some(resource) => json!({
            "url": resource.metadata_url().map_err(anyhow::Error::msg)?,
            "paths": [crate::server::resource_metadata::WELL_KNOWN, resource.metadata_path().map_err(anyhow::Error::msg)?],
            "document": resource.document(file.dpop.mode == agentgate_engine::DpopMode::Required),
        }),
        None => serde_json::Value::Null,
    };
    Ok(json!({
        "endpoint": file.mcp,
        "metadata": metadata,
        "dpop": file.dpop.mode != agentgate_engine::DpopMode::Off,
    }))
}

/// A minimal wasi:http host: one instance per request, like `wasmtime serve`.
#[derive(Clone)]
pub struct WasiHttpHost {
    pre: ProxyPre<GatewayState>,
    state: Arc<dyn SharedState>,
}

impl std::fmt::Debug for WasiHttpHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiHttpHost").finish_non_exhaustive()
    }
}

impl WasiHttpHost {
    /// Compiles a wasi:http proxy component. A gateway built to import agentgate's `state` gets
    /// `state` (the deployment's store); one that does not needs none (`None`).
    pub fn new(component: &[u8], state: Option<Arc<dyn SharedState>>) -> anyhow::Result<Self> {
        let engine = Engine::default();
        let component = Component::new(&engine, component)?;
        let placement = placement_of(&engine, &component);
        let state = match (placement, state) {
            (StatePlacement::Host, Some(state)) => state,
            (StatePlacement::Host, None) => {
                bail!("this gateway imports agentgate's `state` (built with `--state host`): run it with `--config` naming the deployment's `[state]`")
            }
            (StatePlacement::Instance, Some(_)) => {
                bail!(
                    "this gateway keeps its state per instance (built without `--state host`): it would ignore the deployment's store, so `--config` is refused"
                )
            }
            (StatePlacement::Instance, None) => Arc::new(crate::state::LocalState::default()) as Arc<dyn SharedState>,
        };
        let pre = ProxyPre::new(linker(&engine, placement)?.instantiate_pre(&component)?)?;
        Ok(WasiHttpHost { pre, state })
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let host = Arc::new(self);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
                accepted = listener.accept() => accepted?,
                () = &mut shutdown => return Ok(()),
            };
            let host = host.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let host = host.clone();
                    async move { host.handle(request).await }
                });
                if let Err(e) = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }

    async fn handle(&self, request: hyper::Request<hyper::body::Incoming>) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
        let mut store = Store::new(self.pre.engine(), GatewayState::new(Arc::clone(&self.state)));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(store, request, out).await
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => anyhow::anyhow!("the gateway never sent a response"),
                    Ok(Err(e)) => anyhow::Error::from(e),
                    Err(e) => e.into(),
                };
                Err(e.context("the gateway failed"))
            }
        }
    }
}
