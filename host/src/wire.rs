//! The JSON forms of a request and a decision used by `agentgate check`, `POST /v1/check` and the
//! shared test vectors.

use agentgate_engine::{CheckRequest, Credentials, Decision, EntityRef, HttpRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request as JSON. Unknown members are an error: a misspelt `dpop` must not silently vanish.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestJson {
    /// `Authorization` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// `DPoP` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop: Option<String>,
    /// `Workload-Identity-Token` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_identity: Option<String>,
    /// The HTTP request, for DPoP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRequest>,
    /// Cedar action id.
    pub action: String,
    /// Resource `{type, id}`.
    pub resource: EntityRef,
    /// Caller attributes (an object), seen as `context.input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Cedar entities (an array of entity JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<Value>,
    /// Evaluation time, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<u64>,
}

impl RequestJson {
    /// Parses and checks the shape of a request document.
    pub fn parse(text: &str) -> Result<Self, String> {
        let request: RequestJson = serde_json::from_str(text).map_err(|e| format!("malformed request: {e}"))?;
        if let Some(c) = &request.context
            && !c.is_object()
        {
            return Err("malformed request: `context` must be a JSON object".into());
        }
        if let Some(e) = &request.entities
            && !e.is_array()
        {
            return Err("malformed request: `entities` must be a JSON array of Cedar entities".into());
        }
        Ok(request)
    }

    /// The engine request; `now` overrides the document's time when given.
    pub fn to_check_request(&self, now: Option<u64>) -> CheckRequest {
        CheckRequest {
            credentials: Credentials { authorization: self.authorization.clone(), dpop: self.dpop.clone(), agent_identity: self.agent_identity.clone() },
            http: self.http.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            context_json: self.context.as_ref().map(Value::to_string),
            entities_json: self.entities.as_ref().map(Value::to_string),
            now: now.or(self.now),
        }
    }
}

/// A decision as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionJson {
    /// `allow` or `deny`.
    pub decision: String,
    /// Outcome name.
    pub outcome: String,
    /// Human reason.
    pub reason: String,
    /// Determining policies.
    pub policies: Vec<String>,
    /// Policy evaluation errors.
    pub errors: Vec<String>,
    /// Cedar principal.
    pub principal: Option<String>,
    /// The user.
    pub user: Option<String>,
    /// Delegation chain, current actor first.
    pub chain: Vec<String>,
    /// Token `jti`.
    pub token_id: Option<String>,
    /// Proof key thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_thumbprint: Option<String>,
    /// Fresh DPoP nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_nonce: Option<String>,
    /// With `insufficient_scope`: the scope that would permit the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_scope: Option<String>,
    /// The signed decision receipt (`[receipts]`), when one was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

impl From<&Decision> for DecisionJson {
    fn from(d: &Decision) -> Self {
        DecisionJson {
            decision: if d.allowed { "allow" } else { "deny" }.to_owned(),
            outcome: d.outcome.as_str().to_owned(),
            reason: d.reason.clone(),
            policies: d.policies.clone(),
            errors: d.errors.clone(),
            principal: d.principal.clone(),
            user: d.user.clone(),
            chain: d.chain.clone(),
            token_id: d.token_id.clone(),
            key_thumbprint: d.key_thumbprint.clone(),
            dpop_nonce: d.dpop_nonce.clone(),
            required_scope: d.required_scope.clone(),
            receipt: None,
        }
    }
}
