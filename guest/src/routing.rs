//! The route table: an HTTP method and path template → a Cedar action and resource. Shared by
//! every host that maps plain HTTP calls to checks (`agentgate serve`'s forward-auth, the wasi:http
//! gateway).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One route as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// HTTP method, or `*` for any.
    pub method: String,
    /// Path template: `/mailboxes/{owner}/messages`; `{name}` captures one segment, a final `*`
    /// matches the rest.
    pub path: String,
    /// Cedar action.
    pub action: String,
    /// The resource, with captures substituted.
    pub resource: ResourceSpec,
}

/// The resource of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Entity type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Entity id template, e.g. `{owner}`.
    pub id: String,
    /// Attributes of the resource entity; strings may use captures and `{type, id}` objects are
    /// entity references.
    #[serde(default)]
    pub attrs: Map<String, Value>,
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    method: String,
    segments: Vec<Segment>,
    /// The path ends with `*`: any further segments match.
    open_ended: bool,
    action: String,
    resource: ResourceSpec,
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

/// Compiles routes; a malformed template is an error naming it.
pub fn compile(specs: &[RouteSpec]) -> Result<Vec<Route>, String> {
    specs.iter().map(Route::new).collect()
}

impl Route {
    fn new(spec: &RouteSpec) -> Result<Self, String> {
        let Some(path) = spec.path.strip_prefix('/') else {
            return Err(format!("route `{}`: the path must start with `/`", spec.path));
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
                Some(_) => Err(format!("route `{}`: empty capture `{{}}`", spec.path)),
                None if part.contains(['{', '}', '*']) => Err(format!("route `{}`: segment `{part}` mixes text and a capture", spec.path)),
                None => Ok(Segment::Literal((*part).to_owned())),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Route { method: spec.method.to_ascii_uppercase(), segments, open_ended, action: spec.action.clone(), resource: spec.resource.clone() })
    }

