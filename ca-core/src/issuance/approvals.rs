//! Approvals of certificate requests: who may approve or reject, and which approvals still
//! count when the quorum is counted again.
//!
//! Invariant: an approval counts only while its officer holds the officer role without the
//! admin role on an enabled account (separation of duties), checked when it is given and
//! again whenever the quorum is counted.

use std::time::SystemTime;

use super::{Ca, IssueError, Outcome};
use crate::audit::{Action, AuditEvent};
use crate::policy::Requester;
use crate::store::{Approval, RequestRow, Store, StoreError};

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
        require_officer(officer)?;
        if let Some(why) = self.approval_void(&officer.name)? {
            return Err(IssueError::Forbidden(format!(
                "{why}: {} cannot approve",
                officer.name
            )));
        }
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
        let void = self.void_approvals(&row)?;
        let given = row.approvals.len().saturating_sub(void.len());
        let given = u32::try_from(given).unwrap_or(u32::MAX);
        if given < row.approvals_needed {
            return Ok(Outcome::Pending {
                request_id: id,
                approvals: given,
                approvals_needed: row.approvals_needed,
                void: void.into_iter().map(|(_, why)| why).collect(),
            });
        }
        self.issue_approved(&row, source, now)
    }

    /// Why an approval by `officer` would not count now (see [`approval_void`]).
    ///
    /// Fails if the database fails.
    pub fn approval_void(&self, officer: &str) -> Result<Option<String>, StoreError> {
        approval_void(self.store.as_ref(), officer)
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
        require_officer(officer)?;
        if reason.trim().is_empty() {
            return Err(IssueError::Forbidden(
                "a rejection needs a reason (--reason TEXT)".into(),
            ));
        }
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

/// Why an approval by `officer` would not count now, or `None` if it counts. An officer
/// named on the command line (`--as NAME`) without a web UI account is vouched for by
/// whoever runs the CLI with access to the data directory; one with an account must hold it
/// enabled, with the officer role and without the admin role.
///
/// Fails if the database fails.
pub fn approval_void(store: &dyn Store, officer: &str) -> Result<Option<String>, StoreError> {
    use crate::users::Role;
    Ok(match store.account(officer)? {
        None => None,
        Some(u) if u.disabled => Some(format!("{officer}'s account is disabled")),
        Some(u) if u.has(Role::Admin) => Some(format!("{officer}'s account holds the admin role")),
        Some(u) if !u.has(Role::Officer) => Some(format!(
            "{officer}'s account does not hold the officer role"
        )),
        Some(_) => None,
    })
}

/// The approvals of `row` that no longer count, as `(officer, why)`, in the order given.
///
/// Fails if the database fails.
pub fn void_approvals(
    store: &dyn Store,
    row: &RequestRow,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut void = Vec::new();
    for a in &row.approvals {
        if let Some(why) = approval_void(store, &a.officer)? {
            void.push((a.officer.clone(), why));
        }
    }
    Ok(void)
}

/// Fails unless `who` holds the officer role and not the admin role.
pub fn require_officer(who: &Requester) -> Result<(), IssueError> {
    // Separation of duties: administrators make accounts and tokens, officers approve. One
    // person holding both could approve with credentials they made themselves.
    if who.roles.iter().any(|r| r == "admin") {
        Err(IssueError::Forbidden(format!(
            "{} is an administrator: administrators cannot approve or reject requests",
            who.name
        )))
    } else if who.roles.iter().any(|r| r == "officer") {
        Ok(())
    } else {
        Err(IssueError::Forbidden(format!(
            "{} does not hold the officer role",
            who.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_officers_who_are_not_administrators_may_decide_requests() {
        let who = |roles: &[&str]| Requester {
            name: "pat".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        assert!(require_officer(&who(&["officer"])).is_ok());
        assert!(require_officer(&who(&["officer", "auditor"])).is_ok());
        for roles in [&["requester"][..], &["admin"], &["officer", "admin"], &[]] {
            let err = require_officer(&who(roles)).unwrap_err();
            assert!(matches!(err, IssueError::Forbidden(_)), "{roles:?}: {err}");
        }
    }
}
