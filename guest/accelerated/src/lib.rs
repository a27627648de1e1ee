//! The `gate-accelerated` component: links the engine, whose adapter exports the WIT interface.
//! Nothing else lives here.

extern crate agentgate_engine;
