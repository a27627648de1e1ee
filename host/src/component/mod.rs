//! The wasmtime runtime for the decision component: one `Engine` and `InstancePre` per process,
//! a `Store` per verifier with a memory limit and an epoch deadline per call, so a runaway call is
//! a deny rather than a hang.

pub mod bindings;
pub mod cache;
pub mod preinit;

use crate::config::{CryptoPlacement, RuntimeSection};
use agentgate_engine::recorded::{RECORD_VERSION, RecordedCall};
use agentgate_engine::{CheckRequest, Decision, EngineConfig, SharedState};
use anyhow::Context as _;
use bindings::{Gate, GatePre, HostState};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::WasiCtx;

/// The portable component (`gate` world): ES256 runs inside it. Other hosts (Node, bundles) get
/// this one.
pub const PORTABLE_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentgate_gate.wasm"));
/// The `gate-accelerated` component: ES256 is imported from the host.
pub const ACCELERATED_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentgate_gate_accelerated.wasm"));
/// SHA-256 (hex) of `PORTABLE_COMPONENT`, computed at build time.
const PORTABLE_DIGEST: &str = include_str!(concat!(env!("OUT_DIR"), "/agentgate_gate.wasm.sha256"));
/// SHA-256 (hex) of `ACCELERATED_COMPONENT`, computed at build time.
const ACCELERATED_DIGEST: &str = include_str!(concat!(env!("OUT_DIR"), "/agentgate_gate_accelerated.wasm.sha256"));

/// How often the epoch advances; call budgets are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// How to run the component.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where ES256 runs.
    pub crypto: CryptoPlacement,
    /// Run this component file instead of the embedded one (e.g. a bundle).
    pub component_file: Option<PathBuf>,
    /// Budget of one `check`.
    pub call_timeout: Duration,
    /// Budget of building a verifier.
    pub create_timeout: Duration,
    /// Linear memory limit per instance.
    pub memory_limit_bytes: usize,
    /// Directory for compiled artifacts; `None` compiles in memory every start.
    pub cache_dir: Option<PathBuf>,
    /// Pooling allocator with room for this many live instances (`None`: allocate on demand).
    pub pooling: Option<u32>,
    /// Write `/tmp/perf-<pid>.map` so `perf` names the component's compiled functions
    /// (`benches/profile_call.rs`); off in production.
    pub perf_map: bool,
}

impl RuntimeOptions {
    /// Options from the `[runtime]` section of a config.
    pub fn from_section(section: &RuntimeSection) -> Self {
        RuntimeOptions {
            crypto: section.crypto,
            component_file: None,
            call_timeout: Duration::from_millis(section.call_timeout_ms.max(1)),
            create_timeout: Duration::from_millis(section.create_timeout_ms.max(1)),
            memory_limit_bytes: usize::try_from(section.memory_limit_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX),
            cache_dir: cache::default_dir(),
            pooling: None,
            perf_map: false,
        }
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions::from_section(&RuntimeSection::default())
    }
}

/// Why a verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The component rejected the configuration; the message names the file and line.
    #[error("{0}")]
    Config(String),
    /// The runtime failed (trap, budget, instantiation).
    #[error("the decision component failed: {0:#}")]
    Runtime(anyhow::Error),
}

struct RuntimeInner {
    engine: Engine,
    pre: GatePre<HostState>,
    options: RuntimeOptions,
    state: Arc<dyn SharedState>,
    _ticker: EpochTicker,
}

