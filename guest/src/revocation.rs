//! The revocation list: token ids, agents, users and keys cut off at once, checked before policy.

use crate::decision::{Denial, Outcome};
use crate::jose::jwk::quote;
use serde::Deserialize;
use std::collections::HashSet;

/// The revocation file as operators write it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationFile {
    /// Access token `jti` values.
    #[serde(default)]
    jti: Vec<String>,
    /// Agent ids (`act.sub` of any actor in a chain, or a workload identity `sub`).
    #[serde(default)]
    agents: Vec<String>,
    /// User ids (`sub`).
    #[serde(default)]
    users: Vec<String>,
    /// Key thumbprints (RFC 7638) or issuer key ids (`kid`).
    #[serde(default)]
    keys: Vec<String>,
}

/// A parsed revocation list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    jti: HashSet<String>,
    agents: HashSet<String>,
    users: HashSet<String>,
    keys: HashSet<String>,
}

/// What a call presents that may be revoked.
#[derive(Debug, Clone, Copy, Default)]
pub struct RevocationSubject<'a> {
    /// Access token `jti`.
    pub jti: &'a str,
    /// User.
    pub user: &'a str,
    /// Every actor of the chain, plus the verified workload identity.
    pub agents: &'a [&'a str],
    /// Proof key thumbprint, issuer key id and thumbprint, identity key id.
    pub keys: &'a [&'a str],
}

impl RevocationList {
    /// Parses the JSON document; an empty text is an empty list. Unknown members are an error, so a
    /// typo (`agent` for `agents`) cannot silently revoke nothing.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(RevocationList::default());
        }
        let file: RevocationFile = serde_json::from_str(text).map_err(|e| format!("revocation list: {e}"))?;
        let set = |v: Vec<String>| v.into_iter().collect::<HashSet<_>>();
        Ok(RevocationList { jti: set(file.jti), agents: set(file.agents), users: set(file.users), keys: set(file.keys) })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.jti.len() + self.agents.len() + self.users.len() + self.keys.len()
    }

    /// True if nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A `revoked` denial if anything the call presents is on the list.
    pub fn check(&self, subject: RevocationSubject<'_>) -> Result<(), Denial> {
        let revoked = |what: &str, id: &str| Err(Denial::new(Outcome::Revoked, format!("{what} {} is revoked", quote(id))));
        if self.jti.contains(subject.jti) {
            return revoked("access token", subject.jti);
        }
        if self.users.contains(subject.user) {
            return revoked("user", subject.user);
        }
        if let Some(agent) = subject.agents.iter().find(|a| self.agents.contains(**a)) {
            return revoked("agent", agent);
        }
        if let Some(key) = subject.keys.iter().find(|k| self.keys.contains(**k)) {
            return revoked("key", key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let list = RevocationList::parse(r#"{"jti":["t1"],"agents":["bad-agent"],"users":["mallory"],"keys":["k9"]}"#);
        assert!(list.is_ok(), "parse");
        let Ok(list) = list else { return };
        assert_eq!(list.len(), 4);
        let ok = RevocationSubject { jti: "t2", user: "alice", agents: &["good"], keys: &["k1"] };
        assert!(list.check(ok).is_ok());
        let reason = |s: RevocationSubject<'_>| list.check(s).err().map(|d| d.reason);
        assert_eq!(reason(RevocationSubject { jti: "t1", ..ok }).as_deref(), Some("access token `t1` is revoked"));
        assert_eq!(reason(RevocationSubject { user: "mallory", ..ok }).as_deref(), Some("user `mallory` is revoked"));
        assert_eq!(reason(RevocationSubject { agents: &["good", "bad-agent"], ..ok }).as_deref(), Some("agent `bad-agent` is revoked"));
        assert_eq!(reason(RevocationSubject { keys: &["k9"], ..ok }).as_deref(), Some("key `k9` is revoked"));
    }

    #[test]
    fn rejects_typos_and_bad_json() {
        assert!(RevocationList::parse(r#"{"agent":["x"]}"#).is_err());
        assert!(RevocationList::parse(r#"{"agents":"x"}"#).is_err());
        assert!(RevocationList::parse("{").is_err());
        assert_eq!(RevocationList::parse("  ").map(|l| l.len()), Ok(0));
    }
}
