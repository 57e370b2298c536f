//! Approvals: the one set of M-of-N rules, used for certificate requests
//! ([`crate::issuance::Ca::approve`]) and for sensitive operations
//! ([`crate::quorum::Quorum::approve`]).
//!
//! Invariants:
//! - only an officer who is not an administrator approves or rejects (separation of duties:
//!   administrators make accounts and tokens, officers approve; one person holding both
//!   could approve with credentials they made themselves);
//! - nobody approves or rejects what they asked for, approves twice, or approves after the
//!   deadline, and a rejection carries a reason;
//! - the quorum is counted from the accounts as they stand: an approval by an officer whose
//!   account has since been disabled, lost the officer role or gained the admin role does not
//!   count;
//! - no single administrator can make a quorum pass (issue 15): an approval counts only from
//!   an officer *account* that held the role, granted by `keyhold init` or by the quorum of
//!   existing officers ([`crate::quorum`]), before the request or operation was made, and
//!   whose credentials nobody else has reset since it was made. A name with no account
//!   never counts, so an administrator cannot approve with accounts it creates, nor with
//!   an officer's password it reset.
//!
//! The rules that need the row a transaction has locked (deadline, requester, approvals
//! already given) are [`admit`] and [`may_reject`]: the `db` crate reads the row into a
//! [`Subject`] and calls them inside its transaction, so it holds no approval rule of its own.

use std::time::SystemTime;

use crate::issuance::IssueError;
use crate::policy::Requester;
use crate::store::{Approval, Store, StoreError};
use crate::users::{Role, User};

/// Who acts, with typed roles: a [`Requester`] whose role names are parsed once (a name
/// that is no role grants nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user or token name.
    pub name: String,
    /// The roles held.
    pub roles: Vec<Role>,
}

impl Actor {
    /// Whether the actor holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl From<&Requester> for Actor {
    fn from(r: &Requester) -> Self {
        Actor {
            name: r.name.clone(),
            roles: r.roles.iter().filter_map(|n| Role::parse(n)).collect(),
        }
    }
}

/// What approvals are given to, as the storage reads it inside its transaction.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// How messages name it: `request`, `operation`.
    pub kind: &'a str,
    /// Its id.
    pub id: i64,
    /// Who asked for it (never an approver).
    pub requested_by: &'a str,
    /// From this instant it can no longer be approved.
    pub expires_at: SystemTime,
    /// The account the approval would enable, if any (the administrator of a
    /// `create_admin` operation): its holder may not approve it either.
    pub beneficiary: Option<&'a str>,
}

/// Whether `officer` may add an approval to `subject` at `now`, given whether they approved
/// it before. The storage calls this on the row it has locked.
///
/// Fails with the refusal (the storage reports it as a conflict).
pub fn admit(
    subject: &Subject<'_>,
    officer: &str,
    already_approved: bool,
    now: SystemTime,
) -> Result<(), String> {
    let (kind, id) = (subject.kind, subject.id);
    if now >= subject.expires_at {
        return Err(format!("{kind} {id} has expired"));
    }
    if officer == subject.requested_by {
        return Err(format!(
            "{officer} asked for {kind} {id} and cannot approve it"
        ));
    }
    if subject.beneficiary == Some(officer) {
        return Err(format!("{officer} cannot approve their own account"));
    }
    if already_approved {
        return Err(format!("{officer} has already approved {kind} {id}"));
    }
    Ok(())
}

/// Whether `officer` may reject `subject`. The storage calls this on the row it has locked.
///
/// Fails with the refusal (the storage reports it as a conflict).
pub fn may_reject(subject: &Subject<'_>, officer: &str) -> Result<(), String> {
    if officer == subject.requested_by {
        return Err(format!(
            "{officer} asked for {} {} and cannot reject it",
            subject.kind, subject.id
        ));
    }
    Ok(())
}

/// Fails unless `who` holds the officer role and not the admin role.
pub fn require_officer(who: &Requester) -> Result<(), IssueError> {
    let actor = Actor::from(who);
    if actor.has(Role::Admin) {
        Err(IssueError::Forbidden(format!(
            "{} is an administrator: administrators cannot approve or reject requests",
            who.name
        )))
    } else if actor.has(Role::Officer) {
        Ok(())
    } else {
        Err(IssueError::Forbidden(format!(
            "{} does not hold the officer role",
            who.name
        )))
    }
}

/// Fails unless `officer` may approve, now, what was made at `made`: an officer, not an
/// administrator, whose account counts (see [`approval_void`]).
pub fn may_approve(
    accounts: &dyn Store,
    officer: &Requester,
    made: SystemTime,
) -> Result<(), IssueError> {
    require_officer(officer)?;
    if let Some(why) = approval_void(accounts, &officer.name, made)? {
        return Err(IssueError::Forbidden(format!(
            "{why}: {} cannot approve",
            officer.name
        )));
    }
    Ok(())
}

/// Fails unless `officer` may reject for `reason`: an officer, not an administrator, with a
/// reason that is not blank.
pub fn check_rejection(officer: &Requester, reason: &str) -> Result<(), IssueError> {
    require_officer(officer)?;
    if reason.trim().is_empty() {
        return Err(IssueError::Forbidden(
            "a rejection needs a reason (--reason TEXT)".into(),
        ));
    }
    Ok(())
}

/// Why an approval by `officer` of something made at `made` would not count now, or `None`
/// if it counts (see [`void_reason`]).
///
/// Fails if the database fails.
pub fn approval_void(
    store: &dyn Store,
    officer: &str,
    made: SystemTime,
) -> Result<Option<String>, StoreError> {
    Ok(void_reason(officer, store.account(officer)?.as_ref(), made))
}

