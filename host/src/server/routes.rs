//! The forward-auth route table: an HTTP method and path template → a Cedar action and resource.

use crate::config::{RouteEntry, RouteResource};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    method: String,
    segments: Vec<Segment>,
    /// The path ends with `*`: any further segments match.
    open_ended: bool,
    action: String,
    resource: RouteResource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

/// A matched route: what to ask the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// Cedar action.
    pub action: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: String,
    /// Cedar entities (the resource with its attributes), when the route declares attributes.
    pub entities: Option<Value>,
}

/// Compiles the configured routes; a malformed template is an error naming it.
pub fn compile(entries: &[RouteEntry]) -> Result<Vec<Route>, String> {
    entries.iter().map(Route::new).collect()
}

impl Route {
    fn new(entry: &RouteEntry) -> Result<Self, String> {
        let Some(path) = entry.path.strip_prefix('/') else {
            return Err(format!("route `{}`: the path must start with `/`", entry.path));
        };
        let mut parts: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('/').collect() };
        let open_ended = parts.last() == Some(&"*");
        if open_ended {
            parts.pop();
        }
        let segments = parts
            .iter()
            .map(|part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !name.is_empty() => Ok(Segment::Capture(name.to_owned())),
                Some(_) => Err(format!("route `{}`: empty capture `{{}}`", entry.path)),
                None if part.contains(['{', '}', '*']) => Err(format!("route `{}`: segment `{part}` mixes text and a capture", entry.path)),
                None => Ok(Segment::Literal((*part).to_owned())),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Route { method: entry.method.to_ascii_uppercase(), segments, open_ended, action: entry.action.clone(), resource: entry.resource.clone() })
    }

    /// Matches a request; `path` is the path of the original URI (no query).
    fn matches(&self, method: &str, path: &str) -> Option<Vec<(String, String)>> {
        if self.method != "*" && self.method != method {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        if parts.len() < self.segments.len() || (!self.open_ended && parts.len() != self.segments.len()) {
            return None;
        }
        let mut captures = Vec::new();
        for (segment, part) in self.segments.iter().zip(&parts) {
            let decoded = percent_decode_str(part).decode_utf8().ok()?;
            match segment {
                Segment::Literal(lit) if *lit == decoded => {}
                Segment::Literal(_) => return None,
                // An empty segment (`//`) never fills a capture.
                Segment::Capture(_) if decoded.is_empty() => return None,
                Segment::Capture(name) => captures.push((name.clone(), decoded.into_owned())),
            }
        }
        Some(captures)
    }
}

/// The first route that matches, with captures substituted.
pub fn resolve(routes: &[Route], method: &str, path: &str) -> Option<Matched> {
    routes.iter().find_map(|route| {
        let captures = route.matches(method, path)?;
        let id = substitute(&route.resource.id, &captures);
        let entities = (!route.resource.attrs.is_empty()).then(|| {
            let attrs: Map<String, Value> = route.resource.attrs.iter().map(|(k, v)| (k.clone(), attr_value(v, &captures))).collect();
            json!([{ "uid": { "type": route.resource.type_name, "id": id }, "attrs": attrs, "parents": [] }])
        });
        Some(Matched { action: route.action.clone(), resource_type: route.resource.type_name.clone(), resource_id: id, entities })
    })
}

fn substitute(template: &str, captures: &[(String, String)]) -> String {
    captures.iter().fold(template.to_owned(), |acc, (name, value)| acc.replace(&format!("{{{name}}}"), value))
}

/// A TOML attribute as Cedar entity JSON: `{type, id}` tables become entity references.
fn attr_value(value: &toml::Value, captures: &[(String, String)]) -> Value {
    match value {
        toml::Value::String(s) => Value::String(substitute(s, captures)),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Array(items) => Value::Array(items.iter().map(|v| attr_value(v, captures)).collect()),
        toml::Value::Table(t) => match (t.get("type"), t.get("id"), t.len()) {
            (Some(toml::Value::String(ty)), Some(toml::Value::String(id)), 2) => {
                json!({ "__entity": { "type": substitute(ty, captures), "id": substitute(id, captures) } })
            }
            _ => Value::Object(t.iter().map(|(k, v)| (k.clone(), attr_value(v, captures))).collect()),
        },
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> RouteEntry {
        let mut attrs = toml::Table::new();
        let mut owner = toml::Table::new();
        owner.insert("type".into(), "User".into());
        owner.insert("id".into(), "{owner}".into());
        attrs.insert("owner".into(), toml::Value::Table(owner));
        RouteEntry {
            method: method.into(),
            path: path.into(),
            action: "mail:read".into(),
            resource: RouteResource { type_name: "Mailbox".into(), id: "{owner}".into(), attrs },
        }
    }

    #[test]
    fn matches_templates_and_builds_entities() {
        let routes = compile(&[route("GET", "/mailboxes/{owner}/messages"), route("*", "/files/*")]).unwrap();
        let m = resolve(&routes, "GET", "/mailboxes/al%69ce/messages").unwrap();
        assert_eq!((m.action.as_str(), m.resource_type.as_str(), m.resource_id.as_str()), ("mail:read", "Mailbox", "alice"));
        assert_eq!(m.entities.unwrap()[0]["attrs"]["owner"], json!({"__entity": {"type": "User", "id": "alice"}}));
        assert!(resolve(&routes, "POST", "/mailboxes/alice/messages").is_none());
        assert!(resolve(&routes, "GET", "/mailboxes//messages").is_none());
        assert!(resolve(&routes, "GET", "/mailboxes/alice/messages/1").is_none());
        assert!(resolve(&routes, "DELETE", "/files/a/b/c").is_some());
    }

    #[test]
    fn rejects_malformed_templates() {
        assert!(compile(&[route("GET", "mailboxes")]).is_err());
        assert!(compile(&[route("GET", "/a/{}")]).is_err());
        assert!(compile(&[route("GET", "/a/x{y}")]).is_err());
    }
}
