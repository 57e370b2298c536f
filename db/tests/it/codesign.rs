//! Code-signing keys and signatures: ownership bindings, certificate resolution, limits
//! checked inside the recording transaction, and the signing history.

use std::time::{Duration, SystemTime};

use ca_core::audit::Action;
use ca_core::cms::DigestAlg;
use ca_core::codesign::{CodesignStore, KeyBinding, NewCodesignKey, NewSignature, SigningWindow};
use ca_core::keystore::{KeyRef, KeySpec, SpkiDer};
use ca_core::store::{AuditLog, CertStatus, IssuanceLedger, StoreError};

use crate::support::*;

on_both_backends!(
    a_key_is_recorded_once_with_its_owner_and_audited,
    the_certificate_is_found_through_the_request_once_issued,
    a_key_bound_to_a_certificate_resolves_it_directly,
    a_retired_key_cannot_be_bound_again,
    recording_enforces_every_window_inside_the_transaction,
    window_counts_follow_the_window_and_another_writers_signatures,
    history_is_newest_first_per_key,
);

fn spki() -> SpkiDer {
    // A P-256 SubjectPublicKeyInfo (the point's value does not matter here).
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    der.push(4);
    der.extend([1u8; 64]);
    SpkiDer::parse(&der).unwrap()
}

fn key(label: &str) -> KeyRef {
    KeyRef::new(label).unwrap()
}

fn add(b: &Backend, label: &str, owner: &str) {
    b.db.add_codesign_key(
        &NewCodesignKey {
            key: key(label),
            owner: owner.into(),
            owner_kind: ca_core::codesign::OwnerKind::User,
            profile: "code-signing".into(),
            spec: KeySpec::EcP256,
            public_key: spki(),
            created_at: t0(),
        },
        &event(Action::KeyGenerated, &format!("key:embedded:{label}")),
    )
    .unwrap();
}

fn signature(label: &str, at: SystemTime) -> NewSignature {
    NewSignature {
        key: key(label),
        caller: "carol".into(),
        serial: serial(1),
        digest_alg: DigestAlg::Sha256,
        digest: "ab".repeat(32),
        at,
    }
}

fn window(since: SystemTime, max: u64) -> SigningWindow {
    SigningWindow {
        since,
        max,
        name: format!("{max} signatures per test"),
    }
}

fn a_key_is_recorded_once_with_its_owner_and_audited(b: &Backend) {
    add(b, "cs-one", "carol");
    let row = b.db.codesign_key(&key("cs-one")).unwrap().unwrap();
    assert_eq!(row.owner, "carol");
    assert_eq!(row.spec, KeySpec::EcP256);
    assert_eq!(row.public_key, spki());
    assert_eq!(
        (row.request_id, row.serial, row.retired),
        (None, None, None)
    );
    assert_eq!(row.created_at, t0());
    assert!(b.db.codesign_key(&key("cs-none")).unwrap().is_none());

    let err =
        b.db.add_codesign_key(
            &NewCodesignKey {
                key: key("cs-one"),
                owner: "mallory".into(),
                owner_kind: ca_core::codesign::OwnerKind::User,
                profile: "code-signing".into(),
                spec: KeySpec::EcP384,
                public_key: spki(),
                created_at: t0(),
            },
            &event(Action::KeyGenerated, "key:embedded:cs-one"),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        b.db.codesign_key(&key("cs-one")).unwrap().unwrap().owner,
        "carol"
    );

    let (seq, _) = b.db.audit_head().unwrap().unwrap();
    let entries = b.db.audit_entries(1, seq).unwrap();
    assert_eq!(entries.len(), 1, "the refused duplicate left no entry");
    assert_eq!(entries[0].action, "key.generated");
}

