//! Published test vectors: RFC 7515 A.3 (ES256 JWS), RFC 9449 (DPoP proof, `ath`, `cnf.jkt`),
//! RFC 7638 (thumbprints), RFC 6979 A.2.5 (P-256 signatures) and RFC 7520 §4.3 (ES512, refused).

// PANIC SAFETY: test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentgate_engine::Outcome;
use agentgate_engine::dpop::{self, ProofCheck};
use agentgate_engine::jose::es256::{Es256Signature, PublicKey, RustCryptoVerifier, SignatureVerifier};
use agentgate_engine::jose::json::parse_object;
use agentgate_engine::jose::jwk::EcPublicJwk;
use agentgate_engine::jose::jws::{self, JwsError};
use agentgate_engine::settings::{DpopSettings, Settings};

const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const A3_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

/// RFC 9449 Figure 13 (proof for a resource request) and the access token of Figure 14.
const FIG13_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
const FIG14_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
/// RFC 9449 Figure 4 (proof for the token endpoint).
const FIG4_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
/// RFC 9449 Figure 9: `cnf.jkt` of the proof key.
const FIG9_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn jwk(text: &str) -> EcPublicJwk {
    EcPublicJwk::from_object(&parse_object(text.as_bytes()).unwrap()).unwrap()
}

fn settings() -> Settings {
    Settings {
        audiences: vec!["https://resource.example.org".into()],
        limits: Default::default(),
        dpop: DpopSettings::default(),
        identity: Default::default(),
        policy_index: true,
    }
}

#[test]
fn rfc7515_a3_es256_verifies_and_tampering_fails() {
    let key = jwk(A3_JWK);
    let verified = jws::parse(A3_JWS, 8192).unwrap().verify(key.public_key(), &RustCryptoVerifier::new()).unwrap();
    assert_eq!(verified.claims["iss"], "joe");
    assert_eq!(verified.claims["http://example.com/is_root"], true);
    assert_eq!(key.thumbprint(), "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");

    let (input, _) = A3_JWS.rsplit_once('.').unwrap();
    let mut sig = agentgate_engine::jose::base64url::decode(A3_JWS.rsplit_once('.').unwrap().1).unwrap();
    sig[10] ^= 1;
    let tampered = format!("{input}.{}", agentgate_engine::jose::base64url::encode(&sig));
    assert!(jws::parse(&tampered, 8192).unwrap().verify(key.public_key(), &RustCryptoVerifier::new()).is_err());
}

#[test]
fn rfc9449_figure_13_proof_passes_every_check() {
    let settings = settings();
    let ath = dpop::ath(FIG14_TOKEN);
    let check = ProofCheck {
        settings: &settings,
        now: 1_562_262_618,
        method: "GET",
        uri: "https://resource.example.org/protectedresource",
        ath: &ath,
        bound_key: FIG9_JKT,
        nonces: None,
    };
    let proof = dpop::verify(FIG13_PROOF, check, &RustCryptoVerifier::new()).unwrap();
    assert_eq!(proof.thumbprint, FIG9_JKT);
    assert_eq!(proof.jti, "e1j3V_bKic8-LAEB");

    // The same proof for another method, URI, token or key is refused with the precise outcome.
    let other_method = dpop::verify(FIG13_PROOF, ProofCheck { method: "POST", ..check }, &RustCryptoVerifier::new()).unwrap_err();
    assert_eq!(other_method.outcome, Outcome::InvalidDpopProof);
    let other_uri = dpop::verify(FIG13_PROOF, ProofCheck { uri: "https://resource.example.org/other", ..check }, &RustCryptoVerifier::new()).unwrap_err();
    assert_eq!(other_uri.outcome, Outcome::InvalidDpopProof);
    let other_ath = dpop::ath("another");
    let other_token = dpop::verify(FIG13_PROOF, ProofCheck { ath: &other_ath, ..check }, &RustCryptoVerifier::new()).unwrap_err();
    assert_eq!(other_token.reason, "DPoP proof `ath` does not match the access token");
    let other_key =
        dpop::verify(FIG13_PROOF, ProofCheck { bound_key: "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U", ..check }, &RustCryptoVerifier::new()).unwrap_err();
    assert_eq!(other_key.outcome, Outcome::InvalidToken);
    let later = dpop::verify(FIG13_PROOF, ProofCheck { now: 1_562_262_618 + 61, ..check }, &RustCryptoVerifier::new()).unwrap_err();
    assert!(later.reason.contains("too old"), "{}", later.reason);
}

#[test]
fn rfc9449_figure_4_signature_and_figure_9_thumbprint() {
    let parsed = jws::parse(FIG4_PROOF, 8192).unwrap();
    let embedded = jwk(&serde_json::to_string(&parsed.header()["jwk"]).unwrap());
    assert_eq!(embedded.thumbprint(), FIG9_JKT);
    let verified = parsed.verify(embedded.public_key(), &RustCryptoVerifier::new()).unwrap();
    assert_eq!(verified.claims["htu"], "https://server.example.com/token");
}

#[test]
fn rfc9449_ath_of_figure_14_token() {
    assert_eq!(dpop::ath(FIG14_TOKEN), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn rfc6979_a2_5_p256_signatures_verify() {
    let x: [u8; 32] = hex("60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6").try_into().unwrap();
    let y: [u8; 32] = hex("7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299").try_into().unwrap();
    let key = PublicKey::from_coordinates(&x, &y).unwrap();
    let cases = [
        ("sample", "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716", "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"),
        ("test", "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367", "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"),
    ];
    for (msg, r, s) in cases {
        let sig = Es256Signature::from_bytes(&[hex(r), hex(s)].concat()).unwrap();
        assert!(RustCryptoVerifier::new().verify(&key, msg.as_bytes(), &sig), "{msg}");
        assert!(agentgate::native_crypto::AwsLcVerifier.verify(&key, msg.as_bytes(), &sig), "aws-lc {msg}");
        assert!(!RustCryptoVerifier::new().verify(&key, b"other", &sig));
    }
}

#[test]
fn rfc7520_4_3_es512_is_refused_by_alg() {
    // RFC 7520 §4.3 signs with ES512 (P-521): valid JOSE, but not on this engine's allow-list.
    let header = agentgate_engine::jose::base64url::encode(br#"{"alg":"ES512","kid":"bilbo.baggins@hobbiton.example"}"#);
    let err = jws::parse(&format!("{header}.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNz.AE_R_YZCChjn"), 8192).unwrap_err();
    assert_eq!(err, JwsError::Algorithm("`ES512`".into()));
}
