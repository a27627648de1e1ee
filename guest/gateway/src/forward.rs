//! Forwarding an allowed request to the upstream and relaying its response, streaming both bodies.

use super::Gateway;
use agentgate_engine::Decision;
use agentgate_engine::http_answer::header_safe;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingRequest, IncomingResponse, Method, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam};

/// Headers never forwarded: hop-by-hop (RFC 9110 §7.6.1) and ones the host sets, the credentials
/// (the upstream trusts agentgate's headers, not the raw tokens), and identity headers a client
/// might forge.
fn skipped(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "http2-settings"
            | "authorization"
            | "dpop"
            | "workload-identity-token"
    ) || name.starts_with("x-agentgate-")
}

/// The request headers for the upstream, with who is calling for whom.
pub fn upstream_headers(incoming: &Fields, decision: &Decision, id: &str) -> Fields {
    let out = Fields::new();
    for (name, value) in incoming.entries() {
        if !skipped(&name.to_ascii_lowercase()) {
            let _ = out.append(&name, &value);
        }
    }
    let agent = decision.chain.first().map_or(String::new(), |a| header_safe(a));
    let _ = out.append("x-agentgate-agent", agent.as_bytes());
    let _ = out.append("x-agentgate-user", header_safe(decision.user.as_deref().unwrap_or("")).as_bytes());
    let chain: Vec<String> = decision.chain.iter().map(|a| header_safe(a)).collect();
    let _ = out.append("x-agentgate-chain", chain.join(",").as_bytes());
    let _ = out.append("x-agentgate-decision-id", id.as_bytes());
    out
}

/// What goes to the upstream as the request body.
pub enum RequestBody {
    /// The incoming request's own body, streamed through.
    Stream(IncomingRequest),
    /// A body already read (an MCP message, read whole to be decided).
    Read(Vec<u8>),
}

/// For a `tools/list` answer: which of the listed tools the caller may see.
pub type ToolFilter<'a> = Option<&'a dyn Fn(&[String]) -> Vec<bool>>;

/// The largest `tools/list` answer filtered: it is read whole before it is relayed.
const MAX_TOOLS_LIST_BYTES: u64 = 8 * 1024 * 1024;

/// Sends the request to the upstream and relays the answer (a `tools/list` answer, with
/// `filter`, read whole and filtered); a failure to reach the upstream is a 502.
pub fn forward(gateway: &Gateway, method: &Method, headers: Fields, target: &str, body: RequestBody, filter: ToolFilter<'_>, response_out: ResponseOutparam) {
    let outgoing = OutgoingRequest::new(headers);
    let _ = outgoing.set_method(method);
    let _ = outgoing.set_scheme(Some(&gateway.upstream_scheme));
    let _ = outgoing.set_authority(Some(&gateway.upstream_authority));
    let _ = outgoing.set_path_with_query(Some(target));
    let Ok(outgoing_body) = outgoing.body() else {
        return bad_gateway("could not open the upstream request body", response_out);
    };
    let future = match outgoing_handler::handle(outgoing, None) {
        Ok(f) => f,
        Err(e) => return bad_gateway(&format!("the upstream request failed: {e:?}"), response_out),
    };
    match body {
        RequestBody::Stream(request) => copy_request_body(&request, outgoing_body),
        RequestBody::Read(bytes) => write_body(&bytes, outgoing_body),
    }
    let response = loop {
        if let Some(result) = future.get() {
            break result;
        }
        future.subscribe().block();
    };
    match response {
        Ok(Ok(response)) => match filter {
            Some(visible) if (200..300).contains(&response.status()) => relay_filtered(response, visible, response_out),
            _ => relay(response, response_out),
        },
        Ok(Err(e)) => bad_gateway(&upstream_error(&e), response_out),
        Err(()) => bad_gateway("the upstream response was already taken", response_out),
    }
}

fn write_body(bytes: &[u8], outgoing_body: OutgoingBody) {
    if let Ok(stream) = outgoing_body.write() {
        for chunk in bytes.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing_body, None);
}

fn copy_request_body(request: &IncomingRequest, outgoing_body: OutgoingBody) {
    if let Ok(body) = request.consume() {
        if let (Ok(mut input), Ok(mut output)) = (body.stream(), outgoing_body.write()) {
            let _ = std::io::copy(&mut input, &mut output);
            drop(input);
            drop(output);
        }
        let _ = wasip2::http::types::IncomingBody::finish(body);
    }
    let _ = OutgoingBody::finish(outgoing_body, None);
}

/// The upstream's headers, less those that describe one hop (and, for a rewritten body, its
/// length).
fn relayed_headers(response: &IncomingResponse, skip_length: bool) -> Fields {
    let headers = Fields::new();
    for (name, value) in response.headers().entries() {
        let lower = name.to_ascii_lowercase();
        let hop = matches!(lower.as_str(), "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "http2-settings");
        let rewritten_length = skip_length && lower == "content-length";
        if !hop && !rewritten_length {
            let _ = headers.append(&name, &value);
        }
    }
    headers
}

fn relay(response: IncomingResponse, response_out: ResponseOutparam) {
    let outgoing = OutgoingResponse::new(relayed_headers(&response, false));
    let _ = outgoing.set_status_code(response.status());
    let Ok(body) = outgoing.body() else { return };
    ResponseOutparam::set(response_out, Ok(outgoing));
    if let Ok(incoming) = response.consume() {
        if let (Ok(mut input), Ok(mut output)) = (incoming.stream(), body.write()) {
            let _ = std::io::copy(&mut input, &mut output);
            drop(input);
            drop(output);
        }
        let _ = wasip2::http::types::IncomingBody::finish(incoming);
    }
    let _ = OutgoingBody::finish(body, None);
}

/// Reads a `tools/list` answer whole and relays it with the tools `visible` hides removed; an
/// answer that cannot be read or filtered is a 502 (an unfiltered list never reaches the caller).
fn relay_filtered(response: IncomingResponse, visible: &dyn Fn(&[String]) -> Vec<bool>, response_out: ResponseOutparam) {
    use std::io::Read as _;
    let content_type = response.headers().get("content-type").into_iter().next().and_then(|v| String::from_utf8(v).ok()).unwrap_or_default();
    let headers = relayed_headers(&response, true);
    let status = response.status();
    let mut bytes = Vec::new();
    let read = match response.consume() {
        Ok(incoming) => {
            let read = match incoming.stream() {
                // The stream (moved into `take`) is dropped with this arm, before `finish`.
                Ok(input) => input.take(MAX_TOOLS_LIST_BYTES + 1).read_to_end(&mut bytes).is_ok(),
                Err(()) => false,
            };
            let _ = wasip2::http::types::IncomingBody::finish(incoming);
            read
        }
        Err(()) => false,
    };
    if !read || bytes.len() as u64 > MAX_TOOLS_LIST_BYTES {
        return bad_gateway(&format!("the upstream's `tools/list` answer could not be read or is over {MAX_TOOLS_LIST_BYTES} bytes"), response_out);
    }
    let mut visible = |names: &[String]| visible(names);
    match agentgate_engine::mcp::filter_tools_list(&content_type, &bytes, &mut visible) {
        Ok(filtered) => super::respond(status, headers, &filtered, response_out),
        Err(reason) => bad_gateway(&reason, response_out),
    }
}

fn upstream_error(e: &ErrorCode) -> String {
    format!("the upstream could not be reached: {e:?}")
}

fn bad_gateway(reason: &str, response_out: ResponseOutparam) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let body = serde_json::json!({"error": reason});
    super::respond(502, headers, body.to_string().as_bytes(), response_out);
}
