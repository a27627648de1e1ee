//! Reverse-proxy mode (`[server] upstream`): agentgate in front of the service it protects, seeing
//! each request whole. Every request that is not one of agentgate's own endpoints is decided and,
//! when allowed, forwarded to the upstream without the caller's credentials and with who is calling
//! for whom (`X-Agentgate-*`); the answer is streamed back as it arrives (server-sent events
//! included), except a `tools/list` result, which is read whole and filtered.
//!
//! - `POST` to the `[mcp] path`: the JSON-RPC body is the call (`agentgate_engine::mcp`: one
//!   parser for this host and the wasi:http gateway). A `tools/call` is decided as the tool's own
//!   action with `params.arguments` as `context.input`; a denial answers a JSON-RPC error for the
//!   request's `id` (code `-32001`, the outcome in `error.data`) with the decision's HTTP status.
//!   `Mcp-Method` / `Mcp-Name`, when sent, must agree with the body (400 otherwise); an
//!   unsupported `MCP-Protocol-Version` is a 400; an `Origin` not in `[mcp] allowed_origins` (when
//!   set) a 403.
//! - `GET` (the server's event stream) and `DELETE` (ending a session) on the MCP path: decided as
//!   `server/discover` on the server; `Mcp-Session-Id` passes through both ways.
//! - Any other path: the route table, as for forward-auth.

use super::forward::{all_values, header, host_denial, identity_headers, receipt_header};
use super::http_map::{self, Dialect};
use super::{Decided, Deployment, Recorded, Shared, decision_id, request_id, routes};
use crate::config::McpEntry;
use agentgate_engine::mcp::{self, McpLimits, RpcError, code};
use agentgate_engine::{CheckRequest, Credentials, Decision, EntityRef, HttpRequest, Outcome};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header as h};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The largest `tools/list` answer filtered: it is read whole before it is passed on.
const MAX_TOOLS_LIST_BYTES: usize = 8 * 1024 * 1024;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), and are never forwarded.
const HOP_BY_HOP: [&str; 8] = ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

/// Request headers the upstream never receives: the caller's credentials (the upstream trusts
/// agentgate's headers, and a token it never verified must not be usable behind it) and
/// identity headers and receipts a caller could forge or replay.
fn withheld_from_upstream(name: &HeaderName) -> bool {
    let name = name.as_str();
    HOP_BY_HOP.contains(&name)
        || matches!(name, "host" | "authorization" | "dpop" | "workload-identity-token" | "content-length" | "agentgate-receipt")
        || name.starts_with("x-agentgate-")
}

/// One HTTP/1.1 client for every upstream call, keeping connections alive.
fn client() -> &'static Client<HttpConnector, Body> {
    static CLIENT: OnceLock<Client<HttpConnector, Body>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector)
    })
}

/// Every request that no other route takes.
pub async fn proxy(State(state): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request) -> Response {
    let deployment = state.deployment();
    let Some(upstream) = deployment.config().file.server.upstream.clone() else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "not found" }))).into_response();
    };
    let call = Call { state: &state, deployment: &deployment, id: decision_id(), request_id: request_id(request.headers()), upstream };
    let mcp = deployment.mcp.clone().filter(|m| m.path == request.uri().path());
    match mcp {
        Some(mcp) => call.mcp(mcp, peer, request).await,
        None => call.routed(peer, request).await,
    }
}

/// One proxied request.
struct Call<'a> {
    state: &'a Shared,
    deployment: &'a Arc<Deployment>,
    id: String,
    request_id: Option<String>,
    upstream: String,
}

