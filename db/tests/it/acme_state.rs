//! ACME accounts, orders, authorizations, challenges and EAB keys: statuses move only from
//! the status the caller saw, and every change is audited in the same transaction.

use std::net::IpAddr;
use std::time::Duration;

use ca_core::acme::identifier::{ChallengeType, Identifier};
use ca_core::acme::order::{AuthzStatus, ChallengeStatus, OrderStatus};
use ca_core::acme::store::{
    Account, AccountStatus, AcmeStore, Authz, Challenge, EabKey, Order, Validation,
};
use ca_core::audit::{Action, AuditEvent};
use ca_core::store::{AuditLog, StoreError};

use crate::support::*;

on_both_backends!(
    an_order_round_trips_with_its_authorizations_and_challenges,
    a_challenge_starts_once_and_settles_its_authorization,
    one_key_has_one_account_and_deactivation_sticks,
    eab_keys_are_named_once_and_revoked_once,
    an_order_moves_only_from_the_status_seen,
    only_a_valid_unexpired_authorization_of_the_account_counts_for_revocation,
);

pub(crate) fn ev(action: Action) -> AuditEvent {
    AuditEvent::new(action, "acme:test", "test", "acme-test")
}

fn account(id: &str, thumbprint: &str) -> Account {
    Account {
        id: id.into(),
        thumbprint: thumbprint.into(),
        jwk: "{}".into(),
        status: AccountStatus::Valid,
        contact: vec!["mailto:a@example.org".into()],
        eab_kid: None,
        created_at: t0(),
    }
}

pub(crate) fn order_with_authz(b: &Backend) -> (Order, Authz, Vec<Challenge>) {
    b.db.create_account(&account("acct", "tp"), &ev(Action::AcmeAccountCreated))
        .unwrap();
    let order = Order {
        id: "ord".into(),
        account_id: "acct".into(),
        status: OrderStatus::Pending,
        identifiers: vec![
            Identifier::Dns("*.a.internal".into()),
            Identifier::Ip("10.0.0.1".parse::<IpAddr>().unwrap()),
        ],
        profile: "tls-server".into(),
        not_before: None,
        not_after: Some(t0() + Duration::from_secs(86_400)),
        expires_at: t0() + Duration::from_secs(3600),
        created_at: t0(),
        serial: None,
        error: None,
        replaces: None,
    };
    let authz = Authz {
        id: "az".into(),
        order_id: "ord".into(),
        identifier: Identifier::Dns("a.internal".into()),
        wildcard: true,
        status: AuthzStatus::Pending,
        expires_at: t0() + Duration::from_secs(3600),
    };
    let challenges: Vec<Challenge> = [ChallengeType::Dns01, ChallengeType::Http01]
        .iter()
        .enumerate()
        .map(|(i, kind)| Challenge {
            id: format!("ch{i}"),
            authz_id: "az".into(),
            kind: *kind,
            token: format!("token{i}"),
            status: ChallengeStatus::Pending,
            validated_at: None,
            error: None,
        })
        .collect();
    b.db.create_order(
        &order,
        &[(authz.clone(), challenges.clone())],
        &ev(Action::AcmeOrderCreated),
    )
    .unwrap();
    (order, authz, challenges)
}

fn an_order_round_trips_with_its_authorizations_and_challenges(b: &Backend) {
    let (order, authz, challenges) = order_with_authz(b);
    assert_eq!(b.db.order("ord").unwrap(), Some(order.clone()));
    let authzs = b.db.order_authzs("ord").unwrap();
    assert_eq!(authzs.len(), 1);
    assert_eq!(authzs[0].0, authz);
    let mut got = authzs[0].1.clone();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, challenges);
    assert_eq!(b.db.orders_of("acct", 10).unwrap(), vec![order]);
    assert_eq!(b.db.orders_since("acct", t0()).unwrap(), 1);
    assert_eq!(
        b.db.orders_since("acct", t0() + Duration::from_secs(1))
            .unwrap(),
        0
    );
    assert!(b.db.order("nope").unwrap().is_none());
    assert_eq!(b.db.authzs_for("a.internal", t0()).unwrap(), 1);
    assert_eq!(
        b.db.authzs_for("a.internal", t0() + Duration::from_secs(7200))
            .unwrap(),
        0,
        "an authorization that expired is not counted"
    );
    assert_eq!(b.db.authzs_for("b.internal", t0()).unwrap(), 0);
}

