//! [`AcmeStore`] for [`Db`]: ACME accounts, orders, authorizations, challenges, EAB keys.

use std::time::SystemTime;

use ca_core::acme::identifier::Identifier;
use ca_core::acme::order::{AuthzStatus, ChallengeStatus, OrderStatus};
use ca_core::acme::store::{
    Account, AccountStatus, AcmeStore, Authz, Challenge, EabKey, Order, StatusText, Swept,
    Validation,
};
use ca_core::audit::AuditEvent;
use ca_core::store::StoreError;
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, db_error};
use crate::schema::{acme_accounts, acme_authzs, acme_challenges, acme_eab_keys, acme_orders};
use crate::writer::Tx;
use crate::{Db, unix_micros};

mod records;
mod upkeep;

use self::records::{
    AccountRecord, AuthzRecord, ChallengeRecord, EabRecord, OrderRecord, authz_record,
    challenge_record, order_record,
};

fn conflict(detail: String) -> OpError {
    StoreError::Conflict(detail).into()
}

fn create_account(tx: &mut Tx<'_>, a: &Account, event: &AuditEvent) -> Result<(), OpError> {
    let taken: Option<String> = acme_accounts::table
        .filter(acme_accounts::thumbprint.eq(&a.thumbprint))
        .select(acme_accounts::id)
        .get_result(tx.conn)
        .optional()?;
    if let Some(id) = taken {
        return Err(conflict(format!("the key already has account {id}")));
    }
    diesel::insert_into(acme_accounts::table)
        .values(AccountRecord {
            id: a.id.clone(),
            thumbprint: a.thumbprint.clone(),
            jwk: a.jwk.clone(),
            status: a.status.as_str().to_owned(),
            contact: a.contact.join(" "),
            eab_kid: a.eab_kid.clone(),
            created_at: unix_micros(a.created_at),
        })
        .execute(tx.conn)?;
    tx.audit(event)
}

/// Ordered steps: an order's creation, a challenge's answer and its validation result
/// commit ordered, not durable (see `writer.rs`), each with its audit entry. They are
/// visible at once and ordered before every later write, so finalize, which issues through
/// the durable issuance cycle, makes the order's whole history durable before the
/// certificate is returned. A crash before that loses only a tail of them, together with
/// their audit entries and never in between others: the client then finds the order or
/// challenge gone or still pending and starts again, as RFC 8555 lets it.
fn create_order(
    tx: &mut Tx<'_>,
    order: &Order,
    authzs: &[(Authz, Vec<Challenge>)],
    event: &AuditEvent,
) -> Result<(), OpError> {
    diesel::insert_into(acme_orders::table)
        .values(order_record(order))
        .execute(tx.conn)?;
    for (authz, challenges) in authzs {
        diesel::insert_into(acme_authzs::table)
            .values(authz_record(authz))
            .execute(tx.conn)?;
        for c in challenges {
            diesel::insert_into(acme_challenges::table)
                .values(challenge_record(c))
                .execute(tx.conn)?;
        }
    }
    tx.audit(event)
}

