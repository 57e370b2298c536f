//! Many callers at once: group commit must keep every caller's outcome its own, and the
//! audit chain whole, within one handle and across handles (processes) on one database.

use std::sync::atomic::{AtomicUsize, Ordering};

use ca_core::audit::{self, Action};
use ca_core::keystore::{KeySpec, SpkiDer};
use ca_core::store::{AuditLog, CertificateQueries, IssuanceLedger, RequestFilter, StoreError};

use crate::support::*;

on_both_backends!(
    concurrent_callers_each_get_their_own_outcome,
    two_handles_on_one_database_keep_one_chain,
    a_change_failing_in_a_shared_transaction_fails_alone,
    writes_sharing_a_statement_keep_each_callers_outcome,
    a_serial_completed_by_many_at_once_is_completed_once,
);

fn assert_chain_intact(b: &Backend, expected_entries: usize) {
    let entries = b.db.audit_entries(1, i64::MAX).unwrap();
    assert_eq!(entries.len(), expected_entries);
    let report = audit::verify(
        &entries,
        &[],
        KeySpec::EcP256.signature_algorithm(),
        &SpkiDer::from_der_unchecked(Vec::new()),
    );
    assert_eq!(report.first_problem, None);
    assert_eq!(
        b.db.audit_head().unwrap().unwrap().0,
        expected_entries as i64
    );
}

