//! The audit log resists tampering: raw SQL edits, deletes, inserts, reorders and rewrites
//! entries behind Keyhold's back, and `ca_core::audit::verify` names what happened.

use std::sync::Arc;

use ca_core::audit::{self, Action, AuditRecord, Checkpoint, Finding, Report};
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::{KeyRef, KeySpec, KeyStore, Signer};
use ca_core::secret::Secret;
use ca_core::store::AuditLog;

use crate::support::*;

on_both_backends!(
    an_untouched_log_verifies_with_its_checkpoint,
    an_edited_entry_is_found,
    a_deleted_entry_is_found,
    an_inserted_entry_is_found,
    swapped_entries_are_found,
    a_rewritten_chain_is_caught_by_the_signed_checkpoint,
    entries_cut_from_the_end_are_caught_by_the_checkpoint,
    entries_cut_from_the_end_are_caught_by_the_next_append,
    a_forged_checkpoint_signature_is_found,
);

/// The audit key, in an embedded token of its own.
struct AuditKey {
    _dir: tempfile::TempDir,
    signer: Arc<dyn Signer>,
}

fn audit_key() -> AuditKey {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedKeyStore::create(
        &dir.path().join("token"),
        &Secret::new("audit test passphrase".into()),
        KdfParams::insecure_for_tests(),
    )
    .unwrap();
    let key = KeyRef::new("audit").unwrap();
    store.generate(&key, KeySpec::EcP256).unwrap();
    AuditKey {
        signer: store.signer(&key).unwrap(),
        _dir: dir,
    }
}

/// Six entries, then a checkpoint over entry 6 (whose own entry is 7).
fn logged(b: &Backend) -> AuditKey {
    let key = audit_key();
    for i in 1..=6 {
        b.db.audit(&[
            event(Action::KeyGenerated, &format!("key:embedded:k{i}")).with("n", i.to_string())
        ])
        .unwrap();
    }
    checkpoint(b, &key);
    key
}

fn checkpoint(b: &Backend, key: &AuditKey) {
    let (seq, hash) = b.db.audit_head().unwrap().unwrap();
    let cp = Checkpoint::sign(
        seq,
        hash,
        "embedded:audit",
        key.signer.as_ref(),
        b.clock.now(),
    )
    .unwrap();
    b.db.add_checkpoint(&cp, &event(Action::CheckpointSigned, "audit"))
        .unwrap();
}

fn verify(b: &Backend, key: &AuditKey) -> Report {
    let entries = b.db.audit_entries(1, i64::MAX).unwrap();
    let checkpoints = b.db.checkpoints().unwrap();
    audit::verify(
        &entries,
        &checkpoints,
        key.signer.algorithm(),
        key.signer.public_key(),
    )
}

fn found(b: &Backend, key: &AuditKey) -> Option<Finding> {
    verify(b, key).first_problem
}

/// An INSERT of `r` in raw SQL.
fn insert_sql(b: &Backend, r: &AuditRecord) -> String {
    format!(
        "INSERT INTO audit_log (seq, at, actor, source, action, object, details, prev_hash, hash) \
         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
        r.seq,
        r.at_micros,
        text(&r.actor),
        text(&r.source),
        text(&r.action),
        text(&r.object),
        text(&r.details),
        b.blob(&r.prev_hash),
        b.blob(&r.hash)
    )
}

fn an_untouched_log_verifies_with_its_checkpoint(b: &Backend) {
    let key = logged(b);
    let report = verify(b, &key);
    assert_eq!(report.first_problem, None);
    assert_eq!(report.entries, 7);
    assert_eq!(report.checkpoints_verified, 1);
    assert_eq!(report.covered_up_to, 6);
}

fn an_edited_entry_is_found(b: &Backend) {
    let key = logged(b);
    b.exec("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3");
    assert_eq!(found(b, &key), Some(Finding::Edited { seq: 3 }));
}

fn a_deleted_entry_is_found(b: &Backend) {
    let key = logged(b);
    b.exec("DELETE FROM audit_log WHERE seq = 3");
    assert_eq!(found(b, &key), Some(Finding::Deleted { seq: 4 }));
}

