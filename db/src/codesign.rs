//! [`CodesignStore`] on both backends: the `codesign_keys` and `codesign_signatures` tables
//! (migration `*_codesign`) and `codesign_bindings` (migration `*_codesign_bindings`).
//!
//! Writes go through the same writer as every other change, so each runs in the batch
//! transaction that holds the audit chain's lock: checking the limits and inserting a
//! signature cannot interleave with another process doing the same.
//!
//! The writer keeps each key's count per window ([`Tallies`]) from one signature to the
//! next, and counts only the rows that entered or left the window since: counting the
//! whole window each time cost as much as the window held (with the limits raised, every
//! signature of the last 24 hours, twice per signature). The counts are exact while nothing
//! but this writer appends to the audit chain (every signature is recorded with its audit
//! entry); when anything else has, the writer forgets them and counts afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ca_core::audit::{AuditEvent, from_unix_micros};
use ca_core::cms::DigestAlg;
use ca_core::codesign::{
    CodesignKeyRow, CodesignStore, KeyBinding, NewCodesignKey, NewSignature, OwnerKind,
    SignatureRow, SigningWindow,
};
use ca_core::keystore::{KeyRef, KeySpec, SpkiDer};
use ca_core::store::{CertificateRow, Serial, StoreError};
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, corrupt, db_error};
use crate::schema::{api_tokens, codesign_bindings, codesign_keys, codesign_signatures, requests};
use crate::writer::{Chain, Tx};
use crate::{Db, read, unix_micros};

/// The most history rows one call returns.
const MAX_HISTORY: u32 = 1_000;

#[derive(Insertable, Queryable, Selectable)]
#[diesel(table_name = codesign_keys)]
struct KeyRecord {
    label: String,
    owner: String,
    profile: String,
    key_type: String,
    public_key: Vec<u8>,
    request_id: Option<i64>,
    serial: Option<String>,
    retired: Option<String>,
    created_at: i64,
    owner_kind: String,
}

impl TryFrom<KeyRecord> for CodesignKeyRow {
    type Error = StoreError;
    fn try_from(r: KeyRecord) -> Result<Self, StoreError> {
        Ok(CodesignKeyRow {
            key: KeyRef::new(&r.label).map_err(|e| corrupt("code-signing key label", e))?,
            spec: r
                .key_type
                .parse::<KeySpec>()
                .map_err(|e| corrupt("code-signing key type", e))?,
            public_key: SpkiDer::parse(&r.public_key)
                .map_err(|e| corrupt("code-signing public key", e))?,
            serial: r
                .serial
                .map(|s| Serial::parse(&s))
                .transpose()
                .map_err(|e| corrupt("code-signing key serial", e))?,
            owner_kind: OwnerKind::parse(&r.owner_kind)
                .ok_or_else(|| corrupt("code-signing key owner kind", &r.owner_kind))?,
            owner: r.owner,
            profile: r.profile,
            request_id: r.request_id,
            retired: r.retired,
            created_at: from_unix_micros(r.created_at),
        })
    }
}

#[derive(Insertable, Queryable, Selectable)]
#[diesel(table_name = codesign_signatures)]
struct SignatureRecord {
    id: i64,
    label: String,
    caller: String,
    serial: String,
    digest_algorithm: String,
    digest: String,
    at: i64,
}

impl TryFrom<SignatureRecord> for SignatureRow {
    type Error = StoreError;
    fn try_from(r: SignatureRecord) -> Result<Self, StoreError> {
        Ok(SignatureRow {
            id: r.id,
            signature: NewSignature {
                key: KeyRef::new(&r.label).map_err(|e| corrupt("signature key label", e))?,
                caller: r.caller,
                serial: Serial::parse(&r.serial).map_err(|e| corrupt("signature serial", e))?,
                digest_alg: DigestAlg::parse(&r.digest_algorithm)
                    .map_err(|e| corrupt("signature digest algorithm", e))?,
                digest: r.digest,
                at: from_unix_micros(r.at),
            },
        })
    }
}

