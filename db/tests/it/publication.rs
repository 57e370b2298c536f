//! Publishing once for the cluster (issue 20): leases, the stored CRL, and (PostgreSQL) the
//! notices of revocations and new CRLs.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ca_core::audit::Action;
use ca_core::revocation::Reason;
use ca_core::revocation::crl::SignedCrl;
use ca_core::revocation::publish::shared::{Notice, Publication, StoredAnswer};
use ca_core::store::{Revocation, RevocationLedger};
use db::{Db, Listened};

use crate::support::*;

fn process(b: &Backend) -> Db {
    let clock = b.clock.clone();
    Db::open_with_clock(&b.url, Arc::new(move || clock.now())).unwrap()
}

fn crl(number: u64) -> SignedCrl {
    SignedCrl {
        der: format!("CRL {number}").into_bytes(),
        number,
        this_update: t0(),
        next_update: t0() + Duration::from_secs(3600),
        entries: 3,
    }
}

fn a_lease_has_one_holder_until_it_expires(b: &Backend) {
    let other = process(b);
    let ttl = Duration::from_secs(10);
    assert!(b.db.take_lease("crl:x", "a", t0(), ttl).unwrap());
    assert!(!other.take_lease("crl:x", "b", t0(), ttl).unwrap());
    assert!(
        other.take_lease("crl:y", "b", t0(), ttl).unwrap(),
        "another lease"
    );
    // Renewed by its holder, it stays; past its expiry another takes it.
    let t5 = t0() + Duration::from_secs(5);
    assert!(b.db.take_lease("crl:x", "a", t5, ttl).unwrap());
    assert!(
        !other
            .take_lease("crl:x", "b", t0() + Duration::from_secs(14), ttl)
            .unwrap()
    );
    let t16 = t0() + Duration::from_secs(16);
    assert!(other.take_lease("crl:x", "b", t16, ttl).unwrap());
    assert!(!b.db.take_lease("crl:x", "a", t16, ttl).unwrap());
}

fn a_stored_crl_is_replaced_only_by_a_higher_number(b: &Backend) {
    let other = process(b);
    assert_eq!(b.db.stored_crl_number(ISSUER).unwrap(), None);
    assert!(b.db.stored_crl(ISSUER).unwrap().is_none());
    assert!(b.db.put_crl(ISSUER, &crl(5)).unwrap());
    assert!(!other.put_crl(ISSUER, &crl(4)).unwrap(), "lower");
    assert!(!other.put_crl(ISSUER, &crl(5)).unwrap(), "the same");
    assert_eq!(other.stored_crl_number(ISSUER).unwrap(), Some(5));
    assert!(other.put_crl(ISSUER, &crl(6)).unwrap());
    let stored = b.db.stored_crl(ISSUER).unwrap().unwrap();
    assert_eq!(stored.number, 6);
    assert_eq!(stored.der, b"CRL 6");
    assert_eq!(stored.this_update, t0());
    assert_eq!(stored.next_update, t0() + Duration::from_secs(3600));
    assert_eq!(stored.entries, 3);
    assert_eq!(b.db.stored_crl_number("other-ca").unwrap(), None);
}

fn answer(cert_id: u8, serial: &ca_core::store::Serial, next: u64) -> StoredAnswer {
    StoredAnswer {
        cert_id: vec![0x30, cert_id],
        serial: serial.clone(),
        issuer: issuer_id(),
        this_update: t0(),
        next_update: t0() + Duration::from_secs(next),
        der: vec![cert_id; 3],
    }
}

