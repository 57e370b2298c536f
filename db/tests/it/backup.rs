//! Consistent export and import for backups, on both backends: a snapshot restores into a
//! new database with every certificate, revocation, request and audit entry of its instant,
//! and nothing after it; a restore never writes over a CA or a newer schema.

use std::time::Duration;

use ca_core::audit::Action;
use ca_core::revocation::Reason;
use ca_core::store::{
    AuditLog, CertStatus, CertificateQueries, IssuanceLedger, Revocation, RevocationLedger,
    StoreError,
};
use db::Db;
use db::backup::{self, Snapshot};

use crate::support::*;

fn revoke(b: &Backend, n: u64) {
    let s = serial(n);
    b.db.revoke(
        &Revocation {
            serial: s.clone(),
            reason: Reason::KeyCompromise,
            invalidity_date: None,
            revoked_at: t0() + Duration::from_secs(60),
        },
        &cert_event(Action::CertificateRevoked, &s),
    )
    .unwrap();
}

/// A database for the restore: a new SQLite file, or a new empty PostgreSQL schema.
fn target(b: &Backend, dir: &std::path::Path) -> (String, Option<Backend>) {
    if b.is_postgres() {
        let fresh = postgres().unwrap();
        (fresh.url.clone(), Some(fresh))
    } else {
        (
            format!("sqlite://{}", dir.join("restored.db").display()),
            None,
        )
    }
}

fn a_snapshot_restores_its_instant_and_nothing_after_it(b: &Backend) {
    with_issuer(b);
    for n in 1..=3 {
        issue(b, &serial(n));
    }
    revoke(b, 1);
    let request_id = request(b, "carol");
    let published = b.db.next_crl_number(&issuer_id(), t0()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let snap_dir = dir.path().join("snap");
    std::fs::create_dir(&snap_dir).unwrap();
    let snap: Snapshot = b.db.snapshot(&snap_dir).unwrap();
    assert_eq!(snap.backend, b.name);
    assert_eq!(snap.schema_version, backup::schema_version().unwrap());
    assert_eq!(snap.audit_head, b.db.audit_head().unwrap());
    for (_, path) in &snap.files {
        assert!(path.starts_with(&snap_dir), "{}", path.display());
    }

    // After the backup: more certificates, revocations and CRLs.
    issue(b, &serial(4));
    revoke(b, 2);
    let later = t0() + Duration::from_secs(3600);
    let published_after = b.db.next_crl_number(&issuer_id(), later).unwrap();
    assert!(published_after > published);

    let (url, _keep) = target(b, dir.path());
    backup::restore(&snap_dir, snap.backend, &snap.schema_version, &url).unwrap();
    let restored = Db::open(&url).unwrap();
    assert_eq!(restored.audit_head().unwrap(), snap.audit_head);
    for n in 1..=3 {
        assert!(
            restored.certificate(&serial(n)).unwrap().is_some(),
            "serial {n}"
        );
    }
    assert!(restored.certificate(&serial(4)).unwrap().is_none());
    assert_eq!(
        restored.certificate(&serial(1)).unwrap().unwrap().status,
        CertStatus::Revoked
    );
    assert_eq!(
        restored.certificate(&serial(2)).unwrap().unwrap().status,
        CertStatus::Valid
    );
    assert!(restored.request(request_id).unwrap().is_some());
    // The chain restored whole: every entry still hashes to the next.
    let head = snap.audit_head.unwrap().0;
    let entries = restored.audit_entries(1, head).unwrap();
    let report = ca_core::audit::verify(
        &entries,
        &[],
        ca_core::keystore::SigAlg::EcdsaP256Sha256,
        &ca_core::keystore::SpkiDer::from_der_unchecked(Vec::new()),
    );
    assert!(report.first_problem.is_none(), "{report:?}");
    assert_eq!(report.entries as i64, head);

    // Work goes on: a new request gets a fresh id, a new certificate is recorded, and the
    // next CRL number is above every number published before and after the backup.
    let next_request = restored
        .create_request(&new_request("dave"), &event(Action::RequestReceived, ""))
        .unwrap();
    assert!(next_request > request_id);
    restored
        .reserve(
            &new_cert(&serial(5)),
            &cert_event(Action::IssuanceStarted, &serial(5)),
        )
        .unwrap();
    let now = later + Duration::from_secs(60);
    let next = restored.next_crl_number(&issuer_id(), now).unwrap();
    assert!(next > published_after, "{next} <= {published_after}");
}

fn a_restore_never_writes_over_a_ca_a_newer_schema_or_the_other_backend(b: &Backend) {
    with_issuer(b);
    issue(b, &serial(1));
    let dir = tempfile::tempdir().unwrap();
    let snap_dir = dir.path().join("snap");
    std::fs::create_dir(&snap_dir).unwrap();
    let snap = b.db.snapshot(&snap_dir).unwrap();

    // Over this very database (it holds a CA).
    let err = backup::restore(&snap_dir, snap.backend, &snap.schema_version, &b.url).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(b.db.certificate(&serial(1)).unwrap().is_some());

    let err = backup::restore(&snap_dir, snap.backend, "99991231000000", &b.url).unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err}");
    assert!(err.to_string().contains("99991231000000"), "{err}");

    let other = if b.is_postgres() {
        format!("sqlite://{}", dir.path().join("x.db").display())
    } else {
        "postgres://nobody@/nowhere".to_owned()
    };
    let err = backup::restore(&snap_dir, snap.backend, &snap.schema_version, &other).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(!dir.path().join("x.db").exists());
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// A table added by a later migration must be added to the backup's list too.
fn every_table_of_the_schema_is_in_the_backup(b: &Backend) {
    use diesel::{Connection, RunQueryDsl};
    let mut names: Vec<String> = if b.is_postgres() {
        let mut c = diesel::PgConnection::establish(&b.url).unwrap();
        diesel::sql_query(
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .load::<Name>(&mut c)
        .unwrap()
    } else {
        let mut c =
            diesel::SqliteConnection::establish(b.url.trim_start_matches("sqlite://")).unwrap();
        diesel::sql_query(
            // The full-text index and its shadow tables live in the file VACUUM INTO copies.
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name NOT LIKE 'certificates_search%'",
        )
        .load::<Name>(&mut c)
        .unwrap()
    }
    .into_iter()
    .map(|n| n.name)
    .filter(|n| n != "__diesel_schema_migrations")
    .collect();
    names.sort();
    let mut listed: Vec<String> = backup::TABLES.iter().map(|t| t.to_string()).collect();
    listed.sort();
    assert_eq!(names, listed);
}

on_both_backends!(
    every_table_of_the_schema_is_in_the_backup,
    a_snapshot_restores_its_instant_and_nothing_after_it,
    a_restore_never_writes_over_a_ca_a_newer_schema_or_the_other_backend,
);
