//! ACME upkeep, run periodically by every node: taking over the validations of nodes that
//! stopped, and deleting what expired long ago so the tables do not grow forever.
//!
//! Invariant: a processing challenge is validated by the node that claimed it; another node
//! claims it (compare and set, audited) only once the claimant's heartbeat is older than
//! [`crate::cluster::DEAD_AFTER`]. Rows are deleted only [`RETENTION`] after they expired,
//! so a client polling late still reads `invalid`/`expired` for a while, and never a valid
//! order (one per certificate, like the certificates table).

use std::time::{Duration, SystemTime};

use super::service::AcmeService;
use super::store::Swept;
use crate::audit::{Action, AuditEvent};
use crate::store::StoreError;

/// How long expired orders and authorizations are kept before the sweep deletes them.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How often a node looks for challenges whose node stopped.
pub const RECLAIM_EVERY: Duration = Duration::from_secs(5);

/// How many rows one sweep transaction deletes at most.
const SWEEP_BATCH: i64 = 500;

impl AcmeService {
    /// Claims, for this node, the processing challenges whose node stopped (or that name
    /// none), and returns their ids to validate here; one `acme.challenge_reclaimed` audit
    /// entry per challenge (the store adds which node wrote it).
    ///
    /// Fails if the store fails.
    pub fn reclaim_orphaned_challenges(&self, now: SystemTime) -> Result<Vec<String>, StoreError> {
        let mut mine = Vec::new();
        for (challenge, from) in self.store.orphaned_challenges(now, 1000)? {
            let mut e = AuditEvent::new(
                Action::AcmeChallengeReclaimed,
                "system",
                "acme-upkeep",
                format!("acme-challenge:{}", challenge.id),
            );
            if let Some(from) = &from {
                e = e.with("claimed_by", from.as_str());
            }
            if self
                .store
                .reclaim_challenge(&challenge.id, from.as_deref(), &e)?
            {
                mine.push(challenge.id);
            }
        }
        Ok(mine)
    }

    /// Deletes orders (not valid) and authorizations, with their challenges, that expired
    /// more than [`RETENTION`] before `now`; one `acme.swept` audit entry per transaction
    /// that deleted something, with the counts.
    ///
    /// Fails if the store fails.
    pub fn sweep_expired(&self, now: SystemTime) -> Result<Swept, StoreError> {
        let before = now.checked_sub(RETENTION).unwrap_or(SystemTime::UNIX_EPOCH);
        let e = AuditEvent::new(Action::AcmeSwept, "system", "acme-upkeep", "acme-state")
            .with("expired_before", crate::revocation::rfc3339(before));
        self.store.sweep_expired(before, SWEEP_BATCH, &e)
    }
}
