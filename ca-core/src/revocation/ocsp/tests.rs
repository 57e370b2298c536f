use super::*;
use crate::ceremony::{OcspResponderRequest, issue_ocsp_responder};
use crate::issuer::KeyedCert;
use crate::keystore::{KeyRef, KeySpec};
use crate::revocation::crl::tests::{t0, test_ca};
use crate::store::{SerialStatus, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct FakeStatus {
    rows: HashMap<(String, String), SerialStatus>,
    down: Mutex<bool>,
    ca_revoked: Mutex<Vec<crate::store::CaRevocation>>,
}

impl StatusReader for FakeStatus {
    fn revocation_status(
        &self,
        issuer: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<SerialStatus>, StoreError> {
        if *self.down.lock().unwrap() {
            return Err(StoreError::Database("connection refused".into()));
        }
        Ok(self
            .rows
            .get(&(issuer.to_string(), serial.to_string()))
            .cloned())
    }

    fn ca_revocation(
        &self,
        parent: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<crate::store::CaRevocation>, StoreError> {
        Ok(self
            .ca_revoked
            .lock()
            .unwrap()
            .iter()
            .find(|r| &r.parent == parent && &r.serial == serial)
            .cloned())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    issuer: Issuer,
    responder: OcspResponder,
    status: Arc<FakeStatus>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (cert, signer, keys) = test_ca(dir.path(), "OCSP Test CA");
    let id = IssuerId::new("test-ca").unwrap();
    let ocsp_key = KeyRef::new("ocsp").unwrap();
    let ocsp_spki = keys.generate(&ocsp_key, KeySpec::EcP384).unwrap();
    let ocsp_cert = issue_ocsp_responder(
        &OcspResponderRequest {
            issuer_name: cert.cert.tbs_certificate().subject(),
            issuer_not_after: cert.not_after(),
            issuer_id: &id,
            public_key: &ocsp_spki,
            validity_days: 30,
        },
        signer.as_ref(),
        t0(),
    )
    .unwrap();
    let issuer = Issuer {
        id: id.clone(),
        parent: None,
        ca: KeyedCert { cert, signer },
        ocsp: Some(KeyedCert {
            cert: ocsp_cert,
            signer: keys.signer(&ocsp_key).unwrap(),
        }),
    };
    let mut status = FakeStatus::default();
    let far = t0() + Duration::from_secs(365 * 86_400);
    status.rows.insert(
        ("test-ca".into(), "01".into()),
        SerialStatus {
            status: CertStatus::Valid,
            not_after: far,
            revoked: None,
        },
    );
    status.rows.insert(
        ("test-ca".into(), "02".into()),
        SerialStatus {
            status: CertStatus::Revoked,
            not_after: far,
            revoked: Some((t0(), Reason::KeyCompromise)),
        },
    );
    let status = Arc::new(status);
    let responder = OcspResponder::new(
        std::slice::from_ref(&issuer),
        status.clone(),
        DEFAULT_VALIDITY,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        issuer,
        responder,
        status,
    }
}

fn cert_id(issuer: &Issuer, alg: HashAlg, serial: &[u8]) -> CertId {
    let oid = match alg {
        HashAlg::Sha1 => ID_SHA1,
        HashAlg::Sha256 => ID_SHA256,
        HashAlg::Sha384 => ID_SHA384,
        HashAlg::Sha512 => ID_SHA512,
    };
    let name = issuer
        .ca
        .cert
        .cert
        .tbs_certificate()
        .subject()
        .to_der()
        .unwrap();
    let key = issuer.ca.signer.public_key().subject_public_key().unwrap();
    CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid,
            parameters: Some(Any::from(der::asn1::Null)),
        },
        issuer_name_hash: OctetString::new(alg.digest(&name)).unwrap(),
        issuer_key_hash: OctetString::new(alg.digest(&key)).unwrap(),
        serial_number: Int::new(serial).unwrap(),
    }
}

fn request(ids: Vec<CertId>, nonce: Option<&[u8]>, version: Option<u8>) -> Vec<u8> {
    let request_extensions = nonce.map(|n| {
        vec![Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(OctetString::new(n).unwrap().to_der().unwrap()).unwrap(),
        }]
    });
    OcspRequest {
        tbs_request: TbsRequest {
            version,
            requestor_name: None,
            request_list: ids
                .into_iter()
                .map(|req_cert| Request {
                    req_cert,
                    single_request_extensions: None,
                })
                .collect(),
            request_extensions,
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap()
}

/// Parses a successful response far enough to check it: the statuses' tags, the
/// signature, the echoed nonce.
fn statuses(f: &Fixture, der: &[u8]) -> (Vec<u8>, bool) {
    let resp = Any::from_der(der).unwrap();
    let mut reader = der::SliceReader::new(resp.value()).unwrap();
    let status = der::asn1::AnyRef::decode(&mut reader).unwrap();
    assert_eq!(status.value(), [0]);
    let bytes: der::asn1::ContextSpecific<Any> =
        der::asn1::ContextSpecific::decode(&mut reader).unwrap();
    let mut r = der::SliceReader::new(bytes.value.value()).unwrap();
    let oid = der::asn1::ObjectIdentifier::decode(&mut r).unwrap();
    assert_eq!(oid, ID_PKIX_OCSP_BASIC);
    let basic = OctetString::decode(&mut r).unwrap();
    let basic = Any::from_der(basic.as_bytes()).unwrap();
    let mut r = der::SliceReader::new(basic.value()).unwrap();
    let data = Any::decode(&mut r).unwrap();
    let _alg = AlgorithmIdentifierOwned::decode(&mut r).unwrap();
    let sig = der::asn1::BitString::decode(&mut r).unwrap();
    let data_der = data.to_der().unwrap();
    let responder = f.issuer.ocsp.as_ref().unwrap();
    keystore::verify(
        responder.signer.algorithm(),
        responder.signer.public_key(),
        &data_der,
        sig.as_bytes().unwrap(),
    )
    .unwrap();
    // ResponseData: responderID, producedAt, responses, [1] extensions.
    let mut r = der::SliceReader::new(data.value()).unwrap();
    let _responder_id = Any::decode(&mut r).unwrap();
    let _produced = Any::decode(&mut r).unwrap();
    let responses = Any::decode(&mut r).unwrap();
    let has_ext = !der::Reader::is_finished(&r);
    let mut tags = Vec::new();
    let mut rr = der::SliceReader::new(responses.value()).unwrap();
    while !der::Reader::is_finished(&rr) {
        let single = Any::decode(&mut rr).unwrap();
        let mut s = der::SliceReader::new(single.value()).unwrap();
        let _id = CertId::decode(&mut s).unwrap();
        let status = Any::decode(&mut s).unwrap();
        tags.push(status.to_der().unwrap()[0]);
    }
    (tags, has_ext)
}

fn status_code(der: &[u8]) -> u8 {
    assert!(der.len() >= 5, "{der:02x?}");
    der[4]
}

#[test]
fn good_revoked_and_unknown_with_sha1_and_sha256_cert_ids_in_one_request() {
    let f = fixture();
    let req = request(
        vec![
            cert_id(&f.issuer, HashAlg::Sha1, &[1]),
            cert_id(&f.issuer, HashAlg::Sha256, &[2]),
            cert_id(&f.issuer, HashAlg::Sha256, &[3]),
            cert_id(&f.issuer, HashAlg::Sha384, &[0x00, 0x80]),
        ],
        None,
        None,
    );
    let answer = f.responder.answer(&req, t0());
    assert_eq!(
        answer.status,
        ResponseStatus::Successful,
        "{:?}",
        answer.problem
    );
    let (tags, ext) = statuses(&f, &answer.der);
    assert_eq!(tags, [0x80, 0xa1, 0x82, 0x82]);
    assert!(!ext);
    let (this, next) = answer.validity.unwrap();
    assert_eq!(next, this + DEFAULT_VALIDITY);
}

#[test]
fn a_nonce_is_echoed_and_an_over_long_one_refused() {
    let f = fixture();
    let id = || vec![cert_id(&f.issuer, HashAlg::Sha1, &[1])];
    let answer = f
        .responder
        .answer(&request(id(), Some(&[7; 32]), None), t0());
    assert_eq!(answer.status, ResponseStatus::Successful);
    assert!(answer.nonce);
    let (_, ext) = statuses(&f, &answer.der);
    assert!(ext);
    assert!(
        answer.der.windows(32).any(|w| w == [7; 32]),
        "nonce not echoed"
    );
    let answer = f
        .responder
        .answer(&request(id(), Some(&[7; 33]), None), t0());
    assert_eq!(answer.status, ResponseStatus::MalformedRequest);
    assert_eq!(answer.der, [0x30, 0x03, 0x0a, 0x01, 0x01]);
}

#[test]
fn presigned_responses_are_found_by_the_cache_key_of_matching_requests() {
    let f = fixture();
    let id = f.issuer.id.clone();
    let signed = f
        .responder
        .presign(&id, &Serial::parse("02").unwrap(), t0())
        .unwrap();
    assert_eq!(signed.len(), 2);
    for (alg, (key, answer)) in [HashAlg::Sha1, HashAlg::Sha256].into_iter().zip(&signed) {
        let req = request(vec![cert_id(&f.issuer, alg, &[2])], None, None);
        assert_eq!(f.responder.cache_key(&req).as_ref(), Some(key));
        assert_eq!(answer.status, ResponseStatus::Successful);
        let (tags, _) = statuses(&f, &answer.der);
        assert_eq!(tags, [0xa1]);
    }
    // A top-bit serial gets DER's leading zero, as clients encode it.
    let high = f
        .responder
        .presign(&id, &Serial::parse("80").unwrap(), t0())
        .unwrap();
    let req = request(
        vec![cert_id(&f.issuer, HashAlg::Sha1, &[0, 0x80])],
        None,
        None,
    );
    assert_eq!(f.responder.cache_key(&req).as_ref(), Some(&high[0].0));
    // Nonces, several CertIDs and unknown issuers are answered live.
    let nonce = request(
        vec![cert_id(&f.issuer, HashAlg::Sha1, &[2])],
        Some(&[1; 16]),
        None,
    );
    assert_eq!(f.responder.cache_key(&nonce), None);
    let two = request(
        vec![
            cert_id(&f.issuer, HashAlg::Sha1, &[1]),
            cert_id(&f.issuer, HashAlg::Sha1, &[2]),
        ],
        None,
        None,
    );
    assert_eq!(f.responder.cache_key(&two), None);
    assert_eq!(f.responder.cache_key(b"junk"), None);
    let other = IssuerId::new("other").unwrap();
    assert_eq!(
        f.responder
            .presign(&other, &Serial::parse("01").unwrap(), t0())
            .unwrap_err()
            .0,
        ResponseStatus::Unauthorized
    );
}

#[test]
fn responses_never_outlive_the_responder_certificate() {
    let f = fixture();
    let req = request(vec![cert_id(&f.issuer, HashAlg::Sha1, &[1])], None, None);
    let expires = f.issuer.ocsp.as_ref().unwrap().cert.not_after();
    let answer = f
        .responder
        .answer(&req, expires - Duration::from_secs(86_400));
    assert_eq!(answer.status, ResponseStatus::Successful);
    assert_eq!(answer.validity.unwrap().1, expires);
    let answer = f.responder.answer(&req, expires + Duration::from_secs(1));
    assert_eq!(answer.status, ResponseStatus::InternalError);
    assert!(answer.problem.unwrap().contains("ocsp renew"));
}

#[test]
fn an_explicit_v1_version_is_accepted_and_others_refused() {
    let f = fixture();
    let id = || vec![cert_id(&f.issuer, HashAlg::Sha1, &[1])];
    let answer = f.responder.answer(&request(id(), None, Some(0)), t0());
    assert_eq!(answer.status, ResponseStatus::Successful);
    let answer = f.responder.answer(&request(id(), None, Some(3)), t0());
    assert_eq!(answer.status, ResponseStatus::MalformedRequest);
}

#[test]
fn unknown_issuers_are_unauthorized_and_a_database_failure_is_try_later() {
    let f = fixture();
    let mut id = cert_id(&f.issuer, HashAlg::Sha1, &[1]);
    id.issuer_key_hash = OctetString::new(vec![0; 20]).unwrap();
    let der = f.responder.respond(&request(vec![id], None, None), t0());
    assert_eq!(status_code(&der), 6);
    // An unsupported hash cannot match an issuer.
    let mut id = cert_id(&f.issuer, HashAlg::Sha1, &[1]);
    id.hash_algorithm.oid = der::asn1::ObjectIdentifier::new_unwrap("1.2.3.4");
    let der = f.responder.respond(&request(vec![id], None, None), t0());
    assert_eq!(status_code(&der), 6);

    *f.status.down.lock().unwrap() = true;
    let req = request(vec![cert_id(&f.issuer, HashAlg::Sha1, &[1])], None, None);
    assert_eq!(status_code(&f.responder.respond(&req, t0())), 3);
}

#[test]
fn malformed_input_of_any_shape_gets_malformed_request_never_a_panic() {
    let f = fixture();
    let good = request(
        vec![
            cert_id(&f.issuer, HashAlg::Sha1, &[1]),
            cert_id(&f.issuer, HashAlg::Sha256, &[2]),
        ],
        Some(&[9; 16]),
        None,
    );
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x30],
        vec![0x30, 0x00],
        vec![0x30, 0x80, 0x00, 0x00],
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        vec![0xff; 64],
        b"GET /ocsp HTTP/1.1".to_vec(),
        request(vec![], None, None),
        vec![0; MAX_REQUEST_LEN + 1],
    ];
    let mut trailing = good.clone();
    trailing.push(0);
    inputs.push(trailing);
    for len in 0..good.len() {
        inputs.push(good[..len].to_vec());
    }
    for input in &inputs {
        let answer = f.responder.answer(input, t0());
        assert_eq!(
            answer.status,
            ResponseStatus::MalformedRequest,
            "{input:02x?}"
        );
    }
    // Every single-bit flip: any answer but never a panic; a successful one verifies.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..good.len() * 8 {
        let mut flipped = good.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        let _ = f.responder.respond(&flipped, t0());
        // And some random bytes, from a fixed xorshift sequence.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let noise: Vec<u8> = (0..(seed % 200) as usize)
            .map(|j| (seed >> (j % 56)) as u8)
            .collect();
        let _ = f.responder.respond(&noise, t0());
    }
}