/// Why an approval by `officer`, whose account is `account`, of something made at `made`
/// would not count, or `None` if it counts: the account must exist, be enabled, hold the
/// officer role and not the admin role, have held the officer role since before `made`,
/// and have had no credentials reset since `made`.
pub fn void_reason(officer: &str, account: Option<&User>, made: SystemTime) -> Option<String> {
    let Some(u) = account else {
        return Some(format!(
            "{officer} has no officer account (officers are made by `keyhold init --officer` \
             or under the quorum of existing officers)"
        ));
    };
    if u.disabled {
        Some(format!("{officer}'s account is disabled"))
    } else if u.has(Role::Admin) {
        Some(format!("{officer}'s account holds the admin role"))
    } else if !u.has(Role::Officer) {
        Some(format!(
            "{officer}'s account does not hold the officer role"
        ))
    } else if u.officer_since.is_none_or(|t| t >= made) {
        Some(format!(
            "{officer} was not yet an officer (granted by the quorum) when it was made"
        ))
    } else if u.credentials_reset_at.is_some_and(|t| t >= made) {
        Some(format!(
            "{officer}'s credentials were reset by someone else since it was made"
        ))
    } else {
        None
    }
}

/// The approvals in `approvals` of something made at `made` that no longer count, as
/// `(officer, why)`, in the order given.
///
/// Fails if the database fails.
pub fn void_approvals(
    store: &dyn Store,
    approvals: &[Approval],
    made: SystemTime,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut void = Vec::new();
    for a in approvals {
        if let Some(why) = approval_void(store, &a.officer, made)? {
            void.push((a.officer.clone(), why));
        }
    }
    Ok(void)
}

/// The quorum, counted from the accounts as they stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Approvals that count.
    pub counted: u32,
    /// Approvals needed.
    pub needed: u32,
    /// Approvals given that no longer count, as `(officer, why)`.
    pub void: Vec<(String, String)>,
}

impl Tally {
    /// Whether enough approvals count.
    pub fn reached(&self) -> bool {
        self.counted >= self.needed
    }

    /// Why each void approval does not count.
    pub fn void_reasons(self) -> Vec<String> {
        self.void.into_iter().map(|(_, why)| why).collect()
    }
}

/// Counts `approvals` of something made at `made` against `needed`, leaving out those that
/// do not count.
///
/// Fails if the database fails.
pub fn tally(
    accounts: &dyn Store,
    approvals: &[Approval],
    needed: u32,
    made: SystemTime,
) -> Result<Tally, StoreError> {
    let void = void_approvals(accounts, approvals, made)?;
    let counted = u32::try_from(approvals.len().saturating_sub(void.len())).unwrap_or(u32::MAX);
    Ok(Tally {
        counted,
        needed,
        void,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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

    #[test]
    fn an_approval_is_refused_after_the_deadline_by_the_requester_the_beneficiary_or_twice() {
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let subject = Subject {
            kind: "operation",
            id: 3,
            requested_by: "ann",
            expires_at: deadline,
            beneficiary: Some("bob"),
        };
        let before = deadline - Duration::from_micros(1);
        assert_eq!(admit(&subject, "cat", false, before), Ok(()));
        assert_eq!(
            admit(&subject, "cat", false, deadline).unwrap_err(),
            "operation 3 has expired"
        );
        assert_eq!(
            admit(&subject, "ann", false, before).unwrap_err(),
            "ann asked for operation 3 and cannot approve it"
        );
        assert_eq!(
            admit(&subject, "bob", false, before).unwrap_err(),
            "bob cannot approve their own account"
        );
        assert_eq!(
            admit(&subject, "cat", true, before).unwrap_err(),
            "cat has already approved operation 3"
        );
        assert_eq!(
            may_reject(&subject, "ann").unwrap_err(),
            "ann asked for operation 3 and cannot reject it"
        );
        assert_eq!(may_reject(&subject, "cat"), Ok(()));
    }

    #[test]
    fn only_officers_granted_before_it_was_made_and_not_reset_since_count() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let made = t(100);
        let officer = |since: Option<u64>, reset: Option<u64>| User {
            name: "olga".into(),
            roles: vec![Role::Officer],
            disabled: false,
            must_change_password: false,
            failed_logins: 0,
            locked_until: None,
            created_at: t(0),
            created_by: "init".into(),
            officer_since: since.map(t),
            credentials_reset_at: reset.map(t),
        };
        assert_eq!(
            void_reason("olga", Some(&officer(Some(50), None)), made),
            None
        );
        assert_eq!(
            void_reason("olga", Some(&officer(Some(50), Some(99))), made),
            None
        );
        let why = |u: Option<&User>| void_reason("olga", u, made).unwrap();
        assert!(why(None).contains("no officer account"));
        assert!(why(Some(&officer(None, None))).contains("not yet an officer"));
        assert!(why(Some(&officer(Some(100), None))).contains("not yet an officer"));
        assert!(why(Some(&officer(Some(150), None))).contains("not yet an officer"));
        assert!(why(Some(&officer(Some(50), Some(100)))).contains("reset"));
        let mut admin = officer(Some(50), None);
        admin.roles.push(Role::Admin);
        assert!(why(Some(&admin)).contains("admin role"));
        let mut off = officer(Some(50), None);
        off.disabled = true;
        assert!(why(Some(&off)).contains("disabled"));
    }

    #[test]
    fn a_blank_rejection_reason_is_refused() {
        let officer = Requester {
            name: "cat".into(),
            roles: vec!["officer".into()],
        };
        assert!(check_rejection(&officer, "  ").is_err());
        assert!(check_rejection(&officer, "wrong host").is_ok());
    }
}