impl Call<'_> {
    /// A request to the MCP endpoint.
    async fn mcp(&self, mcp: McpEntry, peer: SocketAddr, request: Request) -> Response {
        let headers = request.headers().clone();
        let origin = header(&headers, "origin").map_err(Refusal::invalid);
        let version = header(&headers, "mcp-protocol-version").map_err(Refusal::invalid);
        let checked = origin
            .and_then(|o| version.map(|v| (o, v)))
            .and_then(|(origin, version)| mcp::check_headers(origin, &mcp.allowed_origins, version).map_err(Refusal::from));
        if let Err(refusal) = checked {
            return self.refuse(&request, refusal, None);
        }
        let method = request.method().clone();
        if method != Method::POST {
            if method != Method::GET && method != Method::DELETE {
                let mut response = self.refuse(
                    &request,
                    Refusal::new(StatusCode::METHOD_NOT_ALLOWED, code::INVALID_REQUEST, format!("`{method}` is not an MCP method: use POST, GET or DELETE")),
                    None,
                );
                response.headers_mut().insert(h::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                return response;
            }
            // The server's event stream and the end of a session: about the server as a whole.
            let target = EntityRef { type_name: "McpServer".into(), id: mcp.server.clone() };
            let check = match self.check(peer, &request, "server/discover".into(), target, None, None) {
                Ok(check) => check,
                Err(reason) => return self.refuse(&request, Refusal::invalid(reason), None),
            };
            let recorded = self.decide(&check).await;
            if !recorded.decision.allowed {
                return self.rpc_denial(&recorded, None);
            }
            let (parts, body) = request.into_parts();
            return self.forward(parts.method, &parts.uri, &parts.headers, Body::new(body), &recorded, false, &check).await;
        }
        let limits = McpLimits { max_body_bytes: self.deployment.config().file.server.max_body_bytes, ..McpLimits::default() };
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(Body::new(body), limits.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(_) => {
                let refusal = Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    code::INVALID_REQUEST,
                    format!("the body is over the limit of {} bytes (or was cut off)", limits.max_body_bytes),
                );
                return self.refuse_parts(&parts.method, &parts.uri, refusal, None);
            }
        };
        let message = match mcp::parse(&bytes, &limits) {
            Ok(message) => message,
            Err(e) => return self.refuse_parts(&parts.method, &parts.uri, Refusal::rpc(e), None),
        };
        let mapped = match mcp::map(&message, &mcp.server, &limits) {
            Ok(mapped) => mapped,
            Err(e) => return self.refuse_parts(&parts.method, &parts.uri, Refusal::rpc(e), message.id.as_ref()),
        };
        let said = header(&headers, "mcp-method").and_then(|m| header(&headers, "mcp-name").map(|n| (m, n)));
        let agreed = said.map_err(Refusal::invalid).and_then(|(m, n)| mcp::headers_agree(m, n, &message, &mapped).map_err(Refusal::from));
        if let Err(refusal) = agreed {
            return self.refuse_parts(&parts.method, &parts.uri, refusal, message.id.as_ref());
        }
        let request = Request::from_parts(parts, Body::empty());
        let check = match self.check(peer, &request, mapped.action, mapped.resource, mapped.input, None) {
            Ok(check) => check,
            Err(reason) => return self.refuse(&request, Refusal::invalid(reason), message.id.as_ref()),
        };
        let recorded = self.decide(&check).await;
        if !recorded.decision.allowed {
            return self.rpc_denial(&recorded, message.id.as_ref());
        }
        let (parts, _) = request.into_parts();
        let filter = message.method.as_deref() == Some("tools/list");
        self.forward(parts.method, &parts.uri, &parts.headers, Body::from(bytes), &recorded, filter, &check).await
    }

    /// A request to any other path: mapped by the route table.
    async fn routed(&self, peer: SocketAddr, request: Request) -> Response {
        let path = request.uri().path().to_owned();
        let Some(mapped) = routes::resolve(&self.deployment.routes, request.method().as_str(), &path) else {
            let reason = format!("no route for `{} {}`", request.method().as_str().escape_default(), path.escape_default());
            return self.plain_denial(&request, host_denial(Outcome::InvalidRequest, reason));
        };
        let resource = EntityRef { type_name: mapped.resource_type, id: mapped.resource_id };
        let check = match self.check(peer, &request, mapped.action, resource, None, mapped.entities.map(|e| e.to_string())) {
            Ok(check) => check,
            Err(reason) => return self.plain_denial(&request, host_denial(Outcome::InvalidRequest, reason)),
        };
        let recorded = self.decide(&check).await;
        if !recorded.decision.allowed {
            return self.json_denial(&recorded);
        }
        let max = self.deployment.config().file.server.max_body_bytes;
        let (parts, body) = request.into_parts();
        // The body streams through, cut off past `max_body_bytes`.
        let body = Body::new(http_body_util::Limited::new(body, max));
        self.forward(parts.method, &parts.uri, &parts.headers, body, &recorded, false, &check).await
    }

    /// The engine request for a call to `request`'s path.
    fn check(
        &self,
        peer: SocketAddr,
        request: &Request,
        action: String,
        resource: EntityRef,
        input: Option<String>,
        entities: Option<String>,
    ) -> Result<CheckRequest, String> {
        let headers = request.headers();
        let uri = self.external_uri(peer, request)?;
        Ok(CheckRequest {
            credentials: Credentials {
                authorization: all_values(headers, "authorization"),
                dpop: all_values(headers, "dpop"),
                agent_identity: all_values(headers, "workload-identity-token"),
            },
            http: Some(HttpRequest { method: request.method().as_str().to_owned(), uri }),
            action,
            resource,
            context_json: input,
            entities_json: entities,
            now: None,
        })
    }

    /// The URI the caller addressed, which its DPoP proof must name: one of `external_origins`
    /// with the request's path and query. The origin is the one `Host` names (or, from a trusted
    /// proxy, `X-Forwarded-Host` / `-Proto`).
    fn external_uri(&self, peer: SocketAddr, request: &Request) -> Result<String, String> {
        let headers = request.headers();
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let origins = &self.deployment.origins;
        let (scheme, authority) = if origins.trusts(peer.ip()) && header(headers, "x-forwarded-host")?.is_some() {
            (header(headers, "x-forwarded-proto")?, header(headers, "x-forwarded-host")?)
        } else {
            (None, header(headers, "host")?)
        };
        origins.external_uri(scheme, authority, target)
    }

    /// Decides, counts and audits a call (off the async threads).
    async fn decide(&self, check: &CheckRequest) -> Recorded {
        let decided = match self.state.audit_denial() {
            Some(denial) => Decided::host(denial),
            None => {
                let (deployment, c) = (Arc::clone(self.deployment), check.clone());
                tokio::task::spawn_blocking(move || deployment.decide(&c))
                    .await
                    .unwrap_or_else(|e| Decided::host(Decision::engine_error(format!("the decision task failed: {e}"))))
            }
        };
        self.state.record(self.deployment, "proxy", check, decided, &self.id, self.request_id.as_deref())
    }

    /// Sends an allowed request to the upstream and relays the answer; a `tools/list` answer
    /// (`filter`) is read whole and filtered to the tools the caller may see.
    #[allow(clippy::too_many_arguments)]
    async fn forward(&self, method: Method, uri: &Uri, incoming: &HeaderMap, body: Body, recorded: &Recorded, filter: bool, check: &CheckRequest) -> Response {
        let target = format!("{}{}", self.upstream.trim_end_matches('/'), uri.path_and_query().map_or("/", |p| p.as_str()));
        let mut builder = hyper::Request::builder().method(method).uri(&target);
        if let Some(headers) = builder.headers_mut() {
            for (name, value) in incoming {
                if !withheld_from_upstream(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
            if let Some(host) = incoming.get(h::HOST) {
                headers.insert("x-forwarded-host", host.clone());
            }
            identity_headers(&recorded.decision, headers);
            receipt_header(recorded.receipt.as_deref(), headers);
            if let Ok(id) = HeaderValue::from_str(&self.id) {
                headers.insert("x-agentgate-decision-id", id);
            }
        }
        let outgoing = match builder.body(body) {
            Ok(outgoing) => outgoing,
            Err(e) => return self.bad_gateway(&format!("the upstream request could not be built: {e}")),
        };
        let answer = match client().request(outgoing).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(error = %e, "the upstream could not be reached");
                return self.bad_gateway("the upstream could not be reached");
            }
        };
        let (mut parts, body) = answer.into_parts();
        for name in HOP_BY_HOP {
            parts.headers.remove(name);
        }
        if let Ok(id) = HeaderValue::from_str(&self.id) {
            parts.headers.insert("x-agentgate-decision-id", id);
        }
        if !(filter && parts.status.is_success()) {
            return Response::from_parts(parts, Body::new(body));
        }
        let content_type = parts.headers.get(h::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = match http_body_util::Limited::new(body, MAX_TOOLS_LIST_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return self.bad_gateway(&format!("the upstream's `tools/list` answer was cut off or over {MAX_TOOLS_LIST_BYTES} bytes")),
        };
        match self.filter_tools(&content_type, bytes, check).await {
            Ok(filtered) => {
                parts.headers.remove(h::CONTENT_LENGTH);
                Response::from_parts(parts, Body::from(filtered))
            }
            Err(reason) => self.bad_gateway(&reason),
        }
    }

    /// Hides the tools no call by this caller could be permitted to use; if the engine cannot
    /// say, every tool is hidden (an unfiltered list never reaches the caller).
    async fn filter_tools(&self, content_type: &str, bytes: Bytes, check: &CheckRequest) -> Result<Vec<u8>, String> {
        let (deployment, check, content_type) = (Arc::clone(self.deployment), check.clone(), content_type.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut visible = |names: &[String]| deployment.visible_tools(&check, names).unwrap_or_else(|_| vec![false; names.len()]);
            mcp::filter_tools_list(&content_type, &bytes, &mut visible)
        })
        .await
        .map_err(|e| format!("the filter task failed: {e}"))?
    }

    /// A denied MCP call: its decision's status and challenges, a JSON-RPC error for its `id`.
    fn rpc_denial(&self, recorded: &Recorded, id: Option<&Value>) -> Response {
        let decision = &recorded.decision;
        let status = http_map::status(decision, Dialect::Standard);
        let body = mcp::denial_response(id, decision, &self.id);
        let mut response = (status, [(h::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        self.denial_headers(decision, status, response.headers_mut());
        receipt_header(recorded.receipt.as_deref(), response.headers_mut());
        response
    }

    /// A denied call on another path: the forward-auth JSON body.
    fn json_denial(&self, recorded: &Recorded) -> Response {
        super::forward::respond(recorded, Dialect::Standard, &self.deployment.challenge, &self.id)
    }

    fn denial_headers(&self, decision: &Decision, status: StatusCode, headers: &mut HeaderMap) {
        if status == StatusCode::UNAUTHORIZED || decision.outcome == Outcome::InsufficientScope {
            http_map::challenge(decision, &self.deployment.challenge, headers);
        }
        http_map::retry_after(decision, Dialect::Standard, headers);
        if let Ok(v) = HeaderValue::from_str(&self.id) {
            headers.insert("x-agentgate-decision-id", v);
        }
    }

    /// A request refused before the engine (it cannot be mapped to a call): counted and audited
    /// as `invalid_request`, answered with the refusal's status and a JSON-RPC error.
    fn refuse(&self, request: &Request, refusal: Refusal, id: Option<&Value>) -> Response {
        self.refuse_parts(request.method(), request.uri(), refusal, id)
    }

    fn refuse_parts(&self, method: &Method, uri: &Uri, refusal: Refusal, id: Option<&Value>) -> Response {
        let recorded = self.audit_refusal(method, uri, &refusal.message);
        let refusal_json = mcp::Refusal { status: refusal.status.as_u16(), error: RpcError { code: refusal.code, message: refusal.message.clone() } };
        let body = mcp::refusal_response(id, &refusal_json, &self.id);
        let mut response = (refusal.status, [(h::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.id) {
            response.headers_mut().insert("x-agentgate-decision-id", v);
        }
        receipt_header(recorded.receipt.as_deref(), response.headers_mut());
        response
    }

    /// A deny decided by the host on a non-MCP path.
    fn plain_denial(&self, request: &Request, denial: Decision) -> Response {
        let unmapped = unmapped(request.method(), request.uri());
        let denial = self.state.record(self.deployment, "proxy", &unmapped, Decided::host(denial), &self.id, self.request_id.as_deref());
        self.json_denial(&denial)
    }

    fn audit_refusal(&self, method: &Method, uri: &Uri, reason: &str) -> Recorded {
        let unmapped = unmapped(method, uri);
        self.state.record(
            self.deployment,
            "proxy",
            &unmapped,
            Decided::host(host_denial(Outcome::InvalidRequest, reason.to_owned())),
            &self.id,
            self.request_id.as_deref(),
        )
    }

    fn bad_gateway(&self, reason: &str) -> Response {
        let mut response = (StatusCode::BAD_GATEWAY, axum::Json(json!({ "error": reason, "decision_id": self.id }))).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.id) {
            response.headers_mut().insert("x-agentgate-decision-id", v);
        }
        response
    }
}

/// The audited shape of a request that was never mapped to a call.
fn unmapped(method: &Method, uri: &Uri) -> CheckRequest {
    CheckRequest {
        credentials: Credentials::default(),
        http: Some(HttpRequest { method: method.as_str().to_owned(), uri: uri.path().to_owned() }),
        action: String::new(),
        resource: EntityRef { type_name: String::new(), id: String::new() },
        context_json: None,
        entities_json: None,
        now: None,
    }
}

/// Why a request was refused before the engine.
struct Refusal {
    status: StatusCode,
    code: i64,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Refusal { status, code, message: message.into() }
    }

    fn invalid(message: String) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, message)
    }

    fn rpc(e: RpcError) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, e.code, e.message)
    }
}

impl From<mcp::Refusal> for Refusal {
    fn from(r: mcp::Refusal) -> Self {
        Refusal::new(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST), r.error.code, r.error.message)
    }
}