/// Advances the engine's epoch every `EPOCH_TICK` until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("agentgate-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map(drop)
            .unwrap_or_else(|e| tracing::error!("could not start the epoch ticker, calls have no time budget: {e}"));
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The loaded, linked component. Cheap to clone; create verifiers from it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Compiles (or loads the cached compilation of) the component and links its imports.
    pub fn new(options: RuntimeOptions, state: Arc<dyn SharedState>) -> anyhow::Result<Self> {
        let (engine, ticker) = new_engine(&options)?;
        let (bytes, digest) = component_bytes(&options)?;
        let component = cache::load(&engine, &bytes, &digest, options.cache_dir.as_deref())?;
        Runtime::from_component(engine, ticker, &component, options, state)
    }

    /// Like `new`, but with the component pre-initialized for `config` (see `preinit`): fresh
    /// instances start with the verifier built. The snapshot is cached like any compiled artifact.
    pub fn preinitialized(options: RuntimeOptions, state: Arc<dyn SharedState>, config: &EngineConfig) -> anyhow::Result<Self> {
        let (engine, ticker) = new_engine(&options)?;
        let (bytes, digest) = component_bytes(&options)?;
        let config_json = serde_json::to_string(config)?;
        let component = cache::load_derived(&engine, &[digest.as_bytes(), config_json.as_bytes(), b"preinit"], options.cache_dir.as_deref(), || {
            // The snapshot is taken once; allow it a generous multiple of the create budget.
            let ticks = ticks(options.create_timeout.saturating_mul(4));
            preinit::preinitialize(&engine, &bytes, config, host_state(&options, Arc::clone(&state)), ticks)
        })?;
        Runtime::from_component(engine, ticker, &component, options, state)
    }

    /// A self-contained component with `config` baked in (policies parsed, key tables built):
    /// `verifier.preloaded()` hands out its verifier in any host, with no files beside it.
    pub fn bundle(options: &RuntimeOptions, config: &EngineConfig) -> anyhow::Result<Vec<u8>> {
        let (engine, _ticker) = new_engine(options)?;
        // A bundle is for any host: built from a component without wasmtime-only features.
        let (bytes, _) = component_bytes(options)?;
        let state: Arc<dyn SharedState> = Arc::new(crate::state::LocalState::default());
        preinit::preinitialize(&engine, &bytes, config, host_state(options, state), ticks(options.create_timeout.saturating_mul(4)))
    }

    fn from_component(
        engine: Engine,
        ticker: EpochTicker,
        component: &Component,
        options: RuntimeOptions,
        state: Arc<dyn SharedState>,
    ) -> anyhow::Result<Self> {
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::add_to_linker(&mut linker)?;
        let pre = GatePre::new(linker.instantiate_pre(component)?)?;
        Ok(Runtime { inner: Arc::new(RuntimeInner { engine, pre, options, state, _ticker: ticker }) })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The options in force.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// A new instance with a verifier built from `config`.
    pub fn verifier(&self, config: &EngineConfig) -> Result<ComponentVerifier, VerifierError> {
        let source = Source::Create(Arc::new(bindings::config_to_wit(config)));
        let live = Live::create(&self.inner, &source)?;
        Ok(ComponentVerifier { runtime: Arc::clone(&self.inner), source, live: Some(live), revocations: None })
    }

    /// A new instance of a pre-initialized component, handing out its preloaded verifier.
    pub fn preloaded_verifier(&self) -> Result<ComponentVerifier, VerifierError> {
        let live = Live::create(&self.inner, &Source::Preloaded)?;
        Ok(ComponentVerifier { runtime: Arc::clone(&self.inner), source: Source::Preloaded, live: Some(live), revocations: None })
    }
}

/// An engine with epoch interruption and its ticker (stopped when the runtime is dropped).
fn new_engine(options: &RuntimeOptions) -> anyhow::Result<(Engine, EpochTicker)> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    if options.perf_map {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(instances) = options.pooling {
        // A wasm32-wasip2 component instantiates a few core modules (the program plus adapter
        // shims), each with a table and at most one memory.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances);
        pool.total_core_instances(instances.saturating_mul(4));
        pool.total_memories(instances.saturating_mul(2));
        pool.total_tables(instances.saturating_mul(4));
        pool.total_stacks(instances);
        pool.max_memory_size(options.memory_limit_bytes);
        // A freed slot keeps the pages its instance dirtied, reset to the snapshot's contents in
        // place, so the next instance starts without page faults: a fresh pre-initialized
        // instance's first decision drops from ~510 to ~260 µs with host crypto. Only with the
        // PAGEMAP_SCAN ioctl (Linux 6.7+), which finds the dirtied pages; without it, wasmtime
        // would memset the whole kept range on every free.
        // `Auto`, not `Yes`: should the ioctl fail at engine creation after all, wasmtime falls
        // back to memset instead of refusing to start.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Auto);
            pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES.min(options.memory_limit_bytes));
            pool.table_keep_resident(1 << 20);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config)?;
    let ticker = EpochTicker::start(engine.clone());
    Ok((engine, ticker))
}

/// The most memory a freed pooled slot keeps resident (the rest is returned to the kernel). The
/// demo configs' instances dirty a few MiB: the snapshot's heap that a call touches plus the
/// call's own allocations.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;

/// The component to run and its SHA-256 (hex).
fn component_bytes(options: &RuntimeOptions) -> anyhow::Result<(std::borrow::Cow<'static, [u8]>, String)> {
    Ok(match (&options.component_file, options.crypto) {
        (Some(path), _) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let digest = cache::hex_digest(&bytes);
            (bytes.into(), digest)
        }
        (None, CryptoPlacement::Guest) => (PORTABLE_COMPONENT.into(), PORTABLE_DIGEST.trim().to_owned()),
        (None, CryptoPlacement::Host) => (ACCELERATED_COMPONENT.into(), ACCELERATED_DIGEST.trim().to_owned()),
    })
}

