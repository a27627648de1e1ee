//! JWKS from URLs: fetched over HTTPS, remembered, and served from memory when a later fetch
//! fails — a flaky authorization server must not take the gate down with it.
//!
//! A fetch never follows a redirect (a 3xx is an error that says so): a redirect could lead from
//! `https` to plain `http` or to another host, past the URL rule. A document is remembered as the
//! last good copy only after it parses as the engine parses it. URLs are shown only through
//! [`redact_url`]: a JWKS URL may carry credentials in its user-info or query.

use crate::config::JwksFetcher;
use agentgate_engine::trust::{IssuerSource, TrustConfig, TrustStore};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// Connect and read timeout of one fetch.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTPS fetcher with a last-good cache per URL.
#[derive(Debug, Default)]
pub struct HttpsFetcher {
    last_good: Mutex<HashMap<String, String>>,
}

impl HttpsFetcher {
    /// Fetches `url` now; on failure returns the error (the caller decides whether to fall back).
    /// Only a document the engine can use becomes the last good copy.
    pub fn fetch_fresh(&self, url: &str) -> Result<String, String> {
        let shown = redact_url(url);
        check_url(url)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(true)
            // Never follow: the URL rule (https, or http to loopback) holds for the URL configured.
            .max_redirects(0)
            .build()
            .new_agent();
        let mut response = agent.get(url).call().map_err(|e| format!("fetching `{shown}`: {}", scrub(&e.to_string(), url)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(format!("fetching `{shown}`: the server answered `{}` with a redirect; JWKS fetches do not follow redirects", status.as_u16()));
        }
        if !status.is_success() {
            return Err(format!("fetching `{shown}`: the server answered `{}`", status.as_u16()));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_JWKS_BYTES)
            .read_to_string()
            .map_err(|e| format!("reading `{shown}`: {}", scrub(&e.to_string(), url)))?;
        validate_jwks(&body, &shown)?;
        if let Ok(mut cache) = self.last_good.lock() {
            cache.insert(url.to_owned(), body.clone());
        }
        Ok(body)
    }

    /// The last document fetched successfully from `url`.
    pub fn last_good(&self, url: &str) -> Option<String> {
        self.last_good.lock().ok().and_then(|c| c.get(url).cloned())
    }
}

impl JwksFetcher for HttpsFetcher {
    /// A fresh document, or the last good one (with a warning) when the fetch fails.
    fn fetch(&self, url: &str) -> Result<String, String> {
        match self.fetch_fresh(url) {
            Ok(body) => Ok(body),
            Err(e) => match self.last_good(url) {
                Some(body) => {
                    tracing::warn!(url = %redact_url(url), error = %e, "JWKS fetch failed; the last good keys stay in force");
                    Ok(body)
                }
                None => Err(e),
            },
        }
    }
}

/// Parses `body` as the engine parses an issuer's JWKS (`agentgate_engine::trust`).
fn validate_jwks(body: &str, shown: &str) -> Result<(), String> {
    let config = TrustConfig {
        issuers: vec![IssuerSource {
            issuer: "jwks".into(),
            jwks: body.to_owned(),
            source: shown.to_owned(),
            status_list: Default::default(),
            status_issuer: None,
        }],
        trust_domains: Vec::new(),
    };
    TrustStore::from_config(&config).map(drop).map_err(|e| format!("not using the document fetched from `{shown}`: {e}"))
}

/// `url` as it may be shown (logs, `/healthz`, `validate`): without user-info, query or fragment
/// (a query is replaced by `?<redacted>`). Text that does not parse as a URL is shown as
/// `<unparseable url>`: it could be anything.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else { return "<unparseable url>".into() };
    let had_query = parsed.query().is_some();
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_query(None);
    parsed.set_fragment(None);
    let mut shown = parsed.to_string();
    if had_query {
        shown.push_str("?<redacted>");
    }
    shown
}

