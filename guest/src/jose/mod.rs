//! JOSE for ES256 only: strict compact JWS parsing, P-256 JWKs and signature verification.

pub mod base64url;
pub mod es256;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod media_type;
pub mod precomputed;