fn host_state(options: &RuntimeOptions, state: Arc<dyn SharedState>) -> HostState {
    let limits = StoreLimitsBuilder::new().memory_size(options.memory_limit_bytes).trap_on_grow_failure(true).build();
    HostState { wasi: WasiCtx::builder().build(), table: Default::default(), limits, imports: bindings::StateImports::new(state) }
}

/// How an instance gets its verifier.
#[derive(Clone)]
enum Source {
    /// `verifier.create(config)`.
    Create(Arc<bindings::WitConfig>),
    /// `verifier.preloaded()` of a pre-initialized component.
    Preloaded,
}

fn ticks(budget: Duration) -> u64 {
    u64::try_from(budget.as_micros() / EPOCH_TICK.as_micros()).unwrap_or(u64::MAX).saturating_add(1)
}

/// One instance and its verifier resource.
struct Live {
    store: Store<HostState>,
    bindings: Gate,
    verifier: ResourceAny,
}

impl Live {
    fn create(rt: &RuntimeInner, source: &Source) -> Result<Live, VerifierError> {
        let mut store = Store::new(&rt.engine, host_state(&rt.options, Arc::clone(&rt.state)));
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(rt.options.create_timeout));
        let bindings = rt.pre.instantiate(&mut store).map_err(|e| VerifierError::Runtime(explain_trap(e, rt.options.create_timeout)))?;
        let exports = bindings.agentgate_verifier_engine().verifier();
        let created = match source {
            Source::Create(config) => exports.call_create(&mut store, config),
            Source::Preloaded => exports.call_preloaded(&mut store),
        }
        .map_err(|e| VerifierError::Runtime(explain_trap(e, rt.options.create_timeout)))?;
        let verifier = created.map_err(VerifierError::Config)?;
        Ok(Live { store, bindings, verifier })
    }
}

/// A verifier living in its own component instance. After a trap the instance is discarded and the
/// next call builds a fresh one.
pub struct ComponentVerifier {
    runtime: Arc<RuntimeInner>,
    source: Source,
    live: Option<Live>,
    /// The revocation list last set, re-applied to a fresh instance.
    revocations: Option<String>,
}

impl std::fmt::Debug for ComponentVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentVerifier").field("live", &self.live.is_some()).finish_non_exhaustive()
    }
}

impl ComponentVerifier {
    /// Decides one call. Traps and exhausted budgets become `engine_error` denials.
    pub fn check(&mut self, request: &CheckRequest) -> Decision {
        let timeout = self.runtime.options.call_timeout;
        let live = match self.live_instance() {
            Ok(live) => live,
            Err(e) => return Decision::engine_error(format!("the decision component could not be restarted: {e}")),
        };
        live.store.set_epoch_deadline(ticks(timeout));
        let wit_request = bindings::request_to_wit(request);
        let result = live.bindings.agentgate_verifier_engine().verifier().call_check(&mut live.store, live.verifier, &wit_request);
        match result {
            Ok(decision) => bindings::decision_from_wit(decision),
            Err(e) => {
                // The instance may be in any state after a trap: never reuse it.
                self.live = None;
                Decision::engine_error(format!("{:#}", explain_trap(e, timeout)))
            }
        }
    }

    /// As `check`, and the call as it was authorized when it got as far as the policies (the
    /// WIT's `check-recorded`), for a decision log. A trap gives an `engine_error` deny and no call.
    pub fn check_recorded(&mut self, request: &CheckRequest) -> (Decision, Option<RecordedCall>) {
        let timeout = self.runtime.options.call_timeout;
        let live = match self.live_instance() {
            Ok(live) => live,
            Err(e) => return (Decision::engine_error(format!("the decision component could not be restarted: {e}")), None),
        };
        live.store.set_epoch_deadline(ticks(timeout));
        let wit_request = bindings::request_to_wit(request);
        let result = live.bindings.agentgate_verifier_engine().verifier().call_check_recorded(&mut live.store, live.verifier, &wit_request);
        match result {
            Ok(recorded) => {
                // The component wrote the record; it is read as any record is (form and shape).
                // Only a component of another version could write one this host cannot read.
                let call = recorded.call_json.and_then(|json| {
                    // This host's own form is read in one pass; anything else goes through
                    // `parse` for its precise refusal.
                    let parsed = match serde_json::from_str::<RecordedCall>(&json) {
                        Ok(call) if call.version == RECORD_VERSION => Ok(call),
                        _ => serde_json::from_str::<serde_json::Value>(&json).map_err(|e| e.to_string()).and_then(|v| RecordedCall::parse(&v)),
                    };
                    parsed.map_err(|e| tracing::error!(error = %e, "the component recorded a call this host cannot read")).ok()
                });
                (bindings::decision_from_wit(recorded.decision), call)
            }
            Err(e) => {
                self.live = None;
                (Decision::engine_error(format!("{:#}", explain_trap(e, timeout))), None)
            }
        }
    }

