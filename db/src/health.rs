//! Whether the database is known to be down, so that calls fail fast instead of each waiting
//! for a connection (issue 20, item 6).
//!
//! A call that cannot reach the database (no connection, or a write transaction that could
//! not commit) marks it down. While it is down, every call fails at once, except one per
//! [`RETRY_EVERY`], which tries for real (the "probe"): if that succeeds the database is up
//! again for everyone. So a client, a health check or a load balancer gets its 503 within a
//! second, and recovery is noticed within a second of the next call (`keyhold serve`'s
//! heartbeat makes one every second).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ca_core::store::StoreError;

/// How often, while the database is down, one call tries it again.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The database's known state, shared by the reads and the writer of one [`crate::Db`].
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Whether `down` is `Some`: read without the lock on every call.
    known_down: AtomicBool,
    down: Mutex<Option<Down>>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    last_try: Instant,
    error: String,
}

/// What [`Health::gate`] lets a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// The database is not known to be down.
    Up,
    /// It is down, and this call is the one that tries it again (it should give up quickly).
    Probe,
}

impl Health {
    /// Lets a call go on, or fails it at once while the database is known to be down and
    /// another call tried it less than [`RETRY_EVERY`] ago.
    pub(crate) fn gate(&self) -> Result<Pass, StoreError> {
        if !self.known_down.load(Ordering::Acquire) {
            return Ok(Pass::Up);
        }
        let Ok(mut down) = self.down.lock() else {
            return Ok(Pass::Up);
        };
        match down.as_mut() {
            None => Ok(Pass::Up),
            Some(d) if d.last_try.elapsed() >= RETRY_EVERY => {
                d.last_try = Instant::now();
                Ok(Pass::Probe)
            }
            Some(d) => Err(StoreError::Database(format!(
                "the database is unavailable (for {} s; tried again every {} s): {}",
                d.since.elapsed().as_secs(),
                RETRY_EVERY.as_secs(),
                d.error
            ))),
        }
    }

    /// The database answered.
    pub(crate) fn up(&self) {
        if !self.known_down.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut down) = self.down.lock()
            && down.take().is_some()
        {
            self.known_down.store(false, Ordering::Release);
            tracing::info!("the database is reachable again");
        }
    }

    /// The database could not be reached, or could not commit.
    pub(crate) fn down(&self, error: &StoreError) {
        let Ok(mut down) = self.down.lock() else {
            return;
        };
        let now = Instant::now();
        match down.as_mut() {
            Some(d) => {
                d.last_try = now;
                d.error = error.to_string();
            }
            None => {
                tracing::warn!(%error, "the database is unavailable: failing calls fast until it answers");
                *down = Some(Down {
                    since: now,
                    last_try: now,
                    error: error.to_string(),
                });
                self.known_down.store(true, Ordering::Release);
            }
        }
    }

    /// Whether the database is known to be down.
    pub(crate) fn is_down(&self) -> bool {
        self.known_down.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_down_only_one_call_a_second_tries() {
        let h = Health::default();
        assert_eq!(h.gate().unwrap(), Pass::Up);
        h.down(&StoreError::Database("connection refused".into()));
        let e = h.gate().unwrap_err().to_string();
        assert!(e.contains("connection refused"), "{e}");
        std::thread::sleep(RETRY_EVERY);
        assert_eq!(h.gate().unwrap(), Pass::Probe);
        assert!(h.gate().is_err(), "a second call in the same second");
        h.up();
        assert_eq!(h.gate().unwrap(), Pass::Up);
        assert!(!h.is_down());
    }
}
