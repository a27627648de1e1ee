//! What the targets share: the TEST-ONLY keys and raw-bytes signing, the input layout, the demo
//! deployments as native engines, and a host `state` that answers the same way every time.
//!
//! Input layout of the structure-aware targets: one or two leading bytes of flags, then sections
//! separated by NUL bytes (a NUL never occurs in JSON text, so a seed's sections stay apart while
//! libFuzzer mutates inside them). A header or claims section is signed as it is, byte for byte:
//! it may be any text, JSON or not, duplicate members included. Placeholders in a section
//! (`$ath`, `$token`, `$proof`, `$identity`) are replaced by values only the harness can compute
//! (a hash of the token it just signed, the credentials it just signed), so a mutated token
//! still reaches the proof's binding checks.

use agentgate::config::{self, LoadedConfig, NoFetch};
use agentgate::mint::{KeyPair, StatusListSpec};
use agentgate_engine::jose::base64url;
use agentgate_engine::settings::Settings;
use agentgate_engine::status_list::StatusListMode;
use agentgate_engine::trust::{TrustConfig, TrustStore};
use agentgate_engine::{Engine, ProofAnswer, ProofUse, RevocationAnswer, SharedState, StatusListAnswer};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Signer as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The clock of every engine target (the vectors' `now`: 2026-01-01T00:00:00Z).
pub const NOW: i64 = 1_767_225_600;
/// The demo issuer, the only one the demo configurations trust.
pub const ISSUER: &str = "https://auth.demo.agentgate.dev";
/// Its key id.
pub const ISSUER_KID: &str = "demo-issuer-2026-11";
/// The demo agent.
pub const AGENT: &str = "spiffe://agents.example/mail-assistant";
/// The mail demo's audience and the URI its proofs name.
pub const MAIL_AUDIENCE: &str = "https://mail.example.com";
pub const MAIL_URI: &str = "https://mail.example.com/mailboxes/alice/messages";
/// An agent the harness's host `state` lists as revoked (the engine's own list is the config's).
pub const HOST_REVOKED_AGENT: &str = "spiffe://agents.example/revoked-by-host";

/// The repository root: this file is compiled by the fuzz crate (`fuzz/`) and by the root
/// package's replay test.
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if manifest.join("policies").is_dir() { manifest } else { manifest.parent().map(Path::to_path_buf).unwrap_or(manifest) }
}

/// The TEST-ONLY keys, and one nobody trusts.
#[derive(Debug)]
pub struct Keys {
    /// The demo issuer (`demo-issuer-2026-11`).
    pub issuer: KeyPair,
    /// The demo agent's DPoP key.
    pub agent: KeyPair,
    /// The `agents.example` trust domain.
    pub domain: KeyPair,
    /// An attacker's key, with the issuer's `kid`.
    pub attacker: KeyPair,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let read = |name: &str| {
            let path = root().join("policies/keys").join(name);
            KeyPair::from_jwk(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        Keys {
            issuer: read("issuer.TEST-ONLY.private.jwk.json"),
            agent: read("agent.TEST-ONLY.private.jwk.json"),
            domain: read("trust-domain.TEST-ONLY.private.jwk.json"),
            attacker: KeyPair::from_secret_bytes(ISSUER_KID, &[0x42; 32]).unwrap(),
        }
    })
}

/// Who signs a credential the harness builds: two bits of a flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The key the verifier trusts for it.
    Trusted,
    /// The attacker's key (same `kid` as the issuer's).
    Attacker,
    /// The trusted key, with one bit of the signature flipped.
    Corrupted,
    /// No credential at all.
    Absent,
}

impl Signer {
    pub fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Signer::Trusted,
            1 => Signer::Attacker,
            2 => Signer::Corrupted,
            _ => Signer::Absent,
        }
    }
}

