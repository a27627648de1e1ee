//! Revocation: token ids, users, agents and keys cut off at once, checked before policy.
//!
//! Every revocation has one canonical id (`RevocationId::canonical`), so that a list kept
//! anywhere — this engine's own list, a host's file, a shared store — is a set of strings, and a
//! call is checked by looking up the ids it presents. Key revocations are unambiguous: an RFC 7638
//! thumbprint, or a `kid` scoped to the issuer or trust domain that publishes it. A bare `kid`
//! (the format before scoping) still loads, but revokes every trusted key with that id;
//! `RevocationList::warnings` names the keys it hits.

use crate::decision::{Denial, Outcome};
use crate::jose::json::{JsonObject, parse_object};
use crate::jose::jwk::quote;
use crate::trust::TrustStore;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// One revocable identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevocationId {
    /// An access token by `jti`, of any issuer (`issuer` absent) or of one issuer.
    Token { issuer: Option<String>, jti: String },
    /// A user by `sub`, of any issuer or of one.
    User { issuer: Option<String>, sub: String },
    /// An agent: any actor of a delegation chain, or a verified workload identity.
    Agent(String),
    /// A key by RFC 7638 thumbprint: a proof key, an issuer key or a trust-domain key.
    Thumbprint(String),
    /// An issuer's signing key by `kid`.
    IssuerKid { issuer: String, kid: String },
    /// A trust domain's bundle key by `kid`.
    DomainKid { trust_domain: String, kid: String },
    /// Every trusted key with this `kid`, whoever publishes it (a bare `kid`; ambiguous).
    AnyKid(String),
}

impl RevocationId {
    /// The canonical id: a compact JSON array of strings, `["<kind>", …]`. Hosts store and look up
    /// exactly these strings (`tests/CONFORMANCE.md` lists the kinds).
    pub fn canonical(&self) -> String {
        let parts: Vec<&str> = match self {
            RevocationId::Token { issuer: None, jti } => vec!["jti", jti],
            RevocationId::Token { issuer: Some(iss), jti } => vec!["jti", iss, jti],
            RevocationId::User { issuer: None, sub } => vec!["user", sub],
            RevocationId::User { issuer: Some(iss), sub } => vec!["user", iss, sub],
            RevocationId::Agent(id) => vec!["agent", id],
            RevocationId::Thumbprint(t) => vec!["key", t],
            RevocationId::IssuerKid { issuer, kid } => vec!["issuer-kid", issuer, kid],
            RevocationId::DomainKid { trust_domain, kid } => vec!["domain-kid", trust_domain, kid],
            RevocationId::AnyKid(kid) => vec!["kid", kid],
        };
        serde_json::to_string(&parts).unwrap_or_default()
    }

