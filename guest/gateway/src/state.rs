//! The engine's shared-state port for each gateway build: this instance's own memory, or the
//! host's `state` import (`shared-state` feature, world `http-gateway-shared`).

use agentgate_engine::SharedState;

/// The state the engine of this build uses.
pub fn for_this_build() -> Box<dyn SharedState> {
    #[cfg(not(feature = "shared-state"))]
    return Box::new(instance::InstanceState::default());
    #[cfg(feature = "shared-state")]
    return Box::new(host::HostState);
}

#[cfg(not(feature = "shared-state"))]
mod instance {
    use agentgate_engine::state::{ProofAnswer, ProofLimits, ProofMemory, ProofUse, RevocationAnswer, SharedState, StatusListAnswer};

    /// Proof ids remembered by this instance only; the revocation list is the one baked into
    /// the engine at build time (its own list), so the host has none to add.
    pub struct InstanceState {
        proofs: ProofMemory,
    }

    impl Default for InstanceState {
        fn default() -> Self {
            InstanceState { proofs: ProofMemory::new(ProofLimits { capacity: 100_000, ..ProofLimits::default() }) }
        }
    }

    impl SharedState for InstanceState {
        fn remember_proof(&self, proof: &ProofUse<'_>) -> ProofAnswer {
            self.proofs.remember(proof)
        }

        fn check_revoked(&self, _ids: &[String], _now: u64) -> RevocationAnswer {
            RevocationAnswer::Clear
        }

        fn status_list(&self, uri: &str, _known_digest: Option<&str>) -> StatusListAnswer {
            StatusListAnswer::Unavailable(format!(
                "this gateway build has no status list source for `{}`; build it with `--state host` and run it with `agentgate gateway run`",
                uri.escape_default()
            ))
        }
    }
}

#[cfg(feature = "shared-state")]
mod host {
    use crate::agentgate::verifier::state as wit;
    use agentgate_engine::state::{ProofAnswer, ProofUse, RevocationAnswer, SharedState, StatusListAnswer};

    /// The host's store, through the `state` import.
    pub struct HostState;

    impl SharedState for HostState {
        fn remember_proof(&self, proof: &ProofUse<'_>) -> ProofAnswer {
            let answer = wit::remember_proof(&wit::ProofUse {
                key_thumbprint: proof.key_thumbprint.to_owned(),
                jti_hash: proof.jti_hash.to_owned(),
                ttl_secs: proof.ttl_secs,
            });
            match answer {
                wit::ProofAnswer::Fresh => ProofAnswer::Fresh,
                wit::ProofAnswer::Replayed => ProofAnswer::Replayed,
                wit::ProofAnswer::KeyLimit(n) => ProofAnswer::KeyLimit(n),
                wit::ProofAnswer::Unavailable(why) => ProofAnswer::Unavailable(why),
            }
        }

        fn check_revoked(&self, ids: &[String], now: u64) -> RevocationAnswer {
            match wit::check_revoked(ids, now) {
                wit::RevocationAnswer::Clear => RevocationAnswer::Clear,
                wit::RevocationAnswer::Revoked(i) => RevocationAnswer::Revoked(usize::try_from(i).unwrap_or(usize::MAX)),
                wit::RevocationAnswer::Unavailable(why) => RevocationAnswer::Unavailable(why),
            }
        }

        fn status_list(&self, uri: &str, known_digest: Option<&str>) -> StatusListAnswer {
            match wit::status_list(uri, known_digest) {
                wit::StatusListAnswer::Unchanged => StatusListAnswer::Unchanged,
                wit::StatusListAnswer::Current(token) => StatusListAnswer::Current(token),
                wit::StatusListAnswer::Unavailable(why) => StatusListAnswer::Unavailable(why),
            }
        }
    }
}
