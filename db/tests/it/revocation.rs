//! Revoking, the CRL's list, OCSP status lookups and CRL numbers, on both backends.

use std::time::Duration;

use ca_core::audit::Action;
use ca_core::issuer::IssuerId;
use ca_core::revocation::Reason;
use ca_core::store::{
    AuditLog, CaRevocation, CertStatus, CertificateQueries, CrlList, IssuanceLedger, Revocation,
    RevocationLedger, Serial, StoreError,
};

use crate::support::*;

fn revocation(serial: &Serial, reason: Reason) -> Revocation {
    Revocation {
        serial: serial.clone(),
        reason,
        invalidity_date: None,
        revoked_at: t0() + Duration::from_secs(3600),
    }
}

fn revoke(b: &Backend, r: &Revocation) -> Result<(), StoreError> {
    b.db.revoke(r, &cert_event(Action::CertificateRevoked, &r.serial))
}

fn a_revocation_is_recorded_audited_and_listed_until_the_certificate_expires(b: &Backend) {
    with_issuer(b);
    let (s1, s2, s3) = (serial(1), serial(2), serial(3));
    for s in [&s1, &s2, &s3] {
        issue(b, s);
    }
    let mut r1 = revocation(&s1, Reason::KeyCompromise);
    r1.invalidity_date = Some(t0() + Duration::from_secs(60));
    revoke(b, &r1).unwrap();
    revoke(b, &revocation(&s3, Reason::Unspecified)).unwrap();

    let row = b.db.certificate(&s1).unwrap().unwrap();
    assert_eq!(row.status, CertStatus::Revoked);
    let head = b.db.audit_head().unwrap().unwrap().0;
    let last = b.db.audit_entries(head, head).unwrap();
    assert_eq!(last[0].action, "certificate.revoked");
    assert_eq!(last[0].object, format!("certificate:{s3}"));

    let list = b.db.crl_entries(&issuer_id(), t0()).unwrap();
    assert_eq!(list.counted, 2);
    let listed = list.entries;
    assert_eq!(
        listed.iter().map(|e| e.serial()).collect::<Vec<_>>(),
        [s1.clone(), s3.clone()]
    );
    assert_eq!(listed[0].reason, Reason::KeyCompromise);
    assert_eq!(listed[0].invalidity_date, r1.invalidity_date);
    assert_eq!(listed[0].revoked_at, r1.revoked_at);
    assert_eq!(listed[1].invalidity_date, None);

    // After notAfter (90 days) the CRL no longer needs them (RFC 5280 3.3).
    let later = t0() + Duration::from_secs(91 * 86_400);
    assert_eq!(
        b.db.crl_entries(&issuer_id(), later).unwrap(),
        CrlList::default()
    );
    // Another issuer lists nothing.
    let other = IssuerId::new("other-ca").unwrap();
    assert_eq!(b.db.crl_entries(&other, t0()).unwrap(), CrlList::default());
}

fn revoking_twice_unknown_reserved_or_failed_serials_is_refused_and_not_audited(b: &Backend) {
    with_issuer(b);
    let s = serial(1);
    issue(b, &s);
    revoke(b, &revocation(&s, Reason::Superseded)).unwrap();
    let head = b.db.audit_head().unwrap().unwrap().0;

    let again = revoke(b, &revocation(&s, Reason::KeyCompromise)).unwrap_err();
    assert!(
        matches!(&again, StoreError::Conflict(m) if m.contains("already revoked")),
        "{again}"
    );
    let unknown = revoke(b, &revocation(&serial(99), Reason::Superseded)).unwrap_err();
    assert!(matches!(unknown, StoreError::NotFound(_)), "{unknown}");

    let reserved = serial(2);
    b.db.reserve(
        &new_cert(&reserved),
        &cert_event(Action::IssuanceStarted, &reserved),
    )
    .unwrap();
    let head_after_reserve = b.db.audit_head().unwrap().unwrap().0;
    assert_eq!(head_after_reserve, head + 1);
    let e = revoke(b, &revocation(&reserved, Reason::Superseded)).unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("reserved")),
        "{e}"
    );
    b.db.fail(
        &reserved,
        "hsm gone",
        &cert_event(Action::SigningFailed, &reserved),
    )
    .unwrap();
    let e = revoke(b, &revocation(&reserved, Reason::Superseded)).unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("never issued")),
        "{e}"
    );

    // An expired certificate can still be revoked (code signing needs that).
    let expired = serial(3);
    issue(b, &expired);
    let mut late = revocation(&expired, Reason::KeyCompromise);
    late.revoked_at = t0() + Duration::from_secs(400 * 86_400);
    revoke(b, &late).unwrap();
    assert_eq!(
        b.db.crl_entries(&issuer_id(), late.revoked_at).unwrap(),
        CrlList::default()
    );

    // Only the reserve, fail, issue and revoke entries were added: refusals write nothing.
    assert_eq!(b.db.audit_head().unwrap().unwrap().0, head + 5);
    assert_eq!(
        b.db.revocation_status(&issuer_id(), &s)
            .unwrap()
            .unwrap()
            .revoked
            .unwrap()
            .1,
        Reason::Superseded
    );
}

