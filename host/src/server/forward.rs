//! Forward-auth: one endpoint for nginx `auth_request`, Traefik ForwardAuth, Caddy forward_auth
//! and Envoy ext_authz (HTTP service). The proxy's view of the original request is mapped to a
//! Cedar action and resource by the route table (or, for MCP Streamable HTTP, by `Mcp-Method` /
//! `Mcp-Name`), decided, and answered: 200 with identity headers for the upstream, 401 with a DPoP
//! challenge, 403, or 400 (never to nginx, which turns it into a 500).
//!
//! | `[server] proxy` | original method | original target | scheme / host |
//! |---|---|---|---|
//! | `nginx` | `X-Original-Method` | `X-Original-URI` | `X-Forwarded-Proto` / `X-Forwarded-Host` |
//! | `traefik`, `caddy` | `X-Forwarded-Method` | `X-Forwarded-Uri` | `X-Forwarded-Proto` / `X-Forwarded-Host` |
//! | `envoy` | the request's method | its path after the prefix | `X-Forwarded-Proto` / `Host` |
//!
//! The dialect is configured, never guessed from headers (Traefik and Caddy pass the client's own
//! headers through). Forward-auth is answered only for `trusted_proxies`, and the external URI a
//! DPoP proof must name is always one of `external_origins`.

use super::http_map::{self, Dialect};
use super::{Decided, Recorded, Shared, decision_id, request_id, routes};
use crate::config::ProxyKind;
use agentgate_engine::{CheckRequest, Credentials, Decision, EntityRef, HttpRequest, Outcome};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;

/// The original request as the proxy reports it.
#[derive(Debug)]
struct Original {
    dialect: Dialect,
    method: String,
    /// Path and query of the original request target.
    target: String,
    scheme: Option<String>,
    authority: Option<String>,
}

/// The value of a header that feeds the decision. Present more than once, it is refused: a proxy
/// or upstream that reads another copy than agentgate would act on something never authorized.
pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(repeated(name));
    }
    Ok(first.and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()))
}

/// The reason for refusing a repeated header, naming it as it is usually written.
fn repeated(name: &str) -> String {
    if name == "x-original-uri" {
        return "the header `X-Original-URI` appears more than once".into();
    }
    let display: Vec<String> = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    format!("the header `{}` appears more than once", display.join("-").escape_default())
}

/// All values of a header joined with `, ` (a repeated credential must not silently pick one:
/// the engine refuses the folded value).
pub(super) fn all_values(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Reads the original request from the configured proxy's headers (and only those).
fn original(request: &Request, prefix: &str, trusted: bool, proxy: ProxyKind) -> Result<Original, (Dialect, String)> {
    let headers = request.headers();
    let dialect = match proxy {
        ProxyKind::Nginx => Dialect::Nginx,
        ProxyKind::Envoy => Dialect::Envoy,
        ProxyKind::Traefik | ProxyKind::Caddy => Dialect::Standard,
    };
    if !trusted {
        return Err((dialect, "forward-auth request from a peer that is not a trusted proxy".into()));
    }
    let required = |name: &str| match header(headers, name) {
        Ok(Some(v)) => Ok(v.to_owned()),
        Ok(None) => Err((dialect, format!("the proxy sent no `{name}`"))),
        Err(reason) => Err((dialect, reason)),
    };
    let optional = |name: &str| header(headers, name).map(|v| v.map(str::to_owned)).map_err(|reason| (dialect, reason));
    match proxy {
        ProxyKind::Nginx => Ok(Original {
            dialect,
            method: required("x-original-method")?,
            target: required("x-original-uri")?,
            scheme: optional("x-forwarded-proto")?,
            authority: optional("x-forwarded-host")?,
        }),
        ProxyKind::Traefik | ProxyKind::Caddy => Ok(Original {
            dialect,
            method: required("x-forwarded-method")?,
            target: required("x-forwarded-uri")?,
            scheme: optional("x-forwarded-proto")?,
            authority: optional("x-forwarded-host")?,
        }),
        // Envoy ext_authz (HTTP): the original method, and the original path appended to the prefix.
        ProxyKind::Envoy => {
            let uri = request.uri();
            let path = uri.path().strip_prefix(prefix).unwrap_or("/");
            let path = if path.is_empty() { "/" } else { path };
            let target = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            };
            Ok(Original { dialect, method: request.method().as_str().to_owned(), target, scheme: optional("x-forwarded-proto")?, authority: optional("host")? })
        }
    }
}

