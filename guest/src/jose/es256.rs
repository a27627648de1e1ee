//! ES256 (RFC 7518 §3.4): ECDSA over P-256 with SHA-256, signatures as 64 raw bytes r‖s.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};

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
}

/// RustCrypto `p256`, the default everywhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct RustCryptoVerifier;

impl SignatureVerifier for RustCryptoVerifier {
    fn verify(&self, key: &PublicKey, message: &[u8], signature: &Es256Signature) -> bool {
        key.key.verify(message, &signature.sig).is_ok()
    }
}
