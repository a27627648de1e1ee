//! Reads attribute types out of a Cedar schema (via its JSON form), resolving common types, so the
//! engine can see which context attributes each action declares.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A Cedar type, as far as the engine needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CedarType {
    /// `Bool`.
    Bool,
    /// `Long`.
    Long,
    /// `String`.
    String,
    /// `Set<T>`.
    Set(Box<CedarType>),
    /// A record with its attributes (name → type, required).
    Record(BTreeMap<String, (CedarType, bool)>),
    /// An entity type, by (possibly qualified) name.
    Entity(String),
    /// An extension type (`ipaddr`, `decimal`, `datetime`, `duration`).
    Extension(String),
}

impl std::fmt::Display for CedarType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CedarType::Bool => f.write_str("Bool"),
            CedarType::Long => f.write_str("Long"),
            CedarType::String => f.write_str("String"),
            CedarType::Set(t) => write!(f, "Set<{t}>"),
            CedarType::Record(attrs) => {
                f.write_str("{ ")?;
                for (i, (name, (t, required))) in attrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}{}: {t}", if *required { "" } else { "?" })?;
                }
                f.write_str(" }")
            }
            CedarType::Entity(name) | CedarType::Extension(name) => f.write_str(name),
        }
    }
}

/// The schema in JSON form, with lookups for common types.
#[derive(Debug)]
pub struct SchemaJson {
    namespaces: Map<String, Value>,
}

/// Guards against cyclic common types (Cedar rejects them, but this code must not rely on it).
const MAX_TYPE_DEPTH: usize = 32;

impl SchemaJson {
    /// Wraps the JSON form of a schema (`{"<namespace>": {"commonTypes", "entityTypes", "actions"}}`).
    pub fn new(json: Value) -> Result<Self, String> {
        match json {
            Value::Object(namespaces) => Ok(SchemaJson { namespaces }),
            _ => Err("schema JSON is not an object".into()),
        }
    }

    /// The declared context type of action `name` in the empty namespace; `None` if the action is
    /// not declared, an empty record if it declares no context.
    pub fn action_context(&self, name: &str) -> Result<Option<CedarType>, String> {
        let Some(action) = self.namespace("").and_then(|ns| ns.get("actions")).and_then(|a| a.get(name)) else {
            return Ok(None);
        };
        match action.get("appliesTo").and_then(|a| a.get("context")) {
            Some(context) => self.resolve(context, "", 0).map(Some),
            None => Ok(Some(CedarType::Record(BTreeMap::new()))),
        }
    }

    /// True if any namespace declares an enumerated entity type (`entity Color enum [...]`).
    pub fn has_enum_entities(&self) -> bool {
        self.namespaces.values().any(|ns| ns.get("entityTypes").and_then(Value::as_object).is_some_and(|types| types.values().any(|t| t.get("enum").is_some())))
    }

    /// Names of the actions declared in the empty namespace.
    pub fn action_names(&self) -> Vec<String> {
        self.namespace("").and_then(|ns| ns.get("actions")).and_then(Value::as_object).map(|a| a.keys().cloned().collect()).unwrap_or_default()
    }

    fn namespace(&self, name: &str) -> Option<&Value> {
        self.namespaces.get(name)
    }

    fn resolve(&self, ty: &Value, ns: &str, depth: usize) -> Result<CedarType, String> {
        if depth > MAX_TYPE_DEPTH {
            return Err("schema types nest too deeply".into());
        }
        let kind = ty.get("type").and_then(Value::as_str).ok_or("schema type without `type`")?;
        match kind {
            "Boolean" | "Bool" => Ok(CedarType::Bool),
            "Long" => Ok(CedarType::Long),
            "String" => Ok(CedarType::String),
            "Set" => {
                let element = ty.get("element").ok_or("`Set` without `element`")?;
                Ok(CedarType::Set(Box::new(self.resolve(element, ns, depth + 1)?)))
            }
            "Record" => {
                let mut attrs = BTreeMap::new();
                if let Some(Value::Object(map)) = ty.get("attributes") {
                    for (name, attr) in map {
                        let required = attr.get("required").and_then(Value::as_bool).unwrap_or(true);
                        attrs.insert(name.clone(), (self.resolve(attr, ns, depth + 1)?, required));
                    }
                }
                Ok(CedarType::Record(attrs))
            }
            "Entity" => Ok(CedarType::Entity(name_of(ty)?.to_owned())),
            "Extension" => Ok(CedarType::Extension(name_of(ty)?.to_owned())),
            "EntityOrCommon" => self.resolve_name(name_of(ty)?, ns, depth),
            other => self.resolve_name(other, ns, depth),
        }
    }

    /// Resolves a type name as Cedar does: a common type of the current namespace, then of the
    /// empty namespace, then an entity type, then a built-in.
    fn resolve_name(&self, name: &str, ns: &str, depth: usize) -> Result<CedarType, String> {
        let (target_ns, base) = match name.rsplit_once("::") {
            Some((prefix, base)) if prefix != "__cedar" => (prefix, base),
            Some((_, base)) => return builtin(base).ok_or_else(|| format!("unknown type `{name}`")),
            None => (ns, name),
        };
        for candidate in [target_ns, ""] {
            let def = self.namespace(candidate).and_then(|n| n.get("commonTypes")).and_then(|c| c.get(base));
            if let Some(def) = def {
                return self.resolve(def, candidate, depth + 1);
            }
            let is_entity = self.namespace(candidate).and_then(|n| n.get("entityTypes")).and_then(|e| e.get(base)).is_some();
            if is_entity {
                let qualified = if candidate.is_empty() { base.to_owned() } else { format!("{candidate}::{base}") };
                return Ok(CedarType::Entity(qualified));
            }
        }
        builtin(base).ok_or_else(|| format!("unknown type `{name}`"))
    }
}

fn name_of(ty: &Value) -> Result<&str, String> {
    ty.get("name").and_then(Value::as_str).ok_or_else(|| "schema type without `name`".to_owned())
}

fn builtin(name: &str) -> Option<CedarType> {
    match name {
        "Bool" | "Boolean" => Some(CedarType::Bool),
        "Long" => Some(CedarType::Long),
        "String" => Some(CedarType::String),
        "ipaddr" | "decimal" | "datetime" | "duration" => Some(CedarType::Extension(name.to_owned())),
        _ => None,
    }
}
