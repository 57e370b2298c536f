//! Approval rules: who may approve, how often, until when.

use std::time::{Duration, SystemTime};

use ca_core::audit::Action;
use ca_core::store::{
    Approval, AuditLog, CertificateQueries, IssuanceLedger, RequestStatus, StoreError,
};

use crate::support::*;

on_both_backends!(
    approvals_accumulate_oldest_first,
    the_requester_cannot_approve_their_own_request,
    an_officer_approves_a_request_once,
    an_expired_request_cannot_be_approved,
    only_pending_requests_can_be_approved,
    approving_an_unknown_request_is_not_found,
);

fn approval(officer: &str, at: SystemTime) -> Approval {
    Approval {
        officer: officer.into(),
        comment: format!("{officer} agrees"),
        at,
    }
}

fn approve(
    b: &Backend,
    id: i64,
    officer: &str,
    at: SystemTime,
) -> Result<ca_core::store::RequestRow, StoreError> {
    b.db.approve(
        id,
        &approval(officer, at),
        at,
        &event(Action::RequestApproved, &format!("request:{id}")).with("officer", officer),
    )
}

fn approvals_accumulate_oldest_first(b: &Backend) {
    let id = request(b, "alice");
    let later = t0() + Duration::from_secs(60);
    let row = approve(b, id, "carol", later).unwrap();
    assert_eq!(row.approvals, [approval("carol", later)]);
    let row = approve(b, id, "bob", later + Duration::from_secs(1)).unwrap();
    assert_eq!(
        row.approvals,
        [
            approval("carol", later),
            approval("bob", later + Duration::from_secs(1))
        ]
    );
    // Enough approvals do not change the status: issuance does, by completing.
    assert_eq!(row.status, RequestStatus::Pending);
    assert_eq!(b.db.request(id).unwrap().unwrap(), row);
    let actions: Vec<_> =
        b.db.audit_entries(1, 3)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
    assert_eq!(
        actions,
        ["request.received", "request.approved", "request.approved"]
    );
}

fn the_requester_cannot_approve_their_own_request(b: &Backend) {
    let id = request(b, "alice");
    let err = approve(b, id, "alice", t0()).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(b.db.request(id).unwrap().unwrap().approvals.is_empty());
    assert_eq!(b.db.audit_head().unwrap().unwrap().0, 1, "nothing appended");
}

fn an_officer_approves_a_request_once(b: &Backend) {
    let id = request(b, "alice");
    approve(b, id, "bob", t0()).unwrap();
    let err = approve(b, id, "bob", t0() + Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(b.db.request(id).unwrap().unwrap().approvals.len(), 1);
}

fn an_expired_request_cannot_be_approved(b: &Backend) {
    let id = request(b, "alice");
    let expires = new_request("alice").expires_at;
    let err = approve(b, id, "bob", expires).unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "at the deadline: {err:?}"
    );
    let err = approve(b, id, "bob", expires + Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "after it: {err:?}");
    approve(b, id, "bob", expires - Duration::from_secs(1)).unwrap();
}

fn only_pending_requests_can_be_approved(b: &Backend) {
    with_issuer(b);
    let rejected = request(b, "alice");
    b.db.reject(rejected, "bob", "no", &event(Action::RequestRejected, ""))
        .unwrap();
    let failed = request(b, "alice");
    b.db.fail_request(failed, "x", &event(Action::SigningFailed, ""))
        .unwrap();
    let issued = request(b, "alice");
    let mut cert = new_cert(&serial(1));
    cert.request_id = Some(issued);
    b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
        .unwrap();
    b.db.complete(&serial(1), b"DER", &event(Action::CertificateIssued, ""))
        .unwrap();
    for id in [rejected, failed, issued] {
        let err = approve(b, id, "carol", t0()).unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(_)),
            "request {id}: {err:?}"
        );
    }
}

fn approving_an_unknown_request_is_not_found(b: &Backend) {
    let err = approve(b, 42, "bob", t0()).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}
