//! Certificates: issuers, reserve, complete, fail, and the audit entries they append.

use std::time::Duration;

use ca_core::audit::{self, Action, AuditEvent};
use ca_core::error::ErrorKind;
use ca_core::keystore::{KeySpec, SpkiDer};
use ca_core::store::{
    AuditLog, CertStatus, CertificateQueries, IssuanceLedger, RequestStatus, StoreError,
};

use crate::support::*;

on_both_backends!(
    ensure_issuer_is_idempotent_and_refuses_another_certificate,
    reserve_then_complete_records_the_certificate_and_two_audit_entries,
    reserve_refuses_a_serial_in_use,
    reserve_refuses_an_unknown_issuer,
    reserve_for_a_request_requires_it_pending_and_without_a_certificate,
    complete_refuses_a_serial_that_is_not_reserved,
    fail_burns_the_serial_and_fails_its_request,
    reserved_lists_interrupted_issuances_oldest_first,
    completing_a_requests_certificate_marks_it_issued,
    missing_rows_are_none_not_errors,
    audit_appends_standalone_events_in_one_chain,
    audit_head_is_none_for_an_empty_log,
    checkpoints_are_stored_in_order_and_checked_against_the_log,
    a_change_whose_audit_entry_fails_is_rolled_back,
);

fn unchecked_key() -> (ca_core::keystore::SigAlg, SpkiDer) {
    (
        KeySpec::EcP256.signature_algorithm(),
        SpkiDer::from_der_unchecked(Vec::new()),
    )
}

/// The whole log verifies as a chain (checkpoints are tested in `audit`).
fn assert_chain_intact(b: &Backend) {
    let entries = b.db.audit_entries(1, i64::MAX).unwrap();
    let (alg, key) = unchecked_key();
    let report = audit::verify(&entries, &[], alg, &key);
    assert_eq!(report.first_problem, None, "{}", b.name);
}

fn audit_count(b: &Backend) -> usize {
    b.db.audit_entries(1, i64::MAX).unwrap().len()
}

fn ensure_issuer_is_idempotent_and_refuses_another_certificate(b: &Backend) {
    with_issuer(b);
    with_issuer(b);
    let err =
        b.db.ensure_issuer(&issuer_id(), b"another certificate")
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

fn reserve_then_complete_records_the_certificate_and_two_audit_entries(b: &Backend) {
    with_issuer(b);
    let s = serial(1);
    let cert = new_cert(&s);
    b.clock.set(t0() + Duration::from_secs(5));
    b.db.reserve(&cert, &cert_event(Action::IssuanceStarted, &s))
        .unwrap();

    let row = b.db.certificate(&s).unwrap().unwrap();
    assert_eq!(row.status, CertStatus::Reserved);
    assert_eq!(row.der, None);
    assert_eq!(row.created_at, t0() + Duration::from_secs(5));
    assert_eq!(row.issuer, ISSUER);
    assert_eq!(row.subject, cert.subject);
    assert_eq!(row.sans, cert.sans);
    assert_eq!(row.profile, cert.profile);
    assert_eq!(row.requester, cert.requester);
    assert_eq!(row.not_before, cert.not_before);
    assert_eq!(row.not_after, cert.not_after);
    assert_eq!(row.request_id, None);
    assert_eq!(row.failure, None);

    b.db.complete(&s, b"the DER", &cert_event(Action::CertificateIssued, &s))
        .unwrap();
    let row = b.db.certificate(&s).unwrap().unwrap();
    assert_eq!(row.status, CertStatus::Valid);
    assert_eq!(row.der.as_deref(), Some(&b"the DER"[..]));

    let entries = b.db.audit_entries(1, 10).unwrap();
    let actions: Vec<_> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["issuance.started", "certificate.issued"]);
    assert_eq!(entries[0].object, format!("certificate:{s}"));
    assert_eq!(entries[1].at(), t0() + Duration::from_secs(5));
    assert_eq!(
        b.db.audit_head().unwrap(),
        Some((2, entries[1].hash)),
        "the head is the last entry"
    );
    assert_chain_intact(b);
}

fn reserve_refuses_a_serial_in_use(b: &Backend) {
    with_issuer(b);
    let s = serial(2);
    b.db.reserve(&new_cert(&s), &cert_event(Action::IssuanceStarted, &s))
        .unwrap();
    let err =
        b.db.reserve(&new_cert(&s), &cert_event(Action::IssuanceStarted, &s))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Whatever the issuer: serials are unique across the CA's database.
    let other = ca_core::issuer::IssuerId::new("other-ca").unwrap();
    b.db.ensure_issuer(&other, b"other issuer").unwrap();
    let mut cert = new_cert(&s);
    cert.issuer = other;
    let err =
        b.db.reserve(&cert, &cert_event(Action::IssuanceStarted, &s))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Still in use once issued.
    b.db.complete(&s, b"DER", &cert_event(Action::CertificateIssued, &s))
        .unwrap();
    let err =
        b.db.reserve(&new_cert(&s), &cert_event(Action::IssuanceStarted, &s))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(audit_count(b), 2, "refused reservations append nothing");
    assert_chain_intact(b);
}

