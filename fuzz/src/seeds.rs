//! Seed inputs for every target, derived from the shared vectors (`tests/vectors/*.json`), the
//! demo and test configurations, and the walkthrough's calls. `tests/fuzz_corpora.rs`
//! (`write_seed_corpora`, ignored) writes them to `fuzz/seeds/<target>/`; campaigns start from
//! them and `cargo fuzz cmin` folds them into `fuzz/corpus/<target>/`.

use crate::harness::{AGENT, CONFIGS, ISSUER, MAIL_URI, NOW, deployment, root};
use agentgate_engine::jose::base64url;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Seeds by target, each a list of (name, bytes).
pub type Seeds = BTreeMap<&'static str, Vec<(String, Vec<u8>)>>;

fn decode(part: &str) -> Option<Vec<u8>> {
    base64url::decode(part).ok()
}

/// A compact JWS split into its decoded header and payload, when both decode.
fn halves(token: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = token.split('.');
    let (h, p, _s, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if rest.is_some() {
        return None;
    }
    Some((decode(h)?, decode(p)?))
}

/// `flags`, then the sections joined by NUL.
fn sections(flags: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = flags.to_vec();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part);
    }
    out
}

/// A signed credential as (signer bits, header, claims): re-signed by the harness when it
/// decodes, else kept literally (`Absent` plus the text as the header section).
fn credential(token: Option<&str>) -> (u8, Vec<u8>, Vec<u8>) {
    match token {
        None => (3, Vec::new(), Vec::new()),
        Some(t) => match halves(t) {
            Some((h, c)) => (0, h, c),
            None => (3, t.as_bytes().to_vec(), Vec::new()),
        },
    }
}

/// The `ath` of `token`, replaced by `$ath` in proof claims.
fn with_placeholders(claims: &[u8], token: &str) -> Vec<u8> {
    let ath = agentgate_engine::dpop::ath(token);
    crate::harness::replace(claims, &ath, "$ath")
}

