//! - `revocation` (revocation.rs): a revocation file, or a canonical revocation id. Input: text.
//! - `routing` (routing.rs): a route table and one request. Input: a flags byte (unused), then
//!   the routes as JSON (`[{method, path, action, resource}]`), the method and the raw path,
//!   NUL-separated.

use crate::harness::{Sections, deployment};
use agentgate_engine::revocation::{RevocationId, RevocationList};
use agentgate_engine::routing::{self, RouteSpec};
use serde_json::Value;

pub fn revocation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(id) = RevocationId::from_canonical(text) {
        assert_eq!(RevocationId::from_canonical(&id.canonical()).as_ref(), Ok(&id), "a canonical id does not round-trip");
    }
    let list = match RevocationList::parse(text) {
        Ok(list) => list,
        Err(e) => return assert!(!e.is_empty(), "a rejection without a reason"),
    };
    let mut entries: Vec<(String, Option<u64>)> = list.entries().map(|(id, e)| (id.to_owned(), e)).collect();
    entries.sort();
    assert!(list.len() <= entries.len(), "{} entries counted, {} held", list.len(), entries.len());
    assert_eq!(list.is_empty(), entries.is_empty());
    for (index, (id, expires)) in entries.iter().enumerate() {
        let parsed = RevocationId::from_canonical(id).unwrap_or_else(|e| panic!("the list holds an id that is not canonical: {e}"));
        assert_eq!(&parsed.canonical(), id, "a held id does not round-trip");
        // An entry is found while it is in force, and not after.
        for now in [0, expires.unwrap_or(0), u64::MAX] {
            let in_force = expires.is_none_or(|e| e > now);
            assert_eq!(list.lookup(std::slice::from_ref(id), now), in_force.then_some(0), "entry {index} at {now}");
        }
        let _ = (parsed.describe(), parsed.to_file_item(*expires));
    }
    // What `agentgate revoke` writes back reads as the same list.
    let written = list.to_file_json().to_string();
    let again = RevocationList::parse(&written).unwrap_or_else(|e| panic!("the list as written does not parse: {e}\n{written}"));
    let mut again_entries: Vec<(String, Option<u64>)> = again.entries().map(|(id, e)| (id.to_owned(), e)).collect();
    again_entries.sort();
    assert_eq!(again_entries, entries, "the list as written is another list:\n{written}");
    assert_eq!(again.len(), list.len());
    let _ = list.warnings(&deployment(0).trust);
}

pub fn routing(data: &[u8]) {
    let s = Sections::new(data);
    let Ok(specs) = serde_json::from_slice::<Vec<RouteSpec>>(s.bytes(0)) else { return };
    let Ok(routes) = routing::compile(&specs) else { return };
    let (method, path) = (s.text(1), s.text(2));
    let matched = routing::resolve(&routes, &method, &path);
    assert_eq!(matched, routing::resolve(&routes, &method, &path), "resolving twice gave two answers");
    let Some(m) = matched else { return };

    // The first route that matches alone is the one that answered.
    let index = (0..specs.len())
        .find(|i| routing::compile(&specs[*i..=*i]).ok().is_some_and(|r| routing::resolve(&r, &method, &path).is_some()))
        .expect("a match that no single route gives");
    let spec = &specs[index];
    assert!(spec.method == "*" || spec.method.to_ascii_uppercase() == method, "route {index} (`{}`) matched `{method}`", spec.method);
    assert_eq!((m.action.as_str(), m.resource_type.as_str()), (spec.action.as_str(), spec.resource.type_name.as_str()));

    // The path: every segment plain, whatever a server downstream would make of it.
    let raw = path.strip_prefix('/').expect("matched a path that does not start with `/`");
    let segments: Vec<&str> = if raw.is_empty() { Vec::new() } else { raw.split('/').collect() };
    let mut decoded = Vec::new();
    for segment in &segments {
        let once = percent_decode(segment).unwrap_or_else(|| panic!("matched the segment `{segment}`, which does not decode to UTF-8"));
        let before_params = once.split(';').next().unwrap_or_default();
        assert!(!matches!(once.as_str(), "." | "..") && !matches!(before_params, "." | ".."), "matched the dot segment `{segment}`");
        assert!(!once.contains(['/', '\\']), "matched the segment `{segment}`, a separator once decoded");
        assert!(!once.chars().any(char::is_control), "matched the segment `{segment}` with a control character");
        assert_eq!(percent_decode(&once).as_deref(), Some(once.as_str()), "matched the doubly encoded segment `{segment}`");
        decoded.push(once);
    }
    // The template: literals equal, captures non-empty, the count right.
    let template = spec.path.strip_prefix('/').unwrap_or_default();
    let mut parts: Vec<&str> = if template.is_empty() { Vec::new() } else { template.split('/').collect() };
    let open = parts.last() == Some(&"*");
    if open {
        parts.pop();
    }
    assert!(if open { decoded.len() >= parts.len() } else { decoded.len() == parts.len() }, "matched {} segments against `{}`", decoded.len(), spec.path);
    let mut captures = Vec::new();
    for (part, value) in parts.iter().zip(&decoded) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                assert!(!value.is_empty(), "an empty segment filled `{{{name}}}`");
                captures.push((name.to_owned(), value.clone()));
            }
            None => assert_eq!(part, value, "the literal `{part}` matched `{value}`"),
        }
    }
    // Substitution in one pass: a value is never read as a template.
    assert_eq!(m.resource_id, substitute(&spec.resource.id, &captures), "the resource id");
    match &m.entities {
        None => assert!(spec.resource.attrs.is_empty(), "a route with attributes gave no entities"),
        Some(entities) => {
            let uid = &entities[0]["uid"];
            assert_eq!((uid["type"].as_str(), uid["id"].as_str()), (Some(spec.resource.type_name.as_str()), Some(m.resource_id.as_str())));
            assert_eq!(entities.as_array().map(Vec::len), Some(1));
            let _ = Value::Null;
        }
    }
}

/// Percent-decoding of one segment to UTF-8 (RFC 3986 §2.1), written out.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `{name}` → its capture, left to right, never re-reading a substituted value; unknown names and
/// a lone `{` stay as written.
fn substitute(template: &str, captures: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match captures.iter().find(|(n, _)| n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}
