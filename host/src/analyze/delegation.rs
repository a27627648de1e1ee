//! `agentgate analyze delegation DIR`: no agent can do more than its user. For every action, a
//! request by an `Agent` acting for user `u` must be permitted only if the same request made by
//! `u` directly would be. "Directly" means `principal` = `context.user`, no actors and delegation
//! depth 0, no agent identity, and the same action, resource, entities, scopes, token facts,
//! proof facts and `context.input`.
//!
//! symcc compares two policy sets over one symbolic request, so the user's direct request is
//! expressed inside the agent's environment by a derived set. Each policy becomes its
//! *user-direct form*, which evaluates on the agent's request `r` exactly as the original
//! evaluates on the direct request `r'`:
//!
//! - `principal` becomes `context.user`, which is `r'`'s principal. A principal scope becomes a
//!   condition on `context.user`: `== User::"x"`, `in E` and `is User [in E]` keep their meaning.
//!   A policy scoped to another type (`== Agent::…`, `is Agent`) cannot match a `User` principal
//!   and is left out.
//! - `context.delegation.depth` becomes `0`. On `r'`, `chain` and `actors` are empty sets, and
//!   Cedar cannot write an empty set literal, so each use becomes its value on an empty set:
//!   `contains` and `containsAny` are `false`, `isEmpty()` is `true`, `containsAll` of it is
//!   `true`, and `S.containsAll(it)` is `true`. Any other use of `context.delegation` is not
//!   rewritten: the environment is then *unknown*.
//! - `context.agent.verified` becomes `false`, and `context.agent.id` and `trust_domain` become
//!   `""`, as for a call without an agent. Any other use of `context.agent` is unknown.
//!
//! Then, in each `Agent` environment, `check_implies(original, derived)` holds exactly when no
//! agent request is allowed that its user's direct request is not. Each counterexample is
//! confirmed twice by Cedar's authorizer: the agent request is allowed by the original set, and
//! the direct request, built for real (`principal` = `context.user`, the context rewritten), is
//! denied by the original set in the `User` environment.
//!
//! **Exemptions.** A permit annotated `@delegation_exemption("why")` legitimately lets agents do
//! what users cannot. It enters the derived set unchanged, so it is never reported, and the report
//! lists it by name.
//!
//! What it cannot express: a policy that reads `principal`'s own attributes reads the user's
//! under the rewrite (they are `r'`'s principal), which is the intent; a schema where
//! `context.user` is not a `User` is refused at load by the author contract.

use super::solver::{Answer, Solver};
use agentgate_engine::authorizer::Authorizer;
use cedar_policy::{Decision, Effect, Policy, PolicyId, PolicySet, RequestEnv, Schema};
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicySet, solver::LocalSolver};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// The annotation that exempts a permit.
pub const EXEMPTION: &str = "delegation_exemption";

/// One `Agent` environment's answer.
#[derive(Debug, Clone, Serialize)]
pub struct EnvResult {
    /// The action.
    pub action: String,
    /// The resource type.
    pub resource: String,
    /// The answer.
    #[serde(flatten)]
    pub finding: Finding,
}

/// Does delegation amplify here?
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Finding {
    /// Proved: every allowed agent request is allowed to its user directly.
    Never,
    /// An agent request that is allowed while its user's direct request is denied.
    Amplifies {
        /// The agent's request and the entities.
        example: Value,
        /// The policies that allowed the agent.
        agent_allowed_by: Vec<String>,
    },
    /// Not decided, and why: never read as "never".
    Unknown {
        /// Why.
        reason: String,
    },
}

/// The whole analysis.
#[derive(Debug, Clone, Serialize)]
pub struct DelegationReport {
    /// The solver's version line.
    pub solver: String,
    /// Exempted permits: `(id, why)`.
    pub exemptions: Vec<(String, String)>,
    /// Per `Agent` environment.
    pub environments: Vec<EnvResult>,
    /// Milliseconds.
    pub millis: u128,
}

