//! [`UserStore`] for [`Db`]: web UI users and their sessions, kept apart from the issuance
//! tables (declared in `schema.rs` with the others).

use std::time::SystemTime;

use ca_core::audit::{AuditEvent, from_unix_micros};
use ca_core::store::StoreError;
use ca_core::users::{
    LOCKOUT, MAX_FAILURES, NewUser, PasswordHash, Role, Session, User, UserStore, roles_text,
};
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, corrupt, db_error};
use crate::schema::{sessions, users};
use crate::writer::Tx;
use crate::{Db, unix_micros};

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct UserRecord {
    name: String,
    roles: String,
    disabled: bool,
    must_change_password: bool,
    failed_logins: i32,
    locked_until: Option<i64>,
    created_at: i64,
    created_by: String,
    officer_since: Option<i64>,
    credentials_reset_at: Option<i64>,
}

impl TryFrom<UserRecord> for User {
    type Error = StoreError;
    fn try_from(r: UserRecord) -> Result<Self, StoreError> {
        let roles = r
            .roles
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| Role::parse(p).ok_or_else(|| corrupt("user role", p)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(User {
            name: r.name,
            roles,
            disabled: r.disabled,
            must_change_password: r.must_change_password,
            failed_logins: u32::try_from(r.failed_logins).unwrap_or(0),
            locked_until: r.locked_until.map(from_unix_micros),
            created_at: from_unix_micros(r.created_at),
            created_by: r.created_by,
            officer_since: r.officer_since.map(from_unix_micros),
            credentials_reset_at: r.credentials_reset_at.map(from_unix_micros),
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRecord<'a> {
    name: &'a str,
    password_hash: &'a str,
    roles: String,
    disabled: bool,
    must_change_password: bool,
    failed_logins: i32,
    created_at: i64,
    created_by: &'a str,
    password_changed_at: i64,
    officer_since: Option<i64>,
}

/// Whether a user named `name` exists. API tokens check it too: the two share one namespace,
/// since both become the requester and the audit log's actor by name alone.
pub(crate) fn exists(conn: &mut AnyConnection, name: &str) -> Result<bool, OpError> {
    let found: Option<String> = users::table
        .find(name)
        .select(users::name)
        .get_result(conn)
        .optional()?;
    Ok(found.is_some())
}

pub(crate) fn create(tx: &mut Tx<'_>, user: &NewUser, event: &AuditEvent) -> Result<(), OpError> {
    if exists(tx.conn, &user.name)? {
        return Err(
            StoreError::Conflict(format!("a user named {:?} exists already", user.name)).into(),
        );
    }
    if crate::tokens::exists(tx.conn, &user.name)? {
        return Err(StoreError::Conflict(format!(
            "an API token is named {:?}: users and tokens act under their names, so they \
             cannot share one",
            user.name
        ))
        .into());
    }
    let now = unix_micros(tx.now);
    diesel::insert_into(users::table)
        .values(NewUserRecord {
            name: &user.name,
            password_hash: user.password.as_str(),
            roles: roles_text(&user.roles),
            disabled: false,
            must_change_password: user.must_change_password,
            failed_logins: 0,
            created_at: now,
            created_by: &user.created_by,
            password_changed_at: now,
            // Created without a quorum: the officer role counts from now. The quorum's path
            // (`create_pending_admin`) clears it until the operation is carried out.
            officer_since: user.roles.contains(&Role::Officer).then_some(now),
        })
        .execute(tx.conn)?;
    tx.audit(event)
}

fn set_password(
    tx: &mut Tx<'_>,
    name: &str,
    hash: &PasswordHash,
    must_change: bool,
    keep: Option<[u8; 32]>,
    event: &AuditEvent,
) -> Result<(), OpError> {
    if !exists(tx.conn, name)? {
        return Err(StoreError::NotFound(format!("user {name:?}")).into());
    }
    diesel::update(users::table.find(name))
        .set((
            users::password_hash.eq(hash.as_str()),
            users::must_change_password.eq(must_change),
            users::failed_logins.eq(0),
            users::locked_until.eq(None::<i64>),
            users::password_changed_at.eq(unix_micros(tx.now)),
        ))
        .execute(tx.conn)?;
    if must_change {
        // A one-time password someone else has seen: the user's approvals do not count for
        // anything made before now (ca_core::approval).
        diesel::update(users::table.find(name))
            .set(users::credentials_reset_at.eq(Some(unix_micros(tx.now))))
            .execute(tx.conn)?;
    }
    let others = sessions::table.filter(sessions::user_name.eq(name));
    match keep {
        Some(k) => {
            diesel::delete(others.filter(sessions::id_hash.ne(k.as_slice()))).execute(tx.conn)?
        }
        None => diesel::delete(others).execute(tx.conn)?,
    };
    tx.audit(event)
}

fn set_disabled(
    tx: &mut Tx<'_>,
    name: &str,
    disabled: bool,
    event: &AuditEvent,
) -> Result<(), OpError> {
    let now: Option<bool> = users::table
        .find(name)
        .select(users::disabled)
        .get_result(tx.conn)
        .optional()?;
    match now {
        None => Err(StoreError::NotFound(format!("user {name:?}")).into()),
        Some(d) if d == disabled => Err(StoreError::Conflict(format!(
            "user {name:?} is already {}",
            if disabled { "disabled" } else { "enabled" }
        ))
        .into()),
        Some(_) => {
            if !disabled
                && let Some((id, status)) =
                    crate::operations::unfinished_admin_op(tx.conn, name, tx.now)?
            {
                return Err(StoreError::Conflict(if status == "pending" {
                    format!(
                        "user {name:?} is an administrator or officer waiting for officers' \
                         approval (operation {id}): keyhold ops approve {id} --as OFFICER"
                    )
                } else {
                    format!(
                        "user {name:?} is an administrator whose creation the officers did not \
                         approve (operation {id} is {status}): the account stays disabled for good"
                    )
                })
                .into());
            }
            diesel::update(users::table.find(name))
                .set(users::disabled.eq(disabled))
                .execute(tx.conn)?;
            if disabled {
                diesel::delete(sessions::table.filter(sessions::user_name.eq(name)))
                    .execute(tx.conn)?;
            }
            tx.audit(event)
        }
    }
}

fn login_failed(
    tx: &mut Tx<'_>,
    name: &str,
    count: bool,
    now: SystemTime,
    failed: &AuditEvent,
    locked: &AuditEvent,
) -> Result<bool, OpError> {
    tx.audit(failed)?;
    if !count {
        return Ok(false);
    }
    let current: Option<i32> = users::table
        .find(name)
        .select(users::failed_logins)
        .get_result(tx.conn)
        .optional()?;
    let Some(current) = current else {
        return Ok(false);
    };
    let failures = current.saturating_add(1);
    if u32::try_from(failures).unwrap_or(0) >= MAX_FAILURES {
        diesel::update(users::table.find(name))
            .set((
                users::failed_logins.eq(0),
                users::locked_until.eq(Some(unix_micros(now + LOCKOUT))),
            ))
            .execute(tx.conn)?;
        tx.audit(locked)?;
        Ok(true)
    } else {
        diesel::update(users::table.find(name))
            .set(users::failed_logins.eq(failures))
            .execute(tx.conn)?;
        Ok(false)
    }
}

#[derive(Insertable)]
#[diesel(table_name = sessions)]
struct NewSessionRecord<'a> {
    id_hash: &'a [u8],
    user_name: &'a str,
    created_at: i64,
    last_seen: i64,
}

fn login_succeeded(
    tx: &mut Tx<'_>,
    name: &str,
    session: &[u8; 32],
    now: SystemTime,
    idle: std::time::Duration,
    event: &AuditEvent,
) -> Result<(), OpError> {
    if !exists(tx.conn, name)? {
        return Err(StoreError::NotFound(format!("user {name:?}")).into());
    }
    diesel::update(users::table.find(name))
        .set((
            users::failed_logins.eq(0),
            users::locked_until.eq(None::<i64>),
        ))
        .execute(tx.conn)?;
    let stale = now.checked_sub(idle).unwrap_or(SystemTime::UNIX_EPOCH);
    diesel::delete(sessions::table.filter(sessions::last_seen.lt(unix_micros(stale))))
        .execute(tx.conn)?;
    let at = unix_micros(now);
    diesel::insert_into(sessions::table)
        .values(NewSessionRecord {
            id_hash: session,
            user_name: name,
            created_at: at,
            last_seen: at,
        })
        .execute(tx.conn)?;
    tx.audit(event)
}

fn all(conn: &mut AnyConnection) -> Result<Vec<User>, StoreError> {
    users::table
        .order(users::name.asc())
        .select(UserRecord::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(User::try_from)
        .collect()
}

fn one(conn: &mut AnyConnection, name: &str) -> Result<Option<User>, StoreError> {
    users::table
        .find(name)
        .select(UserRecord::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_error)?
        .map(User::try_from)
        .transpose()
}

fn session(conn: &mut AnyConnection, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
    let row: Option<(String, i64, i64)> = sessions::table
        .find(hash.as_slice())
        .select((
            sessions::user_name,
            sessions::created_at,
            sessions::last_seen,
        ))
        .get_result(conn)
        .optional()
        .map_err(db_error)?;
    let Some((name, created_at, last_seen)) = row else {
        return Ok(None);
    };
    Ok(one(conn, &name)?.map(|user| Session {
        user,
        created_at: from_unix_micros(created_at),
        last_seen: from_unix_micros(last_seen),
    }))
}

impl UserStore for Db {
    fn create_user(&self, user: &NewUser, event: &AuditEvent) -> Result<(), StoreError> {
        let (user, event) = (user.clone(), event.clone());
        self.writer.write(move |tx| create(tx, &user, &event))
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(all)
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.read(|conn| one(conn, name))
    }

    fn password_hash(&self, name: &str) -> Result<Option<PasswordHash>, StoreError> {
        let found: Option<String> = self.read(|conn| {
            users::table
                .find(name)
                .select(users::password_hash)
                .get_result(conn)
                .optional()
                .map_err(db_error)
        })?;
        Ok(found.map(PasswordHash::from_stored))
    }

    fn set_password(
        &self,
        name: &str,
        hash: &PasswordHash,
        must_change: bool,
        keep: Option<[u8; 32]>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (name, hash, event) = (name.to_owned(), hash.clone(), event.clone());
        self.writer
            .write(move |tx| set_password(tx, &name, &hash, must_change, keep, &event))
    }

    fn awaiting_approval(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.read(|conn| Ok(crate::operations::pending_admin_op(conn, name)?))
    }

    fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (name, event) = (name.to_owned(), event.clone());
        self.writer
            .write(move |tx| set_disabled(tx, &name, disabled, &event))
    }

    fn login_failed(
        &self,
        name: &str,
        count: bool,
        now: SystemTime,
        failed: &AuditEvent,
        locked: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (name, failed, locked) = (name.to_owned(), failed.clone(), locked.clone());
        self.writer
            .write(move |tx| login_failed(tx, &name, count, now, &failed, &locked))
    }

    fn login_succeeded(
        &self,
        name: &str,
        session: &[u8; 32],
        now: SystemTime,
        idle: std::time::Duration,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (name, session, event) = (name.to_owned(), *session, event.clone());
        self.writer
            .write(move |tx| login_succeeded(tx, &name, &session, now, idle, &event))
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        self.read(|conn| session(conn, hash))
    }

    fn touch_session(&self, hash: &[u8; 32], now: SystemTime) -> Result<(), StoreError> {
        let hash = *hash;
        self.writer.write(move |tx| {
            diesel::update(sessions::table.find(hash.as_slice()))
                .set(sessions::last_seen.eq(unix_micros(now)))
                .execute(tx.conn)?;
            Ok(())
        })
    }

    fn end_session(&self, hash: &[u8; 32], event: Option<&AuditEvent>) -> Result<(), StoreError> {
        let (hash, event) = (*hash, event.cloned());
        self.writer.write(move |tx| {
            diesel::delete(sessions::table.find(hash.as_slice())).execute(tx.conn)?;
            match &event {
                Some(e) => tx.audit(e),
                None => Ok(()),
            }
        })
    }
}
