//! Peer comparison: agentgate and Cedarling 2.6.0 (Gluu/Janssen's Cedar + JWT engine) on the same
//! ES256 access-token bytes, the mail demo's policies ported to Cedarling, in one run.
//! docs/cedarling-peer.md says exactly what each side does per call and where they differ.
//!
//! `cargo bench --bench peer_cedarling --features cedarling` (HTML reports in `target/criterion/`).
//!
//! Groups (every call is one access token, action `mail:read`, resource `Mailbox::"alice"`):
//! - `peer/same_token_cached`: the same token bytes on every call, each engine's token cache on
//!   (both engines' default), so after the first call neither verifies the signature again.
//! - `peer/same_token_uncached`: the same bytes with both token caches off: a full verification
//!   on every call.
//! - `peer/first_seen_token`: a freshly minted token on every call (minted outside the timed
//!   section), caches on: a verification plus a cache insert on every call.
//!
//! Cedarling, as set up here: `cedarling::blocking::Cedarling` (the `blocking` feature), policy
//! store read from a directory in the v2 layout (`benches/peer/cedarling-store/`, copied to a
//! temporary directory with the JWKS URL filled in), signature validation on, status-list
//! validation off, logging off. Cedarling 2.6.0 cannot take a trusted issuer's keys from a local
//! file alone: it fetches every trusted issuer's JWKS over HTTP(S) at startup and fails to start if
//! that fails, local JWKS or not (`src/jwt/trusted_issuers_loader.rs`). So this bench serves the
//! demo issuer's JWKS file on 127.0.0.1 to Cedarling's startup (and to its hourly background
//! refresh, should a run last that long); nothing goes over the network during the measurements.
//!
//! Cedarling sources read to write this (crate `cedarling` 2.6.0 from crates.io, `~/.cargo/registry/
//! src/*/cedarling-2.6.0/`): Cargo.toml, build.rs, src/lib.rs, src/blocking.rs,
//! src/authz/{mod,request,build_ctx,authorize_result,errors}.rs,
//! src/bootstrap_config/{mod,jwt_config,policy_store_config,log_config,authorization_config,decode}.rs,
//! src/bootstrap_config/raw_config/config.rs, src/init/policy_store.rs,
//! src/common/issuer_utils.rs, src/common/policy_store.rs,
//! src/common/policy_store/{token_types,validator,policy_parser,manager,loader,schema_parser}.rs,
//! src/common/policy_store/legacy_store/mod.rs,
//! src/common/policy_store/formats/{mod,v2/mod,v2/metadata,v2/trusted_issuers}.rs,
//! src/common/cedar_schema/cedar_json.rs, src/common/cedar_schema/cedar_json/action.rs,
//! src/jwt/{mod,key_service,trusted_issuers_loader,http_utils,token_cache,decode}.rs,
//! src/jwt/validation/{validator,validator_cache}.rs,
//! src/entity_builder/{mod,build_multi_issuer_entity,build_iss_entity,build_resource_entity,
//! build_entity_attrs,build_expr,schema}.rs, src/entity_builder/schema/attr_src.rs,
//! src/log/log_strategy.rs, benches/authz_authorize_multi_issuer_benchmark.rs.

// Built only with `--features cedarling` (the `[[bench]]` entry's `required-features`); the
// attribute keeps an auto-discovered copy of this target from failing without the feature.
#![cfg(feature = "cedarling")]
// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use agentgate::config::{self, CryptoPlacement, LoadedConfig};
use agentgate::mint::{self, AccessTokenSpec, KeyPair};
use agentgate::{CheckRequest, Decide, EngineConfig};
use agentgate_engine::{Credentials, EntityRef};
use cedarling::blocking::Cedarling;
use cedarling::{
    AuthorizeMultiIssuerRequest, BootstrapConfig, EntityData, JwtConfig, LogConfig, LogLevel, LogTypeConfig, PolicyStoreConfig, PolicyStoreSource, TokenInput,
};
use common::{ENTITIES, Fixture, key, root};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

const ISSUER: &str = "https://auth.demo.agentgate.dev";
const AUDIENCE: &str = "https://mail.example.com";
const AGENT: &str = "spiffe://agents.example/mail-assistant";
const SUB_AGENT: &str = "spiffe://agents.example/summarizer";
/// The Cedarling token type of the demo issuer's access tokens (`trusted-issuers.json`).
const TOKEN_MAPPING: &str = "Demo::Access_Token";
const CEDARLING_ACTION: &str = r#"Action::"mail:read""#;
/// Cedarling's request resource: `Mailbox::"alice"`, `owner` the user's `sub`.
const CEDARLING_RESOURCE: &str = r#"{"cedar_entity_mapping":{"entity_type":"Mailbox","id":"alice"},"owner":"alice"}"#;
/// Connections the JWKS server answers before it stops: two Cedarling startups need two.
const JWKS_SERVER_CONNECTIONS: usize = 16;

