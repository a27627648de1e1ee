//! OpenID AuthZEN Authorization API 1.0 (§6 evaluation, §7 evaluations, §9 metadata), plus
//! `POST /v1/check` taking agentgate's own request JSON. A deny is `200 {"decision": false}` with
//! the outcome and reason in `context`.
//!
//! Credentials travel in the evaluation's `context`, with the same names as `agentgate check`'s
//! request JSON: `authorization`, `dpop`, `agent_identity` (raw header values), `http`
//! (`{method, uri}` as the client sent them), `input` (caller attributes) and `entities`.

use super::{Decided, Recorded, Shared, decision_id, request_id};
use crate::wire::{DecisionJson, RequestJson};
use agentgate_engine::jose::json::{JsonError, parse_object};
use agentgate_engine::{CheckRequest, Credentials, Decision, EntityRef, HttpRequest, Outcome};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// §5.1 / §5.2: a subject or resource.
#[derive(Debug, Clone, Deserialize)]
struct Entity {
    #[serde(rename = "type")]
    type_name: String,
    id: String,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

/// §5.3.
#[derive(Debug, Clone, Deserialize)]
struct Action {
    name: String,
}

/// What agentgate reads from `context` (other members are ignored, §10.1.1).
#[derive(Debug, Clone, Default, Deserialize)]
struct CallContext {
    #[serde(default)]
    authorization: Option<String>,
    #[serde(default)]
    dpop: Option<String>,
    #[serde(default)]
    agent_identity: Option<String>,
    #[serde(default)]
    http: Option<HttpRequest>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    entities: Option<Value>,
}

/// §6.1 / one item of §7.1.
#[derive(Debug, Clone, Default, Deserialize)]
struct Evaluation {
    #[serde(default)]
    subject: Option<Entity>,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    resource: Option<Entity>,
    #[serde(default)]
    context: Option<Value>,
}

/// §7.1.
#[derive(Debug, Clone, Deserialize)]
struct Evaluations {
    #[serde(flatten)]
    defaults: Evaluation,
    #[serde(default)]
    evaluations: Option<Vec<Evaluation>>,
    #[serde(default)]
    options: Option<BatchOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct BatchOptions {
    #[serde(default)]
    evaluations_semantic: Option<String>,
}

/// A 400 with a JSON error body (§10.1.2).
fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The body as one JSON object: UTF-8, no member name twice at any depth (the engine's strict
/// parser: a last-wins parser would let a caller hide a member, e.g. inside `context`).
pub fn strict_object(body: &[u8]) -> Result<Value, String> {
    parse_object(body).map(Value::Object).map_err(|e| match e {
        JsonError::DuplicateMember(name) => format!("the body has the member `{}` twice", name.escape_default()),
        other => format!("the body {other}"),
    })
}

/// The body, strictly parsed, as `T`.
fn strict<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_value(strict_object(body)?).map_err(|e| e.to_string())
}

/// One evaluation's members: its own, else the batch's defaults (borrowed, never copied).
#[derive(Debug, Clone, Copy, Default)]
struct Members<'a> {
    subject: Option<&'a Entity>,
    action: Option<&'a Action>,
    resource: Option<&'a Entity>,
    context: Option<&'a Value>,
}

impl<'a> Members<'a> {
    fn of(e: &'a Evaluation) -> Self {
        Members { subject: e.subject.as_ref(), action: e.action.as_ref(), resource: e.resource.as_ref(), context: e.context.as_ref() }
    }

