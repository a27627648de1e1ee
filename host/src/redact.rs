//! URLs as agentgate shows them: in logs, `/healthz` and errors, without what may be a credential
//! (user info, and the query, where tokens such as `access_token=` travel).

/// `url` with user info and query removed (`https://as.example/jwks?…`); text that is not a URL
/// is shown as `<not a URL>` rather than echoed.
pub fn url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) => {
            let had_query = parsed.query().is_some();
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            let mut shown = parsed.to_string();
            if had_query {
                shown.push_str("?…");
            }
            shown
        }
        Err(_) => "<not a URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_never_show() {
        assert_eq!(super::url("https://user:secret@as.example/jwks?access_token=abc#x"), "https://as.example/jwks?…");
        assert_eq!(super::url("https://as.example/status/1"), "https://as.example/status/1");
        assert_eq!(super::url("not a url with secret"), "<not a URL>");
    }
}
