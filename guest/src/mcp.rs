//! MCP over Streamable HTTP (protocol revisions 2025-11-25, 2025-06-18, 2025-03-26): the JSON-RPC
//! message a client POSTs, read strictly and mapped to the check agentgate makes, and the
//! `tools/list` result a server answers, filtered to what the caller may call. One parser for every
//! host that sees the body: `agentgate serve` in reverse-proxy mode and the wasi:http gateway.
//!
//! | JSON-RPC method | Cedar action | resource | `context.input` |
//! |---|---|---|---|
//! | `tools/call` | the tool's own action, `params.name` (as `agentgate schema mcp` declares it) | `Tool::"<name>"` | `params.arguments` |
//! | `prompts/get` | `prompts/get` | `Prompt::"<name>"` | `params.arguments` |
//! | `resources/read` | `resources/read` | `McpResource::"<uri>"` | — |
//! | `initialize`, `ping`, `notifications/…`, a client's response | `server/discover` | `McpServer::"<server>"` | — |
//! | any other method (`tools/list`, `prompts/list`…) | the method | `McpServer::"<server>"` | — |
//!
//! JSON-RPC batches are refused (`-32600`): revision 2025-06-18 removed them, and deciding the
//! calls of one POST apart would mean rewriting the batch the server receives.

use crate::jose::json::{JsonError, JsonObject, parse_object};
use crate::request::EntityRef;
use serde_json::{Map, Value, json};

/// Protocol revisions accepted in `MCP-Protocol-Version` (absent means 2025-03-26, per the spec).
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// JSON-RPC error codes agentgate answers with.
pub mod code {
    /// The body is not JSON (JSON-RPC 2.0 §5.1).
    pub const PARSE_ERROR: i64 = -32700;
    /// The body is JSON but not an acceptable request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// `params` do not fit the method.
    pub const INVALID_PARAMS: i64 = -32602;
    /// agentgate denied the call (the HTTP status and `error.data.outcome` say why). In the
    /// implementation-defined server-error range (-32000 to -32099).
    pub const DENIED: i64 = -32001;
}

/// Bounds on what a body may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpLimits {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
    /// Most members in `params.arguments`.
    pub max_arguments: usize,
}

impl Default for McpLimits {
    fn default() -> Self {
        McpLimits { max_body_bytes: 1024 * 1024, max_depth: 32, max_arguments: 128 }
    }
}

/// A message that cannot be authorized, with the JSON-RPC error to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// JSON-RPC error code.
    pub code: i64,
    /// What was wrong.
    pub message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into() }
    }
}

/// One client message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `id`: present for requests, absent for notifications and responses.
    pub id: Option<Value>,
    /// `method`; `None` for a client's response to a server request.
    pub method: Option<String>,
    /// `params`.
    pub params: JsonObject,
}

/// What the message asks agentgate to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpCall {
    /// Cedar action.
    pub action: String,
    /// Resource.
    pub resource: EntityRef,
    /// `context.input` as JSON text.
    pub input: Option<String>,
    /// The name the call is about (tool, prompt, resource URI), for comparing with `Mcp-Name`.
    pub name: Option<String>,
}

