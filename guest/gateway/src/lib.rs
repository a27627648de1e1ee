//! agentgate as a wasi:http gateway: each incoming request is mapped to a check by the route
//! table, decided by the engine (baked in by `preload` before the component was snapshotted), and
//! either forwarded to the upstream with the agent/user/chain headers or answered with the same
//! 401/403/400 as `agentgate serve`.
//!
//! State comes in two builds. The default (`http-gateway` world) imports nothing of agentgate's
//! and keeps proof ids per instance: a host that creates an instance per request (as `wasmtime
//! serve` does) cannot see a proof reused across requests, so such deployments turn on DPoP server
//! nonces and keep `dpop.max_age_secs` short. The `shared-state` build (`http-gateway-shared`)
//! imports agentgate's `state` interface, which `agentgate gateway run` backs with the
//! deployment's store (memory or Redis): proofs are single-use and revocations live across every
//! instance and node.

#![cfg(target_arch = "wasm32")]
// The generated bindings export `#[unsafe(no_mangle)]` entry points.
#![allow(unsafe_code)]

mod forward;
mod mcp;

#[cfg(not(feature = "shared-state"))]
wit_bindgen::generate!({ path: "../../wit", world: "http-gateway" });
#[cfg(feature = "shared-state")]
wit_bindgen::generate!({ path: "../../wit", world: "http-gateway-shared" });

mod state;

use agentgate_engine::http_answer::{self, Dialect};
use agentgate_engine::routing::{self, Route, RouteSpec};
use agentgate_engine::{CheckRequest, Credentials, Decision, Engine, EngineConfig, EntityRef, HttpRequest, Outcome};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use wasip2::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam, Scheme};

/// What `preload` receives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayConfig {
    /// The engine configuration (`agentgate resolve`).
    engine: EngineConfig,
    /// Where allowed requests go: `http(s)://host[:port]`.
    upstream: String,
    /// The origin clients use (`https://mail.example.com`): DPoP proofs name it.
    external_origin: String,
    /// Method + path template → action and resource.
    routes: Vec<RouteSpec>,
    /// The MCP endpoint and the protected resource metadata.
    #[serde(default)]
    mcp: mcp::McpConfig,
    /// The largest request body read whole (an MCP message), in bytes.
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

/// A preloaded gateway.
struct Gateway {
    engine: Engine,
    routes: Vec<Route>,
    upstream_scheme: Scheme,
    upstream_authority: String,
    external_origin: String,
    mcp: mcp::McpConfig,
    max_body_bytes: usize,
}

static GATEWAY: Mutex<Option<Arc<Gateway>>> = Mutex::new(None);

struct Component;

impl Guest for Component {
    fn preload(config_json: String) -> Result<(), String> {
        let config: GatewayConfig = serde_json::from_str(&config_json).map_err(|e| format!("gateway config: {e}"))?;
        let engine = Engine::new(&config.engine, state::for_this_build())?;
        engine.warm_up();
        let routes = routing::compile(&config.routes)?;
        let (scheme, rest) = config.upstream.split_once("://").ok_or_else(|| format!("upstream `{}` is not a URL", config.upstream))?;
        let upstream_scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("upstream scheme `{other}` is not http or https")),
        };
        let upstream_authority = rest.trim_end_matches('/').to_owned();
        if upstream_authority.is_empty() || upstream_authority.contains('/') {
            return Err(format!("upstream `{}` must be `scheme://host[:port]`", config.upstream));
        }
        let gateway = Gateway {
            engine,
            routes,
            upstream_scheme,
            upstream_authority,
            external_origin: config.external_origin.trim_end_matches('/').to_owned(),
            mcp: config.mcp,
            max_body_bytes: config.max_body_bytes,
        };
        let mut slot = GATEWAY.lock().map_err(|_| "lock poisoned".to_owned())?;
        *slot = Some(Arc::new(gateway));
        Ok(())
    }
}

export!(Component);

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let gateway = GATEWAY.lock().ok().and_then(|g| g.clone());
        let Some(gateway) = gateway else {
            let d = host_denial(Outcome::EngineError, "no gateway configuration was preloaded into this component".into());
            return deny(&d, &decision_id(), None, response_out);
        };
        gateway.handle(request, response_out);
    }
}

wasip2::http::proxy::export!(Component);

