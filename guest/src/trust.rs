//! Trust material: which issuers sign access tokens and with which keys, and which trust domains
//! vouch for agent workloads. Parsed once from the host's `trust-json`.

use crate::jose::es256::PublicKey;
use crate::jose::json::{JsonObject, parse_object};
use crate::jose::jwk::{EcPublicJwk, quote};
use crate::status_list::StatusListMode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// The trust section as the host sends it: file contents, not paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Authorization servers whose access tokens are accepted.
    #[serde(default)]
    pub issuers: Vec<IssuerSource>,
    /// SPIFFE trust domains whose JWT-SVIDs / workload identity tokens are accepted.
    #[serde(default)]
    pub trust_domains: Vec<TrustDomainSource>,
}

/// One issuer and its JWKS document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSource {
    /// The exact `iss` value.
    pub issuer: String,
    /// The JWKS document (RFC 7517 §5), as text.
    pub jwks: String,
    /// Where the JWKS came from, for messages.
    #[serde(default)]
    pub source: String,
    /// Whether this issuer's tokens are checked against token status lists.
    #[serde(default)]
    pub status_list: StatusListMode,
    /// The configured issuer whose keys sign this issuer's status lists (default: itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_issuer: Option<String>,
}

/// What is checked for one issuer's tokens beyond their signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPolicy {
    /// Token status lists.
    pub status_list: StatusListMode,
    /// The issuer whose keys sign the status lists.
    pub status_issuer: String,
}

/// One trust domain and its SPIFFE bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustDomainSource {
    /// The trust domain name, e.g. `example.org`.
    pub trust_domain: String,
    /// The SPIFFE bundle (a JWKS with `use` members), as text.
    pub bundle: String,
    /// Where the bundle came from, for messages.
    #[serde(default)]
    pub source: String,
}

/// A key usable for ES256 verification, with the id it is selected by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The `kid` it is selected by.
    pub kid: String,
    /// The key.
    pub key: PublicKey,
    /// Its RFC 7638 thumbprint (revocation lists may name keys by thumbprint).
    pub thumbprint: String,
}

/// Keys by `kid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: HashMap<String, TrustedKey>,
}

impl KeySet {
    /// The key with `kid`.
    pub fn get(&self, kid: &str) -> Option<&TrustedKey> {
        self.keys.get(kid)
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    /// All keys.
    pub fn iter(&self) -> impl Iterator<Item = &TrustedKey> {
        self.keys.values()
    }
}

/// Parsed, validated trust material.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    issuers: HashMap<String, KeySet>,
    policies: HashMap<String, IssuerPolicy>,
    trust_domains: HashMap<String, KeySet>,
}

impl TrustStore {
    /// Parses every JWKS and bundle. Unusable key material is an error naming its source.
    pub fn from_config(config: &TrustConfig) -> Result<Self, String> {
        let mut issuers = HashMap::new();
        let mut policies = HashMap::new();
        for source in &config.issuers {
            if source.issuer.is_empty() {
                return Err("an issuer has an empty `issuer`".into());
            }
            let name = describe(&source.source, &format!("the JWKS of issuer `{}`", source.issuer));
            let keys = parse_key_set(&source.jwks, KeyUse::Signature).map_err(|e| format!("{name}: {e}"))?;
            if keys.is_empty() {
                return Err(format!("{name}: has no usable ES256 key (`kty` `EC`, `crv` `P-256`, with a `kid`)"));
            }
            if issuers.insert(source.issuer.clone(), keys).is_some() {
                return Err(format!("issuer `{}` is configured twice", source.issuer));
            }
            let status_issuer = source.status_issuer.clone().unwrap_or_else(|| source.issuer.clone());
            policies.insert(source.issuer.clone(), IssuerPolicy { status_list: source.status_list, status_issuer });
        }
        if let Some((issuer, policy)) = policies.iter().find(|(_, p)| !issuers.contains_key(&p.status_issuer)) {
            return Err(format!("issuer `{issuer}`: its `status_issuer` `{}` is not a configured issuer", policy.status_issuer));
        }
        let mut trust_domains = HashMap::new();
        for source in &config.trust_domains {
            crate::spiffe::validate_trust_domain(&source.trust_domain).map_err(|e| format!("trust domain {}: {e}", quote(&source.trust_domain)))?;
            let name = describe(&source.source, &format!("the bundle of trust domain `{}`", source.trust_domain));
            let keys = parse_key_set(&source.bundle, KeyUse::JwtSvid).map_err(|e| format!("{name}: {e}"))?;
            if keys.is_empty() {
                return Err(format!("{name}: has no usable `jwt-svid` ES256 key"));
            }
            if trust_domains.insert(source.trust_domain.clone(), keys).is_some() {
                return Err(format!("trust domain `{}` is configured twice", source.trust_domain));
            }
        }
        Ok(TrustStore { issuers, policies, trust_domains })
    }

