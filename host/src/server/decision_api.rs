//! Who may call the decision APIs (`POST /access/v1/evaluation(s)`, `POST /v1/check`).
//!
//! These endpoints decide on credentials the caller hands over in the JSON body, so anyone who can
//! reach them can test stolen tokens or burn the `jti` of an observed proof. They are therefore
//! closed by default to everything but loopback (`[server.decision_api] allowed_clients`), can
//! require a shared bearer secret on top (`bearer_token_file`, compared in constant time), and
//! are open to all only with an explicit `open = true`. Forward-auth keeps its own rule
//! (`trusted_proxies`); `/healthz`, `/metrics` and the AuthZEN metadata stay open.

use super::Shared;
use super::origin::Cidr;
use crate::config::{LoadedConfig, Secret};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};

/// The rule of one configuration generation.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    open: bool,
    clients: Vec<Cidr>,
    secret: Option<Secret>,
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The peer address is not allowed (403).
    Address(String),
    /// The bearer secret is missing or wrong (401).
    Credentials(String),
}

impl Guard {
    /// From `[server.decision_api]` (the CIDRs were checked when the configuration loaded).
    pub fn new(config: &LoadedConfig) -> Result<Self, String> {
        let section = &config.file.server.decision_api;
        Ok(Guard {
            open: section.open,
            clients: section.allowed_clients.iter().map(|c| Cidr::parse(c)).collect::<Result<_, _>>()?,
            secret: config.decision_api_secret.clone(),
        })
    }

    /// Whether `peer`, sending `authorization` values, may call.
    pub fn check<'a>(&self, peer: IpAddr, mut authorization: impl Iterator<Item = &'a HeaderValue>) -> Result<(), Refusal> {
        if self.open {
            return Ok(());
        }
        if !self.clients.iter().any(|c| c.contains(peer)) {
            return Err(Refusal::Address(format!("the decision API does not accept calls from `{peer}` (see `[server.decision_api] allowed_clients`)")));
        }
        let Some(secret) = &self.secret else { return Ok(()) };
        let first = authorization.next();
        if authorization.next().is_some() {
            return Err(Refusal::Credentials("the header `Authorization` appears more than once".into()));
        }
        let presented = first.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")).map(<[u8]>::trim_ascii);
        match presented {
            None => Err(Refusal::Credentials("the decision API requires `Authorization: Bearer <secret>`".into())),
            Some(given) if aws_lc_rs::constant_time::verify_slices_are_equal(given, secret.expose()).is_ok() => Ok(()),
            Some(_) => Err(Refusal::Credentials("the decision API bearer secret is wrong".into())),
        }
    }
}

/// Middleware in front of the decision APIs: 403 for a refused address, 401 (with a `Bearer`
/// challenge) for a missing or wrong secret, both with a JSON error body.
pub async fn authenticate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let deployment = state.deployment();
    let verdict = match peer {
        Some(ip) => deployment.decision_api.check(ip, request.headers().get_all(header::AUTHORIZATION).iter()),
        None => Err(Refusal::Address("the caller's address is unknown".into())),
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(Refusal::Address(reason)) => (StatusCode::FORBIDDEN, axum::Json(json!({ "error": reason }))).into_response(),
        Err(Refusal::Credentials(reason)) => {
            let mut response = (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": reason }))).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"agentgate decision API\""));
            response
        }
    }
}

/// Middleware in front of every POST endpoint that reads a body: only `application/json`
/// (parameters such as `charset` allowed), else 415. A `text/plain` body would let any web page
/// send the request cross-origin without a preflight.
pub async fn require_json(request: Request, next: Next) -> Response {
    let mut values = request.headers().get_all(header::CONTENT_TYPE).iter();
    let (first, second) = (values.next(), values.next());
    let ok = second.is_none() && first.and_then(|v| v.to_str().ok()).is_some_and(is_json);
    if ok {
        next.run(request).await
    } else {
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, axum::Json(json!({ "error": "the request body must be `Content-Type: application/json`" }))).into_response()
    }
}

/// `application/json`, optionally followed by `;` parameters, case-insensitive.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn guard(open: bool, clients: &[&str], secret: Option<&str>) -> Guard {
        Guard { open, clients: clients.iter().map(|c| Cidr::parse(c).unwrap()).collect(), secret: secret.map(crate::config::Secret::for_tests) }
    }

    #[test]
    fn addresses_secrets_and_open() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let far: IpAddr = "192.0.2.7".parse().unwrap();
        let none = || std::iter::empty();
        let g = guard(false, &["127.0.0.1/32"], None);
        assert!(g.check(lo, none()).is_ok());
        assert!(matches!(g.check(far, none()), Err(Refusal::Address(_))));
        assert!(guard(true, &[], None).check(far, none()).is_ok());
        let s = "s".repeat(40);
        let g = guard(false, &["0.0.0.0/0"], Some(&s));
        let good = HeaderValue::from_str(&format!("Bearer {s}")).unwrap();
        let bad = HeaderValue::from_static("Bearer nope");
        assert!(g.check(far, std::iter::once(&good)).is_ok());
        assert!(matches!(g.check(far, std::iter::once(&bad)), Err(Refusal::Credentials(_))));
        assert!(matches!(g.check(far, none()), Err(Refusal::Credentials(_))));
        assert!(matches!(g.check(far, [&good, &good].into_iter()), Err(Refusal::Credentials(_))));
    }

    #[test]
    fn only_json_bodies() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/json-seq"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
