//! Loading policy files: one `PolicySet` whose ids are the authors' `@id` annotations or, failing
//! that, `file:line`, so that decisions name policies people can find.

use super::diagnostics::Problem;
use cedar_policy::{Policy, PolicyId, PolicySet};
use std::collections::HashMap;
use std::str::FromStr;

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// File name.
    pub file: String,
    /// 1-based line of the policy's first character.
    pub line: usize,
    /// The policy's text as written.
    pub text: String,
}

/// Policies with their sources.
#[derive(Debug, Clone)]
pub struct LoadedPolicies {
    /// The set Cedar evaluates.
    pub set: PolicySet,
    /// Its `permit` policies alone: which permits a call satisfies, whatever forbids apply
    /// (`tools/list` filtering).
    pub permits: PolicySet,
    /// Source of each policy, by id.
    pub sources: HashMap<PolicyId, PolicySource>,
    /// What the engine reads from each policy beyond Cedar's evaluation, by id.
    pub traits: HashMap<PolicyId, PolicyTraits>,
}

/// What the engine knows about a policy from its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyTraits {
    /// It is a `permit`.
    pub permit: bool,
    /// `@scope("…")`: the token scope this permit asks for, so that a call denied for want of it
    /// can be answered `insufficient_scope` with that scope (RFC 6750 §3.1 step-up).
    pub step_up_scope: Option<String>,
    /// Its conditions may read `context.input` (or the whole `context`): its answer can depend on
    /// the caller's arguments.
    pub reads_input: bool,
}

impl PolicyTraits {
    fn of(policy: &Policy) -> Result<Self, String> {
        let json = policy.to_json().map_err(|e| e.to_string())?;
        Ok(PolicyTraits {
            permit: policy.effect() == cedar_policy::Effect::Permit,
            step_up_scope: policy.annotation("scope").map(str::to_owned),
            reads_input: reads_input(&json),
        })
    }
}

/// Whether a policy's JSON form (Cedar's EST) may read `context.input`: an attribute access or
/// `has` on `context` naming `input`, or `context` used as a whole (compared, passed on). A
/// conservative answer: `true` whenever unsure.
fn reads_input(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    let context = serde_json::json!({ "Var": "context" });
    match v {
        Value::Object(m) => {
            for op in [".", "has"] {
                if let Some(Value::Object(access)) = m.get(op)
                    && access.get("left") == Some(&context)
                {
                    return access.get("attr").and_then(Value::as_str).is_none_or(|attr| attr == "input");
                }
            }
            if v == &context {
                return true;
            }
            m.values().any(reads_input)
        }
        Value::Array(items) => items.iter().any(reads_input),
        _ => false,
    }
}