    /// Parses a canonical id.
    pub fn from_canonical(text: &str) -> Result<Self, String> {
        let parts: Vec<String> = serde_json::from_str(text).map_err(|_| format!("{} is not a canonical revocation id", quote(text)))?;
        let mut parts = parts.into_iter();
        let (kind, a, b, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
        let id = match (kind.as_deref(), a, b, rest) {
            (Some("jti"), Some(jti), None, None) => RevocationId::Token { issuer: None, jti },
            (Some("jti"), Some(iss), Some(jti), None) => RevocationId::Token { issuer: Some(iss), jti },
            (Some("user"), Some(sub), None, None) => RevocationId::User { issuer: None, sub },
            (Some("user"), Some(iss), Some(sub), None) => RevocationId::User { issuer: Some(iss), sub },
            (Some("agent"), Some(id), None, None) => RevocationId::Agent(id),
            (Some("key"), Some(t), None, None) => RevocationId::Thumbprint(t),
            (Some("issuer-kid"), Some(issuer), Some(kid), None) => RevocationId::IssuerKid { issuer, kid },
            (Some("domain-kid"), Some(trust_domain), Some(kid), None) => RevocationId::DomainKid { trust_domain, kid },
            (Some("kid"), Some(kid), None, None) => RevocationId::AnyKid(kid),
            _ => return Err(format!("{} is not a canonical revocation id", quote(text))),
        };
        if id.values().any(str::is_empty) {
            return Err(format!("{} has an empty value", quote(text)));
        }
        Ok(id)
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        let (a, b): (Option<&str>, &str) = match self {
            RevocationId::Token { issuer, jti } => (issuer.as_deref(), jti),
            RevocationId::User { issuer, sub } => (issuer.as_deref(), sub),
            RevocationId::Agent(v) | RevocationId::Thumbprint(v) | RevocationId::AnyKid(v) => (None, v),
            RevocationId::IssuerKid { issuer, kid } => (Some(issuer), kid),
            RevocationId::DomainKid { trust_domain, kid } => (Some(trust_domain), kid),
        };
        a.into_iter().chain(std::iter::once(b))
    }

    /// What a denial says was revoked: `agent `x``, `key `k1` of issuer `https://as``.
    pub fn describe(&self) -> String {
        match self {
            RevocationId::Token { issuer: None, jti } => format!("access token {}", quote(jti)),
            RevocationId::Token { issuer: Some(iss), jti } => format!("access token {} of issuer {}", quote(jti), quote(iss)),
            RevocationId::User { issuer: None, sub } => format!("user {}", quote(sub)),
            RevocationId::User { issuer: Some(iss), sub } => format!("user {} of issuer {}", quote(sub), quote(iss)),
            RevocationId::Agent(id) => format!("agent {}", quote(id)),
            RevocationId::Thumbprint(t) => format!("key {}", quote(t)),
            RevocationId::IssuerKid { issuer, kid } => format!("key {} of issuer {}", quote(kid), quote(issuer)),
            RevocationId::DomainKid { trust_domain, kid } => format!("key {} of trust domain {}", quote(kid), quote(trust_domain)),
            RevocationId::AnyKid(kid) => format!("key {}", quote(kid)),
        }
    }

    /// The entry as written in a revocation file: (member, item).
    pub fn to_file_item(&self, expires: Option<u64>) -> (&'static str, Value) {
        let mut object = serde_json::Map::new();
        let mut put = |k: &str, v: &str| {
            object.insert(k.to_owned(), Value::String(v.to_owned()));
        };
        let member = match self {
            RevocationId::Token { issuer, jti } => {
                put("id", jti);
                if let Some(i) = issuer {
                    put("issuer", i);
                }
                "jti"
            }
            RevocationId::User { issuer, sub } => {
                put("id", sub);
                if let Some(i) = issuer {
                    put("issuer", i);
                }
                "users"
            }
            RevocationId::Agent(id) => {
                put("id", id);
                "agents"
            }
            RevocationId::Thumbprint(t) => {
                put("thumbprint", t);
                "keys"
            }
            RevocationId::IssuerKid { issuer, kid } => {
                put("issuer", issuer);
                put("kid", kid);
                "keys"
            }
            RevocationId::DomainKid { trust_domain, kid } => {
                put("trust_domain", trust_domain);
                put("kid", kid);
                "keys"
            }
            RevocationId::AnyKid(kid) => {
                put("kid", kid);
                "keys"
            }
        };
        if let Some(e) = expires {
            object.insert("expires".into(), Value::from(e));
        }
        (member, Value::Object(object))
    }
}

/// The ids a call presents, built by the engine from what it verified.
#[derive(Debug, Clone, Default)]
pub struct CallIds {
    ids: Vec<RevocationId>,
}

impl CallIds {
    /// Adds an id.
    pub fn push(&mut self, id: RevocationId) {
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
    }

    /// The ids in order.
    pub fn ids(&self) -> &[RevocationId] {
        &self.ids
    }

    /// Canonical forms, in the same order.
    pub fn canonical(&self) -> Vec<String> {
        self.ids.iter().map(RevocationId::canonical).collect()
    }