/// Reads a POST body as one JSON-RPC message: UTF-8, no duplicate member names at any depth,
/// within the limits, `jsonrpc` `"2.0"`, a string `method` (or a response's `result`/`error`), an
/// `id` that is a string or a number, `params` an object.
pub fn parse(body: &[u8], limits: &McpLimits) -> Result<Message, RpcError> {
    if body.len() > limits.max_body_bytes {
        return Err(RpcError::new(code::INVALID_REQUEST, format!("the body is {} bytes, over the limit of {}", body.len(), limits.max_body_bytes)));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(RpcError::new(code::INVALID_REQUEST, "JSON-RPC batches are not accepted: send one message per request"));
    }
    let object = parse_object(body).map_err(|e| match e {
        JsonError::NotAnObject => RpcError::new(code::INVALID_REQUEST, "the body is not a JSON-RPC message (a JSON object)"),
        JsonError::DuplicateMember(name) => RpcError::new(code::INVALID_REQUEST, format!("the body has the member `{}` twice", name.escape_default())),
        other => RpcError::new(code::PARSE_ERROR, format!("the body {other}")),
    })?;
    let depth = depth_of(&Value::Object(object.clone()));
    if depth > limits.max_depth {
        return Err(RpcError::new(code::INVALID_REQUEST, format!("the body nests {depth} levels deep, over the limit of {}", limits.max_depth)));
    }
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(code::INVALID_REQUEST, "`jsonrpc` must be \"2.0\""));
    }
    let id = match object.get("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
        Some(_) => return Err(RpcError::new(code::INVALID_REQUEST, "`id` must be a string or a number")),
    };
    let method = match object.get("method") {
        Some(Value::String(m)) if !m.is_empty() => Some(m.clone()),
        Some(_) => return Err(RpcError::new(code::INVALID_REQUEST, "`method` must be a non-empty string")),
        None if id.is_some() && (object.contains_key("result") || object.contains_key("error")) => None,
        None => return Err(RpcError::new(code::INVALID_REQUEST, "the message has no `method`")),
    };
    let params = match object.get("params") {
        None => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(RpcError::new(code::INVALID_REQUEST, "`params` must be an object")),
    };
    Ok(Message { id, method, params })
}

/// The check for a message: action, resource and input (see the module's table).
pub fn map(message: &Message, server: &str, limits: &McpLimits) -> Result<McpCall, RpcError> {
    let server_call = |action: &str| McpCall {
        action: action.to_owned(),
        resource: EntityRef { type_name: "McpServer".into(), id: server.to_owned() },
        input: None,
        name: None,
    };
    let Some(method) = message.method.as_deref() else { return Ok(server_call("server/discover")) };
    let named = |member: &str| -> Result<String, RpcError> {
        match message.params.get(member) {
            Some(Value::String(name)) if !name.is_empty() => Ok(name.clone()),
            _ => Err(RpcError::new(code::INVALID_PARAMS, format!("`{method}` needs `params.{member}`, a non-empty string"))),
        }
    };
    let arguments = || -> Result<Option<String>, RpcError> {
        match message.params.get("arguments") {
            None => Ok(Some("{}".into())),
            Some(Value::Object(args)) if args.len() <= limits.max_arguments => Ok(Some(Value::Object(args.clone()).to_string())),
            Some(Value::Object(args)) => {
                Err(RpcError::new(code::INVALID_PARAMS, format!("`params.arguments` has {} members, over the limit of {}", args.len(), limits.max_arguments)))
            }
            Some(_) => Err(RpcError::new(code::INVALID_PARAMS, "`params.arguments` must be an object")),
        }
    };
    Ok(match method {
        "tools/call" => {
            let name = named("name")?;
            McpCall { action: name.clone(), resource: EntityRef { type_name: "Tool".into(), id: name.clone() }, input: arguments()?, name: Some(name) }
        }
        "prompts/get" => {
            let name = named("name")?;
            McpCall { action: method.into(), resource: EntityRef { type_name: "Prompt".into(), id: name.clone() }, input: arguments()?, name: Some(name) }
        }
        "resources/read" => {
            let uri = named("uri")?;
            McpCall { action: method.into(), resource: EntityRef { type_name: "McpResource".into(), id: uri.clone() }, input: None, name: Some(uri) }
        }
        "initialize" | "ping" => server_call("server/discover"),
        m if m.starts_with("notifications/") => server_call("server/discover"),
        other => server_call(other),
    })
}

/// Why an MCP request is refused before it is decided: the HTTP status and the JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The JSON-RPC error.
    pub error: RpcError,
}

impl Refusal {
    fn bad_request(message: String) -> Self {
        Refusal { status: 400, error: RpcError::new(code::INVALID_REQUEST, message) }
    }
}

