//! Cedar authorization: policies and schema loaded and validated once, then one request per call.

pub mod context;
pub mod diagnostics;
pub mod index;
pub mod policies;
pub mod schema_types;

use crate::decision::{Denial, Outcome};
use crate::jose::jwk::quote;
use crate::request::EntityRef;
use cedar_policy::{
    Authorizer as CedarAuthorizer, Decision as CedarDecision, Entities, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Request,
    RequestValidationError, Schema, SchemaFragment, ValidationMode, Validator,
};
use context::{AGENT_TYPE, ContextFacts, ContextPlan, USER_TYPE};
use diagnostics::{Problem, describe};
use index::{PolicyIndex, ScopeRequest, Selection};
use policies::{LoadedPolicies, PolicySource};
use schema_types::SchemaJson;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A named source text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceText {
    /// File name for diagnostics.
    pub name: String,
    /// Contents.
    pub text: String,
}

/// Validated policies, schema and per-action context plans.
#[derive(Debug)]
pub struct Authorizer {
    schema: Schema,
    policies: LoadedPolicies,
    /// The policies by scope: a call evaluates only those that can apply (`index.rs`).
    index: PolicyIndex,
    /// Whether calls use the index (`Settings::policy_index`).
    lookup: Lookup,
    plans: HashMap<String, ContextPlan>,
    action_entities: Arc<Entities>,
    cedar: CedarAuthorizer,
    /// Entity type names of the schema, parsed once: Cedar's parser is slow next to a lookup.
    type_names: TypeNames,
    /// Parsed entity documents by SHA-256: callers send the same few documents again and again.
    entities: Mutex<HashMap<[u8; 32], Arc<Entities>>>,
    /// Principal and resource types each action applies to.
    applies_to: HashMap<String, AppliesTo>,
    /// The schema declares enumerated entity types, whose ids only Cedar's request validation
    /// checks.
    has_enums: bool,
}

#[derive(Debug, Default)]
struct AppliesTo {
    principals: Vec<EntityTypeName>,
    resources: Vec<EntityTypeName>,
}

/// Most entity documents kept parsed.
const ENTITIES_CACHE_ENTRIES: usize = 256;

/// Entity type names by their text.
#[derive(Debug, Clone, Default)]
pub struct TypeNames(HashMap<String, EntityTypeName>);

impl TypeNames {
    /// The parsed name, from the table or, for names outside the schema, Cedar's parser.
    pub fn get(&self, name: &str) -> Option<EntityTypeName> {
        match self.0.get(name) {
            Some(t) => Some(t.clone()),
            None => EntityTypeName::from_str(name).ok(),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A user calling directly (no `act`).
    User,
    /// An agent acting for a user.
    Agent,
}

impl PrincipalKind {
    /// The entity type name.
    pub fn type_name(self) -> &'static str {
        match self {
            PrincipalKind::User => USER_TYPE,
            PrincipalKind::Agent => AGENT_TYPE,
        }
    }
}

/// One authorization question with verified facts.
#[derive(Debug, Clone, Copy)]
pub struct AuthzCall<'a> {
    /// Principal kind.
    pub principal_kind: PrincipalKind,
    /// Principal id.
    pub principal_id: &'a str,
    /// Action id.
    pub action: &'a str,
    /// Resource.
    pub resource: &'a EntityRef,
    /// Verified facts for the context.
    pub facts: &'a ContextFacts,
    /// Caller attributes JSON.
    pub input: Option<&'a str>,
    /// Caller entities JSON.
    pub entities: Option<&'a str>,
}

/// The policy answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAnswer {
    /// Permitted.
    pub allowed: bool,
    /// Determining policy ids.
    pub policies: Vec<String>,
    /// Evaluation errors (policy id: message).
    pub errors: Vec<String>,
    /// Human reason.
    pub reason: String,
    /// For a deny that one more token scope would turn into an allow: that scope (a permit's
    /// `@scope` annotation), so the client can step up (RFC 6750 §3.1 `insufficient_scope`).
    pub required_scope: Option<String>,
}

/// Which policies a call evaluates.
#[derive(Debug, Clone, Copy)]
enum Lookup {
    /// Those the index finds can apply.
    Index,
    /// Every one (the reference).
    Whole,
}