    /// The `revoked` denial for the id at `index`.
    pub fn denial(&self, index: usize) -> Denial {
        let what = self.ids.get(index).map_or_else(|| "a credential of this call".to_owned(), RevocationId::describe);
        Denial::new(Outcome::Revoked, format!("{what} is revoked"))
    }
}

/// A parsed revocation list: canonical id → expiry (unix seconds; `None` for never).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    entries: HashMap<String, Option<u64>>,
    /// Bare `keys` strings (a thumbprint or an unscoped `kid`), for `warnings`.
    bare_keys: BTreeSet<String>,
}

impl RevocationList {
    /// Parses the JSON document; an empty text is an empty list. Unknown members are an error, so a
    /// typo (`agent` for `agents`) cannot silently revoke nothing; duplicate members too.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(RevocationList::default());
        }
        let doc = parse_object(text.as_bytes()).map_err(|e| format!("revocation list {e}"))?;
        let mut list = RevocationList::default();
        for (member, value) in &doc {
            if !matches!(member.as_str(), "jti" | "users" | "agents" | "keys") {
                return Err(format!("revocation list: unknown member `{}` (expected `jti`, `users`, `agents`, `keys`)", member.escape_default()));
            }
            let Value::Array(items) = value else {
                return Err(format!("revocation list: `{}` must be an array", member.escape_default()));
            };
            for (index, item) in items.iter().enumerate() {
                let at = |e: String| format!("revocation list: `{}` item {index}: {e}", member.escape_default());
                match member.as_str() {
                    "jti" => list.add_scoped(item, |issuer, jti| RevocationId::Token { issuer, jti }).map_err(at)?,
                    "users" => list.add_scoped(item, |issuer, sub| RevocationId::User { issuer, sub }).map_err(at)?,
                    "agents" => list.add_agent(item).map_err(at)?,
                    _ => list.add_key(item).map_err(at)?,
                }
            }
        }
        Ok(list)
    }

    /// Builds a list from canonical ids and expiries (a host's store).
    pub fn from_entries(entries: impl IntoIterator<Item = (RevocationId, Option<u64>)>) -> Self {
        let mut list = RevocationList::default();
        for (id, expires) in entries {
            list.insert(id, expires);
        }
        list
    }

    /// Adds a revocation. The same id listed twice keeps the later expiry (or none): the
    /// longest revocation wins.
    pub fn insert(&mut self, id: RevocationId, expires: Option<u64>) {
        let slot = self.entries.entry(id.canonical()).or_insert(expires);
        *slot = match (*slot, expires) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }

    fn add_scoped(&mut self, item: &Value, make: impl Fn(Option<String>, String) -> RevocationId) -> Result<(), String> {
        match item {
            Value::String(id) => self.insert(make(None, non_empty(id, "the id")?), None),
            Value::Object(o) => {
                only_members(o, &["id", "issuer", "expires"])?;
                let id = required(o, "id")?;
                let issuer = optional(o, "issuer")?;
                self.insert(make(issuer, id), expires(o)?);
            }
            _ => return Err("must be a string or an object".into()),
        }
        Ok(())
    }

    fn add_agent(&mut self, item: &Value) -> Result<(), String> {
        match item {
            Value::String(id) => self.insert(RevocationId::Agent(non_empty(id, "the id")?), None),
            Value::Object(o) => {
                only_members(o, &["id", "expires"])?;
                self.insert(RevocationId::Agent(required(o, "id")?), expires(o)?);
            }
            _ => return Err("must be a string or an object".into()),
        }
        Ok(())
    }

    fn add_key(&mut self, item: &Value) -> Result<(), String> {
        match item {
            // The format before scoping: a thumbprint or a bare `kid`, told apart by nothing.
            Value::String(s) => {
                let s = non_empty(s, "the key")?;
                self.insert(RevocationId::Thumbprint(s.clone()), None);
                self.insert(RevocationId::AnyKid(s.clone()), None);
                self.bare_keys.insert(s);
            }
            Value::Object(o) => {
                only_members(o, &["thumbprint", "issuer", "trust_domain", "kid", "expires"])?;
                let id = match (optional(o, "thumbprint")?, optional(o, "issuer")?, optional(o, "trust_domain")?, optional(o, "kid")?) {
                    (Some(t), None, None, None) => RevocationId::Thumbprint(t),
                    (None, Some(issuer), None, Some(kid)) => RevocationId::IssuerKid { issuer, kid },
                    (None, None, Some(trust_domain), Some(kid)) => RevocationId::DomainKid { trust_domain, kid },
                    (None, None, None, Some(kid)) => RevocationId::AnyKid(kid),
                    _ => return Err("a key is `{\"thumbprint\"}`, `{\"issuer\", \"kid\"}` or `{\"trust_domain\", \"kid\"}`".into()),
                };
                self.insert(id, expires(o)?);
            }
            _ => return Err("must be a string or an object".into()),
        }
        Ok(())
    }

    /// Removes a revocation; false if it was not listed. A bare `keys` string (listed as both a
    /// thumbprint and a `kid`) goes as a whole when either is removed.
    pub fn remove(&mut self, id: &RevocationId) -> bool {
        if let RevocationId::Thumbprint(k) | RevocationId::AnyKid(k) = id
            && self.bare_keys.remove(k)
        {
            self.entries.remove(&RevocationId::Thumbprint(k.clone()).canonical());
            self.entries.remove(&RevocationId::AnyKid(k.clone()).canonical());
            return true;
        }
        self.entries.remove(&id.canonical()).is_some()
    }

    /// Number of entries (a bare `keys` string counts once).
    pub fn len(&self) -> usize {
        self.entries.len().saturating_sub(self.bare_keys.len())
    }

    /// True if nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry: canonical id and expiry.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Option<u64>)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The index of the first of `canonical_ids` revoked at `now`.
    pub fn lookup(&self, canonical_ids: &[String], now: u64) -> Option<usize> {
        canonical_ids.iter().position(|id| self.entries.get(id).is_some_and(|expires| expires.is_none_or(|e| e > now)))
    }

    /// What an operator should know about this list given the keys in force: every bare `keys`
    /// string that is the `kid` of a trusted key revokes that `kid` for every issuer and trust
    /// domain, which is rarely meant.
    pub fn warnings(&self, trust: &TrustStore) -> Vec<String> {
        let mut out = Vec::new();
        for bare in &self.bare_keys {
            let owners = trust.kid_owners(bare);
            if owners.is_empty() {
                continue;
            }
            let scoped: Vec<String> = owners.iter().map(|o| o.scoped_entry(bare)).collect();
            out.push(format!(
                "revocation list: `keys` entry {} is a bare `kid`: it revokes every trusted key with that id ({}). Write {} instead; a thumbprint is unambiguous",
                quote(bare),
                owners.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", "),
                scoped.join(" or "),
            ));
        }
        out
    }

    /// The list as a revocation file document (what `agentgate revoke` writes back).
    pub fn to_file_json(&self) -> Value {
        let mut items: Vec<(&str, Value)> = Vec::new();
        for (id, expires) in &self.entries {
            let Ok(parsed) = RevocationId::from_canonical(id) else { continue };
            // A bare string produced two ids; it is written back once, as it was.
            if let RevocationId::Thumbprint(k) | RevocationId::AnyKid(k) = &parsed
                && self.bare_keys.contains(k)
                && expires.is_none()
            {
                continue;
            }
            items.push(parsed.to_file_item(*expires));
        }
        items.extend(self.bare_keys.iter().map(|k| ("keys", Value::String(k.clone()))));
        items.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.to_string().cmp(&b.1.to_string())));
        let mut doc = serde_json::Map::new();
        for (member, item) in items {
            if let Value::Array(list) = doc.entry(member.to_owned()).or_insert_with(|| Value::Array(Vec::new())) {
                list.push(item);
            }
        }
        Value::Object(doc)
    }
}