fn reserve_refuses_an_unknown_issuer(b: &Backend) {
    let s = serial(3);
    let err =
        b.db.reserve(&new_cert(&s), &cert_event(Action::IssuanceStarted, &s))
            .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(b.db.certificate(&s).unwrap(), None);
    assert_eq!(b.db.audit_head().unwrap(), None);
}

fn reserve_for_a_request_requires_it_pending_and_without_a_certificate(b: &Backend) {
    with_issuer(b);
    let mut cert = new_cert(&serial(4));
    cert.request_id = Some(99);
    let err =
        b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
            .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "unknown request: {err:?}"
    );

    let rejected = request(b, "alice");
    b.db.reject(rejected, "bob", "no", &event(Action::RequestRejected, ""))
        .unwrap();
    cert.request_id = Some(rejected);
    let err =
        b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
            .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "rejected request: {err:?}"
    );

    let pending = request(b, "alice");
    cert.request_id = Some(pending);
    b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
        .unwrap();
    // A second certificate for the same approval is refused while the first is signed.
    let mut again = new_cert(&serial(5));
    again.request_id = Some(pending);
    let err =
        b.db.reserve(&again, &event(Action::IssuanceStarted, ""))
            .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "second reservation: {err:?}"
    );
    assert_eq!(b.db.certificate(&serial(5)).unwrap(), None);
}

