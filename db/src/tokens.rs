//! [`TokenStore`] for [`Db`]: API tokens, kept apart from the issuance tables.

use ca_core::apitoken::{ApiToken, NewApiToken, Role, TokenStore};
use ca_core::audit::{AuditEvent, from_unix_micros};
use ca_core::store::StoreError;
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, corrupt, db_error};
use crate::schema::api_tokens;
use crate::writer::Tx;
use crate::{Db, unix_micros};

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
struct TokenRecord {
    name: String,
    role: String,
    profiles: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    created_by: String,
}

impl TryFrom<TokenRecord> for ApiToken {
    type Error = StoreError;
    fn try_from(r: TokenRecord) -> Result<Self, StoreError> {
        let role = Role::parse(&r.role).ok_or_else(|| corrupt("token role", &r.role))?;
        Ok(ApiToken {
            name: r.name,
            role,
            profiles: r
                .profiles
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: from_unix_micros(r.created_at),
            expires_at: r.expires_at.map(from_unix_micros),
            revoked_at: r.revoked_at.map(from_unix_micros),
            created_by: r.created_by,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = api_tokens)]
struct NewTokenRecord<'a> {
    name: &'a str,
    hash: &'a [u8],
    role: &'a str,
    profiles: String,
    created_at: i64,
    expires_at: Option<i64>,
    created_by: &'a str,
}

/// Whether a token named `name` exists, revoked or not.
pub(crate) fn exists(conn: &mut AnyConnection, name: &str) -> Result<bool, OpError> {
    let taken: Option<String> = api_tokens::table
        .find(name)
        .select(api_tokens::name)
        .get_result(conn)
        .optional()?;
    Ok(taken.is_some())
}

fn create(tx: &mut Tx<'_>, token: &NewApiToken, event: &AuditEvent) -> Result<(), OpError> {
    if crate::users::exists(tx.conn, &token.name)? {
        return Err(StoreError::Conflict(format!(
            "a user is named {:?}: users and tokens act under their names, so they cannot \
             share one",
            token.name
        ))
        .into());
    }
    // A person who owns a code-signing key (a CLI requester may have no account): a token
    // under their name would look like them in every audit entry (issue 15).
    let owner: Option<String> = crate::schema::codesign_keys::table
        .filter(crate::schema::codesign_keys::owner.eq(&token.name))
        .filter(crate::schema::codesign_keys::owner_kind.eq("user"))
        .select(crate::schema::codesign_keys::label)
        .first(tx.conn)
        .optional()?;
    if let Some(label) = owner {
        return Err(StoreError::Conflict(format!(
            "{:?} owns code-signing key {label}: a token cannot take a key owner's name",
            token.name
        ))
        .into());
    }
    if exists(tx.conn, &token.name)? {
        return Err(StoreError::Conflict(format!(
            "a token named {:?} exists already (names are never reused, even after revocation)",
            token.name
        ))
        .into());
    }
    diesel::insert_into(api_tokens::table)
        .values(NewTokenRecord {
            name: &token.name,
            hash: &token.hash,
            role: token.role.as_str(),
            profiles: token.profiles.join(","),
            created_at: unix_micros(tx.now),
            expires_at: token.expires_at.map(unix_micros),
            created_by: &token.created_by,
        })
        .execute(tx.conn)?;
    tx.audit(event)
}

fn revoke(tx: &mut Tx<'_>, name: &str, event: &AuditEvent) -> Result<(), OpError> {
    let revoked: Option<Option<i64>> = api_tokens::table
        .find(name)
        .select(api_tokens::revoked_at)
        .get_result(tx.conn)
        .optional()?;
    match revoked {
        None => Err(StoreError::NotFound(format!("token {name:?}")).into()),
        Some(Some(_)) => {
            Err(StoreError::Conflict(format!("token {name:?} is already revoked")).into())
        }
        Some(None) => {
            diesel::update(api_tokens::table.find(name))
                .set(api_tokens::revoked_at.eq(unix_micros(tx.now)))
                .execute(tx.conn)?;
            tx.audit(event)
        }
    }
}

fn all(conn: &mut AnyConnection) -> Result<Vec<ApiToken>, StoreError> {
    api_tokens::table
        .order(api_tokens::name.asc())
        .select(TokenRecord::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(ApiToken::try_from)
        .collect()
}

fn by_hash(conn: &mut AnyConnection, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
    api_tokens::table
        .filter(api_tokens::hash.eq(hash.as_slice()))
        .select(TokenRecord::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_error)?
        .map(ApiToken::try_from)
        .transpose()
}

impl TokenStore for Db {
    fn create_token(&self, token: &NewApiToken, event: &AuditEvent) -> Result<(), StoreError> {
        let (token, event) = (token.clone(), event.clone());
        self.writer.write(move |tx| create(tx, &token, &event))
    }

    fn revoke_token(&self, name: &str, event: &AuditEvent) -> Result<(), StoreError> {
        let (name, event) = (name.to_owned(), event.clone());
        self.writer.write(move |tx| revoke(tx, &name, &event))
    }

    fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.read(all)
    }

    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        self.read(|conn| by_hash(conn, hash))
    }
}