    fn over(item: &'a Evaluation, defaults: &'a Evaluation) -> Self {
        Members {
            subject: item.subject.as_ref().or(defaults.subject.as_ref()),
            action: item.action.as_ref().or(defaults.action.as_ref()),
            resource: item.resource.as_ref().or(defaults.resource.as_ref()),
            context: item.context.as_ref().or(defaults.context.as_ref()),
        }
    }
}

/// Each item's members over the batch's defaults; §7.1: no items means a single evaluation of
/// the top-level request (`single` is an empty item).
fn members<'a>(batch: &'a Evaluations, single: &'a Evaluation) -> Vec<Members<'a>> {
    match &batch.evaluations {
        Some(items) if !items.is_empty() => items.iter().map(|item| Members::over(item, &batch.defaults)).collect(),
        _ => vec![Members::over(single, &batch.defaults)],
    }
}

/// The engine request for one evaluation.
fn to_check_request(e: Members<'_>) -> Result<CheckRequest, String> {
    let action = e.action.ok_or("`action` is required")?;
    let resource = e.resource.ok_or("`resource` is required")?;
    if action.name.is_empty() || resource.type_name.is_empty() {
        return Err("`action.name` and `resource.type` must not be empty".into());
    }
    let context: CallContext = match e.context {
        None => CallContext::default(),
        Some(v @ Value::Object(_)) => CallContext::deserialize(v).map_err(|err| format!("`context`: {err}"))?,
        Some(_) => return Err("`context` must be a JSON object".into()),
    };
    // §5.2 `properties` of the resource become its Cedar attributes, unless the caller sends
    // `entities` itself.
    let entities = match (&context.entities, &resource.properties) {
        (Some(entities), _) => Some(entities.to_string()),
        (None, Some(props)) => {
            Some(json!([{ "uid": {"type": resource.type_name, "id": resource.id}, "attrs": entity_refs(props), "parents": [] }]).to_string())
        }
        (None, None) => None,
    };
    Ok(CheckRequest {
        credentials: Credentials { authorization: context.authorization, dpop: context.dpop, agent_identity: context.agent_identity },
        http: context.http,
        action: action.name.clone(),
        resource: EntityRef { type_name: resource.type_name.clone(), id: resource.id.clone() },
        context_json: context.input.map(|i| i.to_string()),
        entities_json: entities,
        now: None,
    })
}

/// `{"type", "id"}` objects in AuthZEN properties are entity references in Cedar JSON.
fn entity_refs(props: &Map<String, Value>) -> Value {
    let convert = |v: &Value| -> Value {
        match v {
            Value::Object(o) if o.len() == 2 && o.get("type").is_some_and(Value::is_string) && o.get("id").is_some_and(Value::is_string) => {
                json!({ "__entity": o })
            }
            other => other.clone(),
        }
    };
    Value::Object(props.iter().map(|(k, v)| (k.clone(), convert(v))).collect())
}

/// §5.1: "the verified agent must match `subject` when the caller names one": an `agent` subject
/// is the current actor, a `user` subject the user the call is made for.
fn check_subject(subject: Option<&Entity>, mut decision: Decision) -> Decision {
    let Some(subject) = subject else { return decision };
    if !decision.allowed {
        return decision;
    }
    let verified = match subject.type_name.to_ascii_lowercase().as_str() {
        "agent" => decision.chain.first().cloned(),
        "user" => decision.user.clone(),
        other => {
            decision.allowed = false;
            decision.outcome = Outcome::InvalidRequest;
            decision.reason = format!("subject type `{}` is neither `agent` nor `user`", other.escape_default());
            return decision;
        }
    };
    if verified.as_deref() != Some(subject.id.as_str()) {
        decision.allowed = false;
        decision.outcome = Outcome::InvalidRequest;
        decision.reason = format!(
            "the verified {} `{}` is not the subject `{}`",
            subject.type_name.to_ascii_lowercase(),
            verified.unwrap_or_default().escape_default(),
            subject.id.escape_default()
        );
    }
    decision
}

/// §5.5: the response for one decision.
fn decision_body(recorded: &Recorded, id: &str) -> Value {
    let decision = &recorded.decision;
    let mut body = json!({
        "decision": decision.allowed,
        "context": {
            "decision_id": id,
            "outcome": decision.outcome.as_str(),
            "reason": decision.reason,
            "policies": decision.policies,
            "principal": decision.principal,
            "user": decision.user,
            "chain": decision.chain,
        }
    });
    // With `use_dpop_nonce` the caller needs the nonce to retry.
    if let (Some(nonce), Some(Value::Object(context))) = (&decision.dpop_nonce, body.get_mut("context")) {
        context.insert("dpop_nonce".into(), json!(nonce));
    }
    if let (Some(receipt), Some(Value::Object(context))) = (&recorded.receipt, body.get_mut("context")) {
        context.insert("receipt".into(), json!(receipt));
    }
    body
}

/// `POST /access/v1/evaluation`.
pub async fn evaluation(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let evaluation: Evaluation = match strict(&body) {
        Ok(e) => e,
        Err(e) => return bad_request(format!("malformed evaluation request: {e}")),
    };
    let request = match to_check_request(Members::of(&evaluation)) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let rid = request_id(&headers);
    let deployment = state.deployment();
    let decided = match state.audit_denial() {
        Some(denial) => Decided::host(denial),
        None => {
            let (deployment2, req2) = (Arc::clone(&deployment), request.clone());
            let result = tokio::task::spawn_blocking(move || deployment2.decide(&req2)).await;
            match result {
                Ok(r) => r,
                Err(e) => Decided::host(Decision::engine_error(format!("the decision task failed: {e}"))),
            }
        }
    };
    let decision = check_subject(evaluation.subject.as_ref(), decided.decision.clone());
    let id = decision_id();
    let recorded = state.record(&deployment, "authzen", &request, decided.answered_as(decision), &id, rid.as_deref());
    axum::Json(decision_body(&recorded, &id)).into_response()
}

/// `POST /access/v1/evaluations`.
pub async fn evaluations(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let batch: Evaluations = match strict(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("malformed evaluations request: {e}")),
    };
    let deployment = state.deployment();
    let max = deployment.config.file.server.max_batch_items;
    let count = batch.evaluations.as_ref().map_or(0, Vec::len);
    if count > max {
        let message = format!("`evaluations` has {count} items, over the limit of {max} (`[server] max_batch_items`)");
        return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(json!({ "error": message }))).into_response();
    }
    let semantic = batch.options.as_ref().and_then(|o| o.evaluations_semantic.clone()).unwrap_or_else(|| "execute_all".into());
    if !matches!(semantic.as_str(), "execute_all" | "deny_on_first_deny" | "permit_on_first_permit") {
        return bad_request(format!("unknown `evaluations_semantic` `{}`", semantic.escape_default()));
    }
    // Items borrow the top-level defaults; the batch is shared with the decision task, not copied.
    let batch = Arc::new(batch);
    let single = Evaluation::default();
    // §7.2.1: a malformed item is a deny with an error, not a failed batch.
    let prepared: Vec<Result<CheckRequest, String>> = members(&batch, &single).into_iter().map(to_check_request).collect();
    let valid: Vec<CheckRequest> = prepared.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let valid_index: Vec<usize> = prepared.iter().enumerate().filter(|(_, p)| p.is_ok()).map(|(i, _)| i).collect();
    let rid = request_id(&headers);
    let sem = semantic.clone();
    let deployment2 = Arc::clone(&deployment);
    let batch2 = Arc::clone(&batch);
    let audit_denial = state.audit_denial();
    // Items run in order on one instance; the semantic may stop the batch early (§7.1.2).
    let decided: Vec<Decided> = match audit_denial {
        Some(denial) => valid.iter().map(|_| Decided::host(denial.clone())).collect(),
        None => tokio::task::spawn_blocking(move || {
            let single = Evaluation::default();
            let subjects: Vec<Option<&Entity>> = members(&batch2, &single).into_iter().map(|m| m.subject).collect();
            deployment2.decide_all(&valid, |i, d| {
                let subject = valid_index.get(i).and_then(|at| subjects.get(*at)).copied().flatten();
                let allowed = check_subject(subject, d.clone()).allowed;
                match sem.as_str() {
                    "deny_on_first_deny" => !allowed,
                    "permit_on_first_permit" => allowed,
                    _ => false,
                }
            })
        })
        .await
        .unwrap_or_default(),
    };
    let mut decided = decided.into_iter();
    let mut out = Vec::new();
    for (evaluation, prepared) in members(&batch, &single).into_iter().zip(&prepared) {
        match prepared {
            Err(e) => out.push(json!({ "decision": false, "context": { "error": { "status": 400, "message": e } } })),
            Ok(request) => {
                let Some(one) = decided.next() else { break };
                let decision = check_subject(evaluation.subject, one.decision.clone());
                let id = decision_id();
                let recorded = state.record(&deployment, "authzen", request, one.answered_as(decision), &id, rid.as_deref());
                let stop = match semantic.as_str() {
                    "deny_on_first_deny" => !recorded.decision.allowed,
                    "permit_on_first_permit" => recorded.decision.allowed,
                    _ => false,
                };
                out.push(decision_body(&recorded, &id));
                if stop {
                    break;
                }
            }
        }
    }
    if batch.evaluations.as_ref().is_none_or(Vec::is_empty) {
        return axum::Json(out.into_iter().next().unwrap_or_else(|| json!({"decision": false}))).into_response();
    }
    axum::Json(json!({ "evaluations": out })).into_response()
}