/// The parts of a built request kept for reasons and `explain`.
struct RequestParts {
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    input: Option<serde_json::Value>,
}

impl RequestParts {
    fn scope<'a>(&'a self, entities: &'a Entities) -> ScopeRequest<'a> {
        ScopeRequest { principal: &self.principal, action: &self.action, resource: &self.resource, entities }
    }

    fn describe(&self, call: &AuthzCall<'_>, authorizer: &Authorizer, entities: &Entities) -> BuiltRequest {
        let context = authorizer.plans.get(call.action).map(|plan| plan.build_json(call.facts, self.input.as_ref())).unwrap_or_default();
        BuiltRequest {
            principal: self.principal.to_string(),
            action: self.action.to_string(),
            resource: self.resource.to_string(),
            context,
            policies_selected: match authorizer.lookup {
                Lookup::Index => authorizer.index.matching_count(&self.scope(entities)),
                Lookup::Whole => authorizer.index.len(),
            },
            policies_total: authorizer.index.len(),
        }
    }
}

/// The Cedar request as built, for `explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltRequest {
    /// `Type::"id"`.
    pub principal: String,
    /// `Action::"id"`.
    pub action: String,
    /// `Type::"id"`.
    pub resource: String,
    /// The context JSON.
    pub context: serde_json::Value,
    /// How many policies the index found can apply: the ones Cedar evaluates.
    pub policies_selected: usize,
    /// How many the set holds.
    pub policies_total: usize,
}

impl Authorizer {
    /// Parses the schema and policies, validates the policies strictly against the schema and
    /// checks every action's context against the author contract. The error lists every problem,
    /// one `file:line:col: message` per line.
    pub fn new(policy_files: &[SourceText], schema_file: &SourceText) -> Result<Self, String> {
        Authorizer::load(policy_files, schema_file).map_err(|problems| diagnostics::lines(&problems))
    }

