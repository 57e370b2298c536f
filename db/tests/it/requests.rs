//! Requests: creation, listing, rejection and failure.

use std::time::Duration;

use ca_core::audit::Action;
use ca_core::store::{
    AuditLog, CertificateQueries, IssuanceLedger, RequestFilter, RequestStatus, StoreError,
};

use crate::support::*;

on_both_backends!(
    create_request_numbers_requests_and_names_them_in_the_audit_log,
    requests_page_newest_first_with_filters,
    reject_records_the_officer_and_reason,
    reject_refuses_the_requester_and_decided_requests,
    fail_request_fails_a_pending_request_only,
    a_request_being_issued_cannot_be_rejected_or_failed,
);

fn create_request_numbers_requests_and_names_them_in_the_audit_log(b: &Backend) {
    b.clock.set(t0() + Duration::from_secs(7));
    let first = request(b, "alice");
    let named =
        b.db.create_request(
            &new_request("bob"),
            &event(Action::RequestReceived, "request:named-by-caller"),
        )
        .unwrap();
    assert_eq!((first, named), (1, 2));

    let row = b.db.request(first).unwrap().unwrap();
    let asked = new_request("alice");
    assert_eq!(row.id, 1);
    assert_eq!(row.status, RequestStatus::Pending);
    assert_eq!(row.profile, asked.profile);
    assert_eq!(row.requester, "alice");
    assert_eq!(row.csr_der, asked.csr_der);
    assert_eq!(row.subject, asked.subject);
    assert_eq!(row.sans, asked.sans);
    assert_eq!(row.approvals_needed, 2);
    assert!(row.approvals.is_empty());
    assert_eq!(row.created_at, t0() + Duration::from_secs(7));
    assert_eq!(row.expires_at, asked.expires_at);
    assert_eq!((row.decided_by, row.reason, row.serial), (None, None, None));

    let objects: Vec<_> =
        b.db.audit_entries(1, 2)
            .unwrap()
            .into_iter()
            .map(|e| e.object)
            .collect();
    assert_eq!(objects, ["request:1", "request:named-by-caller"]);
}

fn requests_page_newest_first_with_filters(b: &Backend) {
    for i in 0..7 {
        request(b, if i % 2 == 0 { "alice" } else { "bob" });
    }
    b.db.reject(3, "carol", "no", &event(Action::RequestRejected, ""))
        .unwrap();
    let ids = |f: RequestFilter| -> Vec<i64> {
        b.db.requests(&f)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(RequestFilter::default()), [7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(
        ids(RequestFilter {
            limit: 3,
            ..Default::default()
        }),
        [7, 6, 5]
    );
    assert_eq!(
        ids(RequestFilter {
            limit: 3,
            before_id: Some(5),
            ..Default::default()
        }),
        [4, 3, 2]
    );
    assert_eq!(
        ids(RequestFilter {
            requester: Some("alice".into()),
            ..Default::default()
        }),
        [7, 5, 3, 1]
    );
    assert_eq!(
        ids(RequestFilter {
            status: Some(RequestStatus::Pending),
            requester: Some("alice".into()),
            limit: 2,
            ..Default::default()
        }),
        [7, 5]
    );
    assert_eq!(
        ids(RequestFilter {
            status: Some(RequestStatus::Rejected),
            ..Default::default()
        }),
        [3]
    );
    // Approvals come with each listed request.
    b.db.approve(
        6,
        &ca_core::store::Approval {
            officer: "carol".into(),
            comment: "ok".into(),
            at: t0(),
        },
        t0(),
        &event(Action::RequestApproved, ""),
    )
    .unwrap();
    let listed =
        b.db.requests(&RequestFilter {
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed[0].approvals.len(), 0);
    assert_eq!(listed[1].approvals.len(), 1);
    assert_eq!(listed[1], b.db.request(6).unwrap().unwrap());
}

fn reject_records_the_officer_and_reason(b: &Backend) {
    let id = request(b, "alice");
    b.db.reject(
        id,
        "bob",
        "not ours to sign",
        &event(Action::RequestRejected, ""),
    )
    .unwrap();
    let row = b.db.request(id).unwrap().unwrap();
    assert_eq!(row.status, RequestStatus::Rejected);
    assert_eq!(row.decided_by.as_deref(), Some("bob"));
    assert_eq!(row.reason.as_deref(), Some("not ours to sign"));
}

fn reject_refuses_the_requester_and_decided_requests(b: &Backend) {
    let id = request(b, "alice");
    let err =
        b.db.reject(id, "alice", "mine", &event(Action::RequestRejected, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    b.db.reject(id, "bob", "no", &event(Action::RequestRejected, ""))
        .unwrap();
    let err =
        b.db.reject(id, "carol", "no", &event(Action::RequestRejected, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err =
        b.db.reject(99, "carol", "no", &event(Action::RequestRejected, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        b.db.request(id).unwrap().unwrap().decided_by.as_deref(),
        Some("bob")
    );
}

fn fail_request_fails_a_pending_request_only(b: &Backend) {
    let id = request(b, "alice");
    b.db.fail_request(id, "policy changed", &event(Action::SigningFailed, ""))
        .unwrap();
    let row = b.db.request(id).unwrap().unwrap();
    assert_eq!(row.status, RequestStatus::Failed);
    assert_eq!(row.reason.as_deref(), Some("policy changed"));
    let err =
        b.db.fail_request(id, "again", &event(Action::SigningFailed, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err =
        b.db.fail_request(99, "x", &event(Action::SigningFailed, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

fn a_request_being_issued_cannot_be_rejected_or_failed(b: &Backend) {
    with_issuer(b);
    let id = request(b, "alice");
    let mut cert = new_cert(&serial(1));
    cert.request_id = Some(id);
    b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
        .unwrap();
    let err =
        b.db.reject(id, "bob", "too late", &event(Action::RequestRejected, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err =
        b.db.fail_request(id, "x", &event(Action::SigningFailed, ""))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        b.db.request(id).unwrap().unwrap().status,
        RequestStatus::Pending
    );
}