/// The bench's access token: alice delegated `mail.read` to her assistant, valid for an hour, no
/// `cnf` (a bearer token: Cedarling verifies no DPoP proof).
fn spec() -> AccessTokenSpec {
    let mut spec = AccessTokenSpec::new(ISSUER, "alice", AUDIENCE);
    spec.scopes = vec!["mail.read".into()];
    spec.actors = vec![AGENT.into()];
    spec.lifetime_secs = 3600;
    spec
}

fn spec_with(change: impl FnOnce(&mut AccessTokenSpec)) -> AccessTokenSpec {
    let mut spec = spec();
    change(&mut spec);
    spec
}

/// agentgate's call for `token`: `Authorization: Bearer`, the caller's Mailbox entity as JSON. No
/// `http` (no proof to check; Cedarling gets no HTTP request either).
fn bearer_call(token: &str) -> CheckRequest {
    CheckRequest {
        credentials: Credentials { authorization: Some(format!("Bearer {token}")), dpop: None, agent_identity: None },
        http: None,
        action: "mail:read".into(),
        resource: EntityRef { type_name: "Mailbox".into(), id: "alice".into() },
        context_json: None,
        entities_json: Some(ENTITIES.into()),
        now: None,
    }
}

/// The engine configuration with agentgate's token cache off (`limits.token_cache_entries = 0`).
fn without_token_cache(engine: &EngineConfig) -> EngineConfig {
    let mut settings: serde_json::Value = serde_json::from_str(&engine.settings_json).unwrap();
    settings["limits"]["token_cache_entries"] = json!(0);
    EngineConfig { settings_json: settings.to_string(), ..engine.clone() }
}

/// agentgate natively and in the component (both crypto placements), warmed up like `check`'s.
fn agentgate_deciders(config: LoadedConfig) -> Vec<(&'static str, Box<dyn Decide>)> {
    let f = Fixture::with_config(config);
    vec![
        ("agentgate_native", Box::new(f.native())),
        ("agentgate_component_guest_crypto", Box::new(f.component(CryptoPlacement::Guest))),
        ("agentgate_component_host_crypto", Box::new(f.component(CryptoPlacement::Host))),
    ]
}

/// Answers every request on 127.0.0.1 with `body` (the issuer's JWKS), for Cedarling's startup
/// fetch. Stops after `JWKS_SERVER_CONNECTIONS` connections; the process exit ends it otherwise.
fn serve_jwks(body: String) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::Builder::new()
        .name("jwks-server".into())
        .spawn(move || {
            for stream in listener.incoming().take(JWKS_SERVER_CONNECTIONS) {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                // Read the request head (a GET has no body), then answer and close.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response =
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(response.as_bytes());
            }
        })
        .unwrap();
    addr
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `benches/peer/cedarling-store/` in a temporary directory, its JWKS URL pointing at `jwks_url`.
fn cedarling_store(jwks_url: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("benches/peer/cedarling-store"), dir.path());
    let path = dir.path().join("trusted-issuers.json");
    let mut issuers: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    issuers[TOKEN_MAPPING]["configuration_endpoints"]["jwks"] = json!(jwks_url);
    std::fs::write(&path, serde_json::to_string_pretty(&issuers).unwrap()).unwrap();
    dir
}

struct CedarlingPeer {
    cedarling: Cedarling,
    resource: EntityData,
}

impl CedarlingPeer {
    /// Cedarling on the store at `store`: signatures checked, no status lists, no logs; the token
    /// cache at its default (validated tokens kept up to 5 s, 100 of them) or off.
    fn new(store: &Path, token_cache: bool) -> Self {
        let mut jwt_config = JwtConfig { jwt_sig_validation: true, jwt_status_validation: false, ..JwtConfig::default() };
        if !token_cache {
            // 0 disables the cache (`TokenCache::new`).
            jwt_config.token_cache_max_ttl_secs = 0;
        }
        let bootstrap = BootstrapConfig {
            application_name: "agentgate-peer-bench".into(),
            log_config: LogConfig { log_type: LogTypeConfig::Off, log_level: LogLevel::ERROR },
            policy_store_config: PolicyStoreConfig { source: PolicyStoreSource::Directory(store.to_path_buf()), ..PolicyStoreConfig::default() },
            jwt_config,
            ..BootstrapConfig::default()
        };
        let cedarling = Cedarling::new(&bootstrap).unwrap_or_else(|e| panic!("Cedarling did not start: {e} ({e:?})"));
        CedarlingPeer { cedarling, resource: EntityData::from_json(CEDARLING_RESOURCE).unwrap() }
    }

    /// The request for `token`, built outside the timed section: the API takes it by value.
    fn request(&self, token: &str) -> AuthorizeMultiIssuerRequest {
        AuthorizeMultiIssuerRequest::new(vec![TokenInput::new(TOKEN_MAPPING.into(), token.into())], self.resource.clone(), CEDARLING_ACTION.into())
    }

    /// Allowed, or denied (a policy denied it, or the token was dropped as invalid).
    fn allows(&self, request: AuthorizeMultiIssuerRequest) -> bool {
        self.cedarling.authorize_multi_issuer(request).is_ok_and(|result| result.decision)
    }
}

