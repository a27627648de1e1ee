//! Policy authoring commands: `agentgate fmt` and `agentgate schema mcp`.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn agentgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentgate")).args(args).current_dir(repo()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_shipped_policies_are_formatted() {
    let mut sets: Vec<PathBuf> =
        std::fs::read_dir(repo().join("policies")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("agentgate.toml").exists()).collect();
    sets.sort();
    assert!(sets.len() >= 4, "{sets:?}");
    let mut args = vec!["fmt", "--check"];
    args.extend(sets.iter().map(|p| arg(p)));
    let out = agentgate(&args);
    assert_eq!(out.status.code(), Some(0), "run `agentgate fmt`:\n{}{}", text(&out.stdout), text(&out.stderr));
}

const UGLY: &str = "// Reading needs the scope.\n@id(\"read\")\npermit(principal,action==Action::\"read\",resource)\n  when{context.scopes.contains(\"r\")};\n\n\n// Trailing comment.\n";

#[test]
fn fmt_check_reports_and_fmt_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ugly.cedar");
    std::fs::write(&file, UGLY).unwrap();

    let out = agentgate(&["fmt", "--check", arg(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("would reformat {}\n", file.display()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), UGLY, "--check writes nothing");

    let out = agentgate(&["fmt", arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("formatted {}\n", file.display()));
    let formatted = std::fs::read_to_string(&file).unwrap();
    assert_ne!(formatted, UGLY);
    assert!(formatted.starts_with("// Reading needs the scope.\n@id(\"read\")\npermit ("), "{formatted}");
    assert!(formatted.contains("// Trailing comment."), "comments are kept:\n{formatted}");

    let out = agentgate(&["fmt", "--check", arg(&file)]);
    assert_eq!(out.status.code(), Some(0), "formatting is stable: {}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn fmt_refuses_a_file_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.cedar");
    let broken = "@id(\"x\")\npermit (principal, action, resource)\nwhen { context. };\n";
    std::fs::write(&file, broken).unwrap();
    for args in [vec!["fmt", "--check", arg(&file)], vec!["fmt", arg(&file)]] {
        let out = agentgate(&args);
        assert_eq!(out.status.code(), Some(2));
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with(&format!("{}:3:17: unexpected token", file.display())), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
}

const TOOLS: &str = r#"{"tools": [
  {"name": "get_forecast", "description": "Weather forecast",
   "inputSchema": {"type": "object", "properties": {
     "city": {"type": "string", "x-mcp-header": "City"},
     "days": {"type": "integer"},
     "units": {"type": "string", "enum": ["metric", "imperial"]}},
    "required": ["city"]}},
  {"name": "send_alert",
   "inputSchema": {"type": "object", "properties": {
     "recipients": {"type": "array", "items": {"type": "string"}},
     "message": {"type": "string"}},
    "required": ["recipients", "message"]}}
]}"#;

/// A policy set in `dir` whose schema is generated from `TOOLS`.
fn mcp_set(dir: &Path, extra_args: &[&str]) -> Output {
    std::fs::write(dir.join("tools.json"), TOOLS).unwrap();
    let keys = repo().join("policies/keys");
    std::fs::write(
        dir.join("agentgate.toml"),
        format!(
            "audiences = [\"https://weather.example.com\"]\npolicies = \".\"\n\n[[issuers]]\nissuer = \"https://auth.demo.agentgate.dev\"\njwks = \"{}\"\n\n[mcp]\npath = \"/mcp\"\nserver = \"weather\"\n",
            keys.join("demo-issuer.TEST-ONLY.jwks.json").display()
        ),
    )
    .unwrap();
    let out = dir.join("schema.cedarschema");
    let tools = dir.join("tools.json");
    let mut args = vec!["schema", "mcp", arg(&tools), "--out", arg(&out)];
    args.extend_from_slice(extra_args);
    agentgate(&args)
}

#[test]
fn schema_mcp_generates_a_schema_agentgate_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = mcp_set(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let schema = std::fs::read_to_string(dir.path().join("schema.cedarschema")).unwrap();
    for expected in [
        "action \"get_forecast\" in [Action::\"tools/call\"] appliesTo {",
        "input: get_forecastInput,",
        "days?: Long,",
        "entity get_forecast_Input_units enum [\"metric\", \"imperial\"];",
        "recipients: Set<String>",
        "action \"tools/call\" appliesTo {",
        "city?: String",
        "action \"tools/list\" appliesTo {",
        "entity Agent;",
        "entity Tool;",
        "entity User;",
    ] {
        assert!(schema.contains(expected), "missing `{expected}` in:\n{schema}");
    }
    // Policies over both request shapes, per-tool arguments and the proxy's mirrored header.
    std::fs::write(
        dir.path().join("tools.cedar"),
        r#"@id("forecast")
permit (principal, action in Action::"tools/call", resource == Tool::"get_forecast")
when { context.scopes.contains("weather.read") && context.delegation.depth <= 1 };

@id("short-forecasts")
forbid (principal is Agent, action == Action::"get_forecast", resource)
when { context.input has days && context.input.days > 7 };

@id("no-alerts-from-sub-agents")
forbid (principal, action == Action::"send_alert", resource)
when { context.delegation.depth > 1 || context.input.recipients.contains("everyone") };

@id("proxy-city")
forbid (principal, action == Action::"tools/call", resource)
unless { context.input has params && context.input.params has city };
"#,
    )
    .unwrap();
    let config = dir.path().join("agentgate.toml");
    let out = agentgate(&["validate", "--config", arg(&config)]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn schema_mcp_accepts_a_json_rpc_response_and_a_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let response = format!("{{\"jsonrpc\": \"2.0\", \"id\": 7, \"result\": {TOOLS}}}");
    let file = dir.path().join("response.json");
    std::fs::write(&file, response).unwrap();
    let out = agentgate(&["schema", "mcp", arg(&file), "--namespace", "Weather::Tools", "--method", "ping"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let schema = text(&out.stdout);
    for expected in ["input: Weather::Tools::get_forecastInput,", "namespace Weather::Tools {", "action \"ping\" appliesTo {"] {
        assert!(schema.contains(expected), "missing `{expected}` in:\n{schema}");
    }
}

#[test]
fn schema_mcp_explains_unusable_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tools.json");
    for (json, expected) in [
        (r#"{"tools": [{"name": "get-forecast", "inputSchema": {"type": "object"}}]}"#, "tool `get-forecast`: its name is not a Cedar identifier"),
        (r#"{"tools": []}"#, "the tool list is empty"),
        (r#"{"prompts": []}"#, "expected a `tools/list` result"),
        ("{\"tools\": [\n  {\"name\": \"x\", \"inputSchema\": 3}]}", ":2:"),
    ] {
        std::fs::write(&file, json).unwrap();
        let out = agentgate(&["schema", "mcp", arg(&file)]);
        assert_eq!(out.status.code(), Some(2), "{json}");
        assert!(text(&out.stderr).contains(expected), "{json}: {}", text(&out.stderr));
    }
}

#[test]
fn the_shipped_mcp_schema_is_generated_from_its_tools() {
    let out = agentgate(&["schema", "mcp", "policies/mcp/tools.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shipped = std::fs::read_to_string(repo().join("policies/mcp/schema.cedarschema")).unwrap();
    assert_eq!(text(&out.stdout), shipped, "regenerate: agentgate schema mcp policies/mcp/tools.json --out policies/mcp/schema.cedarschema");
}
