//! The digests a receipt binds, in forms anyone can recompute (docs/receipts.md):
//!
//! - **policies**: SHA-256 over the `*.cedar` files sorted by file name (bytewise), each as
//!   `u32 BE name length ‖ name ‖ u64 BE content length ‖ content`. Only the file name counts,
//!   not the directory, so `agentgate receipt verify --policies dir` checks a copy anywhere.
//! - **schema**: SHA-256 of the schema file's bytes.
//! - **settings**: SHA-256 of the RFC 8785 (JCS) form of the engine settings as JSON, without the
//!   DPoP nonce secret (a digest must not let anyone test guesses of a secret).
//! - **config** (the one content hash): SHA-256 of the JCS form of
//!   `{"policies": …, "schema": …, "settings": …}`.
//! - **request**: SHA-256 of the JCS form of `{"method", "htu", "action", "resource": {"type",
//!   "id"}, "context", "entities"}` (and `"now"` when the call pinned its time). Never a credential.
//!
//! Every digest is base64url without padding, as RFC 7638 thumbprints and DPoP `ath` are.

use agentgate_engine::jose::base64url;
use agentgate_engine::{CheckRequest, EngineConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// The digests of the configuration a decision was made under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDigests {
    /// The content hash over the three below.
    pub digest: String,
    /// The policy files.
    pub policies: String,
    /// The schema.
    pub schema: String,
    /// The engine settings.
    pub settings: String,
}

impl ConfigDigests {
    /// The digests of what `config` puts in force.
    pub fn of(config: &EngineConfig) -> Result<Self, String> {
        let files: Vec<(&str, &[u8])> = config.policies.iter().map(|p| (file_name(&p.name), p.text.as_bytes())).collect();
        let policies = policies_digest(files);
        let schema = sha256(config.schema.text.as_bytes());
        let settings = settings_digest(&config.settings_json)?;
        Ok(Self::from_parts(policies, schema, settings))
    }

    /// The content hash of three part digests.
    pub fn from_parts(policies: String, schema: String, settings: String) -> Self {
        let parts = json!({ "policies": policies, "schema": schema, "settings": settings });
        ConfigDigests { digest: sha256(&canonical(&parts)), policies, schema, settings }
    }
}

/// The file name of a source named by its path (`policies/mail/mail.cedar` → `mail.cedar`).
fn file_name(name: &str) -> &str {
    Path::new(name).file_name().and_then(|n| n.to_str()).unwrap_or(name)
}

/// The policies digest of `(file name, contents)` pairs, in any order.
pub fn policies_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hash = Sha256::new();
    for (name, contents) in files {
        // Lengths first, so no choice of names and contents can shift a boundary.
        hash.update(u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
        hash.update(name.as_bytes());
        hash.update(u64::try_from(contents.len()).unwrap_or(u64::MAX).to_be_bytes());
        hash.update(contents);
    }
    base64url::encode(&hash.finalize())
}

/// The policies and schema digests of a policy directory as `agentgate serve` reads it: every
/// `*.cedar` file, and `schema.cedarschema`.
pub fn policy_dir_digests(dir: &Path) -> Result<(String, String), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|ext| ext == "cedar") {
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| format!("{}: a file name that is not UTF-8", path.display()))?.to_owned();
            let contents = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.push((name, contents));
        }
    }
    if files.is_empty() {
        return Err(format!("{}: no `*.cedar` policy files", dir.display()));
    }
    let schema_path = dir.join(crate::config::SCHEMA_FILE);
    let schema = std::fs::read(&schema_path).map_err(|e| format!("{}: {e}", schema_path.display()))?;
    Ok((policies_digest(files.iter().map(|(n, c)| (n.as_str(), c.as_slice()))), sha256(&schema)))
}

/// The settings digest: JCS of the settings without the nonce secret.
fn settings_digest(settings_json: &str) -> Result<String, String> {
    let mut settings: Value = serde_json::from_str(settings_json).map_err(|e| format!("the engine settings are not JSON: {e}"))?;
    if let Some(nonce) = settings.pointer_mut("/dpop/nonce").and_then(Value::as_object_mut) {
        nonce.remove("secret");
    }
    Ok(sha256(&canonical(&settings)))
}

/// The request digest of a call as the engine was asked it.
pub fn request_digest(request: &CheckRequest) -> String {
    sha256(&canonical(&request_document(request)))
}

