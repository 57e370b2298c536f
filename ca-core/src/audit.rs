//! The tamper-evident audit log: a SHA-256 hash chain with checkpoints signed in the key store.
//!
//! Every entry carries the hash of the entry before it, so editing, deleting, inserting or
//! reordering an entry breaks the chain at that point. Someone who can write the database
//! could recompute the whole chain after an edit; checkpoints defeat that: the chain head is
//! signed from time to time with a key that never leaves the key store, and [`verify`] checks
//! every checkpoint against the key store's public key (never a key read from the database).
//!
//! Storage appends entries through [`crate::store::Store`], in the same transaction as the
//! change they describe; this module defines what is hashed and how the chain is checked.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::keystore::{self, SigAlg, Signer, SpkiDer};

pub mod anchor;
mod seal;
pub use seal::{
    CheckpointError, Checkpointer, Evidence, checkpoint_object, sign_checkpoint, verify_complete,
};

/// The hash that the first entry points back to.
pub const GENESIS: [u8; 32] = [0; 32];

const ENTRY_DOMAIN: &[u8] = b"keyhold-audit-entry-v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"keyhold-audit-checkpoint-v1\0";

/// What happened. The names are stable: they are stored and hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A CA was initialised (the ceremony ran).
    CaInitialised,
    /// A key was generated in the key store.
    KeyGenerated,
    /// A key was destroyed in the key store.
    KeyDestroyed,
    /// A key left the key store wrapped under a trusted wrapping key (`keyhold keys export`).
    KeyExported,
    /// A wrapped key was unwrapped into the key store (`keyhold keys import`).
    KeyImported,
    /// A backup archive was written.
    BackupCreated,
    /// A backup failed (scheduled backups record their failures).
    BackupFailed,
    /// The CA was restored from a backup archive (recorded in the restored log).
    BackupRestored,
    /// A request was received and recorded for approval.
    RequestReceived,
    /// A request was refused by policy (nothing else was recorded).
    RequestRefused,
    /// An officer approved a request.
    RequestApproved,
    /// An officer rejected a request.
    RequestRejected,
    /// A serial was reserved and the certificate is about to be signed.
    IssuanceStarted,
    /// A certificate was issued.
    CertificateIssued,
    /// Signing or recording failed; the serial is burnt and never reused.
    SigningFailed,
    /// A reservation left by an interrupted process was closed at start-up.
    IssuanceAbandoned,
    /// The chain head was signed.
    CheckpointSigned,
    /// An API token was created.
    TokenCreated,
    /// An API token was revoked.
    TokenRevoked,
    /// An API token was used (the first request of each token from each address, once a
    /// minute: every change it makes is audited on its own, naming the token).
    TokenUsed,
    /// A certificate was revoked.
    CertificateRevoked,
    /// A code-signing key held for its owner was bound to a request, a certificate, or
    /// retired.
    CodesignKeyBound,
    /// A digest was signed (CMS) with a code-signing key held for its owner.
    CodesignSigned,
    /// A user was created.
    UserCreated,
    /// A user was disabled (their sessions ended).
    UserDisabled,
    /// A disabled user was enabled again.
    UserEnabled,
    /// A user was given a new one-time password.
    UserPasswordReset,
    /// A user changed their own password.
    UserPasswordChanged,
    /// A user signed in.
    LoginSucceeded,
    /// A sign-in was refused.
    LoginFailed,
    /// Too many failed sign-ins locked an account.
    LoginLocked,
    /// A user signed out.
    Logout,
    /// An administrator let an API token sign with a code-signing key besides its owner.
    CodesignTokenBound,
    /// An administrator took that back.
    CodesignTokenUnbound,
    /// A sensitive operation (creating an administrator, destroying a key) was recorded to
    /// wait for a quorum of officers.
    OperationRequested,
    /// An officer approved such an operation.
    OperationApproved,
    /// An officer rejected it.
    OperationRejected,
    /// It was carried out once the quorum was reached.
    OperationDone,
    /// Carrying it out failed.
    OperationFailed,
    /// An issuing CA's certificate was revoked (its parent's CRL lists it).
    CaRevoked,
    /// An HSM member of the key store was taken out of service (once per outage).
    HsmMemberOut,
    /// An HSM member was taken back after a probe signature verified.
    HsmMemberBack,
    /// An ACME account was created.
    AcmeAccountCreated,
    /// An ACME account changed: contact, key (rollover) or status (deactivation).
    AcmeAccountUpdated,
    /// An ACME order was placed.
    AcmeOrderCreated,
    /// An ACME order changed status through finalization (processing, valid, invalid).
    AcmeOrderFinalized,
    /// A client answered an ACME challenge; validation starts.
    AcmeChallengeAnswered,
    /// An ACME validation ended (its result in the details).
    AcmeValidated,
    /// A client deactivated an ACME authorization.
    AcmeAuthzDeactivated,
    /// An external account binding key was created.
    AcmeEabCreated,
    /// An external account binding key was revoked.
    AcmeEabRevoked,
    /// A live node took over the validation of a challenge whose node stopped.
    AcmeChallengeReclaimed,
    /// Expired ACME orders, authorizations and challenges were deleted (counts in details).
    AcmeSwept,
}