fn answers_are_stored_once_for_every_node_and_dropped_by_a_revocation(b: &Backend) {
    with_issuer(b);
    let other = process(b);
    let (s1, s2) = (serial(1), serial(2));
    issue(b, &s1);
    issue(b, &s2);
    b.db.put_answers(&[answer(1, &s1, 100), answer(2, &s1, 100), answer(3, &s2, 50)])
        .unwrap();
    // Replaced under its CertID.
    other.put_answers(&[answer(3, &s2, 200)]).unwrap();
    assert_eq!(
        other.stored_answer(&[0x30, 1]).unwrap(),
        Some(answer(1, &s1, 100))
    );
    assert_eq!(
        b.db.stored_answer(&[0x30, 3]).unwrap(),
        Some(answer(3, &s2, 200))
    );
    assert_eq!(b.db.stored_answer(&[0x30, 9]).unwrap(), None);
    let mut answered = b.db.answered(&[s1.clone(), s2.clone(), serial(3)]).unwrap();
    answered.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(answered, vec![s1.clone(), s2.clone()]);
    // Due: nextUpdate before the bound, once per certificate.
    let due =
        b.db.answers_due(t0() + Duration::from_secs(150), 10)
            .unwrap();
    assert_eq!(due, vec![(issuer_id(), s1.clone())]);
    // A revocation drops its certificate's answers in its own transaction.
    other
        .revoke(
            &Revocation {
                serial: s1.clone(),
                revoked_at: t0(),
                reason: Reason::KeyCompromise,
                invalidity_date: None,
            },
            &cert_event(Action::CertificateRevoked, &s1),
        )
        .unwrap();
    assert_eq!(b.db.stored_answer(&[0x30, 1]).unwrap(), None);
    assert_eq!(b.db.answered(std::slice::from_ref(&s1)).unwrap(), vec![]);
    // Past their nextUpdate they are dropped.
    assert_eq!(
        b.db.drop_stale_answers(t0() + Duration::from_secs(200))
            .unwrap(),
        1
    );
    assert_eq!(b.db.stored_answer(&[0x30, 3]).unwrap(), None);
}

on_both_backends!(
    a_lease_has_one_holder_until_it_expires,
    a_stored_crl_is_replaced_only_by_a_higher_number,
    answers_are_stored_once_for_every_node_and_dropped_by_a_revocation,
);

/// Waits up to 5 s for a notice matching `want`.
fn wait_for(got: &Mutex<Vec<Listened>>, want: impl Fn(&Listened) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if got.lock().unwrap().iter().any(&want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Another process's revocation and stored CRL reach a listener as notices (PostgreSQL;
/// SQLite has none and `listen` starts nothing).
#[test]
fn revocations_and_new_crls_are_notified() {
    let s = sqlite();
    let stop = Arc::new(AtomicBool::new(false));
    assert!(
        s.db.listen(stop.clone(), Box::new(|_| {}))
            .unwrap()
            .is_none()
    );
    let Some(b) = postgres() else { return };
    with_issuer(&b);
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let thread =
        b.db.listen(
            stop.clone(),
            Box::new(move |l| sink.lock().unwrap().push(l)),
        )
        .unwrap()
        .unwrap();
    assert!(wait_for(&got, |l| *l == Listened::Up), "listening");
    // Serials and numbers no other test uses: notices go to every schema's listeners.
    let revoked = serial(0x5eed_f00d_0001);
    issue(&b, &revoked);
    let other = process(&b);
    other
        .revoke(
            &Revocation {
                serial: revoked.clone(),
                revoked_at: SystemTime::now(),
                reason: Reason::KeyCompromise,
                invalidity_date: None,
            },
            &cert_event(Action::CertificateRevoked, &revoked),
        )
        .unwrap();
    let want = Listened::Notice(Notice::Revoked {
        issuer: ISSUER.into(),
        serial: revoked,
    });
    assert!(wait_for(&got, |l| *l == want), "{:?}", got.lock().unwrap());
    other.put_crl(ISSUER, &crl(0x5eed_0001)).unwrap();
    let want = Listened::Notice(Notice::Crl {
        issuer: ISSUER.into(),
        number: 0x5eed_0001,
    });
    assert!(wait_for(&got, |l| *l == want), "{:?}", got.lock().unwrap());
    // A lower number is not stored, so not notified.
    other.put_crl(ISSUER, &crl(0x5eed_0000)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let lower = Listened::Notice(Notice::Crl {
        issuer: ISSUER.into(),
        number: 0x5eed_0000,
    });
    assert!(!got.lock().unwrap().contains(&lower));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().unwrap();
}
