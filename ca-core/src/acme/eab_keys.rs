//! External account binding keys, as administrators make and revoke them (the CLI and the
//! UI call these; newAccount checks bindings in the service).
//!
//! Invariant: an HMAC key exists in clear only in memory, once, for the administrator who
//! made it; the database holds it sealed under the server's ACME secret, and the audit log
//! never holds it.

use std::time::SystemTime;

use zeroize::Zeroizing;

use super::b64url;
use super::secret::AcmeSecret;
use super::service::random_id;
use super::store::{AcmeStore, EabKey};
use crate::audit::{Action, AuditEvent};
use crate::store::StoreError;

/// A new EAB key, shown once to the administrator who made it.
#[derive(Debug)]
pub struct NewEabKey {
    /// The key id clients send.
    pub kid: String,
    /// The HMAC key, base64url (what `--eab-hmac-key` takes).
    pub hmac_b64: Zeroizing<String>,
}

/// What an administrator asks for.
#[derive(Debug, Clone)]
pub struct EabRequest<'a> {
    /// A unique name for people (`team-a`).
    pub name: &'a str,
    /// Profiles the key's accounts may use, the first their default; empty: every profile
    /// open to ACME.
    pub profiles: &'a [String],
    /// DNS names or `.suffix`es the key's accounts may name; empty: the profile decides.
    pub names: &'a [String],
    /// Who asks.
    pub actor: &'a str,
    /// From where.
    pub source: &'a str,
}

/// Creates an EAB key; `open` are the profiles open to ACME. Returns its id and HMAC key,
/// shown once and never again.
///
/// Fails with a message for a bad name, a profile not open to ACME, a taken name, or a
/// storage failure.
pub fn create(
    store: &dyn AcmeStore,
    secret: &AcmeSecret,
    open: &[String],
    req: &EabRequest<'_>,
    now: SystemTime,
) -> Result<NewEabKey, String> {
    let name = req.name;
    let ok_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok_name {
        return Err(format!(
            "EAB key name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    let profiles = if req.profiles.is_empty() {
        open.to_vec()
    } else {
        req.profiles.to_vec()
    };
    for p in &profiles {
        if !open.contains(p) {
            return Err(format!(
                "profile {p:?} is not open to ACME (open: {})",
                open.join(", ")
            ));
        }
    }
    for n in req.names {
        if n.is_empty() || n.contains(',') || n.contains(' ') {
            return Err(format!("name {n:?}: give a DNS name or a .suffix"));
        }
    }
    let kid = random_id().map_err(|p| p.detail)?;
    let mut hmac = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(hmac.as_mut()).map_err(|_| "no randomness".to_owned())?;
    let key = EabKey {
        hmac_sealed: secret.seal(&kid, hmac.as_ref())?,
        kid: kid.clone(),
        name: name.to_owned(),
        profiles: profiles.clone(),
        names: req.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        created_at: now,
        created_by: req.actor.to_owned(),
        revoked_at: None,
    };
    let event = AuditEvent::new(
        Action::AcmeEabCreated,
        req.actor,
        req.source,
        format!("acme-eab:{kid}"),
    )
    .with("name", name)
    .with("profiles", profiles.join(","))
    .with("names", req.names.join(","));
    store
        .create_eab_key(&key, &event)
        .map_err(|e| e.to_string())?;
    Ok(NewEabKey {
        kid,
        hmac_b64: Zeroizing::new(b64url(hmac.as_ref())),
    })
}

/// Revokes the EAB key `name`: no new account can bind to it, and its accounts can place
/// no new orders.
///
/// Fails with `NotFound`, `Conflict` (already revoked) or a storage failure.
pub fn revoke(
    store: &dyn AcmeStore,
    name: &str,
    actor: &str,
    source: &str,
) -> Result<(), StoreError> {
    let event = AuditEvent::new(
        Action::AcmeEabRevoked,
        actor,
        source,
        format!("acme-eab-name:{name}"),
    );
    store.revoke_eab_key(name, &event)
}
