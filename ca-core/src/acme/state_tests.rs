//! Tests of identifiers and the order state machine.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::ProblemKind;
use super::identifier::{ChallengeType, Identifier, order_identifiers};
use super::order::{
    AuthzStatus as A, ChallengeAnswer, ChallengeStatus as C, OrderStatus as O, answer_challenge,
    authz_status, check_finalize, order_status, retry_after,
};

fn id(kind: &str, value: &str) -> Result<Identifier, super::AcmeProblem> {
    Identifier::from_json(&json!({"type": kind, "value": value}))
}

#[test]
fn dns_names_are_lowercased_and_wildcards_only_whole_leftmost_labels() {
    assert_eq!(
        id("dns", "WWW.Example.Internal").unwrap(),
        Identifier::Dns("www.example.internal".into())
    );
    let wildcard = id("dns", "*.svc.internal").unwrap();
    assert!(wildcard.is_wildcard());
    assert_eq!(wildcard.authorization_value(), "svc.internal");
    for bad in [
        "a.*.internal",
        "*a.internal",
        "**.internal",
        "a..internal",
        "-a.internal",
        "internal",
        "a_b.internal",
        "a.internal.",
    ] {
        assert_eq!(
            id("dns", bad).unwrap_err().kind,
            ProblemKind::RejectedIdentifier,
            "{bad}"
        );
    }
}

#[test]
fn ip_identifiers_are_canonical_and_never_dns() {
    assert_eq!(
        id("ip", "10.1.2.3").unwrap(),
        Identifier::Ip("10.1.2.3".parse().unwrap())
    );
    assert!(id("ip", "2001:db8::1").is_ok());
    assert_eq!(
        id("ip", "2001:DB8:0::1").unwrap_err().kind,
        ProblemKind::Malformed
    );
    assert_eq!(
        id("ip", "010.1.2.3").unwrap_err().kind,
        ProblemKind::Malformed
    );
    assert_eq!(
        id("dns", "10.1.2.3").unwrap_err().kind,
        ProblemKind::Malformed
    );
    assert_eq!(
        id("email", "a@b.c").unwrap_err().kind,
        ProblemKind::UnsupportedIdentifier
    );
}

#[test]
fn wildcards_get_only_dns01_and_ips_never_dns01() {
    assert_eq!(
        id("dns", "*.a.internal").unwrap().challenge_types(),
        &[ChallengeType::Dns01]
    );
    let ip = id("ip", "10.0.0.1").unwrap();
    assert!(!ip.challenge_types().contains(&ChallengeType::Dns01));
    assert_eq!(id("dns", "a.internal").unwrap().challenge_types().len(), 3);
}

#[test]
fn order_identifiers_are_bounded_deduplicated_and_non_empty() {
    let two = json!([{"type": "dns", "value": "b.internal"}, {"type": "dns", "value": "B.internal"}, {"type": "dns", "value": "a.internal"}]);
    assert_eq!(order_identifiers(&two, 50).unwrap().len(), 2);
    assert_eq!(
        order_identifiers(&two, 2).unwrap_err().kind,
        ProblemKind::RejectedIdentifier
    );
    assert_eq!(
        order_identifiers(&json!([]), 50).unwrap_err().kind,
        ProblemKind::Malformed
    );
}

#[test]
fn order_is_ready_only_when_every_authorization_is_valid() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let later = now + Duration::from_secs(3600);
    assert_eq!(
        order_status(O::Pending, &[A::Valid, A::Pending], later, now),
        O::Pending
    );
    assert_eq!(
        order_status(O::Pending, &[A::Valid, A::Valid], later, now),
        O::Ready
    );
    assert_eq!(
        order_status(O::Pending, &[A::Valid, A::Invalid], later, now),
        O::Invalid
    );
    assert_eq!(
        order_status(O::Ready, &[A::Valid, A::Deactivated], later, now),
        O::Invalid
    );
    assert_eq!(
        order_status(O::Pending, &[A::Pending], now, now),
        O::Invalid,
        "expired"
    );
    assert_eq!(
        order_status(O::Valid, &[A::Valid], now, now),
        O::Valid,
        "settled stays"
    );
    assert_eq!(retry_after(O::Processing), Some(super::order::RETRY_AFTER));
    assert_eq!(retry_after(O::Ready), None);
}

