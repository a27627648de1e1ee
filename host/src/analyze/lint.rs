//! `agentgate analyze lint DIR`: proved properties of one policy set, per request environment of
//! its schema, each with a counterexample or the proof's statement:
//!
//! - **can err**: a policy that errs on some well-typed request (`check_never_errors`); the
//!   counterexample is confirmed by Cedar's authorizer reporting the error.
//! - **never applies**: a policy that matches no request in any environment (`check_never_matches`
//!   everywhere): its condition is unsatisfiable or its scope names nothing the schema allows.
//! - **never allows**: a `permit` that applies somewhere, but every request it matches is denied
//!   by the set's `forbid`s (`check_always_denies` of it with all forbids, in each environment).
//! - **no one can perform**: an action every request for which the whole set denies.
//!
//! Like `diff`, the requests range over everything the schema allows, not only what the engine
//! builds (docs: "Analyze").

use super::solver::{Answer, Solver};
use agentgate_engine::authorizer::Authorizer;
use cedar_policy::{Effect, Policy, PolicySet};
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicy, CompiledPolicySet, solver::LocalSolver};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// One finding.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A policy errs on a well-typed request.
    CanErr {
        /// The policy id.
        policy: String,
        /// The environment, `Principal, Action, Resource`.
        environment: String,
        /// The request and entities, and Cedar's error.
        example: Value,
    },
    /// A policy matches no request at all.
    NeverApplies {
        /// The policy id.
        policy: String,
    },
    /// A permit whose every match is forbidden.
    NeverAllows {
        /// The policy id.
        policy: String,
    },
    /// An action every request for which is denied.
    NoOneCanPerform {
        /// The action.
        action: String,
    },
    /// A question the solver did not answer: never read as "fine".
    Unknown {
        /// What was asked.
        question: String,
        /// Why it is unknown.
        reason: String,
    },
}

/// The lint of one set.
#[derive(Debug, Clone, Serialize)]
pub struct LintReport {
    /// The solver's version line.
    pub solver: String,
    /// Policies in the set.
    pub policies: usize,
    /// Request environments of the schema.
    pub environments: usize,
    /// What was found, in a stable order.
    pub findings: Vec<Finding>,
    /// Milliseconds for all queries.
    pub millis: u128,
}

impl LintReport {
    /// 1 when anything was found; else 2 when anything is unknown; else 0.
    pub fn exit_code(&self) -> u8 {
        if self.findings.iter().any(|f| !matches!(f, Finding::Unknown { .. })) {
            1
        } else if self.findings.is_empty() {
            0
        } else {
            2
        }
    }

    /// The report as text.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let _ = match f {
                Finding::CanErr { policy, environment, example } => writeln!(out, "policy `{policy}` can err ({environment}), for example:\n    {example}"),
                Finding::NeverApplies { policy } => writeln!(out, "policy `{policy}` never applies: it matches no request in any environment (proved)"),
                Finding::NeverAllows { policy } => writeln!(out, "permit `{policy}` never allows: every request it matches is forbidden (proved)"),
                Finding::NoOneCanPerform { action } => writeln!(out, "action {action}: no one can perform it, every request is denied (proved)"),
                Finding::Unknown { question, reason } => writeln!(out, "UNKNOWN: {question}: {reason}"),
            };
        }
        let _ = writeln!(
            out,
            "{} policies, {} environments ({}): {} finding(s), {} unknown ({} ms)",
            self.policies,
            self.environments,
            self.solver,
            self.findings.iter().filter(|f| !matches!(f, Finding::Unknown { .. })).count(),
            self.findings.iter().filter(|f| matches!(f, Finding::Unknown { .. })).count(),
            self.millis
        );
        out
    }
}