/// The JSON document the request digest is taken over.
pub fn request_document(request: &CheckRequest) -> Value {
    // A caller's `context`/`entities` that is not JSON was denied as such; it is bound as the
    // string it was, so it still differs from every well-formed request.
    let json_or_text = |text: &Option<String>, absent: Value| match text {
        None => absent,
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.clone())),
    };
    let mut doc = json!({
        "method": request.http.as_ref().map(|h| h.method.clone()),
        "htu": request.http.as_ref().map(|h| htu(&h.uri)),
        "action": request.action,
        "resource": { "type": request.resource.type_name, "id": request.resource.id },
        "context": json_or_text(&request.context_json, json!({})),
        "entities": json_or_text(&request.entities_json, json!([])),
    });
    if let (Some(now), Some(object)) = (request.now, doc.as_object_mut()) {
        object.insert("now".into(), json!(now));
    }
    doc
}

/// The URI without query and fragment, as DPoP's `htu` compares it (RFC 9449 §4.3).
fn htu(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or(uri)
}

/// RFC 8785 (JCS) canonical JSON: members sorted by their names as UTF-16 code units (§3.2.3),
/// no whitespace, strings escaped as §3.2.2.2 says (serde_json's escaping is exactly that), and
/// numbers as ECMAScript prints the IEEE 754 double (§3.2.2.3): integers up to 2^53 as written,
/// everything else through `ryu-js`. Written here rather than through a JCS crate because a
/// receipt takes one per decision (see docs/performance.md, "Receipts"); the unit tests hold it
/// to `serde_json_canonicalizer` on generated documents.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_canonical(member, out);
            }
            out.push(b'}');
        }
    }
}

