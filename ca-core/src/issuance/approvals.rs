//! Approving and rejecting certificate requests: the rules are [`crate::approval`]'s, the
//! one set shared with sensitive operations; this file applies them to requests and issues
//! once the quorum is reached.

use std::time::SystemTime;

use super::{Ca, IssueError, Outcome};
use crate::approval;
use crate::audit::{Action, AuditEvent};
use crate::policy::Requester;
use crate::store::{Approval, RequestRow, Store, StoreError};

pub use crate::approval::{approval_void, require_officer};

impl Ca {
    /// Records `officer`'s approval of request `id`; once the quorum is reached, evaluates
    /// the policy again at `now` and issues (or fails the request with the reasons).
    ///
    /// The quorum is counted again here, from the accounts as they stand now: an approval
    /// by an officer whose account has since been disabled, or who no longer holds the
    /// officer role (or now holds admin), does not count, and the request stays pending
    /// (the outcome says whose approvals are void and why).
    ///
    /// Fails if the officer lacks the officer role (or their account is disabled), the
    /// request is unknown, not pending, expired, theirs, or already approved by them.
    pub fn approve(
        &self,
        id: i64,
        officer: &Requester,
        comment: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<Outcome, IssueError> {
        // Approvals count only from officers who held the role before the request was made
        // (see `approval`); an unknown id is refused by the store below.
        let made = self.store.request(id)?.map_or(now, |r| r.created_at);
        approval::may_approve(self.store.as_ref(), officer, made)?;
        let approval = Approval {
            officer: officer.name.clone(),
            comment: comment.to_owned(),
            at: now,
        };
        let event = AuditEvent::new(
            Action::RequestApproved,
            &officer.name,
            source,
            format!("request:{id}"),
        )
        .with("comment", comment);
        let row = self.store.approve(id, &approval, now, &event)?;
        let tally = approval::tally(
            self.store.as_ref(),
            &row.approvals,
            row.approvals_needed,
            row.created_at,
        )?;
        if !tally.reached() {
            return Ok(Outcome::Pending {
                request_id: id,
                approvals: tally.counted,
                approvals_needed: row.approvals_needed,
                void: tally.void_reasons(),
            });
        }
        self.issue_approved(&row, source, now)
    }

    /// Why an approval by `officer` of something made at `made` would not count now (see
    /// [`approval_void`]).
    ///
    /// Fails if the database fails.
    pub fn approval_void(
        &self,
        officer: &str,
        made: SystemTime,
    ) -> Result<Option<String>, StoreError> {
        approval_void(self.store.as_ref(), officer, made)
    }

    /// The approvals of `row` that no longer count (see [`void_approvals`]).
    ///
    /// Fails if the database fails.
    pub fn void_approvals(&self, row: &RequestRow) -> Result<Vec<(String, String)>, StoreError> {
        void_approvals(self.store.as_ref(), row)
    }

    /// Rejects request `id` for `reason`. One rejection ends a request.
    ///
    /// Fails if the officer lacks the officer role, the request is unknown, not pending, or
    /// theirs.
    pub fn reject(
        &self,
        id: i64,
        officer: &Requester,
        reason: &str,
        source: &str,
    ) -> Result<(), IssueError> {
        approval::check_rejection(officer, reason)?;
        let event = AuditEvent::new(
            Action::RequestRejected,
            &officer.name,
            source,
            format!("request:{id}"),
        )
        .with("reason", reason);
        self.store.reject(id, &officer.name, reason, &event)?;
        Ok(())
    }
}

/// The approvals of `row` that no longer count, as `(officer, why)`, in the order given
/// (see [`approval::void_approvals`]).
///
/// Fails if the database fails.
pub fn void_approvals(
    store: &dyn Store,
    row: &RequestRow,
) -> Result<Vec<(String, String)>, StoreError> {
    approval::void_approvals(store, &row.approvals, row.created_at)
}