/// The checks on an MCP request's headers, before its body is read: the browser `Origin` must be
/// one of `allowed_origins` when that is not empty (403: the spec's DNS-rebinding defence), and
/// `MCP-Protocol-Version`, when sent, one of [`PROTOCOL_VERSIONS`] (400).
pub fn check_headers(origin: Option<&str>, allowed_origins: &[String], protocol_version: Option<&str>) -> Result<(), Refusal> {
    if let Some(origin) = origin
        && !allowed_origins.is_empty()
        && !allowed_origins.iter().any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        let error = RpcError::new(code::INVALID_REQUEST, format!("the origin `{}` is not allowed to call this MCP server", origin.escape_default()));
        return Err(Refusal { status: 403, error });
    }
    if let Some(version) = protocol_version
        && !PROTOCOL_VERSIONS.contains(&version)
    {
        return Err(Refusal::bad_request(format!(
            "unsupported `MCP-Protocol-Version` `{}`: this server accepts {}",
            version.escape_default(),
            PROTOCOL_VERSIONS.join(", ")
        )));
    }
    Ok(())
}

/// `Mcp-Method` and `Mcp-Name` (decoded, [`decode_header_value`]), when a client sends them, must
/// say what the body says: a proxy or server routing on the headers would otherwise act on a call
/// that was never decided (400).
pub fn headers_agree(mcp_method: Option<&str>, mcp_name: Option<&str>, message: &Message, call: &McpCall) -> Result<(), Refusal> {
    if let Some(said) = mcp_method
        && Some(said) != message.method.as_deref()
    {
        return Err(Refusal::bad_request(format!(
            "`Mcp-Method` says `{}` but the body's method is `{}`",
            said.escape_default(),
            message.method.as_deref().unwrap_or("").escape_default()
        )));
    }
    if let Some(said) = mcp_name.map(decode_header_value)
        && Some(said.as_str()) != call.name.as_deref()
    {
        return Err(Refusal::bad_request(format!(
            "`Mcp-Name` says `{}` but the body names `{}`",
            said.escape_default(),
            call.name.as_deref().unwrap_or("").escape_default()
        )));
    }
    Ok(())
}

/// An MCP header value: non-ASCII values arrive as `=?base64?<value>?=`.
pub fn decode_header_value(value: &str) -> String {
    use base64::Engine as _;
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(encoded) => {
            base64::engine::general_purpose::STANDARD.decode(encoded).ok().and_then(|bytes| String::from_utf8(bytes).ok()).unwrap_or_else(|| value.to_owned())
        }
        None => value.to_owned(),
    }
}

/// The JSON-RPC error answering a denied call: code [`code::DENIED`], the reason as `message`,
/// and in `data` the `outcome`, the `decision_id` and, for `insufficient_scope`, the
/// `required_scope`.
pub fn denial_response(id: Option<&Value>, decision: &crate::Decision, decision_id: &str) -> String {
    let mut data = json!({ "outcome": decision.outcome.as_str(), "decision_id": decision_id });
    if let (Some(scope), Value::Object(d)) = (&decision.required_scope, &mut data) {
        d.insert("required_scope".into(), Value::String(scope.clone()));
    }
    error_response(id, code::DENIED, &decision.reason, Some(data))
}

/// The JSON-RPC error response for a request refused before it was decided.
pub fn refusal_response(id: Option<&Value>, refusal: &Refusal, decision_id: &str) -> String {
    error_response(id, refusal.error.code, &refusal.error.message, Some(json!({ "outcome": "invalid_request", "decision_id": decision_id })))
}

/// The JSON-RPC error response for `id` (or `null` when the request had none).
pub fn error_response(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> String {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(data), Value::Object(e)) = (data, &mut error) {
        e.insert("data".into(), data);
    }
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error }).to_string()
}

/// The names of the tools in a `tools/list` result message, if it is one.
fn tools_of(message: &Value) -> Option<Vec<String>> {
    let tools = message.get("result")?.get("tools")?.as_array()?;
    Some(tools.iter().map(|t| t.get("name").and_then(Value::as_str).unwrap_or_default().to_owned()).collect())
}