    /// The keys of an issuer, if it is trusted.
    pub fn issuer(&self, iss: &str) -> Option<&KeySet> {
        self.issuers.get(iss)
    }

    /// What is checked for an issuer's tokens beyond their signature.
    pub fn issuer_policy(&self, iss: &str) -> Option<&IssuerPolicy> {
        self.policies.get(iss)
    }

    /// The keys of a trust domain, if it is trusted.
    pub fn trust_domain(&self, name: &str) -> Option<&KeySet> {
        self.trust_domains.get(name)
    }

    /// Every trusted key (issuers and trust domains), for revocation-by-kid lookups.
    pub fn all_keys(&self) -> impl Iterator<Item = &TrustedKey> {
        self.issuers.values().chain(self.trust_domains.values()).flat_map(KeySet::iter)
    }

    /// Issuer names.
    pub fn issuer_names(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }

    /// Who publishes a key with `kid`: every issuer and trust domain that has one, sorted.
    pub fn kid_owners(&self, kid: &str) -> Vec<KeyOwner> {
        let mut owners: Vec<KeyOwner> = self
            .issuers
            .iter()
            .filter(|(_, keys)| keys.get(kid).is_some())
            .map(|(name, _)| KeyOwner::Issuer(name.clone()))
            .chain(self.trust_domains.iter().filter(|(_, keys)| keys.get(kid).is_some()).map(|(name, _)| KeyOwner::TrustDomain(name.clone())))
            .collect();
        owners.sort();
        owners
    }
}

/// Who publishes a trusted key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyOwner {
    /// An authorization server (its JWKS).
    Issuer(String),
    /// A SPIFFE trust domain (its bundle).
    TrustDomain(String),
}

impl KeyOwner {
    /// The revocation file entry that revokes this owner's key `kid` and nobody else's.
    pub fn scoped_entry(&self, kid: &str) -> String {
        let (member, name) = match self {
            KeyOwner::Issuer(n) => ("issuer", n),
            KeyOwner::TrustDomain(n) => ("trust_domain", n),
        };
        format!("{{\"{member}\": {}, \"kid\": {}}}", Value::String(name.clone()), Value::String(kid.to_owned()))
    }
}

impl std::fmt::Display for KeyOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOwner::Issuer(n) => write!(f, "issuer {}", quote(n)),
            KeyOwner::TrustDomain(n) => write!(f, "trust domain {}", quote(n)),
        }
    }
}

fn describe(source: &str, fallback: &str) -> String {
    if source.is_empty() { fallback.to_owned() } else { format!("`{source}`") }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    /// An issuer JWKS: keys with no `use` or `use` = `sig`.
    Signature,
    /// A SPIFFE bundle: only `use` = `jwt-svid` keys (JWT-SVID §6.2).
    JwtSvid,
}