/// Parses every file; unusable policies are problems naming file, line and column.
pub fn load(files: &[(String, String)]) -> Result<LoadedPolicies, Vec<Problem>> {
    let mut set = PolicySet::new();
    let mut permits = PolicySet::new();
    let mut sources = HashMap::new();
    let mut traits = HashMap::new();
    for (file, text) in files {
        let parsed = PolicySet::from_str(text).map_err(|errors| errors.iter().map(|e| Problem::at(file, text, e)).collect::<Vec<_>>())?;
        if parsed.templates().next().is_some() {
            return Err(vec![Problem::general(file, "policy templates are not supported; write static policies")]);
        }
        // Cedar numbers policies in source order (`policy0`, `policy1`...); keep that order so
        // that fallback ids follow the file.
        let mut policies: Vec<&Policy> = parsed.policies().collect();
        policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
        let mut search_from = 0;
        // Lines are counted from the last policy found, not from the top of the file: counting
        // from the top made loading quadratic (100,000 policies took 4.5 minutes).
        let (mut counted_to, mut line_at) = (0, 1);
        for policy in policies {
            let written = policy.to_string();
            let offset = text.get(search_from..).and_then(|rest| rest.find(&written)).map(|i| i + search_from);
            let line = match offset {
                Some(o) => {
                    line_at += text.get(counted_to..o).map_or(0, |between| between.matches('\n').count());
                    counted_to = o;
                    line_at
                }
                None => 0,
            };
            if let Some(o) = offset {
                search_from = o + written.len();
            }
            let id = match policy.annotation("id") {
                Some(id) if !id.is_empty() => id.to_owned(),
                Some(_) => return Err(vec![Problem::general(&format!("{file}:{line}"), "the `@id` annotation is empty")]),
                None => format!("{file}:{line}"),
            };
            let id = PolicyId::new(id);
            if let Some(first) = sources.get(&id) {
                let first: &PolicySource = first;
                return Err(vec![Problem::general(&format!("{file}:{line}"), format!("policy id `{id}` is already used at {}:{}", first.file, first.line))]);
            }
            let policy_traits = PolicyTraits::of(policy).map_err(|e| vec![Problem::general(&format!("{file}:{line}"), e)])?;
            if policy_traits.step_up_scope.as_deref().is_some_and(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                return Err(vec![Problem::general(&format!("{file}:{line}"), "`@scope` names one scope: a non-empty string without spaces")]);
            }
            if policy_traits.step_up_scope.is_some() && !policy_traits.permit {
                return Err(vec![Problem::general(&format!("{file}:{line}"), "`@scope` belongs on a `permit`: it names the scope that permit asks for")]);
            }
            set.add(policy.new_id(id.clone())).map_err(|e| vec![Problem::general(&format!("{file}:{line}"), e.to_string())])?;
            if policy_traits.permit {
                permits.add(policy.new_id(id.clone())).map_err(|e| vec![Problem::general(&format!("{file}:{line}"), e.to_string())])?;
            }
            traits.insert(id.clone(), policy_traits);
            sources.insert(id, PolicySource { file: file.clone(), line, text: written });
        }
    }
    Ok(LoadedPolicies { set, permits, sources, traits })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect()
    }

    #[test]
    fn ids_come_from_annotations_or_file_and_line() {
        let loaded = load(&files(&[(
            "mail.cedar",
            "// header\n@id(\"read-own\")\npermit(principal, action, resource);\n\nforbid(principal, action, resource)\nwhen { false };\n",
        )]));
        let Ok(loaded) = loaded else { panic!("{loaded:?}") };
        let mut ids: Vec<String> = loaded.set.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        assert_eq!(ids, vec!["mail.cedar:5".to_string(), "read-own".to_string()]);
        assert_eq!(loaded.sources.get(&PolicyId::new("read-own")).map(|s| s.line), Some(2));
    }

    #[test]
    fn every_policy_of_a_long_file_gets_its_own_line() {
        let text: String = (0..300).map(|i| format!("permit(principal, action, resource)\nwhen {{ {i} > 0 }};\n\n")).collect();
        let loaded = load(&files(&[("many.cedar", &text)])).unwrap();
        let mut lines: Vec<usize> = loaded.sources.values().map(|s| s.line).collect();
        lines.sort_unstable();
        assert_eq!(lines, (0..300).map(|i| 1 + 3 * i).collect::<Vec<_>>());
        assert!(loaded.sources.contains_key(&PolicyId::new("many.cedar:898")));
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = load(&files(&[
            ("ok.cedar", "permit(principal, action, resource);"),
            ("bad.cedar", "permit(principal, action, resource);\npermit(principal, action resource);"),
        ]));
        let err = super::super::diagnostics::lines(&err.err().unwrap_or_default());
        assert!(err.starts_with("bad.cedar:2:"), "{err}");
    }

    #[test]
    fn traits_say_which_policies_read_the_input_and_which_scope_a_permit_asks_for() {
        let loaded = load(&files(&[(
            "t.cedar",
            r#"@id("a") @scope("files.write") permit(principal, action, resource) when { context.scopes.contains("files.write") };
               @id("b") forbid(principal, action, resource) when { context.input.path like "/etc/*" };
               @id("c") forbid(principal, action, resource) when { context has input && principal is Agent };
               @id("d") permit(principal, action, resource) when { context.token.age_secs < 60 && resource has owner };
               @id("e") permit(principal, action, resource) when { context == {} };"#,
        )]))
        .unwrap();
        let t = |id: &str| loaded.traits.get(&PolicyId::new(id)).cloned().unwrap();
        assert_eq!(t("a"), PolicyTraits { permit: true, step_up_scope: Some("files.write".into()), reads_input: false });
        assert!(t("b").reads_input && !t("b").permit);
        assert!(t("c").reads_input, "`context has input` depends on the input");
        assert!(!t("d").reads_input);
        assert!(t("e").reads_input, "`context` as a whole includes the input");
        let misplaced = load(&files(&[("t.cedar", "@scope(\"x\") forbid(principal, action, resource);")]));
        assert!(misplaced.is_err());
    }

    #[test]
    fn duplicate_ids_are_errors() {
        let err = load(&files(&[("a.cedar", "@id(\"x\")\npermit(principal, action, resource);\n@id(\"x\")\nforbid(principal, action, resource);")]));
        assert_eq!(err.err().map(|p| super::super::diagnostics::lines(&p)).as_deref(), Some("a.cedar:3: policy id `x` is already used at a.cedar:1"));
    }
}
