//! The policy author contract: the context attributes the engine supplies, and the per-action plan
//! that fills in exactly what each action's schema declares.

use super::schema_types::CedarType;
use cedar_policy::{Context, EntityId, EntityUid, RestrictedExpression};
// Cedar's own value type: engine facts become context values without a detour through
// expressions (`ContextPlan::build`). Pinned with cedar-policy (=4.14.0).
use cedar_policy_core::ast::{self, Value as CedarValue};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Entity type of users (the token's `sub`).
pub const USER_TYPE: &str = "User";
/// Entity type of agents (the `act.sub` of the current actor).
pub const AGENT_TYPE: &str = "Agent";
/// The context attribute that carries caller-supplied attributes.
pub const INPUT: &str = "input";

/// Verified facts about one call, in the shape policies see them. Serialized in a decision log
/// (`crate::recorded`): every member is required there, so a record of another shape is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextFacts {
    /// User id (`sub`).
    pub user: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Actors, current first.
    pub chain: Vec<String>,
    /// Token `iss`.
    pub issuer: String,
    /// Token `jti`.
    pub token_id: String,
    /// Token `client_id`.
    pub client_id: String,
    /// Seconds since `iat` (never negative).
    pub age_secs: i64,
    /// `exp - iat`.
    pub lifetime_secs: i64,
    /// Seconds until `exp` (never negative).
    pub expires_in_secs: i64,
    /// The call carried a verified DPoP proof bound to the token.
    pub proof_bound: bool,
    /// Request method ("" without an HTTP request).
    pub method: String,
    /// Normalized request URI ("" without an HTTP request).
    pub uri: String,
    /// Proof key thumbprint ("" when unbound).
    pub key: String,
    /// The agent's workload identity was verified.
    pub agent_verified: bool,
    /// Its trust domain ("" when unverified).
    pub trust_domain: String,
    /// Its SPIFFE ID ("" when unverified).
    pub agent_id: String,
}

/// The attributes the engine can supply, with their types. Documented in the README; adding an
/// attribute here never breaks an existing schema, because only declared attributes are filled.
pub fn supplied_type() -> BTreeMap<String, CedarType> {
    let s = || CedarType::String;
    let l = || CedarType::Long;
    let b = || CedarType::Bool;
    let record = |attrs: Vec<(&str, CedarType)>| CedarType::Record(attrs.into_iter().map(|(n, t)| (n.to_owned(), (t, true))).collect());
    let mut m = BTreeMap::new();
    m.insert("user".to_owned(), CedarType::Entity(USER_TYPE.to_owned()));
    m.insert("scopes".to_owned(), CedarType::Set(Box::new(s())));
    m.insert(
        "delegation".to_owned(),
        record(vec![
            ("depth", l()),
            ("chain", CedarType::Set(Box::new(s()))),
            ("actors", CedarType::Set(Box::new(record(vec![("id", s()), ("position", l())])))),
        ]),
    );
    m.insert(
        "token".to_owned(),
        record(vec![("issuer", s()), ("id", s()), ("client_id", s()), ("age_secs", l()), ("lifetime_secs", l()), ("expires_in_secs", l())]),
    );
    m.insert("proof".to_owned(), record(vec![("bound", b()), ("method", s()), ("uri", s()), ("key", s())]));
    m.insert("agent".to_owned(), record(vec![("verified", b()), ("trust_domain", s()), ("id", s())]));
    m
}

