//! The targets, by layer: JOSE parsing; the credentials one by one (each signed by the harness);
//! the revocation list and the route table; the engine pipeline natively and in the component;
//! the policy index against Cedar; the host's configuration loader and HTTP mappings.

pub mod credentials;
pub mod host;
pub mod jose;
pub mod lists;
pub mod pipeline;
pub mod policies;

use agentgate_engine::jose::es256::RustCryptoVerifier;
use std::sync::OnceLock;

/// The engine's own ES256 verifier (RustCrypto, with its learned key tables), shared.
pub(crate) fn verifier() -> &'static RustCryptoVerifier {
    static VERIFIER: OnceLock<RustCryptoVerifier> = OnceLock::new();
    VERIFIER.get_or_init(RustCryptoVerifier::new)
}

/// SHA-256 of `data`: a stable per-input coin for checks too costly to run on every input.
pub(crate) fn coin(data: &[u8]) -> u8 {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)[0]
}
