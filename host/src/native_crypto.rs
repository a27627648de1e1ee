//! ES256 verification with aws-lc, offered to the component through the `crypto` import and used
//! as the native reference line in benches.

use agentgate_engine::jose::es256::{Es256Signature, PublicKey, SignatureVerifier};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

/// True if `signature` (64 bytes r‖s) verifies `message` under `public_key` (65-byte SEC1 point).
pub fn verify_es256(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    public_key.len() == 65 && signature.len() == 64 && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key).verify(message, signature).is_ok()
}

/// aws-lc as the engine's signature verifier.
#[derive(Debug, Default, Clone, Copy)]
pub struct AwsLcVerifier;

impl SignatureVerifier for AwsLcVerifier {
    fn verify(&self, key: &PublicKey, message: &[u8], signature: &Es256Signature) -> bool {
        verify_es256(key.sec1(), message, signature.raw())
    }
}
