//! Tests of the JWS, JWK, EAB and ARI rules, with keys made by aws-lc-rs and signatures
//! built here byte by byte as a client would.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RSA_PKCS1_SHA256,
};
use aws_lc_rs::{hmac, rsa};
use serde_json::{Value, json};

use super::ari::{CertId, RenewalFacts, suggested_window};
use super::eab::Eab;
use super::jwk::{Jwk, dns01_txt_value, key_authorization};
use super::jws::{Jws, JwsKey, KeyRule, MAX_JWS_BYTES};
use super::{AcmeProblem, ProblemKind, b64url};

enum TestKey {
    Ec(EcdsaKeyPair, &'static str, usize),
    Ed(Ed25519KeyPair),
    Rsa(rsa::KeyPair),
}

impl TestKey {
    fn p256() -> Self {
        Self::Ec(
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            "P-256",
            32,
        )
    }
    fn p384() -> Self {
        Self::Ec(
            EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
            "P-384",
            48,
        )
    }

    fn jwk(&self) -> Value {
        match self {
            Self::Ec(k, crv, len) => {
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "crv": crv, "x": b64url(&point[1..1 + len]), "y": b64url(&point[1 + len..])})
            }
            Self::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(k.public_key().as_ref())})
            }
            Self::Rsa(k) => {
                let public = k.public_key();
                json!({"kty": "RSA",
                       "n": b64url(public.modulus().big_endian_without_leading_zero()),
                       "e": b64url(public.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Ec(_, "P-256", _) => "ES256",
            Self::Ec(..) => "ES384",
            Self::Ed(_) => "EdDSA",
            Self::Rsa(_) => "RS256",
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Ec(k, ..) => k.sign(&rng, input).unwrap().as_ref().to_vec(),
            Self::Ed(k) => k.sign(input).as_ref().to_vec(),
            Self::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input, &mut sig).unwrap();
                sig
            }
        }
    }
}

/// A flattened JWS over `header` and `payload` (None: POST-as-GET), signed by `key`.
fn signed(key: &TestKey, header: Value, payload: Option<&Value>) -> Value {
    let protected = b64url(header.to_string().as_bytes());
    let payload = payload.map_or(String::new(), |p| b64url(p.to_string().as_bytes()));
    let signature = key.sign(format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64url(&signature)})
}

const URL: &str = "https://ca.internal/acme/new-order";
const NONCE: &str = "bm9uY2Utb25l";

fn account_header(key: &TestKey) -> Value {
    json!({"alg": key.alg(), "kid": "https://ca.internal/acme/acct/1", "nonce": NONCE, "url": URL})
}

fn parse(body: &Value) -> Result<Jws, AcmeProblem> {
    Jws::parse(body.to_string().as_bytes())
}

#[test]
fn verifies_each_accepted_algorithm_and_returns_the_payload() {
    let keys = [
        TestKey::p256(),
        TestKey::p384(),
        TestKey::Ed(Ed25519KeyPair::generate().unwrap()),
        TestKey::Rsa(rsa::KeyPair::generate(rsa::KeySize::Rsa2048).unwrap()),
    ];
    for key in &keys {
        let payload = json!({"identifiers": [{"type": "dns", "value": "a.internal"}]});
        let header = json!({"alg": key.alg(), "jwk": key.jwk(), "nonce": NONCE, "url": URL});
        let jws = parse(&signed(key, header, Some(&payload))).unwrap();
        jws.check_url(URL).unwrap();
        jws.check_key_rule(KeyRule::Jwk).unwrap();
        assert_eq!(jws.nonce().unwrap(), NONCE);
        let JwsKey::Jwk(jwk) = &jws.key else {
            panic!("expected a jwk")
        };
        assert_eq!(jws.verify(jwk).unwrap(), Some(payload), "{}", key.alg());
    }
}