fn challenges_of(conn: &mut AnyConnection, authz_id: &str) -> Result<Vec<Challenge>, StoreError> {
    acme_challenges::table
        .filter(acme_challenges::authz_id.eq(authz_id))
        .order(acme_challenges::kind.asc())
        .select(ChallengeRecord::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(Challenge::try_from)
        .collect()
}

fn authz_with_challenges(
    conn: &mut AnyConnection,
    r: AuthzRecord,
) -> Result<(Authz, Vec<Challenge>), StoreError> {
    let challenges = challenges_of(conn, &r.id)?;
    Ok((Authz::try_from(r)?, challenges))
}

fn start_challenge(
    tx: &mut Tx<'_>,
    id: &str,
    own: Option<&str>,
    event: &AuditEvent,
) -> Result<bool, OpError> {
    let authz_id: Option<String> = acme_challenges::table
        .find(id)
        .filter(acme_challenges::status.eq(ChallengeStatus::Pending.as_str()))
        .select(acme_challenges::authz_id)
        .get_result(tx.conn)
        .optional()?;
    let Some(authz_id) = authz_id else {
        return Ok(false);
    };
    let pending = acme_authzs::table
        .find(&authz_id)
        .filter(acme_authzs::status.eq(AuthzStatus::Pending.as_str()))
        .select(acme_authzs::expires_at)
        .get_result::<i64>(tx.conn)
        .optional()?;
    if pending.is_none_or(|expires| expires <= unix_micros(tx.now)) {
        return Ok(false);
    }
    // RFC 8555 7.1.6: once one challenge is answered, the others of the authorization
    // are moot; only the one answered runs.
    // The claim lets a live node take the validation over if this one stops.
    diesel::update(acme_challenges::table.find(id))
        .set((
            acme_challenges::status.eq(ChallengeStatus::Processing.as_str()),
            acme_challenges::claimed_by.eq(own),
        ))
        .execute(tx.conn)?;
    tx.audit(event)?;
    Ok(true)
}

fn finish_challenge(
    tx: &mut Tx<'_>,
    id: &str,
    result: &Validation,
    event: &AuditEvent,
) -> Result<bool, OpError> {
    let authz_id: Option<String> = acme_challenges::table
        .find(id)
        .filter(acme_challenges::status.eq(ChallengeStatus::Processing.as_str()))
        .select(acme_challenges::authz_id)
        .get_result(tx.conn)
        .optional()?;
    let Some(authz_id) = authz_id else {
        return Ok(false);
    };
    let (challenge, authz, validated_at, error) = match result {
        Validation::Valid => (
            ChallengeStatus::Valid,
            AuthzStatus::Valid,
            Some(unix_micros(tx.now)),
            None,
        ),
        Validation::Invalid(why) => (
            ChallengeStatus::Invalid,
            AuthzStatus::Invalid,
            None,
            Some(why.clone()),
        ),
    };
    diesel::update(acme_challenges::table.find(id))
        .set((
            acme_challenges::status.eq(challenge.as_str()),
            acme_challenges::validated_at.eq(validated_at),
            acme_challenges::error.eq(error),
        ))
        .execute(tx.conn)?;
    diesel::update(
        acme_authzs::table
            .find(&authz_id)
            .filter(acme_authzs::status.eq(AuthzStatus::Pending.as_str())),
    )
    .set(acme_authzs::status.eq(authz.as_str()))
    .execute(tx.conn)?;
    tx.audit(event)?;
    Ok(true)
}

impl AcmeStore for Db {
    fn create_account(&self, account: &Account, event: &AuditEvent) -> Result<(), StoreError> {
        let (account, event) = (account.clone(), event.clone());
        self.writer
            .write(move |tx| create_account(tx, &account, &event))
    }

    fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.read(|conn| {
            acme_accounts::table
                .find(id)
                .select(AccountRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(db_error)?
                .map(Account::try_from)
                .transpose()
        })
    }

    fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<Account>, StoreError> {
        self.read(|conn| {
            acme_accounts::table
                .filter(acme_accounts::thumbprint.eq(thumbprint))
                .select(AccountRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(db_error)?
                .map(Account::try_from)
                .transpose()
        })
    }

    fn update_account(
        &self,
        id: &str,
        contact: &[String],
        status: AccountStatus,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (id, contact, event) = (id.to_owned(), contact.join(" "), event.clone());
        self.writer.write(move |tx| {
            let n = diesel::update(
                acme_accounts::table
                    .find(&id)
                    .filter(acme_accounts::status.eq(AccountStatus::Valid.as_str())),
            )
            .set((
                acme_accounts::contact.eq(&contact),
                acme_accounts::status.eq(status.as_str()),
            ))
            .execute(tx.conn)?;
            if n == 0 {
                return Err(conflict(format!("account {id} is not valid")));
            }
            tx.audit(&event)
        })
    }

    fn change_account_key(
        &self,
        id: &str,
        thumbprint: &str,
        jwk: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (id, thumbprint, jwk, event) = (
            id.to_owned(),
            thumbprint.to_owned(),
            jwk.to_owned(),
            event.clone(),
        );
        self.writer.write(move |tx| {
            let taken: Option<String> = acme_accounts::table
                .filter(acme_accounts::thumbprint.eq(&thumbprint))
                .select(acme_accounts::id)
                .get_result(tx.conn)
                .optional()?;
            if let Some(other) = taken {
                return Err(conflict(format!("the new key already has account {other}")));
            }
            let n = diesel::update(
                acme_accounts::table
                    .find(&id)
                    .filter(acme_accounts::status.eq(AccountStatus::Valid.as_str())),
            )
            .set((
                acme_accounts::thumbprint.eq(&thumbprint),
                acme_accounts::jwk.eq(&jwk),
            ))
            .execute(tx.conn)?;
            if n == 0 {
                return Err(conflict(format!("account {id} is not valid")));
            }
            tx.audit(&event)
        })
    }

    fn accounts(&self, limit: i64) -> Result<Vec<Account>, StoreError> {
        self.read(|conn| {
            acme_accounts::table
                .order(acme_accounts::created_at.desc())
                .limit(limit)
                .select(AccountRecord::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(Account::try_from)
                .collect()
        })
    }

    fn create_eab_key(&self, key: &EabKey, event: &AuditEvent) -> Result<(), StoreError> {
        let record = EabRecord {
            kid: key.kid.clone(),
            name: key.name.clone(),
            profiles: key.profiles.join(","),
            names: key.names.join(","),
            hmac_sealed: key.hmac_sealed.clone(),
            created_at: unix_micros(key.created_at),
            created_by: key.created_by.clone(),
            revoked_at: None,
        };
        let event = event.clone();
        self.writer.write(move |tx| {
            let taken: Option<String> = acme_eab_keys::table
                .filter(acme_eab_keys::name.eq(&record.name))
                .select(acme_eab_keys::kid)
                .get_result(tx.conn)
                .optional()?;
            if taken.is_some() {
                return Err(conflict(format!(
                    "an EAB key named {:?} exists already (names are never reused)",
                    record.name
                )));
            }
            diesel::insert_into(acme_eab_keys::table)
                .values(&record)
                .execute(tx.conn)?;
            tx.audit(&event)
        })
    }

    fn eab_key(&self, kid: &str) -> Result<Option<EabKey>, StoreError> {
        self.read(|conn| {
            Ok(acme_eab_keys::table
                .find(kid)
                .select(EabRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(db_error)?
                .map(EabKey::from))
        })
    }

    fn revoke_eab_key(&self, name: &str, event: &AuditEvent) -> Result<(), StoreError> {
        let (name, event) = (name.to_owned(), event.clone());
        self.writer.write(move |tx| {
            let revoked: Option<Option<i64>> = acme_eab_keys::table
                .filter(acme_eab_keys::name.eq(&name))
                .select(acme_eab_keys::revoked_at)
                .get_result(tx.conn)
                .optional()?;
            match revoked {
                None => Err(StoreError::NotFound(format!("EAB key {name:?}")).into()),
                Some(Some(_)) => Err(conflict(format!("EAB key {name:?} is already revoked"))),
                Some(None) => {
                    diesel::update(acme_eab_keys::table.filter(acme_eab_keys::name.eq(&name)))
                        .set(acme_eab_keys::revoked_at.eq(unix_micros(tx.now)))
                        .execute(tx.conn)?;
                    tx.audit(&event)
                }
            }
        })
    }

    fn eab_keys(&self) -> Result<Vec<EabKey>, StoreError> {
        self.read(|conn| {
            Ok(acme_eab_keys::table
                .order(acme_eab_keys::name.asc())
                .select(EabRecord::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(EabKey::from)
                .collect())
        })
    }

    fn create_order(
        &self,
        order: &Order,
        authzs: &[(Authz, Vec<Challenge>)],
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (order, authzs, event) = (order.clone(), authzs.to_vec(), event.clone());
        // Ordered, not durable, like the two challenge steps: see the `create_order` fn above.
        self.writer
            .write_ordered(move |tx| create_order(tx, &order, &authzs, &event))
    }

    fn order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        self.read(|conn| {
            acme_orders::table
                .find(id)
                .select(OrderRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(db_error)?
                .map(Order::try_from)
                .transpose()
        })
    }

    fn orders_of(&self, account_id: &str, limit: i64) -> Result<Vec<Order>, StoreError> {
        self.read(|conn| {
            acme_orders::table
                .filter(acme_orders::account_id.eq(account_id))
                .order(acme_orders::created_at.desc())
                .limit(limit)
                .select(OrderRecord::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(Order::try_from)
                .collect()
        })
    }

    fn recent_orders(&self, limit: i64) -> Result<Vec<Order>, StoreError> {
        self.read(|conn| {
            acme_orders::table
                .order(acme_orders::created_at.desc())
                .limit(limit)
                .select(OrderRecord::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(Order::try_from)
                .collect()
        })
    }

    fn orders_since(&self, account_id: &str, since: SystemTime) -> Result<i64, StoreError> {
        self.read(|conn| {
            acme_orders::table
                .filter(acme_orders::account_id.eq(account_id))
                .filter(acme_orders::created_at.ge(unix_micros(since)))
                .count()
                .get_result(conn)
                .map_err(db_error)
        })
    }

    fn authzs_for(&self, value: &str, expires_after: SystemTime) -> Result<i64, StoreError> {
        self.read(|conn| {
            acme_authzs::table
                .filter(acme_authzs::value.eq(value))
                .filter(acme_authzs::expires_at.gt(unix_micros(expires_after)))
                .count()
                .get_result(conn)
                .map_err(db_error)
        })
    }

    fn holds_authorization(
        &self,
        account_id: &str,
        identifier: &Identifier,
        wildcard: bool,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let (kind, value) = match identifier {
            Identifier::Dns(name) => ("dns", name.clone()),
            Identifier::Ip(ip) => ("ip", ip.to_string()),
        };
        self.read(|conn| {
            let mut query = acme_authzs::table
                .inner_join(acme_orders::table.on(acme_orders::id.eq(acme_authzs::order_id)))
                .filter(acme_orders::account_id.eq(account_id))
                .filter(acme_authzs::kind.eq(kind))
                .filter(acme_authzs::value.eq(&value))
                .filter(acme_authzs::status.eq(AuthzStatus::Valid.as_str()))
                .filter(acme_authzs::expires_at.gt(unix_micros(now)))
                .select(acme_authzs::id)
                .limit(1)
                .into_boxed();
            if wildcard {
                query = query.filter(acme_authzs::wildcard.eq(true));
            }
            let found: Option<String> = query.get_result(conn).optional().map_err(db_error)?;
            Ok(found.is_some())
        })
    }

    fn set_order_status(
        &self,
        id: &str,
        from: OrderStatus,
        to: OrderStatus,
        serial: Option<&str>,
        error: Option<&str>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (id, serial, error, event) = (
            id.to_owned(),
            serial.map(str::to_owned),
            error.map(str::to_owned),
            event.clone(),
        );
        self.writer.write(move |tx| {
            let n = diesel::update(
                acme_orders::table
                    .find(&id)
                    .filter(acme_orders::status.eq(from.as_str())),
            )
            .set((
                acme_orders::status.eq(to.as_str()),
                acme_orders::serial.eq(&serial),
                acme_orders::error.eq(&error),
            ))
            .execute(tx.conn)?;
            if n == 0 {
                return Ok(false);
            }
            tx.audit(&event)?;
            Ok(true)
        })
    }

    fn order_authzs(&self, order_id: &str) -> Result<Vec<(Authz, Vec<Challenge>)>, StoreError> {
        self.read(|conn| {
            let records: Vec<AuthzRecord> = acme_authzs::table
                .filter(acme_authzs::order_id.eq(order_id))
                .order(acme_authzs::id.asc())
                .select(AuthzRecord::as_select())
                .load(conn)
                .map_err(db_error)?;
            records
                .into_iter()
                .map(|r| authz_with_challenges(conn, r))
                .collect()
        })
    }

    fn authz(&self, id: &str) -> Result<Option<(Authz, Vec<Challenge>)>, StoreError> {
        self.read(|conn| {
            let record: Option<AuthzRecord> = acme_authzs::table
                .find(id)
                .select(AuthzRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(db_error)?;
            record.map(|r| authz_with_challenges(conn, r)).transpose()
        })
    }

    fn deactivate_authz(&self, id: &str, event: &AuditEvent) -> Result<bool, StoreError> {
        let (id, event) = (id.to_owned(), event.clone());
        self.writer.write(move |tx| {
            let n = diesel::update(
                acme_authzs::table.find(&id).filter(
                    acme_authzs::status
                        .eq_any([AuthzStatus::Pending.as_str(), AuthzStatus::Valid.as_str()]),
                ),
            )
            .set(acme_authzs::status.eq(AuthzStatus::Deactivated.as_str()))
            .execute(tx.conn)?;
            if n == 0 {
                return Ok(false);
            }
            tx.audit(&event)?;
            Ok(true)
        })
    }

    fn challenge(&self, id: &str) -> Result<Option<Challenge>, StoreError> {
        self.read(|conn| {
            acme_challenges::table
                .find(id)
                .select(ChallengeRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(db_error)?
                .map(Challenge::try_from)
                .transpose()
        })
    }

    fn start_challenge(&self, id: &str, event: &AuditEvent) -> Result<bool, StoreError> {
        let (id, event) = (id.to_owned(), event.clone());
        let own = self.node.get().map(|n| n.instance.clone());
        self.writer
            .write_ordered(move |tx| start_challenge(tx, &id, own.as_deref(), &event))
    }

    fn finish_challenge(
        &self,
        id: &str,
        result: &Validation,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (id, result, event) = (id.to_owned(), result.clone(), event.clone());
        self.writer
            .write_ordered(move |tx| finish_challenge(tx, &id, &result, &event))
    }

    fn acme_counts(&self) -> Result<(i64, i64), StoreError> {
        self.read(|conn| {
            let accounts: i64 = acme_accounts::table
                .count()
                .get_result(conn)
                .map_err(db_error)?;
            let issued: i64 = acme_orders::table
                .filter(acme_orders::status.eq(OrderStatus::Valid.as_str()))
                .count()
                .get_result(conn)
                .map_err(db_error)?;
            Ok((accounts, issued))
        })
    }

    fn processing_challenges(&self, limit: i64) -> Result<Vec<Challenge>, StoreError> {
        self.read(|conn| {
            acme_challenges::table
                .filter(acme_challenges::status.eq(ChallengeStatus::Processing.as_str()))
                .limit(limit)
                .select(ChallengeRecord::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(Challenge::try_from)
                .collect()
        })
    }

    fn orphaned_challenges(
        &self,
        now: SystemTime,
        limit: i64,
    ) -> Result<Vec<(Challenge, Option<String>)>, StoreError> {
        let own = self.node.get().map(|n| n.instance.clone());
        self.read(|conn| upkeep::orphaned(conn, own.as_deref(), now, limit))
    }

    fn reclaim_challenge(
        &self,
        id: &str,
        from: Option<&str>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let Some(own) = self.node.get().map(|n| n.instance.clone()) else {
            return Ok(false);
        };
        let (id, from, event) = (id.to_owned(), from.map(str::to_owned), event.clone());
        self.writer
            .write(move |tx| upkeep::reclaim(tx, &id, from.as_deref(), &own, &event))
    }

    fn sweep_expired(
        &self,
        before: SystemTime,
        batch: i64,
        event: &AuditEvent,
    ) -> Result<Swept, StoreError> {
        let mut total = Swept::default();
        for orders in [true, false] {
            loop {
                let e = event.clone();
                let swept = self.writer.write(move |tx| {
                    if orders {
                        upkeep::sweep_orders(tx, before, batch, &e)
                    } else {
                        upkeep::sweep_authzs(tx, before, batch, &e)
                    }
                })?;
                total.orders += swept.orders;
                total.authzs += swept.authzs;
                total.challenges += swept.challenges;
                let done = if orders { swept.orders } else { swept.authzs };
                if done < u64::try_from(batch).unwrap_or(u64::MAX) {
                    break;
                }
            }
        }
        Ok(total)
    }
}