/// The response for a decision.
pub(super) fn respond(recorded: &Recorded, dialect: Dialect, challenge: &http_map::ChallengeParams, id: &str) -> Response {
    let decision = &recorded.decision;
    let status = http_map::status(decision, dialect);
    let mut response = if status == StatusCode::OK {
        StatusCode::OK.into_response()
    } else {
        (status, axum::Json(json!({ "decision": "deny", "outcome": decision.outcome.as_str(), "reason": decision.reason, "decision_id": id }))).into_response()
    };
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED || decision.outcome == Outcome::InsufficientScope {
        http_map::challenge(decision, challenge, headers);
    }
    http_map::retry_after(decision, dialect, headers);
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert("x-agentgate-decision-id", v);
    }
    if decision.allowed {
        identity_headers(decision, headers);
    }
    receipt_header(recorded.receipt.as_deref(), headers);
    response
}

/// `Agentgate-Receipt`: the decision's signed receipt, for the upstream of an allowed call and
/// for the client of a denied one.
pub(super) fn receipt_header(receipt: Option<&str>, headers: &mut HeaderMap) {
    // A compact JWS is base64url and dots: always a valid header value.
    if let Some(value) = receipt.and_then(|r| HeaderValue::from_str(r).ok()) {
        headers.insert("agentgate-receipt", value);
    }
}

/// Who is calling for whom, for the upstream of an allowed call: `X-Agentgate-Agent`, `-User`,
/// `-Chain` (current actor first) and `-Principal`.
pub(super) fn identity_headers(decision: &Decision, headers: &mut HeaderMap) {
    headers.insert("x-agentgate-agent", http_map::header_value(decision.chain.first().map_or("", String::as_str)));
    headers.insert("x-agentgate-user", http_map::header_value(decision.user.as_deref().unwrap_or("")));
    // Each actor is encoded on its own, so a `,` inside an id cannot pass for a separator.
    let chain: Vec<String> = decision.chain.iter().map(|a| agentgate_engine::http_answer::header_safe(a)).collect();
    headers.insert("x-agentgate-chain", HeaderValue::from_str(&chain.join(",")).unwrap_or_else(|_| HeaderValue::from_static("")));
    if let Some(principal) = &decision.principal {
        headers.insert("x-agentgate-principal", http_map::header_value(principal));
    }
}

/// A deny decided by the host before the engine (the call could not be mapped).
pub(super) fn host_denial(outcome: Outcome, reason: String) -> Decision {
    let mut d = Decision::engine_error(reason);
    d.outcome = outcome;
    d
}

/// The forward-auth endpoint (any method, any path under the prefix).
pub async fn forward_auth(State(state): State<Shared>, ConnectInfo(peer_addr): ConnectInfo<SocketAddr>, request: Request) -> Response {
    let deployment = state.deployment();
    let id = decision_id();
    let rid = request_id(request.headers());
    let (check, dialect) = match map_request(&deployment, peer_addr, &request) {
        Ok(mapped) => mapped,
        Err((dialect, reason)) => {
            // Refused before the engine: still counted and audited.
            let denial = host_denial(Outcome::InvalidRequest, reason);
            let unmapped = CheckRequest {
                credentials: Credentials::default(),
                http: None,
                action: String::new(),
                resource: EntityRef { type_name: String::new(), id: String::new() },
                context_json: None,
                entities_json: None,
                now: None,
            };
            let denial = state.record(&deployment, "forward_auth", &unmapped, Decided::host(denial), &id, rid.as_deref());
            return respond(&denial, dialect, &deployment.challenge, &id);
        }
    };
    drop(request);
    let decided = match state.audit_denial() {
        Some(denial) => Decided::host(denial),
        None => {
            let (d2, c2) = (deployment.clone(), check.clone());
            tokio::task::spawn_blocking(move || d2.decide(&c2))
                .await
                .unwrap_or_else(|e| Decided::host(Decision::engine_error(format!("the decision task failed: {e}"))))
        }
    };
    let recorded = state.record(&deployment, "forward_auth", &check, decided, &id, rid.as_deref());
    respond(&recorded, dialect, &deployment.challenge, &id)
}

