//! Strict base64url (RFC 7515 §2): URL-safe alphabet, no padding, no whitespace, no stray bits.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes `text`, rejecting padding, `+`/`/`, whitespace and non-canonical trailing bits.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

/// Encodes `bytes` without padding.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_padding_other_alphabets_and_stray_bits() {
        assert_eq!(decode("YWI").ok(), Some(b"ab".to_vec()));
        assert!(decode("YWI=").is_err(), "padding");
        assert!(decode("YW+").is_err(), "standard alphabet");
        assert!(decode("YW/").is_err(), "standard alphabet");
        assert!(decode("YW I").is_err(), "whitespace");
        assert!(decode("YWJ").is_err(), "non-zero trailing bits");
        assert!(decode("Y").is_err(), "impossible length");
    }
}
