//! `agentgate schema mcp`: a Cedar schema for an MCP server's tools, with agentgate's context.

use super::{EXIT_ALLOW, EXIT_USAGE};
use agentgate_engine::SourceText;
use agentgate_engine::authorizer::Authorizer;
use agentgate_engine::authorizer::diagnostics::locate;
use anyhow::Context as _;
use cedar_policy::SchemaFragment;
use cedar_policy_mcp_schema_generator::{SchemaGenerator, SchemaGeneratorConfig};
use clap::{Args, Subcommand};
use mcp_tools_sdk::description::ServerDescription;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

/// Generate Cedar schemas.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    #[command(subcommand)]
    what: Schema,
}

#[derive(Debug, Subcommand)]
enum Schema {
    Mcp(McpArgs),
}

/// Generate a Cedar schema from an MCP server's `tools/list` result.
///
/// Builds on `cedar-policy-mcp-schema-generator`: one action per tool, whose `context.input` is the
/// tool's `inputSchema` as Cedar types (`string` → String, `integer` → Long, `boolean` → Bool,
/// `number` → decimal, `array` → Set, objects → records, string `enum` → an enum entity type,
/// `format` `date-time` → datetime, `ipv4`/`ipv6` → ipaddr; required properties stay required).
/// Every action's context is agentgate's author contract: `user`, `scopes`, `delegation`, `token`,
/// `proof`, `agent`, plus `input`.
///
/// Mapping (see policies/README.md):
///
/// - `Action::"<tool>"`, one per tool, member of `Action::"tools/call"`, resource
///   `Tool::"<tool>"`, `context.input` = the call's `arguments`. What a caller that sees the
///   JSON-RPC body asks: the MCP server through AuthZEN, `agentgate check`.
///
/// - `Action::"tools/call"`, resource `Tool::"<tool>"`: what the `[mcp]` forward-auth proxy asks.
///   It sees only headers, so `context.input.params` holds just the arguments a tool mirrors into
///   `Mcp-Param-*` headers (`x-mcp-header`), with lowercase names, as optional Strings.
///
/// - `Action::"tools/list"`, `Action::"server/discover"` and each `--method`: resource
///   `McpServer::"<server>"`, for the proxy.
///
/// A deployment asks about each call once, at the proxy or at the server (a proof is used once).
/// Write rules that must hold either way over `action in Action::"tools/call"` and
/// `resource == Tool::"<tool>"`; write argument rules on the per-tool action.
///
/// Tool names must be Cedar identifiers. The output is checked: it loads in agentgate as is.
/// Exit status: 0 written, 2 unusable input.
#[derive(Debug, Args)]
struct McpArgs {
    /// The `tools/list` result: `{"tools": [...]}`, or the whole JSON-RPC response
    /// `{"result": {"tools": [...]}}`.
    tools: PathBuf,
    /// Namespace for the generated argument types (`<tool>Input`, enums). Actions, `User`,
    /// `Agent`, `Tool` and `McpServer` stay in the empty namespace, where agentgate looks for them.
    /// Default: everything in the empty namespace.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Write the schema to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Another JSON-RPC method the proxy authorizes on `McpServer::"<server>"` (repeatable).
    #[arg(long = "method", value_name = "METHOD")]
    methods: Vec<String>,
}

pub fn run(args: SchemaArgs) -> anyhow::Result<u8> {
    match args.what {
        Schema::Mcp(args) => mcp(args),
    }
}

fn mcp(args: McpArgs) -> anyhow::Result<u8> {
    let name = args.tools.display().to_string();
    let text = std::fs::read_to_string(&args.tools).with_context(|| format!("reading {name}"))?;
    let schema = match generate(&name, &text, args.namespace.as_deref(), &args.methods) {
        Ok(schema) => schema,
        Err(message) => {
            eprintln!("{message}");
            return Ok(EXIT_USAGE);
        }
    };
    match &args.out {
        Some(out) => {
            std::fs::write(out, &schema.text).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("{}: {} tool actions ({})", out.display(), schema.tools.len(), schema.tools.join(", "));
        }
        None => print!("{}", schema.text),
    }
    Ok(EXIT_ALLOW)
}