impl DelegationReport {
    /// 1 when delegation amplifies anywhere; else 2 when anything is unknown; else 0.
    pub fn exit_code(&self) -> u8 {
        if self.environments.iter().any(|e| matches!(e.finding, Finding::Amplifies { .. })) {
            1
        } else if self.environments.iter().any(|e| matches!(e.finding, Finding::Unknown { .. })) {
            2
        } else {
            0
        }
    }

    /// The report as text.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for e in &self.environments {
            let _ = match &e.finding {
                Finding::Never => writeln!(out, "Agent, {}, {}: an agent never does more than its user (proved)", e.action, e.resource),
                Finding::Unknown { reason } => writeln!(out, "Agent, {}, {}: UNKNOWN ({reason})", e.action, e.resource),
                Finding::Amplifies { example, agent_allowed_by } => writeln!(
                    out,
                    "Agent, {}, {}: AMPLIFIES: the agent is allowed by [{}] where its user directly is denied, for example\n    {example}",
                    e.action,
                    e.resource,
                    agent_allowed_by.join(", ")
                ),
            };
        }
        for (id, why) in &self.exemptions {
            let _ = writeln!(out, "exempted: `{id}`: {why}");
        }
        let amplifying = self.environments.iter().filter(|e| matches!(e.finding, Finding::Amplifies { .. })).count();
        let unknown = self.environments.iter().filter(|e| matches!(e.finding, Finding::Unknown { .. })).count();
        let _ = writeln!(
            out,
            "{} agent environments ({}): amplifies in {amplifying}, unknown in {unknown}, {} exemption(s) ({} ms)",
            self.environments.len(),
            self.solver,
            self.exemptions.len(),
            self.millis
        );
        out
    }
}

/// Checks every `Agent` environment of `set`'s schema.
pub async fn delegation(set: &Authorizer, solver: &mut Solver, solver_version: String) -> DelegationReport {
    let started = std::time::Instant::now();
    let schema = set.schema();
    let original = set.policy_set();
    let mut exemptions = Vec::new();
    let derived = derived_set(original, &mut exemptions);
    let mut envs: Vec<RequestEnv> = schema.request_envs().filter(|e| e.principal().to_string() == "Agent").collect();
    envs.sort_by_key(|e| (e.action().to_string(), e.resource().to_string()));
    let mut environments = Vec::new();
    for env in &envs {
        let finding = match &derived {
            Err(reason) => Finding::Unknown { reason: reason.clone() },
            Ok(derived) => check(original, derived, env, schema, solver).await,
        };
        environments.push(EnvResult { action: env.action().to_string(), resource: env.resource().to_string(), finding });
    }
    DelegationReport { solver: solver_version, exemptions, environments, millis: started.elapsed().as_millis() }
}

async fn check(original: &PolicySet, derived: &PolicySet, env: &RequestEnv, schema: &Schema, solver: &mut Solver) -> Finding {
    let compiled = |set: &PolicySet, which: &str| CompiledPolicySet::compile(set, env, schema).map_err(|e| format!("the {which} set does not compile: {e}"));
    let (orig_c, derived_c) = match (compiled(original, "policy"), compiled(derived, "user-direct")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(reason), _) | (_, Err(reason)) => return Finding::Unknown { reason },
    };
    match solver.ask(async |c: &mut CedarSymCompiler<LocalSolver>| c.check_implies_with_counterexample_opt(&orig_c, &derived_c).await).await {
        Answer::Holds => Finding::Never,
        Answer::Unknown(reason) => Finding::Unknown { reason },
        Answer::Counterexample(example) => confirm(original, schema, &example),
    }
}

