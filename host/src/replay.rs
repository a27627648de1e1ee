//! The replay store behind the component's `replay` import: one per process, shared by every
//! instance and thread, so a DPoP proof is accepted once no matter which worker sees it.

use agentgate_engine::ReplayGuard;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Shards keep threads from queueing on one lock.
const SHARDS: usize = 16;

/// An in-memory replay store with expiry.
///
/// Bounded: when a shard is full even after dropping expired keys, `remember` answers "seen" —
/// failing closed — rather than growing without limit. Only proofs that passed every other check
/// reach the store, so filling it takes valid tokens and keys.
#[derive(Debug)]
pub struct InMemoryReplayStore {
    shards: Vec<Mutex<HashMap<String, u64>>>,
    hasher: RandomState,
    max_per_shard: usize,
}

impl InMemoryReplayStore {
    /// A store holding at most `capacity` live keys.
    pub fn new(capacity: usize) -> Self {
        InMemoryReplayStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            max_per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Number of keys currently held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// True if no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers `key` until `expires_at` as seen at time `now`; false if it is already live.
    pub fn remember_at(&self, key: &str, expires_at: u64, now: u64) -> bool {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        let Some(shard) = self.shards.get(index) else { return false };
        let Ok(mut map) = shard.lock() else { return false };
        if let Some(&until) = map.get(key)
            && until > now
        {
            return false;
        }
        if map.len() >= self.max_per_shard {
            map.retain(|_, until| *until > now);
            if map.len() >= self.max_per_shard {
                return false;
            }
        }
        map.insert(key.to_owned(), expires_at);
        true
    }
}

impl Default for InMemoryReplayStore {
    fn default() -> Self {
        InMemoryReplayStore::new(1_000_000)
    }
}

impl ReplayGuard for InMemoryReplayStore {
    fn remember(&self, key: &str, expires_at: u64) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // The guest may evaluate at an injected time (`--now`); keep the key at least as long as it
        // says, measured from whichever clock is earlier.
        self.remember_at(key, expires_at, now.min(expires_at.saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_a_replay_until_expiry() {
        let store = InMemoryReplayStore::new(100);
        assert!(store.remember_at("a", 110, 100));
        assert!(!store.remember_at("a", 110, 105));
        assert!(store.remember_at("a", 200, 110), "expired keys may be used again");
        assert!(store.remember_at("b", 110, 100));
    }

    #[test]
    fn a_full_store_fails_closed() {
        let store = InMemoryReplayStore::new(SHARDS);
        let accepted = (0..100).filter(|i| store.remember_at(&format!("k{i}"), 1000, 100)).count();
        assert!(accepted < 100, "some keys must be refused once shards are full");
        assert!(store.len() <= SHARDS);
    }
}