    /// Like `new`, with the problems as data (for `agentgate validate`).
    pub fn load(policy_files: &[SourceText], schema_file: &SourceText) -> Result<Self, Vec<Problem>> {
        let schema_name = schema_file.name.as_str();
        let general = |message: String| vec![Problem::general(schema_name, message)];
        let (schema, _warnings) = Schema::from_cedarschema_str(&schema_file.text).map_err(|e| vec![Problem::at(schema_name, &schema_file.text, &e)])?;
        for required in [USER_TYPE, AGENT_TYPE] {
            let declared = schema.entity_types().any(|t| t.to_string() == required);
            if !declared {
                return Err(general(format!("the schema must declare the entity type `{required}`")));
            }
        }
        let json = SchemaFragment::from_cedarschema_str(&schema_file.text)
            .map_err(|e| vec![Problem::at(schema_name, &schema_file.text, &e)])
            .and_then(|(fragment, _)| fragment.to_json_value().map_err(|e| general(e.to_string())))?;
        let schema_json = SchemaJson::new(json).map_err(general)?;
        let mut plans = HashMap::new();
        let mut problems = Vec::new();
        for action in schema_json.action_names() {
            match schema_json.action_context(&action) {
                Ok(Some(declared)) => match ContextPlan::new(&action, declared) {
                    Ok(plan) => {
                        plans.insert(action, plan);
                    }
                    Err(e) => problems.push(Problem::general(schema_name, e)),
                },
                Ok(None) => {}
                Err(e) => problems.push(Problem::general(schema_name, format!("action `{action}`: {e}"))),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let files: Vec<(String, String)> = policy_files.iter().map(|f| (f.name.clone(), f.text.clone())).collect();
        let policies = policies::load(&files)?;
        let validation = Validator::new(schema.clone()).validate(&policies.set, ValidationMode::Strict);
        if !validation.validation_passed() {
            return Err(validation
                .validation_errors()
                .map(|e| match policies.sources.get(e.policy_id()) {
                    Some(src) => Problem::at(&src.file, file_text(policy_files, &src.file), e),
                    None => Problem::general("policies", describe(e)),
                })
                .collect());
        }
        let action_entities = Arc::new(schema.action_entities().map_err(|e| general(e.to_string()))?);
        let mut applies_to = HashMap::new();
        let action_type = EntityTypeName::from_str("Action").map_err(|e| general(e.to_string()))?;
        for action in plans.keys() {
            let uid = EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(action));
            let principals = schema.principals_for_action(&uid).map(|i| i.cloned().collect()).unwrap_or_default();
            let resources = schema.resources_for_action(&uid).map(|i| i.cloned().collect()).unwrap_or_default();
            applies_to.insert(action.clone(), AppliesTo { principals, resources });
        }
        let has_enums = schema_json.has_enum_entities();
        let mut names: HashMap<String, EntityTypeName> = schema.entity_types().map(|t| (t.to_string(), t.clone())).collect();
        names.insert("Action".into(), action_type);
        let index = PolicyIndex::new(&policies.set);
        Ok(Authorizer {
            schema,
            index,
            lookup: Lookup::Index,
            policies,
            plans,
            action_entities,
            cedar: CedarAuthorizer::new(),
            type_names: TypeNames(names),
            entities: Mutex::new(HashMap::new()),
            applies_to,
            has_enums,
        })
    }

    /// True if the schema declares `action` (in the empty namespace).
    pub fn declares_action(&self, action: &str) -> bool {
        self.plans.contains_key(action)
    }

    /// True if the schema declares the entity type `name`.
    pub fn declares_entity_type(&self, name: &str) -> bool {
        self.type_names.0.contains_key(name)
    }

    /// The policy set.
    pub fn policy_set(&self) -> &PolicySet {
        &self.policies.set
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Where a policy came from.
    pub fn policy_source(&self, id: &str) -> Option<&PolicySource> {
        self.policies.sources.get(&PolicyId::new(id))
    }

    /// The Cedar request for a call as `explain` shows it.
    pub fn describe(&self, call: &AuthzCall<'_>) -> Result<BuiltRequest, Denial> {
        let (_, parts) = self.build(call)?;
        let entities = self.call_entities(call)?;
        Ok(parts.describe(call, self, &entities))
    }

    /// Builds the Cedar request for a call (without evaluating it).
    fn build(&self, call: &AuthzCall<'_>) -> Result<(Request, RequestParts), Denial> {
        let Some(plan) = self.plans.get(call.action) else {
            return Err(Denial::request(format!("action {} is not declared in the schema", quote(call.action))));
        };
        let principal = self.uid(call.principal_kind.type_name(), call.principal_id)?;
        let action = self.uid("Action", call.action)?;
        let resource_type = self
            .type_names
            .get(&call.resource.type_name)
            .ok_or_else(|| Denial::request(format!("resource type {} is not a Cedar entity type name", quote(&call.resource.type_name))))?;
        let resource = EntityUid::from_type_name_and_id(resource_type, EntityId::new(&call.resource.id));

        let input = match call.input {
            None => None,
            Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) if map.is_empty() && !plan.takes_input() => None,
                Ok(value @ serde_json::Value::Object(_)) if plan.takes_input() => Some(value),
                Ok(serde_json::Value::Object(_)) => {
                    return Err(Denial::request(format!("action {} declares no `input` context, but the request supplies one", quote(call.action))));
                }
                Ok(_) => return Err(Denial::request("`context` is not a JSON object")),
                Err(e) => return Err(Denial::request(format!("`context` is not valid JSON ({e})"))),
            },
        };
        let context = plan
            .build(call.facts, input.as_ref(), &self.type_names)
            .map_err(|e| Denial::request(format!("context does not match the schema of action {}: {e}", quote(call.action))))?;
        let parts = RequestParts { principal: principal.clone(), action: action.clone(), resource: resource.clone(), input };
        // Engine values are typed by construction against a context checked at load, so Cedar's
        // request validation is only needed for what the caller shaped: `input` (already checked
        // attribute by attribute, validated again here) and enumerated entity ids.
        let request = if parts.input.is_some() || self.has_enums {
            Request::new(principal, action, resource, context, Some(&self.schema)).map_err(|e| request_error(e, call))?
        } else {
            self.check_applies_to(call, &principal, &resource)?;
            Request::new(principal, action, resource, context, None).map_err(|e| request_error(e, call))?
        };
        Ok((request, parts))
    }

