//! Stateless DPoP server nonces (RFC 9449 §8, §9): `base64url(step ‖ HMAC-SHA256(secret, step))`
//! for a time step, so every instance on every node issues and accepts the same nonces without
//! shared state. The current and the previous step are accepted.

use crate::jose::base64url;
use crate::settings::NonceSettings;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks nonces.
#[derive(Clone)]
pub struct NonceIssuer {
    mac: HmacSha256,
    step_secs: u64,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer").field("step_secs", &self.step_secs).finish_non_exhaustive()
    }
}

impl NonceIssuer {
    /// A nonce issuer for the settings.
    pub fn new(settings: &NonceSettings) -> Result<Self, String> {
        let mac = HmacSha256::new_from_slice(settings.secret.as_bytes()).map_err(|_| "unusable `dpop.nonce` secret".to_owned())?;
        Ok(NonceIssuer { mac, step_secs: settings.step_secs.max(1) })
    }

    /// The nonce for the time step containing `now`.
    pub fn current(&self, now: i64) -> String {
        self.nonce_for(self.step(now))
    }

    /// True if `nonce` is this or the previous step's nonce.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let step = self.step(now);
        // Comparing the full encodings: a mismatch in step or tag fails alike.
        [step, step.saturating_sub(1)].iter().any(|s| constant_time_eq(self.nonce_for(*s).as_bytes(), nonce.as_bytes()))
    }

    fn step(&self, now: i64) -> u64 {
        u64::try_from(now).unwrap_or(0) / self.step_secs
    }

    fn nonce_for(&self, step: u64) -> String {
        let mut mac = self.mac.clone();
        mac.update(&step.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        let mut bytes = Vec::with_capacity(8 + 16);
        bytes.extend_from_slice(&step.to_be_bytes());
        bytes.extend_from_slice(tag.get(..16).unwrap_or(&[]));
        base64url::encode(&bytes)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_current_and_previous_step_only() {
        let issuer = NonceIssuer::new(&NonceSettings { secret: "0123456789abcdef0123456789abcdef".into(), step_secs: 60 });
        assert!(issuer.is_ok(), "issuer");
        let Ok(issuer) = issuer else { return };
        let n = issuer.current(6000);
        assert!(issuer.accepts(&n, 6000));
        assert!(issuer.accepts(&n, 6059));
        assert!(issuer.accepts(&n, 6119), "previous step still accepted");
        assert!(!issuer.accepts(&n, 6120), "two steps later");
        assert!(!issuer.accepts(&n, 5999), "a nonce from the future");
        assert!(!issuer.accepts("x", 6000));
        let other = NonceIssuer::new(&NonceSettings { secret: "another secret of thirty-two bytes!!".into(), step_secs: 60 });
        assert!(other.is_ok_and(|o| !o.accepts(&n, 6000)), "other secret");
    }
}
