//! Pre-initialization: run `preload(config)` in an instance and snapshot it with wasmtime-wizer.
//! The result is an ordinary component whose memory already holds the parsed policies, the trust
//! store and the precomputed key tables, so a *fresh* instance decides its first call without
//! any start-up work — the model of per-request edge runtimes. `agentgate bundle` ships the same
//! snapshot as a self-contained file.

use super::bindings::{self, HostState};
use agentgate_engine::EngineConfig;
use anyhow::{Context as _, bail};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use wasmtime::component::{Linker, Val, wasm_wave};
use wasmtime::{Engine, Store};
use wasmtime_wizer::Wizer;

/// Returns `component` snapshotted after `preload(config)`.
/// `deadline_ticks` bounds the run like any call (epoch interruption is on in every engine).
pub fn preinitialize(engine: &Engine, component: &[u8], config: &EngineConfig, state: HostState, deadline_ticks: u64) -> anyhow::Result<Vec<u8>> {
    let config_json = serde_json::to_string(config)?;
    let argument = wasm_wave::to_string(&Val::String(config_json)).map_err(|e| anyhow::anyhow!("encoding the config: {e}"))?;
    let mut wizer = Wizer::new();
    wizer.init_func(format!("preload({argument})"));

    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    bindings::add_to_linker(&mut linker)?;
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(deadline_ticks);
    let run = wizer.run_component(&mut store, component, async |store, component| linker.instantiate_async(store, component).await);
    let (snapshot, results) = block_on(run).map_err(anyhow::Error::from).context("pre-initializing the component")?;
    preload_outcome(&results)?;
    Ok(snapshot)
}

/// What `preload` returned (`result<_, string>`), as the snapshot's success or its error message.
pub(crate) fn preload_outcome(results: &[Val]) -> anyhow::Result<()> {
    match results.first() {
        Some(Val::Result(Ok(_))) => Ok(()),
        Some(Val::Result(Err(Some(message)))) => match message.as_ref() {
            Val::String(m) => bail!("{m}"),
            other => bail!("preload failed: {other:?}"),
        },
        other => bail!("preload returned {other:?}"),
    }
}

/// Drives a future that never waits on I/O: the component runs on a wasmtime fiber and every
/// import it calls during `preload` answers synchronously.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}
