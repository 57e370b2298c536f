//! The pre-signer: signs OCSP answers ahead of time for every valid certificate and every
//! configured CA certificate, again for each revoked one (also when revoked by another
//! process, `keyhold revoke-ca` included), and again before half of an answer's validity
//! has passed. While the key store fails it backs off (1 s doubling to
//! 5 min) and the answers already signed keep being served.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::shared::{FALLBACK_EVERY, LEASE_EVERY, LEASE_TTL, OCSP_LEASE};
use super::{Publisher, RETRY_MAX, RETRY_MIN};
use crate::issuer::IssuerId;
use crate::store::{CertFilter, CertSort, CertStatus, Serial};

/// How often the pre-signer looks for revocations made by other processes (the CLI, another
/// Keyhold sharing the database), and for newly issued certificates: the bound on how long
/// such a revocation can show `good`, and on how long a new certificate's answer is signed
/// on demand rather than ahead of time.
pub const POLL: Duration = Duration::from_secs(1);
/// In a cluster, how long after a revocation's notice the pre-signer checks whether the
/// node that revoked has signed its answers again (it does so at once) before signing them.
const GRACE: Duration = Duration::from_millis(500);
/// In a cluster, how often stored answers past their nextUpdate are dropped.
const DROP_EVERY: Duration = Duration::from_secs(60);
/// How often answers past half their validity are looked for.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Certificates listed per read while catching up.
const PAGE: u32 = 1_000;
/// How far behind the newest certificate it listed the pre-signer looks again: a
/// certificate is listed by its reservation time, but recorded when its signing ends, and
/// another process's reservation may commit a little after it was stamped (clocks differ
/// too). Reservations still open are waited for however old (issue 20, item 4).
const LOOKBACK: Duration = Duration::from_secs(2);

/// The pre-signer's state between ticks. The caller owns the thread: it calls
/// [`Presigner::tick`] every [`POLL`] until it stops.
#[derive(Debug)]
pub struct Presigner {
    publisher: Arc<Publisher>,
    /// Revocations at or after this were not yet seen.
    revoked_after: SystemTime,
    /// Where the next listing of issued certificates starts, as a (created_at, serial)
    /// cursor: behind the newest one listed by [`LOOKBACK`], and never past a reservation
    /// still open, which may be recorded later under its earlier time.
    issued_after: Option<(SystemTime, Serial)>,
    /// Certificates listed since the cursor, so that the window looked at again is not
    /// signed twice; pruned as the cursor moves.
    listed: BTreeSet<(SystemTime, Serial)>,
    /// Certificates whose signing failed, to try again.
    pending: Vec<(IssuerId, Serial)>,
    /// While the key store fails: not before this, and the next wait.
    retry: Option<(Instant, Duration)>,
    /// When answers past half their validity were last looked for.
    last_refresh: Option<Instant>,
    /// In a cluster: when stored answers past half their validity were last listed.
    last_due: Option<Instant>,
    /// The CA certificates already signed for: `None` until the first round.
    cas_seen: Option<Vec<CaRevocationKey>>,
    /// In a cluster: whether this node holds the pre-signing lease, and when it last
    /// renewed or tried to take it.
    holding: bool,
    last_lease: Option<Instant>,
    /// In a cluster: when revocations were last read (the fallback for lost notices).
    last_read: Option<Instant>,
    /// In a cluster: when stale stored answers were last dropped.
    last_drop: Option<Instant>,
}

/// A revoked CA certificate, as (parent, serial).
type CaRevocationKey = (IssuerId, Serial);

impl Presigner {
    /// A pre-signer for `publisher`'s answers, starting from every valid certificate.
    pub fn new(publisher: Arc<Publisher>) -> Self {
        Presigner {
            publisher,
            revoked_after: SystemTime::now(),
            issued_after: None,
            listed: BTreeSet::new(),
            pending: Vec::new(),
            retry: None,
            last_refresh: None,
            last_due: None,
            cas_seen: None,
            holding: false,
            last_lease: None,
            last_read: None,
            last_drop: None,
        }
    }

    /// One round: revocations seen since the last tick, newly issued certificates, answers
    /// past half their validity (every few seconds), and earlier failures.
    pub fn tick(&mut self) {
        if self.publisher.publication().is_some() {
            self.tick_shared();
            return;
        }
        self.revocations();
        self.ca_revocations();
        if self.backing_off() {
            return;
        }
        let now = SystemTime::now();
        let mut work = std::mem::take(&mut self.pending);
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
        {
            self.last_refresh = Some(Instant::now());
            self.publisher.answers.sweep(now);
            self.publisher.strangers.sweep(now);
            work.extend(self.publisher.answers.due(now));
        }
        self.issued(&mut work);
        if !work.is_empty() {
            self.sign_all(work, now, false);
        }
    }