fn key_record(conn: &mut AnyConnection, label: &str) -> Result<Option<KeyRecord>, OpError> {
    Ok(codesign_keys::table
        .find(label)
        .select(KeyRecord::as_select())
        .get_result(conn)
        .optional()?)
}

fn count_since(conn: &mut AnyConnection, label: &str, since: SystemTime) -> Result<u64, OpError> {
    let n: i64 = codesign_signatures::table
        .filter(codesign_signatures::label.eq(label))
        .filter(codesign_signatures::at.ge(unix_micros(since)))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The key's signatures with `from <= at < to` (unix microseconds).
fn count_between(
    conn: &mut AnyConnection,
    label: &str,
    from: i64,
    to: i64,
) -> Result<u64, OpError> {
    let n: i64 = codesign_signatures::table
        .filter(codesign_signatures::label.eq(label))
        .filter(codesign_signatures::at.ge(from))
        .filter(codesign_signatures::at.lt(to))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Per (key label, window name): `(since, n)`, the key's `n` signatures at or after `since`
/// (unix microseconds).
type Counts = HashMap<(String, String), (i64, u64)>;

/// The counts as of the writer's last commit, for the early check before signing.
pub(crate) type Published = Arc<Mutex<Counts>>;

/// The most (key, window) pairs the writer keeps; past it, it starts again.
const MAX_TALLIES: usize = 4096;

/// The writer's per-key window counts (see the module's documentation).
pub(crate) struct Tallies {
    counts: Counts,
    /// The chain head after the writer's last commit, while the counts are exact there.
    exact_at: Option<Chain>,
    changed: bool,
    published: Published,
}

impl Tallies {
    pub(crate) fn new(published: Published) -> Tallies {
        Tallies {
            counts: Counts::new(),
            exact_at: None,
            changed: false,
            published,
        }
    }

    /// A batch begins at chain head `head`: if anything but this writer has appended since
    /// its last commit, or that batch did not commit, the counts are forgotten.
    pub(crate) fn begin(&mut self, head: Chain) {
        if self.exact_at.take() != Some(head) && !self.counts.is_empty() {
            self.counts.clear();
            self.changed = true;
        }
    }

    /// The batch committed, leaving the chain at `head`.
    pub(crate) fn committed(&mut self, head: Chain) {
        self.exact_at = Some(head);
        if std::mem::take(&mut self.changed)
            && let Ok(mut published) = self.published.lock()
        {
            published.clone_from(&self.counts);
        }
    }

    fn get(&self, label: &str, window: &str) -> Option<(i64, u64)> {
        // No allocation for the look-up of the common case: few keys sign.
        self.counts
            .iter()
            .find(|((l, w), _)| l == label && w == window)
            .map(|(_, v)| *v)
    }

    fn set(&mut self, label: &str, window: &str, since: i64, n: u64) {
        if let Some(v) = self
            .counts
            .iter_mut()
            .find(|((l, w), _)| l == label && w == window)
            .map(|(_, v)| v)
        {
            *v = (since, n);
        } else {
            if self.counts.len() >= MAX_TALLIES {
                self.counts.clear();
            }
            self.counts
                .insert((label.to_owned(), window.to_owned()), (since, n));
        }
        self.changed = true;
    }
}

/// The key's signatures in window `w`, from the writer's last count of it and the rows that
/// entered or left the window since (or counted afresh); remembered for the next one.
fn window_count(tx: &mut Tx<'_>, label: &str, w: &SigningWindow) -> Result<u64, OpError> {
    let since = unix_micros(w.since);
    let known = match tx.tallies.get(label, &w.name) {
        Some((then, n)) if then <= since => {
            n.checked_sub(count_between(tx.conn, label, then, since)?)
        }
        Some((then, n)) => Some(n + count_between(tx.conn, label, since, then)?),
        None => None,
    };
    let n = match known {
        Some(n) => n,
        None => count_since(tx.conn, label, w.since)?,
    };
    tx.tallies.set(label, &w.name, since, n);
    Ok(n)
}

fn add_key(tx: &mut Tx<'_>, key: &NewCodesignKey, event: &AuditEvent) -> Result<(), OpError> {
    if key_record(tx.conn, key.key.label())?.is_some() {
        return Err(StoreError::Conflict(format!(
            "a code-signing key labelled {} is recorded already",
            key.key
        ))
        .into());
    }
    diesel::insert_into(codesign_keys::table)
        .values(KeyRecord {
            label: key.key.label().to_owned(),
            owner: key.owner.clone(),
            owner_kind: key.owner_kind.as_str().to_owned(),
            profile: key.profile.clone(),
            key_type: key.spec.as_str().to_owned(),
            public_key: key.public_key.as_bytes().to_vec(),
            request_id: None,
            serial: None,
            retired: None,
            created_at: unix_micros(key.created_at),
        })
        .execute(tx.conn)?;
    tx.audit(event)
}

fn bind(
    tx: &mut Tx<'_>,
    key: &KeyRef,
    binding: &KeyBinding,
    event: &AuditEvent,
) -> Result<(), OpError> {
    let record = key_record(tx.conn, key.label())?
        .ok_or_else(|| StoreError::NotFound(format!("code-signing key {key}")))?;
    if record.retired.is_some() {
        return Err(StoreError::Conflict(format!("code-signing key {key} is retired")).into());
    }
    let row = codesign_keys::table.find(key.label());
    match binding {
        KeyBinding::Request(id) => {
            if record.request_id.is_some_and(|r| r != *id) {
                return Err(StoreError::Conflict(format!(
                    "code-signing key {key} belongs to another request"
                ))
                .into());
            }
            diesel::update(row)
                .set(codesign_keys::request_id.eq(Some(*id)))
                .execute(tx.conn)?;
        }
        KeyBinding::Certificate(serial) => {
            if record
                .serial
                .as_deref()
                .is_some_and(|s| s != serial.as_str())
            {
                return Err(StoreError::Conflict(format!(
                    "code-signing key {key} is bound to another certificate"
                ))
                .into());
            }
            diesel::update(row)
                .set(codesign_keys::serial.eq(Some(serial.as_str())))
                .execute(tx.conn)?;
        }
        KeyBinding::Retired(reason) => {
            diesel::update(row)
                .set(codesign_keys::retired.eq(Some(reason.as_str())))
                .execute(tx.conn)?;
        }
    }
    tx.audit(event)
}

fn bind_token(
    tx: &mut Tx<'_>,
    key: &KeyRef,
    token: &str,
    by: &str,
    at: SystemTime,
    event: &AuditEvent,
) -> Result<(), OpError> {
    if key_record(tx.conn, key.label())?.is_none() {
        return Err(StoreError::NotFound(format!("code-signing key {key}")).into());
    }
    let revoked: Option<Option<i64>> = api_tokens::table
        .find(token)
        .select(api_tokens::revoked_at)
        .get_result(tx.conn)
        .optional()?;
    match revoked {
        None => return Err(StoreError::NotFound(format!("API token {token:?}")).into()),
        Some(Some(_)) => {
            return Err(StoreError::Conflict(format!(
                "API token {token:?} is revoked: it cannot be bound"
            ))
            .into());
        }
        Some(None) => {}
    }
    let already: i64 = codesign_bindings::table
        .filter(codesign_bindings::label.eq(key.label()))
        .filter(codesign_bindings::token.eq(token))
        .count()
        .get_result(tx.conn)?;
    if already > 0 {
        return Err(StoreError::Conflict(format!(
            "API token {token:?} is bound to code-signing key {key} already"
        ))
        .into());
    }
    diesel::insert_into(codesign_bindings::table)
        .values((
            codesign_bindings::label.eq(key.label()),
            codesign_bindings::token.eq(token),
            codesign_bindings::bound_by.eq(by),
            codesign_bindings::bound_at.eq(unix_micros(at)),
        ))
        .execute(tx.conn)?;
    tx.audit(event)
}

fn unbind_token(
    tx: &mut Tx<'_>,
    key: &KeyRef,
    token: &str,
    event: &AuditEvent,
) -> Result<(), OpError> {
    let gone = diesel::delete(
        codesign_bindings::table
            .filter(codesign_bindings::label.eq(key.label()))
            .filter(codesign_bindings::token.eq(token)),
    )
    .execute(tx.conn)?;
    if gone == 0 {
        return Err(StoreError::NotFound(format!(
            "a binding of API token {token:?} to code-signing key {key}"
        ))
        .into());
    }
    tx.audit(event)
}

fn record_signature(
    tx: &mut Tx<'_>,
    signature: &NewSignature,
    windows: &[SigningWindow],
    event: &AuditEvent,
) -> Result<(), OpError> {
    let label = signature.key.label();
    if key_record(tx.conn, label)?.is_none() {
        return Err(StoreError::NotFound(format!("code-signing key {}", signature.key)).into());
    }
    // The chain lock is held: no other writer counts or inserts until this commits.
    for w in windows {
        if window_count(tx, label, w)? >= w.max {
            return Err(
                StoreError::Conflict(ca_core::codesign::limit_reached(&signature.key, w)).into(),
            );
        }
    }
    let last: Option<i64> = codesign_signatures::table
        .select(diesel::dsl::max(codesign_signatures::id))
        .get_result(tx.conn)?;
    diesel::insert_into(codesign_signatures::table)
        .values(SignatureRecord {
            id: last.unwrap_or(0) + 1,
            label: label.to_owned(),
            caller: signature.caller.clone(),
            serial: signature.serial.as_str().to_owned(),
            digest_algorithm: signature.digest_alg.as_str().to_owned(),
            digest: signature.digest.clone(),
            at: unix_micros(signature.at),
        })
        .execute(tx.conn)?;
    tx.audit(event)?;
    // Last, so that a job that fails leaves the counts as they were.
    let at = unix_micros(signature.at);
    for w in windows {
        if let Some((since, n)) = tx.tallies.get(label, &w.name)
            && at >= since
        {
            tx.tallies.set(label, &w.name, since, n + 1);
        }
    }
    Ok(())
}

impl CodesignStore for Db {
    fn add_codesign_key(&self, key: &NewCodesignKey, event: &AuditEvent) -> Result<(), StoreError> {
        let (key, event) = (key.clone(), event.clone());
        self.writer.write(move |tx| add_key(tx, &key, &event))
    }

    fn bind_codesign_key(
        &self,
        key: &KeyRef,
        binding: &KeyBinding,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (key, binding, event) = (key.clone(), binding.clone(), event.clone());
        self.writer
            .write(move |tx| bind(tx, &key, &binding, &event))
    }

    fn codesign_key(&self, key: &KeyRef) -> Result<Option<CodesignKeyRow>, StoreError> {
        self.read(|conn| {
            key_record(conn, key.label())
                .map_err(StoreError::from)?
                .map(CodesignKeyRow::try_from)
                .transpose()
        })
    }

    /// The bound serial, else the serial its request was issued under; then that
    /// certificate's row as the certificates table holds it (status `revoked` included).
    fn codesign_certificate(&self, key: &KeyRef) -> Result<Option<CertificateRow>, StoreError> {
        self.read(|conn| {
            let Some(record) = key_record(conn, key.label()).map_err(StoreError::from)? else {
                return Ok(None);
            };
            let serial = match (record.serial, record.request_id) {
                (Some(serial), _) => Some(serial),
                (None, Some(id)) => requests::table
                    .find(id)
                    .select(requests::serial)
                    .get_result::<Option<String>>(conn)
                    .optional()
                    .map_err(db_error)?
                    .flatten(),
                (None, None) => None,
            };
            let Some(serial) = serial else {
                return Ok(None);
            };
            let serial = Serial::parse(&serial).map_err(|e| corrupt("serial", e))?;
            read::certificate(conn, &serial)
        })
    }

    fn codesign_signature_count(&self, key: &KeyRef, since: SystemTime) -> Result<u64, StoreError> {
        self.read(|conn| count_since(conn, key.label(), since).map_err(StoreError::from))
    }

    /// A window the writer's last commit counted under its limit at or before `since` is
    /// not full (it holds at most that count now, plus what others recorded since, which
    /// the record's own check catches); any other is counted.
    fn codesign_full_window(
        &self,
        key: &KeyRef,
        windows: &[SigningWindow],
    ) -> Result<Option<usize>, StoreError> {
        for (i, w) in windows.iter().enumerate() {
            let since = unix_micros(w.since);
            let under = self.tallies.lock().ok().is_some_and(|counts| {
                counts
                    .iter()
                    .find(|((l, n), _)| l == key.label() && n == &w.name)
                    .is_some_and(|(_, &(then, n))| then <= since && n < w.max)
            });
            if !under && self.codesign_signature_count(key, w.since)? >= w.max {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn record_codesign_signature(
        &self,
        signature: &NewSignature,
        windows: &[SigningWindow],
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (signature, windows, event) = (signature.clone(), windows.to_vec(), event.clone());
        self.writer
            .write(move |tx| record_signature(tx, &signature, &windows, &event))
    }

    fn bind_codesign_token(
        &self,
        key: &KeyRef,
        token: &str,
        by: &str,
        at: SystemTime,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (key, token, by, event) = (key.clone(), token.to_owned(), by.to_owned(), event.clone());
        self.writer
            .write(move |tx| bind_token(tx, &key, &token, &by, at, &event))
    }

    fn unbind_codesign_token(
        &self,
        key: &KeyRef,
        token: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (key, token, event) = (key.clone(), token.to_owned(), event.clone());
        self.writer
            .write(move |tx| unbind_token(tx, &key, &token, &event))
    }

    /// A binding counts only while its token's row says it is neither revoked nor expired:
    /// revoking a token stops it signing through every binding at once.
    fn codesign_token_bound(
        &self,
        key: &KeyRef,
        caller: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let now = unix_micros(now);
        self.read(|conn| {
            let n: i64 = codesign_bindings::table
                .inner_join(api_tokens::table.on(api_tokens::name.eq(codesign_bindings::token)))
                .filter(codesign_bindings::label.eq(key.label()))
                .filter(codesign_bindings::token.eq(caller))
                .filter(api_tokens::revoked_at.is_null())
                .filter(
                    api_tokens::expires_at
                        .is_null()
                        .or(api_tokens::expires_at.gt(now)),
                )
                .count()
                .get_result(conn)
                .map_err(db_error)?;
            Ok(n > 0)
        })
    }

    fn codesign_bindings(&self, key: &KeyRef) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            codesign_bindings::table
                .filter(codesign_bindings::label.eq(key.label()))
                .order(codesign_bindings::token.asc())
                .select(codesign_bindings::token)
                .load(conn)
                .map_err(db_error)
        })
    }

    fn codesign_signatures(
        &self,
        key: &KeyRef,
        limit: u32,
    ) -> Result<Vec<SignatureRow>, StoreError> {
        let limit = if limit == 0 {
            MAX_HISTORY
        } else {
            limit.min(MAX_HISTORY)
        };
        self.read(|conn| {
            codesign_signatures::table
                .filter(codesign_signatures::label.eq(key.label()))
                .order((
                    codesign_signatures::at.desc(),
                    codesign_signatures::id.desc(),
                ))
                .limit(i64::from(limit))
                .select(SignatureRecord::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(SignatureRow::try_from)
                .collect()
        })
    }
}
