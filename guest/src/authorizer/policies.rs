//! Loading policy files: one `PolicySet` whose ids are the authors' `@id` annotations or, failing
//! that, `file:line`, so that decisions name policies people can find.

use super::diagnostics::{Problem, position};
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
    /// Source of each policy, by id.
    pub sources: HashMap<PolicyId, PolicySource>,
}

/// Parses every file; unusable policies are problems naming file, line and column.
pub fn load(files: &[(String, String)]) -> Result<LoadedPolicies, Vec<Problem>> {
    let mut set = PolicySet::new();
    let mut sources = HashMap::new();
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
        for policy in policies {
            let written = policy.to_string();
            let offset = text.get(search_from..).and_then(|rest| rest.find(&written)).map(|i| i + search_from);
            let line = offset.map_or(0, |o| position(text, o).line);
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
            set.add(policy.new_id(id.clone())).map_err(|e| vec![Problem::general(&format!("{file}:{line}"), e.to_string())])?;
            sources.insert(id, PolicySource { file: file.clone(), line, text: written });
        }
    }
    Ok(LoadedPolicies { set, sources })
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
    fn syntax_errors_name_file_line_and_column() {
        let err = load(&files(&[("ok.cedar", "permit(principal, action, resource);"), ("bad.cedar", "permit(principal, action, resource);\npermit(principal, action resource);")]));
        let err = super::super::diagnostics::lines(&err.err().unwrap_or_default());
        assert!(err.starts_with("bad.cedar:2:"), "{err}");
    }

    #[test]
    fn duplicate_ids_are_errors() {
        let err = load(&files(&[("a.cedar", "@id(\"x\")\npermit(principal, action, resource);\n@id(\"x\")\nforbid(principal, action, resource);")]));
        assert_eq!(err.err().map(|p| super::super::diagnostics::lines(&p)).as_deref(), Some("a.cedar:3: policy id `x` is already used at a.cedar:1"));
    }
}