fn a_challenge_starts_once_and_settles_its_authorization(b: &Backend) {
    order_with_authz(b);
    let before = b.db.audit_head().unwrap().map(|h| h.0).unwrap_or(0);
    assert!(
        b.db.start_challenge("ch1", &ev(Action::AcmeChallengeAnswered))
            .unwrap()
    );
    assert!(
        !b.db
            .start_challenge("ch1", &ev(Action::AcmeChallengeAnswered))
            .unwrap()
    );
    assert_eq!(b.db.processing_challenges(10).unwrap().len(), 1);
    assert!(
        b.db.finish_challenge("ch1", &Validation::Valid, &ev(Action::AcmeValidated))
            .unwrap()
    );
    assert!(
        !b.db
            .finish_challenge(
                "ch1",
                &Validation::Invalid("late".into()),
                &ev(Action::AcmeValidated)
            )
            .unwrap(),
        "a settled challenge stays settled"
    );
    let (authz, challenges) = b.db.authz("az").unwrap().unwrap();
    assert_eq!(authz.status, AuthzStatus::Valid);
    let ch1 = challenges.iter().find(|c| c.id == "ch1").unwrap();
    assert_eq!(ch1.status, ChallengeStatus::Valid);
    assert!(ch1.validated_at.is_some());
    // The other challenge cannot start once the authorization is settled.
    assert!(
        !b.db
            .start_challenge("ch0", &ev(Action::AcmeChallengeAnswered))
            .unwrap()
    );
    let after = b.db.audit_head().unwrap().map(|h| h.0).unwrap_or(0);
    assert_eq!(
        after - before,
        2,
        "one audit entry per change that happened"
    );
}

fn one_key_has_one_account_and_deactivation_sticks(b: &Backend) {
    b.db.create_account(&account("a1", "tp1"), &ev(Action::AcmeAccountCreated))
        .unwrap();
    assert!(matches!(
        b.db.create_account(&account("a2", "tp1"), &ev(Action::AcmeAccountCreated)),
        Err(StoreError::Conflict(_))
    ));
    assert!(b.db.account("a2").unwrap().is_none());
    assert_eq!(b.db.account_by_thumbprint("tp1").unwrap().unwrap().id, "a1");
    b.db.create_account(&account("a3", "tp3"), &ev(Action::AcmeAccountCreated))
        .unwrap();
    assert!(matches!(
        b.db.change_account_key("a1", "tp3", "{}", &ev(Action::AcmeAccountUpdated)),
        Err(StoreError::Conflict(_))
    ));
    b.db.change_account_key("a1", "tp9", "{\"k\":1}", &ev(Action::AcmeAccountUpdated))
        .unwrap();
    assert!(b.db.account_by_thumbprint("tp1").unwrap().is_none());
    b.db.update_account(
        "a1",
        &[],
        AccountStatus::Deactivated,
        &ev(Action::AcmeAccountUpdated),
    )
    .unwrap();
    assert_eq!(
        b.db.account("a1").unwrap().unwrap().status,
        AccountStatus::Deactivated
    );
    assert!(matches!(
        b.db.update_account(
            "a1",
            &[],
            AccountStatus::Valid,
            &ev(Action::AcmeAccountUpdated)
        ),
        Err(StoreError::Conflict(_))
    ));
}

