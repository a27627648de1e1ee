//! `agentgate analyze diff OLD NEW`: per request environment of the new schema (principal type ×
//! action × resource type), does NEW permit a request OLD denies ("grants"), and does OLD permit
//! one NEW denies ("revokes")? Each is one subsumption query (`check_implies`) to the solver;
//! each counterexample is decided again by Cedar's authorizer under both sets and reported only
//! if it shows the difference.
//!
//! Both sets are compiled against the new schema: a change of schema that the old policies do
//! not type-check against is reported per environment as unknown.

use super::solver::{Answer, Solver};
use agentgate_engine::authorizer::Authorizer;
use cedar_policy::{Decision, PolicySet, RequestEnv, Response};
use cedar_policy_symcc::{CompiledPolicySet, Env};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// One request environment's answers.
#[derive(Debug, Clone, Serialize)]
pub struct EnvResult {
    /// The principal type.
    pub principal: String,
    /// The action.
    pub action: String,
    /// The resource type.
    pub resource: String,
    /// Does NEW allow a request OLD denies?
    pub grants: Finding,
    /// Does OLD allow a request NEW denies?
    pub revokes: Finding,
}

/// One question's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Finding {
    /// Proved: no such request exists.
    None,
    /// Such a request, confirmed by Cedar's authorizer.
    Found(Counterexample),
    /// Not decided, and why: never read as "none".
    Unknown {
        /// Why.
        reason: String,
    },
}

/// A request and entities that the two sets decide differently.
#[derive(Debug, Clone, Serialize)]
pub struct Counterexample {
    /// `principal`, `action`, `resource` (`Type::"id"`) and `context` (JSON).
    pub request: Value,
    /// The entities, in Cedar's JSON form.
    pub entities: Value,
    /// OLD's decision and its determining policies.
    pub old: Decided,
    /// NEW's decision and its determining policies.
    pub new: Decided,
}

/// A decision by Cedar's authorizer.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    /// Allowed.
    pub allowed: bool,
    /// The determining policies.
    pub policies: Vec<String>,
}

/// The whole diff.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The solver's version line.
    pub solver: String,
    /// Per environment.
    pub environments: Vec<EnvResult>,
    /// Milliseconds for all queries.
    pub millis: u128,
}

/// Exit status: NEW grants something OLD did not (that wins: it is what CI gates on).
pub const EXIT_GRANTS: u8 = 1;
/// Exit status: some question is unknown.
pub const EXIT_UNKNOWN: u8 = 2;

impl DiffReport {
    /// 1 when NEW grants anything new; else 2 when any answer is unknown; else 0.
    pub fn exit_code(&self) -> u8 {
        let found = |f: &Finding| matches!(f, Finding::Found(_));
        let unknown = |f: &Finding| matches!(f, Finding::Unknown { .. });
        if self.environments.iter().any(|e| found(&e.grants)) {
            EXIT_GRANTS
        } else if self.environments.iter().any(|e| unknown(&e.grants) || unknown(&e.revokes)) {
            EXIT_UNKNOWN
        } else {
            0
        }
    }

    /// The report as text.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for e in &self.environments {
            let _ = writeln!(out, "{}, {}, {}:", e.principal, e.action, e.resource);
            for (question, finding) in [("NEW grants what OLD denied", &e.grants), ("NEW denies what OLD granted", &e.revokes)] {
                match finding {
                    Finding::None => {
                        let _ = writeln!(out, "  {question}: no (proved)");
                    }
                    Finding::Unknown { reason } => {
                        let _ = writeln!(out, "  {question}: UNKNOWN ({reason})");
                    }
                    Finding::Found(c) => {
                        let _ = writeln!(out, "  {question}: YES, for example");
                        let _ = writeln!(out, "    request   {}", c.request);
                        let _ = writeln!(out, "    entities  {}", c.entities);
                        let verdict = |d: &Decided| format!("{} by [{}]", if d.allowed { "allow" } else { "deny" }, d.policies.join(", "));
                        let _ = writeln!(out, "    old: {}   new: {}", verdict(&c.old), verdict(&c.new));
                    }
                }
            }
        }
        let count = |f: fn(&EnvResult) -> &Finding, want: fn(&Finding) -> bool| self.environments.iter().filter(|e| want(f(e))).count();
        let found = |f: &Finding| matches!(f, Finding::Found(_));
        let unknown = |f: &Finding| matches!(f, Finding::Unknown { .. });
        let _ = writeln!(
            out,
            "\n{} environments ({}): NEW grants more in {}, less in {}; unknown in {} ({} ms)",
            self.environments.len(),
            self.solver,
            count(|e| &e.grants, found),
            count(|e| &e.revokes, found),
            self.environments.iter().filter(|e| unknown(&e.grants) || unknown(&e.revokes)).count(),
            self.millis,
        );
        out
    }
}