impl Gateway {
    fn handle(&self, request: IncomingRequest, response_out: ResponseOutparam) {
        let id = decision_id();
        let method = method_name(&request.method());
        let target = request.path_with_query().unwrap_or_else(|| "/".to_owned());
        let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
        if let Some(document) = self.mcp.metadata_at(&method, &path) {
            let headers = Fields::new();
            let _ = headers.append("content-type", b"application/json");
            let _ = headers.append("cache-control", b"public, max-age=300");
            return respond(200, headers, document.as_bytes(), response_out);
        }
        if let Some(endpoint) = self.mcp.endpoint.as_ref().filter(|e| e.path == path) {
            return mcp::handle(self, endpoint, request, &method, &target, &id, response_out);
        }
        let headers = request.headers();
        let Some(matched) = routing::resolve(&self.routes, &method, &path) else {
            let reason = format!("no route for `{} {}`", method.escape_default(), path.escape_default());
            return deny(&host_denial(Outcome::InvalidRequest, reason), &id, self.challenge(), response_out);
        };
        let resource = EntityRef { type_name: matched.resource_type, id: matched.resource_id };
        let check = self.check_request(&headers, &method, &target, matched.action, resource, None, matched.entities.map(|e| e.to_string()));
        let decision = self.engine.check(&check);
        if !decision.allowed {
            drop(headers);
            return deny(&decision, &id, self.challenge(), response_out);
        }
        let forwarded = forward::upstream_headers(&headers, &decision, &id);
        drop(headers);
        let method = request.method();
        forward::forward(self, &method, forwarded, &target, forward::RequestBody::Stream(request), None, response_out);
    }

    /// The engine request for a call: the credentials from the request's headers, the URI the
    /// caller addressed (the external origin and the request target).
    #[allow(clippy::too_many_arguments)]
    fn check_request(
        &self,
        headers: &Fields,
        method: &str,
        target: &str,
        action: String,
        resource: EntityRef,
        input: Option<String>,
        entities: Option<String>,
    ) -> CheckRequest {
        let value = |name: &str| -> Option<String> {
            let values: Vec<String> = headers.get(name).into_iter().filter_map(|v| String::from_utf8(v).ok()).collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        CheckRequest {
            credentials: Credentials { authorization: value("authorization"), dpop: value("dpop"), agent_identity: value("workload-identity-token") },
            http: Some(HttpRequest { method: method.to_owned(), uri: format!("{}{target}", self.external_origin) }),
            action,
            resource,
            context_json: input,
            entities_json: entities,
            now: None,
        }
    }

    /// What this gateway's challenges carry: the metadata URL, and whether DPoP is taken.
    fn challenge(&self) -> Option<&mcp::McpConfig> {
        Some(&self.mcp)
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(m) => m.clone(),
    }
}

fn host_denial(outcome: Outcome, reason: String) -> Decision {
    let mut d = Decision::engine_error(reason);
    d.outcome = outcome;
    d
}

/// 128 random bits from `wasi:random`, base64url.
fn decision_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(wasip2::random::random::get_random_bytes(16))
}

/// The answer for a deny: the status, challenges and JSON body `agentgate serve` would send.
fn deny(decision: &Decision, id: &str, challenge: Option<&mcp::McpConfig>, response_out: ResponseOutparam) {
    let body = serde_json::json!({"decision": "deny", "outcome": decision.outcome.as_str(), "reason": decision.reason, "decision_id": id});
    let (status, headers) = denial_head(decision, id, challenge);
    respond(status, headers, body.to_string().as_bytes(), response_out);
}

/// The status and headers of a deny: the challenges (every 401 and a 403 `insufficient_scope`),
/// a DPoP nonce, `Retry-After`, the decision id.
fn denial_head(decision: &Decision, id: &str, challenge: Option<&mcp::McpConfig>) -> (u16, Fields) {
    let status = http_answer::status(decision, Dialect::Standard);
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let _ = headers.append("x-agentgate-decision-id", id.as_bytes());
    if let Some(secs) = http_answer::retry_after(decision, Dialect::Standard) {
        let _ = headers.append("retry-after", secs.to_string().as_bytes());
    }
    if status == 401 || decision.outcome == Outcome::InsufficientScope {
        let (metadata, dpop) = challenge.map_or((None, true), |c| (c.metadata.as_ref().map(|m| m.url.as_str()), c.dpop));
        for value in http_answer::challenges(decision, metadata, dpop) {
            let _ = headers.append("www-authenticate", value.as_bytes());
        }
        if let Some(nonce) = &decision.dpop_nonce {
            let _ = headers.append("dpop-nonce", nonce.as_bytes());
            let _ = headers.append("cache-control", b"no-store");
        }
    }
    (status, headers)
}

/// Sends a complete response.
fn respond(status: u16, headers: Fields, body: &[u8], response_out: ResponseOutparam) {
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing_body) = response.body() else { return };
    ResponseOutparam::set(response_out, Ok(response));
    if let Ok(stream) = outgoing_body.write() {
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing_body, None);
}