pub fn all() -> Seeds {
    let mut seeds: Seeds = BTreeMap::new();
    let mut add = |target: &'static str, name: String, bytes: Vec<u8>| {
        let list = seeds.entry(target).or_default();
        if !list.iter().any(|(_, b)| *b == bytes) {
            list.push((name, bytes));
        }
    };

    let mut vectors: Vec<_> = std::fs::read_dir(root().join("tests/vectors")).unwrap().map(|e| e.unwrap().path()).collect();
    vectors.sort();
    let nonce = agentgate_engine::nonce::NonceIssuer::new(deployment(2).settings.dpop.nonce.as_ref().unwrap()).unwrap().current(NOW);
    for path in &vectors {
        let stem = path.file_stem().unwrap().to_string_lossy().chars().take(3).collect::<String>();
        let vector: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let config = CONFIGS.iter().position(|c| vector["config"] == *c).unwrap_or(0) as u8;
        if let Some(revocations) = vector.get("revocations") {
            add("revocation", format!("v{stem}"), revocations.to_string().into_bytes());
        }
        for id in vector["host_state"]["revoked"].as_array().into_iter().flatten() {
            add("revocation", format!("v{stem}-id"), id.to_string().into_bytes());
        }
        for (uri, list) in vector["host_state"]["status_lists"].as_object().into_iter().flatten() {
            let list = list.as_str().unwrap_or_default();
            add("jws", format!("v{stem}-status"), list.as_bytes().to_vec());
            if let Some((h, c)) = halves(list) {
                add("status_list", format!("v{stem}"), sections(&[0], &[&h, &c, uri.as_bytes(), b"0 1 2 15 16"]));
            }
        }
        for (i, step) in vector["steps"].as_array().into_iter().flatten().enumerate() {
            let name = format!("v{stem}-{i}");
            let request = &step["request"];
            add("request_json", name.clone(), serde_json::to_vec_pretty(request).unwrap());
            let authorization = request["authorization"].as_str();
            let (scheme, token) = match authorization.and_then(|a| a.split_once(' ')) {
                Some((s, t)) => (s.to_owned(), Some(t.to_owned())),
                None => (String::new(), None),
            };
            let (proof, identity) = (request["dpop"].as_str(), request["agent_identity"].as_str());
            for credential in [token.as_deref(), proof, identity].into_iter().flatten() {
                add("jws", name.clone(), credential.as_bytes().to_vec());
            }
            let method = request["http"]["method"].as_str().unwrap_or("GET");
            let uri = request["http"]["uri"].as_str().unwrap_or(MAIL_URI);
            let actor = token.as_deref().and_then(halves).and_then(|(_, c)| serde_json::from_slice::<Value>(&c).ok());
            let actor = actor.as_ref().and_then(|c| c["act"]["sub"].as_str().map(str::to_owned));

            let (tf, th, tc) = credential(token.as_deref());
            if token.is_some() {
                add("access_token", name.clone(), sections(&[tf | (if config == 1 { 4 } else { 0 })], &[&th, &tc]));
            }
            let (pf, ph, pc) = credential(proof);
            let pc = token.as_deref().map_or(pc.clone(), |t| with_placeholders(&pc, t));
            let pc = crate::harness::replace(&pc, &nonce, "$nonce");
            if proof.is_some() {
                let flags = pf | if config == 2 { 4 } else { 0 };
                add("dpop", name.clone(), sections(&[flags], &[&ph, &pc, method.as_bytes(), uri.as_bytes()]));
            }
            let (idf, idh, idc) = credential(identity);
            if identity.is_some() {
                let actor = actor.clone().unwrap_or_else(|| AGENT.into());
                add("identity", name.clone(), sections(&[idf | if config == 4 { 4 } else { 0 }], &[&idh, &idc, actor.as_bytes()]));
            }

            // The whole call, credentials replaced by placeholders.
            let mut templated = request.clone();
            if token.is_some() && tf == 0 {
                templated["authorization"] = json!(format!("{scheme} $token"));
            }
            if proof.is_some() && pf == 0 {
                templated["dpop"] = json!("$proof");
            }
            if identity.is_some() && idf == 0 {
                templated["agent_identity"] = json!("$identity");
            }
            let signers = tf | pf << 2 | idf << 4;
            let body = serde_json::to_vec_pretty(&templated).unwrap();
            let call = sections(&[signers, config], &[&th, &tc, &ph, &pc, &idh, &idc, &body]);
            add("engine", name.clone(), call.clone());
            let mut other = call;
            other[1] |= if i % 2 == 0 { 0 } else { 0x80 };
            add("differential", name.clone(), other);

            // The Cedar request alone.
            let policy_set: u8 = match config {
                1 | 3 => 1,
                6 => 2,
                7 => 3,
                _ => 0,
            };
            let principal = actor.clone().unwrap_or_else(|| "alice".into());
            let kind = if actor.is_some() { 0 } else { 4 };
            let text = |v: &Value| if v.is_null() { Vec::new() } else { v.to_string().into_bytes() };
            add(
                "entities_context",
                name.clone(),
                sections(
                    &[policy_set | kind | 8 | 16],
                    &[
                        request["action"].as_str().unwrap_or_default().as_bytes(),
                        request["resource"]["type"].as_str().unwrap_or_default().as_bytes(),
                        request["resource"]["id"].as_str().unwrap_or_default().as_bytes(),
                        principal.as_bytes(),
                        &text(&request["context"]),
                        &text(&request["entities"]),
                        b"mail.read mail.send device.read",
                    ],
                ),
            );

            // The same call through AuthZEN, with its own (expired) credentials.
            let mut context = json!({"http": request["http"]});
            for member in ["authorization", "dpop", "agent_identity"] {
                if !request[member].is_null() {
                    context[member] = request[member].clone();
                }
            }
            if !request["context"].is_null() {
                context["input"] = request["context"].clone();
            }
            if !request["entities"].is_null() {
                context["entities"] = request["entities"].clone();
            }
            let evaluation = json!({"subject": {"type": "agent", "id": actor.clone().unwrap_or_else(|| AGENT.into())}, "action": {"name": request["action"]}, "resource": request["resource"], "context": context});
            add("authzen", name.clone(), [&[0u8][..], &serde_json::to_vec(&evaluation).unwrap()].concat());
        }
    }

    // JOSE: the RFC 7515 A.3 example, and the strict parser's own JSON.
    add("jws", "rfc7515-a3".into(), b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q".to_vec());
    add("jws", "json-nested".into(), br#"{"a":1,"b":{"c":[1,2.5,{"d":null}],"e":"\u00e9"},"f":-0}"#.to_vec());

    // Routes: each demo's table with the calls the vectors and the proxy docs make.
    let mut paths: Vec<String> = vec![
        "/mailboxes/alice/messages".into(),
        "/mailboxes/al%69ce/messages".into(),
        "/mailboxes/alice/messages/../../bob/messages".into(),
        "/mailboxes/..;/messages".into(),
        "/mailboxes/alice%2F..%2Fbob/messages".into(),
        "/mailboxes/%252e%252e/messages".into(),
        "/files/report;v=2.pdf".into(),
        "/devices/thermostat-1/temperature".into(),
        "/".into(),
    ];
    paths.sort();
    for (i, config) in CONFIGS.iter().enumerate() {
        let routes = &deployment(i).loaded.file.routes;
        if routes.is_empty() {
            continue;
        }
        let table = serde_json::to_vec(routes).unwrap();
        for (j, path) in paths.iter().enumerate() {
            for method in ["GET", "POST"] {
                add("routing", format!("c{i}-{j}-{method}"), sections(&[0], &[&table, method.as_bytes(), path.as_bytes()]));
            }
        }
        let _ = config;
    }
    let open_ended = json!([{"method": "*", "path": "/orgs/{org}/repos/{repo}/*", "action": "repo:read",
        "resource": {"type": "Repo", "id": "{org}/{repo}", "attrs": {"org": {"type": "Org", "id": "{org}"}, "label": "{repo} of {org} {unknown}"}}}]);
    add("routing", "open-ended".into(), sections(&[0], &[&serde_json::to_vec(&open_ended).unwrap(), b"GET", b"/orgs/%7Brepo%7D/repos/secret/a/b"]));

    // Revocation files.
    for dir in ["mail", "home", "payments", "mcp"] {
        if let Ok(text) = std::fs::read_to_string(root().join("policies").join(dir).join("revoked.json")) {
            add("revocation", format!("{dir}-revoked"), text.into_bytes());
        }
    }
    let every_form = r#"{"jti":["t1",{"id":"t2","issuer":"https://as","expires":200}],"agents":["bad-agent",{"id":"a2","expires":5}],"users":["mallory",{"id":"eve","issuer":"https://as"}],
        "keys":["k9",{"thumbprint":"T"},{"issuer":"https://as","kid":"k1"},{"trust_domain":"agents.example","kid":"k2","expires":9},{"kid":"k9","expires":3}]}"#;
    add("revocation", "every-form".into(), every_form.as_bytes().to_vec());

    // Configuration files.
    for (i, config) in CONFIGS.iter().enumerate() {
        let text = std::fs::read(root().join(config)).unwrap();
        add("config", format!("c{i}"), text);
    }
    let full = std::fs::read_to_string(root().join("policies/mail/agentgate.toml")).unwrap()
        + "\n[state]\nbackend = \"memory\"\nmax_proofs = 1000\nmax_proofs_per_key = 10\n\n[runtime]\ncall_timeout_ms = 250\ncrypto = \"host\"\n\n[server.decision_api]\nallowed_clients = [\"10.0.0.0/8\", \"::1/128\"]\n\n[identity]\nrequired = true\naudiences = [\"spiffe://agents.example/gate\"]\n";
    add("config", "every-section".into(), full.into_bytes());

    // AuthZEN and `/v1/check` with the harness's live credentials.
    let live = json!({"authorization": "DPoP $token", "dpop": "$proof", "http": {"method": "GET", "uri": MAIL_URI},
        "entities": [{"uid": {"type": "Mailbox", "id": "alice"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "alice"}}}, "parents": []}]});
    let evaluation =
        json!({"subject": {"type": "agent", "id": AGENT}, "action": {"name": "mail:read"}, "resource": {"type": "Mailbox", "id": "alice"}, "context": live});
    let with_properties = json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "mail:read"},
        "resource": {"type": "Mailbox", "id": "alice", "properties": {"owner": {"type": "User", "id": "alice"}}},
        "context": {"authorization": "DPoP $token", "dpop": "$proof", "http": {"method": "GET", "uri": MAIL_URI}}});
    add("authzen", "live-evaluation".into(), [&[0u8][..], &serde_json::to_vec(&evaluation).unwrap()].concat());
    add("authzen", "live-properties".into(), [&[0u8][..], &serde_json::to_vec(&with_properties).unwrap()].concat());
    let batch = json!({"subject": {"type": "agent", "id": AGENT}, "context": live, "options": {"evaluations_semantic": "deny_on_first_deny"},
        "evaluations": [{"action": {"name": "mail:read"}, "resource": {"type": "Mailbox", "id": "alice"}}, {"action": {"name": "mail:read"}, "resource": {"type": "Mailbox", "id": "bob"}}]});
    add("authzen", "live-batch".into(), [&[1u8][..], &serde_json::to_vec(&batch).unwrap()].concat());
    let mut check = live.clone();
    check["action"] = json!("mail:read");
    check["resource"] = json!({"type": "Mailbox", "id": "alice"});
    add("authzen", "live-check".into(), [&[2u8][..], &serde_json::to_vec(&check).unwrap()].concat());

    // Forward-auth: the walkthrough's call in each dialect, and the classic confusions.
    let mail = |flags: u8, method: &str, target: &str, headers: &[&str]| {
        let mut text = format!("{method}\n{target}\n");
        for h in headers {
            text.push_str(h);
            text.push('\n');
        }
        [&[flags][..], text.as_bytes()].concat()
    };
    let creds = ["Authorization: DPoP $token", "DPoP: $proof"];
    let owned = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<String>>();
    let nginx = |uri: &str| {
        let mut headers = owned(creds.to_vec());
        headers.extend(owned(vec!["X-Original-Method: GET", "X-Forwarded-Proto: https", "X-Forwarded-Host: mail.example.com"]));
        headers.insert(3, format!("X-Original-URI: {uri}"));
        headers
    };
    let cases: Vec<(String, u8, String, String, Vec<String>)> = vec![
        ("nginx".into(), 0, "GET".into(), "/forward-auth".into(), (nginx("/mailboxes/alice/messages"))),
        ("nginx-other".into(), 0, "GET".into(), "/forward-auth".into(), (nginx("/mailboxes/bob/messages"))),
        ("nginx-dots".into(), 0, "GET".into(), "/forward-auth".into(), (nginx("/mailboxes/bob/../alice/messages"))),
        ("nginx-encoded".into(), 0, "GET".into(), "/forward-auth".into(), (nginx("/mailboxes/al%69ce/messages?x=1"))),
        ("nginx-untrusted".into(), 4, "GET".into(), "/forward-auth".into(), (nginx("/mailboxes/alice/messages"))),
        (
            "nginx-twice".into(),
            0,
            "GET".into(),
            "/forward-auth".into(),
            [nginx("/mailboxes/alice/messages"), owned(vec!["X-Original-URI: /mailboxes/bob/messages"])].concat(),
        ),
        (
            "traefik".into(),
            1,
            "GET".into(),
            "/forward-auth".into(),
            owned(
                [
                    &creds[..],
                    &[
                        "X-Forwarded-Method: GET",
                        "X-Forwarded-Uri: /mailboxes/alice/messages",
                        "X-Forwarded-Proto: https",
                        "X-Forwarded-Host: mail.example.com",
                    ],
                ]
                .concat(),
            ),
        ),
        (
            "envoy".into(),
            2,
            "GET".into(),
            "/forward-auth/mailboxes/alice/messages".into(),
            owned([&creds[..], &["Host: mail.example.com", "X-Forwarded-Proto: https"]].concat()),
        ),
        (
            "mcp".into(),
            3,
            "GET".into(),
            "/forward-auth".into(),
            owned(
                [
                    &creds[..],
                    &[
                        "X-Original-Method: POST",
                        "X-Original-URI: /mcp",
                        "X-Forwarded-Proto: https",
                        "X-Forwarded-Host: files.example.com",
                        "Mcp-Method: tools/call",
                        "Mcp-Name: read_file",
                        "Mcp-Param-Path: /docs/readme.md",
                    ],
                ]
                .concat(),
            ),
        ),
    ];
    for (name, flags, method, target, headers) in &cases {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        add("forward_auth", name.clone(), mail(*flags, method, target, &headers));
    }
    // The policy index: a choice per byte (tests/support/policy_gen.rs); a spread of lengths
    // and patterns, so every scope form and both effects start in the corpus.
    for i in 0u8..24 {
        let len = 16 + usize::from(i) * 24;
        let bytes: Vec<u8> = (0..len).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i.wrapping_mul(17)) ^ (j >> 3) as u8).collect();
        add("policy_index", format!("spread-{i}"), bytes);
    }
    let _ = ISSUER;
    seeds
}
