//! Signed decision receipts (`[receipts]`) through `agentgate serve` over real HTTP: every API
//! carries them, they verify with a JOSE library that is not ours (`jsonwebtoken` over the JWKS
//! `serve` publishes), they bind the decision, the configuration, the verified facts and the
//! request, `[receipts] sign` chooses what is signed, key rotation keeps old receipts verifiable,
//! and `agentgate receipt verify` says what matches and what does not.

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use agentgate::mint::KeyPair;
use agentgate::receipts::digest::{ConfigDigests, request_digest};
use agentgate::receipts::{ReceiptSigner, SignWhen, verify};
use agentgate::wire::RequestJson;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use std::process::Command;
use support::serve::*;

const ISSUER: &str = "https://auth.demo.agentgate.dev";

/// A deployment with receipts signed by a fresh key (`receipts-current`), a previous key
/// (`receipts-previous`) still published, and `sign` as given. Returns the previous key's pair,
/// to sign a receipt "from before the rotation".
fn deployment(sign: &str) -> (Deployment, KeyPair) {
    let current = KeyPair::generate("receipts-current").unwrap();
    let previous = KeyPair::generate("receipts-previous").unwrap();
    let server = format!(
        "\n[server]\nexternal_origins = [\"https://mail.example.com\"]\nwatch_interval_secs = 1\n\n[receipts]\nkey = \"receipt.key.jwk\"\nprevious_keys = [\"previous.pub.jwk\"]\nsign = \"{sign}\"\n"
    );
    let d = Deployment::new("", &server);
    std::fs::write(d.path("receipt.key.jwk"), current.private_jwk().to_string()).unwrap();
    std::fs::write(d.path("previous.pub.jwk"), previous.public_jwk().to_string()).unwrap();
    (d, previous)
}

/// The JWKS `serve` publishes.
fn published_jwks(r: &Running) -> String {
    let mut resp = agent().get(&r.url("/.well-known/agentgate-receipt-keys")).call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "application/jwk-set+json");
    resp.body_mut().read_to_string().unwrap()
}

/// Verifies `receipt` with `jsonwebtoken` (not our JOSE code) against `jwks`; returns the claims.
fn independently_verified(receipt: &str, jwks: &str) -> Value {
    let set: JwkSet = serde_json::from_str(jwks).unwrap();
    let header = jsonwebtoken::decode_header(receipt).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("agentgate-receipt+jwt"));
    let kid = header.kid.unwrap();
    let jwk = set.find(&kid).unwrap_or_else(|| panic!("no key `{kid}` in {jwks}"));
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(receipt, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap().claims
}

fn check_request(k: &Keys, t: &str, owner: &str) -> Value {
    let uri = format!("https://mail.example.com/mailboxes/{owner}/messages");
    json!({
        "authorization": format!("DPoP {t}"),
        "dpop": proof(k, t, &uri, None),
        "http": {"method": "GET", "uri": uri},
        "action": "mail:read",
        "resource": {"type": "Mailbox", "id": owner},
        "entities": [{"uid": {"type": "Mailbox", "id": owner}, "attrs": {"owner": {"__entity": {"type": "User", "id": owner}}}, "parents": []}],
    })
}

