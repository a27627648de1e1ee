//! The route table is the engine's (`agentgate_engine::routing`), shared with the wasi:http gateway.

pub use agentgate_engine::routing::{Matched, Route, compile, resolve};
