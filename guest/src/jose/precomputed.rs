//! Fast ES256 verification for keys that verify many signatures: the issuer's token keys and the
//! keys agents sign their proofs with.
//!
//! ECDSA verification computes `u1·G + u2·Q`. RustCrypto's `verify` does it with a width-4 wNAF
//! (about 256 doublings). Here both bases get a fixed-base comb table: for every `w`-bit window `i`
//! of the scalar, the multiples `j·2^(w·i)·P` (`j` in `1..2^w`) in affine form, so that a scalar
//! multiplication is one mixed addition per non-zero window and no doublings. All inputs of a
//! verification are public, so variable time is fine. The group arithmetic is RustCrypto's `p256`;
//! only the order of additions is ours. `tests` compare it with `p256`'s own `verify`.

use p256::ecdsa::Signature;
use p256::elliptic_curve::BatchNormalize;
use p256::elliptic_curve::group::Group as _;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Window of the generator's table: 32 windows × 255 points (≈ 0.5 MB, built once per process).
const GENERATOR_WINDOW: u32 = 8;
/// Window for trusted keys pinned at configuration load (issuers, trust domains).
pub const PINNED_WINDOW: u32 = 8;
/// Window for keys learned at run time (agents' proof keys): 43 windows × 63 points (≈ 170 kB).
pub const LEARNED_WINDOW: u32 = 6;

/// `j·2^(w·i)·P` for every window `i` and digit `j ≥ 1`, affine.
pub struct FixedBaseTable {
    window: u32,
    points: Vec<AffinePoint>,
}

impl std::fmt::Debug for FixedBaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedBaseTable").field("window", &self.window).field("points", &self.points.len()).finish()
    }
}

impl FixedBaseTable {
    /// Builds the table of `base` for `window`-bit digits (1 ≤ window ≤ 8).
    pub fn new(base: ProjectivePoint, window: u32) -> Self {
        let window = window.clamp(1, 8);
        let per_window = (1usize << window) - 1;
        let windows = 256usize.div_ceil(window as usize);
        let mut projective = Vec::with_capacity(windows * per_window);
        let mut window_base = base;
        for _ in 0..windows {
            let mut multiple = window_base;
            projective.push(multiple);
            for _ in 1..per_window {
                multiple += window_base;
                projective.push(multiple);
            }
            for _ in 0..window {
                window_base = window_base.double();
            }
        }
        // One field inversion for all points.
        let points = <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize(projective.as_slice());
        FixedBaseTable { window, points }
    }

    /// Size in bytes, for cache accounting.
    pub fn size_bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<AffinePoint>()
    }

    /// `k·P`, variable time.
    pub fn mul_vartime(&self, k: &Scalar) -> ProjectivePoint {
        let be = k.to_bytes();
        let bit = |i: usize| -> usize { be.get(31 - i / 8).map_or(0, |byte| usize::from((byte >> (i % 8)) & 1)) };
        let w = self.window as usize;
        let per_window = (1usize << w) - 1;
        let mut acc = ProjectivePoint::IDENTITY;
        for (index, start) in (0..256).step_by(w).enumerate() {
            let digit = (0..w).filter(|j| start + j < 256).fold(0usize, |d, j| d | (bit(start + j) << j));
            if digit != 0
                && let Some(point) = self.points.get(index * per_window + digit - 1)
            {
                acc += point;
            }
        }
        acc
    }
}

/// The generator's table, built on first use.
pub fn generator_table() -> &'static FixedBaseTable {
    static TABLE: OnceLock<FixedBaseTable> = OnceLock::new();
    TABLE.get_or_init(|| FixedBaseTable::new(ProjectivePoint::GENERATOR, GENERATOR_WINDOW))
}

/// ECDSA P-256/SHA-256 verification (SEC 1 §4.1.4) of `message` with the table of the public key.
/// The same equation as `p256::ecdsa::hazmat::verify_prehashed`; `r` and `s` are already known to
/// be in `[1, n-1]` because `Signature` cannot hold anything else.
pub fn verify(key_table: &FixedBaseTable, message: &[u8], signature: &Signature) -> bool {
    let (r, s) = signature.split_scalars();
    let digest = Sha256::digest(message);
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(<[u8; 32]>::from(digest)));
    let Some(s_inv) = Option::<Scalar>::from(s.invert_vartime()) else { return false };
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let point = generator_table().mul_vartime(&u1) + key_table.mul_vartime(&u2);
    if bool::from(point.is_identity()) {
        return false;
    }
    let x = point.to_affine().x();
    <Scalar as Reduce<FieldBytes>>::reduce(&x) == *r
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::{Signer, Verifier};

    fn key(seed: u8) -> SigningKey {
        let bytes: [u8; 32] = Sha256::digest([seed]).into();
        SigningKey::from_slice(&bytes).unwrap()
    }

    #[test]
    fn scalar_multiplication_matches_p256() {
        let table = FixedBaseTable::new(ProjectivePoint::GENERATOR, 5);
        for seed in 0..50u8 {
            let k = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(<[u8; 32]>::from(Sha256::digest([seed, 1]))));
            assert_eq!(table.mul_vartime(&k).to_affine(), (ProjectivePoint::GENERATOR * k).to_affine(), "seed {seed}");
        }
        assert_eq!(table.mul_vartime(&Scalar::ZERO), ProjectivePoint::IDENTITY);
        assert_eq!(table.mul_vartime(&Scalar::ONE).to_affine(), AffinePoint::GENERATOR);
        assert_eq!(table.mul_vartime(&-Scalar::ONE).to_affine(), (-ProjectivePoint::GENERATOR).to_affine());
    }

    /// Differential test: thousands of valid and corrupted signatures, decided exactly as
    /// `p256`'s own `verify` decides them.
    #[test]
    fn agrees_with_p256_verify_on_valid_and_corrupted_signatures() {
        let mut checked = 0;
        for seed in 0..8u8 {
            let signer = key(seed);
            let verifying = *signer.verifying_key();
            let table = FixedBaseTable::new(verifying.as_affine().into(), if seed % 2 == 0 { PINNED_WINDOW } else { LEARNED_WINDOW });
            let other = FixedBaseTable::new(key(seed + 100).verifying_key().as_affine().into(), LEARNED_WINDOW);
            for n in 0..150u32 {
                let message = format!("message {seed} {n}");
                let sig: Signature = signer.sign(message.as_bytes());
                let mut variants = vec![(message.clone(), sig)];
                // High-S twin: valid.
                let (r, s) = sig.split_scalars();
                variants.push((message.clone(), Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap()));
                // Corruptions: message, r, s.
                variants.push((format!("{message}!"), sig));
                let bump = |x: Scalar| x + Scalar::ONE;
                if let Ok(bad) = Signature::from_scalars(bump(*r).to_bytes(), s.to_bytes()) {
                    variants.push((message.clone(), bad));
                }
                if let Ok(bad) = Signature::from_scalars(r.to_bytes(), bump(*s).to_bytes()) {
                    variants.push((message.clone(), bad));
                }
                for (m, sg) in &variants {
                    let expected = verifying.verify(m.as_bytes(), sg).is_ok();
                    assert_eq!(verify(&table, m.as_bytes(), sg), expected, "seed {seed} n {n}");
                    assert!(!verify(&other, m.as_bytes(), sg) || !expected, "another key must not verify");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 5000, "{checked}");
    }
}