/// Confirms a counterexample with Cedar: the agent request is allowed, and the user's direct
/// request, built for real, is denied.
fn confirm(original: &PolicySet, schema: &Schema, example: &cedar_policy_symcc::Env) -> Finding {
    let unconfirmed = |why: &str| Finding::Unknown { reason: format!("the solver's example is not confirmed: {why}") };
    let authorizer = cedar_policy::Authorizer::new();
    let agent = authorizer.is_authorized(&example.request, original, &example.entities);
    if agent.decision() != Decision::Allow {
        return unconfirmed("the agent's request is not allowed");
    }
    let (Some(action), Some(resource), Some(context)) = (example.request.action(), example.request.resource(), example.request.context()) else {
        return unconfirmed("the request is incomplete");
    };
    let Ok(mut context_json) = context.to_json_value() else { return unconfirmed("its context cannot be read") };
    let Some(user) = context_json.get("user").and_then(|u| u.get("__entity")).cloned() else { return unconfirmed("it has no `context.user`") };
    let Ok(user) = cedar_policy::EntityUid::from_json(user) else { return unconfirmed("`context.user` is not an entity") };
    if let Some(object) = context_json.as_object_mut() {
        if object.contains_key("delegation") {
            object.insert("delegation".into(), json!({"depth": 0, "chain": [], "actors": []}));
        }
        if object.contains_key("agent") {
            object.insert("agent".into(), json!({"verified": false, "trust_domain": "", "id": ""}));
        }
    }
    let direct = cedar_policy::Context::from_json_value(context_json, Some((schema, action)))
        .map_err(|e| e.to_string())
        .and_then(|ctx| cedar_policy::Request::new(user, action.clone(), resource.clone(), ctx, Some(schema)).map_err(|e| e.to_string()));
    let direct = match direct {
        Ok(r) => r,
        Err(e) => return unconfirmed(&format!("the direct request cannot be built ({e})")),
    };
    if authorizer.is_authorized(&direct, original, &example.entities).decision() != Decision::Deny {
        return unconfirmed("the user's direct request is allowed too");
    }
    let uid = |u: Option<&cedar_policy::EntityUid>| u.map(ToString::to_string);
    let example_json = json!({
        "request": {"principal": uid(example.request.principal()), "action": action.to_string(), "resource": resource.to_string(), "context": context.to_json_value().unwrap_or(Value::Null)},
        "entities": example.entities.to_json_value().unwrap_or(Value::Null),
    });
    let mut by: Vec<String> = agent.diagnostics().reason().map(ToString::to_string).collect();
    by.sort();
    Finding::Amplifies { example: example_json, agent_allowed_by: by }
}

/// The user-direct form of every policy (exempted permits unchanged), or why it cannot be built.
fn derived_set(original: &PolicySet, exemptions: &mut Vec<(String, String)>) -> Result<PolicySet, String> {
    if original.templates().next().is_some() || original.policies().any(|p| !p.is_static()) {
        return Err("cedar-policy-symcc does not analyze templates or template-linked policies".into());
    }
    let mut policies: Vec<&Policy> = original.policies().collect();
    policies.sort_by_key(|p| p.id().to_string());
    let mut derived = Vec::new();
    for policy in policies {
        let id = policy.id().to_string();
        if let Some(why) = policy.annotation(EXEMPTION) {
            if policy.effect() != Effect::Permit {
                return Err(format!("`{id}`: only a permit can carry @{EXEMPTION}"));
            }
            exemptions.push((id, why.to_owned()));
            derived.push(policy.clone());
            continue;
        }
        let est = policy.to_json().map_err(|e| format!("`{id}`: {e}"))?;
        let Some(direct) = user_direct(est).map_err(|e| format!("`{id}`: {e}"))? else { continue };
        let direct = Policy::from_json(Some(PolicyId::new(format!("{id} (as the user)"))), direct)
            .map_err(|e| format!("`{id}`: its user-direct form is not a policy: {e}"))?;
        derived.push(direct);
    }
    PolicySet::from_policies(derived).map_err(|e| e.to_string())
}

