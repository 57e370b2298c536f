//! Sealing and checking the whole log: a checkpoint is signed over the recorded head,
//! stored with the `audit.checkpoint` entry that records it, and appended to the anchor file;
//! [`verify_complete`] checks the chain against all three.
//!
//! Invariant: with the log intact, (1) the chain ends exactly at the recorded head, (2) every
//! checkpoint row has its `audit.checkpoint` entry and every such entry its row, and (3)
//! every anchored checkpoint is a row, and every row signed after the first anchored one is
//! anchored. Cutting entries from the end, with or without the checkpoints and the head,
//! breaks one of them.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::anchor::{AnchorError, AnchorFile, Anchored};
use super::{Action, AuditEvent, AuditRecord, Checkpoint, Finding, Report, verify};
use crate::error::ErrorKind;
use crate::keystore::{KeyStoreError, SigAlg, Signer, SpkiDer};
use crate::store::{AuditLog, StoreError};

/// Why a checkpoint could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The key store did not sign.
    #[error("cannot sign the checkpoint: {0}")]
    KeyStore(#[from] KeyStoreError),
    /// The database failed.
    #[error("cannot store the checkpoint: {0}")]
    Store(#[from] StoreError),
    /// The checkpoint is stored, but the anchor file could not be written: verification
    /// will say so until it is.
    #[error("the checkpoint is stored but not anchored: {0}")]
    Anchor(#[from] AnchorError),
}

impl CheckpointError {
    /// The broad kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CheckpointError::KeyStore(e) => e.kind(),
            CheckpointError::Store(e) => e.kind(),
            CheckpointError::Anchor(_) => ErrorKind::Unavailable,
        }
    }
}

/// The object of the `audit.checkpoint` entry that records a checkpoint at `seq`.
pub fn checkpoint_object(seq: i64) -> String {
    format!("audit:{seq}")
}

/// Signs the recorded head now: stores the checkpoint with its `audit.checkpoint` entry by
/// `actor` from `source` (one transaction), then appends it to `anchor`. With `only_if_new`
/// (the server's schedule) nothing is signed when no entry but the last checkpoint's own
/// record has been appended since it; `Ok(None)` then.
///
/// Fails if the log is empty, the key store cannot sign, or the database or the anchor file
/// cannot be written.
#[allow(clippy::too_many_arguments)]
pub fn sign_checkpoint(
    store: &dyn AuditLog,
    signer: &dyn Signer,
    key_uri: &str,
    anchor: &AnchorFile,
    actor: &str,
    source: &str,
    only_if_new: bool,
    now: SystemTime,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let Some((seq, hash)) = store.audit_head()? else {
        return Err(StoreError::NotFound("audit entries: the log is empty".into()).into());
    };
    if only_if_new {
        let last = store.checkpoints()?.iter().map(|c| c.seq).max();
        if last.is_some_and(|l| l + 1 >= seq) {
            return Ok(None);
        }
    }
    let cp = Checkpoint::sign(seq, hash, key_uri, signer, now)?;
    let event = AuditEvent::new(
        Action::CheckpointSigned,
        actor,
        source,
        checkpoint_object(seq),
    )
    .with("head", hex::encode(hash));
    store.add_checkpoint(&cp, &event)?;
    anchor.append(&cp)?;
    Ok(Some(cp))
}

/// Everything [`verify_complete`] compares.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// Every entry in the table, ordered by `seq` (not only those up to the head).
    pub entries: &'a [AuditRecord],
    /// Every checkpoint row.
    pub checkpoints: &'a [Checkpoint],
    /// The head as recorded with every append.
    pub head: Option<(i64, [u8; 32])>,
    /// What the anchor file outside the database holds.
    pub anchored: &'a Anchored,
}

/// [`verify`], then the chain's end against the recorded head, the checkpoint rows against
/// the `audit.checkpoint` entries that recorded them, and both against the anchor file
/// (each anchored checkpoint's signature checked with the audit key `(alg, key)`).
pub fn verify_complete(evidence: &Evidence<'_>, alg: SigAlg, key: &SpkiDer) -> Report {
    let mut report = verify(evidence.entries, evidence.checkpoints, alg, key);
    if report.first_problem.is_none() {
        report.first_problem = head_problem(evidence)
            .or_else(|| record_problem(evidence))
            .or_else(|| anchor_problem(evidence, alg, key));
    }
    report
}

