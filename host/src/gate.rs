//! A worker's view of a deployment: one component verifier kept in step with the live revocation
//! list. The CLI and the HTTP service decide every call through a `Gate`.

use crate::component::ComponentVerifier;
use crate::revocations::RevocationFile;
use agentgate_engine::{CheckRequest, Decision};
use std::sync::Arc;

/// A verifier plus the revocation file it follows.
#[derive(Debug)]
pub struct Gate {
    verifier: ComponentVerifier,
    revocations: Option<Arc<RevocationFile>>,
    applied_generation: u64,
}

impl Gate {
    /// Wraps a verifier; the current revocation list is applied on the first call.
    pub fn new(verifier: ComponentVerifier, revocations: Option<Arc<RevocationFile>>) -> Self {
        Gate { verifier, revocations, applied_generation: 0 }
    }

    /// Decides one call against the current revocation list.
    pub fn check(&mut self, request: &CheckRequest) -> Decision {
        if let Some(file) = &self.revocations {
            let (generation, json) = file.refresh();
            if generation != self.applied_generation {
                match self.verifier.set_revocations(&json) {
                    Ok(_) => self.applied_generation = generation,
                    // The host validated the list already; a component that refuses it cannot be
                    // trusted with this call.
                    Err(e) => return Decision::engine_error(format!("could not apply the revocation list: {e}")),
                }
            }
        }
        self.verifier.check(request)
    }

    /// The verifier.
    pub fn verifier_mut(&mut self) -> &mut ComponentVerifier {
        &mut self.verifier
    }
}