fn concurrent_callers_each_get_their_own_outcome(b: &Backend) {
    with_issuer(b);
    const THREADS: u64 = 16;
    const OWN: u64 = 15;
    const SHARED: u64 = 5;
    let conflicts = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let conflicts = &conflicts;
            scope.spawn(move || {
                for i in 0..OWN {
                    let s = serial(t * 100 + i);
                    b.db.reserve(&new_cert(&s), &cert_event(Action::IssuanceStarted, &s))
                        .unwrap();
                    // Every thread also races for the same few serials: one wins each,
                    // and the others' conflicts must not undo anyone else's change.
                    if i < SHARED {
                        let shared = serial(9_000 + i);
                        match b.db.reserve(
                            &new_cert(&shared),
                            &cert_event(Action::IssuanceStarted, &shared),
                        ) {
                            Ok(()) => {}
                            Err(StoreError::Conflict(_)) => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    b.db.complete(&s, b"DER", &cert_event(Action::CertificateIssued, &s))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(conflicts.into_inner(), ((THREADS - 1) * SHARED) as usize);
    for t in 0..THREADS {
        for i in 0..OWN {
            let row = b.db.certificate(&serial(t * 100 + i)).unwrap().unwrap();
            assert_eq!(row.der.as_deref(), Some(&b"DER"[..]));
        }
    }
    assert_eq!(b.db.reserved().unwrap().len(), SHARED as usize);
    assert_chain_intact(b, (THREADS * OWN * 2 + SHARED) as usize);
}

fn two_handles_on_one_database_keep_one_chain(b: &Backend) {
    let second = b.reopen();
    let handles = [&b.db, &second];
    std::thread::scope(|scope| {
        for t in 0..8 {
            let db = handles[t % 2];
            scope.spawn(move || {
                for _ in 0..10 {
                    db.create_request(&new_request("alice"), &event(Action::RequestReceived, ""))
                        .unwrap();
                }
            });
        }
    });
    let mut ids: Vec<i64> =
        b.db.requests(&RequestFilter::default())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
    ids.sort();
    assert_eq!(ids, (1..=80).collect::<Vec<_>>());
    assert_chain_intact(b, 80);
}

fn a_change_failing_in_a_shared_transaction_fails_alone(b: &Backend) {
    with_issuer(b);
    // Audit inserts for "poisoned" objects fail inside the database, after the change's
    // certificate row was written: the batch must undo that change and only that one.
    if b.is_postgres() {
        b.exec(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.object LIKE '%poisoned%' THEN RAISE EXCEPTION 'poisoned'; END IF; \
             RETURN NEW; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION poison();",
        );
    } else {
        b.exec(
            "CREATE TRIGGER poison BEFORE INSERT ON audit_log \
             WHEN NEW.object LIKE '%poisoned%' \
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        );
    }
    std::thread::scope(|scope| {
        for t in 0..16u64 {
            scope.spawn(move || {
                for i in 0..10u64 {
                    let s = serial(t * 100 + i);
                    let poisoned = i % 4 == 1;
                    let object = if poisoned {
                        format!("certificate:{s}:poisoned")
                    } else {
                        format!("certificate:{s}")
                    };
                    let result =
                        b.db.reserve(&new_cert(&s), &event(Action::IssuanceStarted, &object));
                    match (poisoned, result) {
                        (false, Ok(())) => {}
                        (true, Err(StoreError::Database(_))) => {}
                        (poisoned, result) => panic!("{s} poisoned={poisoned}: {result:?}"),
                    }
                }
            });
        }
    });
    let reserved = b.db.reserved().unwrap();
    assert_eq!(reserved.len(), 16 * 7);
    assert!(reserved.iter().all(|r| {
        let i = u64::from_str_radix(&r.serial.as_str()[12..], 16).unwrap() % 100;
        i % 4 != 1
    }));
    assert_chain_intact(b, 16 * 7);
}

/// On PostgreSQL the batch's reservations share one INSERT and its completions one UPDATE
/// (`writer/merge.rs`): each caller must still get its own outcome, and the refused ones
/// write nothing. Unknown issuers fail the shared statement, so those batches run again
/// with a savepoint per job.
fn writes_sharing_a_statement_keep_each_callers_outcome(b: &Backend) {
    with_issuer(b);
    const THREADS: u64 = 16;
    const ROUNDS: u64 = 12;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                for i in 0..ROUNDS {
                    let s = serial(t * 100 + i);
                    let mut cert = new_cert(&s);
                    // Each caller's own requester and DER: a mix-up in the shared
                    // statements' rows would show in the rows read back below.
                    cert.requester = format!("requester-{t}");
                    let unknown_issuer = (t + i) % 5 == 0;
                    if unknown_issuer {
                        cert.issuer = ca_core::issuer::IssuerId::new("nobody-issues-this").unwrap();
                    }
                    let reserved =
                        b.db.reserve(&cert, &cert_event(Action::IssuanceStarted, &s));
                    match (unknown_issuer, &reserved) {
                        (false, Ok(())) | (true, Err(StoreError::NotFound(_))) => {}
                        _ => panic!("{s} unknown issuer {unknown_issuer}: {reserved:?}"),
                    }
                    let der = format!("DER of {s}").into_bytes();
                    let done =
                        b.db.complete(&s, &der, &cert_event(Action::CertificateIssued, &s));
                    match (unknown_issuer, &done) {
                        (false, Ok(())) | (true, Err(StoreError::NotFound(_))) => {}
                        _ => panic!("{s} completed: {done:?}"),
                    }
                    if !unknown_issuer && i % 3 == 0 {
                        // Completing twice: the second finds it valid, not reserved.
                        let again =
                            b.db.complete(&s, b"DER2", &cert_event(Action::CertificateIssued, &s));
                        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
                    }
                }
            });
        }
    });
    let mut issued = 0;
    for t in 0..THREADS {
        for i in 0..ROUNDS {
            let row = b.db.certificate(&serial(t * 100 + i)).unwrap();
            if (t + i) % 5 == 0 {
                assert!(row.is_none());
            } else {
                let row = row.unwrap();
                let s = serial(t * 100 + i);
                assert_eq!(row.der, Some(format!("DER of {s}").into_bytes()));
                assert_eq!(row.requester, format!("requester-{t}"));
                assert_eq!(row.status, ca_core::store::CertStatus::Valid);
                issued += 1;
            }
        }
    }
    assert!(b.db.reserved().unwrap().is_empty());
    assert_chain_intact(b, issued * 2);
}

/// Sixteen callers complete one reserved serial at once (on PostgreSQL often in one shared
/// UPDATE): exactly one succeeds, the row holds its DER, and only its entry is audited.
fn a_serial_completed_by_many_at_once_is_completed_once(b: &Backend) {
    with_issuer(b);
    let s = serial(7);
    b.db.reserve(&new_cert(&s), &cert_event(Action::IssuanceStarted, &s))
        .unwrap();
    let start = std::sync::Barrier::new(16);
    let winners: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let (s, start) = (&s, &start);
                scope.spawn(move || {
                    start.wait();
                    let der = format!("DER from caller {t}").into_bytes();
                    match b
                        .db
                        .complete(s, &der, &cert_event(Action::CertificateIssued, s))
                    {
                        Ok(()) => Some(t),
                        Err(StoreError::Conflict(_)) => None,
                        Err(e) => panic!("caller {t}: {e}"),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(winners.len(), 1, "{winners:?}");
    let row = b.db.certificate(&s).unwrap().unwrap();
    assert_eq!(
        row.der,
        Some(format!("DER from caller {}", winners[0]).into_bytes())
    );
    assert_chain_intact(b, 2);
}
