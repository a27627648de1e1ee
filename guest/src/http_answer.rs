//! The one mapping from outcomes to HTTP answers (RFC 6750 §3, RFC 9449 §7.1, §9), shared by every
//! host that speaks HTTP (`agentgate serve`, the wasi:http gateway, the edge worker).

use crate::decision::{Decision, Outcome};

/// The reason the engine gives when no credential was presented at all: RFC 6750 §3.1 says such a
/// challenge carries no `error`.
pub const NO_CREDENTIALS: &str = "no access token was presented";

/// How the caller treats statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// As RFC 6750 / 9449 say (Envoy, Traefik, Caddy, gateways, AuthZEN callers).
    Standard,
    /// nginx `auth_request`: anything but 2xx, 401 and 403 becomes a 500, so 400 is sent as 403.
    Nginx,
    /// Envoy `ext_authz`: a 5xx lets `failure_mode_allow` admit the call, so nothing is sent as 5xx.
    Envoy,
}

/// The HTTP status for a decision.
pub fn status(decision: &Decision, dialect: Dialect) -> u16 {
    match decision.outcome {
        Outcome::Allowed => 200,
        Outcome::InvalidToken | Outcome::InvalidDpopProof | Outcome::UseDpopNonce | Outcome::Revoked | Outcome::Replayed => 401,
        Outcome::InvalidRequest if dialect != Dialect::Nginx => 400,
        Outcome::RateLimited if dialect != Dialect::Nginx => 429,
        // RFC 6750 §3.1: a token without the scope a call needs.
        Outcome::InsufficientScope => 403,
        // Worth retrying, but only where a 5xx cannot turn into an allow.
        Outcome::Unavailable if dialect == Dialect::Standard => 503,
        // Fail closed everywhere else: a policy deny, anything behind nginx but a 401, an engine
        // failure (a 5xx would let Envoy apply `status_on_error` or `failure_mode_allow`).
        _ => 403,
    }
}

/// Seconds a client should wait before retrying, for the statuses that invite a retry.
pub fn retry_after(decision: &Decision, dialect: Dialect) -> Option<u32> {
    match (decision.outcome, status(decision, dialect)) {
        (Outcome::Unavailable | Outcome::RateLimited, 429 | 503) => Some(1),
        _ => None,
    }
}

