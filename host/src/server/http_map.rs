//! The HTTP adapter of the engine's outcome mapping (`agentgate_engine::http_answer`) for axum.

use agentgate_engine::Decision;
use agentgate_engine::http_answer;
pub use agentgate_engine::http_answer::Dialect;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

/// The status for a decision.
pub fn status(decision: &Decision, dialect: Dialect) -> StatusCode {
    StatusCode::from_u16(http_answer::status(decision, dialect)).unwrap_or(StatusCode::FORBIDDEN)
}

/// What a deployment's challenges carry besides the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChallengeParams {
    /// The RFC 9728 metadata URL (`[protected_resource]`), named in every challenge.
    pub resource_metadata: Option<String>,
    /// Whether the deployment takes DPoP (`[dpop] mode` not `off`): a `DPoP` challenge too.
    pub dpop: bool,
}

/// `WWW-Authenticate` (every challenge, in order) and `DPoP-Nonce` for a 401 or a 403
/// `insufficient_scope`.
pub fn challenge(decision: &Decision, params: &ChallengeParams, headers: &mut HeaderMap) {
    for c in http_answer::challenges(decision, params.resource_metadata.as_deref(), params.dpop) {
        if let Ok(v) = HeaderValue::from_str(&c) {
            headers.append(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Some(nonce) = decision.dpop_nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
        headers.insert("dpop-nonce", nonce);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// `Retry-After` for the statuses that invite a retry (`unavailable` as 503, `rate_limited` as 429).
pub fn retry_after(decision: &Decision, dialect: Dialect, headers: &mut HeaderMap) {
    if let Some(secs) = http_answer::retry_after(decision, dialect) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// A header value for an identifier (percent-encoded where not visible ASCII).
pub fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(&http_answer::header_safe(text)).unwrap_or_else(|_| HeaderValue::from_static(""))
}
