//! Writes `tests/vectors/*.json`: the shared conformance vectors every host must pass.
//!
//! Every credential is built here from the TEST-ONLY keys in `policies/keys/` at a fixed time, and
//! every expectation is written by hand below — never recorded from the engine. ECDSA signing is
//! deterministic (RFC 6979), so the output is stable: `vectors_are_up_to_date` fails when the
//! files and this generator disagree. Regenerate with
//! `AGENTGATE_WRITE_VECTORS=1 cargo test --release --test generate_vectors`.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::mint::KeyPair;
use agentgate::wire::RequestJson;
use agentgate_engine::jose::base64url;
use agentgate_engine::nonce::NonceIssuer;
use agentgate_engine::settings::NonceSettings;
use agentgate_engine::{EntityRef, HttpRequest};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Signer as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use support::{Expect, HostStateSpec, Step, Vector, root};

/// 2026-01-01T00:00:00Z: every vector is evaluated at this instant.
const T0: u64 = 1_767_225_600;
const MAIL: &str = "policies/mail/agentgate.toml";
const HOME: &str = "policies/home/agentgate.toml";
const NONCE_CONFIG: &str = "tests/configs/mail-nonce.toml";
const IDENTITY_CONFIG: &str = "tests/configs/mail-identity.toml";
const DPOP_OFF_CONFIG: &str = "tests/configs/home-dpop-off.toml";
const STATUS_REQUIRED_CONFIG: &str = "tests/configs/mail-status-required.toml";
const FILES: &str = "policies/mcp/agentgate.toml";
const FILES_AUD: &str = "https://files.example.com";
const FILES_URI: &str = "https://files.example.com/mcp";
const FILES_AGENT: &str = "spiffe://agents.example/files-assistant";
const STATUS_URI: &str = "https://auth.demo.agentgate.dev/status/1";
const ISSUER: &str = "https://auth.demo.agentgate.dev";
const MAIL_AUD: &str = "https://mail.example.com";
const HOME_AUD: &str = "https://home.example.com";
const ASSISTANT: &str = "spiffe://agents.example/mail-assistant";
const HOME_AGENT: &str = "spiffe://agents.example/home-agent";
const MAIL_URI: &str = "https://mail.example.com/mailboxes/alice/messages";
const HOME_URI: &str = "https://home.example.com/devices/front-door";
/// The P-256 group order n.
const ORDER: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9,
    0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

struct Gen {
    issuer: KeyPair,
    agent: KeyPair,
    domain: KeyPair,
    /// Untrusted; reuses the issuer's `kid` to forge tokens.
    rogue: KeyPair,
    /// A second agent key, never bound to a token.
    other_agent: KeyPair,
    /// Untrusted trust domain key with the real domain's `kid`.
    rogue_domain: KeyPair,
    counter: u32,
    vectors: Vec<(String, Vector)>,
}

fn key(name: &str) -> KeyPair {
    KeyPair::from_jwk(&std::fs::read_to_string(root().join("policies/keys").join(name)).unwrap()).unwrap()
}

fn derived_key(kid: &str, label: &str) -> KeyPair {
    let seed: [u8; 32] = Sha256::digest(label.as_bytes()).into();
    KeyPair::from_secret_bytes(kid, &seed).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64url::encode(bytes)
}