/// Removes from a `tools/list` result message the tools `visible` says to hide. `visible` gets
/// every tool's name and answers one flag per name; an answer of another length hides every tool.
fn filter_message(message: &mut Value, visible: &mut dyn FnMut(&[String]) -> Vec<bool>) -> bool {
    let Some(names) = tools_of(message) else { return false };
    let flags = visible(&names);
    let keep = |i: usize| flags.len() == names.len() && flags.get(i).copied().unwrap_or(false);
    if let Some(Value::Array(tools)) = message.get_mut("result").and_then(|r| r.get_mut("tools")) {
        let mut index = 0;
        tools.retain(|_| {
            let kept = keep(index);
            index += 1;
            kept
        });
    }
    true
}

/// Filters a server's answer to `tools/list`: a JSON body (`application/json`) or a stream of
/// server-sent events (`text/event-stream`) whose `data` lines carry JSON-RPC messages. Messages
/// other than a `tools/list` result pass unchanged. A body that cannot be read is refused (the
/// caller answers 502): an unfiltered list must never reach the client.
pub fn filter_tools_list(content_type: &str, body: &[u8], visible: &mut dyn FnMut(&[String]) -> Vec<bool>) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the server's answer is not UTF-8".to_owned())?;
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media.as_str() {
        "application/json" => {
            let mut message: Value = serde_json::from_str(text).map_err(|e| format!("the server's answer is not JSON ({e})"))?;
            filter_message(&mut message, visible);
            Ok(message.to_string().into_bytes())
        }
        "text/event-stream" => {
            let mut out = String::with_capacity(text.len());
            for event in text.split_inclusive("\n\n") {
                out.push_str(&filter_event(event, visible)?);
            }
            Ok(out.into_bytes())
        }
        other => Err(format!("the server answered `tools/list` with `{}`, neither JSON nor an event stream", other.escape_default())),
    }
}

/// One server-sent event (text up to and including its blank line): its `data` lines joined are
/// one JSON-RPC message; a `tools/list` result is filtered and written back as one `data` line.
fn filter_event(event: &str, visible: &mut dyn FnMut(&[String]) -> Vec<bool>) -> Result<String, String> {
    let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
    if data.is_empty() {
        return Ok(event.to_owned());
    }
    let Ok(mut message) = serde_json::from_str::<Value>(&data.join("\n")) else {
        // Not JSON-RPC (a comment-like payload): pass it on, it lists no tools.
        return Ok(event.to_owned());
    };
    if !filter_message(&mut message, visible) {
        return Ok(event.to_owned());
    }
    let mut out: String = event.lines().filter(|l| !l.starts_with("data:") && !l.is_empty()).map(|l| format!("{l}\n")).collect();
    out.push_str(&format!("data: {message}\n\n"));
    Ok(out)
}