    /// Builds the request and evaluates the policies. A deny that no `forbid` decided is tried
    /// again with each scope a permit asks for (`@scope`, sorted): if one turns it into an allow,
    /// the answer names it (`required_scope`).
    pub fn authorize(&self, call: &AuthzCall<'_>) -> Result<PolicyAnswer, Denial> {
        self.authorize_by(call, self.lookup)
    }

    /// The same authorizer, evaluating every policy on every call (`policy_index = false`).
    pub fn without_index(mut self) -> Self {
        self.lookup = Lookup::Whole;
        self
    }

    /// `authorize` with plain Cedar over every policy, without the index: the answer the index
    /// must equal, field for field (the differential tests and fuzz target compare the two).
    pub fn authorize_without_index(&self, call: &AuthzCall<'_>) -> Result<PolicyAnswer, Denial> {
        self.authorize_by(call, Lookup::Whole)
    }

    fn authorize_by(&self, call: &AuthzCall<'_>, lookup: Lookup) -> Result<PolicyAnswer, Denial> {
        let (request, parts) = self.build(call)?;
        let entities = self.call_entities(call)?;
        // The selection depends on the scope (principal, action, resource and their ancestors),
        // never on the context: the step-up retries below reuse it.
        let selection = self.select(&parts, &entities, lookup, false);
        let mut answer = self.decide(&request, &parts, &entities, &selection, false);
        if !answer.allowed && answer.policies.is_empty() {
            for scope in self.step_up_scopes() {
                if call.facts.scopes.iter().any(|s| s == scope) {
                    continue;
                }
                let mut facts = call.facts.clone();
                facts.scopes.push(scope.to_owned());
                let (wider_request, _) = self.build(&AuthzCall { facts: &facts, ..*call })?;
                let wider = self.decide(&wider_request, &parts, &entities, &selection, false);
                if wider.allowed {
                    let permits = wider.policies.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
                    answer.reason = format!("the token lacks the scope {} that {permits} asks for", quote(scope));
                    answer.required_scope = Some(scope.to_owned());
                    break;
                }
            }
        }
        Ok(answer)
    }

