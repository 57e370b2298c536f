//! The order, authorization and challenge state machine (RFC 8555 7.1.6).
//!
//! Invariant: statuses only move along the RFC's arrows. An order is `ready` only when every
//! authorization is `valid`, becomes `invalid` when any authorization fails or it expires
//! while pending, and is finalized only from `ready`; these functions are the only place
//! that decides so, and storage records what they return.

use std::time::{Duration, SystemTime};

use super::{AcmeProblem, ProblemKind};

/// Order status (RFC 8555 7.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Authorizations outstanding.
    Pending,
    /// Every authorization valid; may be finalized.
    Ready,
    /// Finalized; the certificate is being issued.
    Processing,
    /// Issued.
    Valid,
    /// Failed or expired.
    Invalid,
}

/// Authorization status (RFC 8555 7.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzStatus {
    /// Awaiting a challenge.
    Pending,
    /// A challenge succeeded.
    Valid,
    /// A challenge failed.
    Invalid,
    /// The client deactivated it.
    Deactivated,
    /// It expired.
    Expired,
    /// The server revoked it.
    Revoked,
}

/// Challenge status (RFC 8555 7.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeStatus {
    /// Not yet answered.
    Pending,
    /// Answered; validation is running off the request path.
    Processing,
    /// Validation succeeded.
    Valid,
    /// Validation failed.
    Invalid,
}

/// How long clients are told to wait before polling an order or authorization that is
/// still pending or processing (the `Retry-After` header, RFC 8555 7.4, 8.2).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The authorization's status now, from its stored status, its challenges and its expiry:
/// a pending authorization past `expires` is `expired`; one valid challenge makes it
/// `valid`; a failed one `invalid` (RFC 8555 7.1.6).
pub fn authz_status(
    stored: AuthzStatus,
    challenges: &[ChallengeStatus],
    expires: SystemTime,
    now: SystemTime,
) -> AuthzStatus {
    if stored != AuthzStatus::Pending {
        return stored;
    }
    if challenges.contains(&ChallengeStatus::Valid) {
        AuthzStatus::Valid
    } else if challenges.contains(&ChallengeStatus::Invalid) {
        AuthzStatus::Invalid
    } else if now >= expires {
        AuthzStatus::Expired
    } else {
        AuthzStatus::Pending
    }
}

/// The order's status now, from its stored status, its authorizations' statuses and its
/// expiry. `processing`, `valid` and `invalid` are settled by finalization and stay.
pub fn order_status(
    stored: OrderStatus,
    authzs: &[AuthzStatus],
    expires: SystemTime,
    now: SystemTime,
) -> OrderStatus {
    match stored {
        OrderStatus::Processing | OrderStatus::Valid | OrderStatus::Invalid => stored,
        OrderStatus::Pending | OrderStatus::Ready => {
            let failed = authzs
                .iter()
                .any(|a| !matches!(a, AuthzStatus::Pending | AuthzStatus::Valid));
            if now >= expires || authzs.is_empty() || failed {
                OrderStatus::Invalid
            } else if authzs.iter().all(|a| *a == AuthzStatus::Valid) {
                OrderStatus::Ready
            } else {
                OrderStatus::Pending
            }
        }
    }
}

/// Whether a finalize request may proceed: only from `ready`. Fails with `orderNotReady`
/// otherwise, naming the status (RFC 8555 7.4), so that a client that finalizes twice
/// learns the order is already processing or valid.
pub fn check_finalize(status: OrderStatus) -> Result<(), AcmeProblem> {
    let why = match status {
        OrderStatus::Ready => return Ok(()),
        OrderStatus::Pending => "order is pending: not every authorization is valid",
        OrderStatus::Processing => "order is already being finalized",
        OrderStatus::Valid => "order is already valid; download its certificate",
        OrderStatus::Invalid => "order is invalid",
    };
    Err(AcmeProblem::new(ProblemKind::OrderNotReady, why))
}

/// What answering a challenge does (RFC 8555 7.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeAnswer {
    /// Start validation: record `processing` and queue the work.
    StartValidation,
    /// Already answered or settled: return the challenge as it is, start nothing.
    Unchanged,
}

/// Decides what a client's answer to a challenge does. A pending challenge of a pending,
/// unexpired authorization starts validation; answering again is harmless. Fails with
/// `malformed` when the authorization is no longer pending but the challenge never ran.
pub fn answer_challenge(
    authz: AuthzStatus,
    challenge: ChallengeStatus,
) -> Result<ChallengeAnswer, AcmeProblem> {
    match (authz, challenge) {
        (AuthzStatus::Pending, ChallengeStatus::Pending) => Ok(ChallengeAnswer::StartValidation),
        (_, ChallengeStatus::Processing | ChallengeStatus::Valid | ChallengeStatus::Invalid) => {
            Ok(ChallengeAnswer::Unchanged)
        }
        (status, ChallengeStatus::Pending) => Err(AcmeProblem::malformed(format!(
            "authorization is {status:?}, not pending; it takes no answers"
        ))),
    }
}

/// Whether clients polling this order should be told to come back (`Retry-After`).
pub fn retry_after(status: OrderStatus) -> Option<Duration> {
    matches!(status, OrderStatus::Pending | OrderStatus::Processing).then_some(RETRY_AFTER)
}