fn depth_of(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> McpLimits {
        McpLimits::default()
    }

    fn call(body: &str) -> Result<McpCall, RpcError> {
        map(&parse(body.as_bytes(), &limits())?, "files", &limits())
    }

    #[test]
    fn tool_calls_map_to_the_tools_own_action_with_typed_arguments() {
        let c = call(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/a"}}}"#).unwrap();
        assert_eq!((c.action.as_str(), c.resource.type_name.as_str(), c.resource.id.as_str()), ("read_file", "Tool", "read_file"));
        assert_eq!(c.input.as_deref(), Some(r#"{"path":"/workspace/a"}"#));
        let c = call(r#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#).unwrap();
        assert_eq!((c.action.as_str(), c.resource.id.as_str()), ("tools/list", "files"));
        assert_eq!(call(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap().action, "server/discover");
        assert_eq!(call(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#).unwrap().action, "server/discover");
        assert_eq!(call(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap().action, "server/discover", "a client's answer to a server request");
        let c = call(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///workspace/a"}}"#).unwrap();
        assert_eq!((c.resource.type_name.as_str(), c.resource.id.as_str()), ("McpResource", "file:///workspace/a"));
    }

    #[test]
    fn malformed_messages_are_refused_with_the_json_rpc_code() {
        let err = |body: &str| call(body).unwrap_err();
        assert_eq!(err("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]").code, code::INVALID_REQUEST);
        assert_eq!(err("{").code, code::PARSE_ERROR);
        assert_eq!(err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#).message, "the body has the member `name` twice");
        assert_eq!(err(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).message, "`jsonrpc` must be \"2.0\"");
        assert_eq!(err(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#).message, "`id` must be a string or a number");
        assert_eq!(err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#).code, code::INVALID_PARAMS);
        assert_eq!(err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#).code, code::INVALID_PARAMS);
        let deep =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"a":{}1{}}}}}}}"#, "[".repeat(40), "]".repeat(40));
        assert!(err(&deep).message.contains("levels deep"));
        let many: Vec<String> = (0..200).map(|i| format!("\"a{i}\":1")).collect();
        let wide = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{{}}}}}}}"#, many.join(","));
        assert!(err(&wide).message.contains("over the limit of 128"));
        assert!(parse(&vec![b' '; 2 << 20], &limits()).unwrap_err().message.contains("over the limit"));
    }

    #[test]
    fn headers_are_checked_against_the_configuration_and_the_body() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(check_headers(None, &allowed, None).is_ok());
        assert!(check_headers(Some("https://APP.example.com"), &allowed, Some("2025-11-25")).is_ok());
        assert!(check_headers(Some("https://evil.example"), &[], None).is_ok(), "no list: not checked");
        let r = check_headers(Some("https://evil.example"), &allowed, None).unwrap_err();
        assert_eq!((r.status, r.error.message.as_str()), (403, "the origin `https://evil.example` is not allowed to call this MCP server"));
        let r = check_headers(None, &allowed, Some("2024-11-05")).unwrap_err();
        assert_eq!(
            (r.status, r.error.message.as_str()),
            (400, "unsupported `MCP-Protocol-Version` `2024-11-05`: this server accepts 2025-11-25, 2025-06-18, 2025-03-26")
        );
        let message = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}"#, &limits()).unwrap();
        let mapped = map(&message, "files", &limits()).unwrap();
        assert!(headers_agree(Some("tools/call"), Some("read_file"), &message, &mapped).is_ok());
        assert!(headers_agree(None, None, &message, &mapped).is_ok());
        assert!(headers_agree(None, Some("=?base64?cmVhZF9maWxl?="), &message, &mapped).is_ok(), "base64 header value");
        assert_eq!(
            headers_agree(Some("tools/list"), None, &message, &mapped).unwrap_err().error.message,
            "`Mcp-Method` says `tools/list` but the body's method is `tools/call`"
        );
        assert_eq!(
            headers_agree(None, Some("write_file"), &message, &mapped).unwrap_err().error.message,
            "`Mcp-Name` says `write_file` but the body names `read_file`"
        );
    }

    #[test]
    fn tools_list_results_are_filtered_in_json_and_in_event_streams() {
        let mut hide_b = |names: &[String]| names.iter().map(|n| n != "b").collect::<Vec<_>>();
        let json = br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"},{"name":"b"},{"name":"c"}]}}"#;
        let out: Value = serde_json::from_slice(&filter_tools_list("application/json; charset=utf-8", json, &mut hide_b).unwrap()).unwrap();
        assert_eq!(out["result"]["tools"], json!([{"name": "a"}, {"name": "c"}]));
        let sse = "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"a\"},\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"b\"}]}}\n\n";
        let out = String::from_utf8(filter_tools_list("text/event-stream", sse.as_bytes(), &mut hide_b).unwrap()).unwrap();
        assert!(out.contains("data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"a\"},\n\n"), "a broken event passes unchanged: {out}");
        assert!(out.ends_with("data: {\"id\":2,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[]}}\n\n") || out.contains("\"tools\":[]"), "{out}");
        let mut wrong_length = |_: &[String]| vec![true];
        let out: Value = serde_json::from_slice(&filter_tools_list("application/json", json, &mut wrong_length).unwrap()).unwrap();
        assert_eq!(out["result"]["tools"], json!([]), "a broken answer hides everything");
        assert!(filter_tools_list("text/html", json, &mut hide_b).is_err());
        assert!(filter_tools_list("application/json", b"not json", &mut hide_b).is_err());
    }
}
