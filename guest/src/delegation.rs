//! The delegation chain (RFC 8693 §4.1): nested `act` claims, outermost = the current actor.

use crate::jose::json::JsonObject;
use crate::jose::jwk::quote;
use serde_json::Value;

/// Claims that are "not meaningful" inside `act` (RFC 8693 §4.1); an issuer that puts them there
/// has misunderstood delegation, so the token is rejected rather than half-honoured.
const NON_IDENTITY_CLAIMS: [&str; 4] = ["exp", "nbf", "aud", "scope"];

/// One actor of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The actor's `sub`.
    pub sub: String,
    /// The actor's `iss`, when given.
    pub iss: Option<String>,
}

/// The actors of a token, current actor first. Empty when the user calls directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelegationChain {
    actors: Vec<Actor>,
}

impl DelegationChain {
    /// Reads the nested `act` claims of `claims`, up to `max_depth` actors.
    pub fn from_claims(claims: &JsonObject, max_depth: u32) -> Result<Self, String> {
        let mut actors = Vec::new();
        let mut current = claims.get("act");
        while let Some(value) = current {
            let Value::Object(act) = value else {
                return Err("has an `act` claim that is not a JSON object".into());
            };
            if actors.len() >= max_depth as usize {
                return Err(format!("has a delegation chain deeper than the limit of {max_depth} actors"));
            }
            if let Some(claim) = NON_IDENTITY_CLAIMS.iter().find(|c| act.contains_key(**c)) {
                return Err(format!("has an `act` carrying `{claim}`, which is not an identity claim (RFC 8693 §4.1)"));
            }
            let sub = match act.get("sub") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => return Err("has an `act` without a non-empty string `sub`".into()),
            };
            let iss = match act.get("iss") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(format!("has an `act` of {} whose `iss` is not a string", quote(&sub))),
            };
            actors.push(Actor { sub, iss });
            current = act.get("act");
        }
        Ok(DelegationChain { actors })
    }

    /// The current actor (the outermost `act`), if any.
    pub fn current(&self) -> Option<&Actor> {
        self.actors.first()
    }

    /// Number of actors: 0 when the user calls directly.
    pub fn depth(&self) -> usize {
        self.actors.len()
    }

    /// Actors, current first.
    pub fn actors(&self) -> &[Actor] {
        &self.actors
    }

    /// Actor subjects, current first.
    pub fn subjects(&self) -> Vec<String> {
        self.actors.iter().map(|a| a.sub.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::json::parse_object;

    fn chain(text: &str, max: u32) -> Result<DelegationChain, String> {
        DelegationChain::from_claims(&parse_object(text.as_bytes()).map_err(|e| e.to_string())?, max)
    }

    #[test]
    fn reads_nested_actors_outermost_first() {
        let c = chain(r#"{"act":{"sub":"agent-b","act":{"sub":"agent-a","iss":"https://as"}}}"#, 4);
        assert_eq!(c.as_ref().map(DelegationChain::subjects), Ok(vec!["agent-b".to_string(), "agent-a".to_string()]));
        assert_eq!(chain("{}", 4).map(|c| c.depth()), Ok(0));
    }

    #[test]
    fn rejects_bad_chains() {
        assert_eq!(
            chain(r#"{"act":{"sub":"a","act":{"sub":"b","act":{"sub":"c"}}}}"#, 2).err().as_deref(),
            Some("has a delegation chain deeper than the limit of 2 actors")
        );
        assert_eq!(chain(r#"{"act":"a"}"#, 4).err().as_deref(), Some("has an `act` claim that is not a JSON object"));
        assert_eq!(chain(r#"{"act":{"iss":"x"}}"#, 4).err().as_deref(), Some("has an `act` without a non-empty string `sub`"));
        assert_eq!(
            chain(r#"{"act":{"sub":"a","exp":1}}"#, 4).err().as_deref(),
            Some("has an `act` carrying `exp`, which is not an identity claim (RFC 8693 §4.1)")
        );
        assert_eq!(
            chain(r#"{"act":{"sub":"a","scope":"x"}}"#, 4).err().as_deref(),
            Some("has an `act` carrying `scope`, which is not an identity claim (RFC 8693 §4.1)")
        );
    }
}