    /// One round in a cluster (issue 20, item 3): every node forgets the answers of
    /// revocations (by notice, or read every [`FALLBACK_EVERY`], every [`POLL`] while
    /// notices are not coming); only the holder of [`OCSP_LEASE`] signs, and only what is
    /// not stored already: revocations not yet signed again by the node that revoked,
    /// certificates issued and not yet answered on demand, CA certificates, and answers
    /// stored past half their validity. What it signs is stored for every node.
    fn tick_shared(&mut self) {
        let Some(shared) = self.publisher.crls.shared.get().cloned() else {
            return;
        };
        let read_every = if self.publisher.notices_live() {
            FALLBACK_EVERY
        } else {
            POLL
        };
        if self.last_read.is_none_or(|t| t.elapsed() >= read_every) {
            self.last_read = Some(Instant::now());
            self.read_revocations();
        }
        self.renew_lease();
        let now = SystemTime::now();
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
        {
            self.last_refresh = Some(Instant::now());
            self.publisher.answers.sweep(now);
            self.publisher.strangers.sweep(now);
        }
        let revoked = self.take_revoked();
        if !self.holding {
            return;
        }
        if self.last_drop.is_none_or(|t| t.elapsed() >= DROP_EVERY) {
            self.last_drop = Some(Instant::now());
            if let Err(e) = shared.publication.drop_stale_answers(now) {
                tracing::warn!(error = %e, "cannot drop stale OCSP answers");
            }
        }
        self.ca_revocations();
        if self.backing_off() {
            self.pending.extend(revoked);
            return;
        }
        let revoked = self.unanswered(revoked);
        if !revoked.is_empty() {
            self.sign_all(revoked, now, true);
        }
        let mut work = std::mem::take(&mut self.pending);
        if self.last_due.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
            self.last_due = Some(Instant::now());
            let half = self.publisher.responder.validity() / 2;
            match shared.publication.answers_due(now + half, PAGE) {
                Ok(due) => work.extend(due),
                Err(e) => tracing::warn!(error = %e, "cannot list OCSP answers to refresh"),
            }
        }
        let mut issued = Vec::new();
        self.issued(&mut issued);
        work.extend(self.unanswered(issued));
        if !work.is_empty() {
            self.sign_all(work, now, false);
        }
    }

    /// In a cluster, every [`LEASE_EVERY`]: renews the pre-signing lease, or takes it if it
    /// expired. Also called between signatures, so a long run of them never lets the lease
    /// lapse while this node still signs.
    fn renew_lease(&mut self) {
        let Some(shared) = self.publisher.crls.shared.get() else {
            return;
        };
        if self.last_lease.is_some_and(|t| t.elapsed() < LEASE_EVERY) {
            return;
        }
        self.last_lease = Some(Instant::now());
        let held = shared
            .publication
            .take_lease(OCSP_LEASE, &shared.holder, SystemTime::now(), LEASE_TTL)
            .unwrap_or(false);
        if held != self.holding {
            tracing::info!(
                holding = held,
                "{} the OCSP pre-signing lease",
                if held { "took" } else { "no longer holds" }
            );
            self.holding = held;
        }
    }

    /// Revocations since a little before the last read, by anyone: their answers held here
    /// are forgotten, and queued for the lease holder.
    fn read_revocations(&mut self) {
        let since = self.revoked_after;
        let now = SystemTime::now();
        match self.publisher.store.revoked_since(since) {
            Ok(revoked) => {
                self.revoked_after = now - POLL * 5;
                for (issuer, serial) in &revoked {
                    self.publisher.seen_revoked(issuer, serial);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read recent revocations"),
        }
    }

    /// The queued revocations seen at least [`GRACE`] ago (the node that revoked signs
    /// them again at once; this is for those it could not, and for the CLI's).
    fn take_revoked(&mut self) -> Vec<(IssuerId, Serial)> {
        let Ok(mut queue) = self.publisher.revoked_queue.lock() else {
            return Vec::new();
        };
        let (ready, wait): (Vec<_>, Vec<_>) = queue
            .drain(..)
            .partition(|(_, _, at)| at.elapsed() >= GRACE);
        *queue = wait;
        let mut out: Vec<(IssuerId, Serial)> = ready.into_iter().map(|(i, s, _)| (i, s)).collect();
        out.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
        out.dedup();
        out
    }

    /// `work` without the certificates whose answers are stored already (signed by
    /// another node, on demand, or after a revocation by the node that revoked).
    fn unanswered(&self, work: Vec<(IssuerId, Serial)>) -> Vec<(IssuerId, Serial)> {
        let Some(publication) = self.publisher.publication() else {
            return work;
        };
        if work.is_empty() {
            return work;
        }
        let serials: Vec<Serial> = work.iter().map(|(_, s)| s.clone()).collect();
        match publication.answered(&serials) {
            Ok(done) => {
                let done: std::collections::HashSet<Serial> = done.into_iter().collect();
                work.into_iter()
                    .filter(|(_, s)| !done.contains(s))
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read which answers are stored");
                work
            }
        }
    }

    /// Signs `work`, stopping at the first failure, which starts (or doubles) the back-off;
    /// what was not signed is kept for the next try.
    fn sign_all(&mut self, work: Vec<(IssuerId, Serial)>, now: SystemTime, revoked: bool) {
        let mut work = work.into_iter();
        let shared = self.publisher.publication().is_some();
        for (issuer, serial) in work.by_ref() {
            if shared {
                self.renew_lease();
                if !self.holding {
                    // Another node holds the lease now: what is left is its work.
                    return;
                }
            }
            if let Err(why) = self.publisher.sign(&issuer, &serial, now, revoked) {
                let wait = self
                    .retry
                    .map_or(RETRY_MIN, |(_, w)| (w * 2).min(RETRY_MAX));
                tracing::warn!(%issuer, %serial, error = %why, retry_in = ?wait,
                    "cannot sign OCSP answers ahead of time; serving those already signed");
                self.retry = Some((Instant::now() + wait, wait));
                self.pending.push((issuer, serial));
                self.pending.extend(work);
                return;
            }
        }
        if self.retry.take().is_some() {
            tracing::info!("the key store signs again: OCSP answers are being refreshed");
        }
    }

    fn backing_off(&self) -> bool {
        self.retry.is_some_and(|(at, _)| Instant::now() < at)
    }

    /// Revocations made since the last look, by anyone: signed again at once (and so
    /// dropped from memory if the key store cannot sign them).
    fn revocations(&mut self) {
        let since = self.revoked_after;
        // Read from a little before the last look: a revocation committed late with an
        // earlier timestamp is still seen. Signing one twice is harmless.
        let now = SystemTime::now();
        match self.publisher.store.revoked_since(since) {
            Ok(revoked) => {
                self.revoked_after = now - POLL * 5;
                for (_, serial) in &revoked {
                    self.publisher.answers.forget(serial);
                }
                if !revoked.is_empty() && !self.backing_off() {
                    self.sign_all(revoked, now, true);
                } else {
                    self.pending.extend(revoked);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read recent revocations"),
        }
    }

    /// The configured CA certificates: all of them on the first round, then again each
    /// one whose revocation appears in `ca_revocations` (recorded by `keyhold revoke-ca` in
    /// another process), forgetting its old answers first.
    fn ca_revocations(&mut self) {
        let revoked: Vec<CaRevocationKey> = match self.publisher.store.ca_revocations() {
            Ok(all) => all.into_iter().map(|r| (r.parent, r.serial)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read revoked CA certificates");
                return;
            }
        };
        let cas = self.publisher.responder.ca_serials();
        let work: Vec<CaRevocationKey> = match &self.cas_seen {
            None => cas,
            Some(seen) => cas
                .into_iter()
                .filter(|ca| revoked.contains(ca) && !seen.contains(ca))
                .collect(),
        };
        self.cas_seen = Some(revoked);
        if work.is_empty() {
            return;
        }
        for (_, serial) in &work {
            self.publisher.answers.forget(serial);
        }
        if self.backing_off() {
            self.pending.extend(work);
        } else {
            self.sign_all(work, SystemTime::now(), true);
        }
    }

    /// Certificates issued since the last look, up to half the answer store's room; then
    /// moves the cursor back over the window that may still change (see [`LOOKBACK`]).
    fn issued(&mut self, work: &mut Vec<(IssuerId, Serial)>) {
        // Read before listing: a reservation open now and recorded after the listing is
        // behind the cursor, which must wait for it.
        let open = match self.publisher.store.reserved() {
            Ok(rows) => rows.iter().map(|r| r.created_at).min(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list reservations in progress");
                return;
            }
        };
        self.list_issued(work);
        // The newest certificate ever listed (the set keeps everything from the cursor on).
        let Some((newest, _)) = self.listed.last() else {
            return;
        };
        let mut floor = newest.checked_sub(LOOKBACK).unwrap_or(*newest);
        if let Some(open) = open {
            floor = floor.min(open);
        }
        let floor = floor.checked_sub(Duration::from_micros(1)).unwrap_or(floor);
        self.issued_after = Some((floor, Serial::from_bytes(&[0])));
        self.listed = self.listed.split_off(&(floor, Serial::from_bytes(&[0])));
    }

    fn list_issued(&mut self, work: &mut Vec<(IssuerId, Serial)>) {
        loop {
            let filter = CertFilter {
                status: Some(CertStatus::Valid),
                expired: Some(false),
                sort: CertSort::Oldest,
                after: self.issued_after.clone(),
                limit: PAGE,
                ..Default::default()
            };
            let rows = match self.publisher.store.certificates(&filter) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list certificates to sign OCSP answers for");
                    return;
                }
            };
            let Some(last) = rows.last() else { return };
            self.issued_after = Some((last.created_at, last.serial.clone()));
            let full = rows.len() == PAGE as usize;
            for r in rows {
                if !self.listed.insert((r.created_at, r.serial.clone())) {
                    continue; // looked at again, signed already
                }
                if let Ok(issuer) = IssuerId::new(r.issuer.as_str()) {
                    work.push((issuer, r.serial));
                }
            }
            if !full || work.len() >= super::ANSWERS_HELD / 2 {
                return;
            }
        }
    }
}