/// (1) The chain ends at the recorded head.
fn head_problem(ev: &Evidence<'_>) -> Option<Finding> {
    let last = ev.entries.last().map(|e| (e.seq, e.hash));
    match (last, ev.head) {
        (None, None) => None,
        (Some(_), None) => Some(Finding::BeyondHead {
            seq: ev.entries.first().map_or(1, |e| e.seq),
        }),
        (None, Some((head, _))) => Some(Finding::CutFromEnd { last: 0, head }),
        (Some((seq, _)), Some((head, _))) if seq < head => {
            Some(Finding::CutFromEnd { last: seq, head })
        }
        (Some((seq, _)), Some((head, _))) if seq > head => {
            Some(Finding::BeyondHead { seq: head + 1 })
        }
        (Some((seq, hash)), Some((_, head_hash))) if hash != head_hash => {
            Some(Finding::HeadMismatch { seq })
        }
        _ => None,
    }
}

/// (2) Checkpoint rows and their `audit.checkpoint` entries match one to one.
fn record_problem(ev: &Evidence<'_>) -> Option<Finding> {
    let recorded: HashMap<String, &AuditRecord> = ev
        .entries
        .iter()
        .filter(|e| e.action == Action::CheckpointSigned.as_str())
        .map(|e| (e.object.clone(), e))
        .collect();
    for cp in ev.checkpoints {
        let expected = format!("head={}", hex::encode(cp.head_hash));
        match recorded.get(&checkpoint_object(cp.seq)) {
            Some(e) if e.details.lines().any(|l| l == expected) => {}
            _ => return Some(Finding::CheckpointUnrecorded { seq: cp.seq }),
        }
    }
    let rows: HashSet<i64> = ev.checkpoints.iter().map(|c| c.seq).collect();
    for e in ev.entries {
        if e.action != Action::CheckpointSigned.as_str() {
            continue;
        }
        let seq = e.object.strip_prefix("audit:").and_then(|s| s.parse().ok());
        match seq {
            Some(seq) if rows.contains(&seq) => {}
            Some(seq) => return Some(Finding::CheckpointDeleted { seq }),
            None => return Some(Finding::Edited { seq: e.seq }),
        }
    }
    None
}

/// (3) The anchor file and the checkpoint rows agree, and the chain still reaches every
/// anchored head.
fn anchor_problem(ev: &Evidence<'_>, alg: SigAlg, key: &SpkiDer) -> Option<Finding> {
    let anchored = match ev.anchored {
        Anchored::Missing if ev.checkpoints.is_empty() => return None,
        Anchored::Missing => return Some(Finding::AnchorMissing),
        Anchored::Checkpoints(a) => a,
    };
    let by_seq: HashMap<i64, &AuditRecord> = ev.entries.iter().map(|e| (e.seq, e)).collect();
    let rows: HashMap<i64, &Checkpoint> = ev.checkpoints.iter().map(|c| (c.seq, c)).collect();
    for cp in anchored {
        if !cp.verify(alg, key) {
            return Some(Finding::BadCheckpointSignature { seq: cp.seq });
        }
        match by_seq.get(&cp.seq) {
            None => return Some(Finding::Truncated { seq: cp.seq }),
            Some(e) if e.hash != cp.head_hash => return Some(Finding::Rewritten { seq: cp.seq }),
            Some(_) => {}
        }
        if rows
            .get(&cp.seq)
            .is_none_or(|r| r.head_hash != cp.head_hash)
        {
            return Some(Finding::CheckpointDeleted { seq: cp.seq });
        }
    }
    let first = anchored.iter().map(|c| c.seq).min();
    let in_file: HashSet<i64> = anchored.iter().map(|c| c.seq).collect();
    ev.checkpoints
        .iter()
        .find(|c| first.is_none_or(|f| c.seq > f) && !in_file.contains(&c.seq))
        .map(|c| Finding::NotAnchored { seq: c.seq })
}

/// What the server needs to sign checkpoints on its own schedule.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    /// The audit key.
    pub signer: std::sync::Arc<dyn Signer>,
    /// Its URI, stored with each checkpoint.
    pub key_uri: String,
    /// The anchor file.
    pub anchor: AnchorFile,
    /// How often to sign (when entries were appended since the last checkpoint).
    pub every: std::time::Duration,
}

impl Checkpointer {
    /// Signs the head as `system` from `schedule` if entries were appended since the last
    /// checkpoint; `Ok(None)` otherwise.
    ///
    /// Fails as [`sign_checkpoint`] does.
    pub fn tick(
        &self,
        store: &dyn AuditLog,
        now: SystemTime,
    ) -> Result<Option<Checkpoint>, CheckpointError> {
        sign_checkpoint(
            store,
            self.signer.as_ref(),
            &self.key_uri,
            &self.anchor,
            "system",
            "schedule",
            true,
            now,
        )
    }
}