impl Action {
    /// The stable name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CaInitialised => "ca.initialised",
            Action::KeyGenerated => "key.generated",
            Action::KeyDestroyed => "key.destroyed",
            Action::KeyExported => "key.exported",
            Action::KeyImported => "key.imported",
            Action::BackupCreated => "backup.created",
            Action::BackupFailed => "backup.failed",
            Action::BackupRestored => "backup.restored",
            Action::RequestReceived => "request.received",
            Action::RequestRefused => "request.refused",
            Action::RequestApproved => "request.approved",
            Action::RequestRejected => "request.rejected",
            Action::IssuanceStarted => "issuance.started",
            Action::CertificateIssued => "certificate.issued",
            Action::SigningFailed => "issuance.failed",
            Action::IssuanceAbandoned => "issuance.abandoned",
            Action::CheckpointSigned => "audit.checkpoint",
            Action::TokenCreated => "token.created",
            Action::TokenRevoked => "token.revoked",
            Action::TokenUsed => "token.used",
            Action::CertificateRevoked => "certificate.revoked",
            Action::CodesignKeyBound => "codesign.key_bound",
            Action::CodesignSigned => "codesign.signed",
            Action::UserCreated => "user.created",
            Action::UserDisabled => "user.disabled",
            Action::UserEnabled => "user.enabled",
            Action::UserPasswordReset => "user.password_reset",
            Action::UserPasswordChanged => "user.password_changed",
            Action::LoginSucceeded => "login.succeeded",
            Action::LoginFailed => "login.failed",
            Action::LoginLocked => "login.locked",
            Action::Logout => "logout",
            Action::CodesignTokenBound => "codesign.token_bound",
            Action::CodesignTokenUnbound => "codesign.token_unbound",
            Action::OperationRequested => "operation.requested",
            Action::OperationApproved => "operation.approved",
            Action::OperationRejected => "operation.rejected",
            Action::OperationDone => "operation.done",
            Action::OperationFailed => "operation.failed",
            Action::CaRevoked => "ca.revoked",
            Action::HsmMemberOut => "hsm.member_out",
            Action::HsmMemberBack => "hsm.member_back",
            Action::AcmeAccountCreated => "acme.account_created",
            Action::AcmeAccountUpdated => "acme.account_updated",
            Action::AcmeOrderCreated => "acme.order_created",
            Action::AcmeOrderFinalized => "acme.order_finalized",
            Action::AcmeChallengeAnswered => "acme.challenge_answered",
            Action::AcmeValidated => "acme.validated",
            Action::AcmeAuthzDeactivated => "acme.authz_deactivated",
            Action::AcmeEabCreated => "acme.eab_created",
            Action::AcmeEabRevoked => "acme.eab_revoked",
            Action::AcmeChallengeReclaimed => "acme.challenge_reclaimed",
            Action::AcmeSwept => "acme.swept",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry to append: who did what to which object, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// What happened.
    pub action: Action,
    /// Who did it: a user name, `cli:<os user>`, or `system`.
    pub actor: String,
    /// From where: `cli`, an IP address, `startup`.
    pub source: String,
    /// The object acted on: `certificate:<serial>`, `request:<id>`, `key:<uri>`.
    pub object: String,
    /// Further facts as `key=value` lines, in the order given. Never secrets.
    pub details: Vec<(String, String)>,
}