#[test]
fn post_as_get_has_no_payload() {
    let key = TestKey::p256();
    let jws = parse(&signed(&key, account_header(&key), None)).unwrap();
    let jwk = Jwk::from_json(&key.jwk()).unwrap();
    assert_eq!(jws.verify(&jwk).unwrap(), None);
}

#[test]
fn refuses_alg_none_and_mac_algorithms_with_bad_signature_algorithm() {
    let key = TestKey::p256();
    for alg in ["none", "HS256", "HS512", "ES512", "PS256"] {
        let mut header = account_header(&key);
        header["alg"] = json!(alg);
        let err = parse(&signed(&key, header, Some(&json!({})))).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadSignatureAlgorithm, "{alg}");
    }
}

#[test]
fn refuses_both_kid_and_jwk_and_neither() {
    let key = TestKey::p256();
    let mut both = account_header(&key);
    both["jwk"] = key.jwk();
    let err = parse(&signed(&key, both, None)).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Malformed);
    assert!(err.detail.contains("both"), "{}", err.detail);

    let neither = json!({"alg": "ES256", "nonce": NONCE, "url": URL});
    assert_eq!(
        parse(&signed(&key, neither, None)).unwrap_err().kind,
        ProblemKind::Malformed
    );
}

#[test]
fn refuses_a_url_other_than_the_request_url_as_unauthorized() {
    let key = TestKey::p256();
    let jws = parse(&signed(&key, account_header(&key), None)).unwrap();
    let err = jws
        .check_url("https://ca.internal/acme/new-account")
        .unwrap_err();
    assert_eq!(err.kind, ProblemKind::Unauthorized);
}

#[test]
fn a_missing_nonce_is_bad_nonce() {
    let key = TestKey::p256();
    let header = json!({"alg": "ES256", "kid": "https://ca.internal/acme/acct/1", "url": URL});
    let jws = parse(&signed(&key, header, None)).unwrap();
    assert!(!jws.has_nonce());
    assert_eq!(jws.nonce().unwrap_err().kind, ProblemKind::BadNonce);
}

#[test]
fn refuses_an_oversized_body_before_parsing_it() {
    let body = vec![b' '; MAX_JWS_BYTES + 1];
    let err = Jws::parse(&body).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Malformed);
    assert!(err.detail.contains("exceeds"), "{}", err.detail);
}

#[test]
fn refuses_unprotected_headers_and_general_serialization() {
    let key = TestKey::p256();
    let mut body = signed(&key, account_header(&key), None);
    body["header"] = json!({"kid": "x"});
    assert_eq!(parse(&body).unwrap_err().kind, ProblemKind::Malformed);
    let general = json!({"payload": "", "signatures": []});
    assert_eq!(parse(&general).unwrap_err().kind, ProblemKind::Malformed);
}