/// A generated schema.
#[derive(Debug)]
struct Generated {
    /// `.cedarschema` text.
    text: String,
    /// The tools, one action each.
    tools: Vec<String>,
}

/// The namespace the generator works in (it needs one, and flattens into a single-identifier
/// one); `relocate` empties it.
const SCRATCH_NAMESPACE: &str = "AgentgateMcpScratch";
/// Entity types that stay in the empty namespace.
const ROOT_ENTITY_TYPES: [&str; 4] = ["User", "Agent", "Tool", "McpServer"];
/// The common types of agentgate's context (the stub below); they stay in the empty namespace.
const CONTEXT_TYPES: [&str; 5] = ["Scopes", "Delegation", "Token", "Proof", "AgentIdentity"];
/// The MCP methods besides `tools/call` every generated schema declares.
const SERVER_METHODS: [&str; 2] = ["server/discover", "tools/list"];

/// Generates the schema for the `tools/list` result `text` (from file `file`); errors are
/// printable lines.
fn generate(file: &str, text: &str, namespace: Option<&str>, methods: &[String]) -> Result<Generated, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| format!("{file}:{}:{}: {e}", e.line(), e.column()))?;
    let tools =
        tool_list(&json).ok_or_else(|| format!("{file}: expected a `tools/list` result: `{{\"tools\": [...]}}` or `{{\"result\": {{\"tools\": [...]}}}}`"))?;
    if tools.is_empty() {
        return Err(format!("{file}: the tool list is empty"));
    }
    let mut tool_names = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return Err(format!("{file}: tool {} has no `name` string", i + 1));
        };
        // The generator names a namespace and types after each tool.
        if !is_identifier(name) {
            return Err(format!(
                "{file}: tool `{}`: its name is not a Cedar identifier (letters, digits, `_`), which the generator needs",
                name.escape_default()
            ));
        }
        tool_names.push(name.to_owned());
    }
    // The generator reads `{"result": {...}}`; wrap a bare result without a newline so that line
    // numbers in its errors still match the file.
    let wrapped = if json.get("result").is_none() && json.get("tools").is_some() { format!("{{\"result\": {text}\n}}") } else { text.to_owned() };
    let description = ServerDescription::from_json_str(&wrapped).map_err(|e| locate(file, &wrapped, &e))?;

    if let Some(ns) = namespace
        && (ns.is_empty() || ns.split("::").any(|part| !is_identifier(part)))
    {
        return Err(format!("`--namespace {ns}` is not a Cedar namespace (identifiers separated by `::`)"));
    }
    let mut all_methods: BTreeSet<&str> = SERVER_METHODS.into_iter().collect();
    for method in methods {
        if method.is_empty() || method == "tools/call" || method.chars().any(char::is_control) {
            return Err(format!("`--method {}`: expected a JSON-RPC method other than `tools/call`", method.escape_default()));
        }
        all_methods.insert(method);
    }
    let scratch = SCRATCH_NAMESPACE;
    let stub = stub(scratch, &header_params(tools), &all_methods);
    let config = SchemaGeneratorConfig::default().objects_as_records(true).flatten_namespaces(true).encode_numbers_as_decimal(true).inline_empty_records(true);
    let mut generator = SchemaGenerator::from_cedarschema_str_with_config(&stub, config).map_err(|e| format!("internal error: the schema stub: {e}"))?;
    generator.add_actions_from_server_description(&description).map_err(|e| format!("{file}: {}", describe(&e)))?;

    let (fragment, _warnings) =
        SchemaFragment::from_cedarschema_str(&generator.get_schema_as_str()).map_err(|e| format!("internal error: the generated schema: {e}"))?;
    let json = fragment.to_json_value().map_err(|e| format!("internal error: the generated schema: {e}"))?;
    let json = relocate(json, scratch, namespace)?;
    let relocated = SchemaFragment::from_json_value(json).map_err(|e| format!("internal error: the relocated schema: {e}"))?;
    let body = relocated.to_cedarschema().map_err(|e| format!("internal error: the relocated schema: {e}"))?;
    let text = format!("{}{body}", header(file));

    // What agentgate will do with it: parse, check every action's context against what the
    // engine supplies.
    let source = SourceText { name: "schema.cedarschema".into(), text: text.clone() };
    Authorizer::new(&[], &source).map_err(|e| format!("internal error: the generated schema does not load in agentgate:\n{e}"))?;
    Ok(Generated { text, tools: tool_names })
}

