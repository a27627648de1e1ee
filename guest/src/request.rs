//! One authorization question, as every host hands it to the engine.

use serde::{Deserialize, Serialize};

/// Raw credential header values, exactly as received.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// `Authorization` header value (`Bearer <jwt>` or `DPoP <jwt>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// `DPoP` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop: Option<String>,
    /// `Workload-Identity-Token` header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_identity: Option<String>,
}

// Credentials are secrets: Debug must not print them.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|s| format!("<{} bytes>", s.len()));
        f.debug_struct("Credentials")
            .field("authorization", &shown(&self.authorization))
            .field("dpop", &shown(&self.dpop))
            .field("agent_identity", &shown(&self.agent_identity))
            .finish()
    }
}

/// The HTTP request the credentials came with, as the client addressed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// Method, case-sensitive.
    pub method: String,
    /// Absolute URI.
    pub uri: String,
}

/// A Cedar entity reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    /// Entity type, e.g. `Mailbox`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Entity id.
    pub id: String,
}

/// One authorization question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    /// Credentials as presented.
    pub credentials: Credentials,
    /// The HTTP request, for DPoP `htm`/`htu`.
    pub http: Option<HttpRequest>,
    /// Cedar action id.
    pub action: String,
    /// The resource acted on.
    pub resource: EntityRef,
    /// Caller attributes (a JSON object), seen by policies as `context.input`.
    pub context_json: Option<String>,
    /// Cedar entities JSON.
    pub entities_json: Option<String>,
    /// Evaluation time in unix seconds; `None` means the wall clock.
    pub now: Option<u64>,
}