fn the_certificate_is_found_through_the_request_once_issued(b: &Backend) {
    with_issuer(b);
    add(b, "cs-req", "carol");
    let id = request(b, "carol");
    b.db.bind_codesign_key(
        &key("cs-req"),
        &KeyBinding::Request(id),
        &event(Action::CodesignKeyBound, "key:embedded:cs-req"),
    )
    .unwrap();
    assert!(b.db.codesign_certificate(&key("cs-req")).unwrap().is_none());

    let s = serial(7);
    let mut cert = new_cert(&s);
    cert.request_id = Some(id);
    b.db.reserve(&cert, &cert_event(Action::IssuanceStarted, &s))
        .unwrap();
    b.db.complete(&s, b"DER", &cert_event(Action::CertificateIssued, &s))
        .unwrap();
    let found = b.db.codesign_certificate(&key("cs-req")).unwrap().unwrap();
    assert_eq!(found.serial, s);
    assert_eq!(found.status, CertStatus::Valid);
    assert_eq!(found.der.as_deref(), Some(&b"DER"[..]));

    // Revocation shows through.
    b.exec(&format!(
        "UPDATE certificates SET status = 'revoked' WHERE serial = {}",
        text(s.as_str())
    ));
    let found = b.db.codesign_certificate(&key("cs-req")).unwrap().unwrap();
    assert_eq!(found.status, CertStatus::Revoked);
}