/// The largest integer an IEEE 754 double holds exactly, and every smaller one.
const EXACT_INTEGERS: u64 = 1 << 53;

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing to a `Vec` cannot fail.
    let _ = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) if u <= EXACT_INTEGERS => write!(out, "{u}"),
        (None, Some(i)) if i.unsigned_abs() <= EXACT_INTEGERS => write!(out, "{i}"),
        // A float, or an integer a double only approximates: as ECMAScript prints the double.
        _ => out.write_all(ryu_js::Buffer::new().format(n.as_f64().unwrap_or(0.0)).as_bytes()),
    };
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Serializing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// base64url SHA-256.
pub fn sha256(bytes: &[u8]) -> String {
    base64url::encode(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use agentgate_engine::{EntityRef, HttpRequest};

    fn request() -> CheckRequest {
        CheckRequest {
            http: Some(HttpRequest { method: "GET".into(), uri: "https://api.example.com/mail?page=2#top".into() }),
            action: "mail:read".into(),
            resource: EntityRef { type_name: "Mailbox".into(), id: "alice".into() },
            context_json: Some(r#"{"b": 1, "a": [true, null]}"#.into()),
            entities_json: None,
            credentials: agentgate_engine::Credentials::default(),
            now: None,
        }
    }

    #[test]
    fn the_request_document_is_canonical_and_has_no_credentials() {
        let mut r = request();
        r.credentials.authorization = Some("DPoP eyJ.secret.token".into());
        r.credentials.dpop = Some("eyJ.secret.proof".into());
        let text = String::from_utf8(canonical(&request_document(&r))).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"action":"mail:read","context":{"a":[true,null],"b":1},"entities":[],"htu":"https://api.example.com/mail","method":"GET","resource":{"id":"alice","type":"Mailbox"}}"#
        );
        // Member order and whitespace of the caller's JSON do not matter; a value does.
        let mut reordered = request();
        reordered.context_json = Some(r#"{"a":[true,null],"b":1}"#.into());
        assert_eq!(request_digest(&reordered), request_digest(&r));
        let mut changed = request();
        changed.context_json = Some(r#"{"a":[true,null],"b":2}"#.into());
        assert_ne!(request_digest(&changed), request_digest(&r));
    }

    #[test]
    fn malformed_context_is_bound_as_text_and_a_pinned_time_is_bound() {
        let mut r = request();
        r.context_json = Some("{not json".into());
        assert_eq!(request_document(&r)["context"], json!("{not json"));
        let mut pinned = request();
        pinned.now = Some(1_700_000_000);
        assert_eq!(request_document(&pinned)["now"], json!(1_700_000_000));
        assert_ne!(request_digest(&pinned), request_digest(&request()));
    }

    #[test]
    fn the_policies_digest_depends_on_names_and_contents_not_on_order() {
        let a = policies_digest([("a.cedar", b"permit(principal, action, resource);".as_slice()), ("b.cedar", b"".as_slice())]);
        let swapped = policies_digest([("b.cedar", b"".as_slice()), ("a.cedar", b"permit(principal, action, resource);".as_slice())]);
        assert_eq!(a, swapped);
        let renamed = policies_digest([("c.cedar", b"permit(principal, action, resource);".as_slice()), ("b.cedar", b"".as_slice())]);
        assert_ne!(a, renamed);
        // A byte moved from one file's end to the next file's name is a different set.
        let shifted = policies_digest([("a.cedar", b"permit(principal, action, resource)".as_slice()), ("b.cedar", b";".as_slice())]);
        assert_ne!(a, shifted);
    }

    /// Our JCS writer against `serde_json_canonicalizer` on generated documents (integers within
    /// 2^53, where that crate and RFC 8785 agree), and against RFC 8785's own examples.
    #[test]
    fn canonical_json_is_rfc_8785() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let names = ["a", "b", "", "\u{e000}", "\u{1f600}", "A", "ab", "\u{80}", "\n", "\"", "\u{7f}", "\u{1}", "€", "Z"];
        fn generate(next: &mut impl FnMut() -> u64, names: &[&str], depth: u32) -> Value {
            match next() % if depth > 3 { 5 } else { 7 } {
                0 => Value::Null,
                1 => Value::Bool(next().is_multiple_of(2)),
                2 => json!((next() % (1 << 54)) as i64 - (1 << 53)),
                3 => json!(f64::from_bits(next() >> 2) / 7.0).as_f64().map_or(Value::Null, |f| json!(f)),
                4 => json!(names[(next() % names.len() as u64) as usize].repeat((next() % 3) as usize)),
                5 => Value::Array((0..next() % 4).map(|_| generate(next, names, depth + 1)).collect()),
                _ => Value::Object(
                    (0..next() % 5).map(|_| (names[(next() % names.len() as u64) as usize].to_owned(), generate(next, names, depth + 1))).collect(),
                ),
            }
        }
        for _ in 0..2000 {
            let doc = generate(&mut next, &names, 0);
            assert_eq!(String::from_utf8(canonical(&doc)).unwrap(), serde_json_canonicalizer::to_string(&doc).unwrap(), "{doc}");
        }
        // RFC 8785 §3.2.2.3 and Appendix B: numbers as ECMAScript prints the double.
        for (number, text) in [
            ("1e21", "1e+21"),
            ("1e-7", "1e-7"),
            ("-0.0", "0"),
            ("0.000001", "0.000001"),
            ("333333333.33333329", "333333333.3333333"),
            ("9007199254740993", "9007199254740992"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
        ] {
            let value: Value = serde_json::from_str(number).unwrap();
            assert_eq!(String::from_utf8(canonical(&value)).unwrap(), text, "{number}");
        }
        // §3.2.3: sorted by UTF-16 code units: U+1F600 (D83D DE00) before U+E000.
        let doc = json!({"\u{e000}": 1, "\u{1f600}": 2, "b": 3, "a": {"d": [1, "x\ny"], "c": null}});
        assert_eq!(String::from_utf8(canonical(&doc)).unwrap(), "{\"a\":{\"c\":null,\"d\":[1,\"x\\ny\"]},\"b\":3,\"\u{1f600}\":2,\"\u{e000}\":1}");
    }

    #[test]
    fn the_settings_digest_leaves_the_nonce_secret_out() {
        let with = |secret: &str| format!(r#"{{"audiences":["x"],"dpop":{{"mode":"required","nonce":{{"secret":"{secret}","step_secs":60}}}}}}"#);
        let one = settings_digest(&with("s3cret-one-s3cret-one-s3cret-one-")).unwrap_or_default();
        let two = settings_digest(&with("another-secret-another-secret-xx")).unwrap_or_default();
        assert_eq!(one, two);
        assert_ne!(one, settings_digest(r#"{"audiences":["x"]}"#).unwrap_or_default());
        assert!(settings_digest("not json").is_err());
    }
}
