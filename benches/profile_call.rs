//! Not a criterion bench: a loop for profilers (`perf record`, `valgrind --tool=callgrind`).
//! Pre-mints the requests, then decides them on one host, so a profile shows the call alone.
//!
//! `cargo bench --bench profile_call -- native|native-awslc|guest|host [ROUNDS] [COMPONENT.wasm]`
//! (a component file replaces the embedded one: compare guest builds without rebuilding the host).
//! The component forms write `/tmp/perf-<pid>.map`, so `perf report` names the wasm functions.

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use agentgate::config::CryptoPlacement;
use agentgate::{Decide, Engine, Runtime, RuntimeOptions};
use common::{AcceptEveryProof as AcceptAll, Fixture};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let host = args.get(1).map(String::as_str).unwrap_or("native");
    let rounds: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(50);
    let f = Fixture::mail();
    let requests: Vec<_> = (0..100).map(|_| f.call()).collect();
    let mut decider: Box<dyn Decide> = match host {
        "guest" | "host" => {
            let crypto = if host == "guest" { CryptoPlacement::Guest } else { CryptoPlacement::Host };
            let component_file = args.get(3).map(std::path::PathBuf::from);
            let runtime = Runtime::new(RuntimeOptions { crypto, component_file, perf_map: true, ..RuntimeOptions::default() }, Arc::new(AcceptAll)).unwrap();
            let mut v = runtime.verifier(&f.config.engine).unwrap();
            v.warm_up().unwrap();
            Box::new(v)
        }
        "native-awslc" => {
            let engine = Engine::with_verifier(&f.config.engine, Box::new(AcceptAll), Box::new(agentgate::native_crypto::AwsLcVerifier)).unwrap();
            Box::new(engine)
        }
        _ => {
            let engine = Engine::new(&f.config.engine, Box::new(AcceptAll)).unwrap();
            engine.warm_up();
            Box::new(engine)
        }
    };
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for r in &requests {
            assert!(decider.decide(r).allowed);
        }
    }
    let calls = (rounds * requests.len()) as u32;
    eprintln!("{host}: {:?} per call over {calls} calls", start.elapsed() / calls);
}
