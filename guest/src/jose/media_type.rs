//! `typ` header comparison (RFC 7515 §4.1.9): media types are case-insensitive, and a value
//! without `/` means `application/<value>`.

/// True if the `typ` value names the media type `application/<expected>`.
pub fn typ_matches(typ: &str, expected: &str) -> bool {
    let bare = match typ.split_once('/') {
        Some((top, rest)) if top.eq_ignore_ascii_case("application") => rest,
        Some(_) => return false,
        None => typ,
    };
    bare.eq_ignore_ascii_case(expected)
}

#[cfg(test)]
mod tests {
    use super::typ_matches;

    #[test]
    fn compares_media_types_case_insensitively() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("at+JWT", "at+jwt"));
        assert!(typ_matches("application/at+jwt", "at+jwt"));
        assert!(typ_matches("Application/AT+JWT", "at+jwt"));
        assert!(!typ_matches("JWT", "at+jwt"));
        assert!(!typ_matches("dpop+jwt", "at+jwt"));
        assert!(!typ_matches("text/at+jwt", "at+jwt"));
        assert!(!typ_matches("application/at+jwt; x=1", "at+jwt"));
        assert!(!typ_matches("", "at+jwt"));
    }
}