fn status_lookups_know_the_issuer(b: &Backend) {
    with_issuer(b);
    let (good, bad) = (serial(1), serial(2));
    issue(b, &good);
    issue(b, &bad);
    revoke(b, &revocation(&bad, Reason::CessationOfOperation)).unwrap();

    let status =
        b.db.revocation_status(&issuer_id(), &good)
            .unwrap()
            .unwrap();
    assert_eq!(status.status, CertStatus::Valid);
    assert_eq!(status.revoked, None);
    let status = b.db.revocation_status(&issuer_id(), &bad).unwrap().unwrap();
    assert_eq!(status.status, CertStatus::Revoked);
    assert_eq!(
        status.revoked,
        Some((
            t0() + Duration::from_secs(3600),
            Reason::CessationOfOperation
        ))
    );
    let other = IssuerId::new("other-ca").unwrap();
    assert_eq!(b.db.revocation_status(&other, &good).unwrap(), None);
    assert_eq!(
        b.db.revocation_status(&issuer_id(), &serial(3)).unwrap(),
        None
    );
}

fn crl_numbers_strictly_increase_per_issuer_across_processes(b: &Backend) {
    with_issuer(b);
    let ca = issuer_id();
    let other = IssuerId::new("other-ca").unwrap();
    // The first number is thisUpdate in microseconds; within one microsecond, one more.
    let first = ca_core::audit::unix_micros(t0()) as u64;
    assert_eq!(b.db.next_crl_number(&ca, t0()).unwrap(), first);
    assert_eq!(b.db.next_crl_number(&ca, t0()).unwrap(), first + 1);
    assert_eq!(b.db.next_crl_number(&other, t0()).unwrap(), first);

    // A second process, and both at once from several threads: never the same number.
    let second = b.reopen();
    let mut seen = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let db = if i % 2 == 0 { &b.db } else { &second };
                let ca = ca.clone();
                scope.spawn(move || {
                    (0..10)
                        .map(|_| {
                            ca_core::store::RevocationLedger::next_crl_number(db, &ca, t0())
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    seen.sort_unstable();
    assert_eq!(seen, (first + 2..first + 42).collect::<Vec<u64>>());
    drop(second);
    // And after a restart it goes on from there.
    let reopened = b.reopen();
    assert_eq!(
        ca_core::store::RevocationLedger::next_crl_number(&reopened, &ca, t0()).unwrap(),
        first + 42
    );
}

fn a_crl_number_never_goes_backwards_when_the_stored_counter_does(b: &Backend) {
    with_issuer(b);
    let ca = issuer_id();
    let published = b.db.next_crl_number(&ca, t0()).unwrap();
    // What a restore of an old backup (or an asynchronous failover) does to the counter.
    b.exec(&format!(
        "UPDATE crl_numbers SET last = 3 WHERE issuer = {}",
        text(ISSUER)
    ));
    let later = t0() + Duration::from_secs(1);
    let next = b.db.next_crl_number(&ca, later).unwrap();
    assert!(next > published, "{next} <= {published}");
    assert_eq!(next, ca_core::audit::unix_micros(later) as u64);
}

fn a_requester_revokes_only_its_own_certificates_and_never_for_ca_compromise(b: &Backend) {
    use ca_core::revocation::{self, RevocationError, RevokeRequest, Revoker};
    with_issuer(b);
    let s = serial(1);
    issue(b, &s); // requested by alice
    let ask = |who: &str, reason: Reason| {
        revocation::revoke(
            &b.db,
            &RevokeRequest {
                serial: &s,
                reason,
                invalidity_date: None,
                actor: who,
                source: "127.0.0.1",
                revoker: Revoker::Requester(who),
            },
            t0(),
        )
    };
    let err = ask("mallory", Reason::KeyCompromise).unwrap_err();
    assert!(
        matches!(err, RevocationError::Store(StoreError::NotFound(_))),
        "{err}"
    );
    let err = ask("alice", Reason::CaCompromise).unwrap_err();
    assert!(matches!(err, RevocationError::NotAllowed(_)), "{err}");
    let done = ask("alice", Reason::KeyCompromise).unwrap();
    assert_eq!(done.revoked_at, t0());
    let head = b.db.audit_head().unwrap().unwrap().0;
    let entry = &b.db.audit_entries(head, head).unwrap()[0];
    assert_eq!(
        (entry.actor.as_str(), entry.details.as_str()),
        ("alice", "reason=keyCompromise")
    );
}

fn a_revoked_ca_certificate_is_listed_by_its_parent_once_and_audited(b: &Backend) {
    let root = IssuerId::new("root").unwrap();
    let ca = CaRevocation {
        ca: issuer_id(),
        parent: root.clone(),
        serial: Serial::parse("5a:01:02").unwrap(),
        not_after: t0() + Duration::from_secs(3650 * 86_400),
        reason: Reason::CaCompromise,
        revoked_at: t0() + Duration::from_secs(60),
        revoked_by: "cli:officer".into(),
    };
    let event = event(Action::CaRevoked, "issuer:issuing-ca");
    b.db.revoke_ca(&ca, &event).unwrap();
    let head = b.db.audit_head().unwrap().unwrap().0;
    assert_eq!(
        b.db.audit_entries(head, head).unwrap()[0].action,
        "ca.revoked"
    );

    let list = b.db.crl_entries(&root, t0()).unwrap();
    assert_eq!(list.counted, 1);
    assert_eq!(list.entries.len(), 1);
    assert_eq!(list.entries[0].serial(), ca.serial);
    assert_eq!(list.entries[0].reason, Reason::CaCompromise);
    assert_eq!(list.entries[0].revoked_at, ca.revoked_at);
    // Not on the revoked CA's own CRL, and gone from the root's after it expires.
    assert!(
        b.db.crl_entries(&issuer_id(), t0())
            .unwrap()
            .entries
            .is_empty()
    );
    let after = ca.not_after + Duration::from_secs(1);
    assert_eq!(b.db.crl_entries(&root, after).unwrap(), CrlList::default());
    assert_eq!(b.db.ca_revocations().unwrap(), std::slice::from_ref(&ca));
    // What OCSP reads about one CA certificate: this one, by its parent and serial only.
    assert_eq!(
        b.db.ca_revocation(&root, &ca.serial).unwrap(),
        Some(ca.clone())
    );
    assert_eq!(b.db.ca_revocation(&issuer_id(), &ca.serial).unwrap(), None);
    let other = Serial::parse("5a:01:03").unwrap();
    assert_eq!(b.db.ca_revocation(&root, &other).unwrap(), None);

    // Twice is a conflict, and writes no audit entry.
    let again = b.db.revoke_ca(&ca, &event).unwrap_err();
    assert!(
        matches!(&again, StoreError::Conflict(m) if m.contains("already revoked")),
        "{again}"
    );
    assert_eq!(b.db.audit_head().unwrap().unwrap().0, head);
}

/// Issue 20, item 1: with revocations and CRL generators running at once in two processes
/// (two `Db`s, each with its own connections), a CRL with a higher number lists every
/// revocation one with a lower number lists, and each list agrees with its count.
fn a_higher_crl_number_never_lacks_a_revocation_a_lower_one_lists(b: &Backend) {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    with_issuer(b);
    let ca = issuer_id();
    let serials: Vec<Serial> = (1..=40).map(serial).collect();
    for s in &serials {
        issue(b, s);
    }
    let second = b.reopen();
    let dbs = [&b.db, &second];
    let done = AtomicBool::new(false);
    let crls = std::thread::scope(|scope| {
        let generators: Vec<_> = dbs
            .iter()
            .map(|db| {
                let (ca, done) = (&ca, &done);
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    loop {
                        let finished = done.load(Ordering::SeqCst);
                        let (number, list) = db.numbered_crl_entries(ca, t0()).unwrap();
                        assert_eq!(list.counted, list.entries.len() as u64, "CRL {number}");
                        let listed: BTreeSet<Serial> =
                            list.entries.iter().map(|e| e.serial()).collect();
                        seen.push((number, listed));
                        if finished {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        let revokers: Vec<_> = serials
            .chunks(serials.len() / 2)
            .zip(dbs)
            .map(|(chunk, db)| {
                scope.spawn(move || {
                    for s in chunk {
                        let r = revocation(s, Reason::Superseded);
                        db.revoke(&r, &cert_event(Action::CertificateRevoked, s))
                            .unwrap();
                    }
                })
            })
            .collect();
        for r in revokers {
            r.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        generators
            .into_iter()
            .flat_map(|g| g.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut crls = crls;
    crls.sort_by_key(|(number, _)| *number);
    for pair in crls.windows(2) {
        let ((low, low_list), (high, high_list)) = (&pair[0], &pair[1]);
        assert!(high > low, "CRL number {high} given twice");
        let missing: Vec<_> = low_list.difference(high_list).collect();
        assert!(
            missing.is_empty(),
            "CRL {high} lacks {missing:?}, which CRL {low} lists"
        );
    }
    // The last CRLs were taken after every revocation: they list them all.
    let (_, last) = crls.last().unwrap();
    assert_eq!(last.len(), serials.len());
}

on_both_backends!(
    a_higher_crl_number_never_lacks_a_revocation_a_lower_one_lists,
    a_revoked_ca_certificate_is_listed_by_its_parent_once_and_audited,
    a_requester_revokes_only_its_own_certificates_and_never_for_ca_compromise,
    a_revocation_is_recorded_audited_and_listed_until_the_certificate_expires,
    revoking_twice_unknown_reserved_or_failed_serials_is_refused_and_not_audited,
    status_lookups_know_the_issuer,
    crl_numbers_strictly_increase_per_issuer_across_processes,
    a_crl_number_never_goes_backwards_when_the_stored_counter_does,
);
