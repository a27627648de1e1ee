//! ES256 (RFC 7518 §3.4): ECDSA over P-256 with SHA-256, signatures as 64 raw bytes r‖s.

use super::precomputed::{self, FixedBaseTable, LEARNED_WINDOW, PINNED_WINDOW};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A P-256 public key, checked to be a valid point on the curve.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// SEC1 uncompressed encoding (0x04 ‖ x ‖ y), the form a host crypto library takes.
    sec1: [u8; 65],
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey(P-256)")
    }
}

/// Why a public key was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `x`/`y` is not a point on P-256 (RFC 8725 §3.4).
    #[error("is not a point on P-256")]
    NotOnCurve,
}

impl PublicKey {
    /// Builds a key from affine coordinates, rejecting points not on the curve.
    pub fn from_coordinates(x: &[u8; 32], y: &[u8; 32]) -> Result<Self, KeyError> {
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..33].copy_from_slice(x);
        sec1[33..].copy_from_slice(y);
        let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| KeyError::NotOnCurve)?;
        Ok(PublicKey { key, sec1 })
    }

    /// SEC1 uncompressed encoding.
    pub fn sec1(&self) -> &[u8; 65] {
        &self.sec1
    }

    /// The RustCrypto verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// A JWS ES256 signature: exactly 64 bytes, r and s each in [1, n-1]. High-S is valid in JOSE.
#[derive(Clone, PartialEq, Eq)]
pub struct Es256Signature {
    sig: Signature,
    raw: [u8; 64],
}

impl std::fmt::Debug for Es256Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Es256Signature(..)")
    }
}

/// Why signature bytes were rejected before any curve arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureFormatError {
    /// RFC 7518 §3.4: "If it is not a 64-octet sequence, the validation has failed" (DER is ≈ 70).
    #[error("is {0} bytes, ES256 signatures are exactly 64 bytes r‖s")]
    WrongLength(usize),
    /// r or s is zero or not below the group order (CVE-2022-21449 class).
    #[error("has r or s outside [1, n-1]")]
    ScalarOutOfRange,
}

impl Es256Signature {
    /// Parses raw r‖s bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureFormatError> {
        let raw: [u8; 64] = bytes.try_into().map_err(|_| SignatureFormatError::WrongLength(bytes.len()))?;
        let sig = Signature::from_slice(&raw).map_err(|_| SignatureFormatError::ScalarOutOfRange)?;
        Ok(Es256Signature { sig, raw })
    }

    /// The raw r‖s bytes.
    pub fn raw(&self) -> &[u8; 64] {
        &self.raw
    }

    /// The RustCrypto signature.
    pub fn signature(&self) -> &Signature {
        &self.sig
    }
}

/// Verifies ES256 signatures. The engine's only cryptographic dependency, so that a host with a
/// native library can stand in for the pure-Rust arithmetic (see `crypto` in the WIT).
pub trait SignatureVerifier: Send + Sync {
    /// True if `signature` is valid for `message` under `key`.
    fn verify(&self, key: &PublicKey, message: &[u8], signature: &Es256Signature) -> bool;

    /// A key that will verify many signatures (an issuer's): prepare for it now. Optional.
    fn pin(&self, _key: &PublicKey) {}
}

/// Agent keys with a precomputed table at most (≈ 116 kB each).
const LEARNED_CAPACITY: usize = 64;
/// Keys remembered as "seen once" before a second use earns them a table.
const SEEN_CAPACITY: usize = 4096;

/// RustCrypto `p256`. A key used once is verified with `p256`'s own `verify`; a key used again
/// (an agent signing its proofs) or pinned (an issuer) gets a precomputed table and verifies about
/// five times faster (`precomputed`).
#[derive(Default)]
pub struct RustCryptoVerifier {
    tables: Mutex<KeyTables>,
}

impl std::fmt::Debug for RustCryptoVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustCryptoVerifier").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct KeyTables {
    pinned: HashMap<[u8; 65], Arc<FixedBaseTable>>,
    /// Learned tables with the tick of their last use, evicted least recently used.
    learned: HashMap<[u8; 65], (Arc<FixedBaseTable>, u64)>,
    seen_once: HashMap<[u8; 65], u64>,
    tick: u64,
}

impl KeyTables {
    /// The key's table, building one on the key's second use.
    fn table_for(&mut self, sec1: &[u8; 65], key: &VerifyingKey) -> Option<Arc<FixedBaseTable>> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(table) = self.pinned.get(sec1) {
            return Some(Arc::clone(table));
        }
        if let Some((table, last_use)) = self.learned.get_mut(sec1) {
            *last_use = tick;
            return Some(Arc::clone(table));
        }
        if self.seen_once.remove(sec1).is_none() {
            if self.seen_once.len() >= SEEN_CAPACITY {
                self.seen_once.clear();
            }
            self.seen_once.insert(*sec1, tick);
            return None;
        }
        if self.learned.len() >= LEARNED_CAPACITY {
            let oldest = self.learned.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.learned.remove(&oldest);
            }
        }
        let table = Arc::new(FixedBaseTable::new(key.as_affine().into(), LEARNED_WINDOW));
        self.learned.insert(*sec1, (Arc::clone(&table), tick));
        Some(table)
    }
}

impl RustCryptoVerifier {
    /// A verifier with no tables yet.
    pub fn new() -> Self {
        RustCryptoVerifier::default()
    }
}

impl SignatureVerifier for RustCryptoVerifier {
    fn verify(&self, key: &PublicKey, message: &[u8], signature: &Es256Signature) -> bool {
        let table = self.tables.lock().ok().and_then(|mut t| t.table_for(&key.sec1, &key.key));
        match table {
            Some(table) => precomputed::verify(&table, message, &signature.sig),
            None => key.key.verify(message, &signature.sig).is_ok(),
        }
    }

    fn pin(&self, key: &PublicKey) {
        let _ = precomputed::generator_table();
        if let Ok(mut tables) = self.tables.lock() {
            tables.pinned.entry(key.sec1).or_insert_with(|| Arc::new(FixedBaseTable::new(key.key.as_affine().into(), PINNED_WINDOW)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    #[test]
    fn learned_and_pinned_keys_decide_like_one_off_keys() {
        let verifier = RustCryptoVerifier::new();
        let signer = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let point = signer.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let key = PublicKey::from_coordinates(bytes[1..33].try_into().unwrap(), bytes[33..65].try_into().unwrap()).unwrap();
        for n in 0..5 {
            let message = format!("m{n}");
            let sig = Es256Signature::from_bytes(&Signature::to_bytes(&signer.sign(message.as_bytes()))).unwrap();
            assert!(verifier.verify(&key, message.as_bytes(), &sig), "use {n}");
            assert!(!verifier.verify(&key, b"other", &sig), "use {n}");
        }
        assert_eq!(verifier.tables.lock().unwrap().learned.len(), 1, "a reused key earns a table");
        verifier.pin(&key);
        let sig = Es256Signature::from_bytes(&Signature::to_bytes(&signer.sign(b"pinned"))).unwrap();
        assert!(verifier.verify(&key, b"pinned", &sig));
    }
}