/// §9.2 `GET /.well-known/authzen-configuration`.
pub async fn metadata(State(state): State<Shared>) -> Response {
    let base = state.pdp_url();
    axum::Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
    }))
    .into_response()
}

/// `POST /v1/check`: agentgate's request JSON in, decision JSON out.
pub async fn check(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    // Strict first (UTF-8, no duplicate members at any depth), then the request's own shape.
    if let Err(e) = strict_object(&body) {
        return bad_request(format!("malformed request: {e}"));
    }
    let Ok(text) = std::str::from_utf8(&body) else { return bad_request("malformed request: the body is not UTF-8") };
    let request = match RequestJson::parse(text) {
        Ok(r) => r.to_check_request(None),
        Err(e) => return bad_request(e),
    };
    if request.now.is_some() {
        return bad_request("`now` is only accepted by `agentgate check`");
    }
    let rid = request_id(&headers);
    let deployment = state.deployment();
    let decided = match state.audit_denial() {
        Some(denial) => Decided::host(denial),
        None => {
            let (deployment2, req2) = (Arc::clone(&deployment), request.clone());
            tokio::task::spawn_blocking(move || deployment2.decide(&req2))
                .await
                .unwrap_or_else(|e| Decided::host(Decision::engine_error(format!("the decision task failed: {e}"))))
        }
    };
    let id = decision_id();
    let recorded = state.record(&deployment, "check", &request, decided, &id, rid.as_deref());
    let answer = DecisionJson { receipt: recorded.receipt, ..DecisionJson::from(&recorded.decision) };
    let mut json = serde_json::to_value(answer).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut json {
        m.insert("decision_id".into(), json!(id));
    }
    axum::Json(json).into_response()
}