/// Replaces `url` (and its credential parts) in a library's error text with its redacted form.
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    if let Ok(parsed) = url::Url::parse(url) {
        for secret in [parsed.password().unwrap_or(""), parsed.query().unwrap_or("")] {
            if !secret.is_empty() {
                out = out.replace(secret, "<redacted>");
            }
        }
    }
    out
}

/// `https://` anywhere; `http://` only to a loopback address (tests, sidecars on localhost). The
/// rule for every URL agentgate fetches (JWKS, token status lists).
pub fn check_url(url: &str) -> Result<(), String> {
    let shown = redact_url(url);
    let parsed = url::Url::parse(url).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback { Ok(()) } else { Err(format!("`{shown}`: JWKS must be fetched over https (plain http only from loopback)")) }
        }
        other => Err(format!("`{shown}`: unsupported scheme `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://as.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://as.example.com/jwks").is_err());
        assert!(check_url("ftp://as.example.com/jwks").is_err());
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(redact_url("https://user:pass@as.example.com/jwks?access_token=s3cret#x"), "https://as.example.com/jwks?<redacted>");
        assert_eq!(redact_url("https://as.example.com:8443/jwks"), "https://as.example.com:8443/jwks");
        assert_eq!(redact_url("not a url s3cret"), "<unparseable url>");
        let e = check_url("ftp://user:pass@as.example.com/jwks?access_token=s3cret").unwrap_err();
        assert!(!e.contains("pass") && !e.contains("s3cret"), "{e}");
    }

    /// A one-shot HTTP server on loopback answering every request with `response`.
    fn serve(response: String, requests: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        format!("http://127.0.0.1:{}", addr.port())
    }

    fn ok_response(body: &str) -> String {
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    }

    fn demo_jwks() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/keys/demo-issuer.TEST-ONLY.jwks.json")).unwrap()
    }

    #[test]
    fn a_redirect_is_a_fetch_error_and_is_not_followed() {
        // The target serves good keys: following the redirect would have trusted them.
        let target = serve(ok_response(&demo_jwks()), 1);
        let redirect = serve(format!("HTTP/1.1 302 Found\r\nlocation: {target}/jwks\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"), 1);
        let fetcher = HttpsFetcher::default();
        let e = fetcher.fetch_fresh(&format!("{redirect}/jwks")).unwrap_err();
        assert!(e.contains("answered `302` with a redirect; JWKS fetches do not follow redirects"), "{e}");
        assert!(fetcher.last_good(&format!("{redirect}/jwks")).is_none());
    }

    #[test]
    fn an_invalid_document_never_becomes_the_last_good_copy() {
        let good = demo_jwks();
        let url = serve(ok_response(&good), 1);
        let fetcher = HttpsFetcher::default();
        assert_eq!(fetcher.fetch_fresh(&url).unwrap(), good);
        // The same URL now serves garbage, then a JWKS with no usable key.
        let fetcher2 = HttpsFetcher::default();
        for garbage in ["<html>oops</html>", r#"{"keys":[]}"#, r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#] {
            let bad = serve(ok_response(garbage), 1);
            let e = fetcher2.fetch_fresh(&bad).unwrap_err();
            assert!(e.contains("not using the document fetched from"), "{e}");
            assert!(fetcher2.last_good(&bad).is_none(), "{garbage}");
        }
        // A remembered good copy stays when the next fetch is garbage: `fetch` falls back to it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answers = vec![ok_response(&good), ok_response("{\"keys\": 42}")];
        std::thread::spawn(move || {
            for (stream, answer) in listener.incoming().zip(answers) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        let url = format!("http://{addr}/jwks");
        let fetcher3 = HttpsFetcher::default();
        assert_eq!(fetcher3.fetch(&url).unwrap(), good);
        assert_eq!(fetcher3.fetch(&url).unwrap(), good, "the garbage answer did not replace the last good copy");
        assert_eq!(fetcher3.last_good(&url).unwrap(), good);
    }
}
