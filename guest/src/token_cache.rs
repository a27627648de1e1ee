//! Verified access tokens by the SHA-256 of their bytes: an agent sends the same token on many
//! calls, and parsing plus an ES256 verification is most of a call's cost. A hit skips both, but
//! never the clock: `exp`, `nbf` and `iat` are checked on every use, and an expired entry is
//! dropped. The cache belongs to one engine, so a configuration reload starts empty.

use crate::access_token::VerifiedAccessToken;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Cache key: SHA-256 of the token.
pub type TokenHash = [u8; 32];

/// A bounded, first-in-first-out cache.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<TokenHash, Arc<VerifiedAccessToken>>,
    order: VecDeque<TokenHash>,
    capacity: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        TokenCache { entries: HashMap::new(), order: VecDeque::new(), capacity }
    }

    /// The key of `token`.
    pub fn key(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    /// A cached verification.
    pub fn get(&self, key: &TokenHash) -> Option<Arc<VerifiedAccessToken>> {
        self.entries.get(key).cloned()
    }

    /// Drops an entry (expired).
    pub fn remove(&mut self, key: &TokenHash) {
        self.entries.remove(key);
    }

    /// Remembers a verification, evicting the oldest entries when full.
    pub fn insert(&mut self, key: TokenHash, token: Arc<VerifiedAccessToken>) {
        if self.capacity == 0 {
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        // `order` may hold keys already removed; keep it from growing without bound.
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.order.retain(|k| self.entries.contains_key(k));
        }
        if self.entries.insert(key, token).is_none() {
            self.order.push_back(key);
        }
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delegation::DelegationChain;

    fn token(jti: &str) -> Arc<VerifiedAccessToken> {
        Arc::new(VerifiedAccessToken {
            issuer: "i".into(),
            kid: "k".into(),
            subject: "s".into(),
            client_id: "c".into(),
            jti: jti.into(),
            issued_at: 0,
            expires_at: 10,
            not_before: None,
            scopes: vec![],
            chain: DelegationChain::default(),
            bound_key: None,
            status: None,
        })
    }

    #[test]
    fn bounded_first_in_first_out() {
        let mut cache = TokenCache::new(2);
        let (a, b, c) = (TokenCache::key("a"), TokenCache::key("b"), TokenCache::key("c"));
        cache.insert(a, token("a"));
        cache.insert(b, token("b"));
        cache.insert(c, token("c"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a).is_none());
        assert_eq!(cache.get(&c).map(|t| t.jti.clone()).as_deref(), Some("c"));
        let mut off = TokenCache::new(0);
        off.insert(a, token("a"));
        assert!(off.is_empty());
    }
}