/// Both engines decide as expected on tokens that differ in one respect each: the policies and
/// checks agree where they should, and the known differences (docs/cedarling-peer.md) show.
fn check_decisions(issuer: &KeyPair, agentgate: &mut dyn Decide, cedarling: &CedarlingPeer) {
    let valid = spec().sign(issuer);
    let result = cedarling.cedarling.authorize_multi_issuer(cedarling.request(&valid));
    assert!(matches!(&result, Ok(r) if r.decision), "Cedarling must allow the bench token: {result:?}");

    let forger = KeyPair::generate(issuer.kid.clone()).unwrap();
    let now = mint::now();
    // (case, agentgate allows, Cedarling allows, token)
    let cases: Vec<(&str, bool, bool, String)> = vec![
        ("valid", true, true, valid.clone()),
        ("sub-agent (depth 2)", true, true, spec_with(|s| s.actors = vec![AGENT.into(), SUB_AGENT.into()]).sign(issuer)),
        (
            "delegation depth 3",
            false,
            false,
            spec_with(|s| s.actors = vec![AGENT.into(), SUB_AGENT.into(), "spiffe://agents.example/helper".into()]).sign(issuer),
        ),
        ("other audience", false, false, spec_with(|s| s.audience = vec!["https://other.example.com".into()]).sign(issuer)),
        ("no mail.read scope", false, false, spec_with(|s| s.scopes = vec!["mail.send".into()]).sign(issuer)),
        ("another user's mailbox", false, false, spec_with(|s| s.subject = "bob".into()).sign(issuer)),
        ("expired an hour ago", false, false, spec_with(|s| s.issued_at = now - 7200).sign(issuer)),
        ("untrusted issuer", false, false, spec_with(|s| s.issuer = "https://issuer.example.org".into()).sign(issuer)),
        ("right kid, wrong key", false, false, spec().sign(&forger)),
        // Known differences: checks agentgate makes and Cedarling does not.
        ("revoked agent", false, true, spec_with(|s| s.actors = vec!["spiffe://agents.example/compromised-assistant".into()]).sign(issuer)),
        ("typ JWT instead of at+jwt", false, true, issuer.sign(&json!({"typ": "JWT", "alg": "ES256", "kid": issuer.kid}), &spec().claims())),
        ("lifetime 2 h over the 1 h cap", false, true, spec_with(|s| s.lifetime_secs = 7200).sign(issuer)),
        ("issued 10 min in the future", false, true, spec_with(|s| s.issued_at = now + 600).sign(issuer)),
    ];
    for (case, agentgate_allows, cedarling_allows, token) in cases {
        let decision = agentgate.decide(&bearer_call(&token));
        assert_eq!(decision.allowed, agentgate_allows, "agentgate, {case}: {decision:?}");
        assert_eq!(cedarling.allows(cedarling.request(&token)), cedarling_allows, "Cedarling, {case}");
    }
}

fn peer(c: &mut Criterion) {
    let issuer = key("issuer.TEST-ONLY.private.jwk.json");
    let token = spec().sign(&issuer);

    let cached_config = config::load(&root().join("benches/peer/agentgate-bearer.toml")).unwrap();
    let mut uncached_config = cached_config.clone();
    uncached_config.engine = without_token_cache(&cached_config.engine);
    let mut cached = agentgate_deciders(cached_config);
    let mut uncached = agentgate_deciders(uncached_config);

    let jwks = std::fs::read_to_string(root().join("policies/keys/demo-issuer.TEST-ONLY.jwks.json")).unwrap();
    let addr = serve_jwks(jwks);
    let store = cedarling_store(&format!("http://{addr}/demo-issuer.jwks.json"));
    let cedarling_cached = CedarlingPeer::new(store.path(), true);
    let cedarling_uncached = CedarlingPeer::new(store.path(), false);

    check_decisions(&issuer, &mut *uncached[0].1, &cedarling_uncached);

    let call = bearer_call(&token);
    for (group_name, deciders, cedarling) in
        [("peer/same_token_cached", &mut cached, &cedarling_cached), ("peer/same_token_uncached", &mut uncached, &cedarling_uncached)]
    {
        let mut group = c.benchmark_group(group_name);
        for (name, decider) in deciders.iter_mut() {
            assert!(decider.decide(&call).allowed, "{name} must allow the bench call");
            group.bench_function(*name, |b| b.iter(|| assert!(decider.decide(black_box(&call)).allowed)));
        }
        group.bench_function("cedarling", |b| {
            b.iter_batched(|| cedarling.request(&token), |request| assert!(cedarling.allows(black_box(request))), BatchSize::SmallInput)
        });
        group.finish();
    }

    let mut group = c.benchmark_group("peer/first_seen_token");
    for (name, decider) in cached.iter_mut() {
        group.bench_function(*name, |b| {
            b.iter_batched(
                || bearer_call(&spec().sign(&issuer)),
                // Returning the call drops it outside the timed section.
                |call| {
                    assert!(decider.decide(black_box(&call)).allowed);
                    call
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("cedarling", |b| {
        b.iter_batched(
            || cedarling_cached.request(&spec().sign(&issuer)),
            |request| assert!(cedarling_cached.allows(black_box(request))),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, peer);
criterion_main!(benches);
