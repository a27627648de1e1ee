//! The MCP endpoint behind the gateway: the JSON-RPC body read whole and decided as `agentgate
//! serve` decides it in reverse-proxy mode (the same parser and mapping,
//! `agentgate_engine::mcp`), a `tools/list` answer filtered, and the RFC 9728 metadata served.

use super::forward::{self, RequestBody};
use super::{Gateway, denial_head, respond};
use agentgate_engine::mcp::{self as rpc, McpLimits, Refusal, RpcError, code};
use agentgate_engine::{Decision, EntityRef};
use serde::Deserialize;
use wasip2::http::types::{Fields, IncomingRequest, ResponseOutparam};

/// `"mcp"` in the gateway's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// `[mcp]`: the endpoint's path and server.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// `[protected_resource]`: the metadata document, where it is served, and its URL.
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// Whether DPoP is taken (`[dpop] mode` not `off`): challenges name both schemes.
    #[serde(default = "taken")]
    pub dpop: bool,
}

fn taken() -> bool {
    true
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig { endpoint: None, metadata: None, dpop: true }
    }
}

impl McpConfig {
    /// The metadata document, if `GET path` asks for it.
    pub fn metadata_at(&self, method: &str, path: &str) -> Option<String> {
        let metadata = self.metadata.as_ref()?;
        (method == "GET" && metadata.paths.iter().any(|p| p == path)).then(|| metadata.document.to_string())
    }
}

/// The MCP endpoint.
#[derive(Debug, Deserialize)]
pub struct Endpoint {
    /// Its path.
    pub path: String,
    /// `McpServer::"<server>"`, the resource of calls that name no tool, prompt or resource.
    pub server: String,
    /// Origins whose browsers may call it (empty: not checked).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// The protected resource metadata.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    /// Its URL, named in every challenge.
    pub url: String,
    /// The paths it is served at.
    pub paths: Vec<String>,
    /// The document.
    pub document: serde_json::Value,
}

/// One request to the MCP endpoint.
pub fn handle(gateway: &Gateway, endpoint: &Endpoint, request: IncomingRequest, method: &str, target: &str, id: &str, response_out: ResponseOutparam) {
    let headers = request.headers();
    let single = |name: &str| -> Result<Option<String>, Refusal> {
        let values = headers.get(name);
        match values.as_slice() {
            [] => Ok(None),
            [one] => Ok(String::from_utf8(one.clone()).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())),
            _ => Err(Refusal { status: 400, error: RpcError { code: code::INVALID_REQUEST, message: format!("the header `{name}` appears more than once") } }),
        }
    };
    let checked = single("origin").and_then(|origin| {
        let version = single("mcp-protocol-version")?;
        rpc::check_headers(origin.as_deref(), &endpoint.allowed_origins, version.as_deref())
    });
    if let Err(refusal) = checked {
        return refuse(&refusal, None, id, response_out);
    }
    if method != "POST" {
        if method != "GET" && method != "DELETE" {
            let refusal = Refusal {
                status: 405,
                error: RpcError {
                    code: code::INVALID_REQUEST,
                    message: format!("`{}` is not an MCP method: use POST, GET or DELETE", method.escape_default()),
                },
            };
            return refuse(&refusal, None, id, response_out);
        }
        // The server's event stream and the end of a session: about the server as a whole.
        let resource = EntityRef { type_name: "McpServer".into(), id: endpoint.server.clone() };
        let check = gateway.check_request(&headers, method, target, "server/discover".into(), resource, None, None);
        let decision = gateway.engine.check(&check);
        if !decision.allowed {
            drop(headers);
            return deny(gateway, &decision, None, id, response_out);
        }
        let forwarded = forward::upstream_headers(&headers, &decision, id);
        drop(headers);
        let http_method = request.method();
        return forward::forward(gateway, &http_method, forwarded, target, RequestBody::Stream(request), None, response_out);
    }
    let limits = McpLimits { max_body_bytes: gateway.max_body_bytes, ..McpLimits::default() };
    let Some(body) = read_body(&request, limits.max_body_bytes) else {
        let message = format!("the body is over the limit of {} bytes (or could not be read)", limits.max_body_bytes);
        return refuse(&Refusal { status: 413, error: RpcError { code: code::INVALID_REQUEST, message } }, None, id, response_out);
    };
    let message = match rpc::parse(&body, &limits) {
        Ok(message) => message,
        Err(error) => return refuse(&Refusal { status: 400, error }, None, id, response_out),
    };
    let mapped = match rpc::map(&message, &endpoint.server, &limits) {
        Ok(mapped) => mapped,
        Err(error) => return refuse(&Refusal { status: 400, error }, message.id.as_ref(), id, response_out),
    };
    let agreed = single("mcp-method").and_then(|m| {
        let name = single("mcp-name")?;
        rpc::headers_agree(m.as_deref(), name.as_deref(), &message, &mapped)
    });
    if let Err(refusal) = agreed {
        return refuse(&refusal, message.id.as_ref(), id, response_out);
    }
    let check = gateway.check_request(&headers, method, target, mapped.action, mapped.resource, mapped.input, None);
    let decision = gateway.engine.check(&check);
    if !decision.allowed {
        drop(headers);
        return deny(gateway, &decision, message.id.as_ref(), id, response_out);
    }
    let forwarded = forward::upstream_headers(&headers, &decision, id);
    drop(headers);
    let http_method = request.method();
    drop(request);
    // A `tools/list` answer shows only the tools some call by this caller could be permitted to
    // use; if the engine cannot say, every tool is hidden.
    let visible = |names: &[String]| gateway.engine.visible_tools(&check, names).unwrap_or_else(|_| vec![false; names.len()]);
    let filter: forward::ToolFilter<'_> = (message.method.as_deref() == Some("tools/list")).then_some(&visible as &dyn Fn(&[String]) -> Vec<bool>);
    forward::forward(gateway, &http_method, forwarded, target, RequestBody::Read(body), filter, response_out);
}

/// The request body, if it is at most `max` bytes.
fn read_body(request: &IncomingRequest, max: usize) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let incoming = request.consume().ok()?;
    let mut bytes = Vec::new();
    let read = match incoming.stream() {
        Ok(input) => input.take(max as u64 + 1).read_to_end(&mut bytes).is_ok(),
        Err(()) => false,
    };
    let _ = wasip2::http::types::IncomingBody::finish(incoming);
    (read && bytes.len() <= max).then_some(bytes)
}

/// A denied call: the decision's status and challenges, a JSON-RPC error for its `id`.
fn deny(gateway: &Gateway, decision: &Decision, request_id: Option<&serde_json::Value>, id: &str, response_out: ResponseOutparam) {
    let (status, headers) = denial_head(decision, id, Some(&gateway.mcp));
    respond(status, headers, rpc::denial_response(request_id, decision, id).as_bytes(), response_out);
}

/// A request refused before it was decided.
fn refuse(refusal: &Refusal, request_id: Option<&serde_json::Value>, id: &str, response_out: ResponseOutparam) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let _ = headers.append("x-agentgate-decision-id", id.as_bytes());
    if refusal.status == 405 {
        let _ = headers.append("allow", b"GET, POST, DELETE");
    }
    respond(refusal.status, headers, rpc::refusal_response(request_id, refusal, id).as_bytes(), response_out);
}