    /// Which of `tools` the caller of an allowed `tools/list` request may see (the WIT's
    /// `visible-tools`). A trap or a denial of the credentials gives the denial.
    pub fn visible_tools(&mut self, request: &CheckRequest, tools: &[String]) -> Result<Vec<bool>, Box<Decision>> {
        let timeout = self.runtime.options.call_timeout;
        let live = match self.live_instance() {
            Ok(live) => live,
            Err(e) => return Err(Box::new(Decision::engine_error(format!("the decision component could not be restarted: {e}")))),
        };
        live.store.set_epoch_deadline(ticks(timeout));
        let wit_request = bindings::request_to_wit(request);
        let result = live.bindings.agentgate_verifier_engine().verifier().call_visible_tools(&mut live.store, live.verifier, &wit_request, tools);
        match result {
            Ok(Ok(visible)) if visible.len() == tools.len() => Ok(visible),
            Ok(Ok(_)) => Err(Box::new(Decision::engine_error("the decision component answered for another number of tools"))),
            Ok(Err(decision)) => Err(Box::new(bindings::decision_from_wit(decision))),
            Err(e) => {
                self.live = None;
                Err(Box::new(Decision::engine_error(format!("{:#}", explain_trap(e, timeout)))))
            }
        }
    }

    /// Starts a batch: until `end_batch`, a proof accepted once may be presented again (one HTTP
    /// call evaluated for several actions); across batches replays are refused as always.
    pub fn begin_batch(&mut self) {
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().imports.batch = Some(Default::default());
        }
    }

    /// Ends a batch.
    pub fn end_batch(&mut self) {
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().imports.batch = None;
        }
    }

    /// Builds the precomputed tables of the trusted keys now (for long-lived verifiers).
    pub fn warm_up(&mut self) -> Result<(), String> {
        let timeout = self.runtime.options.create_timeout;
        let live = self.live_instance().map_err(|e| e.to_string())?;
        live.store.set_epoch_deadline(ticks(timeout));
        let result = live.bindings.agentgate_verifier_engine().verifier().call_warm_up(&mut live.store, live.verifier);
        result.map_err(|e| {
            self.live = None;
            format!("{:#}", explain_trap(e, timeout))
        })
    }

    /// Replaces the revocation list inside the instance.
    pub fn set_revocations(&mut self, json: &str) -> Result<u32, String> {
        let timeout = self.runtime.options.call_timeout;
        let live = self.live_instance().map_err(|e| e.to_string())?;
        live.store.set_epoch_deadline(ticks(timeout));
        let result = live.bindings.agentgate_verifier_engine().verifier().call_set_revocations(&mut live.store, live.verifier, json);
        match result {
            Ok(Ok(count)) => {
                self.revocations = Some(json.to_owned());
                Ok(count)
            }
            Ok(Err(message)) => Err(message),
            Err(e) => {
                self.live = None;
                Err(format!("{:#}", explain_trap(e, timeout)))
            }
        }
    }

    fn live_instance(&mut self) -> Result<&mut Live, VerifierError> {
        if self.live.is_none() {
            let mut live = Live::create(&self.runtime, &self.source)?;
            if let Some(json) = &self.revocations {
                let applied = live.bindings.agentgate_verifier_engine().verifier().call_set_revocations(&mut live.store, live.verifier, json);
                match applied {
                    Ok(Ok(_)) => {}
                    Ok(Err(m)) => return Err(VerifierError::Config(m)),
                    Err(e) => return Err(VerifierError::Runtime(e.into())),
                }
            }
            self.live = Some(live);
        }
        self.live.as_mut().ok_or_else(|| VerifierError::Runtime(anyhow::anyhow!("no instance")))
    }
}

/// Names the budget that ran out; other traps keep wasmtime's message.
/// A reason for a failed call: what happened, never the guest's backtrace (symbols and offsets
/// are for the operator's debugger, not for deny bodies and audit lines).
fn explain_trap(e: wasmtime::Error, budget: Duration) -> anyhow::Error {
    let text = format!("{e:#}");
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => anyhow::anyhow!("the decision component exceeded its time budget of {} ms", budget.as_millis()),
        // The limiter's refusal, worded by wasmtime versions either way.
        _ if text.contains("forcing a memory growth failure") || text.contains("forcing trap when growing memory") => {
            anyhow::anyhow!("the decision component exceeded its memory limit")
        }
        // wasmtime words a trap "wasm trap: <what>"; the reason keeps the what.
        Some(trap) => {
            let what = trap.to_string();
            anyhow::anyhow!("the decision component trapped: {}", what.strip_prefix("wasm trap: ").unwrap_or(&what))
        }
        None => anyhow::anyhow!("the decision component failed: {}", e.root_cause()),
    }
}