/// The `WWW-Authenticate` value for a 401 (or a 403 `insufficient_scope`), if the decision is one.
pub fn challenge(decision: &Decision) -> Option<String> {
    let error = match decision.outcome {
        Outcome::InvalidToken | Outcome::Revoked => "invalid_token",
        Outcome::InvalidDpopProof | Outcome::Replayed => "invalid_dpop_proof",
        Outcome::UseDpopNonce => "use_dpop_nonce",
        Outcome::InsufficientScope => "insufficient_scope",
        _ => return None,
    };
    Some(if decision.reason.starts_with(NO_CREDENTIALS) {
        r#"DPoP algs="ES256""#.to_owned()
    } else {
        let scope = scope_param(decision);
        format!(r#"DPoP error="{error}", error_description="{}"{scope}, algs="ES256""#, quoted_string(&decision.reason))
    })
}

/// Every `WWW-Authenticate` challenge for a decision, in order. With `dpop` (a deployment that
/// accepts DPoP) and published metadata (RFC 9728 §5.1): first a `Bearer` challenge carrying
/// `resource_metadata` (and, for `insufficient_scope`, the error and the `scope` to ask for) —
/// clients such as the MCP SDK read only a challenge whose first scheme is `Bearer` — then the
/// `DPoP` challenge (RFC 9449 §7.1 allows both), also carrying `resource_metadata`. Without `dpop`
/// (`[dpop] mode = "off"`: bearer tokens only), one `Bearer` challenge (RFC 6750 §3).
pub fn challenges(decision: &Decision, resource_metadata: Option<&str>, dpop: bool) -> Vec<String> {
    let Some(dpop_challenge) = challenge(decision) else { return Vec::new() };
    let metadata = resource_metadata.map(|m| format!(r#"resource_metadata="{}""#, quoted_string(m)));
    if !dpop {
        return vec![bearer_challenge(decision, metadata.as_deref())];
    }
    let Some(metadata) = metadata else { return vec![dpop_challenge] };
    let bearer = match decision.outcome {
        Outcome::InsufficientScope => bearer_challenge(decision, Some(&metadata)),
        // The error belongs to the DPoP challenge: a Bearer client is only pointed at the metadata.
        _ => format!("Bearer {metadata}"),
    };
    vec![bearer, format!("{dpop_challenge}, {metadata}")]
}

/// The `Bearer` challenge (RFC 6750 §3): no `error` when no credential was presented; proof
/// errors read as `invalid_token` (a Bearer client has no proof to fix).
fn bearer_challenge(decision: &Decision, metadata: Option<&str>) -> String {
    let error = match decision.outcome {
        Outcome::InsufficientScope => "insufficient_scope",
        _ => "invalid_token",
    };
    let mut params = Vec::new();
    if !decision.reason.starts_with(NO_CREDENTIALS) {
        params.push(format!(r#"error="{error}", error_description="{}"{}"#, quoted_string(&decision.reason), scope_param(decision)));
    }
    params.extend(metadata.map(str::to_owned));
    if params.is_empty() { "Bearer".to_owned() } else { format!("Bearer {}", params.join(", ")) }
}

fn scope_param(decision: &Decision) -> String {
    decision.required_scope.as_deref().map(|s| format!(r#", scope="{}""#, quoted_string(s))).unwrap_or_default()
}

/// A reason as the content of a `quoted-string` (RFC 9110 §5.6.4): visible ASCII, `"` and `\`
/// escaped, anything else replaced, at most 300 characters.
pub fn quoted_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().take(300) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// A header value for an identifier: visible ASCII kept, everything else percent-encoded.
pub fn header_safe(text: &str) -> String {
    const UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(b',');
    percent_encoding::utf8_percent_encode(text, UNSAFE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(outcome: Outcome, reason: &str) -> Decision {
        let mut d = Decision::engine_error(reason);
        d.outcome = outcome;
        d
    }

    #[test]
    fn statuses_follow_the_rfcs_and_nginx() {
        assert_eq!(status(&decision(Outcome::PolicyDenied, ""), Dialect::Standard), 403);
        assert_eq!(status(&decision(Outcome::InvalidRequest, ""), Dialect::Standard), 400);
        assert_eq!(status(&decision(Outcome::InvalidRequest, ""), Dialect::Nginx), 403);
        assert_eq!(status(&decision(Outcome::Replayed, ""), Dialect::Nginx), 401);
        assert_eq!(status(&decision(Outcome::EngineError, ""), Dialect::Standard), 403);
        assert_eq!(status(&decision(Outcome::InvalidRequest, ""), Dialect::Envoy), 400);
        // `unavailable` is a 5xx only where no proxy can turn it into an allow.
        assert_eq!(status(&decision(Outcome::Unavailable, ""), Dialect::Standard), 503);
        assert_eq!(status(&decision(Outcome::Unavailable, ""), Dialect::Envoy), 403);
        assert_eq!(status(&decision(Outcome::Unavailable, ""), Dialect::Nginx), 403);
        assert_eq!(status(&decision(Outcome::RateLimited, ""), Dialect::Standard), 429);
        assert_eq!(status(&decision(Outcome::RateLimited, ""), Dialect::Envoy), 429);
        assert_eq!(status(&decision(Outcome::RateLimited, ""), Dialect::Nginx), 403);
        assert_eq!(retry_after(&decision(Outcome::Unavailable, ""), Dialect::Standard), Some(1));
        assert_eq!(retry_after(&decision(Outcome::Unavailable, ""), Dialect::Nginx), None);
    }

    #[test]
    fn challenges_quote_reasons() {
        assert_eq!(
            challenge(&decision(Outcome::InvalidToken, r#"agent `a"b` is revoked…"#)).as_deref(),
            Some(r#"DPoP error="invalid_token", error_description="agent `a\"b` is revoked?", algs="ES256""#)
        );
        assert_eq!(
            challenge(&decision(Outcome::InvalidToken, "no access token was presented (`Authorization` header)")).as_deref(),
            Some(r#"DPoP algs="ES256""#)
        );
        assert!(challenge(&decision(Outcome::PolicyDenied, "x")).is_none());
        let mut step_up = decision(Outcome::InsufficientScope, "the token lacks the scope `files.write`");
        step_up.required_scope = Some("files.write".into());
        assert_eq!(status(&step_up, Dialect::Nginx), 403);
        assert_eq!(
            challenges(&step_up, Some("https://files.example.com/.well-known/oauth-protected-resource/mcp"), true),
            vec![
                r#"Bearer error="insufficient_scope", error_description="the token lacks the scope `files.write`", scope="files.write", resource_metadata="https://files.example.com/.well-known/oauth-protected-resource/mcp""#.to_owned(),
                r#"DPoP error="insufficient_scope", error_description="the token lacks the scope `files.write`", scope="files.write", algs="ES256", resource_metadata="https://files.example.com/.well-known/oauth-protected-resource/mcp""#.to_owned(),
            ]
        );
        let none = decision(Outcome::InvalidToken, "no access token was presented (`Authorization` header)");
        assert_eq!(
            challenges(&none, Some("https://x/m"), true),
            vec![r#"Bearer resource_metadata="https://x/m""#.to_owned(), r#"DPoP algs="ES256", resource_metadata="https://x/m""#.to_owned()]
        );
        assert_eq!(challenges(&none, None, true), vec![r#"DPoP algs="ES256""#.to_owned()]);
        // Bearer-only deployments: one Bearer challenge, with the error when there is one.
        assert_eq!(challenges(&none, Some("https://x/m"), false), vec![r#"Bearer resource_metadata="https://x/m""#.to_owned()]);
        assert_eq!(challenges(&none, None, false), vec!["Bearer".to_owned()]);
        let expired = decision(Outcome::InvalidToken, "the access token expired");
        assert_eq!(
            challenges(&expired, Some("https://x/m"), false),
            vec![r#"Bearer error="invalid_token", error_description="the access token expired", resource_metadata="https://x/m""#.to_owned()]
        );
        assert_eq!(
            challenges(&step_up, None, false),
            vec![r#"Bearer error="insufficient_scope", error_description="the token lacks the scope `files.write`", scope="files.write""#.to_owned()]
        );
        assert_eq!(header_safe("alice é,x"), "alice %C3%A9%2Cx");
    }
}