/// Signs arbitrary header and payload *bytes* (for duplicate members, non-UTF-8...).
fn sign_bytes(key: &KeyPair, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig: Signature = key.signing_key().sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

fn sign(key: &KeyPair, header: &Value, claims: &Value) -> String {
    key.sign(header, claims)
}

/// Replaces the signature part of a compact JWS.
fn with_signature(token: &str, sig: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    format!("{input}.{}", b64(sig))
}

fn signature_bytes(token: &str) -> Vec<u8> {
    base64url::decode(token.rsplit_once('.').unwrap().1).unwrap()
}

/// n - s, big-endian.
fn negate_mod_n(s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = ORDER[i] as i16 - s[i] as i16 - borrow;
        borrow = if d < 0 { 1 } else { 0 };
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

fn ath(token: &str) -> String {
    b64(&Sha256::digest(token.as_bytes()))
}

fn allow(policies: &[&str]) -> Expect {
    Expect {
        decision: "allow".into(),
        outcome: "allowed".into(),
        reason_contains: None,
        policies: (!policies.is_empty()).then(|| {
            let mut p: Vec<String> = policies.iter().map(|s| s.to_string()).collect();
            p.sort();
            p
        }),
        dpop_nonce: None,
    }
}

fn deny(outcome: &str, reason: &str) -> Expect {
    Expect {
        decision: "deny".into(),
        outcome: outcome.into(),
        reason_contains: (!reason.is_empty()).then(|| reason.to_owned()),
        policies: None,
        dpop_nonce: None,
    }
}

fn mailbox(owner: &str) -> Value {
    json!([{ "uid": {"type": "Mailbox", "id": owner}, "attrs": {"owner": {"__entity": {"type": "User", "id": owner}}}, "parents": [] }])
}

fn device(id: &str, kind: &str) -> Value {
    json!([{ "uid": {"type": "Device", "id": id}, "attrs": {"kind": kind}, "parents": [{"type": "Home", "id": "alice-home"}] }])
}

impl Gen {
    fn new() -> Self {
        Gen {
            issuer: key("issuer.TEST-ONLY.private.jwk.json"),
            agent: key("agent.TEST-ONLY.private.jwk.json"),
            domain: key("trust-domain.TEST-ONLY.private.jwk.json"),
            rogue: derived_key("demo-issuer-2026-11", "agentgate vectors: rogue issuer"),
            other_agent: derived_key("other-agent", "agentgate vectors: other agent"),
            rogue_domain: derived_key("agents-example-2026-11", "agentgate vectors: rogue trust domain"),
            counter: 0,
            vectors: Vec::new(),
        }
    }

    fn jti(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("vector-{kind}-{:04}", self.counter)
    }

    fn at_header(&self) -> Value {
        json!({"typ": "at+jwt", "alg": "ES256", "kid": self.issuer.kid})
    }

    /// Claims of a valid mail token: alice → the assistant, `mail.read`, bound to the agent key.
    fn mail_claims(&mut self) -> Map<String, Value> {
        obj(json!({
            "iss": ISSUER,
            "sub": "alice",
            "aud": MAIL_AUD,
            "client_id": "mail-assistant-app",
            "iat": T0 - 10,
            "exp": T0 + 290,
            "jti": self.jti("at"),
            "scope": "mail.read",
            "act": {"sub": ASSISTANT},
            "cnf": {"jkt": self.agent.thumbprint()},
        }))
    }

    /// Claims of a valid unbound home token: alice → the home agent, `home.read`.
    fn home_claims(&mut self) -> Map<String, Value> {
        obj(json!({
            "iss": ISSUER,
            "sub": "alice",
            "aud": HOME_AUD,
            "client_id": "home-app",
            "iat": T0 - 10,
            "exp": T0 + 290,
            "jti": self.jti("at"),
            "scope": "home.read",
            "act": {"sub": HOME_AGENT},
        }))
    }

    fn token(&self, claims: &Map<String, Value>) -> String {
        sign(&self.issuer, &self.at_header(), &Value::Object(claims.clone()))
    }

    fn proof_claims(&mut self, method: &str, uri: &str, token: &str) -> Map<String, Value> {
        obj(json!({ "jti": self.jti("proof"), "htm": method, "htu": uri, "iat": T0, "ath": ath(token) }))
    }

    fn proof_header(key: &KeyPair) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.bare_public_jwk()})
    }

    fn proof(&mut self, token: &str) -> String {
        let claims = self.proof_claims("GET", MAIL_URI, token);
        sign(&self.agent, &Gen::proof_header(&self.agent), &Value::Object(claims))
    }

    fn mail_request(&self, auth: Option<String>, dpop: Option<String>, identity: Option<String>) -> RequestJson {
        RequestJson {
            authorization: auth,
            dpop,
            agent_identity: identity,
            http: Some(HttpRequest { method: "GET".into(), uri: MAIL_URI.into() }),
            action: "mail:read".into(),
            resource: EntityRef { type_name: "Mailbox".into(), id: "alice".into() },
            context: None,
            entities: Some(mailbox("alice")),
            now: Some(T0),
        }
    }

    /// A bound MCP tool call (policies/mcp) as reverse-proxy mode maps a `tools/call` body:
    /// the tool's own action on `Tool::"<tool>"`, its `arguments` as `context.input`.
    fn files_call(&mut self, scope: &str, tool: &str, arguments: Value) -> RequestJson {
        let claims = obj(json!({
            "iss": ISSUER,
            "sub": "alice",
            "aud": FILES_AUD,
            "client_id": "files-app",
            "iat": T0 - 10,
            "exp": T0 + 290,
            "jti": self.jti("at"),
            "scope": scope,
            "act": {"sub": FILES_AGENT},
            "cnf": {"jkt": self.agent.thumbprint()},
        }));
        let token = self.token(&claims);
        let proof_claims = self.proof_claims("POST", FILES_URI, &token);
        let proof = sign(&self.agent, &Gen::proof_header(&self.agent), &Value::Object(proof_claims));
        RequestJson {
            authorization: Some(format!("DPoP {token}")),
            dpop: Some(proof),
            agent_identity: None,
            http: Some(HttpRequest { method: "POST".into(), uri: FILES_URI.into() }),
            action: tool.into(),
            resource: EntityRef { type_name: "Tool".into(), id: tool.into() },
            context: Some(arguments),
            entities: None,
            now: Some(T0),
        }
    }

    fn home_request(&self, auth: Option<String>) -> RequestJson {
        RequestJson {
            authorization: auth,
            dpop: None,
            agent_identity: None,
            http: Some(HttpRequest { method: "GET".into(), uri: HOME_URI.into() }),
            action: "device:read".into(),
            resource: EntityRef { type_name: "Device".into(), id: "front-door".into() },
            context: None,
            entities: Some(device("front-door", "lock")),
            now: Some(T0),
        }
    }

    /// A bound mail call with a valid proof.
    fn bound_call(&mut self, claims: &Map<String, Value>) -> RequestJson {
        let token = self.token(claims);
        let proof = self.proof(&token);
        self.mail_request(Some(format!("DPoP {token}")), Some(proof), None)
    }

    fn push(&mut self, slug: &str, intent: &str, config: &str, steps: Vec<Step>) {
        self.push_with(slug, intent, config, None, steps);
    }

    fn push_with(&mut self, slug: &str, intent: &str, config: &str, revocations: Option<Value>, steps: Vec<Step>) {
        let name = format!("{:03}_{slug}.json", self.vectors.len() + 1);
        self.vectors.push((name, Vector { intent: intent.into(), config: config.into(), revocations, host_state: None, steps }));
    }

    fn push_with_state(&mut self, slug: &str, intent: &str, host_state: HostStateSpec, steps: Vec<Step>) {
        self.push_with_state_config(slug, intent, MAIL, host_state, steps);
    }

    fn push_with_state_config(&mut self, slug: &str, intent: &str, config: &str, host_state: HostStateSpec, steps: Vec<Step>) {
        let name = format!("{:03}_{slug}.json", self.vectors.len() + 1);
        self.vectors.push((name, Vector { intent: intent.into(), config: config.into(), revocations: None, host_state: Some(host_state), steps }));
    }

    /// A Status List Token (draft-ietf-oauth-status-list-21 §5.1) over `entries` of `bits` bits,
    /// entry 0 in the least significant bits of byte 0, signed by `signer`; `edit` changes header
    /// and claims.
    fn status_list_token(signer: &KeyPair, bits: u8, entries: &[u8], edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let per_byte = 8 / usize::from(bits);
        let mut bytes = vec![0u8; entries.len().div_ceil(per_byte)];
        for (i, value) in entries.iter().enumerate() {
            bytes[i / per_byte] |= value << ((i % per_byte) * usize::from(bits));
        }
        let lst = b64(&miniz_oxide::deflate::compress_to_vec_zlib(&bytes, 9));
        let mut header = json!({"typ": "statuslist+jwt", "alg": "ES256", "kid": signer.kid});
        let mut claims = json!({"sub": STATUS_URI, "iss": ISSUER, "iat": T0 - 60, "exp": T0 + 3600, "ttl": 300, "status_list": {"bits": bits, "lst": lst}});
        edit(&mut header, &mut claims);
        sign(signer, &header, &claims)
    }

    /// A bound mail call whose token's status is entry `idx` of the list at `uri`.
    fn status_call(&mut self, idx: u64, uri: &str) -> RequestJson {
        let mut c = self.mail_claims();
        c.insert("status".into(), json!({"status_list": {"idx": idx, "uri": uri}}));
        self.bound_call(&c)
    }

    /// A vector whose host serves one status list at `STATUS_URI`.
    fn status_case(&mut self, slug: &str, intent: &str, list: String, request: RequestJson, expect: Expect) {
        let spec = HostStateSpec { status_lists: [(STATUS_URI.to_owned(), list)].into_iter().collect(), ..HostStateSpec::default() };
        self.push_with_state(slug, intent, spec, vec![Step { request, expect }]);
    }

    fn one(&mut self, slug: &str, intent: &str, config: &str, request: RequestJson, expect: Expect) {
        self.push(slug, intent, config, vec![Step { request, expect }]);
    }

    /// A home (bearer, `when-bound`) call with a token built from mutated claims.
    fn home_token_case(&mut self, slug: &str, intent: &str, mutate: impl FnOnce(&mut Map<String, Value>), expect: Expect) {
        let mut claims = self.home_claims();
        mutate(&mut claims);
        let token = self.token(&claims);
        let request = self.home_request(Some(format!("Bearer {token}")));
        self.one(slug, intent, HOME, request, expect);
    }

    /// A home call with a raw `Authorization` value.
    fn home_auth_case(&mut self, slug: &str, intent: &str, auth: Option<String>, expect: Expect) {
        let request = self.home_request(auth);
        self.one(slug, intent, HOME, request, expect);
    }

    /// A mail call whose proof claims are mutated.
    fn proof_case(&mut self, slug: &str, intent: &str, mutate: impl FnOnce(&mut Map<String, Value>), expect: Expect) {
        let claims = self.mail_claims();
        let token = self.token(&claims);
        let mut proof_claims = self.proof_claims("GET", MAIL_URI, &token);
        mutate(&mut proof_claims);
        let proof = sign(&self.agent, &Gen::proof_header(&self.agent), &Value::Object(proof_claims));
        let request = self.mail_request(Some(format!("DPoP {token}")), Some(proof), None);
        self.one(slug, intent, MAIL, request, expect);
    }

    /// A mail call whose request URI differs from the proof's `htu`.
    fn htu_case(&mut self, slug: &str, intent: &str, htu: &str, request_uri: &str, expect: Expect) {
        let claims = self.mail_claims();
        let token = self.token(&claims);
        let proof_claims = self.proof_claims("GET", htu, &token);
        let proof = sign(&self.agent, &Gen::proof_header(&self.agent), &Value::Object(proof_claims));
        let mut request = self.mail_request(Some(format!("DPoP {token}")), Some(proof), None);
        request.http = Some(HttpRequest { method: "GET".into(), uri: request_uri.into() });
        self.one(slug, intent, MAIL, request, expect);
    }

    /// A mail call with a raw proof header (for key and header attacks).
    fn proof_header_case(&mut self, slug: &str, intent: &str, header: Value, signer: KeyPair, expect: Expect) {
        let claims = self.mail_claims();
        let token = self.token(&claims);
        let proof_claims = self.proof_claims("GET", MAIL_URI, &token);
        let proof = sign(&signer, &header, &Value::Object(proof_claims));
        let request = self.mail_request(Some(format!("DPoP {token}")), Some(proof), None);
        self.one(slug, intent, MAIL, request, expect);
    }

    fn wit(&mut self, signer: &KeyPair, sub: &str, cnf_key: Option<&KeyPair>, exp: u64) -> String {
        let mut claims = obj(json!({ "iss": "https://identity.agents.example", "sub": sub, "iat": T0 - 60, "exp": exp, "jti": self.jti("wit") }));
        if let Some(k) = cnf_key {
            let mut jwk = k.bare_public_jwk();
            jwk.as_object_mut().unwrap().insert("alg".into(), json!("ES256"));
            claims.insert("cnf".into(), json!({ "jwk": jwk }));
        }
        sign(signer, &json!({"typ": "wit+jwt", "alg": "ES256", "kid": "agents-example-2026-11"}), &Value::Object(claims))
    }

    /// A bound mail call by `actor` carrying an identity token.
    fn identity_case(&mut self, slug: &str, intent: &str, config: &str, actor: &str, identity: Option<String>, expect: Expect) {
        let mut claims = self.mail_claims();
        claims.insert("act".into(), json!({ "sub": actor }));
        let token = self.token(&claims);
        let proof = self.proof(&token);
        let request = self.mail_request(Some(format!("DPoP {token}")), Some(proof), identity);
        self.one(slug, intent, config, request, expect);
    }
}