    /// The scopes permits ask for (`@scope`), sorted, each once.
    fn step_up_scopes(&self) -> impl Iterator<Item = &str> {
        let mut scopes: Vec<&str> = self.policies.traits.values().filter_map(|t| t.step_up_scope.as_deref()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        scopes.into_iter()
    }

    /// The entity store of a call: the schema's actions, or the caller's document (parsed with
    /// them).
    fn call_entities(&self, call: &AuthzCall<'_>) -> Result<Arc<Entities>, Denial> {
        match call.entities {
            None => Ok(Arc::clone(&self.action_entities)),
            Some(text) => self.parse_entities(text),
        }
    }

    /// Evaluates the policies (the permits alone, with `permits_only`) for a call.
    fn evaluate(&self, call: &AuthzCall<'_>, lookup: Lookup, permits_only: bool) -> Result<PolicyAnswer, Denial> {
        let (request, parts) = self.build(call)?;
        let entities = self.call_entities(call)?;
        let selection = self.select(&parts, &entities, lookup, permits_only);
        Ok(self.decide(&request, &parts, &entities, &selection, permits_only))
    }

    /// The policies a call evaluates: those the index finds can apply, or every one.
    fn select(&self, parts: &RequestParts, entities: &Entities, lookup: Lookup, permits_only: bool) -> Selection {
        match lookup {
            Lookup::Whole => Selection::All,
            Lookup::Index => self.index.select(&parts.scope(entities), permits_only).0,
        }
    }

    /// Evaluates a built request against the selected policies.
    fn decide(&self, request: &Request, parts: &RequestParts, entities: &Entities, selection: &Selection, permits_only: bool) -> PolicyAnswer {
        let whole = if permits_only { &self.policies.permits } else { &self.policies.set };
        let set = match selection {
            Selection::All => whole,
            Selection::Some(set) => set.as_ref(),
        };
        let response = self.cedar.is_authorized(request, set, entities);
        // Cedar's determining policies are a set and its errors come in evaluation order: both
        // sorted, so an answer reads the same on every host and run, indexed or not.
        let mut policies: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        policies.sort_unstable();
        let mut errors: Vec<String> = response.diagnostics().errors().map(|e| describe(e)).collect();
        errors.sort_unstable();
        let allowed = response.decision() == CedarDecision::Allow;
        let listed = policies.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
        let reason = if allowed {
            format!("permitted by {listed}")
        } else if !policies.is_empty() {
            format!("forbidden by {listed}")
        } else {
            format!("no policy permits {} to {} {}", parts.principal, parts.action, parts.resource)
        };
        PolicyAnswer { allowed, policies, errors, reason, required_scope: None }
    }

    /// Whether some call to the MCP tool `tool` (its own action on `Tool::"<tool>"`, as
    /// `agentgate schema mcp` declares it) by this caller could be permitted, whatever its
    /// arguments: what `tools/list` may show. Decided soundly without partial evaluation, from
    /// evaluations with a placeholder `input` of the declared type:
    ///
    /// - a policy that never reads `context.input` decides the same for every input. If such a
    ///   `forbid` applies, no call can be permitted: hidden;
    /// - otherwise the permits alone are evaluated. If one applies, the call is permitted for
    ///   the placeholder but for forbids that read the input, which other arguments may escape:
    ///   shown;
    /// - if none applies, input-blind permits are false for every input; a permit that reads the
    ///   input might hold for other arguments: shown if there is one, else hidden;
    /// - a tool whose action the schema does not declare cannot be called: hidden.
    ///
    /// Errors make a policy not apply (Cedar's rule), which only ever shows a tool. The answer
    /// errs towards showing: hiding is always certain.
    pub fn tool_visible(&self, principal_kind: PrincipalKind, principal_id: &str, tool: &str, facts: &ContextFacts) -> bool {
        let Some(plan) = self.plans.get(tool) else { return false };
        let input = plan.placeholder_input().map(|v| v.to_string());
        let resource = EntityRef { type_name: "Tool".into(), id: tool.to_owned() };
        let call = AuthzCall { principal_kind, principal_id, action: tool, resource: &resource, facts, input: input.as_deref(), entities: None };
        let Ok(answer) = self.evaluate(&call, self.lookup, false) else { return false };
        if answer.allowed {
            return true;
        }
        let traits = |id: &str| self.policies.traits.get(&PolicyId::new(id));
        // Denied, and the determining policies are the forbids that applied.
        if answer.policies.iter().any(|p| traits(p).is_none_or(|t| !t.reads_input)) {
            return false; // a forbid that applies whatever the arguments
        }
        match self.evaluate(&call, self.lookup, true) {
            Ok(permits) if permits.allowed => true,
            Ok(_) => self.policies.traits.values().any(|t| t.permit && t.reads_input),
            Err(_) => false,
        }
    }
}

impl Authorizer {
    /// The principal and resource types must be ones the action applies to (what Cedar's request
    /// validation would check).
    fn check_applies_to(&self, call: &AuthzCall<'_>, principal: &EntityUid, resource: &EntityUid) -> Result<(), Denial> {
        let Some(applies) = self.applies_to.get(call.action) else {
            return Err(Denial::request(format!("action {} is not declared in the schema", quote(call.action))));
        };
        if !applies.principals.contains(&principal.type_name().clone()) {
            return Err(Denial::new(
                Outcome::PolicyDenied,
                format!("the schema does not let a `{}` principal perform {}", call.principal_kind.type_name(), quote(call.action)),
            ));
        }
        if !applies.resources.contains(&resource.type_name().clone()) {
            return Err(Denial::request(format!(
                "request does not match the schema: resource type `{}` is not valid for `Action::\"{}\"`",
                resource.type_name(),
                call.action.escape_default()
            )));
        }
        Ok(())
    }

    fn uid(&self, type_name: &str, id: &str) -> Result<EntityUid, Denial> {
        let ty = self.type_names.get(type_name).ok_or_else(|| Denial::request(format!("{} is not a Cedar type name", quote(type_name))))?;
        Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
    }