/// Lints `set` in every request environment of its schema.
pub async fn lint(set: &Authorizer, solver: &mut Solver, solver_version: String) -> LintReport {
    let started = std::time::Instant::now();
    let schema = set.schema();
    let policies: Vec<&Policy> = set.policy_set().policies().collect();
    let forbids: Vec<Policy> = policies.iter().filter(|p| p.effect() == Effect::Forbid).map(|p| (*p).clone()).collect();
    let mut findings = Vec::new();
    let mut applies: BTreeSet<String> = BTreeSet::new();
    let mut allows: BTreeSet<String> = BTreeSet::new();
    // Per action: does some environment allow some request?
    let mut performable: BTreeMap<String, bool> = BTreeMap::new();
    let mut environments = 0;
    if set.policy_set().templates().next().is_some() || policies.iter().any(|p| !p.is_static()) {
        let reason = "cedar-policy-symcc does not analyze templates or template-linked policies".to_owned();
        findings.push(Finding::Unknown { question: "every question".into(), reason });
        return LintReport { solver: solver_version, policies: policies.len(), environments: 0, findings, millis: started.elapsed().as_millis() };
    }
    let mut envs: Vec<_> = schema.request_envs().collect();
    envs.sort_by_key(|e| (e.principal().to_string(), e.action().to_string(), e.resource().to_string()));
    for env in &envs {
        environments += 1;
        let name = format!("{}, {}, {}", env.principal(), env.action(), env.resource());
        let action = env.action().to_string();
        for policy in &policies {
            let id = policy.id().to_string();
            let compiled = match CompiledPolicy::compile(policy, env, schema) {
                Ok(c) => c,
                Err(e) => {
                    findings.push(Finding::Unknown { question: format!("policy `{id}` in {name}"), reason: format!("it does not compile: {e}") });
                    continue;
                }
            };
            match solver.ask(async |c: &mut CedarSymCompiler<LocalSolver>| c.check_never_errors_with_counterexample_opt(&compiled).await).await {
                Answer::Holds => {}
                Answer::Counterexample(example) => findings.push(can_err(&id, &name, policy, &example)),
                Answer::Unknown(reason) => findings.push(Finding::Unknown { question: format!("can `{id}` err in {name}"), reason }),
            }
            match solver.ask(async |c: &mut CedarSymCompiler<LocalSolver>| c.check_never_matches_with_counterexample_opt(&compiled).await).await {
                Answer::Holds => continue,
                Answer::Counterexample(_) => {
                    applies.insert(id.clone());
                }
                Answer::Unknown(reason) => {
                    // Unknown whether it applies: it must not be reported as never applying.
                    applies.insert(id.clone());
                    findings.push(Finding::Unknown { question: format!("does `{id}` apply in {name}"), reason });
                }
            }
            if policy.effect() == Effect::Permit {
                let mut with_forbids: Vec<Policy> = forbids.clone();
                with_forbids.push((*policy).clone());
                match compile_set(with_forbids, env, schema) {
                    Ok(compiled_set) => {
                        match solver.ask(async |c: &mut CedarSymCompiler<LocalSolver>| c.check_always_denies_with_counterexample_opt(&compiled_set).await).await
                        {
                            Answer::Holds => {}
                            Answer::Counterexample(_) => {
                                allows.insert(id.clone());
                            }
                            Answer::Unknown(reason) => {
                                allows.insert(id.clone());
                                findings.push(Finding::Unknown { question: format!("can `{id}` allow in {name}"), reason });
                            }
                        }
                    }
                    Err(reason) => {
                        allows.insert(id.clone());
                        findings.push(Finding::Unknown { question: format!("can `{id}` allow in {name}"), reason });
                    }
                }
            }
        }
        let whole = match CompiledPolicySet::compile(set.policy_set(), env, schema) {
            Ok(c) => solver.ask(async |c2: &mut CedarSymCompiler<LocalSolver>| c2.check_always_denies_with_counterexample_opt(&c).await).await,
            Err(e) => Answer::Unknown(format!("the set does not compile: {e}")),
        };
        let can = match whole {
            Answer::Holds => false,
            Answer::Counterexample(_) => true,
            Answer::Unknown(reason) => {
                findings.push(Finding::Unknown { question: format!("is anything allowed in {name}"), reason });
                true
            }
        };
        *performable.entry(action).or_insert(false) |= can;
    }
    for policy in &policies {
        let id = policy.id().to_string();
        if !applies.contains(&id) {
            findings.push(Finding::NeverApplies { policy: id });
        } else if policy.effect() == Effect::Permit && !allows.contains(&id) {
            findings.push(Finding::NeverAllows { policy: id });
        }
    }
    for (action, can) in performable {
        if !can {
            findings.push(Finding::NoOneCanPerform { action });
        }
    }
    // Cedar iterates policies in hash order: sort so reports compare across runs.
    findings.sort_by_cached_key(|f| serde_json::to_string(f).unwrap_or_default());
    LintReport { solver: solver_version, policies: policies.len(), environments, findings, millis: started.elapsed().as_millis() }
}

fn compile_set(policies: Vec<Policy>, env: &cedar_policy::RequestEnv, schema: &cedar_policy::Schema) -> Result<CompiledPolicySet, String> {
    let set = PolicySet::from_policies(policies).map_err(|e| e.to_string())?;
    CompiledPolicySet::compile(&set, env, schema).map_err(|e| format!("it does not compile: {e}"))
}

/// A "can err" finding, with Cedar's own error for the example (or unknown if Cedar does not
/// err on it).
fn can_err(id: &str, environment: &str, policy: &Policy, example: &cedar_policy_symcc::Env) -> Finding {
    let Ok(alone) = PolicySet::from_policies([policy.clone()]) else {
        return Finding::Unknown { question: format!("can `{id}` err in {environment}"), reason: "the policy cannot be evaluated alone".into() };
    };
    let response = cedar_policy::Authorizer::new().is_authorized(&example.request, &alone, &example.entities);
    let errors: Vec<String> = response.diagnostics().errors().map(ToString::to_string).collect();
    if errors.is_empty() {
        return Finding::Unknown {
            question: format!("can `{id}` err in {environment}"),
            reason: "the solver's example is not confirmed by Cedar's authorizer".into(),
        };
    }
    let uid = |u: Option<&cedar_policy::EntityUid>| u.map(ToString::to_string);
    let context = example.request.context().and_then(|c| c.to_json_value().ok()).unwrap_or(Value::Null);
    let example = serde_json::json!({
        "request": {"principal": uid(example.request.principal()), "action": uid(example.request.action()), "resource": uid(example.request.resource()), "context": context},
        "entities": example.entities.to_json_value().unwrap_or(Value::Null),
        "errors": errors,
    });
    Finding::CanErr { policy: id.to_owned(), environment: environment.to_owned(), example }
}
