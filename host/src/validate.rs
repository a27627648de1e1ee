//! `agentgate validate` as a library: every problem with a configuration, as data — the config
//! file itself, key material, settings, the schema, every policy (strict validation), the routes
//! and the proxy settings — and finally the component's own verdict.

use crate::config::{self, LoadedConfig};
use crate::server::origin::Origins;
use agentgate_engine::Engine;
use agentgate_engine::authorizer::Authorizer;
use agentgate_engine::authorizer::diagnostics::Problem;
use std::path::Path;

/// What validation found; `config` is present when the file itself loaded.
#[derive(Debug)]
pub struct Report {
    /// The loaded configuration (for rendering snippets), if it loaded.
    pub config: Option<LoadedConfig>,
    /// Problems, in the order found.
    pub problems: Vec<Problem>,
    /// Things that work but are likely not meant (e.g. a bare `kid` in the revocation list).
    pub warnings: Vec<String>,
}

/// Validates the configuration at `path`.
pub fn validate(path: &Path) -> Report {
    let file = path.display().to_string();
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => return Report { config: None, problems: vec![Problem::general(&file, e.to_string())], warnings: Vec::new() },
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let authorizer = match Authorizer::load(&loaded.engine.policies, &loaded.engine.schema) {
        Ok(a) => Some(a),
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    if let Some(authorizer) = &authorizer {
        // Settings, keys, trust bundles, nonce secret, revocations: the engine's own checks.
        match Engine::new(&loaded.engine, Box::new(crate::state::LocalState::default())) {
            Ok(engine) => {
                if let Ok(list) = agentgate_engine::revocation::RevocationList::parse(&loaded.engine.revocations_json) {
                    let source = loaded.revocations_path.as_ref().map_or_else(|| file.clone(), |p| p.display().to_string());
                    warnings.extend(list.warnings(engine.trust()).into_iter().map(|w| format!("{source}: {w}")));
                }
            }
            Err(e) => problems.push(Problem::general(&file, e)),
        }
        for route in &loaded.file.routes {
            if !authorizer.declares_action(&route.action) {
                problems
                    .push(Problem::general(&file, format!("route `{} {}`: action `{}` is not declared in the schema", route.method, route.path, route.action)));
            }
            if !authorizer.declares_entity_type(&route.resource.type_name) {
                problems.push(Problem::general(
                    &file,
                    format!("route `{} {}`: resource type `{}` is not declared in the schema", route.method, route.path, route.resource.type_name),
                ));
            }
        }
    }
    if let Err(e) = agentgate_engine::routing::compile(&loaded.file.routes) {
        problems.push(Problem::general(&file, e));
    }
    let server = &loaded.file.server;
    if let Err(e) = Origins::new(&server.trusted_proxies, &server.external_origins) {
        problems.push(Problem::general(&file, e));
    }
    if !server.forward_auth_prefix.starts_with('/') {
        problems.push(Problem::general(&file, format!("`[server] forward_auth_prefix` `{}` must start with `/`", server.forward_auth_prefix)));
    }
    if let Some(mcp) = &loaded.file.mcp
        && !mcp.path.starts_with('/')
    {
        problems.push(Problem::general(&file, format!("`[mcp] path` `{}` must start with `/`", mcp.path)));
    }
    // The engine names sources relative to the config's directory; a problem points at the file
    // as the user can open it.
    for problem in &mut problems {
        problem.file = loaded.source_shown(&problem.file);
    }
    Report { config: Some(loaded), problems, warnings }
}

/// The text of a source file named in `config` (by its path on disk, as `validate` reports it),
/// for snippets.
pub fn source_text<'a>(config: &'a LoadedConfig, file: &str) -> Option<&'a str> {
    let on_disk = |name: &str| config.source_shown(name) == file;
    if on_disk(&config.engine.schema.name) {
        return Some(&config.engine.schema.text);
    }
    config.engine.policies.iter().find(|p| on_disk(&p.name)).map(|p| p.text.as_str())
}