    /// Parses (and validates against the schema) an entities document, or takes it from the cache.
    fn parse_entities(&self, text: &str) -> Result<Arc<Entities>, Denial> {
        let key: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if let Some(hit) = self.entities.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let parsed =
            Arc::new(Entities::from_json_str(text, Some(&self.schema)).map_err(|e| Denial::request(format!("`entities` are invalid: {}", describe(&e))))?);
        if let Ok(mut cache) = self.entities.lock() {
            if cache.len() >= ENTITIES_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, Arc::clone(&parsed));
        }
        Ok(parsed)
    }
}

/// A principal type the action does not apply to can never be permitted: that is the policy
/// author's decision (`policy_denied`). Every other mismatch is a malformed request.
fn request_error(e: RequestValidationError, call: &AuthzCall<'_>) -> Denial {
    match e {
        RequestValidationError::InvalidPrincipalType(_) => Denial::new(
            Outcome::PolicyDenied,
            format!("the schema does not let a `{}` principal perform {}", call.principal_kind.type_name(), quote(call.action)),
        ),
        other => Denial::request(format!("request does not match the schema: {}", describe(&other))),
    }
}

fn file_text<'a>(files: &'a [SourceText], name: &str) -> &'a str {
    files.iter().find(|f| f.name == name).map_or("", |f| f.text.as_str())
}

