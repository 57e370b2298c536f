//! The OCSP pre-signer and certificates recorded late (issue 20, item 4): one reserved
//! before, but recorded after, a certificate the pre-signer has already passed still gets
//! its answer signed ahead of time.

use std::time::{Duration, SystemTime};

use ca_core::audit::{Action, AuditEvent};
use ca_core::issuer::IssuerId;
use ca_core::revocation::publish::Presigner;
use ca_core::store::{NewCertificate, Serial};

use crate::api::Fixture;

fn reserve(fx: &Fixture, serial: &Serial) {
    let now = SystemTime::now();
    fx.state
        .ledger
        .reserve(
            &NewCertificate {
                serial: serial.clone(),
                issuer: IssuerId::new("issuing-ca").unwrap(),
                profile: "tls-server".into(),
                requester: "alice".into(),
                subject: format!("CN={serial}.internal"),
                sans: format!("DNS:{serial}.internal"),
                not_before: now,
                not_after: now + Duration::from_secs(86_400),
                request_id: None,
            },
            &AuditEvent::new(Action::IssuanceStarted, "alice", "test", "certificate:x"),
        )
        .unwrap();
}

fn complete(fx: &Fixture, serial: &Serial) {
    fx.state
        .ledger
        .complete(
            serial,
            b"DER",
            &AuditEvent::new(Action::CertificateIssued, "alice", "test", "certificate:x"),
        )
        .unwrap();
}

#[test]
fn a_certificate_recorded_after_the_cursor_passed_its_reservation_is_presigned() {
    let fx = Fixture::new();
    let mut presigner = Presigner::new(fx.state.publisher.clone());
    presigner.tick();
    let before = fx.state.publisher.answers_held();
    // Slow: reserved first, still signing.
    let slow = Serial::parse("5107").unwrap();
    reserve(&fx, &slow);
    std::thread::sleep(Duration::from_millis(5));
    // Fast: reserved after it, recorded before it.
    let fast = Serial::parse("fa57").unwrap();
    reserve(&fx, &fast);
    complete(&fx, &fast);
    presigner.tick();
    let after_fast = fx.state.publisher.answers_held();
    assert!(
        after_fast > before,
        "the fast certificate's answer was signed"
    );
    // Past the lookback window, so that only the open reservation keeps the cursor back.
    std::thread::sleep(Duration::from_millis(2_100));
    presigner.tick();
    assert_eq!(
        fx.state.publisher.answers_held(),
        after_fast,
        "nothing signed twice"
    );
    complete(&fx, &slow);
    presigner.tick();
    assert!(
        fx.state.publisher.answers_held() > after_fast,
        "the slow certificate's answer was signed ahead of time too"
    );
}