fn audit_lines(d: &Deployment) -> Vec<Value> {
    std::fs::read_to_string(d.path("audit.jsonl")).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_api_carries_receipts_that_verify_independently_and_bind_the_call() {
    let (d, previous) = deployment("verified");
    let r = start(&d);
    let k = keys();
    let t = token(&k, ASSISTANT);
    let jwks = published_jwks(&r);
    let published: Value = serde_json::from_str(&jwks).unwrap();
    let kids: Vec<&str> = published["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["receipts-current", "receipts-previous"], "the current key first, then the previous one");
    assert!(!jwks.contains("\"d\""), "the JWKS holds public keys only: {jwks}");

    // The content hash `/healthz` shows is the one receipts carry, and it is the configuration's.
    let (status, health) = healthz(&r);
    assert_eq!(status, 200);
    let loaded = agentgate::config::load(&d.path("agentgate.toml")).unwrap();
    let digests = ConfigDigests::of(&loaded.engine).unwrap();
    assert_eq!(health["config_digest"], serde_json::to_value(&digests).unwrap());
    assert_eq!(health["receipts"], json!({"kid": "receipts-current", "sign": "verified"}));

    // `/v1/check`: an allow.
    let request = check_request(&k, &t, "alice");
    let body = body_json(post_json(&r, "/v1/check", &request));
    assert_eq!(body["decision"], "allow", "{body}");
    let receipt = body["receipt"].as_str().unwrap();
    let claims = independently_verified(receipt, &jwks);
    assert_eq!(claims["jti"], body["decision_id"]);
    assert_eq!(claims["decision"], "allow");
    assert_eq!(claims["outcome"], "allowed");
    assert_eq!(claims["policies"], json!(["mail-read-own"]));
    assert_eq!(claims["config"], serde_json::to_value(&digests).unwrap());
    assert_eq!(claims["token"], json!({"iss": ISSUER, "jti": body["token_id"]}));
    assert_eq!(claims["jkt"], json!(k.agent.thumbprint()));
    assert_eq!(claims["user"], "alice");
    assert_eq!(claims["chain"], json!([ASSISTANT]));
    let as_decided = RequestJson::parse(&request.to_string()).unwrap().to_check_request(None);
    assert_eq!(claims["request"], json!(request_digest(&as_decided)));
    let age = agentgate::mint::now().abs_diff(claims["iat"].as_u64().unwrap());
    assert!(age < 60, "iat is the decision time: {claims}");
    for credential in [t.as_str(), request["dpop"].as_str().unwrap()] {
        let payload = String::from_utf8(base64_decode(receipt.split('.').nth(1).unwrap())).unwrap();
        assert!(!payload.contains(credential), "a receipt never carries a credential");
    }

    // AuthZEN: in the response `context`, for an allow and for a policy deny (the token verified).
    let allowed = body_json(post_json(&r, "/access/v1/evaluation", &evaluation(&k, &t, "alice")));
    let claims = independently_verified(allowed["context"]["receipt"].as_str().unwrap(), &jwks);
    assert_eq!((claims["decision"].as_str(), claims["jti"].as_str()), (Some("allow"), allowed["context"]["decision_id"].as_str()));
    let denied = body_json(post_json(&r, "/access/v1/evaluation", &evaluation(&k, &t, "bob")));
    assert_eq!(denied["decision"], false);
    let claims = independently_verified(denied["context"]["receipt"].as_str().unwrap(), &jwks);
    assert_eq!((claims["decision"].as_str(), claims["outcome"].as_str()), (Some("deny"), Some("policy_denied")));
    assert_eq!(claims["token"]["iss"], ISSUER);

    // Forward-auth: `Agentgate-Receipt` for the upstream of an allow …
    let resp = nginx_call(&r, "/mailboxes/alice/messages", &t, &proof(&k, &t, URI, None));
    assert_eq!(resp.status(), 200);
    let forwarded = header(&resp, "agentgate-receipt");
    let claims = independently_verified(&forwarded, &jwks);
    assert_eq!(claims["jti"].as_str(), Some(header(&resp, "x-agentgate-decision-id").as_str()));
    assert_eq!(claims["decision"], "allow");
    // … and none for a caller whose token does not verify (`sign = "verified"`).
    let resp = nginx_call(&r, "/mailboxes/alice/messages", "not-a-token", "not-a-proof");
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "agentgate-receipt"), "");

    // The audit line of each decision carries its receipt; no line carries a private key.
    let audit_path = d.path("audit.jsonl");
    wait_for("four audit lines", std::time::Duration::from_secs(10), || audit_lines(&d).len() >= 5);
    let lines = audit_lines(&d);
    let with_receipt: Vec<&Value> = lines.iter().filter(|l| l.get("receipt").is_some()).collect();
    assert_eq!(with_receipt.len(), 4, "{lines:?}");
    assert!(with_receipt.iter().any(|l| l["receipt"] == body["receipt"] && l["decision_id"] == body["decision_id"]));
    assert!(with_receipt.iter().any(|l| l["receipt"].as_str() == Some(forwarded.as_str())));
    let private_d = loaded_private_d(&d);
    assert!(!std::fs::read_to_string(&audit_path).unwrap().contains(&private_d));
    assert!(!String::from_utf8_lossy(&logs().lock().unwrap()).contains(&private_d));

    // Rotation: a receipt signed with the previous key still verifies against what is published.
    let old = ReceiptSigner::new(&previous.private_jwk().to_string(), &[], SignWhen::All).unwrap();
    let old_receipt = old.sign_claims(&json!({"jti": "before-the-rotation", "decision": "allow"})).unwrap();
    assert_eq!(independently_verified(&old_receipt, &jwks)["jti"], "before-the-rotation");
    assert_eq!(verify::verify(&old_receipt, &jwks).unwrap().kid, "receipts-previous");

    // `agentgate receipt verify`, with the JWKS fetched from the server.
    let request_file = d.path("request.json");
    std::fs::write(&request_file, request.to_string()).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(support::agentgate_bin()).args(["receipt", "verify"]).args(args).output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let jwks_url = r.url("/.well-known/agentgate-receipt-keys");
    let policies = d.path("policies");
    let (code, out, err) = run(&[receipt, "--jwks", &jwks_url, "--request", request_file.to_str().unwrap(), "--policies", policies.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("receipt verified: signed with the key `receipts-current`\n"), "{out}");
    assert!(out.contains("  decision   allow (allowed), decision id "), "{out}");
    assert!(out.contains("  for        alice through spiffe://agents.example/mail-assistant\n"), "{out}");
    assert!(out.contains(&format!("  token      jti {} from {ISSUER}\n", body["token_id"].as_str().unwrap())), "{out}");
    assert!(out.contains(&format!("request {}: matches the receipt\n", request_file.display())), "{out}");
    assert!(out.contains(&format!("policies {}: match the receipt (policies and schema)\n", policies.display())), "{out}");

    // Another request: not the one decided.
    let mut other = request.clone();
    other["resource"]["id"] = json!("bob");
    let other_file = d.path("other.json");
    std::fs::write(&other_file, other.to_string()).unwrap();
    let (code, out, _) = run(&[receipt, "--jwks", &jwks_url, "--request", other_file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, Some(1), "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((report["verified"].as_bool(), report["request_matches"].as_bool()), (Some(true), Some(false)));

    // A policy changed since: the policies differ, the schema does not.
    let edited = d.path("edited");
    std::fs::create_dir(&edited).unwrap();
    for entry in std::fs::read_dir(&policies).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, edited.join(path.file_name().unwrap())).unwrap();
    }
    let mail = edited.join("mail.cedar");
    std::fs::write(&mail, std::fs::read_to_string(&mail).unwrap() + "\n// a comment is a change too\n").unwrap();
    let (code, out, _) = run(&[receipt, "--jwks", &jwks_url, "--policies", edited.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("policies {}: DIFFER: policies not what was in force\n", edited.display())), "{out}");

    // A tampered receipt, from a file: not verified.
    let mut parts: Vec<String> = receipt.split('.').map(str::to_owned).collect();
    let mut claims_json: Value = serde_json::from_slice(&base64_decode(&parts[1])).unwrap();
    claims_json["decision"] = json!("deny");
    parts[1] = base64_encode(claims_json.to_string().as_bytes());
    let tampered_file = d.path("tampered.jws");
    std::fs::write(&tampered_file, parts.join(".")).unwrap();
    let (code, out, _) = run(&[tampered_file.to_str().unwrap(), "--jwks", &jwks_url]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out, "receipt NOT verified: the receipt's signature does not verify under the key `receipts-current`\n");
    // A JWKS without the key: not verified, and it says where the keys are published.
    let stranger = KeyPair::generate("someone-else").unwrap();
    let stranger_jwks = d.path("stranger.jwks.json");
    std::fs::write(&stranger_jwks, agentgate::mint::jwks(&[&stranger]).to_string()).unwrap();
    let (code, out, _) = run(&[receipt, "--jwks", stranger_jwks.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "receipt NOT verified: the JWKS has no key `receipts-current` (receipt keys are published at `/.well-known/agentgate-receipt-keys`)\n");
    // A directory that is not a policy directory is unusable input.
    let (code, _, err) = run(&[receipt, "--jwks", &jwks_url, "--policies", d.path("nowhere").to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn what_is_signed_is_configurable() {
    let k = keys();
    let t = token(&k, ASSISTANT);

    // `allows`: a policy denial gets none.
    let (d, _) = deployment("allows");
    let r = start(&d);
    let denied = body_json(post_json(&r, "/v1/check", &check_request(&k, &t, "bob")));
    assert_eq!(denied["outcome"], "policy_denied");
    assert!(denied.get("receipt").is_none(), "{denied}");
    let allowed = body_json(post_json(&r, "/v1/check", &check_request(&k, &t, "alice")));
    assert!(allowed["receipt"].is_string(), "{allowed}");
    let (_, health) = healthz(&r);
    assert_eq!(health["receipts"]["sign"], "allows");
    drop(r);

    // `all`: even a call with no credentials at all, which binds no token.
    let (d, _) = deployment("all");
    let r = start(&d);
    let jwks = published_jwks(&r);
    let resp = agent()
        .get(&r.url("/forward-auth"))
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/mailboxes/alice/messages")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "mail.example.com")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let claims = independently_verified(&header(&resp, "agentgate-receipt"), &jwks);
    assert_eq!((claims["decision"].as_str(), claims["outcome"].as_str()), (Some("deny"), Some("invalid_token")));
    assert_eq!((claims["token"].clone(), claims["user"].clone(), claims["jkt"].clone()), (Value::Null, Value::Null, Value::Null));
    let metrics = metrics(&r);
    assert_eq!(metric(&metrics, "agentgate_receipts_total{result=\"signed\"}"), 1);
    assert_eq!(metric(&metrics, "agentgate_receipts_total{result=\"failed\"}"), 0);

    // Without `[receipts]`: no receipts, and no keys published.
    let r = start(&Deployment::standard());
    let plain = body_json(post_json(&r, "/v1/check", &check_request(&k, &t, "alice")));
    assert_eq!(plain["decision"], "allow");
    assert!(plain.get("receipt").is_none());
    assert_eq!(agent().get(&r.url("/.well-known/agentgate-receipt-keys")).call().unwrap().status(), 404);
    assert_eq!(healthz(&r).1["receipts"], Value::Null);
}

#[test]
fn unusable_receipt_keys_are_refused_without_quoting_them() {
    let pair = KeyPair::generate("k1").unwrap();
    let private = pair.private_jwk();
    let d_value = private["d"].as_str().unwrap().to_owned();
    let refuse = |key: &str, previous: &[(String, String)], expected: &str| {
        let e = ReceiptSigner::new(key, previous, SignWhen::Verified).unwrap_err();
        assert_eq!(e, expected);
        assert!(!e.contains(&d_value));
    };
    refuse(
        &pair.public_jwk().to_string(),
        &[],
        "the receipt key has no private member `d`: `key` must be a private JWK (`agentgate mint keygen --private-out`)",
    );
    let other = KeyPair::generate("k2").unwrap();
    let mut mismatched = private.clone();
    mismatched["x"] = other.public_jwk()["x"].clone();
    mismatched["y"] = other.public_jwk()["y"].clone();
    refuse(&mismatched.to_string(), &[], "the receipt key's `d` is not the private key of its `x` and `y`");
    let e = ReceiptSigner::new("not json", &[], SignWhen::Verified).unwrap_err();
    assert!(e.starts_with("the receipt key is not valid JSON ("), "{e}");
    let leaked = ("old.jwk".to_owned(), other.private_jwk().to_string());
    refuse(&private.to_string(), &[leaked], "old.jwk: a previous receipt key contains the private key member `d`");
    let same_kid = ("old.jwk".to_owned(), KeyPair::generate("k1").unwrap().public_jwk().to_string());
    refuse(&private.to_string(), &[same_kid], "old.jwk: the key id `k1` is already published; every receipt key needs its own `kid`");
    let no_kid = ("old.jwk".to_owned(), KeyPair::generate("").unwrap().public_jwk().to_string());
    refuse(&private.to_string(), &[no_kid], "old.jwk: a previous receipt key without a `kid`");

    // A key without `kid` is named by its RFC 7638 thumbprint; a JWKS file is accepted as previous keys.
    let unnamed = KeyPair::generate("").unwrap();
    let jwks = ("old.jwks".to_owned(), agentgate::mint::jwks(&[&other]).to_string());
    let signer = ReceiptSigner::new(&unnamed.private_jwk().to_string(), &[jwks], SignWhen::Verified).unwrap();
    assert_eq!(signer.kid(), unnamed.thumbprint());
    assert_eq!(signer.jwks()["keys"].as_array().unwrap().len(), 2);

    // Through the configuration loader: the file is named, the key is not quoted.
    let d = Deployment::new("", "\n[receipts]\nkey = \"receipt.key.jwk\"\n");
    std::fs::write(d.path("receipt.key.jwk"), pair.public_jwk().to_string()).unwrap();
    let e = agentgate::config::load(&d.path("agentgate.toml")).unwrap_err().to_string();
    assert!(
        e.ends_with("receipt.key.jwk: the receipt key has no private member `d`: `key` must be a private JWK (`agentgate mint keygen --private-out`)"),
        "{e}"
    );
    let d = Deployment::new("", "\n[receipts]\nkey = \"receipt.key.jwk\"\nsign = \"sometimes\"\n");
    let e = agentgate::config::load(&d.path("agentgate.toml")).unwrap_err().to_string();
    assert!(e.contains("unknown variant `sometimes`, expected one of `allows`, `verified`, `all`"), "{e}");
}

/// The receipt key's private scalar, as written to the deployment.
fn loaded_private_d(d: &Deployment) -> String {
    let jwk: Value = serde_json::from_str(&std::fs::read_to_string(d.path("receipt.key.jwk")).unwrap()).unwrap();
    jwk["d"].as_str().unwrap().to_owned()
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn reverse_proxy_mode_hands_the_receipt_upstream_and_never_a_callers_own() {
    let k = keys();
    let t = token(&k, ASSISTANT);
    let (upstream, seen) = recording_upstream();
    let call = |r: &Running, owner: &str| {
        agent()
            .get(&r.url(&format!("/mailboxes/{owner}/messages")))
            .header("Host", "mail.example.com")
            .header("Authorization", &format!("DPoP {t}"))
            .header("DPoP", &proof(&k, &t, &format!("https://mail.example.com/mailboxes/{owner}/messages"), None))
            .header("Agentgate-Receipt", "a-receipt-the-caller-made-up")
            .call()
            .unwrap()
    };

    let key = KeyPair::generate("proxy-receipts").unwrap();
    let jwks = agentgate::mint::jwks(&[&key]).to_string();
    let d = Deployment::new(
        "",
        &format!("\n[server]\nexternal_origins = [\"https://mail.example.com\"]\nupstream = \"http://{upstream}\"\n\n[receipts]\nkey = \"receipt.key.jwk\"\n"),
    );
    std::fs::write(d.path("receipt.key.jwk"), key.private_jwk().to_string()).unwrap();
    let r = start(&d);
    assert_eq!(call(&r, "alice").status(), 200);
    let forwarded = seen.lock().unwrap()[0].headers["agentgate-receipt"].clone();
    let receipt = verify::verify(&forwarded, &jwks).unwrap();
    assert_eq!((receipt.claims["decision"].as_str(), receipt.claims["user"].as_str()), (Some("allow"), Some("alice")));
    let resp = call(&r, "bob");
    assert_eq!(resp.status(), 403);
    let receipt = verify::verify(&header(&resp, "agentgate-receipt"), &jwks).unwrap();
    assert_eq!(receipt.claims["outcome"], "policy_denied");
    drop(r);

    // Receipts off: the caller's own `Agentgate-Receipt` never reaches the upstream.
    let d = Deployment::new("", &format!("\n[server]\nexternal_origins = [\"https://mail.example.com\"]\nupstream = \"http://{upstream}\"\n"));
    let r = start(&d);
    assert_eq!(call(&r, "alice").status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers.get("agentgate-receipt"), None);
}

#[test]
fn a_rotated_key_is_picked_up_on_reload_and_the_old_one_stays_published() {
    let k = keys();
    let t = token(&k, ASSISTANT);
    let (d, _) = deployment("verified");
    let r = start(&d);
    let before = body_json(post_json(&r, "/v1/check", &check_request(&k, &t, "alice")));
    let old_receipt = before["receipt"].as_str().unwrap().to_owned();

    // The rotation as docs/receipts.md describes it: a new key, the old public key published.
    let old: Value = serde_json::from_str(&std::fs::read_to_string(d.path("receipt.key.jwk")).unwrap()).unwrap();
    let mut old_public = old.clone();
    old_public.as_object_mut().unwrap().remove("d");
    replace_file(&d.path("old.pub.jwk"), &old_public.to_string());
    let config = std::fs::read_to_string(d.path("agentgate.toml")).unwrap();
    replace_file(
        &d.path("agentgate.toml"),
        &config.replace("previous_keys = [\"previous.pub.jwk\"]", "previous_keys = [\"previous.pub.jwk\", \"old.pub.jwk\"]"),
    );
    let new = KeyPair::generate("receipts-next").unwrap();
    replace_file(&d.path("receipt.key.jwk"), &new.private_jwk().to_string());
    wait_for("the reload", std::time::Duration::from_secs(30), || healthz(&r).1["receipts"]["kid"] == "receipts-next");

    let jwks = published_jwks(&r);
    let published: Value = serde_json::from_str(&jwks).unwrap();
    let kids: Vec<&str> = published["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["receipts-next", "receipts-previous", "receipts-current"]);
    let after = body_json(post_json(&r, "/v1/check", &check_request(&k, &t, "alice")));
    assert_eq!(verify::verify(after["receipt"].as_str().unwrap(), &jwks).unwrap().kid, "receipts-next");
    // The receipt signed before the rotation still verifies against what is published now.
    assert_eq!(independently_verified(&old_receipt, &jwks)["jti"], before["decision_id"]);
}