fn build() -> Vec<(String, Vector)> {
    let mut g = Gen::new();

    // ---- Decisions on valid credentials -------------------------------------------------------
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.one("mail_bound_agent_reads_own_inbox", "a DPoP-bound token with a valid proof reads the user's own mailbox", MAIL, r, allow(&["mail-read-own"]));

    let c = g.mail_claims();
    let mut r = g.bound_call(&c);
    r.resource = EntityRef { type_name: "Mailbox".into(), id: "bob".into() };
    r.entities = Some(mailbox("bob"));
    g.one("mail_other_users_mailbox_denied", "the same agent may not read another user's mailbox", MAIL, r, deny("policy_denied", "no policy permits"));

    let mut c = g.mail_claims();
    c.insert("scope".into(), json!("mail.read mail.send"));
    c.insert("act".into(), json!({"sub": "spiffe://agents.example/summarizer", "act": {"sub": ASSISTANT}}));
    let mut r = g.bound_call(&c);
    r.action = "mail:send".into();
    let mut e = deny("policy_denied", "forbidden by `mail-send-no-sub-agents`");
    e.policies = Some(vec!["mail-send-no-sub-agents".into()]);
    g.one("mail_sub_agent_send_forbidden", "a sub-agent may not send mail even with `mail.send`", MAIL, r, e);

    let mut c = g.mail_claims();
    c.remove("act");
    let r = g.bound_call(&c);
    g.one("mail_user_calls_directly", "a user calling without an agent is the principal herself", MAIL, r, allow(&["mail-read-own"]));

    let mut c = g.home_claims();
    c.insert("scope".into(), json!("home.unlock home.locks"));
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.action = "lock:unlock".into();
    let mut e = deny("policy_denied", "forbidden by `home-no-agent-locks`");
    e.policies = Some(vec!["home-no-agent-locks".into()]);
    g.one("home_agent_never_unlocks", "no agent may unlock a door, whatever its scopes", HOME, r, e);

    let mut c = g.home_claims();
    c.insert("scope".into(), json!("home.climate"));
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.action = "thermostat:set".into();
    r.resource = EntityRef { type_name: "Device".into(), id: "thermostat".into() };
    r.entities = Some(device("thermostat", "thermostat"));
    r.context = Some(json!({"celsius": 21}));
    g.one("home_thermostat_with_input", "caller input reaches policies as `context.input`", HOME, r, allow(&["home-thermostat"]));

    let mut c = g.home_claims();
    c.remove("act");
    c.insert("scope".into(), json!("home.unlock"));
    c.insert("exp".into(), json!(T0 + 110));
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.action = "lock:unlock".into();
    g.one(
        "home_user_unlocks_with_elevated_token",
        "temporary elevation: a 2-minute token with `home.unlock` opens the door",
        HOME,
        r,
        allow(&["home-unlock-elevated"]),
    );

    let mut c = g.home_claims();
    c.remove("act");
    c.insert("scope".into(), json!("home.unlock"));
    c.insert("exp".into(), json!(T0 + 1790));
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.action = "lock:unlock".into();
    g.one("home_user_everyday_token_cannot_unlock", "an everyday 30-minute token does not unlock, even with the scope", HOME, r, deny("policy_denied", ""));

    // ---- Request errors -------------------------------------------------------------------------
    let c = g.home_claims();
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.action = "device:explode".into();
    g.one(
        "unknown_action",
        "an action the schema does not declare is a malformed request",
        HOME,
        r,
        deny("invalid_request", "action `device:explode` is not declared in the schema"),
    );

    let c = g.home_claims();
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.entities = Some(json!([{"uid": {"type": "Device", "id": "front-door"}, "attrs": {"kind": 7}, "parents": []}]));
    g.one(
        "entities_violate_schema",
        "entities that do not match the schema are a malformed request",
        HOME,
        r,
        deny("invalid_request", "`entities` are invalid"),
    );

    let c = g.home_claims();
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.context = Some(json!({"celsius": 21}));
    g.one(
        "input_for_action_without_input",
        "caller input for an action that declares none is refused",
        HOME,
        r,
        deny("invalid_request", "declares no `input` context"),
    );

    let mut c = g.home_claims();
    c.insert("scope".into(), json!("home.climate"));
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.action = "thermostat:set".into();
    r.resource = EntityRef { type_name: "Device".into(), id: "thermostat".into() };
    r.entities = Some(device("thermostat", "thermostat"));
    r.context = Some(json!({"celsius": "warm"}));
    g.one("input_wrong_type", "caller input of the wrong type is a malformed request", HOME, r, deny("invalid_request", "`input.celsius` must be a `Long`"));

    for (slug, intent, input, reason) in [
        (
            "input_undeclared_attribute",
            "caller input with an attribute the schema does not declare",
            json!({"celsius": 21, "fan": "high"}),
            "`input.fan` is not declared in the schema",
        ),
        ("input_missing_attribute", "caller input without a required attribute", json!({}), "`input.celsius` is required"),
    ] {
        let mut c = g.home_claims();
        c.insert("scope".into(), json!("home.climate"));
        let token = g.token(&c);
        let mut r = g.home_request(Some(format!("Bearer {token}")));
        r.action = "thermostat:set".into();
        r.resource = EntityRef { type_name: "Device".into(), id: "thermostat".into() };
        r.entities = Some(device("thermostat", "thermostat"));
        r.context = Some(input);
        g.one(slug, intent, HOME, r, deny("invalid_request", reason));
    }

    let c = g.home_claims();
    let token = g.token(&c);
    let mut r = g.home_request(Some(format!("Bearer {token}")));
    r.resource = EntityRef { type_name: "Not A Type".into(), id: "x".into() };
    g.one(
        "resource_type_not_a_name",
        "a resource type that is not a Cedar name is refused",
        HOME,
        r,
        deny("invalid_request", "is not a Cedar entity type name"),
    );

    // ---- Hostile access tokens (RFC 7515, 7518, 7519, 8725, 9068) --------------------------------
    let c = g.home_claims();
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"at+jwt","kid":"demo-issuer-2026-11"}"#), b64(Value::Object(c).to_string().as_bytes()));
    g.home_auth_case("alg_none", "`alg` `none` is never accepted", Some(format!("Bearer {none}")), deny("invalid_token", "`alg` `none`"));

    let c = g.home_claims();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": g.issuer.kid});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(Value::Object(c).to_string().as_bytes()));
    let secret = serde_json::to_vec(&g.issuer.public_jwk()).unwrap();
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret), input.as_bytes());
    let hs = format!("{input}.{}", b64(tag.as_ref()));
    g.home_auth_case(
        "alg_hs256_key_confusion",
        "HS256 keyed with the issuer's public key (algorithm confusion)",
        Some(format!("Bearer {hs}")),
        deny("invalid_token", "`alg` `HS256`"),
    );

    let c = g.home_claims();
    let t = sign(&g.issuer, &json!({"alg": "es256", "typ": "at+jwt", "kid": g.issuer.kid}), &Value::Object(c));
    g.home_auth_case(
        "alg_lowercase_es256",
        "`alg` is compared case-sensitively: `es256` is not `ES256`",
        Some(format!("Bearer {t}")),
        deny("invalid_token", "`alg` `es256`"),
    );

    let c = g.home_claims();
    let t = sign(&g.issuer, &json!({"alg": "ES384", "typ": "at+jwt", "kid": g.issuer.kid}), &Value::Object(c));
    g.home_auth_case("alg_es384", "only ES256 is on the allow-list", Some(format!("Bearer {t}")), deny("invalid_token", "`alg` `ES384`"));

    let c = g.home_claims();
    let t = sign(&g.issuer, &json!({"alg": "ES256", "typ": "at+jwt", "kid": "no-such-key"}), &Value::Object(c));
    g.home_auth_case(
        "unknown_kid",
        "a `kid` that is not in the issuer's JWKS",
        Some(format!("Bearer {t}")),
        deny("invalid_token", "key id `no-such-key` is not in the JWKS of issuer"),
    );

    let c = g.home_claims();
    let t = sign(&g.issuer, &json!({"alg": "ES256", "typ": "at+jwt"}), &Value::Object(c));
    g.home_auth_case("missing_kid", "a token without `kid` cannot select a key", Some(format!("Bearer {t}")), deny("invalid_token", "has no `kid` header"));

    g.home_token_case(
        "untrusted_issuer",
        "a token from an issuer that is not configured",
        |c| {
            c.insert("iss".into(), json!("https://evil.example"));
        },
        deny("invalid_token", "issuer `https://evil.example` is not trusted"),
    );

    let c = g.home_claims();
    let t = sign(&g.rogue, &g.at_header(), &Value::Object(c));
    g.home_auth_case(
        "forged_with_trusted_kid",
        "signed by another key that claims the trusted `kid`",
        Some(format!("Bearer {t}")),
        deny("invalid_token", "signature does not verify"),
    );

    for (slug, intent, typ, reason) in [
        ("typ_jwt", "`typ` `JWT` (an ID token shape) is not an access token", Some("JWT"), "`typ` `JWT`, expected `at+jwt`"),
        ("typ_dpop_as_access_token", "a `dpop+jwt` presented as an access token (RFC 8725 §3.12)", Some("dpop+jwt"), "`typ` `dpop+jwt`"),
        ("typ_missing", "an access token without `typ`", None, "no `typ` header"),
    ] {
        let c = g.home_claims();
        let mut header = g.at_header();
        match typ {
            Some(t) => header["typ"] = json!(t),
            None => {
                header.as_object_mut().unwrap().remove("typ");
            }
        }
        let t = sign(&g.issuer, &header, &Value::Object(c));
        g.home_auth_case(slug, intent, Some(format!("Bearer {t}")), deny("invalid_token", reason));
    }

    let c = g.home_claims();
    let mut header = g.at_header();
    header["typ"] = json!("application/AT+JWT");
    let t = sign(&g.issuer, &header, &Value::Object(c));
    g.home_auth_case(
        "typ_media_type_form_allowed",
        "`application/AT+JWT` is the same media type as `at+jwt`",
        Some(format!("Bearer {t}")),
        allow(&["home-read-devices"]),
    );

    g.home_token_case(
        "aud_other_service",
        "a token for another service (RFC 8725 §3.9)",
        |c| {
            c.insert("aud".into(), json!("https://calendar.example.com"));
        },
        deny("invalid_token", "audience `https://calendar.example.com` does not include this service"),
    );
    g.home_token_case(
        "aud_array_including_service",
        "`aud` as an array that names this service",
        |c| {
            c.insert("aud".into(), json!(["https://calendar.example.com", HOME_AUD]));
        },
        allow(&["home-read-devices"]),
    );
    g.home_token_case(
        "expired",
        "expired beyond the 30 s leeway",
        |c| {
            c.insert("iat".into(), json!(T0 - 400));
            c.insert("exp".into(), json!(T0 - 31));
        },
        deny("invalid_token", "expired at"),
    );
    g.home_token_case(
        "expired_within_leeway",
        "expired 10 s ago: inside the leeway",
        |c| {
            c.insert("iat".into(), json!(T0 - 400));
            c.insert("exp".into(), json!(T0 - 10));
        },
        allow(&["home-read-devices"]),
    );
    g.home_token_case(
        "nbf_in_future",
        "not valid yet (`nbf` beyond the leeway)",
        |c| {
            c.insert("nbf".into(), json!(T0 + 100));
        },
        deny("invalid_token", "is not valid before"),
    );
    g.home_token_case(
        "iat_in_future",
        "issued in the future",
        |c| {
            c.insert("iat".into(), json!(T0 + 100));
            c.insert("exp".into(), json!(T0 + 400));
        },
        deny("invalid_token", "was issued in the future"),
    );
    g.home_token_case(
        "lifetime_over_cap",
        "a two-hour token exceeds the one-hour lifetime cap",
        |c| {
            c.insert("iat".into(), json!(T0 - 10));
            c.insert("exp".into(), json!(T0 + 7190));
        },
        deny("invalid_token", "lifetime of 7200s exceeds the limit of 3600s"),
    );
    g.home_token_case(
        "exp_before_iat",
        "a token that expires before it was issued",
        |c| {
            c.insert("iat".into(), json!(T0));
            c.insert("exp".into(), json!(T0 - 1));
        },
        deny("invalid_token", ""),
    );
    g.home_token_case(
        "exp_is_a_string",
        "`exp` must be a NumericDate, not a string",
        |c| {
            c.insert("exp".into(), json!("1767225890"));
        },
        deny("invalid_token", "`exp` claim that is not a NumericDate"),
    );

    for claim in ["jti", "client_id", "sub", "exp", "iat", "aud"] {
        g.home_token_case(
            &format!("missing_{claim}"),
            &format!("RFC 9068 §2.2 requires `{claim}`"),
            |c| {
                c.remove(claim);
            },
            deny("invalid_token", &format!("lacks the required claim `{claim}`")),
        );
    }
    g.home_token_case(
        "missing_iss",
        "RFC 9068 §2.2 requires `iss`",
        |c| {
            c.remove("iss");
        },
        deny("invalid_token", "lacks the required claim `iss`"),
    );
    g.home_token_case(
        "scope_not_a_string",
        "`scope` must be a space-separated string (RFC 8693 §4.2)",
        |c| {
            c.insert("scope".into(), json!(["home.read"]));
        },
        deny("invalid_token", "`scope` claim that is not a space-separated string"),
    );
    g.home_token_case(
        "act_deeper_than_limit",
        "three actors exceed the home limit of two",
        |c| {
            c.insert("act".into(), json!({"sub": "a", "act": {"sub": "b", "act": {"sub": "c"}}}));
        },
        deny("invalid_token", "deeper than the limit of 2 actors"),
    );
    g.home_token_case(
        "act_with_exp",
        "an `act` carrying `exp` (RFC 8693 §4.1)",
        |c| {
            c.insert("act".into(), json!({"sub": HOME_AGENT, "exp": T0 + 100}));
        },
        deny("invalid_token", "`act` carrying `exp`"),
    );
    g.home_token_case(
        "act_without_sub",
        "an actor must be named",
        |c| {
            c.insert("act".into(), json!({"iss": ISSUER}));
        },
        deny("invalid_token", "`act` without a non-empty string `sub`"),
    );
    g.home_token_case(
        "token_over_size_limit",
        "a token over `max_token_bytes` is not parsed",
        |c| {
            c.insert("padding".into(), json!("x".repeat(9000)));
        },
        deny("invalid_token", "over the limit of 8192"),
    );

    for (slug, intent, header_extra, reason) in [
        ("crit_header", "`crit` names an extension nobody here understands", json!({"crit": ["exp"], "exp": 1}), "`crit` header"),
        ("embedded_jwk", "a token carrying its own `jwk` (RFC 8725 §2.9)", json!({"jwk": {"kty": "EC"}}), "carries a `jwk` header"),
        ("jku_header", "a token pointing at a `jku` URL (SSRF, key injection)", json!({"jku": "https://evil.example/jwks.json"}), "carries a `jku` header"),
        ("x5u_header", "a token pointing at an `x5u` URL", json!({"x5u": "https://evil.example/cert.pem"}), "carries a `x5u` header"),
        ("x5c_header", "a token carrying an `x5c` chain", json!({"x5c": ["MIIB"]}), "carries a `x5c` header"),
    ] {
        let c = g.home_claims();
        let mut header = g.at_header();
        for (k, v) in obj(header_extra) {
            header.as_object_mut().unwrap().insert(k, v);
        }
        let t = sign(&g.issuer, &header, &Value::Object(c));
        g.home_auth_case(slug, intent, Some(format!("Bearer {t}")), deny("invalid_token", reason));
    }

    // Signature encodings.
    let c = g.home_claims();
    let good = g.token(&c);
    let sig = signature_bytes(&good);
    let (r, s) = sig.split_at(32);
    let der = Signature::from_slice(&sig).unwrap().to_der();
    let cases: Vec<(&str, &str, String, Expect)> = vec![
        (
            "signature_der",
            "a DER-encoded signature (RFC 7518 §3.4 requires 64 bytes r‖s)",
            with_signature(&good, der.as_bytes()),
            deny("invalid_token", "signature that is"),
        ),
        (
            "signature_63_bytes",
            "a 63-byte signature",
            with_signature(&good, &sig[1..]),
            deny("invalid_token", "is 63 bytes, ES256 signatures are exactly 64 bytes"),
        ),
        ("signature_65_bytes", "a 65-byte signature", with_signature(&good, &[sig.clone(), vec![0]].concat()), deny("invalid_token", "is 65 bytes")),
        (
            "signature_r_zero",
            "r = 0 (CVE-2022-21449)",
            with_signature(&good, &[vec![0u8; 32], s.to_vec()].concat()),
            deny("invalid_token", "r or s outside [1, n-1]"),
        ),
        ("signature_s_zero", "s = 0", with_signature(&good, &[r.to_vec(), vec![0u8; 32]].concat()), deny("invalid_token", "r or s outside [1, n-1]")),
        ("signature_s_equals_n", "s = n", with_signature(&good, &[r.to_vec(), ORDER.to_vec()].concat()), deny("invalid_token", "r or s outside [1, n-1]")),
        (
            "signature_high_s_valid",
            "the high-S twin (r, n − s) is valid in JOSE",
            with_signature(&good, &[r.to_vec(), negate_mod_n(s)].concat()),
            allow(&["home-read-devices"]),
        ),
        (
            "signature_padded_base64",
            "base64 padding on the signature",
            format!("{good}=="),
            deny("invalid_token", "signature that is not base64url without padding"),
        ),
        ("signature_empty", "an empty signature", with_signature(&good, &[]), deny("invalid_token", "is 0 bytes")),
    ];
    for (slug, intent, token, expect) in cases {
        g.home_auth_case(slug, intent, Some(format!("Bearer {token}")), expect);
    }

    let c1 = g.home_claims();
    let mut c2 = c1.clone();
    c2.insert("sub".into(), json!("mallory"));
    let t1 = g.token(&c1);
    let (_, sig1) = t1.rsplit_once('.').unwrap();
    let (input2, _) = {
        let t2 = g.token(&c2);
        let (i, s) = t2.rsplit_once('.').unwrap();
        (i.to_owned(), s.to_owned())
    };
    g.home_auth_case(
        "modified_payload",
        "alice's signature on a payload that now says `mallory`",
        Some(format!("Bearer {input2}.{sig1}")),
        deny("invalid_token", "signature does not verify"),
    );

    let c = g.home_claims();
    let header = g.at_header().to_string();
    let payload = Value::Object(c).to_string().replacen(r#""sub":"alice""#, r#""sub":"alice","sub":"admin""#, 1);
    let t = sign_bytes(&g.issuer, header.as_bytes(), payload.as_bytes());
    g.home_auth_case(
        "duplicate_claim",
        "a payload naming `sub` twice (a last-wins parser would see `admin`)",
        Some(format!("Bearer {t}")),
        deny("invalid_token", "has the member `sub` twice"),
    );

    let c = g.home_claims();
    let header = g.at_header().to_string().replacen(r#""alg":"ES256""#, r#""alg":"ES256","alg":"none""#, 1);
    let t = sign_bytes(&g.issuer, header.as_bytes(), Value::Object(c).to_string().as_bytes());
    g.home_auth_case(
        "duplicate_header_member",
        "a header naming `alg` twice",
        Some(format!("Bearer {t}")),
        deny("invalid_token", "has the member `alg` twice"),
    );

    let c = g.home_claims();
    let mut payload = Value::Object(c).to_string().into_bytes();
    let at = payload.windows(5).position(|w| w == b"alice").unwrap();
    payload[at] = 0xff;
    let t = sign_bytes(&g.issuer, g.at_header().to_string().as_bytes(), &payload);
    g.home_auth_case(
        "payload_not_utf8",
        "a payload with a non-UTF-8 byte (RFC 8725 §3.7)",
        Some(format!("Bearer {t}")),
        deny("invalid_token", "payload that is not UTF-8"),
    );

    let c = g.home_claims();
    let good = g.token(&c);
    let parts: Vec<&str> = good.split('.').collect();
    let json_serialization = json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]}).to_string();
    g.home_auth_case(
        "json_serialization",
        "the JWS JSON serialization is not a compact JWT",
        Some(format!("Bearer {json_serialization}")),
        deny("invalid_request", "the character `{`, which a token68 value cannot contain"),
    );
    g.home_auth_case(
        "two_parts",
        "a token with two parts",
        Some(format!("Bearer {}.{}", parts[0], parts[1])),
        deny("invalid_token", "has 2 dot-separated parts"),
    );
    g.home_auth_case(
        "five_parts_jwe",
        "a JWE-shaped token with five parts",
        Some(format!("Bearer {}.{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[1], parts[2])),
        deny("invalid_token", "has 5 dot-separated parts"),
    );
    g.home_auth_case(
        "header_not_json",
        "a header that is not JSON",
        Some(format!("Bearer {}.{}.{}", b64(b"not json"), parts[1], parts[2])),
        deny("invalid_token", "header that is not valid JSON"),
    );
    g.home_auth_case(
        "header_json_array",
        "a header that is a JSON array",
        Some(format!("Bearer {}.{}.{}", b64(b"[1]"), parts[1], parts[2])),
        deny("invalid_token", "header that is not a JSON object"),
    );
    g.home_auth_case(
        "rfc7515_a3_as_access_token",
        "the RFC 7515 A.3 ES256 example verifies, but it is no access token",
        Some("Bearer eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q".into()),
        deny("invalid_token", "no `typ` header"),
    );

    // The Authorization header itself.
    let c = g.home_claims();
    let good = g.token(&c);
    g.home_auth_case("no_authorization", "a call without credentials", None, deny("invalid_token", "no access token was presented"));
    g.home_auth_case("empty_authorization", "an empty `Authorization` value", Some(String::new()), deny("invalid_token", "no access token was presented"));
    g.home_auth_case(
        "authorization_two_spaces",
        "two spaces between scheme and token",
        Some(format!("Bearer  {good}")),
        deny("invalid_request", "separated by one space"),
    );
    g.home_auth_case(
        "authorization_basic_scheme",
        "a `Basic` credential",
        Some("Basic YWxpY2U6c2VjcmV0".into()),
        deny("invalid_request", "unsupported `Authorization` scheme `Basic`"),
    );
    g.home_auth_case("authorization_scheme_only", "a scheme without a token", Some("Bearer".into()), deny("invalid_request", "expected `<scheme> <token>`"));
    g.home_auth_case(
        "authorization_two_credentials",
        "two credentials folded into one header",
        Some(format!("Bearer {good}, Bearer {good}")),
        deny("invalid_request", "more than one `Authorization` credential"),
    );
    g.home_auth_case(
        "authorization_scheme_case_insensitive",
        "the scheme name is case-insensitive (RFC 9110 §11.1)",
        Some(format!("bEaReR {good}")),
        allow(&["home-read-devices"]),
    );

    // ---- DPoP (RFC 9449) ------------------------------------------------------------------------
    g.proof_case(
        "dpop_wrong_htm",
        "a proof for POST presented on GET",
        |p| {
            p.insert("htm".into(), json!("POST"));
        },
        deny("invalid_dpop_proof", "`htm` `POST` does not match the request method `GET`"),
    );
    g.proof_case(
        "dpop_htm_lowercase",
        "methods are case-sensitive: `get` is not `GET`",
        |p| {
            p.insert("htm".into(), json!("get"));
        },
        deny("invalid_dpop_proof", "`htm` `get`"),
    );
    g.htu_case(
        "dpop_htu_other_host",
        "a proof for another host",
        "https://evil.example.com/mailboxes/alice/messages",
        MAIL_URI,
        deny("invalid_dpop_proof", "does not match the request URI"),
    );
    g.htu_case(
        "dpop_htu_other_port",
        "a proof for another port",
        "https://mail.example.com:8443/mailboxes/alice/messages",
        MAIL_URI,
        deny("invalid_dpop_proof", "does not match the request URI"),
    );
    g.htu_case(
        "dpop_htu_other_path",
        "a proof for another path",
        "https://mail.example.com/mailboxes/bob/messages",
        MAIL_URI,
        deny("invalid_dpop_proof", "does not match the request URI"),
    );
    g.htu_case(
        "dpop_htu_other_scheme",
        "a proof for plain http",
        "http://mail.example.com/mailboxes/alice/messages",
        MAIL_URI,
        deny("invalid_dpop_proof", "does not match the request URI"),
    );
    g.htu_case(
        "dpop_htu_query_fragment_ignored",
        "query and fragment are ignored on both sides",
        "https://mail.example.com/mailboxes/alice/messages?page=1#top",
        "https://mail.example.com/mailboxes/alice/messages?page=2",
        allow(&["mail-read-own"]),
    );
    g.htu_case(
        "dpop_htu_dot_segments",
        "dot segments normalize away (RFC 3986 §6.2.2.3)",
        "https://mail.example.com/mailboxes/./bob/../alice/messages",
        MAIL_URI,
        allow(&["mail-read-own"]),
    );
    g.htu_case(
        "dpop_htu_default_port_and_case",
        "default port and host case normalize away (RFC 3986 §6.2.3)",
        "HTTPS://Mail.Example.COM:443/mailboxes/alice/messages",
        MAIL_URI,
        allow(&["mail-read-own"]),
    );
    g.htu_case(
        "dpop_htu_percent_encoding",
        "percent-encoded unreserved characters normalize away",
        "https://mail.example.com/%6Dailboxes/alice/messages",
        MAIL_URI,
        allow(&["mail-read-own"]),
    );
    g.htu_case("dpop_htu_relative", "a relative `htu` is refused", "/mailboxes/alice/messages", MAIL_URI, deny("invalid_dpop_proof", "is not an absolute URI"));
    g.proof_case(
        "dpop_iat_too_old",
        "a proof created 61 s ago (window 60 s)",
        |p| {
            p.insert("iat".into(), json!(T0 - 61));
        },
        deny("invalid_dpop_proof", "too old"),
    );
    g.proof_case(
        "dpop_iat_at_window_edge",
        "a proof created 60 s ago is still inside the window",
        |p| {
            p.insert("iat".into(), json!(T0 - 60));
        },
        allow(&["mail-read-own"]),
    );
    g.proof_case(
        "dpop_iat_too_far_ahead",
        "a proof from 6 s in the future (allowance 5 s)",
        |p| {
            p.insert("iat".into(), json!(T0 + 6));
        },
        deny("invalid_dpop_proof", "too far in the future"),
    );
    g.proof_case(
        "dpop_missing_ath",
        "a proof without `ath`",
        |p| {
            p.remove("ath");
        },
        deny("invalid_dpop_proof", "lacks the required claim `ath`"),
    );
    g.proof_case(
        "dpop_wrong_ath",
        "a proof whose `ath` hashes another token",
        |p| {
            p.insert("ath".into(), json!(ath("another-token")));
        },
        deny("invalid_dpop_proof", "`ath` does not match the access token"),
    );
    for claim in ["jti", "htm", "htu", "iat"] {
        g.proof_case(
            &format!("dpop_missing_{claim}"),
            &format!("RFC 9449 §4.2 requires `{claim}`"),
            |p| {
                p.remove(claim);
            },
            deny("invalid_dpop_proof", &format!("lacks the required claim `{claim}`")),
        );
    }
    g.proof_case(
        "dpop_jti_too_long",
        "an oversized `jti` (replay-cache exhaustion)",
        |p| {
            p.insert("jti".into(), json!("j".repeat(300)));
        },
        deny("invalid_dpop_proof", "`jti` is longer than 256 bytes"),
    );

    let agent = g.agent.clone();
    let mut with_d = Gen::proof_header(&agent);
    with_d["jwk"]["d"] = agent.private_jwk()["d"].clone();
    g.proof_header_case(
        "dpop_jwk_with_private_d",
        "a proof whose `jwk` contains the private key",
        with_d,
        agent.clone(),
        deny("invalid_dpop_proof", "private key member `d`"),
    );
    let mut p384 = Gen::proof_header(&agent);
    p384["jwk"]["crv"] = json!("P-384");
    g.proof_header_case("dpop_jwk_other_curve", "a `jwk` on P-384", p384, agent.clone(), deny("invalid_dpop_proof", "`crv` `P-384`"));
    let mut off_curve = Gen::proof_header(&agent);
    off_curve["jwk"]["y"] = off_curve["jwk"]["x"].clone();
    g.proof_header_case(
        "dpop_jwk_not_on_curve",
        "a `jwk` whose point is not on the curve",
        off_curve,
        agent.clone(),
        deny("invalid_dpop_proof", "not a point on P-256"),
    );
    let mut short = Gen::proof_header(&agent);
    short["jwk"]["x"] = json!(b64(&[1u8; 31]));
    g.proof_header_case("dpop_jwk_short_coordinate", "a 31-byte coordinate", short, agent.clone(), deny("invalid_dpop_proof", "`x` that is not 32 bytes"));
    let mut no_jwk = Gen::proof_header(&agent);
    no_jwk.as_object_mut().unwrap().remove("jwk");
    g.proof_header_case("dpop_no_jwk", "a proof without `jwk`", no_jwk, agent.clone(), deny("invalid_dpop_proof", "no `jwk` header"));
    let mut jwt_typ = Gen::proof_header(&agent);
    jwt_typ["typ"] = json!("JWT");
    g.proof_header_case(
        "dpop_typ_jwt",
        "a proof typed `JWT` (RFC 9449 §11.5)",
        jwt_typ,
        agent.clone(),
        deny("invalid_dpop_proof", "`typ` `JWT`, expected `dpop+jwt`"),
    );
    let mut at_typ = Gen::proof_header(&agent);
    at_typ["typ"] = json!("at+jwt");
    g.proof_header_case("dpop_typ_access_token", "an access token presented as a proof", at_typ, agent.clone(), deny("invalid_dpop_proof", "`typ` `at+jwt`"));
    let rogue = g.rogue.clone();
    g.proof_header_case(
        "dpop_signed_by_other_key",
        "`jwk` names the bound key but another key signed",
        Gen::proof_header(&agent),
        rogue,
        deny("invalid_dpop_proof", "signature does not verify with its `jwk`"),
    );
    let other = g.other_agent.clone();
    g.proof_header_case(
        "dpop_key_not_bound",
        "a valid proof by a key the token is not bound to (stolen token)",
        Gen::proof_header(&other),
        other.clone(),
        deny("invalid_token", "does not match the token's `cnf.jkt`"),
    );

    let c = g.mail_claims();
    let token = g.token(&c);
    let claims = g.proof_claims("GET", MAIL_URI, &token);
    let none_proof = format!("{}.{}.", b64(br#"{"typ":"dpop+jwt","alg":"none"}"#), b64(Value::Object(claims).to_string().as_bytes()));
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(none_proof), None);
    g.one("dpop_alg_none", "an unsigned proof", MAIL, r, deny("invalid_dpop_proof", "`alg` `none`"));

    let c = g.mail_claims();
    let token = g.token(&c);
    let p1 = g.proof(&token);
    let p2 = g.proof(&token);
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(format!("{p1},{p2}")), None);
    g.one("dpop_two_proofs", "two DPoP headers folded into one (RFC 9449 §4.3 #1)", MAIL, r, deny("invalid_dpop_proof", "more than one DPoP proof"));

    let c = g.mail_claims();
    let token = g.token(&c);
    let r = g.mail_request(Some(format!("DPoP {token}")), None, None);
    g.one("dpop_missing_proof", "a bound token without a proof", MAIL, r, deny("invalid_dpop_proof", "no DPoP proof was presented"));

    let c = g.mail_claims();
    let token = g.token(&c);
    let proof = g.proof(&token);
    let r = g.mail_request(Some(format!("Bearer {token}")), Some(proof), None);
    g.one(
        "dpop_bound_token_as_bearer",
        "a bound token downgraded to `Bearer` (RFC 9449 §7.2)",
        MAIL,
        r,
        deny("invalid_token", "DPoP-bound token presented with the `Bearer` scheme"),
    );

    let mut c = g.mail_claims();
    c.remove("cnf");
    let token = g.token(&c);
    let proof = g.proof(&token);
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(proof), None);
    g.one("dpop_scheme_unbound_token", "the `DPoP` scheme with a token that has no `cnf.jkt`", MAIL, r, deny("invalid_token", "is not DPoP-bound"));

    let mut c = g.mail_claims();
    c.remove("cnf");
    let token = g.token(&c);
    let r = g.mail_request(Some(format!("Bearer {token}")), None, None);
    g.one("dpop_required_rejects_bearer", "`mode = required` refuses unbound bearer tokens", MAIL, r, deny("invalid_token", "requires DPoP-bound tokens"));

    let mut c = g.mail_claims();
    c.insert("cnf".into(), json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}));
    let token = g.token(&c);
    let proof = g.proof(&token);
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(proof), None);
    g.one(
        "cnf_without_jkt",
        "a token bound by mTLS (`x5t#S256`) cannot be honoured here",
        MAIL,
        r,
        deny("invalid_token", "a confirmation method this service cannot check"),
    );

    let c = g.mail_claims();
    let token = g.token(&c);
    let proof = g.proof(&token);
    let first = g.mail_request(Some(format!("DPoP {token}")), Some(proof.clone()), None);
    let second = first.clone();
    g.push(
        "dpop_replayed_jti",
        "the same proof twice: the second is a replay",
        MAIL,
        vec![Step { request: first, expect: allow(&["mail-read-own"]) }, Step { request: second, expect: deny("replayed", "already used") }],
    );

    let c = g.mail_claims();
    let token = g.token(&c);
    let mut r = g.mail_request(
        Some(format!("DPoP {token}")),
        Some(g.agent.sign(&Gen::proof_header(&g.agent), &json!({"jti": "x", "htm": "GET", "htu": MAIL_URI, "iat": T0, "ath": ath(&token)}))),
        None,
    );
    r.http = None;
    g.one(
        "dpop_without_http_request",
        "a proof cannot be checked without the request's method and URI",
        MAIL,
        r,
        deny("invalid_request", "HTTP method and URI"),
    );

    // Server nonces (RFC 9449 §8, §9).
    let issuer = NonceIssuer::new(&NonceSettings {
        secret: std::fs::read_to_string(root().join("tests/configs/nonce.TEST-ONLY.secret")).unwrap().trim_end().into(),
        step_secs: 60,
    })
    .unwrap();
    let c = g.mail_claims();
    let token = g.token(&c);
    let proof = g.proof(&token);
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(proof), None);
    let mut e = deny("use_dpop_nonce", "has no `nonce`");
    e.dpop_nonce = Some(true);
    g.one("nonce_missing", "with nonces on, a proof without one is asked to retry with the server nonce", NONCE_CONFIG, r, e);
    let current = issuer.current(T0 as i64);
    let c = g.mail_claims();
    let token = g.token(&c);
    let mut pc = g.proof_claims("GET", MAIL_URI, &token);
    pc.insert("nonce".into(), json!(current));
    let proof = sign(&g.agent, &Gen::proof_header(&g.agent), &Value::Object(pc));
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(proof), None);
    g.one("nonce_current", "a proof carrying the current server nonce", NONCE_CONFIG, r, allow(&["mail-read-own"]));
    let stale = issuer.current(T0 as i64 - 180);
    let c = g.mail_claims();
    let token = g.token(&c);
    let mut pc = g.proof_claims("GET", MAIL_URI, &token);
    pc.insert("nonce".into(), json!(stale));
    let proof = sign(&g.agent, &Gen::proof_header(&g.agent), &Value::Object(pc));
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(proof), None);
    let mut e = deny("use_dpop_nonce", "`nonce` is not current");
    e.dpop_nonce = Some(true);
    g.one("nonce_stale", "a nonce from three minutes ago", NONCE_CONFIG, r, e);

    // DPoP switched off.
    let mut c = g.home_claims();
    c.insert("aud".into(), json!(HOME_AUD));
    c.insert("cnf".into(), json!({"jkt": g.agent.thumbprint()}));
    let token = g.token(&c);
    let r = g.home_request(Some(format!("DPoP {token}")));
    g.one(
        "dpop_off_rejects_bound_tokens",
        "with `mode = off` a bound token cannot be honoured",
        DPOP_OFF_CONFIG,
        r,
        deny("invalid_token", "not accepted here"),
    );
    let c = g.home_claims();
    let token = g.token(&c);
    let r = g.home_request(Some(format!("Bearer {token}")));
    g.one("dpop_off_accepts_bearer", "with `mode = off` unbound bearer tokens are accepted", DPOP_OFF_CONFIG, r, allow(&["home-read-devices"]));

    // ---- Agent identity (WIMSE WIT, SPIFFE JWT-SVID) -------------------------------------------
    let agent = g.agent.clone();
    let domain = g.domain.clone();
    let wit = g.wit(&domain, ASSISTANT, Some(&agent), T0 + 3600);
    g.identity_case(
        "identity_wit_valid",
        "a workload identity bound to the proof key, for the token's actor",
        MAIL,
        ASSISTANT,
        Some(wit),
        allow(&["mail-read-own"]),
    );
    let wit = g.wit(&domain, "spiffe://agents.example/other-agent", Some(&agent), T0 + 3600);
    g.identity_case(
        "identity_sub_not_actor",
        "an identity for another agent than the token's actor",
        MAIL,
        ASSISTANT,
        Some(wit),
        deny("invalid_token", "does not match the token's actor"),
    );
    let other = g.other_agent.clone();
    let wit = g.wit(&domain, ASSISTANT, Some(&other), T0 + 3600);
    g.identity_case(
        "identity_key_not_proof_key",
        "an identity bound to a key other than the proof key",
        MAIL,
        ASSISTANT,
        Some(wit),
        deny("invalid_token", "does not match the DPoP proof key"),
    );
    let wit = g.wit(&domain, ASSISTANT, None, T0 + 3600);
    g.identity_case(
        "identity_wit_without_cnf",
        "a WIT must carry `cnf.jwk`",
        MAIL,
        ASSISTANT,
        Some(wit),
        deny("invalid_token", "lacks the required `cnf.jwk`"),
    );
    let mut claims = obj(json!({ "iss": "https://identity.agents.example", "sub": ASSISTANT, "iat": T0 - 60, "exp": T0 + 3600, "jti": g.jti("wit") }));
    claims.insert("cnf".into(), json!({ "jwk": agent.bare_public_jwk() }));
    let wit = sign(&domain, &json!({"typ": "wit+jwt", "alg": "ES256", "kid": "agents-example-2026-11"}), &Value::Object(claims));
    g.identity_case(
        "identity_wit_cnf_without_alg",
        "WIMSE requires `cnf.jwk.alg`",
        MAIL,
        ASSISTANT,
        Some(wit),
        deny("invalid_token", "lacks `alg`, which WIMSE requires"),
    );
    let wit = g.wit(&domain, ASSISTANT, Some(&agent), T0 - 60);
    g.identity_case("identity_expired", "an expired workload identity", MAIL, ASSISTANT, Some(wit), deny("invalid_token", "agent identity expired"));
    let rogue_domain = g.rogue_domain.clone();
    let wit = g.wit(&rogue_domain, ASSISTANT, Some(&agent), T0 + 3600);
    g.identity_case(
        "identity_forged",
        "an identity signed by a key that is not in the bundle",
        MAIL,
        ASSISTANT,
        Some(wit),
        deny("invalid_token", "agent identity signature does not verify"),
    );
    let wit = g.wit(&domain, "spiffe://evil.example/mail-assistant", Some(&agent), T0 + 3600);
    g.identity_case(
        "identity_untrusted_domain",
        "an identity from a trust domain that is not configured",
        MAIL,
        "spiffe://evil.example/mail-assistant",
        Some(wit),
        deny("invalid_token", "trust domain `evil.example` is not trusted"),
    );
    let wit = g.wit(&domain, "spiffe://agents.example/mail-assistant", Some(&agent), T0 + 3600);
    let mut r = {
        let mut c = g.mail_claims();
        c.remove("act");
        let token = g.token(&c);
        let proof = g.proof(&token);
        g.mail_request(Some(format!("DPoP {token}")), Some(proof), None)
    };
    r.agent_identity = Some(wit);
    g.one("identity_without_actor", "an agent identity on a token that names no actor", MAIL, r, deny("invalid_token", "names no actor"));
    for (slug, id, reason) in [
        ("spiffe_dot_dot", "spiffe://agents.example/a/../mail-assistant", "has a `..` path segment"),
        ("spiffe_empty_segment", "spiffe://agents.example/a//mail-assistant", "empty path segment"),
        ("spiffe_port", "spiffe://agents.example:443/mail-assistant", "the character `:` in its trust domain"),
        ("spiffe_uppercase_domain", "spiffe://Agents.Example/mail-assistant", "the character `A` in its trust domain"),
        ("spiffe_query", "spiffe://agents.example/mail-assistant?x=1", "the character `?` in its path"),
        ("spiffe_not_spiffe", "https://agents.example/mail-assistant", "does not start with `spiffe://`"),
    ] {
        let wit = g.wit(&domain, id, Some(&agent), T0 + 3600);
        g.identity_case(
            &format!("identity_{slug}"),
            &format!("a workload identity `{id}` is not a valid SPIFFE ID"),
            MAIL,
            id,
            Some(wit),
            deny("invalid_token", reason),
        );
    }
    let svid =
        sign(&domain, &json!({"alg": "ES256", "kid": "agents-example-2026-11", "typ": "JWT"}), &json!({"sub": ASSISTANT, "aud": [MAIL_AUD], "exp": T0 + 300}));
    g.identity_case("identity_jwt_svid_valid", "a JWT-SVID for this service identifies the agent", MAIL, ASSISTANT, Some(svid), allow(&["mail-read-own"]));
    let svid = sign(
        &domain,
        &json!({"alg": "ES256", "kid": "agents-example-2026-11", "typ": "JWT"}),
        &json!({"sub": ASSISTANT, "aud": ["https://other.example.com"], "exp": T0 + 300}),
    );
    g.identity_case(
        "identity_jwt_svid_other_audience",
        "a JWT-SVID for another service",
        MAIL,
        ASSISTANT,
        Some(svid),
        deny("invalid_token", "audience does not include this service"),
    );
    let svid = sign(
        &domain,
        &json!({"alg": "ES256", "kid": "agents-example-2026-11", "jku": "https://evil.example/keys"}),
        &json!({"sub": ASSISTANT, "aud": [MAIL_AUD], "exp": T0 + 300}),
    );
    g.identity_case(
        "identity_jwt_svid_extra_header",
        "JWT-SVID §2 forbids headers beyond `alg`, `kid`, `typ`",
        MAIL,
        ASSISTANT,
        Some(svid),
        deny("invalid_token", "the header `jku`"),
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.one(
        "identity_required_but_missing",
        "a deployment that requires agent identity refuses calls without one",
        IDENTITY_CONFIG,
        r,
        deny("invalid_token", "requires a verified agent identity"),
    );
    let wit = g.wit(&domain, ASSISTANT, Some(&agent), T0 + 3600);
    g.identity_case(
        "identity_required_and_present",
        "the same deployment accepts the call with a workload identity",
        IDENTITY_CONFIG,
        ASSISTANT,
        Some(wit),
        allow(&["mail-read-own"]),
    );

    // ---- Revocation ------------------------------------------------------------------------------
    let c = g.mail_claims();
    let jti = c["jti"].as_str().unwrap().to_owned();
    let r = g.bound_call(&c);
    g.push_with(
        "revoked_token_id",
        "a revoked token `jti` is cut off before policy",
        MAIL,
        Some(json!({"jti": [jti]})),
        vec![Step { request: r, expect: deny("revoked", "access token `vector-at-") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with(
        "revoked_agent",
        "a revoked agent is cut off",
        MAIL,
        Some(json!({"agents": [ASSISTANT]})),
        vec![Step { request: r, expect: deny("revoked", "agent `spiffe://agents.example/mail-assistant` is revoked") }],
    );
    let mut c = g.mail_claims();
    c.insert("act".into(), json!({"sub": "spiffe://agents.example/summarizer", "act": {"sub": ASSISTANT}}));
    let r = g.bound_call(&c);
    g.push_with(
        "revoked_earlier_actor",
        "revoking an agent also cuts off its sub-agents",
        MAIL,
        Some(json!({"agents": [ASSISTANT]})),
        vec![Step { request: r, expect: deny("revoked", "agent `spiffe://agents.example/mail-assistant` is revoked") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with(
        "revoked_user",
        "a revoked user's delegations are cut off",
        MAIL,
        Some(json!({"users": ["alice"]})),
        vec![Step { request: r, expect: deny("revoked", "user `alice` is revoked") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    let thumb = g.agent.thumbprint();
    g.push_with(
        "revoked_agent_key",
        "a revoked agent key (by thumbprint)",
        MAIL,
        Some(json!({"keys": [thumb]})),
        vec![Step { request: r, expect: deny("revoked", "is revoked") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with(
        "revoked_issuer_kid",
        "a revoked issuer signing key (by `kid`)",
        MAIL,
        Some(json!({"keys": ["demo-issuer-2026-11"]})),
        vec![Step { request: r, expect: deny("revoked", "key `demo-issuer-2026-11` is revoked") }],
    );
    let mut c = g.mail_claims();
    c.insert("act".into(), json!({"sub": "spiffe://agents.example/compromised-assistant"}));
    let r = g.bound_call(&c);
    g.one("revoked_by_config_file", "the demo's `revoked.json` lists a compromised agent", MAIL, r, deny("revoked", "compromised-assistant"));

    // ---- Hardening I (outside review): added with contract 0.2.0 ----------------------------------
    // Finding 5: `jkt` next to a confirmation method the engine cannot check.
    let mut c = g.mail_claims();
    let jkt = g.agent.thumbprint();
    c.insert("cnf".into(), json!({"jkt": jkt, "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}));
    let r = g.bound_call(&c);
    g.one(
        "cnf_jkt_and_mtls",
        "a token bound to a key and to a certificate: the certificate cannot be checked here, so the token is refused",
        MAIL,
        r,
        deny("invalid_token", "has a `cnf` with `x5t#S256`, a confirmation method this service cannot check"),
    );
    // Finding 7: the proof key is compared with `cnf.jkt` before any signature is checked.
    let claims = g.mail_claims();
    let token = g.token(&claims);
    let proof_claims = g.proof_claims("GET", MAIL_URI, &token);
    let other = g.other_agent.clone();
    let forged = with_signature(&sign(&other, &Gen::proof_header(&other), &Value::Object(proof_claims)), &[7u8; 64]);
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(forged), None);
    g.one(
        "dpop_other_key_refused_before_signature",
        "a proof by another key with a garbage signature is refused for its key, before any curve arithmetic",
        MAIL,
        r,
        deny("invalid_token", "does not match the token's `cnf.jkt`"),
    );
    // Finding 4: key revocations by thumbprint for every key the engine trusts, and scoped `kid`s.
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    let issuer_thumb = g.issuer.thumbprint();
    g.push_with(
        "revoked_issuer_key_thumbprint",
        "an issuer signing key revoked by its RFC 7638 thumbprint",
        MAIL,
        Some(json!({"keys": [{"thumbprint": issuer_thumb}]})),
        vec![Step { request: r, expect: deny("revoked", "is revoked") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with(
        "revoked_issuer_kid_scoped",
        "an issuer signing key revoked by `kid` scoped to its issuer",
        MAIL,
        Some(json!({"keys": [{"issuer": ISSUER, "kid": "demo-issuer-2026-11"}]})),
        vec![Step { request: r, expect: deny("revoked", "key `demo-issuer-2026-11` of issuer `https://auth.demo.agentgate.dev` is revoked") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with(
        "revoked_kid_of_another_issuer",
        "revoking another issuer's key with the same `kid` leaves this issuer's key alone",
        MAIL,
        Some(json!({"keys": [{"issuer": "https://other-as.example", "kid": "demo-issuer-2026-11"}]})),
        vec![Step { request: r, expect: allow(&["mail-read-own"]) }],
    );
    let domain_thumb = g.domain.thumbprint();
    let wit = g.wit(&domain, ASSISTANT, Some(&agent), T0 + 3600);
    let mut claims = g.mail_claims();
    claims.insert("act".into(), json!({ "sub": ASSISTANT }));
    let token = g.token(&claims);
    let proof = g.proof(&token);
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(proof), Some(wit.clone()));
    g.push_with(
        "revoked_trust_domain_key_thumbprint",
        "a trust domain's bundle key revoked by its thumbprint cuts off the identities it signed",
        MAIL,
        Some(json!({"keys": [domain_thumb]})),
        vec![Step { request: r, expect: deny("revoked", "is revoked") }],
    );
    let mut claims = g.mail_claims();
    claims.insert("act".into(), json!({ "sub": ASSISTANT }));
    let token = g.token(&claims);
    let proof = g.proof(&token);
    let r = g.mail_request(Some(format!("DPoP {token}")), Some(proof), Some(wit));
    g.push_with(
        "revoked_trust_domain_kid_scoped",
        "a trust domain's bundle key revoked by `kid` scoped to its trust domain",
        MAIL,
        Some(json!({"keys": [{"trust_domain": "agents.example", "kid": "agents-example-2026-11"}]})),
        vec![Step { request: r, expect: deny("revoked", "key `agents-example-2026-11` of trust domain `agents.example` is revoked") }],
    );
    let c = g.mail_claims();
    let jti = c["jti"].as_str().unwrap().to_owned();
    let r = g.bound_call(&c);
    g.push_with(
        "revoked_token_id_of_its_issuer",
        "a token `jti` revoked for its issuer",
        MAIL,
        Some(json!({"jti": [{"id": jti, "issuer": ISSUER}]})),
        vec![Step { request: r, expect: deny("revoked", "of issuer `https://auth.demo.agentgate.dev` is revoked") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with(
        "revocation_expired",
        "a revocation whose `expires` has passed no longer applies",
        MAIL,
        Some(json!({"agents": [{"id": ASSISTANT, "expires": T0 - 1}]})),
        vec![Step { request: r, expect: allow(&["mail-read-own"]) }],
    );
    // The host's `state` import (contract 0.2.0): its answers reach the decision on every host.
    let c = g.mail_claims();
    let first = g.bound_call(&c);
    let second = g.bound_call(&c);
    g.push_with_state(
        "host_state_key_limit",
        "the host bounds live proofs per key: one key cannot fill the store for everyone",
        HostStateSpec { max_proofs_per_key: Some(1), ..HostStateSpec::default() },
        vec![
            Step { request: first, expect: allow(&["mail-read-own"]) },
            Step { request: second, expect: deny("rate_limited", "already has 1 live proofs, the most one key may have") },
        ],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with_state(
        "host_state_unavailable",
        "a store that cannot answer fails the call closed with `unavailable`",
        HostStateSpec { unavailable: Some("the store did not answer within 50 ms".into()), ..HostStateSpec::default() },
        vec![Step { request: r, expect: deny("unavailable", "could not be consulted: the store did not answer within 50 ms") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with_state(
        "host_state_revoked_agent",
        "an agent on the host's revocation list (canonical id)",
        HostStateSpec { revoked: vec![vec!["agent".into(), ASSISTANT.into()]], ..HostStateSpec::default() },
        vec![Step { request: r, expect: deny("revoked", "agent `spiffe://agents.example/mail-assistant` is revoked") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with_state(
        "host_state_revoked_issuer_kid",
        "an issuer key on the host's revocation list, scoped to its issuer",
        HostStateSpec { revoked: vec![vec!["issuer-kid".into(), ISSUER.into(), "demo-issuer-2026-11".into()]], ..HostStateSpec::default() },
        vec![Step { request: r, expect: deny("revoked", "key `demo-issuer-2026-11` of issuer `https://auth.demo.agentgate.dev` is revoked") }],
    );
    // Token status lists (draft-ietf-oauth-status-list-21), verified inside the component.
    let issuer = g.issuer.clone();
    let one_bit = Gen::status_list_token(&issuer, 1, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], |_, _| {});
    let r = g.status_call(0, STATUS_URI);
    g.status_case("status_list_valid", "a token whose status list entry is 0x00 (valid)", one_bit.clone(), r, allow(&["mail-read-own"]));
    let r = g.status_call(3, STATUS_URI);
    g.status_case(
        "status_list_invalid",
        "a token whose entry is 0x01 (invalid) is revoked",
        one_bit.clone(),
        r,
        deny("revoked", "is invalid (0x01) in its status list"),
    );
    let r = g.status_call(15, STATUS_URI);
    g.status_case("status_list_last_entry", "the last entry of a one-bit list (index 15 of 16)", one_bit.clone(), r, allow(&["mail-read-own"]));
    let r = g.status_call(16, STATUS_URI);
    g.status_case(
        "status_list_index_past_the_end",
        "an index just past the list is refused, not read as valid",
        one_bit,
        r,
        deny("invalid_token", "is beyond the status list"),
    );
    let two_bits = Gen::status_list_token(&issuer, 2, &[0, 2, 3, 0], |_, _| {});
    let r = g.status_call(1, STATUS_URI);
    g.status_case(
        "status_list_suspended",
        "a two-bit entry 0x02 (suspended) is revoked, and the reason says so",
        two_bits.clone(),
        r,
        deny("revoked", "is suspended (0x02)"),
    );
    let r = g.status_call(2, STATUS_URI);
    g.status_case("status_list_unknown_status", "an application-specific status (0x03) is revoked: fail closed", two_bits.clone(), r, deny("revoked", "0x03"));
    let r = g.status_call(3, STATUS_URI);
    g.status_case("status_list_two_bits_valid", "a two-bit entry 0x00", two_bits, r, allow(&["mail-read-own"]));
    let four_bits = Gen::status_list_token(&issuer, 4, &[0, 0, 0, 0, 0, 1], |_, _| {});
    let r = g.status_call(5, STATUS_URI);
    g.status_case("status_list_four_bits", "a four-bit entry 0x01 at an odd index", four_bits, r, deny("revoked", "invalid (0x01)"));
    let mut entries = vec![0u8; 300];
    entries[299] = 0x2a;
    let eight_bits = Gen::status_list_token(&issuer, 8, &entries, |_, _| {});
    let r = g.status_call(298, STATUS_URI);
    g.status_case("status_list_eight_bits_valid", "an eight-bit list, the entry before the last", eight_bits.clone(), r, allow(&["mail-read-own"]));
    let r = g.status_call(299, STATUS_URI);
    g.status_case("status_list_eight_bits_last", "an eight-bit list, its last entry 0x2a", eight_bits, r, deny("revoked", "0x2a"));
    let rogue = g.rogue.clone();
    let forged = Gen::status_list_token(&rogue, 1, &[0; 8], |_, _| {});
    let r = g.status_call(0, STATUS_URI);
    g.status_case(
        "status_list_bad_signature",
        "a list not signed by the issuer's key fails the call closed",
        forged,
        r,
        deny("unavailable", "status list token signature does not verify"),
    );
    let wrong_typ = Gen::status_list_token(&issuer, 1, &[0; 8], |h, _| h["typ"] = json!("JWT"));
    let r = g.status_call(0, STATUS_URI);
    g.status_case("status_list_wrong_typ", "a list without `typ` `statuslist+jwt` is refused", wrong_typ, r, deny("unavailable", "expected `statuslist+jwt`"));
    let expired = Gen::status_list_token(&issuer, 1, &[0; 8], |_, c| c["exp"] = json!(T0 - 3600));
    let r = g.status_call(0, STATUS_URI);
    g.status_case("status_list_expired", "an expired list is refused", expired, r, deny("unavailable", "status list token expired"));
    let other_sub = Gen::status_list_token(&issuer, 1, &[0; 8], |_, c| c["sub"] = json!("https://auth.demo.agentgate.dev/status/2"));
    let r = g.status_call(0, STATUS_URI);
    g.status_case(
        "status_list_sub_mismatch",
        "a list whose `sub` is another list's `uri` is refused",
        other_sub,
        r,
        deny("unavailable", "is not the `uri` the token names"),
    );
    let bomb = Gen::status_list_token(&issuer, 1, &[], |_, c| {
        c["status_list"]["lst"] = json!(b64(&miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; 4 << 20], 10)))
    });
    let r = g.status_call(0, STATUS_URI);
    g.status_case(
        "status_list_zlib_bomb",
        "a list that would inflate past the limit is refused, not inflated",
        bomb,
        r,
        deny("unavailable", "inflates to more than"),
    );
    let r = g.status_call(0, "https://auth.demo.agentgate.dev/status/unknown");
    let spec = HostStateSpec::default();
    g.push_with_state(
        "status_list_unavailable",
        "a list the host cannot provide fails the call closed",
        spec,
        vec![Step { request: r, expect: deny("unavailable", "the status list `https://auth.demo.agentgate.dev/status/unknown` is unavailable") }],
    );
    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with_state_config(
        "status_list_required_but_absent",
        "an issuer with `status_list = \"required\"` refuses tokens without a status reference",
        STATUS_REQUIRED_CONFIG,
        HostStateSpec::default(),
        vec![Step { request: r, expect: deny("invalid_token", "requires a status list reference") }],
    );
    let valid = Gen::status_list_token(&issuer, 1, &[0; 8], |_, _| {});
    let r = g.status_call(2, STATUS_URI);
    let spec = HostStateSpec { status_lists: [(STATUS_URI.to_owned(), valid)].into_iter().collect(), ..HostStateSpec::default() };
    g.push_with_state_config(
        "status_list_required_and_valid",
        "the same issuer accepts a token whose entry is valid",
        STATUS_REQUIRED_CONFIG,
        spec,
        vec![Step { request: r, expect: allow(&["mail-read-own"]) }],
    );

    let c = g.mail_claims();
    let r = g.bound_call(&c);
    g.push_with(
        "revocation_not_yet_expired",
        "a revocation with an `expires` in the future applies",
        MAIL,
        Some(json!({"agents": [{"id": ASSISTANT, "expires": T0 + 60}]})),
        vec![Step { request: r, expect: deny("revoked", "agent `spiffe://agents.example/mail-assistant` is revoked") }],
    );

    // Step-up (`@scope` on the permitting policy, policies/mcp): a call denied only for a scope
    // names it; one a `forbid` refuses does not.
    let r = g.files_call("files.read files.write", "delete_file", json!({"path": "/workspace/old.md"}));
    g.one(
        "mcp_step_up_names_the_missing_scope",
        "a tool call whose grant needs a scope the token lacks is `insufficient_scope`",
        FILES,
        r,
        deny("insufficient_scope", "the token lacks the scope `files.delete`"),
    );
    let r = g.files_call("files.read files.write files.delete", "delete_file", json!({"path": "/etc/passwd"}));
    g.one(
        "mcp_forbid_is_not_a_step_up",
        "a call a `forbid` refuses is `policy_denied`, whatever scope the token could add",
        FILES,
        r,
        deny("policy_denied", ""),
    );
    let r = g.files_call("files.read", "read_file", json!({"path": "/workspace/notes.md"}));
    g.one(
        "mcp_tool_call_from_the_body",
        "a tool call decided as the tool's own action with its arguments as `context.input`",
        FILES,
        r,
        allow(&["files-read-tools"]),
    );

    g.vectors
}

#[test]
fn vectors_are_up_to_date() {
    let dir = root().join("tests/vectors");
    let vectors = build();
    assert!(vectors.len() >= 100, "the suite shrank to {} vectors", vectors.len());
    let write = std::env::var_os("AGENTGATE_WRITE_VECTORS").is_some();
    if write {
        for old in std::fs::read_dir(&dir).unwrap() {
            let path = old.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    let mut stale = Vec::new();
    for (name, vector) in &vectors {
        let text = serde_json::to_string_pretty(vector).unwrap() + "\n";
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.clone());
        }
    }
    let on_disk = support::vector_files().len();
    assert!(
        stale.is_empty() && on_disk == vectors.len(),
        "tests/vectors disagrees with the generator ({} stale, {on_disk} files for {} vectors): {stale:?}\n\
         regenerate with AGENTGATE_WRITE_VECTORS=1 cargo test --release --test generate_vectors",
        stale.len(),
        vectors.len()
    );
}
