//! Proof ids in memory: the `memory` backend of `agentgate serve` (one per process, shared by
//! every instance and thread) and the per-instance store of the wasi:http gateway.
//!
//! Bounded twice. Per key: a proof key holds at most `per_key` live proofs, so one holder of one
//! valid token cannot fill the store for everyone (it gets `KeyLimit`, others go on). In all: when
//! `capacity` live proofs are held even after dropping expired ones, the store answers
//! `Unavailable` — a full store fails closed, and says so, rather than calling fresh proofs
//! replays. Filling it takes `capacity / per_key` distinct bound keys, each with a valid token.
//!
//! Lifetimes are relative (`ttl_secs` from `Instant::now()`), so a pinned or skewed wall clock
//! cannot expire an entry early.

use super::{ProofAnswer, ProofUse};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards keep threads from queueing on one lock; a key's proofs all live in one shard.
const SHARDS: usize = 16;

/// How often a shard drops its expired entries (on its next use after this long). Without it an
/// expired entry stayed until its key reached `per_key` or its shard filled, so a steady stream
/// of proofs from many keys kept growing the process towards `capacity` dead entries (about
/// 100 bytes each): the soak bench showed RSS climbing ~1.2 MiB a minute.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The bounds of a proof store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofLimits {
    /// Most live proofs in all.
    pub capacity: usize,
    /// Most live proofs of one key.
    pub per_key: u32,
}

impl Default for ProofLimits {
    /// A million proofs; 10,000 per key — 166 proofs a second, sustained over a 60 s window,
    /// far above what one agent sends.
    fn default() -> Self {
        ProofLimits { capacity: 1_000_000, per_key: 10_000 }
    }
}

#[derive(Debug, Default)]
struct Shard {
    /// Key thumbprint → `jti` hash → end of its window.
    keys: HashMap<String, HashMap<String, Instant>>,
    /// Entries held in `keys` (expired ones included until swept).
    entries: usize,
    /// When the shard next drops its expired entries.
    next_sweep: Option<Instant>,
}

impl Shard {
    /// Drops every expired entry.
    fn sweep(&mut self, now: Instant) {
        self.keys.retain(|_, proofs| {
            proofs.retain(|_, until| *until > now);
            !proofs.is_empty()
        });
        self.entries = self.keys.values().map(HashMap::len).sum();
    }
}

/// A bounded in-memory proof store.
#[derive(Debug)]
pub struct ProofMemory {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    limits: ProofLimits,
    max_per_shard: usize,
}