#[test]
fn get_paths_decode_in_every_spelling_clients_use() {
    let der: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    use base64ct::Encoding;
    let standard = base64ct::Base64::encode_string(&der);
    let url = base64ct::Base64UrlUnpadded::encode_string(&der);
    let percent = standard
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let lower = percent.replace("%2B", "%2b");
    let spaced = standard.replace('+', " ");
    for path in [&standard, &url, &percent, &lower, &spaced] {
        assert_eq!(decode_get_path(path).unwrap(), der, "{path}");
    }
    for bad in ["", "%", "%zz", "not base64!", "===="] {
        assert!(decode_get_path(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_configured_child_ca_is_good_until_ca_revocations_lists_it() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (child_cert, child_signer, _keys) = test_ca(dir.path(), "Child CA");
    let child = Issuer {
        id: IssuerId::new("child-ca").unwrap(),
        parent: Some(f.issuer.id.clone()),
        ca: KeyedCert {
            cert: child_cert.clone(),
            signer: child_signer,
        },
        ocsp: None,
    };
    let responder = OcspResponder::new(
        &[f.issuer.clone(), child],
        f.status.clone(),
        DEFAULT_VALIDITY,
    )
    .unwrap();
    let serial_bytes = child_cert.cert.tbs_certificate().serial_number().as_bytes();
    let serial = Serial::from_bytes(serial_bytes);
    assert_eq!(
        responder.ca_serials(),
        [(f.issuer.id.clone(), serial.clone())]
    );
    let ask = |responder: &OcspResponder| {
        let req = request(
            vec![
                cert_id(&f.issuer, HashAlg::Sha1, serial_bytes),
                cert_id(&f.issuer, HashAlg::Sha1, &[3]),
            ],
            None,
            None,
        );
        let answer = responder.answer(&req, t0());
        assert_eq!(answer.status, ResponseStatus::Successful);
        statuses(&f, &answer.der).0
    };
    assert_eq!(ask(&responder), [0x80, 0x82]);
    // The responder without the child configured does not know its certificate.
    assert_eq!(ask(&f.responder), [0x82, 0x82]);
    f.status
        .ca_revoked
        .lock()
        .unwrap()
        .push(crate::store::CaRevocation {
            ca: IssuerId::new("child-ca").unwrap(),
            parent: f.issuer.id.clone(),
            serial,
            not_after: child_cert.not_after(),
            reason: Reason::CaCompromise,
            revoked_at: t0(),
            revoked_by: "cli:test".into(),
        });
    assert_eq!(ask(&responder), [0xa1, 0x82]);
}
