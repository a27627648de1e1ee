//! Forwarding an allowed request to the upstream and relaying its response, streaming both bodies.

use super::Gateway;
use agentgate_engine::Decision;
use agentgate_engine::http_answer::header_safe;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingRequest, IncomingResponse, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam};

/// Headers never forwarded: hop-by-hop (RFC 9110 §7.6.1) and ones the host sets, the credentials
/// (the upstream trusts agentgate's headers, not the raw tokens), and identity headers a client
/// might forge.
fn skipped(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "proxy-authorization" | "te" | "trailer" | "transfer-encoding" | "upgrade" | "host"
            | "http2-settings" | "authorization" | "dpop" | "workload-identity-token"
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

/// Sends the request to the upstream and relays the answer; a failure to reach it is a 502.
pub fn forward(gateway: &Gateway, request: IncomingRequest, headers: Fields, target: &str, response_out: ResponseOutparam) {
    let outgoing = OutgoingRequest::new(headers);
    let _ = outgoing.set_method(&request.method());
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
    copy_request_body(&request, outgoing_body);
    drop(request);
    let response = loop {
        if let Some(result) = future.get() {
            break result;
        }
        future.subscribe().block();
    };
    match response {
        Ok(Ok(response)) => relay(response, response_out),
        Ok(Err(e)) => bad_gateway(&upstream_error(&e), response_out),
        Err(()) => bad_gateway("the upstream response was already taken", response_out),
    }
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

fn relay(response: IncomingResponse, response_out: ResponseOutparam) {
    let headers = Fields::new();
    for (name, value) in response.headers().entries() {
        let lower = name.to_ascii_lowercase();
        if !matches!(lower.as_str(), "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "http2-settings") {
            let _ = headers.append(&name, &value);
        }
    }
    let outgoing = OutgoingResponse::new(headers);
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

fn upstream_error(e: &ErrorCode) -> String {
    format!("the upstream could not be reached: {e:?}")
}

fn bad_gateway(reason: &str, response_out: ResponseOutparam) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let body = serde_json::json!({"error": reason});
    super::respond(502, headers, body.to_string().as_bytes(), response_out);
}
