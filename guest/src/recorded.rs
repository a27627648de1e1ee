//! A call as the engine authorized it: who the verified principal is, the verified facts policies
//! see, and what the caller asked — enough to decide it again under other policies without its
//! credentials (`agentgate replay`: the recorded facts stand, nothing is verified again). It
//! holds no token, proof, identity token or signature: only what the credentials proved.

use crate::authorizer::context::ContextFacts;
use crate::authorizer::{Authorizer, AuthzCall, PrincipalKind, entity_display};
use crate::decision::{Decision, VerifiedFacts};
use crate::request::EntityRef;
use serde::{Deserialize, Serialize};

/// The form of a recorded call; a record of another form is refused, never guessed at.
pub const RECORD_VERSION: u32 = 1;

/// One authorized call, recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedCall {
    /// `RECORD_VERSION` when written.
    pub version: u32,
    /// The principal's kind: an agent acting for a user, or the user directly.
    pub principal_kind: PrincipalKind,
    /// The principal's id (the current actor, or the user).
    pub principal_id: String,
    /// The Cedar action id.
    pub action: String,
    /// The resource.
    pub resource: EntityRef,
    /// The verified facts, as they were when the call was decided.
    pub facts: ContextFacts,
    /// The caller's `context` JSON (`context.input`), as given.
    pub input: Option<String>,
    /// The caller's entities JSON, as given.
    pub entities: Option<String>,
}

impl RecordedCall {
    /// The record of `call`.
    pub fn of(call: &AuthzCall<'_>) -> Self {
        RecordedCall {
            version: RECORD_VERSION,
            principal_kind: call.principal_kind,
            principal_id: call.principal_id.to_owned(),
            action: call.action.to_owned(),
            resource: call.resource.clone(),
            facts: call.facts.clone(),
            input: call.input.map(str::to_owned),
            entities: call.entities.map(str::to_owned),
        }
    }

    /// Reads a record, refusing another form or version with a reason.
    pub fn parse(json: &serde_json::Value) -> Result<Self, String> {
        match json.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(RECORD_VERSION) => {}
            Some(v) => return Err(format!("the call was recorded in form {v}; this agentgate reads form {RECORD_VERSION}")),
            None => return Err("the recorded call has no `version`".into()),
        }
        RecordedCall::deserialize(json).map_err(|e| format!("the recorded call is malformed: {e}"))
    }

    /// The authorization question it was.
    pub fn authz_call(&self) -> AuthzCall<'_> {
        AuthzCall {
            principal_kind: self.principal_kind,
            principal_id: &self.principal_id,
            action: &self.action,
            resource: &self.resource,
            facts: &self.facts,
            input: self.input.as_deref(),
            entities: self.entities.as_deref(),
        }
    }

    /// Decides the call again with `authorizer`'s policies and schema. The recorded facts stand:
    /// nothing is verified again, no proof is spent, no clock is read.
    pub fn decide_again(&self, authorizer: &Authorizer) -> Decision {
        let verified = VerifiedFacts {
            principal: Some(entity_display(self.principal_kind.type_name(), &self.principal_id)),
            user: Some(self.facts.user.clone()),
            chain: self.facts.chain.clone(),
            token_id: Some(self.facts.token_id.clone()),
            key_thumbprint: (!self.facts.key.is_empty()).then(|| self.facts.key.clone()),
        };
        Decision::of_answer(authorizer.authorize(&self.authz_call()), verified)
    }
}
