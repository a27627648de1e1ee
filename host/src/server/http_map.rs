//! The one mapping from outcomes to HTTP (RFC 6750 §3, RFC 9449 §7.1, §9).

use agentgate_engine::{Decision, Outcome};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

/// The reason the engine gives when no credential was presented at all: RFC 6750 §3.1 says such
/// a challenge carries no `error`.
const NO_CREDENTIALS: &str = "no access token was presented";

/// How a proxy treats statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Status codes as RFC 6750 / 9449 say (Envoy, Traefik, Caddy, AuthZEN callers).
    Standard,
    /// nginx `auth_request`: anything but 2xx, 401 and 403 becomes a 500, so 400 is sent as 403.
    Nginx,
}

/// The status for a decision.
pub fn status(decision: &Decision, dialect: Dialect) -> StatusCode {
    match decision.outcome {
        Outcome::Allowed => StatusCode::OK,
        Outcome::InvalidToken | Outcome::InvalidDpopProof | Outcome::UseDpopNonce | Outcome::Revoked | Outcome::Replayed => {
            StatusCode::UNAUTHORIZED
        }
        Outcome::InvalidRequest if dialect == Dialect::Standard => StatusCode::BAD_REQUEST,
        // Fail closed everywhere else: a policy deny, a malformed request behind nginx, an engine
        // failure (a 5xx would let Envoy apply `status_on_error`, which may be an allow).
        _ => StatusCode::FORBIDDEN,
    }
}

/// `WWW-Authenticate` (and `DPoP-Nonce`) for a 401.
pub fn challenge(decision: &Decision, headers: &mut HeaderMap) {
    let error = match decision.outcome {
        Outcome::InvalidToken | Outcome::Revoked => "invalid_token",
        Outcome::InvalidDpopProof | Outcome::Replayed => "invalid_dpop_proof",
        Outcome::UseDpopNonce => "use_dpop_nonce",
        _ => return,
    };
    let value = if decision.reason.starts_with(NO_CREDENTIALS) {
        r#"DPoP algs="ES256""#.to_owned()
    } else {
        format!(r#"DPoP error="{error}", error_description="{}", algs="ES256""#, quoted_string(&decision.reason))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::WWW_AUTHENTICATE, v);
    }
    if let Some(nonce) = decision.dpop_nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
        headers.insert("dpop-nonce", nonce);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// A reason as the content of a `quoted-string` (RFC 9110 §5.6.4): visible ASCII, `"` and `\`
/// escaped, anything else replaced.
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
pub fn header_value(text: &str) -> HeaderValue {
    const UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(b',');
    let encoded = percent_encoding::utf8_percent_encode(text, UNSAFE).to_string();
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
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
        assert_eq!(status(&decision(Outcome::PolicyDenied, ""), Dialect::Standard), StatusCode::FORBIDDEN);
        assert_eq!(status(&decision(Outcome::InvalidRequest, ""), Dialect::Standard), StatusCode::BAD_REQUEST);
        assert_eq!(status(&decision(Outcome::InvalidRequest, ""), Dialect::Nginx), StatusCode::FORBIDDEN);
        assert_eq!(status(&decision(Outcome::Replayed, ""), Dialect::Nginx), StatusCode::UNAUTHORIZED);
        assert_eq!(status(&decision(Outcome::EngineError, ""), Dialect::Standard), StatusCode::FORBIDDEN);
    }

    #[test]
    fn challenges_quote_reasons_and_carry_nonces() {
        let mut headers = HeaderMap::new();
        challenge(&decision(Outcome::InvalidToken, r#"agent `a"b` is revoked…"#), &mut headers);
        assert_eq!(headers[header::WWW_AUTHENTICATE], r#"DPoP error="invalid_token", error_description="agent `a\"b` is revoked?", algs="ES256""#);
        let mut headers = HeaderMap::new();
        challenge(&decision(Outcome::InvalidToken, "no access token was presented (`Authorization` header)"), &mut headers);
        assert_eq!(headers[header::WWW_AUTHENTICATE], r#"DPoP algs="ES256""#);
        let mut headers = HeaderMap::new();
        let mut d = decision(Outcome::UseDpopNonce, "use the nonce");
        d.dpop_nonce = Some("abc".into());
        challenge(&d, &mut headers);
        assert_eq!(headers["dpop-nonce"], "abc");
        assert!(headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with(r#"DPoP error="use_dpop_nonce""#));
    }
}