fn non_empty(value: &str, what: &str) -> Result<String, String> {
    if value.is_empty() { Err(format!("{what} is empty")) } else { Ok(value.to_owned()) }
}

fn only_members(o: &JsonObject, allowed: &[&str]) -> Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown member `{}`", k.escape_default())),
        None => Ok(()),
    }
}

fn required(o: &JsonObject, name: &str) -> Result<String, String> {
    optional(o, name)?.ok_or_else(|| format!("lacks `{name}`"))
}

fn optional(o: &JsonObject, name: &str) -> Result<Option<String>, String> {
    match o.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{name}` must be a non-empty string")),
    }
}

fn expires(o: &JsonObject) -> Result<Option<u64>, String> {
    match o.get("expires") {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| "`expires` must be unix seconds".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{IssuerSource, TrustConfig, TrustDomainSource};

    fn ids(list: &[RevocationId]) -> Vec<String> {
        list.iter().map(RevocationId::canonical).collect()
    }

    #[test]
    fn parses_every_form_and_looks_up_canonical_ids() {
        let list = RevocationList::parse(
            r#"{"jti":["t1",{"id":"t2","issuer":"https://as","expires":200}],"agents":["bad-agent"],"users":["mallory",{"id":"eve","issuer":"https://as"}],
                "keys":["k9",{"thumbprint":"T"},{"issuer":"https://as","kid":"k1"},{"trust_domain":"agents.example","kid":"k2"}]}"#,
        )
        .unwrap();
        assert_eq!(list.len(), 9);
        let hit = |id: RevocationId, now: u64| list.lookup(&ids(&[RevocationId::Agent("good".into()), id]), now);
        assert_eq!(hit(RevocationId::Token { issuer: None, jti: "t1".into() }, 0), Some(1));
        assert_eq!(hit(RevocationId::Token { issuer: Some("https://as".into()), jti: "t2".into() }, 100), Some(1));
        assert_eq!(hit(RevocationId::Token { issuer: Some("https://as".into()), jti: "t2".into() }, 200), None, "expired entries no longer apply");
        assert_eq!(hit(RevocationId::Token { issuer: Some("https://other".into()), jti: "t2".into() }, 100), None, "scoped to its issuer");
        assert_eq!(hit(RevocationId::User { issuer: None, sub: "mallory".into() }, 0), Some(1));
        assert_eq!(hit(RevocationId::User { issuer: Some("https://as".into()), sub: "eve".into() }, 0), Some(1));
        assert_eq!(hit(RevocationId::Agent("bad-agent".into()), 0), Some(1));
        assert_eq!(hit(RevocationId::Thumbprint("k9".into()), 0), Some(1), "a bare string is a thumbprint…");
        assert_eq!(hit(RevocationId::AnyKid("k9".into()), 0), Some(1), "…or a bare kid");
        assert_eq!(hit(RevocationId::Thumbprint("T".into()), 0), Some(1));
        assert_eq!(hit(RevocationId::IssuerKid { issuer: "https://as".into(), kid: "k1".into() }, 0), Some(1));
        assert_eq!(hit(RevocationId::IssuerKid { issuer: "https://b".into(), kid: "k1".into() }, 0), None);
        assert_eq!(hit(RevocationId::DomainKid { trust_domain: "agents.example".into(), kid: "k2".into() }, 0), Some(1));
        assert_eq!(hit(RevocationId::AnyKid("k1".into()), 0), None, "a scoped kid does not revoke other issuers' keys");
    }

    #[test]
    fn canonical_ids_round_trip_and_cannot_be_confused() {
        let all = [
            RevocationId::Token { issuer: None, jti: "a\",\"b".into() },
            RevocationId::Token { issuer: Some("https://as".into()), jti: "j".into() },
            RevocationId::User { issuer: None, sub: "u".into() },
            RevocationId::User { issuer: Some("i".into()), sub: "u".into() },
            RevocationId::Agent("spiffe://x/y".into()),
            RevocationId::Thumbprint("t".into()),
            RevocationId::IssuerKid { issuer: "i".into(), kid: "k".into() },
            RevocationId::DomainKid { trust_domain: "d".into(), kid: "k".into() },
            RevocationId::AnyKid("k".into()),
        ];
        for id in &all {
            assert_eq!(RevocationId::from_canonical(&id.canonical()).as_ref(), Ok(id));
        }
        assert_eq!(all[0].canonical(), r#"["jti","a\",\"b"]"#);
        assert!(RevocationId::from_canonical(r#"["jti"]"#).is_err());
        assert!(RevocationId::from_canonical(r#"["agent",""]"#).is_err());
        assert!(RevocationId::from_canonical(r#"["nope","x"]"#).is_err());
    }

    #[test]
    fn rejects_typos_and_bad_json() {
        let err = |t: &str| RevocationList::parse(t).err().unwrap_or_default();
        assert_eq!(err(r#"{"agent":["x"]}"#), "revocation list: unknown member `agent` (expected `jti`, `users`, `agents`, `keys`)");
        assert_eq!(err(r#"{"user":[]}"#), "revocation list: unknown member `user` (expected `jti`, `users`, `agents`, `keys`)", "even when empty");
        assert_eq!(err(r#"{"agents":"x"}"#), "revocation list: `agents` must be an array");
        assert_eq!(err(r#"{"agents":[""]}"#), "revocation list: `agents` item 0: the id is empty");
        assert_eq!(
            err(r#"{"keys":[{"issuer":"a"}]}"#),
            r#"revocation list: `keys` item 0: a key is `{"thumbprint"}`, `{"issuer", "kid"}` or `{"trust_domain", "kid"}`"#
        );
        assert_eq!(err(r#"{"jti":[{"id":"x","expires":"soon"}]}"#), "revocation list: `jti` item 0: `expires` must be unix seconds");
        assert_eq!(err(r#"{"agents":["a"],"agents":["b"]}"#), "revocation list has the member `agents` twice");
        assert!(RevocationList::parse("{").is_err());
        assert_eq!(RevocationList::parse("  ").map(|l| l.len()), Ok(0));
    }

    #[test]
    fn bare_kids_warn_with_the_keys_they_hit() {
        const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let jwks = |kid: &str, extra: &str| format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}","kid":"{kid}"{extra}}}]}}"#);
        let trust = TrustStore::from_config(&TrustConfig {
            issuers: vec![
                IssuerSource {
                    issuer: "https://a".into(),
                    jwks: jwks("shared", ""),
                    source: String::new(),
                    status_list: Default::default(),
                    status_issuer: None,
                },
                IssuerSource {
                    issuer: "https://b".into(),
                    jwks: jwks("shared", ""),
                    source: String::new(),
                    status_list: Default::default(),
                    status_issuer: None,
                },
            ],
            trust_domains: vec![TrustDomainSource { trust_domain: "agents.example".into(), bundle: jwks("td", r#","use":"jwt-svid""#), source: String::new() }],
        })
        .unwrap();
        let list = RevocationList::parse(r#"{"keys":["shared","unrelated-thumbprint"]}"#).unwrap();
        let warnings = list.warnings(&trust);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("issuer `https://a`, issuer `https://b`"), "{}", warnings[0]);
        assert!(warnings[0].contains(r#"{"issuer": "https://a", "kid": "shared"}"#), "{}", warnings[0]);
    }

    #[test]
    fn file_form_round_trips() {
        let text = r#"{"agents":[{"id":"a","expires":9}],"jti":["t"],"keys":["bare",{"issuer":"https://as","kid":"k1"}],"users":[{"id":"u","issuer":"i"}]}"#;
        let list = RevocationList::parse(text).unwrap();
        let again = RevocationList::parse(&list.to_file_json().to_string()).unwrap();
        assert_eq!(again, list);
    }
}
