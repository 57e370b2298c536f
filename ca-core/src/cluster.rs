//! Several Keyhold nodes on one database (issue 20): who each process is, and closing the
//! reservations of processes that died.
//!
//! Every `keyhold serve` process is an instance of a node: the node's name (configured, or
//! derived from the host name and process id) plus its process id and start time. It
//! records a heartbeat in the database about every second; each reservation it makes
//! records its instance. A live node closes, within [`SWEEP_EVERY`] + [`DEAD_AFTER`], the
//! reservations of instances whose heartbeat has stopped (killed, crashed, partitioned away),
//! and a restarted node closes its own earlier instance's at once. A reservation that names
//! no instance (made by a CLI command) is closed after
//! [`crate::issuance::ABANDONED_AFTER`], as before.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::audit::{Action, AuditEvent};
use crate::store::{IssuanceLedger, Serial, StoreError};

/// An instance whose heartbeat is older than this is taken for dead. Heartbeats come about
/// every second: this leaves room for a database failover or a long pause.
pub const DEAD_AFTER: Duration = Duration::from_secs(20);

/// How often a live node looks for the reservations of dead ones.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How often a node records its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// This process, as one node of several sharing a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId {
    /// The node's name: in `/readyz`, logs, metrics and every audit entry it writes.
    pub name: String,
    /// This process: `name/pid/start` (unique even when a node restarts under its name).
    pub instance: String,
    /// When this process started.
    pub started_at: SystemTime,
}

impl NodeId {
    /// This process as node `configured`, or, without one, as `HOST-PID`.
    ///
    /// Fails if the configured name is empty, longer than 64 characters, or holds anything
    /// but ASCII letters, digits, `.`, `-` and `_`.
    pub fn new(configured: Option<&str>, host: &str, now: SystemTime) -> Result<NodeId, String> {
        let pid = std::process::id();
        let name = match configured {
            Some(name) => {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                if !ok {
                    return Err(format!(
                        "[node] name {name:?} is not a node name: 1 to 64 ASCII letters, \
                         digits, '.', '-' or '_'"
                    ));
                }
                name.to_owned()
            }
            None => {
                let host: String = host
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .take(48)
                    .collect();
                let host = if host.is_empty() { "node".into() } else { host };
                format!("{host}-{pid}")
            }
        };
        let started = crate::audit::unix_micros(now);
        Ok(NodeId {
            instance: format!("{name}/{pid}/{started}"),
            name,
            started_at: now,
        })
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A reservation no live process can complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its serial.
    pub serial: Serial,
    /// When it was reserved.
    pub reserved_at: SystemTime,
    /// The instance that reserved it, if it said.
    pub instance: Option<String>,
}

/// What the sweeper needs from storage.
pub trait Liveness: Send + Sync + fmt::Debug {
    /// Reservations at `now` made by instances other than this process's whose heartbeat is
    /// older than [`DEAD_AFTER`] (or gone), and reservations naming no instance older than
    /// [`crate::issuance::ABANDONED_AFTER`].
    fn orphans(&self, now: SystemTime) -> Result<Vec<Orphan>, StoreError>;
}

/// Closes every orphaned reservation: each becomes `failed`, audited as
/// `issuance.abandoned` by `node` (their certificates were never returned to anyone; their
/// serials are never reused). Returns how many it closed; another node closing the same one
/// first is not an error.
///
/// Fails if the database fails.
pub fn close_orphans(
    liveness: &dyn Liveness,
    ledger: &dyn IssuanceLedger,
    node: &NodeId,
    now: SystemTime,
) -> Result<usize, StoreError> {
    let mut closed = 0;
    for orphan in liveness.orphans(now)? {
        let mut event = AuditEvent::new(
            Action::IssuanceAbandoned,
            "system",
            format!("node:{}", node.name),
            format!("certificate:{}", orphan.serial),
        )
        .with("reserved_at", format!("{:?}", orphan.reserved_at));
        if let Some(instance) = &orphan.instance {
            event = event.with("reserved_by", instance.as_str());
        }
        let why = match &orphan.instance {
            Some(_) => {
                "the process that was signing it stopped; the certificate was never returned"
            }
            None => "interrupted while signing; the certificate was never returned",
        };
        match ledger.fail(&orphan.serial, why, &event) {
            Ok(()) => closed += 1,
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_named_by_its_config_or_its_host_and_process() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        let n = NodeId::new(Some("ca-1"), "ignored", now).unwrap();
        assert_eq!(n.name, "ca-1");
        assert_eq!(
            n.instance,
            format!("ca-1/{}/{}", std::process::id(), 1_000_000)
        );
        let d = NodeId::new(None, "host a.example", now).unwrap();
        assert_eq!(d.name, format!("hosta.example-{}", std::process::id()));
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(NodeId::new(Some(bad), "h", now).is_err(), "{bad:?}");
        }
    }
}