    /// Matches a request; `path` is the path of the original URI (no query).
    fn matches(&self, method: &str, path: &str) -> Option<Vec<(String, String)>> {
        if self.method != "*" && self.method != method {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        if !parts.iter().all(|p| segment_is_plain(p)) {
            return None;
        }
        if parts.len() < self.segments.len() || (!self.open_ended && parts.len() != self.segments.len()) {
            return None;
        }
        let mut captures = Vec::new();
        for (segment, part) in self.segments.iter().zip(&parts) {
            let decoded = percent_decode(part)?;
            match segment {
                Segment::Literal(lit) if *lit == decoded => {}
                Segment::Literal(_) => return None,
                // An empty segment (`//`) never fills a capture.
                Segment::Capture(_) if decoded.is_empty() => return None,
                Segment::Capture(name) => captures.push((name.clone(), decoded)),
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

/// Replaces each `{name}` of `template` with its capture, in one pass over the template: a
/// capture's value is never read as a template, so a value holding `{other}` stays literal and the
/// resource authorized is the one the upstream receives. Braces that name no capture stay as
/// written.
fn substitute(template: &str, captures: &[(String, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('{') {
        out.push_str(before);
        match after.split_once('}') {
            Some((name, tail)) => {
                match captures.iter().find(|(n, _)| n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = tail;
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

/// Whether a raw path segment may be matched at all. Servers and frameworks disagree on what a
/// segment means, and an upstream that resolves one as a parent directory serves a path other than
/// the one authorized, so anything that some server reads as a dot segment or a separator matches
/// no route (docs/proxies.md §1.5):
/// - `.` and `..`, raw or percent-encoded once (RFC 3986 §5.2.4);
/// - a segment that is `.` or `..` before a `;` (`..;`, `.;x`: Tomcat and others strip path
///   parameters after resolving dot segments);
/// - `\` raw or encoded (`%5C`): a path separator on Windows servers and for some normalizers;
/// - an encoded `/` (`%2F`): decoded into a separator by some servers;
/// - double encoding (`%252e`, any `%25` followed by two hex digits): decoded twice by some;
/// - control characters, and bytes that do not decode to UTF-8.
fn segment_is_plain(raw: &str) -> bool {
    let Some(decoded) = percent_decode(raw) else { return false };
    let before_params = decoded.split(';').next().unwrap_or("");
    let dots = matches!(decoded.as_str(), "." | "..") || matches!(before_params, "." | "..");
    let separator = decoded.contains(['/', '\\']);
    let double_encoded = percent_decode(&decoded).is_none_or(|twice| twice != decoded);
    let control = decoded.chars().any(char::is_control);
    !(dots || separator || double_encoded || control)
}

/// An attribute as Cedar entity JSON: `{type, id}` objects become entity references.
fn attr_value(value: &Value, captures: &[(String, String)]) -> Value {
    match value {
        Value::String(s) => Value::String(substitute(s, captures)),
        Value::Array(items) => Value::Array(items.iter().map(|v| attr_value(v, captures)).collect()),
        Value::Object(o) => match (o.get("type"), o.get("id"), o.len()) {
            (Some(Value::String(ty)), Some(Value::String(id)), 2) => {
                json!({ "__entity": { "type": substitute(ty, captures), "id": substitute(id, captures) } })
            }
            _ => Value::Object(o.iter().map(|(k, v)| (k.clone(), attr_value(v, captures))).collect()),
        },
        other => other.clone(),
    }
}

/// Percent-decodes one path segment; `None` when the result is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> RouteSpec {
        RouteSpec {
            method: method.into(),
            path: path.into(),
            action: "mail:read".into(),
            resource: ResourceSpec {
                type_name: "Mailbox".into(),
                id: "{owner}".into(),
                attrs: serde_json::from_value(json!({"owner": {"type": "User", "id": "{owner}"}})).unwrap(),
            },
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
        assert!(resolve(&routes, "GET", "/files/../admin").is_none(), "dot segments never match");
        assert!(resolve(&routes, "GET", "/files/%2e%2E/admin").is_none(), "encoded dot segments never match");
        assert!(resolve(&routes, "GET", "/files/./x").is_none());
    }

    /// Finding 3 of the first outside review: every variant some server resolves as a parent
    /// directory or a separator matches no route, open-ended ones included.
    #[test]
    fn dot_segment_and_separator_variants_match_nothing() {
        let routes = compile(&[route("*", "/files/*"), route("GET", "/mailboxes/{owner}/messages")]).unwrap();
        for path in [
            "/files/..;/admin",
            "/files/..;jsessionid=1/admin",
            "/files/.;/x",
            "/files/..\\admin",
            "/files/..%5Cadmin",
            "/files/..%5cadmin",
            "/files/..%2Fadmin",
            "/files/..%2fadmin",
            "/files/%2e%2e%2fadmin",
            "/files/%252e%252e/admin",
            "/files/%252E%252E/admin",
            "/files/%25%32%65%25%32%65/admin",
            "/files/a%2Fb",
            "/files/a%00b",
            "/files/a%0Ab",
            "/files/%ff",
            "/mailboxes/..;/messages",
            "/mailboxes/alice%2F..%2Fbob/messages",
        ] {
            assert!(resolve(&routes, "GET", path).is_none(), "{path} must not match");
        }
        // Ordinary segments still match, parameters included.
        assert!(resolve(&routes, "GET", "/files/report;v=2.pdf").is_some());
        assert!(resolve(&routes, "GET", "/files/a.b/..c/d..").is_some(), "dots inside a name are not dot segments");
        assert!(resolve(&routes, "GET", "/files/100%25").is_some(), "a literal percent sign is not double encoding");
    }

    /// Finding 2 of the first outside review: captures are substituted in one pass.
    #[test]
    fn a_capture_value_is_never_expanded_again() {
        let spec = RouteSpec {
            method: "GET".into(),
            path: "/orgs/{org}/repos/{repo}".into(),
            action: "repo:read".into(),
            resource: ResourceSpec {
                type_name: "Repo".into(),
                id: "{org}/{repo}".into(),
                attrs: serde_json::from_value(json!({"org": {"type": "Org", "id": "{org}"}, "label": "{repo} of {org} {unknown}"})).unwrap(),
            },
        };
        let routes = compile(&[spec]).unwrap();
        let m = resolve(&routes, "GET", "/orgs/%7Brepo%7D/repos/secret").unwrap();
        assert_eq!(m.resource_id, "{repo}/secret", "the org capture holds the text `{{repo}}`, which stays literal");
        let attrs = &m.entities.unwrap()[0]["attrs"];
        assert_eq!(attrs["org"], json!({"__entity": {"type": "Org", "id": "{repo}"}}));
        assert_eq!(attrs["label"], json!("secret of {repo} {unknown}"));
        assert_eq!(substitute("{a}{b}{", &[("a".into(), "{b}".into()), ("b".into(), "x".into())]), "{b}x{");
    }

    #[test]
    fn rejects_malformed_templates() {
        assert!(compile(&[route("GET", "mailboxes")]).is_err());
        assert!(compile(&[route("GET", "/a/{}")]).is_err());
        assert!(compile(&[route("GET", "/a/x{y}")]).is_err());
    }
}
