//! Where a call really came from: the original method and external URI behind a proxy, believed
//! only from configured proxies and checked against the configured external origins — never an
//! arbitrary `Host` (RFC 9449 §4.3 #9, WIMSE).

use std::net::IpAddr;

/// A CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("`{text}` has an invalid prefix length"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// True if `ip` is inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn mask_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a.get(..full) != b.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    matches!((a.get(full), b.get(full)), (Some(x), Some(y)) if x & mask == y & mask)
}

/// A configured external origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    /// `host` or `host:port`, lowercase, default port omitted.
    authority: String,
}

impl Origin {
    /// Parses `https://mail.example.com` (no path).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("external origin `{text}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(format!("external origin `{text}` must be `http(s)://host[:port]`"));
        }
        Ok(Origin { scheme: url.scheme().to_owned(), authority: authority(&url) })
    }

    /// `scheme://authority`.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Trusted proxies and external origins.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    proxies: Vec<Cidr>,
    origins: Vec<Origin>,
}

impl Origins {
    /// From the `[server]` section.
    pub fn new(proxies: &[String], origins: &[String]) -> Result<Self, String> {
        Ok(Origins {
            proxies: proxies.iter().map(|p| Cidr::parse(p)).collect::<Result<_, _>>()?,
            origins: origins.iter().map(|o| Origin::parse(o)).collect::<Result<_, _>>()?,
        })
    }

    /// True if forwarded headers from `peer` are believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.proxies.iter().any(|c| c.contains(peer))
    }

    /// The external URI for a call: the claimed scheme and authority (from forwarded headers or
    /// `Host`) must name a configured origin; with no origins configured, a trusted proxy's
    /// claim stands. `path_and_query` is the original request target.
    pub fn external_uri(&self, scheme: Option<&str>, authority: Option<&str>, path_and_query: &str) -> Result<String, String> {
        if !path_and_query.starts_with('/') {
            return Err(format!("the original request target `{}` is not an absolute path", path_and_query.escape_default()));
        }
        if self.origins.is_empty() {
            let (Some(scheme), Some(authority)) = (scheme, authority) else {
                return Err("no external origin is configured and the proxy sent no scheme and host".into());
            };
            let candidate = format!("{scheme}://{authority}");
            let origin = Origin::parse(&candidate)?;
            return Ok(format!("{}{path_and_query}", origin.base()));
        }
        let claimed = match authority {
            Some(a) => {
                let scheme = scheme.unwrap_or("https");
                Some(Origin::parse(&format!("{scheme}://{a}"))?)
            }
            None => None,
        };
        let origin = match claimed {
            Some(c) => self.origins.iter().find(|o| **o == c || (scheme.is_none() && o.authority == c.authority)),
            None if self.origins.len() == 1 => self.origins.first(),
            None => None,
        };
        match origin {
            Some(o) => Ok(format!("{}{path_and_query}", o.base())),
            None => Err(format!(
                "the request's origin `{}` is not a configured external origin",
                format!("{}://{}", scheme.unwrap_or("?"), authority.unwrap_or("?")).escape_default()
            )),
        }
    }

    /// The configured origins.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }
}

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn cidr_blocks() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn external_uris_come_only_from_configured_origins() {
        let o = Origins::new(&[], &["https://mail.example.com".into(), "https://MAIL.example.com:8443".into()]).unwrap();
        assert_eq!(o.external_uri(Some("https"), Some("mail.example.com"), "/a?b").unwrap(), "https://mail.example.com/a?b");
        assert_eq!(o.external_uri(Some("https"), Some("Mail.Example.com:443"), "/a").unwrap(), "https://mail.example.com/a");
        assert_eq!(o.external_uri(None, Some("mail.example.com:8443"), "/a").unwrap(), "https://mail.example.com:8443/a");
        assert!(o.external_uri(Some("https"), Some("evil.example.com"), "/a").is_err());
        assert!(o.external_uri(Some("http"), Some("mail.example.com"), "/a").is_err());
        assert!(o.external_uri(None, None, "/a").is_err(), "two origins: the host must say which");
        let single = Origins::new(&[], &["https://mail.example.com".into()]).unwrap();
        assert_eq!(single.external_uri(None, None, "/a").unwrap(), "https://mail.example.com/a");
        let open = Origins::new(&[], &[]).unwrap();
        assert_eq!(open.external_uri(Some("https"), Some("api.example.com"), "/a").unwrap(), "https://api.example.com/a");
        assert!(open.external_uri(None, Some("api.example.com"), "/a").is_err());
        assert!(single.external_uri(None, None, "a").is_err());
    }
}
