//! ACME rows as stored, and their conversion to and from ca-core's types.

use std::net::IpAddr;

use ca_core::acme::identifier::{ChallengeType, Identifier};
use ca_core::acme::store::{Account, Authz, Challenge, EabKey, Order, StatusText};
use ca_core::audit::from_unix_micros;
use ca_core::store::StoreError;
use diesel::prelude::*;

use crate::error::corrupt;
use crate::schema::{acme_accounts, acme_authzs, acme_challenges, acme_eab_keys, acme_orders};
use crate::unix_micros;

pub(super) fn status<T: StatusText>(what: &str, text: &str) -> Result<T, StoreError> {
    T::parse(text).ok_or_else(|| corrupt(what, text))
}

pub(super) fn list(text: &str, sep: char) -> Vec<String> {
    text.split(sep)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `dns:a.internal` or `ip:10.0.0.1`.
pub(super) fn identifier_text(id: &Identifier) -> String {
    match id {
        Identifier::Dns(name) => format!("dns:{name}"),
        Identifier::Ip(ip) => format!("ip:{ip}"),
    }
}

pub(super) fn identifier(kind: &str, value: &str) -> Result<Identifier, StoreError> {
    match kind {
        "dns" => Ok(Identifier::Dns(value.to_owned())),
        "ip" => value
            .parse::<IpAddr>()
            .map(Identifier::Ip)
            .map_err(|_| corrupt("acme identifier", value)),
        _ => Err(corrupt("acme identifier type", kind)),
    }
}

pub(super) fn identifier_from_text(text: &str) -> Result<Identifier, StoreError> {
    let (kind, value) = text
        .split_once(':')
        .ok_or_else(|| corrupt("acme identifier", text))?;
    identifier(kind, value)
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = acme_accounts)]
pub(super) struct AccountRecord {
    pub(super) id: String,
    pub(super) thumbprint: String,
    pub(super) jwk: String,
    pub(super) status: String,
    pub(super) contact: String,
    pub(super) eab_kid: Option<String>,
    pub(super) created_at: i64,
}

impl TryFrom<AccountRecord> for Account {
    type Error = StoreError;
    fn try_from(r: AccountRecord) -> Result<Self, StoreError> {
        Ok(Account {
            status: status("acme account status", &r.status)?,
            id: r.id,
            thumbprint: r.thumbprint,
            jwk: r.jwk,
            contact: list(&r.contact, ' '),
            eab_kid: r.eab_kid,
            created_at: from_unix_micros(r.created_at),
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = acme_eab_keys)]
pub(super) struct EabRecord {
    pub(super) kid: String,
    pub(super) name: String,
    pub(super) profiles: String,
    pub(super) names: String,
    pub(super) hmac_sealed: Vec<u8>,
    pub(super) created_at: i64,
    pub(super) created_by: String,
    pub(super) revoked_at: Option<i64>,
}

impl From<EabRecord> for EabKey {
    fn from(r: EabRecord) -> Self {
        EabKey {
            kid: r.kid,
            name: r.name,
            profiles: list(&r.profiles, ','),
            names: list(&r.names, ','),
            hmac_sealed: r.hmac_sealed,
            created_at: from_unix_micros(r.created_at),
            created_by: r.created_by,
            revoked_at: r.revoked_at.map(from_unix_micros),
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = acme_orders)]
pub(super) struct OrderRecord {
    pub(super) id: String,
    pub(super) account_id: String,
    pub(super) status: String,
    pub(super) identifiers: String,
    pub(super) profile: String,
    pub(super) not_before: Option<i64>,
    pub(super) not_after: Option<i64>,
    pub(super) expires_at: i64,
    pub(super) created_at: i64,
    pub(super) serial: Option<String>,
    pub(super) error: Option<String>,
    pub(super) replaces: Option<String>,
}

impl TryFrom<OrderRecord> for Order {
    type Error = StoreError;
    fn try_from(r: OrderRecord) -> Result<Self, StoreError> {
        Ok(Order {
            status: status("acme order status", &r.status)?,
            identifiers: r
                .identifiers
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(identifier_from_text)
                .collect::<Result<_, _>>()?,
            id: r.id,
            account_id: r.account_id,
            profile: r.profile,
            not_before: r.not_before.map(from_unix_micros),
            not_after: r.not_after.map(from_unix_micros),
            expires_at: from_unix_micros(r.expires_at),
            created_at: from_unix_micros(r.created_at),
            serial: r.serial,
            error: r.error,
            replaces: r.replaces,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = acme_authzs)]
pub(super) struct AuthzRecord {
    pub(super) id: String,
    pub(super) order_id: String,
    pub(super) kind: String,
    pub(super) value: String,
    pub(super) wildcard: bool,
    pub(super) status: String,
    pub(super) expires_at: i64,
}

impl TryFrom<AuthzRecord> for Authz {
    type Error = StoreError;
    fn try_from(r: AuthzRecord) -> Result<Self, StoreError> {
        Ok(Authz {
            status: status("acme authorization status", &r.status)?,
            identifier: identifier(&r.kind, &r.value)?,
            id: r.id,
            order_id: r.order_id,
            wildcard: r.wildcard,
            expires_at: from_unix_micros(r.expires_at),
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = acme_challenges)]
pub(super) struct ChallengeRecord {
    pub(super) id: String,
    pub(super) authz_id: String,
    pub(super) kind: String,
    pub(super) token: String,
    pub(super) status: String,
    pub(super) validated_at: Option<i64>,
    pub(super) error: Option<String>,
}

impl TryFrom<ChallengeRecord> for Challenge {
    type Error = StoreError;
    fn try_from(r: ChallengeRecord) -> Result<Self, StoreError> {
        Ok(Challenge {
            kind: status::<ChallengeType>("acme challenge type", &r.kind)?,
            status: status("acme challenge status", &r.status)?,
            id: r.id,
            authz_id: r.authz_id,
            token: r.token,
            validated_at: r.validated_at.map(from_unix_micros),
            error: r.error,
        })
    }
}

pub(super) fn challenge_record(c: &Challenge) -> ChallengeRecord {
    ChallengeRecord {
        id: c.id.clone(),
        authz_id: c.authz_id.clone(),
        kind: c.kind.as_str().to_owned(),
        token: c.token.clone(),
        status: c.status.as_str().to_owned(),
        validated_at: c.validated_at.map(unix_micros),
        error: c.error.clone(),
    }
}

pub(super) fn authz_record(a: &Authz) -> AuthzRecord {
    let (kind, value) = match &a.identifier {
        Identifier::Dns(name) => ("dns", name.clone()),
        Identifier::Ip(ip) => ("ip", ip.to_string()),
    };
    AuthzRecord {
        id: a.id.clone(),
        order_id: a.order_id.clone(),
        kind: kind.to_owned(),
        value,
        wildcard: a.wildcard,
        status: a.status.as_str().to_owned(),
        expires_at: unix_micros(a.expires_at),
    }
}

pub(super) fn order_record(o: &Order) -> OrderRecord {
    OrderRecord {
        id: o.id.clone(),
        account_id: o.account_id.clone(),
        status: o.status.as_str().to_owned(),
        identifiers: o
            .identifiers
            .iter()
            .map(identifier_text)
            .collect::<Vec<_>>()
            .join(" "),
        profile: o.profile.clone(),
        not_before: o.not_before.map(unix_micros),
        not_after: o.not_after.map(unix_micros),
        expires_at: unix_micros(o.expires_at),
        created_at: unix_micros(o.created_at),
        serial: o.serial.clone(),
        error: o.error.clone(),
        replaces: o.replaces.clone(),
    }
}