/// The tool descriptions of a `tools/list` result, a JSON-RPC response carrying one, or a bare
/// array.
fn tool_list(json: &Value) -> Option<&Vec<Value>> {
    let result = json.get("result").unwrap_or(json);
    match result {
        Value::Array(tools) => Some(tools),
        other => other.get("tools").and_then(Value::as_array),
    }
}

/// Names of the arguments tools mirror into `Mcp-Param-<Name>` headers (SEP-2243 `x-mcp-header`),
/// lowercased as the proxy sees them.
fn header_params(tools: &[Value]) -> BTreeSet<String> {
    tools
        .iter()
        .filter_map(|t| t.get("inputSchema").and_then(|s| s.get("properties")).and_then(Value::as_object))
        .flat_map(|props| props.values().filter_map(|p| p.get("x-mcp-header").and_then(Value::as_str)))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The generator's input: principals, resource and shared context (agentgate's author contract,
/// README "Policy author contract") through its `@mcp_*` annotations, plus the actions the proxy
/// asks for.
fn stub(namespace: &str, params: &BTreeSet<String>, methods: &BTreeSet<&str>) -> String {
    let shared = "user: User, scopes: Scopes, delegation: Delegation, token: Token, proof: Proof, agent: AgentIdentity";
    let input = if params.is_empty() {
        String::new()
    } else {
        let attrs: Vec<String> = params.iter().map(|p| format!("{}?: String", quote(p))).collect();
        format!(", input: {{ params?: {{ {} }} }}", attrs.join(", "))
    };
    let mut s = format!(
        r#"namespace {namespace} {{
  @mcp_principal("User")
  @mcp_context("user")
  entity User;
  @mcp_principal("Agent")
  entity Agent;
  @mcp_resource("Tool")
  entity Tool;
  entity McpServer;
  @mcp_context("scopes")
  type Scopes = Set<String>;
  @mcp_context("delegation")
  type Delegation = {{ depth: Long, chain: Set<String>, actors: Set<{{ id: String, position: Long }}> }};
  @mcp_context("token")
  type Token = {{ issuer: String, id: String, client_id: String, age_secs: Long, lifetime_secs: Long, expires_in_secs: Long }};
  @mcp_context("proof")
  type Proof = {{ bound: Bool, method: String, uri: String, key: String }};
  @mcp_context("agent")
  type AgentIdentity = {{ verified: Bool, trust_domain: String, id: String }};
  @mcp_action("tools/call")
  action "tools/call" appliesTo {{ principal: [User, Agent], resource: [Tool], context: {{ {shared}{input} }} }};
"#
    );
    for method in methods {
        s.push_str(&format!("  action {} appliesTo {{ principal: [User, Agent], resource: [McpServer], context: {{ {shared} }} }};\n", quote(method)));
    }
    s.push_str("}\n");
    s
}

/// The comment on top of the generated file.
fn header(source: &str) -> String {
    format!(
        "// Generated by `agentgate schema mcp {source}` (see policies/README.md).\n\
         // One action per tool, member of `tools/call`, on `Tool::\"<tool>\"`, with the tool's\n\
         // arguments in `context.input`.\n\
         // `tools/call` itself is what the `[mcp]` forward-auth proxy asks: it sees only the arguments\n\
         // mirrored into `Mcp-Param-*` headers, in `context.input.params`.\n\n"
    )
}

/// Moves the generator's output out of its namespace: actions, `User`, `Agent`, `Tool`, `McpServer`
/// and the context types into the empty namespace (agentgate's contract); the generated argument
/// types into `namespace`, or also into the empty namespace.
fn relocate(schema: Value, scratch: &str, namespace: Option<&str>) -> Result<Value, String> {
    const KINDS: [&str; 3] = ["commonTypes", "entityTypes", "actions"];
    let Value::Object(mut namespaces) = schema else {
        return Err("internal error: the generated schema is not a JSON object".into());
    };
    let Some(Value::Object(generated)) = namespaces.remove(scratch) else {
        return Err(format!("internal error: the generated schema has no namespace `{scratch}`"));
    };
    if let Some(other) = namespaces.keys().next() {
        return Err(format!("internal error: the generated schema has an unexpected namespace `{other}`"));
    }
    let empty = || -> Map<String, Value> { KINDS.iter().map(|k| ((*k).to_owned(), Value::Object(Map::new()))).collect() };
    let (mut root, mut moved) = (empty(), empty());
    let mut moved_names = HashSet::new();
    for kind in KINDS {
        let Some(Value::Object(items)) = generated.get(kind) else { continue };
        for (name, def) in items {
            let stays_in_root = namespace.is_none()
                || kind == "actions"
                || (kind == "entityTypes" && ROOT_ENTITY_TYPES.contains(&name.as_str()))
                || (kind == "commonTypes" && CONTEXT_TYPES.contains(&name.as_str()));
            let target = if stays_in_root {
                &mut root
            } else {
                moved_names.insert(name.clone());
                &mut moved
            };
            if let Some(Value::Object(map)) = target.get_mut(kind) {
                map.insert(name.clone(), def.clone());
            }
        }
    }
    let prefix = format!("{scratch}::");
    let rename = |reference: &str| -> String {
        let base = reference.strip_prefix(&prefix).unwrap_or(reference);
        match namespace {
            Some(ns) if moved_names.contains(base) => format!("{ns}::{base}"),
            _ => base.to_owned(),
        }
    };
    let mut root = Value::Object(root);
    let mut moved = Value::Object(moved);
    rename_references(&mut root, &rename);
    rename_references(&mut moved, &rename);
    let mut out = Map::new();
    out.insert(String::new(), root);
    if let (Some(ns), false) = (namespace, moved_names.is_empty()) {
        out.insert(ns.to_owned(), moved);
    }
    Ok(Value::Object(out))
}

/// Rewrites every type reference of a schema in JSON form: `{"type": "Entity" | "EntityOrCommon" |
/// "Extension", "name": N}`, a common type `{"type": N}`, and the entity type lists of actions and
/// entity types. Other strings (attribute names, enum choices, action ids) are left alone.
fn rename_references(value: &mut Value, rename: &dyn Fn(&str) -> String) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| rename_references(v, rename)),
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str).map(str::to_owned);
            match kind.as_deref() {
                Some("Entity" | "EntityOrCommon" | "Extension") => {
                    if let Some(Value::String(name)) = map.get_mut("name") {
                        *name = rename(name);
                    }
                }
                Some("Record" | "Set" | "Long" | "String" | "Boolean" | "Bool") | None => {}
                Some(common) => {
                    let renamed = rename(common);
                    map.insert("type".into(), Value::String(renamed));
                }
            }
            for key in ["principalTypes", "resourceTypes", "memberOfTypes"] {
                if let Some(Value::Array(names)) = map.get_mut(key) {
                    for name in names.iter_mut() {
                        if let Value::String(s) = name {
                            *s = rename(s);
                        }
                    }
                }
            }
            map.values_mut().for_each(|v| rename_references(v, rename));
        }
        _ => {}
    }
}

/// A Cedar string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.escape_default())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A generator error with its help, on one line.
fn describe(e: &cedar_policy_mcp_schema_generator::SchemaGeneratorError) -> String {
    agentgate_engine::authorizer::diagnostics::describe(e)
}