#[test]
fn authorization_follows_its_challenges_and_expires_while_pending() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let later = now + Duration::from_secs(60);
    assert_eq!(
        authz_status(A::Pending, &[C::Pending, C::Valid], later, now),
        A::Valid
    );
    assert_eq!(
        authz_status(A::Pending, &[C::Invalid, C::Pending], later, now),
        A::Invalid
    );
    assert_eq!(
        authz_status(A::Pending, &[C::Processing], now, now),
        A::Expired
    );
    assert_eq!(
        authz_status(A::Deactivated, &[C::Valid], later, now),
        A::Deactivated
    );
}

#[test]
fn finalize_before_ready_is_order_not_ready() {
    assert!(check_finalize(O::Ready).is_ok());
    for status in [O::Pending, O::Processing, O::Valid, O::Invalid] {
        assert_eq!(
            check_finalize(status).unwrap_err().kind,
            ProblemKind::OrderNotReady
        );
    }
}

#[test]
fn answering_a_challenge_starts_validation_once() {
    assert_eq!(
        answer_challenge(A::Pending, C::Pending).unwrap(),
        ChallengeAnswer::StartValidation
    );
    assert_eq!(
        answer_challenge(A::Pending, C::Processing).unwrap(),
        ChallengeAnswer::Unchanged
    );
    assert_eq!(
        answer_challenge(A::Valid, C::Valid).unwrap(),
        ChallengeAnswer::Unchanged
    );
    assert_eq!(
        answer_challenge(A::Expired, C::Pending).unwrap_err().kind,
        ProblemKind::Malformed
    );
}

mod nonces {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crate::acme::ProblemKind;
    use crate::acme::nonce::{NONCE_TTL, NonceId, NonceKey, NonceLedger, RedeemError, redeem};
    use crate::store::StoreError;

    /// The ledger's contract in memory, standing in for the database here only; the db
    /// crate's tests run the same contract on SQLite and PostgreSQL.
    #[derive(Default)]
    struct Ledger(Mutex<HashSet<NonceId>>);

    impl NonceLedger for Ledger {
        fn redeem_nonce(&self, id: &NonceId, _: SystemTime) -> Result<bool, StoreError> {
            Ok(self.0.lock().unwrap().insert(*id))
        }
        fn sweep_nonces(&self, _: SystemTime) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    fn refused(r: Result<(), RedeemError>) -> ProblemKind {
        match r {
            Err(RedeemError::Refused(p)) => p.kind,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_nonce_minted_on_one_node_is_redeemed_once_on_another() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let node_a = NonceKey::from_secret(&[9; 32]).unwrap();
        let node_b = NonceKey::from_secret(&[9; 32]).unwrap();
        let ledger = Ledger::default();
        let nonce = node_a.mint(now).unwrap();
        redeem(&node_b, &ledger, &nonce, now + Duration::from_secs(5)).unwrap();
        assert_eq!(
            refused(redeem(&node_a, &ledger, &nonce, now)),
            ProblemKind::BadNonce
        );
    }

    #[test]
    fn forged_expired_and_foreign_nonces_are_bad_nonce() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let key = NonceKey::from_secret(&[9; 32]).unwrap();
        let other = NonceKey::from_secret(&[8; 32]).unwrap();
        let ledger = Ledger::default();
        let nonce = key.mint(now).unwrap();
        assert_eq!(
            refused(redeem(&other, &ledger, &nonce, now)),
            ProblemKind::BadNonce
        );
        let late = now + NONCE_TTL;
        assert_eq!(
            refused(redeem(&key, &ledger, &nonce, late)),
            ProblemKind::BadNonce
        );
        let mut tampered = nonce.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            refused(redeem(&key, &ledger, &tampered, now)),
            ProblemKind::BadNonce
        );
        assert_eq!(
            refused(redeem(&key, &ledger, "short", now)),
            ProblemKind::BadNonce
        );
        assert!(NonceKey::from_secret(&[1; 31]).is_err());
        assert_eq!(format!("{key:?}"), "NonceKey(..)");
    }
}