fn a_key_bound_to_a_certificate_resolves_it_directly(b: &Backend) {
    with_issuer(b);
    add(b, "cs-cert", "carol");
    let s = serial(8);
    issue(b, &s);
    b.db.bind_codesign_key(
        &key("cs-cert"),
        &KeyBinding::Certificate(s.clone()),
        &event(Action::CodesignKeyBound, "key:embedded:cs-cert"),
    )
    .unwrap();
    assert_eq!(
        b.db.codesign_key(&key("cs-cert")).unwrap().unwrap().serial,
        Some(s.clone())
    );
    assert_eq!(
        b.db.codesign_certificate(&key("cs-cert"))
            .unwrap()
            .unwrap()
            .serial,
        s
    );
    let other = serial(9);
    issue(b, &other);
    let err =
        b.db.bind_codesign_key(
            &key("cs-cert"),
            &KeyBinding::Certificate(other),
            &event(Action::CodesignKeyBound, "key:embedded:cs-cert"),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err =
        b.db.bind_codesign_key(
            &key("cs-missing"),
            &KeyBinding::Request(1),
            &event(Action::CodesignKeyBound, "key:embedded:cs-missing"),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

fn a_retired_key_cannot_be_bound_again(b: &Backend) {
    add(b, "cs-gone", "carol");
    b.db.bind_codesign_key(
        &key("cs-gone"),
        &KeyBinding::Retired("the request was refused".into()),
        &event(Action::CodesignKeyBound, "key:embedded:cs-gone"),
    )
    .unwrap();
    let row = b.db.codesign_key(&key("cs-gone")).unwrap().unwrap();
    assert_eq!(row.retired.as_deref(), Some("the request was refused"));
    let id = request(b, "carol");
    let err =
        b.db.bind_codesign_key(
            &key("cs-gone"),
            &KeyBinding::Request(id),
            &event(Action::CodesignKeyBound, "key:embedded:cs-gone"),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
}

fn recording_enforces_every_window_inside_the_transaction(b: &Backend) {
    add(b, "cs-rate", "carol");
    add(b, "cs-other", "carol");
    let at = |s: u64| t0() + Duration::from_secs(s);
    let signed = event(Action::CodesignSigned, "key:embedded:cs-rate");
    for s in 0..2 {
        b.db.record_codesign_signature(&signature("cs-rate", at(s)), &[window(at(0), 2)], &signed)
            .unwrap();
    }
    let err =
        b.db.record_codesign_signature(&signature("cs-rate", at(5)), &[window(at(0), 2)], &signed)
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "key cs-rate has reached its limit of 2 signatures per test (profile [codesign]); try again later"
    );
    // Another key's count is its own; a later window admits again.
    b.db.record_codesign_signature(&signature("cs-other", at(5)), &[window(at(0), 2)], &signed)
        .unwrap();
    b.db.record_codesign_signature(
        &signature("cs-rate", at(61)),
        &[window(at(1), 2), window(at(0), 10)],
        &signed,
    )
    .unwrap();
    assert_eq!(
        b.db.codesign_signature_count(&key("cs-rate"), at(0))
            .unwrap(),
        3
    );
    assert_eq!(
        b.db.codesign_signature_count(&key("cs-rate"), at(2))
            .unwrap(),
        1
    );

    // Every recorded signature has its audit entry; the refused one has none.
    let (seq, _) = b.db.audit_head().unwrap().unwrap();
    let entries = b.db.audit_entries(1, seq).unwrap();
    let signed_entries = entries
        .iter()
        .filter(|e| e.action == "codesign.signed")
        .count();
    assert_eq!(signed_entries, 4);

    let err =
        b.db.record_codesign_signature(&signature("cs-none", at(5)), &[], &signed)
            .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

/// The writer keeps each window's count between signatures (counting only what entered or
/// left it): it must stay exact as the window slides either way, and when another process
/// records a signature in between.
fn window_counts_follow_the_window_and_another_writers_signatures(b: &Backend) {
    add(b, "cs-slide", "carol");
    let at = |s: u64| t0() + Duration::from_secs(s);
    let signed = event(Action::CodesignSigned, "key:embedded:cs-slide");
    let record = |db: &db::Db, s: u64, since: u64| {
        db.record_codesign_signature(
            &signature("cs-slide", at(s)),
            &[window(at(since), 3)],
            &signed,
        )
    };
    record(&b.db, 0, 0).unwrap();
    record(&b.db, 1, 0).unwrap();
    // Another process records one: this writer's count of 2 is stale, the window is full.
    let other = b.reopen();
    other
        .record_codesign_signature(&signature("cs-slide", at(2)), &[], &signed)
        .unwrap();
    let err = record(&b.db, 3, 0).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // Forward: 1 and 2 are in [1, ...).
    record(&b.db, 3, 1).unwrap();
    assert!(matches!(record(&b.db, 4, 1), Err(StoreError::Conflict(_))));
    // Further forward (2, 3), then back (1, 2, 3, 4).
    record(&b.db, 4, 2).unwrap();
    assert!(matches!(record(&b.db, 5, 1), Err(StoreError::Conflict(_))));
    assert!(matches!(record(&b.db, 5, 2), Err(StoreError::Conflict(_))));
    record(&b.db, 5, 3).unwrap();

    // The early check before signing agrees with the counts: [3, ...) holds 3, 4 and 5.
    let k = key("cs-slide");
    assert_eq!(
        b.db.codesign_full_window(&k, &[window(at(4), 3), window(at(3), 3)])
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        b.db.codesign_full_window(&k, &[window(at(4), 3)]).unwrap(),
        None
    );
    // Another process's signature is seen by this writer's next check.
    other
        .record_codesign_signature(&signature("cs-slide", at(6)), &[], &signed)
        .unwrap();
    assert!(matches!(record(&b.db, 7, 4), Err(StoreError::Conflict(_))));
    assert_eq!(
        b.db.codesign_signature_count(&k, at(0)).unwrap(),
        7,
        "0, 1, 2 (other), 3, 4, 5, 6 (other)"
    );
}

fn history_is_newest_first_per_key(b: &Backend) {
    add(b, "cs-hist", "carol");
    add(b, "cs-else", "carol");
    let signed = event(Action::CodesignSigned, "key:embedded:cs-hist");
    for (label, s) in [
        ("cs-hist", 1),
        ("cs-else", 2),
        ("cs-hist", 3),
        ("cs-hist", 3),
    ] {
        b.db.record_codesign_signature(
            &signature(label, t0() + Duration::from_secs(s)),
            &[],
            &signed,
        )
        .unwrap();
    }
    let history = b.db.codesign_signatures(&key("cs-hist"), 10).unwrap();
    let ids: Vec<i64> = history.iter().map(|r| r.id).collect();
    assert_eq!(ids, [4, 3, 1]);
    assert_eq!(
        history[2].signature,
        signature("cs-hist", t0() + Duration::from_secs(1))
    );
    assert_eq!(
        b.db.codesign_signatures(&key("cs-hist"), 1).unwrap().len(),
        1
    );
}
