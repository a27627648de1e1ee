//! Cedar authorization: policies and schema loaded and validated once, then one request per call.

pub mod context;
pub mod diagnostics;
pub mod policies;
pub mod schema_types;

use crate::decision::{Denial, Outcome};
use crate::jose::jwk::quote;
use crate::request::EntityRef;
use cedar_policy::{
    Authorizer as CedarAuthorizer, Decision as CedarDecision, Entities, EntityId, EntityTypeName, EntityUid,
    PolicyId, PolicySet, Request, RequestValidationError, Schema, SchemaFragment, ValidationMode, Validator,
};
use context::{AGENT_TYPE, ContextFacts, ContextPlan, USER_TYPE};
use diagnostics::{describe, locate};
use policies::{LoadedPolicies, PolicySource};
use schema_types::SchemaJson;
use std::collections::HashMap;
use std::str::FromStr;

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
    plans: HashMap<String, ContextPlan>,
    action_entities: Entities,
    cedar: CedarAuthorizer,
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// The parts of a built request kept for reasons and `explain`.
struct RequestParts {
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    input: Option<serde_json::Value>,
}

impl RequestParts {
    fn describe(&self, call: &AuthzCall<'_>, authorizer: &Authorizer) -> BuiltRequest {
        let context = authorizer
            .plans
            .get(call.action)
            .map(|plan| plan.build_json(call.facts, self.input.as_ref()))
            .unwrap_or_default();
        BuiltRequest {
            principal: self.principal.to_string(),
            action: self.action.to_string(),
            resource: self.resource.to_string(),
            context,
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
}

impl Authorizer {
    /// Parses the schema and policies, validates the policies strictly against the schema and
    /// checks every action's context against the author contract.
    pub fn new(policy_files: &[SourceText], schema_file: &SourceText) -> Result<Self, String> {
        let (schema, _warnings) = Schema::from_cedarschema_str(&schema_file.text)
            .map_err(|e| locate(&schema_file.name, &schema_file.text, &e))?;
        for required in [USER_TYPE, AGENT_TYPE] {
            let declared = schema.entity_types().any(|t| t.to_string() == required);
            if !declared {
                return Err(format!("{}: the schema must declare the entity type `{required}`", schema_file.name));
            }
        }
        let json = SchemaFragment::from_cedarschema_str(&schema_file.text)
            .map_err(|e| locate(&schema_file.name, &schema_file.text, &e))
            .and_then(|(fragment, _)| fragment.to_json_value().map_err(|e| format!("{}: {e}", schema_file.name)))?;
        let schema_json = SchemaJson::new(json).map_err(|e| format!("{}: {e}", schema_file.name))?;
        let mut plans = HashMap::new();
        for action in schema_json.action_names() {
            let declared = schema_json
                .action_context(&action)
                .map_err(|e| format!("{}: action `{action}`: {e}", schema_file.name))?;
            if let Some(declared) = declared {
                let plan = ContextPlan::new(&action, declared).map_err(|e| format!("{}: {e}", schema_file.name))?;
                plans.insert(action, plan);
            }
        }

        let files: Vec<(String, String)> = policy_files.iter().map(|f| (f.name.clone(), f.text.clone())).collect();
        let policies = policies::load(&files)?;
        let validation = Validator::new(schema.clone()).validate(&policies.set, ValidationMode::Strict);
        if !validation.validation_passed() {
            let lines: Vec<String> = validation
                .validation_errors()
                .map(|e| match policies.sources.get(e.policy_id()) {
                    Some(src) => locate(&src.file, file_text(policy_files, &src.file), e),
                    None => describe(e),
                })
                .collect();
            return Err(lines.join("\n"));
        }
        let action_entities = schema.action_entities().map_err(|e| format!("{}: {e}", schema_file.name))?;
        Ok(Authorizer { schema, policies, plans, action_entities, cedar: CedarAuthorizer::new() })
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
        Ok(parts.describe(call, self))
    }

    /// Builds the Cedar request for a call (without evaluating it).
    fn build(&self, call: &AuthzCall<'_>) -> Result<(Request, RequestParts), Denial> {
        let Some(plan) = self.plans.get(call.action) else {
            return Err(Denial::request(format!("action {} is not declared in the schema", quote(call.action))));
        };
        let principal = uid(call.principal_kind.type_name(), call.principal_id)?;
        let action = uid("Action", call.action)?;
        let resource_type = EntityTypeName::from_str(&call.resource.type_name)
            .map_err(|_| Denial::request(format!("resource type {} is not a Cedar entity type name", quote(&call.resource.type_name))))?;
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
            .build(call.facts, input.as_ref())
            .map_err(|e| Denial::request(format!("context does not match the schema of action {}: {e}", quote(call.action))))?;
        let parts = RequestParts { principal: principal.clone(), action: action.clone(), resource: resource.clone(), input };
        let request = Request::new(principal, action, resource, context, Some(&self.schema)).map_err(|e| request_error(e, call))?;
        Ok((request, parts))
    }

    /// Builds the request and evaluates the policies.
    pub fn authorize(&self, call: &AuthzCall<'_>) -> Result<PolicyAnswer, Denial> {
        let (request, parts) = self.build(call)?;
        let parsed_entities;
        let entities = match call.entities {
            None => &self.action_entities,
            Some(text) => {
                parsed_entities = Entities::from_json_str(text, Some(&self.schema))
                    .map_err(|e| Denial::request(format!("`entities` are invalid: {}", describe(&e))))?;
                &parsed_entities
            }
        };
        let response = self.cedar.is_authorized(&request, &self.policies.set, entities);
        let policies: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        let errors: Vec<String> = response.diagnostics().errors().map(|e| describe(e)).collect();
        let allowed = response.decision() == CedarDecision::Allow;
        let listed = policies.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
        let reason = if allowed {
            format!("permitted by {listed}")
        } else if !policies.is_empty() {
            format!("forbidden by {listed}")
        } else {
            format!("no policy permits {} to {} {}", parts.principal, parts.action, parts.resource)
        };
        Ok(PolicyAnswer { allowed, policies, errors, reason })
    }
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, Denial> {
    let ty = EntityTypeName::from_str(type_name).map_err(|_| Denial::request(format!("{} is not a Cedar type name", quote(type_name))))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
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