/// The values of every supplied attribute, as Cedar context JSON.
fn supplied_values(facts: &ContextFacts) -> Map<String, Value> {
    let actors: Vec<Value> = facts.chain.iter().enumerate().map(|(i, id)| json!({"id": id, "position": i + 1})).collect();
    let value = json!({
        "user": {"__entity": {"type": USER_TYPE, "id": facts.user}},
        "scopes": facts.scopes,
        "delegation": {"depth": facts.chain.len(), "chain": facts.chain, "actors": actors},
        "token": {
            "issuer": facts.issuer,
            "id": facts.token_id,
            "client_id": facts.client_id,
            "age_secs": facts.age_secs,
            "lifetime_secs": facts.lifetime_secs,
            "expires_in_secs": facts.expires_in_secs,
        },
        "proof": {"bound": facts.proof_bound, "method": facts.method, "uri": facts.uri, "key": facts.key},
        "agent": {"verified": facts.agent_verified, "trust_domain": facts.trust_domain, "id": facts.agent_id},
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// What one action's context declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextPlan {
    declared: BTreeMap<String, CedarType>,
}

impl ContextPlan {
    /// Checks a declared context type against what the engine supplies. Declaring an attribute the
    /// engine cannot supply, or with another type, is an error naming the attribute.
    pub fn new(action: &str, declared: CedarType) -> Result<Self, String> {
        let CedarType::Record(attrs) = declared else {
            return Err(format!("action `{action}`: context must be a record"));
        };
        let supplied = supplied_type();
        let mut plan = BTreeMap::new();
        for (name, (ty, _required)) in attrs {
            if name != INPUT {
                let Some(offered) = supplied.get(&name) else {
                    let known: Vec<&str> = supplied.keys().map(String::as_str).chain([INPUT]).collect();
                    return Err(format!("action `{action}`: context attribute `{name}` is not supplied by agentgate (it supplies {})", known.join(", ")));
                };
                compatible(&ty, offered, &name).map_err(|e| format!("action `{action}`: {e}"))?;
            }
            plan.insert(name, ty);
        }
        Ok(ContextPlan { declared: plan })
    }

    /// True if the action takes caller attributes.
    pub fn takes_input(&self) -> bool {
        self.declared.contains_key(INPUT)
    }

    /// Some `input` of the declared type (empty strings, zeros, `false`, empty sets, required
    /// attributes only). A policy that never reads `context.input` decides the same for every
    /// input, so its answer on this one is its answer on all (`Authorizer::tool_visible`).
    pub fn placeholder_input(&self) -> Option<Value> {
        self.declared.get(INPUT).map(placeholder)
    }

    /// The context JSON for one call: exactly the declared attributes (shown by `explain`).
    pub fn build_json(&self, facts: &ContextFacts, input: Option<&Value>) -> Value {
        let mut supplied = supplied_values(facts);
        let mut context = Map::new();
        for (name, ty) in &self.declared {
            if name == INPUT {
                context.insert(name.clone(), input.cloned().unwrap_or_else(|| Value::Object(Map::new())));
            } else if let Some(value) = supplied.remove(name) {
                context.insert(name.clone(), prune(value, ty));
            }
        }
        Value::Object(context)
    }

    /// The Cedar context for one call, built directly from the declared types: engine values are
    /// typed by construction (and were checked against the schema at load), caller input is
    /// checked attribute by attribute, with errors that name the attribute
    /// (`input.celsius must be a Long`).
    ///
    /// Engine values become Cedar values directly: going through `RestrictedExpression`s, which
    /// Cedar then evaluates back into values, was a fifth of a call's work in wasm. The caller's
    /// `input` still goes through Cedar's evaluation, which checks extension literals.
    pub fn build(&self, facts: &ContextFacts, input: Option<&Value>, names: &super::TypeNames) -> Result<Context, String> {
        let mut attrs = BTreeMap::new();
        for (name, ty) in &self.declared {
            let value = if name == INPUT { input_value(input, ty, names)? } else { supplied(facts, None, name, ty, names)? };
            attrs.insert(name.as_str().into(), value);
        }
        Ok(Context::from(ast::Context::Value(Arc::new(attrs))))
    }
}

/// The caller's `input` as a Cedar value, evaluated by Cedar.
fn input_value(input: Option<&Value>, ty: &CedarType, names: &super::TypeNames) -> Result<CedarValue, String> {
    let empty = Value::Object(Map::new());
    let expr = restricted(input.unwrap_or(&empty), ty, INPUT, names)?;
    let context = Context::from_pairs([(INPUT.to_owned(), expr)]).map_err(|e| e.to_string())?;
    match context.as_ref() {
        ast::Context::Value(attrs) => attrs.get(INPUT).cloned().ok_or_else(|| format!("`{INPUT}` is missing")),
        ast::Context::RestrictedResidual(_) => Err(format!("`{INPUT}` is not a value")),
    }
}

/// One engine-supplied value, found by its attribute path.
enum Fact<'a> {
    Str(&'a str),
    Long(i64),
    Bool(bool),
    Strings(&'a [String]),
    Actors(&'a [String]),
    User(&'a str),
}

/// The fact at `parent.name` (or at `name`, top level).
fn fact<'a>(facts: &'a ContextFacts, parent: Option<&str>, name: &str) -> Option<Fact<'a>> {
    Some(match (parent, name) {
        (None, "user") => Fact::User(&facts.user),
        (None, "scopes") => Fact::Strings(&facts.scopes),
        (Some("delegation"), "depth") => Fact::Long(i64::try_from(facts.chain.len()).unwrap_or(i64::MAX)),
        (Some("delegation"), "chain") => Fact::Strings(&facts.chain),
        (Some("delegation"), "actors") => Fact::Actors(&facts.chain),
        (Some("token"), "issuer") => Fact::Str(&facts.issuer),
        (Some("token"), "id") => Fact::Str(&facts.token_id),
        (Some("token"), "client_id") => Fact::Str(&facts.client_id),
        (Some("token"), "age_secs") => Fact::Long(facts.age_secs),
        (Some("token"), "lifetime_secs") => Fact::Long(facts.lifetime_secs),
        (Some("token"), "expires_in_secs") => Fact::Long(facts.expires_in_secs),
        (Some("proof"), "bound") => Fact::Bool(facts.proof_bound),
        (Some("proof"), "method") => Fact::Str(&facts.method),
        (Some("proof"), "uri") => Fact::Str(&facts.uri),
        (Some("proof"), "key") => Fact::Str(&facts.key),
        (Some("agent"), "verified") => Fact::Bool(facts.agent_verified),
        (Some("agent"), "trust_domain") => Fact::Str(&facts.trust_domain),
        (Some("agent"), "id") => Fact::Str(&facts.agent_id),
        _ => return None,
    })
}

/// An engine-supplied attribute as a Cedar value, restricted to what `ty` declares. The load-time
/// check (`compatible`) guarantees every declared path exists with this type; the supplied
/// records nest one level (`token.issuer`), and `delegation.actors` holds records of its own.
fn supplied(facts: &ContextFacts, parent: Option<&str>, name: &str, ty: &CedarType, names: &super::TypeNames) -> Result<CedarValue, String> {
    let path = || parent.map_or_else(|| name.to_owned(), |p| format!("{p}.{name}"));
    if let CedarType::Record(attrs) = ty {
        if parent.is_some() {
            return Err(format!("`{}` is not supplied by agentgate", path()));
        }
        let fields = attrs
            .iter()
            .map(|(field, (attr_ty, _))| Ok((field.as_str(), supplied(facts, Some(name), field, attr_ty, names)?)))
            .collect::<Result<Vec<_>, String>>()?;
        return Ok(CedarValue::record(fields, None));
    }
    let string = |s: &str| CedarValue::from(s);
    match fact(facts, parent, name).ok_or_else(|| format!("`{}` is not supplied by agentgate", path()))? {
        Fact::Str(s) => Ok(string(s)),
        Fact::Long(n) => Ok(CedarValue::from(n)),
        Fact::Bool(b) => Ok(CedarValue::from(b)),
        Fact::Strings(items) => Ok(CedarValue::set(items.iter().map(|s| string(s)), None)),
        Fact::Actors(chain) => {
            let CedarType::Set(element) = ty else { return Err(format!("`{}` must be a set", path())) };
            let CedarType::Record(attrs) = element.as_ref() else { return Err(format!("`{}` must be a set of records", path())) };
            let actors = chain.iter().enumerate().map(|(i, id)| {
                let position = i64::try_from(i + 1).unwrap_or(i64::MAX);
                let fields = attrs.keys().filter_map(|field| match field.as_str() {
                    "id" => Some((field.as_str(), string(id))),
                    "position" => Some((field.as_str(), CedarValue::from(position))),
                    _ => None,
                });
                CedarValue::record(fields, None)
            });
            Ok(CedarValue::set(actors, None))
        }
        Fact::User(id) => {
            let user = names.get(USER_TYPE).ok_or("the schema has no `User` type")?;
            Ok(CedarValue::from(ast::EntityUID::from(EntityUid::from_type_name_and_id(user, EntityId::new(id)))))
        }
    }
}

/// Converts caller JSON into a Cedar value of the declared type; attributes the schema does not
/// declare are an error.
fn restricted(value: &Value, ty: &CedarType, path: &str, names: &super::TypeNames) -> Result<RestrictedExpression, String> {
    let wrong = || format!("`{path}` must be {}", describe(ty));
    match ty {
        CedarType::Bool => value.as_bool().map(RestrictedExpression::new_bool).ok_or_else(wrong),
        CedarType::Long => value.as_i64().map(RestrictedExpression::new_long).ok_or_else(wrong),
        CedarType::String => value.as_str().map(|s| RestrictedExpression::new_string(s.to_owned())).ok_or_else(wrong),
        CedarType::Set(element) => {
            let items = value.as_array().ok_or_else(wrong)?;
            let converted = items.iter().map(|v| restricted(v, element, &format!("{path}[]"), names)).collect::<Result<Vec<_>, _>>()?;
            Ok(RestrictedExpression::new_set(converted))
        }
        CedarType::Record(attrs) => {
            let object = value.as_object().ok_or_else(wrong)?;
            if let Some(extra) = object.keys().find(|k| !attrs.contains_key(*k)) {
                return Err(format!("`{path}.{extra}` is not declared in the schema"));
            }
            let mut fields = Vec::with_capacity(attrs.len());
            for (name, (attr_ty, required)) in attrs {
                match object.get(name) {
                    Some(v) => fields.push((name.clone(), restricted(v, attr_ty, &format!("{path}.{name}"), names)?)),
                    None if *required => return Err(format!("`{path}.{name}` is required")),
                    None => {}
                }
            }
            RestrictedExpression::new_record(fields).map_err(|e| format!("`{path}`: {e}"))
        }
        CedarType::Entity(expected) => {
            // `{"__entity": {"type", "id"}}` or the implicit `{"type", "id"}`.
            let inner = value.get("__entity").unwrap_or(value);
            let (Some(type_name), Some(id)) = (inner.get("type").and_then(Value::as_str), inner.get("id").and_then(Value::as_str)) else {
                return Err(wrong());
            };
            if type_name != expected {
                return Err(format!("`{path}` must be an entity of type `{expected}`, not `{type_name}`"));
            }
            let ty = names.get(type_name).ok_or_else(wrong)?;
            Ok(RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(ty, EntityId::new(id))))
        }
        CedarType::Extension(name) => {
            // A string argument, or `{"__extn": {"fn", "arg"}}`.
            let arg = value.as_str().or_else(|| value.get("__extn").and_then(|e| e.get("arg")).and_then(Value::as_str)).ok_or_else(wrong)?;
            let parsed = match name.as_str() {
                "ipaddr" => RestrictedExpression::new_ip(arg),
                "decimal" => RestrictedExpression::new_decimal(arg),
                "datetime" => RestrictedExpression::new_datetime(arg),
                "duration" => RestrictedExpression::new_duration(arg),
                _ => return Err(wrong()),
            };
            // The constructors defer validation of the argument to evaluation; Cedar's request
            // validation below rejects malformed values.
            Ok(parsed)
        }
    }
}

fn placeholder(ty: &CedarType) -> Value {
    match ty {
        CedarType::Bool => Value::Bool(false),
        CedarType::Long => json!(0),
        CedarType::String => json!(""),
        CedarType::Set(_) => json!([]),
        CedarType::Record(attrs) => Value::Object(attrs.iter().filter(|(_, (_, required))| *required).map(|(n, (t, _))| (n.clone(), placeholder(t))).collect()),
        CedarType::Entity(name) => json!({ "__entity": { "type": name, "id": "" } }),
        CedarType::Extension(name) => json!(match name.as_str() {
            "ipaddr" => "0.0.0.0",
            "decimal" => "0.0",
            "datetime" => "1970-01-01",
            _ => "0ms",
        }),
    }
}

fn describe(ty: &CedarType) -> String {
    match ty {
        CedarType::Bool => "a `Bool`".into(),
        CedarType::Long => "a `Long`".into(),
        CedarType::String => "a `String`".into(),
        CedarType::Set(_) => format!("a `{ty}`"),
        CedarType::Record(_) => "a record".into(),
        CedarType::Entity(name) => format!("an entity of type `{name}`"),
        CedarType::Extension(name) => format!("an `{name}` value"),
    }
}

/// Keeps only the declared attributes of records, recursively.
fn prune(value: Value, declared: &CedarType) -> Value {
    match (value, declared) {
        (Value::Object(mut map), CedarType::Record(attrs)) => {
            let mut kept = Map::new();
            for (name, (ty, _)) in attrs {
                if let Some(v) = map.remove(name) {
                    kept.insert(name.clone(), prune(v, ty));
                }
            }
            Value::Object(kept)
        }
        (Value::Array(items), CedarType::Set(element)) => Value::Array(items.into_iter().map(|v| prune(v, element)).collect()),
        (value, _) => value,
    }
}

/// `declared` must be the type the engine supplies, or a record/set of its declared subset.
fn compatible(declared: &CedarType, offered: &CedarType, path: &str) -> Result<(), String> {
    match (declared, offered) {
        (CedarType::Record(want), CedarType::Record(have)) => {
            for (name, (ty, _)) in want {
                let sub = format!("{path}.{name}");
                let Some((offered, _)) = have.get(name) else {
                    let known: Vec<&str> = have.keys().map(String::as_str).collect();
                    return Err(format!("context attribute `{sub}` is not supplied by agentgate (`{path}` has {})", known.join(", ")));
                };
                compatible(ty, offered, &sub)?;
            }
            Ok(())
        }
        (CedarType::Set(want), CedarType::Set(have)) => compatible(want, have, path),
        (a, b) if a == b => Ok(()),
        _ => Err(format!("context attribute `{path}` must be `{offered}`, the schema declares `{declared}`")),
    }
}