fn complete_refuses_a_serial_that_is_not_reserved(b: &Backend) {
    with_issuer(b);
    let err =
        b.db.complete(&serial(6), b"DER", &event(Action::CertificateIssued, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let valid = serial(7);
    issue(b, &valid);
    let err =
        b.db.complete(&valid, b"other DER", &event(Action::CertificateIssued, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        b.db.certificate(&valid).unwrap().unwrap().der.as_deref(),
        Some(format!("DER of {valid}").as_bytes()),
        "the first DER stays"
    );

    let failed = serial(8);
    b.db.reserve(&new_cert(&failed), &event(Action::IssuanceStarted, ""))
        .unwrap();
    b.db.fail(&failed, "signing failed", &event(Action::SigningFailed, ""))
        .unwrap();
    let err =
        b.db.complete(&failed, b"DER", &event(Action::CertificateIssued, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err =
        b.db.fail(&failed, "again", &event(Action::SigningFailed, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

fn fail_burns_the_serial_and_fails_its_request(b: &Backend) {
    with_issuer(b);
    let id = request(b, "alice");
    let s = serial(9);
    let mut cert = new_cert(&s);
    cert.request_id = Some(id);
    b.db.reserve(&cert, &cert_event(Action::IssuanceStarted, &s))
        .unwrap();
    b.db.fail(
        &s,
        "the HSM is unreachable",
        &cert_event(Action::SigningFailed, &s),
    )
    .unwrap();

    let row = b.db.certificate(&s).unwrap().unwrap();
    assert_eq!(row.status, CertStatus::Failed);
    assert_eq!(row.failure.as_deref(), Some("the HSM is unreachable"));
    assert_eq!(row.der, None);
    let req = b.db.request(id).unwrap().unwrap();
    assert_eq!(req.status, RequestStatus::Failed);
    assert_eq!(req.reason.as_deref(), Some("the HSM is unreachable"));
    // Burnt: never reused.
    let err =
        b.db.reserve(&new_cert(&s), &event(Action::IssuanceStarted, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err =
        b.db.fail(&serial(10), "x", &event(Action::SigningFailed, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

fn reserved_lists_interrupted_issuances_oldest_first(b: &Backend) {
    with_issuer(b);
    for (n, secs) in [(11, 30), (12, 10), (13, 20), (14, 40)] {
        b.clock.set(t0() + Duration::from_secs(secs));
        b.db.reserve(&new_cert(&serial(n)), &event(Action::IssuanceStarted, ""))
            .unwrap();
    }
    b.db.complete(&serial(14), b"DER", &event(Action::CertificateIssued, ""))
        .unwrap();
    let reserved: Vec<_> =
        b.db.reserved()
            .unwrap()
            .into_iter()
            .map(|r| r.serial)
            .collect();
    assert_eq!(reserved, [serial(12), serial(13), serial(11)]);
}

fn completing_a_requests_certificate_marks_it_issued(b: &Backend) {
    with_issuer(b);
    let id = request(b, "alice");
    let s = serial(15);
    let mut cert = new_cert(&s);
    cert.request_id = Some(id);
    b.db.reserve(&cert, &cert_event(Action::IssuanceStarted, &s))
        .unwrap();
    assert_eq!(
        b.db.request(id).unwrap().unwrap().status,
        RequestStatus::Pending
    );
    b.db.complete(&s, b"DER", &cert_event(Action::CertificateIssued, &s))
        .unwrap();
    let req = b.db.request(id).unwrap().unwrap();
    assert_eq!(req.status, RequestStatus::Issued);
    assert_eq!(req.serial, Some(s.clone()));
    assert_eq!(b.db.certificate(&s).unwrap().unwrap().request_id, Some(id));
}

fn missing_rows_are_none_not_errors(b: &Backend) {
    assert_eq!(b.db.certificate(&serial(16)).unwrap(), None);
    assert_eq!(b.db.request(16).unwrap(), None);
    assert!(b.db.reserved().unwrap().is_empty());
    assert!(b.db.audit_entries(1, 100).unwrap().is_empty());
    assert!(b.db.checkpoints().unwrap().is_empty());
}

fn audit_appends_standalone_events_in_one_chain(b: &Backend) {
    b.db.audit(&[]).unwrap();
    assert_eq!(b.db.audit_head().unwrap(), None, "nothing to append");
    b.db.audit(&[
        event(Action::CaInitialised, "issuer:test-ca"),
        event(Action::KeyGenerated, "key:embedded:ca").with("spec", "p384"),
    ])
    .unwrap();
    b.db.audit(&[event(Action::KeyDestroyed, "key:embedded:old")])
        .unwrap();
    let entries = b.db.audit_entries(1, 3).unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(entries[1].details, "spec=p384");
    assert_eq!(entries[0].prev_hash, audit::GENESIS);
    assert_eq!(b.db.audit_entries(2, 2).unwrap(), entries[1..2]);
    assert_chain_intact(b);
}

fn audit_head_is_none_for_an_empty_log(b: &Backend) {
    assert_eq!(b.db.audit_head().unwrap(), None);
}

fn checkpoints_are_stored_in_order_and_checked_against_the_log(b: &Backend) {
    b.db.audit(&[
        event(Action::CaInitialised, "x"),
        event(Action::KeyGenerated, "y"),
    ])
    .unwrap();
    let (seq, hash) = b.db.audit_head().unwrap().unwrap();
    let cp = ca_core::audit::Checkpoint {
        seq,
        head_hash: hash,
        at_micros: 1,
        key: "embedded:audit".into(),
        signature: vec![1, 2, 3],
    };
    b.db.add_checkpoint(&cp, &event(Action::CheckpointSigned, "audit"))
        .unwrap();
    let err =
        b.db.add_checkpoint(&cp, &event(Action::CheckpointSigned, "audit"))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "twice: {err:?}");

    let wrong = ca_core::audit::Checkpoint {
        seq: 1,
        ..cp.clone()
    };
    let err =
        b.db.add_checkpoint(&wrong, &event(Action::CheckpointSigned, "audit"))
            .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "wrong hash: {err:?}"
    );
    let beyond = ca_core::audit::Checkpoint {
        seq: 99,
        ..cp.clone()
    };
    let err =
        b.db.add_checkpoint(&beyond, &event(Action::CheckpointSigned, "audit"))
            .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "no such entry: {err:?}"
    );

    let first = b.db.audit_entries(1, 1).unwrap().remove(0);
    let early = ca_core::audit::Checkpoint {
        seq: 1,
        head_hash: first.hash,
        ..cp.clone()
    };
    b.db.add_checkpoint(&early, &event(Action::CheckpointSigned, "audit"))
        .unwrap();
    assert_eq!(b.db.checkpoints().unwrap(), [early, cp]);
    // Two entries, then one per stored checkpoint.
    assert_eq!(audit_count(b), 4);
    assert_chain_intact(b);
}

fn a_change_whose_audit_entry_fails_is_rolled_back(b: &Backend) {
    with_issuer(b);
    issue(b, &serial(20));
    let head = b.db.audit_head().unwrap();
    // Break audit storage: every insert into audit_log now fails.
    if b.is_postgres() {
        b.exec(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit storage is broken'; END $$;
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
        );
    } else {
        b.exec(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit storage is broken'); END;",
        );
    }

    let s = serial(21);
    let err =
        b.db.reserve(&new_cert(&s), &cert_event(Action::IssuanceStarted, &s))
            .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert_eq!(
        b.db.certificate(&s).unwrap(),
        None,
        "no certificate without its audit entry"
    );

    let err =
        b.db.create_request(&new_request("alice"), &event(Action::RequestReceived, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(b.db.requests(&Default::default()).unwrap().is_empty());

    let err =
        b.db.audit(&[AuditEvent::new(Action::KeyGenerated, "a", "b", "c")])
            .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert_eq!(b.db.audit_head().unwrap(), head, "the head did not move");

    // Repaired, the same handle works again and the chain continues unbroken.
    b.exec(if b.is_postgres() {
        "DROP TRIGGER refuse_audit ON audit_log"
    } else {
        "DROP TRIGGER refuse_audit"
    });
    b.db.reserve(&new_cert(&s), &cert_event(Action::IssuanceStarted, &s))
        .unwrap();
    assert_eq!(b.db.audit_head().unwrap().unwrap().0, 3);
    assert_chain_intact(b);
}
