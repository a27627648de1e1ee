//! `agentgate analyze`: questions about policy sets answered by Cedar's symbolic compiler
//! (`cedar-policy-symcc`, whose encoding is verified in Lean) and an SMT solver (cvc5), with
//! concrete counterexamples that Cedar's own authorizer confirms. Host-side only: nothing of it
//! enters the component.
//!
//! `diff`: does a new policy set permit anything the old one did not (and the reverse), per
//! request environment of the schema? `lint`: policies that can err, never apply or never allow,
//! and actions no one can perform. `delegation`: no agent can do more than its user. `solver`: the solver process, with a time limit on every
//! query; a query that runs out of time is "unknown", never "safe".

pub mod delegation;
pub mod diff;
pub mod lint;
pub mod solver;

use agentgate_engine::authorizer::{Authorizer, SourceText};
use std::path::Path;

/// Loads a policy directory (`*.cedar` and `schema.cedarschema`) as the engine does: the policies
/// validated strictly against the schema and the author contract.
pub fn load_dir(dir: &Path) -> Result<Authorizer, String> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "cedar"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{}: no `*.cedar` policy files", dir.display()));
    }
    let mut policies = Vec::new();
    for path in &paths {
        policies.push(SourceText { name: path.display().to_string(), text: read(path)? });
    }
    let schema_path = dir.join(crate::config::SCHEMA_FILE);
    let schema = SourceText { name: schema_path.display().to_string(), text: read(&schema_path)? };
    Authorizer::new(&policies, &schema)
}