/// The user-direct form of a policy in Cedar's JSON form (see the module docs); `None` when it
/// cannot match a `User` principal.
pub fn user_direct(mut est: Value) -> Result<Option<Value>, String> {
    let user = json!({".": {"left": {"Var": "context"}, "attr": "user"}});
    let scope = est.get("principal").cloned().unwrap_or(json!({"op": "All"}));
    let entity_cond = |op: &str, entity: &Value| json!({ op: {"left": user.clone(), "right": {"Value": {"__entity": entity}}} });
    let condition = match scope.get("op").and_then(Value::as_str) {
        Some("All") => None,
        Some("==") => match scope.get("entity") {
            Some(e) if e.get("type").and_then(Value::as_str) == Some("User") => Some(entity_cond("==", e)),
            Some(_) => return Ok(None),
            None => return Err("a template slot in the principal scope".into()),
        },
        Some("in") => match scope.get("entity") {
            Some(e) => Some(entity_cond("in", e)),
            None => return Err("a template slot in the principal scope".into()),
        },
        Some("is") => {
            if scope.get("entity_type").and_then(Value::as_str) != Some("User") {
                return Ok(None);
            }
            match scope.get("in").map(|i| i.get("entity")) {
                None => None,
                Some(Some(e)) => Some(entity_cond("in", e)),
                Some(None) => return Err("a template slot in the principal scope".into()),
            }
        }
        other => return Err(format!("principal scope `{}` is not understood", other.unwrap_or("?"))),
    };
    if let Some(object) = est.as_object_mut() {
        object.insert("principal".into(), json!({"op": "All"}));
        let mut conditions = object.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        for c in &mut conditions {
            if let Some(body) = c.get_mut("body") {
                *body = rewrite(body.take())?;
            }
        }
        if let Some(condition) = condition {
            conditions.push(json!({"kind": "when", "body": condition}));
        }
        object.insert("conditions".into(), Value::Array(conditions));
    }
    Ok(Some(est))
}

/// `context.<attr>` as Cedar's JSON form.
fn context_attr(attr: &str) -> Value {
    json!({".": {"left": {"Var": "context"}, "attr": attr}})
}

/// `context.<group>.<attr>`.
fn context_path(group: &str, attr: &str) -> Value {
    json!({".": {"left": context_attr(group), "attr": attr}})
}

fn is_empty_on_direct(e: &Value) -> bool {
    *e == context_path("delegation", "chain") || *e == context_path("delegation", "actors")
}

fn rewrite(expr: Value) -> Result<Value, String> {
    if expr == json!({"Var": "principal"}) {
        return Ok(json!({".": {"left": {"Var": "context"}, "attr": "user"}}));
    }
    if expr == context_path("delegation", "depth") {
        return Ok(json!({"Value": 0}));
    }
    if expr == context_path("agent", "verified") {
        return Ok(json!({"Value": false}));
    }
    if expr == context_path("agent", "id") || expr == context_path("agent", "trust_domain") {
        return Ok(json!({"Value": ""}));
    }
    if let Some((op, body)) = expr.as_object().and_then(|o| (o.len() == 1).then(|| o.iter().next()).flatten()) {
        let left = body.get("left");
        let right = body.get("right");
        let empty = |v: Option<&Value>| v.is_some_and(is_empty_on_direct);
        match op.as_str() {
            "contains" | "containsAny" if empty(left) || (op == "containsAny" && empty(right)) => return Ok(json!({"Value": false})),
            "containsAll" if empty(right) => return Ok(json!({"Value": true})),
            "containsAll" if empty(left) => {
                let other = rewrite(right.cloned().unwrap_or(Value::Null))?;
                return Ok(json!({"isEmpty": {"arg": other}}));
            }
            "isEmpty" if body.get("arg").is_some_and(is_empty_on_direct) => return Ok(json!({"Value": true})),
            _ => {}
        }
    }
    if expr == context_attr("delegation") || expr == context_attr("agent") || is_empty_on_direct(&expr) {
        return Err(format!("a use of `{}` that the user-direct rewrite does not cover", describe(&expr)));
    }
    match expr {
        Value::Object(map) => {
            // Literal values are data, not expressions: left as they are.
            if map.contains_key("Value") {
                return Ok(Value::Object(map));
            }
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k, rewrite(v)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items.into_iter().map(rewrite).collect::<Result<Vec<_>, _>>().map(Value::Array),
        other => Ok(other),
    }
}

fn describe(expr: &Value) -> String {
    if *expr == context_attr("delegation") {
        "context.delegation".into()
    } else if *expr == context_attr("agent") {
        "context.agent".into()
    } else if *expr == context_path("delegation", "chain") {
        "context.delegation.chain".into()
    } else {
        "context.delegation.actors".into()
    }
}
