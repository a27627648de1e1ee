//! SPIFFE IDs (SPIFFE-ID.md §2): `spiffe://<trust domain>/<path>`, validated on the raw text so
//! that nothing is normalized away (a `..` must be rejected, not resolved).

/// Longest SPIFFE ID a validator must support (§2.3).
const MAX_ID_BYTES: usize = 2048;
/// Longest trust domain name (§2.3).
const MAX_TRUST_DOMAIN_BYTES: usize = 255;
const PREFIX: &str = "spiffe://";

/// A validated SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    id: String,
    trust_domain_len: usize,
}

impl SpiffeId {
    /// Validates `text` strictly.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_ID_BYTES {
            return Err(format!("is longer than {MAX_ID_BYTES} bytes"));
        }
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Err("does not start with `spiffe://`".into());
        };
        let (trust_domain, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => (rest, ""),
        };
        validate_trust_domain(trust_domain)?;
        validate_path(path)?;
        Ok(SpiffeId { id: text.to_owned(), trust_domain_len: trust_domain.len() })
    }

    /// The trust domain, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        self.id.get(PREFIX.len()..PREFIX.len() + self.trust_domain_len).unwrap_or("")
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

/// Trust domain rules (§2.1): non-empty, lowercase letters, digits, `.`, `-`, `_` only — so no
/// port, userinfo, percent-encoding or uppercase.
pub fn validate_trust_domain(td: &str) -> Result<(), String> {
    if td.is_empty() {
        return Err("has an empty trust domain".into());
    }
    if td.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(format!("has a trust domain longer than {MAX_TRUST_DOMAIN_BYTES} bytes"));
    }
    if let Some(c) = td.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_')) {
        return Err(format!("has the character `{}` in its trust domain (allowed: a-z 0-9 . - _)", c.escape_default()));
    }
    Ok(())
}

/// Path rules (§2.2): empty, or `/`-separated non-empty segments of `[a-zA-Z0-9.-_]` that are
/// not `.` or `..`, without a trailing `/`.
fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err("has an empty path segment or a trailing `/`".into()),
            "." | ".." => return Err(format!("has a `{segment}` path segment")),
            _ => {}
        }
        if let Some(c) = segment.chars().find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_')) {
            return Err(format!("has the character `{}` in its path (allowed: a-z A-Z 0-9 . - _)", c.escape_default()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        let id = SpiffeId::parse("spiffe://example.org/agents/mail-assistant");
        assert_eq!(id.as_ref().map(SpiffeId::trust_domain), Ok("example.org"));
        assert!(SpiffeId::parse("spiffe://example.org").is_ok());
        assert!(SpiffeId::parse("spiffe://10.0.0.1/x").is_ok());
    }

    #[test]
    fn invalid_ids_say_why() {
        let err = |s: &str| SpiffeId::parse(s).err().unwrap_or_default();
        assert_eq!(err("spiffe://example.org/a/../b"), "has a `..` path segment");
        assert_eq!(err("spiffe://example.org/a/./b"), "has a `.` path segment");
        assert_eq!(err("spiffe://example.org/a//b"), "has an empty path segment or a trailing `/`");
        assert_eq!(err("spiffe://example.org/a/"), "has an empty path segment or a trailing `/`");
        assert_eq!(err("spiffe://example.org:8443/a"), "has the character `:` in its trust domain (allowed: a-z 0-9 . - _)");
        assert_eq!(err("spiffe://Example.org/a"), "has the character `E` in its trust domain (allowed: a-z 0-9 . - _)");
        assert_eq!(err("spiffe://example.org/a?x=1"), "has the character `?` in its path (allowed: a-z A-Z 0-9 . - _)");
        assert_eq!(err("spiffe://example.org/a#f"), "has the character `#` in its path (allowed: a-z A-Z 0-9 . - _)");
        assert_eq!(err("spiffe://user@example.org/a"), "has the character `@` in its trust domain (allowed: a-z 0-9 . - _)");
        assert_eq!(err("spiffe://example.org/a%20b"), "has the character `%` in its path (allowed: a-z A-Z 0-9 . - _)");
        assert_eq!(err("spiffe:///a"), "has an empty trust domain");
        assert_eq!(err("https://example.org/a"), "does not start with `spiffe://`");
        assert_eq!(err("SPIFFE://example.org/a"), "does not start with `spiffe://`");
    }
}