/// `base64url(header).base64url(claims).base64url(ES256 signature)` over the bytes as given.
pub fn sign_raw(key: &KeyPair, signer: Signer, header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", base64url::encode(header), base64url::encode(claims));
    let key = if signer == Signer::Attacker { &keys().attacker } else { key };
    let signature: Signature = key.signing_key().sign(input.as_bytes());
    let mut bytes = signature.to_bytes().to_vec();
    if signer == Signer::Corrupted
        && let Some(last) = bytes.last_mut()
    {
        *last ^= 1;
    }
    format!("{input}.{}", base64url::encode(&bytes))
}

/// The flags byte and the NUL-separated sections after it.
#[derive(Debug, Clone)]
pub struct Sections<'a> {
    pub flags: u8,
    parts: Vec<&'a [u8]>,
}

impl<'a> Sections<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        match data.split_first() {
            Some((flags, rest)) => Sections { flags: *flags, parts: rest.split(|b| *b == 0).collect() },
            None => Sections { flags: 0, parts: Vec::new() },
        }
    }

    /// Section `i` (empty when absent).
    pub fn bytes(&self, i: usize) -> &'a [u8] {
        self.parts.get(i).copied().unwrap_or(&[])
    }

    /// Section `i` as text, invalid UTF-8 replaced.
    pub fn text(&self, i: usize) -> String {
        String::from_utf8_lossy(self.bytes(i)).into_owned()
    }
}