impl AuditEvent {
    /// An event with no details.
    pub fn new(
        action: Action,
        actor: impl Into<String>,
        source: impl Into<String>,
        object: impl Into<String>,
    ) -> Self {
        AuditEvent {
            action,
            actor: actor.into(),
            source: source.into(),
            object: object.into(),
            details: Vec::new(),
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.push((key.to_owned(), value.into()));
        self
    }

    /// The details as stored: one `key=value` per line, newlines in values escaped.
    pub fn details_text(&self) -> String {
        let mut out = String::new();
        for (key, value) in &self.details {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(key);
            out.push('=');
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
        out
    }

    /// Seals the event into the entry that follows `prev_hash` in the chain.
    pub fn seal(&self, seq: i64, at: SystemTime, prev_hash: [u8; 32]) -> AuditRecord {
        let mut record = AuditRecord {
            seq,
            at_micros: unix_micros(at),
            actor: self.actor.clone(),
            source: self.source.clone(),
            action: self.action.as_str().to_owned(),
            object: self.object.clone(),
            details: self.details_text(),
            prev_hash,
            hash: [0; 32],
        };
        record.hash = record.compute_hash();
        record
    }
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the log, from 1. Not hashed: the chain itself fixes the order.
    pub seq: i64,
    /// When, in microseconds since the Unix epoch.
    pub at_micros: i64,
    /// Who.
    pub actor: String,
    /// From where.
    pub source: String,
    /// What ([`Action::as_str`]).
    pub action: String,
    /// Which object.
    pub object: String,
    /// `key=value` lines.
    pub details: String,
    /// The hash of the entry before.
    pub prev_hash: [u8; 32],
    /// This entry's hash.
    pub hash: [u8; 32],
}

impl AuditRecord {
    /// SHA-256 over a domain tag, every field but `seq` and `hash` (length-prefixed) and
    /// `prev_hash`.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(ENTRY_DOMAIN);
        h.update(self.at_micros.to_be_bytes());
        for field in [
            &self.actor,
            &self.source,
            &self.action,
            &self.object,
            &self.details,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        h.update(self.prev_hash);
        h.finalize().into()
    }

    /// When, as a time.
    pub fn at(&self) -> SystemTime {
        from_unix_micros(self.at_micros)
    }
}

/// A signed statement that the chain's entry `seq` has hash `head_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The entry signed over.
    pub seq: i64,
    /// That entry's hash.
    pub head_hash: [u8; 32],
    /// When it was signed, in microseconds since the Unix epoch.
    pub at_micros: i64,
    /// The signing key's URI (informational: verification uses the configured key).
    pub key: String,
    /// DER ECDSA signature over [`Checkpoint::message`].
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The bytes that are signed.
    pub fn message(seq: i64, head_hash: &[u8; 32], at_micros: i64) -> Vec<u8> {
        let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
        m.extend_from_slice(CHECKPOINT_DOMAIN);
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(head_hash);
        m.extend_from_slice(&at_micros.to_be_bytes());
        m
    }

    /// Signs the head `(seq, head_hash)` now.
    ///
    /// Fails if the key store cannot sign.
    pub fn sign(
        seq: i64,
        head_hash: [u8; 32],
        key_uri: &str,
        signer: &dyn Signer,
        now: SystemTime,
    ) -> Result<Self, keystore::KeyStoreError> {
        let at_micros = unix_micros(now);
        let signature = signer.sign(&Self::message(seq, &head_hash, at_micros))?;
        Ok(Checkpoint {
            seq,
            head_hash,
            at_micros,
            key: key_uri.to_owned(),
            signature,
        })
    }

    fn verify(&self, alg: SigAlg, key: &SpkiDer) -> bool {
        keystore::verify(
            alg,
            key,
            &Self::message(self.seq, &self.head_hash, self.at_micros),
            &self.signature,
        )
        .is_ok()
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Entry `seq`'s content no longer matches its hash.
    Edited {
        /// The entry.
        seq: i64,
    },
    /// One or more entries before `seq` are missing.
    Deleted {
        /// The first entry after the gap.
        seq: i64,
    },
    /// Entry `seq` was not in the chain as written.
    Inserted {
        /// The entry.
        seq: i64,
    },
    /// Entry `seq` is out of its place.
    Reordered {
        /// The entry.
        seq: i64,
    },
    /// Entries were cut from the end: a checkpoint names an entry that is gone.
    Truncated {
        /// The checkpoint's entry.
        seq: i64,
    },
    /// A checkpoint's signature does not verify with the audit key.
    BadCheckpointSignature {
        /// The checkpoint's entry.
        seq: i64,
    },
    /// A checkpoint names a different hash than the chain holds: the chain was rewritten.
    Rewritten {
        /// The checkpoint's entry.
        seq: i64,
    },
    /// The chain ends at `last` but the recorded head is entry `head`: entries were cut
    /// from the end.
    CutFromEnd {
        /// The chain's last entry (0: none).
        last: i64,
        /// The recorded head.
        head: i64,
    },
    /// Entries from `seq` on lie beyond the recorded head.
    BeyondHead {
        /// The first such entry.
        seq: i64,
    },
    /// The chain's last entry `seq` has a different hash than the recorded head.
    HeadMismatch {
        /// The entry.
        seq: i64,
    },
    /// A checkpoint at entry `seq` is recorded (by its `audit.checkpoint` entry or in the
    /// anchor file) but its row is gone from the database.
    CheckpointDeleted {
        /// The checkpoint's entry.
        seq: i64,
    },
    /// A checkpoint row at entry `seq` has no `audit.checkpoint` entry recording it.
    CheckpointUnrecorded {
        /// The checkpoint's entry.
        seq: i64,
    },
    /// A checkpoint at entry `seq`, signed after the anchor file began, is not in it.
    NotAnchored {
        /// The checkpoint's entry.
        seq: i64,
    },
    /// The database holds checkpoints but the anchor file outside it is gone.
    AnchorMissing,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Edited { seq } => write!(
                f,
                "entry {seq} was edited (its hash no longer matches its content)"
            ),
            Finding::Deleted { seq } => write!(
                f,
                "entries before entry {seq} were deleted (its previous-hash matches no entry)"
            ),
            Finding::Inserted { seq } => {
                write!(f, "entry {seq} was inserted (the chain skips over it)")
            }
            Finding::Reordered { seq } => write!(
                f,
                "entry {seq} was moved out of its place (it follows an entry that comes later)"
            ),
            Finding::Truncated { seq } => write!(
                f,
                "entries up to {seq} are missing from the end (a checkpoint names entry {seq})"
            ),
            Finding::BadCheckpointSignature { seq } => write!(
                f,
                "the checkpoint at entry {seq} has a signature that does not verify with the audit key"
            ),
            Finding::Rewritten { seq } => write!(
                f,
                "the chain was rewritten: the signed checkpoint at entry {seq} names a different hash"
            ),
            Finding::CutFromEnd { last, head } => write!(
                f,
                "entries {}..{head} are missing from the end (the chain ends at entry {last}; \
                 the recorded head is entry {head})",
                last + 1
            ),
            Finding::BeyondHead { seq } => write!(
                f,
                "entries from {seq} on lie beyond the recorded head (inserted, or the head was moved back)"
            ),
            Finding::HeadMismatch { seq } => write!(
                f,
                "the recorded head names a different hash than entry {seq}: the end of the chain was rewritten"
            ),
            Finding::CheckpointDeleted { seq } => write!(
                f,
                "the checkpoint at entry {seq} was deleted (its audit.checkpoint entry or the \
                 anchor file records it, the database no longer holds it)"
            ),
            Finding::CheckpointUnrecorded { seq } => write!(
                f,
                "the checkpoint at entry {seq} has no audit.checkpoint entry recording it"
            ),
            Finding::NotAnchored { seq } => write!(
                f,
                "the checkpoint at entry {seq} is missing from the anchor file {}",
                anchor::FILE_NAME
            ),
            Finding::AnchorMissing => write!(
                f,
                "the anchor file {} is missing but the database holds checkpoints",
                anchor::FILE_NAME
            ),
        }
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries read.
    pub entries: u64,
    /// Checkpoints whose signature and hash matched.
    pub checkpoints_verified: u64,
    /// The last entry covered by a valid checkpoint (0 if none).
    pub covered_up_to: i64,
    /// The first problem, if any.
    pub first_problem: Option<Finding>,
}

impl Report {
    /// Whether the log is intact.
    pub fn ok(&self) -> bool {
        self.first_problem.is_none()
    }
}

/// Walks `entries` (ordered by `seq`) and `checkpoints`, checking each checkpoint against the
/// audit key `(alg, key)` from the key store, and reports the first problem.
pub fn verify(
    entries: &[AuditRecord],
    checkpoints: &[Checkpoint],
    alg: SigAlg,
    key: &SpkiDer,
) -> Report {
    let position: HashMap<[u8; 32], usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.hash, i))
        .collect();
    let mut chain_problem = None;
    let mut prev = GENESIS;
    for (i, entry) in entries.iter().enumerate() {
        if entry.compute_hash() != entry.hash {
            chain_problem = Some(Finding::Edited { seq: entry.seq });
            break;
        }
        if entry.prev_hash != prev {
            chain_problem = Some(classify_break(entries, &position, i, prev));
            break;
        }
        prev = entry.hash;
    }

    let by_seq: HashMap<i64, &AuditRecord> = entries.iter().map(|e| (e.seq, e)).collect();
    let mut checkpoints_verified = 0;
    let mut covered_up_to = 0;
    let mut checkpoint_problem = None;
    for cp in checkpoints {
        if !cp.verify(alg, key) {
            checkpoint_problem = Some(Finding::BadCheckpointSignature { seq: cp.seq });
            break;
        }
        match by_seq.get(&cp.seq) {
            None => {
                checkpoint_problem = Some(Finding::Truncated { seq: cp.seq });
                break;
            }
            Some(entry) if entry.hash != cp.head_hash => {
                checkpoint_problem = Some(Finding::Rewritten { seq: cp.seq });
                break;
            }
            Some(_) => {
                checkpoints_verified += 1;
                covered_up_to = covered_up_to.max(cp.seq);
            }
        }
    }
    Report {
        entries: entries.len() as u64,
        checkpoints_verified,
        covered_up_to,
        first_problem: chain_problem.or(checkpoint_problem),
    }
}