impl ProofMemory {
    /// An empty store with `limits`.
    pub fn new(limits: ProofLimits) -> Self {
        ProofMemory {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            max_per_shard: limits.capacity.div_ceil(SHARDS).max(1),
            limits,
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> ProofLimits {
        self.limits
    }

    /// Proofs held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|s| s.entries).unwrap_or(0)).sum()
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers a proof use, as of `now`.
    pub fn remember_at(&self, proof: &ProofUse<'_>, now: Instant) -> ProofAnswer {
        let index = usize::try_from(self.hasher.hash_one(proof.key_thumbprint) % SHARDS as u64).unwrap_or(0);
        let Some(Ok(mut shard)) = self.shards.get(index).map(Mutex::lock) else {
            return ProofAnswer::Unavailable("the in-memory replay store is broken (a lock was poisoned)".into());
        };
        let shard = &mut *shard;
        if shard.next_sweep.is_none_or(|at| now >= at) {
            shard.sweep(now);
            shard.next_sweep = Some(now + SWEEP_EVERY);
        }
        let live_in_key = match shard.keys.get_mut(proof.key_thumbprint) {
            Some(proofs) => {
                if proofs.get(proof.jti_hash).is_some_and(|until| *until > now) {
                    return ProofAnswer::Replayed;
                }
                if proofs.len() >= self.per_key() {
                    let before = proofs.len();
                    proofs.retain(|_, until| *until > now);
                    shard.entries = shard.entries.saturating_sub(before - proofs.len());
                }
                proofs.len()
            }
            None => 0,
        };
        if live_in_key >= self.per_key() {
            return ProofAnswer::KeyLimit(self.limits.per_key);
        }
        if shard.entries >= self.max_per_shard {
            shard.sweep(now);
            if shard.entries >= self.max_per_shard {
                return ProofAnswer::Unavailable(format!("the in-memory replay store is full ({} live proofs)", self.limits.capacity));
            }
        }
        let until = now + Duration::from_secs(u64::from(proof.ttl_secs.max(1)));
        let proofs = shard.keys.entry(proof.key_thumbprint.to_owned()).or_default();
        if proofs.insert(proof.jti_hash.to_owned(), until).is_none() {
            shard.entries += 1;
        }
        ProofAnswer::Fresh
    }

    /// Remembers a proof use now.
    pub fn remember(&self, proof: &ProofUse<'_>) -> ProofAnswer {
        self.remember_at(proof, Instant::now())
    }

    fn per_key(&self) -> usize {
        usize::try_from(self.limits.per_key).unwrap_or(usize::MAX)
    }
}

impl Default for ProofMemory {
    fn default() -> Self {
        ProofMemory::new(ProofLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof<'a>(key: &'a str, jti: &'a str, ttl_secs: u32) -> ProofUse<'a> {
        ProofUse { key_thumbprint: key, jti_hash: jti, ttl_secs }
    }

    #[test]
    fn second_use_is_a_replay_until_its_window_ends() {
        let store = ProofMemory::default();
        let t0 = Instant::now();
        assert_eq!(store.remember_at(&proof("k", "a", 10), t0), ProofAnswer::Fresh);
        assert_eq!(store.remember_at(&proof("k", "a", 10), t0 + Duration::from_secs(5)), ProofAnswer::Replayed);
        assert_eq!(store.remember_at(&proof("other-key", "a", 100), t0), ProofAnswer::Fresh, "ids are per key");
        assert_eq!(store.remember_at(&proof("k", "a", 10), t0 + Duration::from_secs(11)), ProofAnswer::Fresh, "an expired id may be used again");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn one_key_cannot_fill_the_store_for_everyone() {
        let store = ProofMemory::new(ProofLimits { capacity: 1000, per_key: 50 });
        let t0 = Instant::now();
        let ids: Vec<String> = (0..100).map(|i| format!("j{i}")).collect();
        let flood: Vec<ProofAnswer> = ids.iter().map(|j| store.remember_at(&proof("mallory", j, 60), t0)).collect();
        assert_eq!(flood.iter().filter(|a| **a == ProofAnswer::Fresh).count(), 50);
        assert_eq!(flood.last(), Some(&ProofAnswer::KeyLimit(50)));
        assert_eq!(store.remember_at(&proof("alice", "j0", 120), t0), ProofAnswer::Fresh, "other keys are untouched");
        // Once mallory's proofs expire, mallory may go on.
        assert_eq!(store.remember_at(&proof("mallory", "late", 60), t0 + Duration::from_secs(61)), ProofAnswer::Fresh);
        assert_eq!(store.len(), 2, "the expired proofs were dropped");
    }

    /// Expired entries go within `SWEEP_EVERY` of use, far below every bound: a steady stream of
    /// proofs holds about one window's worth, not `capacity`.
    #[test]
    fn expired_entries_are_dropped_by_the_periodic_sweep_before_any_bound_is_reached() {
        let store = ProofMemory::default();
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(store.remember_at(&proof("k", &format!("j{i}"), 1), t0), ProofAnswer::Fresh);
        }
        assert_eq!(store.len(), 100);
        // Within the sweep interval nothing is swept; after it, the shard's next use drops them.
        assert_eq!(store.remember_at(&proof("k", "early", 1), t0 + Duration::from_secs(2)), ProofAnswer::Fresh);
        assert_eq!(store.len(), 101);
        assert_eq!(store.remember_at(&proof("k", "late", 60), t0 + SWEEP_EVERY + Duration::from_secs(1)), ProofAnswer::Fresh);
        assert_eq!(store.len(), 1, "every expired entry was dropped; only `late` is live");
    }

    #[test]
    fn a_full_store_is_unavailable_not_replayed() {
        let store = ProofMemory::new(ProofLimits { capacity: SHARDS, per_key: 1 });
        let t0 = Instant::now();
        let keys: Vec<String> = (0..200).map(|i| format!("key{i}")).collect();
        let answers: Vec<ProofAnswer> = keys.iter().map(|k| store.remember_at(&proof(k, "j", 60), t0)).collect();
        assert!(answers.iter().any(|a| matches!(a, ProofAnswer::Unavailable(why) if why.contains("full"))), "{answers:?}");
        assert!(!answers.contains(&ProofAnswer::Replayed));
        assert!(store.len() <= SHARDS);
        assert_eq!(store.remember_at(&proof("key0", "j", 60), t0 + Duration::from_secs(61)), ProofAnswer::Fresh, "room again once entries expire");
    }
}