/// `bytes` with every `pattern` replaced by `with`.
pub fn replace(bytes: &[u8], pattern: &str, with: &str) -> Vec<u8> {
    let pattern = pattern.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(pattern) {
            out.extend_from_slice(with.as_bytes());
            i += pattern.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// A status list the harness's host serves: its token and its entries.
#[derive(Debug, Clone)]
pub struct ServedList {
    pub token: String,
    pub entries: Vec<u8>,
    /// Usable at `NOW` (signed by the issuer, not expired).
    pub usable: bool,
}

/// The lists served, by `uri`: 1, 2 and 8 bits per entry, one expired, one forged.
pub fn status_lists() -> &'static BTreeMap<String, ServedList> {
    static LISTS: OnceLock<BTreeMap<String, ServedList>> = OnceLock::new();
    LISTS.get_or_init(|| {
        let now = u64::try_from(NOW).unwrap();
        let spec = |name: &str, bits: u8, entries: Vec<u8>| StatusListSpec {
            uri: format!("{ISSUER}/status/{name}"),
            issuer: Some(ISSUER.into()),
            bits,
            entries,
            issued_at: now - 60,
            lifetime_secs: Some(7200),
            ttl_secs: Some(300),
        };
        let mut lists = BTreeMap::new();
        let mut serve = |spec: StatusListSpec, key: &KeyPair, usable: bool| {
            let token = spec.sign(key);
            lists.insert(spec.uri.clone(), ServedList { token, entries: spec.entries.clone(), usable });
        };
        serve(spec("1", 1, (0..64).map(|i| u8::from(i % 3 == 1)).collect()), &keys().issuer, true);
        serve(spec("2", 2, (0..32).map(|i| i % 4).collect()), &keys().issuer, true);
        serve(spec("8", 8, vec![0, 1, 2, 3, 0, 0xff, 0x80, 0]), &keys().issuer, true);
        serve(StatusListSpec { issued_at: now - 7200, lifetime_secs: Some(3600), ..spec("expired", 1, vec![0; 8]) }, &keys().issuer, false);
        serve(spec("forged", 1, vec![0; 8]), &keys().attacker, false);
        lists
    })
}

/// The host `state` of the engine targets: every proof is fresh (so a decision depends on its
/// input only), one agent is revoked, the lists above are served.
#[derive(Debug, Default, Clone, Copy)]
pub struct FuzzState;

impl SharedState for FuzzState {
    fn remember_proof(&self, _proof: &ProofUse<'_>) -> ProofAnswer {
        ProofAnswer::Fresh
    }
    fn check_revoked(&self, ids: &[String], _now: u64) -> RevocationAnswer {
        let revoked = serde_json::to_string(&["agent", HOST_REVOKED_AGENT]).unwrap();
        match ids.iter().position(|id| *id == revoked) {
            Some(i) => RevocationAnswer::Revoked(i),
            None => RevocationAnswer::Clear,
        }
    }
    fn status_list(&self, uri: &str, known_digest: Option<&str>) -> StatusListAnswer {
        match status_lists().get(uri) {
            Some(list) if Some(agentgate_engine::status_list::digest(&list.token).as_str()) == known_digest => StatusListAnswer::Unchanged,
            Some(list) => StatusListAnswer::Current(list.token.clone()),
            None => StatusListAnswer::Unavailable(format!("the fuzz host serves no status list at `{uri}`")),
        }
    }
}

/// The configurations the engine targets decide under (the vectors' configs first).
pub const CONFIGS: [&str; 8] = [
    "policies/mail/agentgate.toml",
    "policies/home/agentgate.toml",
    "tests/configs/mail-nonce.toml",
    "tests/configs/home-dpop-off.toml",
    "tests/configs/mail-identity.toml",
    "tests/configs/mail-status-required.toml",
    "policies/payments/agentgate.toml",
    "policies/mcp/agentgate.toml",
];

/// One configuration, loaded, with a native engine and what the oracles need to know of it.
#[derive(Debug)]
pub struct Deployment {
    pub name: &'static str,
    pub loaded: LoadedConfig,
    pub settings: Settings,
    pub trust: TrustStore,
    pub engine: Engine,
    /// Agents the configuration's own revocation file lists.
    pub revoked_agents: Vec<String>,
    /// The demo issuer's status list mode.
    pub status_mode: StatusListMode,
}

/// Configuration `index` (modulo their number), built on first use.
pub fn deployment(index: usize) -> &'static Deployment {
    static DEPLOYMENTS: [OnceLock<Deployment>; CONFIGS.len()] = [const { OnceLock::new() }; CONFIGS.len()];
    let index = index % CONFIGS.len();
    DEPLOYMENTS[index].get_or_init(|| {
        let name = CONFIGS[index];
        let loaded = config::load_with(&root().join(name), &NoFetch).unwrap_or_else(|e| panic!("{name}: {e}"));
        let settings: Settings = serde_json::from_str(&loaded.engine.settings_json).unwrap();
        let trust_config: TrustConfig = serde_json::from_str(&loaded.engine.trust_json).unwrap();
        let trust = TrustStore::from_config(&trust_config).unwrap();
        let engine = Engine::new(&loaded.engine, Box::new(FuzzState)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let revoked_agents = match serde_json::from_str::<Value>(&loaded.engine.revocations_json) {
            Ok(doc) => doc["agents"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        let status_mode = trust_config.issuers.iter().find(|i| i.issuer == ISSUER).map(|i| i.status_list).unwrap_or_default();
        Deployment { name, loaded, settings, trust, engine, revoked_agents, status_mode }
    })
}

/// The deployment whose policies declare `action` (the mail demo when none does).
pub fn deployment_for_action(action: &str) -> &'static Deployment {
    [0, 1, 6, 7].into_iter().map(deployment).find(|d| d.engine.authorizer().declares_action(action)).unwrap_or_else(|| deployment(0))
}

/// An access token the harness signs for the proof targets: the mail demo's, bound to the agent
/// key, issued ten seconds before `NOW`.
pub fn bound_mail_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "alice", "aud": MAIL_AUDIENCE, "client_id": "mail-assistant-app",
            "iat": NOW - 10, "exp": NOW + 290, "jti": "fuzz-at-0001", "scope": "mail.read",
            "act": {"sub": AGENT}, "cnf": {"jkt": keys().agent.thumbprint()},
        });
        let header = serde_json::json!({"typ": "at+jwt", "alg": "ES256", "kid": ISSUER_KID});
        sign_raw(&keys().issuer, Signer::Trusted, header.to_string().as_bytes(), claims.to_string().as_bytes())
    })
}