fn an_inserted_entry_is_found(b: &Backend) {
    let key = logged(b);
    let entries = b.db.audit_entries(1, 2).unwrap();
    // The forger chains a plausible entry onto entry 2 and renumbers the rest to make room.
    let forged =
        event(Action::KeyDestroyed, "key:embedded:ca").seal(3, b.clock.now(), entries[1].hash);
    b.exec(&format!(
        "UPDATE audit_log SET seq = -seq WHERE seq >= 3;
         UPDATE audit_log SET seq = 1 - seq WHERE seq < 0;
         {};",
        insert_sql(b, &forged)
    ));
    assert_eq!(found(b, &key), Some(Finding::Inserted { seq: 3 }));
}

fn swapped_entries_are_found(b: &Backend) {
    let key = logged(b);
    b.exec(
        "UPDATE audit_log SET seq = -1 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = 5;
         UPDATE audit_log SET seq = 5 WHERE seq = -1;",
    );
    // What was entry 5 now stands third, after entry 2: out of its place.
    assert_eq!(found(b, &key), Some(Finding::Reordered { seq: 3 }));
}

fn a_rewritten_chain_is_caught_by_the_signed_checkpoint(b: &Backend) {
    let key = logged(b);
    // Someone who can write the database edits entry 3 and recomputes every hash after it,
    // head included: the chain itself is consistent again.
    let mut entries = b.db.audit_entries(1, i64::MAX).unwrap();
    entries[2].actor = "mallory".into();
    let mut prev = entries[1].hash;
    let mut sql = String::new();
    for e in &mut entries[2..] {
        e.prev_hash = prev;
        e.hash = e.compute_hash();
        prev = e.hash;
        sql.push_str(&format!(
            "UPDATE audit_log SET actor = {}, prev_hash = {}, hash = {} WHERE seq = {};\n",
            text(&e.actor),
            b.blob(&e.prev_hash),
            b.blob(&e.hash),
            e.seq
        ));
    }
    sql.push_str(&format!("UPDATE audit_head SET hash = {};", b.blob(&prev)));
    b.exec(&sql);
    let entries = b.db.audit_entries(1, i64::MAX).unwrap();
    let (alg, spki) = (key.signer.algorithm(), key.signer.public_key());
    assert_eq!(
        audit::verify(&entries, &[], alg, spki).first_problem,
        None,
        "the chain alone looks fine"
    );
    assert_eq!(found(b, &key), Some(Finding::Rewritten { seq: 6 }));
}

fn entries_cut_from_the_end_are_caught_by_the_checkpoint(b: &Backend) {
    let key = logged(b);
    b.exec("DELETE FROM audit_log WHERE seq >= 6");
    assert_eq!(found(b, &key), Some(Finding::Truncated { seq: 6 }));
}

fn entries_cut_from_the_end_are_caught_by_the_next_append(b: &Backend) {
    let key = logged(b);
    b.exec("DELETE FROM audit_log WHERE seq >= 7");
    // The store keeps the head itself: new entries chain from the true head, and a
    // checkpoint signed now names it.
    assert_eq!(b.db.audit_head().unwrap().unwrap().0, 7);
    b.db.audit(&[event(Action::KeyGenerated, "key:embedded:next")])
        .unwrap();
    assert_eq!(found(b, &key), Some(Finding::Deleted { seq: 8 }));
}

fn a_forged_checkpoint_signature_is_found(b: &Backend) {
    let key = logged(b);
    let other = audit_key();
    let (seq, hash) = (6, b.db.audit_entries(6, 6).unwrap()[0].hash);
    let forged = Checkpoint::sign(
        seq,
        hash,
        "embedded:audit",
        other.signer.as_ref(),
        b.clock.now(),
    )
    .unwrap();
    b.exec(&format!(
        "UPDATE audit_checkpoints SET signature = {} WHERE seq = 6",
        b.blob(&forged.signature)
    ));
    assert_eq!(
        found(b, &key),
        Some(Finding::BadCheckpointSignature { seq: 6 })
    );
}