fn eab_keys_are_named_once_and_revoked_once(b: &Backend) {
    let key = EabKey {
        kid: "kid1".into(),
        name: "team-a".into(),
        profiles: vec!["tls-server".into()],
        names: vec![".a.internal".into()],
        hmac_sealed: vec![1, 2, 3],
        created_at: t0(),
        created_by: "admin".into(),
        revoked_at: None,
    };
    b.db.create_eab_key(&key, &ev(Action::AcmeEabCreated))
        .unwrap();
    let again = EabKey {
        kid: "kid2".into(),
        ..key.clone()
    };
    assert!(matches!(
        b.db.create_eab_key(&again, &ev(Action::AcmeEabCreated)),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(b.db.eab_key("kid1").unwrap(), Some(key));
    b.db.revoke_eab_key("team-a", &ev(Action::AcmeEabRevoked))
        .unwrap();
    assert!(b.db.eab_key("kid1").unwrap().unwrap().revoked_at.is_some());
    assert!(matches!(
        b.db.revoke_eab_key("team-a", &ev(Action::AcmeEabRevoked)),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        b.db.revoke_eab_key("nobody", &ev(Action::AcmeEabRevoked)),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(b.db.eab_keys().unwrap().len(), 1);
}

fn an_order_moves_only_from_the_status_seen(b: &Backend) {
    order_with_authz(b);
    let ev = ev(Action::AcmeOrderFinalized);
    assert!(
        b.db.set_order_status(
            "ord",
            OrderStatus::Pending,
            OrderStatus::Processing,
            None,
            None,
            &ev
        )
        .unwrap()
    );
    assert!(
        !b.db
            .set_order_status(
                "ord",
                OrderStatus::Pending,
                OrderStatus::Processing,
                None,
                None,
                &ev
            )
            .unwrap(),
        "a second finalize loses"
    );
    assert!(
        b.db.set_order_status(
            "ord",
            OrderStatus::Processing,
            OrderStatus::Valid,
            Some("0a"),
            None,
            &ev
        )
        .unwrap()
    );
    let order = b.db.order("ord").unwrap().unwrap();
    assert_eq!(
        (order.status, order.serial.as_deref()),
        (OrderStatus::Valid, Some("0a"))
    );
}

fn only_a_valid_unexpired_authorization_of_the_account_counts_for_revocation(b: &Backend) {
    order_with_authz(b);
    b.db.create_account(
        &account("other", "tp-other"),
        &ev(Action::AcmeAccountCreated),
    )
    .unwrap();
    let name = Identifier::Dns("a.internal".into());
    let holds = |acct: &str, id: &Identifier, wildcard: bool, secs: u64| {
        b.db.holds_authorization(acct, id, wildcard, t0() + Duration::from_secs(secs))
            .unwrap()
    };
    assert!(
        !holds("acct", &name, true, 1),
        "a pending authorization does not count"
    );
    assert!(
        b.db.start_challenge("ch0", &ev(Action::AcmeChallengeAnswered))
            .unwrap()
    );
    assert!(
        b.db.finish_challenge("ch0", &Validation::Valid, &ev(Action::AcmeValidated))
            .unwrap()
    );
    assert!(
        holds("acct", &name, true, 1),
        "the wildcard's own authorization"
    );
    assert!(
        holds("acct", &name, false, 1),
        "it covers the base name too"
    );
    assert!(
        !holds("other", &name, false, 1),
        "another account's does not count"
    );
    assert!(
        !holds("acct", &name, false, 3600),
        "an expired one does not count"
    );
    assert!(!holds(
        "acct",
        &Identifier::Dns("b.internal".into()),
        false,
        1
    ));
    let ip = Identifier::Ip("10.0.0.1".parse::<IpAddr>().unwrap());
    assert!(
        !holds("acct", &ip, false, 1),
        "the order's other identifier has no authorization"
    );
    assert!(
        b.db.deactivate_authz("az", &ev(Action::AcmeAuthzDeactivated))
            .unwrap()
    );
    assert!(
        !holds("acct", &name, true, 1),
        "a deactivated one does not count"
    );
}