/// The engine request for what the proxy forwarded, or why there is none.
fn map_request(deployment: &super::Deployment, peer_addr: SocketAddr, request: &Request) -> Result<(CheckRequest, Dialect), (Dialect, String)> {
    let prefix = deployment.config.file.server.forward_auth_prefix.trim_end_matches('/');
    let trusted = deployment.origins.trusts(peer_addr.ip());
    let original = original(request, prefix, trusted, deployment.config.file.server.proxy)?;
    let dialect = original.dialect;
    let uri =
        deployment.origins.external_uri(original.scheme.as_deref(), original.authority.as_deref(), &original.target).map_err(|reason| (dialect, reason))?;
    let path = original.target.split(['?', '#']).next().unwrap_or("/");
    let headers = request.headers();
    let mcp_input = mcp_params(headers).map_err(|reason| (dialect, reason))?;
    let mapped = mcp_call(deployment, &original.method, path, headers)
        .map_err(|reason| (dialect, reason))?
        .or_else(|| routes::resolve(&deployment.routes, &original.method, path))
        .ok_or_else(|| (dialect, format!("no route for `{} {}`", original.method.escape_default(), path.escape_default())))?;
    let check = CheckRequest {
        credentials: Credentials {
            authorization: all_values(headers, "authorization"),
            dpop: all_values(headers, "dpop"),
            agent_identity: all_values(headers, "workload-identity-token"),
        },
        http: Some(HttpRequest { method: original.method.clone(), uri }),
        action: mapped.action,
        resource: EntityRef { type_name: mapped.resource_type, id: mapped.resource_id },
        context_json: mcp_input,
        entities_json: mapped.entities.map(|e| e.to_string()),
        now: None,
    };
    Ok((check, dialect))
}

/// MCP Streamable HTTP (2026-07-28): `Mcp-Method` is the JSON-RPC method, `Mcp-Name` the tool,
/// prompt or resource it names. The action is the method; the resource is `Tool::"<name>"`,
/// `Prompt::"<name>"`, `McpResource::"<uri>"`, or `McpServer::"<server>"` for other methods.
fn mcp_call(deployment: &super::Deployment, method: &str, path: &str, headers: &HeaderMap) -> Result<Option<routes::Matched>, String> {
    // Checked on every call, mapped or not: a repeated routing header is refused either way.
    let mcp_method = header(headers, "mcp-method")?;
    let name = header(headers, "mcp-name")?.map(agentgate_engine::mcp::decode_header_value);
    let Some(mcp) = deployment.mcp.as_ref() else { return Ok(None) };
    if path != mcp.path || method != "POST" {
        return Ok(None);
    }
    let Some(mcp_method) = mcp_method else { return Ok(None) };
    let (resource_type, resource_id) = match (mcp_method, name) {
        ("tools/call", Some(n)) => ("Tool", n),
        ("prompts/get", Some(n)) => ("Prompt", n),
        ("resources/read", Some(n)) => ("McpResource", n),
        _ => ("McpServer", mcp.server.clone()),
    };
    Ok(Some(routes::Matched { action: mcp_method.to_owned(), resource_type: resource_type.into(), resource_id, entities: None }))
}

/// `Mcp-Param-{Name}` headers (tool arguments mirrored into headers) as the call's `input`.
/// A repeated `Mcp-Param-*` is refused (an upstream reading the other copy would act on an
/// argument that was never authorized).
fn mcp_params(headers: &HeaderMap) -> Result<Option<String>, String> {
    let mut params = serde_json::Map::new();
    for (k, v) in headers {
        let Some(name) = k.as_str().strip_prefix("mcp-param-") else { continue };
        if headers.get_all(k).iter().nth(1).is_some() {
            return Err(repeated(k.as_str()));
        }
        let Ok(value) = v.to_str() else { continue };
        params.insert(name.to_owned(), serde_json::Value::String(agentgate_engine::mcp::decode_header_value(value)));
    }
    Ok((!params.is_empty()).then(|| json!({ "params": params }).to_string()))
}
