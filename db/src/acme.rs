//! [`NonceLedger`] for [`Db`]: redeemed ACME nonces, shared by every node on the database.

use std::time::SystemTime;

use ca_core::acme::nonce::{NonceId, NonceLedger};
use ca_core::store::StoreError;
use diesel::prelude::*;

use crate::conn::{AnyConnection, Commit};
use crate::error::OpError;
use crate::schema::acme_nonces;
use crate::writer::Tx;
use crate::{Db, unix_micros};

/// Records `id` unless it is there, in one statement: `true` if this call recorded it. Two
/// nodes redeeming the same nonce at once: the database lets one insert in, and the other
/// inserts nothing.
fn redeem(tx: &mut Tx<'_>, id: &NonceId, expires_at: i64) -> Result<bool, OpError> {
    let insert = diesel::insert_into(acme_nonces::table)
        .values((
            acme_nonces::id.eq(id.as_slice()),
            acme_nonces::expires_at.eq(expires_at),
        ))
        .on_conflict(acme_nonces::id)
        .do_nothing();
    let inserted = match &mut *tx.conn {
        AnyConnection::Sqlite(c) => insert.execute(c)?,
        AnyConnection::Postgres(c) => insert.execute(c)?,
    };
    Ok(inserted == 1)
}

impl NonceLedger for Db {
    fn redeem_nonce(&self, id: &NonceId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let (id, expires_at) = (*id, unix_micros(expires_at));
        // Ordered, not durable: the request that used the nonce commits after this and
        // durably, which makes this durable too; a crash can lose the record only together
        // with that request's own change (see `writer.rs`).
        // It reads no audit row and writes none: it may run while a batch's audit rows wait.
        self.writer
            .append(Commit::Ordered, None, move |tx| redeem(tx, &id, expires_at))
    }

    fn sweep_nonces(&self, now: SystemTime) -> Result<u64, StoreError> {
        let now = unix_micros(now);
        self.writer.write_ordered(move |tx| {
            let gone = diesel::delete(acme_nonces::table.filter(acme_nonces::expires_at.lt(now)))
                .execute(tx.conn)?;
            Ok(gone as u64)
        })
    }
}