/// Compares `old` and `new` in every request environment of `new`'s schema.
pub async fn diff(old: &Authorizer, new: &Authorizer, solver: &mut Solver, solver_version: String) -> DiffReport {
    let started = std::time::Instant::now();
    let schema = new.schema();
    let mut environments = Vec::new();
    let templated = [old.policy_set(), new.policy_set()].iter().any(|set| set.templates().next().is_some() || set.policies().any(|p| !p.is_static()));
    for env in schema.request_envs() {
        let (grants, revokes) = if templated {
            let reason = "cedar-policy-symcc does not analyze templates or template-linked policies".to_owned();
            (Finding::Unknown { reason: reason.clone() }, Finding::Unknown { reason })
        } else {
            match (compile(old.policy_set(), &env, schema, "old"), compile(new.policy_set(), &env, schema, "new")) {
                (Ok(old_c), Ok(new_c)) => {
                    let grants = judge(solver.implies(&new_c, &old_c).await, old.policy_set(), new.policy_set(), true);
                    let revokes = judge(solver.implies(&old_c, &new_c).await, old.policy_set(), new.policy_set(), false);
                    (grants, revokes)
                }
                (Err(reason), _) | (_, Err(reason)) => (Finding::Unknown { reason: reason.clone() }, Finding::Unknown { reason }),
            }
        };
        environments.push(EnvResult {
            principal: env.principal().to_string(),
            action: env.action().to_string(),
            resource: env.resource().to_string(),
            grants,
            revokes,
        });
    }
    // Cedar lists environments in hash order: sort them so reports compare across runs.
    environments.sort_by(|a, b| (&a.principal, &a.action, &a.resource).cmp(&(&b.principal, &b.action, &b.resource)));
    DiffReport { solver: solver_version, environments, millis: started.elapsed().as_millis() }
}

fn compile(set: &PolicySet, env: &RequestEnv, schema: &cedar_policy::Schema, which: &str) -> Result<CompiledPolicySet, String> {
    CompiledPolicySet::compile(set, env, schema).map_err(|e| format!("the {which} policies do not compile for this environment: {e}"))
}

/// A solver answer as a finding. `new_allows`: the counterexample must be allowed by NEW and
/// denied by OLD (else the reverse); one that Cedar does not confirm is unknown.
fn judge(answer: Answer, old: &PolicySet, new: &PolicySet, new_allows: bool) -> Finding {
    match answer {
        Answer::Holds => Finding::None,
        Answer::Unknown(reason) => Finding::Unknown { reason },
        Answer::Counterexample(env) => {
            let (old_d, new_d) = (decide(old, &env), decide(new, &env));
            if new_d.allowed == new_allows && old_d.allowed != new_allows {
                match describe(&env) {
                    Ok((request, entities)) => Finding::Found(Counterexample { request, entities, old: old_d, new: new_d }),
                    Err(reason) => Finding::Unknown { reason },
                }
            } else {
                Finding::Unknown { reason: "the solver's counterexample is not confirmed by Cedar's authorizer".into() }
            }
        }
    }
}

fn decide(set: &PolicySet, env: &Env) -> Decided {
    let response: Response = cedar_policy::Authorizer::new().is_authorized(&env.request, set, &env.entities);
    let mut policies: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
    policies.sort();
    Decided { allowed: response.decision() == Decision::Allow, policies }
}

fn describe(env: &Env) -> Result<(Value, Value), String> {
    let uid = |u: Option<&cedar_policy::EntityUid>| u.map(ToString::to_string);
    let context = match env.request.context() {
        Some(c) => c.to_json_value().map_err(|e| format!("the counterexample's context cannot be shown: {e}"))?,
        None => Value::Null,
    };
    let request = json!({
        "principal": uid(env.request.principal()),
        "action": uid(env.request.action()),
        "resource": uid(env.request.resource()),
        "context": context,
    });
    let entities = env.entities.to_json_value().map_err(|e| format!("the counterexample's entities cannot be shown: {e}"))?;
    Ok((request, entities))
}