/// Parses a JWK Set, keeping ES256-capable P-256 keys for `wanted` and skipping keys of other
/// types or uses (a JWKS may legitimately carry RSA keys or X.509-SVID roots).
fn parse_key_set(text: &str, wanted: KeyUse) -> Result<KeySet, String> {
    let doc = parse_object(text.as_bytes()).map_err(|e| format!("the document {e}"))?;
    let Some(Value::Array(entries)) = doc.get("keys") else {
        return Err("has no `keys` array".into());
    };
    let mut keys = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Value::Object(jwk) = entry else {
            return Err(format!("key #{index} is not a JSON object"));
        };
        if !is_wanted(jwk, wanted) {
            continue;
        }
        let parsed = EcPublicJwk::from_object(jwk).map_err(|e| format!("key #{index} {e}"))?;
        let Some(kid) = jwk.get("kid").and_then(Value::as_str).filter(|k| !k.is_empty()) else {
            return Err(format!("key #{index} has no `kid`; keys are selected by `kid` only"));
        };
        let trusted = TrustedKey { kid: kid.to_owned(), thumbprint: parsed.thumbprint(), key: parsed.public_key().clone() };
        if keys.insert(kid.to_owned(), trusted).is_some() {
            return Err(format!("`kid` {} occurs twice", quote(kid)));
        }
    }
    Ok(KeySet { keys })
}

fn is_wanted(jwk: &JsonObject, wanted: KeyUse) -> bool {
    let str_member = |name: &str| jwk.get(name).and_then(Value::as_str);
    // Private members are never skipped silently: `from_object` rejects them below.
    let private = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"].iter().any(|m| jwk.contains_key(*m));
    if private {
        return true;
    }
    let ec_p256 = str_member("kty") == Some("EC") && str_member("crv") == Some("P-256");
    let alg_ok = matches!(str_member("alg"), None | Some("ES256"));
    let use_ok = match wanted {
        KeyUse::Signature => matches!(str_member("use"), None | Some("sig")),
        KeyUse::JwtSvid => str_member("use") == Some("jwt-svid"),
    };
    ec_p256 && alg_ok && use_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn issuer(jwks: String) -> TrustConfig {
        TrustConfig {
            issuers: vec![IssuerSource {
                issuer: "https://as".into(),
                jwks,
                source: "as.jwks.json".into(),
                status_list: StatusListMode::default(),
                status_issuer: None,
            }],
            trust_domains: vec![],
        }
    }

    #[test]
    fn keeps_es256_keys_and_skips_others() {
        let jwks = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}},{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}","kid":"k1","use":"sig","alg":"ES256"}},{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}","kid":"enc","use":"enc"}}]}}"#
        );
        let store = TrustStore::from_config(&issuer(jwks));
        let keys = store.as_ref().ok().and_then(|s| s.issuer("https://as"));
        assert_eq!(keys.map(KeySet::len), Some(1));
        assert!(keys.and_then(|k| k.get("k1")).is_some());
    }

    #[test]
    fn rejects_unusable_material_with_its_source() {
        let missing_kid = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}"}}]}}"#);
        assert_eq!(TrustStore::from_config(&issuer(missing_kid)).err(), Some("`as.jwks.json`: key #0 has no `kid`; keys are selected by `kid` only".into()));
        let private = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}","d":"AA","kid":"a"}}]}}"#);
        assert_eq!(TrustStore::from_config(&issuer(private)).err(), Some("`as.jwks.json`: key #0 contains the private key member `d`".into()));
        assert_eq!(
            TrustStore::from_config(&issuer(r#"{"keys":[]}"#.into())).err(),
            Some("`as.jwks.json`: has no usable ES256 key (`kty` `EC`, `crv` `P-256`, with a `kid`)".into())
        );
        let dup =
            format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}","kid":"a"}},{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}","kid":"a"}}]}}"#);
        assert_eq!(TrustStore::from_config(&issuer(dup)).err(), Some("`as.jwks.json`: `kid` `a` occurs twice".into()));
    }
}
