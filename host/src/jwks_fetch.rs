//! JWKS from URLs: fetched over HTTPS, remembered, and served from memory when a later fetch
//! fails — a flaky authorization server must not take the gate down with it.

use crate::config::JwksFetcher;
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
    pub fn fetch_fresh(&self, url: &str) -> Result<String, String> {
        check_url(url)?;
        let agent = ureq::Agent::config_builder().timeout_global(Some(TIMEOUT)).http_status_as_error(true).build().new_agent();
        let mut response = agent.get(url).call().map_err(|e| format!("fetching `{url}`: {e}"))?;
        let body = response.body_mut().with_config().limit(MAX_JWKS_BYTES).read_to_string().map_err(|e| format!("reading `{url}`: {e}"))?;
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
                    tracing::warn!(url, error = %e, "JWKS fetch failed; the last good keys stay in force");
                    Ok(body)
                }
                None => Err(e),
            },
        }
    }
}

/// `https://` anywhere; `http://` only to a loopback address (tests, sidecars on localhost). The
/// rule for every URL agentgate fetches (JWKS, token status lists).
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback { Ok(()) } else { Err(format!("`{url}`: JWKS must be fetched over https (plain http only from loopback)")) }
        }
        other => Err(format!("`{url}`: unsupported scheme `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://as.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://as.example.com/jwks").is_err());
        assert!(check_url("ftp://as.example.com/jwks").is_err());
    }
}