#[test]
fn a_tampered_payload_or_another_key_does_not_verify() {
    let key = TestKey::p256();
    let mut body = signed(&key, account_header(&key), Some(&json!({"a": 1})));
    let jwk = Jwk::from_json(&key.jwk()).unwrap();
    let other = Jwk::from_json(&TestKey::p256().jwk()).unwrap();
    let jws = parse(&body).unwrap();
    assert_eq!(
        jws.verify(&other).unwrap_err().kind,
        ProblemKind::Unauthorized
    );
    body["payload"] = json!(b64url(br#"{"a":2}"#));
    let jws = parse(&body).unwrap();
    assert_eq!(
        jws.verify(&jwk).unwrap_err().kind,
        ProblemKind::Unauthorized
    );
}

#[test]
fn an_alg_that_does_not_fit_the_key_is_bad_signature_algorithm() {
    let key = TestKey::p384();
    let mut header = account_header(&key);
    header["alg"] = json!("ES256");
    let jws = parse(&signed(&key, header, None)).unwrap();
    let jwk = Jwk::from_json(&key.jwk()).unwrap();
    assert_eq!(
        jws.verify(&jwk).unwrap_err().kind,
        ProblemKind::BadSignatureAlgorithm
    );
}

#[test]
fn refuses_private_short_and_unknown_keys_as_bad_public_key() {
    let mut private = TestKey::p256().jwk();
    private["d"] = json!("AAAA");
    let short_ec =
        json!({"kty": "EC", "crv": "P-256", "x": b64url(&[1; 31]), "y": b64url(&[1; 32])});
    let small_rsa = json!({"kty": "RSA", "n": b64url(&[0xc1; 128]), "e": "AQAB"});
    let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"});
    let oct = json!({"kty": "oct", "k": "AAAA"});
    for jwk in [private, short_ec, small_rsa, p521, oct] {
        assert_eq!(
            Jwk::from_json(&jwk).unwrap_err().kind,
            ProblemKind::BadPublicKey,
            "{jwk}"
        );
    }
}

#[test]
fn thumbprint_matches_rfc7638_example() {
    // RFC 7638 3.1: the example RSA key and its SHA-256 thumbprint.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let jwk = Jwk::from_json(&jwk).unwrap();
    assert_eq!(
        jwk.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // RFC 8555 8.4: the dns-01 TXT value is the digest of the key authorization.
    let ka = key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", &jwk);
    assert_eq!(
        ka,
        "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    assert_eq!(dns01_txt_value(&ka).len(), 43);
}

fn eab_binding(hmac_key: &[u8], kid: &str, url: &str, jwk: &Value, alg: &str) -> Value {
    let protected = b64url(
        json!({"alg": alg, "kid": kid, "url": url})
            .to_string()
            .as_bytes(),
    );
    let payload = b64url(jwk.to_string().as_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA256, hmac_key);
    let tag = hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64url(tag.as_ref())})
}

#[test]
fn eab_verifies_only_with_its_key_url_and_account_key() {
    let account = TestKey::p256();
    let jwk = Jwk::from_json(&account.jwk()).unwrap();
    let new_account = "https://ca.internal/acme/new-account";
    let hmac_key = [7u8; 32];
    let binding = eab_binding(&hmac_key, "team-a", new_account, &account.jwk(), "HS256");
    let eab = Eab::from_json(&binding).unwrap();
    assert_eq!(eab.key_id, "team-a");
    eab.verify(&hmac_key, &jwk, new_account).unwrap();

    let wrong_key = eab.verify(&[8u8; 32], &jwk, new_account).unwrap_err();
    assert_eq!(wrong_key.kind, ProblemKind::Unauthorized);
    let other_url = eab.verify(&hmac_key, &jwk, URL).unwrap_err();
    assert_eq!(other_url.kind, ProblemKind::Unauthorized);
    let other_account = Jwk::from_json(&TestKey::p256().jwk()).unwrap();
    let err = eab
        .verify(&hmac_key, &other_account, new_account)
        .unwrap_err();
    assert_eq!(err.kind, ProblemKind::Unauthorized);
}

#[test]
fn eab_refuses_asymmetric_algorithms_and_nonces() {
    let account = TestKey::p256();
    let es = eab_binding(&[1; 32], "k", URL, &account.jwk(), "ES256");
    assert_eq!(
        Eab::from_json(&es).unwrap_err().kind,
        ProblemKind::Malformed
    );
    let protected = b64url(
        json!({"alg": "HS256", "kid": "k", "url": URL, "nonce": NONCE})
            .to_string()
            .as_bytes(),
    );
    let with_nonce = json!({"protected": protected, "payload": "", "signature": ""});
    assert_eq!(
        Eab::from_json(&with_nonce).unwrap_err().kind,
        ProblemKind::Malformed
    );
}

#[test]
fn ari_cert_id_matches_rfc9773_example() {
    // RFC 9773 4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
    // serial 00:87:65:43:21.
    let id = CertId {
        key_identifier: hex::decode("69885b6b87464041e1b37b847ba0ae2cde01c8d4").unwrap(),
        serial: hex::decode("0087654321").unwrap(),
    };
    assert_eq!(id.to_text(), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    assert_eq!(
        CertId::parse("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").unwrap(),
        id
    );
    for bad in [
        "aYhba4dGQEHhs3uEe6CuLN4ByNQ",
        ".AIdlQyE",
        "a+b.c",
        "aYhb.AIdlQyE=",
    ] {
        assert_eq!(
            CertId::parse(bad).unwrap_err().kind,
            ProblemKind::Malformed,
            "{bad}"
        );
    }
}

#[test]
fn ari_window_is_late_in_validity_and_in_the_past_when_revoked() {
    use std::time::{Duration, UNIX_EPOCH};
    let day = Duration::from_secs(86_400);
    let not_before = UNIX_EPOCH + day * 20_000;
    let facts = RenewalFacts {
        not_before,
        not_after: not_before + day * 90,
        renew_now: false,
    };
    let now = not_before + day;
    let window = suggested_window(facts, now);
    assert_eq!(window.start, not_before + day * 70);
    assert_eq!(window.end, not_before + day * 80);
    let revoked = suggested_window(
        RenewalFacts {
            renew_now: true,
            ..facts
        },
        now,
    );
    assert!(revoked.start < revoked.end && revoked.end < now);
}

fn rollover(
    old: &TestKey,
    new: &TestKey,
    account: &str,
    old_jwk: Value,
    inner_url: &str,
) -> (Jws, Value) {
    const KEY_CHANGE: &str = "https://ca.internal/acme/key-change";
    let inner = signed(
        new,
        json!({"alg": new.alg(), "jwk": new.jwk(), "url": inner_url}),
        Some(&json!({"account": account, "oldKey": old_jwk})),
    );
    let header = json!({"alg": old.alg(), "kid": ACCOUNT, "nonce": NONCE, "url": KEY_CHANGE});
    let outer = parse(&signed(old, header, Some(&inner))).unwrap();
    let payload = outer
        .verify(&Jwk::from_json(&old.jwk()).unwrap())
        .unwrap()
        .unwrap();
    (outer, payload)
}

const ACCOUNT: &str = "https://ca.internal/acme/acct/1";

#[test]
fn key_change_returns_the_new_key_only_when_every_binding_holds() {
    use super::keychange::check_key_change;
    const KEY_CHANGE: &str = "https://ca.internal/acme/key-change";
    let (old, new) = (
        TestKey::p256(),
        TestKey::Ed(Ed25519KeyPair::generate().unwrap()),
    );
    let current = Jwk::from_json(&old.jwk()).unwrap();

    let (outer, payload) = rollover(&old, &new, ACCOUNT, old.jwk(), KEY_CHANGE);
    let got = check_key_change(&outer, &payload, ACCOUNT, &current).unwrap();
    assert_eq!(got, Jwk::from_json(&new.jwk()).unwrap());

    let (outer, payload) = rollover(
        &old,
        &new,
        "https://ca.internal/acme/acct/2",
        old.jwk(),
        KEY_CHANGE,
    );
    let err = check_key_change(&outer, &payload, ACCOUNT, &current).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Unauthorized);

    let (outer, payload) = rollover(&old, &new, ACCOUNT, TestKey::p256().jwk(), KEY_CHANGE);
    let err = check_key_change(&outer, &payload, ACCOUNT, &current).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Unauthorized);

    let (outer, payload) = rollover(&old, &new, ACCOUNT, old.jwk(), URL);
    let err = check_key_change(&outer, &payload, ACCOUNT, &current).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Malformed);

    let (outer, payload) = rollover(&old, &old, ACCOUNT, old.jwk(), KEY_CHANGE);
    let err = check_key_change(&outer, &payload, ACCOUNT, &current).unwrap_err();
    assert_eq!(err.kind, ProblemKind::BadPublicKey);
}
