//! The policy author contract: the context attributes the engine supplies, and the per-action plan
//! that fills in exactly what each action's schema declares.

use super::schema_types::CedarType;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Entity type of users (the token's `sub`).
pub const USER_TYPE: &str = "User";
/// Entity type of agents (the `act.sub` of the current actor).
pub const AGENT_TYPE: &str = "Agent";
/// The context attribute that carries caller-supplied attributes.
pub const INPUT: &str = "input";

/// Verified facts about one call, in the shape policies see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    let record = |attrs: Vec<(&str, CedarType)>| {
        CedarType::Record(attrs.into_iter().map(|(n, t)| (n.to_owned(), (t, true))).collect())
    };
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
        record(vec![
            ("issuer", s()),
            ("id", s()),
            ("client_id", s()),
            ("age_secs", l()),
            ("lifetime_secs", l()),
            ("expires_in_secs", l()),
        ]),
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
                    return Err(format!(
                        "action `{action}`: context attribute `{name}` is not supplied by agentgate (it supplies {})",
                        known.join(", ")
                    ));
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

    /// The context JSON for one call: exactly the declared attributes.
    pub fn build(&self, facts: &ContextFacts, input: Option<Value>) -> Value {
        let mut supplied = supplied_values(facts);
        let mut context = Map::new();
        for (name, ty) in &self.declared {
            if name == INPUT {
                context.insert(name.clone(), input.clone().unwrap_or_else(|| Value::Object(Map::new())));
            } else if let Some(value) = supplied.remove(name) {
                context.insert(name.clone(), prune(value, ty));
            }
        }
        Value::Object(context)
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