/// Entry `i` does not point back at the entry before it (whose hash is `prev`): say why.
fn classify_break(
    entries: &[AuditRecord],
    position: &HashMap<[u8; 32], usize>,
    i: usize,
    prev: [u8; 32],
) -> Finding {
    let entry = &entries[i];
    // The entry before this one was slipped in: this one points two back.
    if i >= 2 && entry.prev_hash == entries[i - 2].hash {
        return Finding::Inserted {
            seq: entries[i - 1].seq,
        };
    }
    // This entry was slipped in: the next one points at the entry before it.
    if entries
        .get(i + 1)
        .is_some_and(|next| next.prev_hash == prev)
    {
        return Finding::Inserted { seq: entry.seq };
    }
    match position.get(&entry.prev_hash) {
        Some(&p) if p != i.wrapping_sub(1) => Finding::Reordered { seq: entry.seq },
        _ => Finding::Deleted { seq: entry.seq },
    }
}

/// Microseconds since the Unix epoch (0 before it, saturating far in the future).
pub fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`unix_micros`].
pub fn from_unix_micros(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros.max(0).unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::KeySpec;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let r = AuditEvent::new(
                    Action::CertificateIssued,
                    "alice",
                    "cli",
                    format!("certificate:{seq:02x}"),
                )
                .with("profile", "tls-server")
                .seal(seq, from_unix_micros(1_700_000_000_000_000 + seq), prev);
                prev = r.hash;
                r
            })
            .collect()
    }

    fn no_key() -> (SigAlg, SpkiDer) {
        (
            KeySpec::EcP256.signature_algorithm(),
            SpkiDer::from_der_unchecked(Vec::new()),
        )
    }

    fn first(entries: &[AuditRecord]) -> Option<Finding> {
        let (alg, key) = no_key();
        verify(entries, &[], alg, &key).first_problem
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(first(&chain(6)), None);
        assert_eq!(first(&[]), None);
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let mut edited = chain(6);
        edited[2].actor = "mallory".into();
        assert_eq!(first(&edited), Some(Finding::Edited { seq: 3 }));

        let mut deleted = chain(6);
        deleted.remove(2);
        assert_eq!(first(&deleted), Some(Finding::Deleted { seq: 4 }));

        let mut inserted = chain(6);
        let forged = AuditEvent::new(Action::KeyDestroyed, "mallory", "cli", "key:x").seal(
            99,
            SystemTime::now(),
            inserted[1].hash,
        );
        inserted.insert(2, forged);
        assert_eq!(first(&inserted), Some(Finding::Inserted { seq: 99 }));

        let mut reordered = chain(6);
        reordered.swap(2, 4);
        assert_eq!(first(&reordered), Some(Finding::Reordered { seq: 5 }));
    }

    #[test]
    fn details_cannot_smuggle_lines() {
        let e = AuditEvent::new(Action::RequestRejected, "bob", "cli", "request:1")
            .with("reason", "no\nactor=alice");
        assert_eq!(e.details_text(), "reason=no\\nactor=alice");
    }
}
