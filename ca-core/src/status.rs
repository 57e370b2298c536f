//! The status words every interface (CLI, API, UI) accepts and shows, so that a word means
//! the same everywhere: the certificate list's status filter, and how much life is left.

use std::time::{Duration, SystemTime};

use crate::store::{CertFilter, CertStatus};

/// "Expiring soon": valid and expiring within this.
pub const EXPIRING_WITHIN: Duration = Duration::from_secs(30 * 86_400);

/// The certificate statuses a list can be filtered by.
pub const CERT_STATUSES: [&str; 6] = [
    "valid", "expiring", "expired", "revoked", "failed", "reserved",
];

/// Narrows `filter` to the certificates with status `word` at `now` (one of
/// [`CERT_STATUSES`]; `valid` means valid and not expired).
///
/// Fails naming the word and the accepted ones.
pub fn filter_by_status(
    filter: &mut CertFilter,
    word: &str,
    now: SystemTime,
) -> Result<(), String> {
    match word {
        "valid" => {
            filter.status = Some(CertStatus::Valid);
            filter.expired = Some(false);
        }
        "expiring" => {
            filter.status = Some(CertStatus::Valid);
            filter.expiring_before = Some(now + EXPIRING_WITHIN);
        }
        "expired" => filter.expired = Some(true),
        other => {
            filter.status = Some(CertStatus::parse(other).ok_or_else(|| {
                format!("unknown status {other:?} ({})", CERT_STATUSES.join(", "))
            })?);
        }
    }
    Ok(())
}

/// How long until `not_after`, for people: `expires in 12 days`, `expires in 5 hours`, or
/// `expired`.
pub fn expires_in(not_after: SystemTime, now: SystemTime) -> String {
    match not_after.duration_since(now) {
        Ok(left) if left.as_secs() >= 86_400 => {
            format!("expires in {} days", left.as_secs() / 86_400)
        }
        Ok(left) => format!("expires in {} hours", left.as_secs() / 3_600),
        Err(_) => "expired".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_word_narrows_the_filter_and_others_are_refused() {
        let now = SystemTime::now();
        for word in CERT_STATUSES {
            let mut f = CertFilter::default();
            filter_by_status(&mut f, word, now).unwrap();
            assert_ne!(f, CertFilter::default(), "{word}");
        }
        let err = filter_by_status(&mut CertFilter::default(), "bogus", now).unwrap_err();
        assert!(err.contains("unknown status \"bogus\"") && err.contains("expiring"));
    }

    #[test]
    fn life_left_reads_in_days_then_hours_then_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            expires_in(now + Duration::from_secs(3 * 86_400), now),
            "expires in 3 days"
        );
        assert_eq!(
            expires_in(now + Duration::from_secs(7_200), now),
            "expires in 2 hours"
        );
        assert_eq!(expires_in(now - Duration::from_secs(1), now), "expired");
    }
}