/// `Type::"id"` with Cedar's own escaping, as decisions and audit lines show principals.
pub fn entity_display(type_name: &str, id: &str) -> String {
    match EntityTypeName::from_str(type_name) {
        Ok(ty) => EntityUid::from_type_name_and_id(ty, EntityId::new(id)).to_string(),
        Err(_) => format!("{type_name}::{id:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::Context;

    /// The shipped MCP set (policies/mcp).
    fn mcp() -> Authorizer {
        let file = |name: &str, text: &str| SourceText { name: name.to_owned(), text: text.to_owned() };
        let policies = [
            file("tools.cedar", include_str!("../../../policies/mcp/tools.cedar")),
            file("guards.cedar", include_str!("../../../policies/mcp/guards.cedar")),
            file("arguments.cedar", include_str!("../../../policies/mcp/arguments.cedar")),
        ];
        Authorizer::new(&policies, &file("schema.cedarschema", include_str!("../../../policies/mcp/schema.cedarschema"))).unwrap()
    }

    fn visible(a: &Authorizer, kind: PrincipalKind, scopes: &[&str]) -> Vec<&'static str> {
        let facts = ContextFacts {
            user: "alice".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            chain: if kind == PrincipalKind::Agent { vec!["spiffe://agents.example/files-assistant".into()] } else { Vec::new() },
            issuer: "https://auth.demo.agentgate.dev".into(),
            lifetime_secs: 300,
            expires_in_secs: 300,
            ..ContextFacts::default()
        };
        let id = if kind == PrincipalKind::Agent { "spiffe://agents.example/files-assistant" } else { "alice" };
        ["list_directory", "read_file", "search_files", "write_file", "delete_file", "change_owner", "execute_command", "no_such_tool"]
            .into_iter()
            .filter(|tool| a.tool_visible(kind, id, tool, &facts))
            .collect()
    }

    #[test]
    fn tools_are_hidden_only_when_no_arguments_could_permit_a_call() {
        let a = mcp();
        // `write_file` shows: `files-change-in-workspace` reads the path, so some paths pass.
        // `delete_file` hides without `files.delete`, although an argument-reading forbid also
        // applies to the placeholder: no permit could hold whatever the arguments.
        assert_eq!(visible(&a, PrincipalKind::Agent, &["files.read", "files.write"]), ["list_directory", "read_file", "search_files", "write_file"]);
        assert_eq!(
            visible(&a, PrincipalKind::Agent, &["files.read", "files.write", "files.delete", "files.admin"]),
            ["list_directory", "read_file", "search_files", "write_file", "delete_file"]
        );
        // The admin tools: forbidden to agents whatever the arguments, permitted to the user.
        assert_eq!(visible(&a, PrincipalKind::User, &["files.admin"]), ["change_owner", "execute_command"]);
        assert!(visible(&a, PrincipalKind::Agent, &[]).is_empty());
    }

    #[test]
    fn a_step_up_names_the_scope_only_when_no_forbid_decided() {
        let a = mcp();
        let facts = ContextFacts {
            user: "alice".into(),
            scopes: vec!["files.read".into()],
            chain: vec!["spiffe://agents.example/files-assistant".into()],
            ..ContextFacts::default()
        };
        let resource = EntityRef { type_name: "Tool".into(), id: "delete_file".into() };
        let call = |input: &'static str| AuthzCall {
            principal_kind: PrincipalKind::Agent,
            principal_id: "spiffe://agents.example/files-assistant",
            action: "delete_file",
            resource: &resource,
            facts: &facts,
            input: Some(input),
            entities: None,
        };
        let answer = a.authorize(&call(r#"{"path": "/workspace/a"}"#)).unwrap();
        assert_eq!((answer.allowed, answer.required_scope.as_deref()), (false, Some("files.delete")));
        assert_eq!(answer.reason, "the token lacks the scope `files.delete` that `files-delete` asks for");
        let answer = a.authorize(&call(r#"{"path": "/etc/passwd"}"#)).unwrap();
        assert_eq!((answer.allowed, answer.required_scope), (false, None), "a forbid decided: no scope would help");
    }

    /// The context built value by value equals what Cedar's own JSON parser makes of the same
    /// context (`build_json`) with the schema: every shipped set, every action, facts with odd
    /// strings, several chain depths, repeated scopes, and `input` where declared.
    #[test]
    fn contexts_built_from_values_equal_cedars_parse_of_the_same_json() {
        let file = |name: &str, text: &str| SourceText { name: name.to_owned(), text: text.to_owned() };
        let sets = [
            (file("mail.cedar", include_str!("../../../policies/mail/mail.cedar")), file("s", include_str!("../../../policies/mail/schema.cedarschema"))),
            (file("devices.cedar", include_str!("../../../policies/home/devices.cedar")), file("s", include_str!("../../../policies/home/schema.cedarschema"))),
            (
                file("payments.cedar", include_str!("../../../policies/payments/payments.cedar")),
                file("s", include_str!("../../../policies/payments/schema.cedarschema")),
            ),
            (file("tools.cedar", include_str!("../../../policies/mcp/tools.cedar")), file("s", include_str!("../../../policies/mcp/schema.cedarschema"))),
        ];
        let chains: [&[&str]; 4] = [&[], &["spiffe://a/x"], &["spiffe://a/x", "b \"quoted\" \u{e9}"], &["a", "a", ""]];
        let mut compared = 0;
        for (policies, schema) in &sets {
            let a = Authorizer::new(std::slice::from_ref(policies), schema).unwrap();
            for (action, plan) in &a.plans {
                for chain in chains {
                    let facts = ContextFacts {
                        user: "al\"ice".into(),
                        scopes: vec!["mail.read".into(), "x".into(), "mail.read".into(), String::new()],
                        chain: chain.iter().map(|s| (*s).to_owned()).collect(),
                        issuer: "https://as.example".into(),
                        token_id: "j-1".into(),
                        client_id: "c".into(),
                        age_secs: 7,
                        lifetime_secs: i64::MAX,
                        expires_in_secs: 0,
                        proof_bound: chain.len() % 2 == 0,
                        method: "GET".into(),
                        uri: "https://x.example/a?b".into(),
                        key: "k".into(),
                        agent_verified: true,
                        trust_domain: "d".into(),
                        agent_id: "spiffe://d/w".into(),
                    };
                    let input = plan.placeholder_input();
                    let built = plan.build(&facts, input.as_ref(), &a.type_names).unwrap();
                    let action_uid = a.uid("Action", action).unwrap();
                    let parsed = Context::from_json_value(plan.build_json(&facts, input.as_ref()), Some((&a.schema, &action_uid))).unwrap();
                    assert_eq!(built.as_ref(), parsed.as_ref(), "{action} with {} actor(s)", chain.len());
                    compared += 1;
                }
            }
        }
        assert!(compared >= 4 * 6, "every set's actions were compared ({compared})");
    }
}
