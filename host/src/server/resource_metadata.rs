//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for `[protected_resource]`: how a client that
//! was refused (an MCP client, say) finds the authorization server to get a token from. Served at
//! the well-known path inserted before the resource's path (§3.1) — the URL every challenge names
//! in `resource_metadata` — and at the bare well-known path.

use super::Shared;
use agentgate_engine::DpopMode;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The well-known path, without the resource's path.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// `GET /.well-known/oauth-protected-resource[/<resource path>]`.
pub async fn metadata(State(state): State<Shared>, request: Request) -> Response {
    let deployment = state.deployment();
    let file = &deployment.config().file;
    let not_found = |why: &str| (StatusCode::NOT_FOUND, axum::Json(json!({ "error": why }))).into_response();
    let Some(resource) = &file.protected_resource else {
        return not_found("no protected resource metadata is configured (`[protected_resource]`)");
    };
    let path = request.uri().path();
    let served = resource.metadata_path().ok();
    if path != WELL_KNOWN && Some(path) != served.as_deref() {
        return not_found("no protected resource is published at this path");
    }
    let mut response = axum::Json(resource.document(file.dpop.mode == DpopMode::Required)).into_response();
    // Public and the same for every caller; clients may keep it for a while.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
