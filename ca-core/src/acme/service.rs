//! The ACME service: accounts, orders, authorizations and challenges, decided here and
//! stored through [`AcmeStore`]; issuance through [`Ca::submit`], the same cycle as the API.
//!
//! Invariant: the actor of every audit entry is the account (`acme:<id>`), with its EAB key
//! beside it when it has one; a request that is refused writes nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::identifier::{Identifier, order_identifiers};
use super::jwk::{Jwk, key_authorization};
use super::order::{
    self, AuthzStatus, ChallengeAnswer, ChallengeStatus, OrderStatus, authz_status, order_status,
};
use super::secret::AcmeSecret;
use super::store::{
    Account, AccountStatus, AcmeStore, Authz, Challenge, EabKey, Order, Validation,
};
use super::{AcmeProblem, ProblemKind, b64url};
use crate::audit::{Action, AuditEvent};
use crate::issuance::Ca;
use crate::policy::{Profile, San};
use crate::revocation::publish::Publisher;
use crate::store::{CertificateQueries, StoreError};

/// How many identifiers an order may carry before the profile's own limit is consulted.
const MAX_IDENTIFIERS: usize = 100;

/// The ACME service's settings (`[acme]` in keyhold.toml).
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// Whether every new account must carry an external account binding.
    pub require_eab: bool,
    /// How long a pending order and its authorizations live.
    pub order_ttl: Duration,
    /// Orders one account may place per hour (0: no limit).
    pub orders_per_hour: u32,
    /// Orders naming one identifier, across accounts, per hour (0: no limit).
    pub orders_per_identifier_per_hour: u32,
    /// The profile an order that names none gets, unless its EAB key names one.
    pub default_profile: Option<String>,
    /// When clients should ask renewalInfo again (its `Retry-After`, RFC 9773 4.2).
    pub ari_retry_after: Duration,
}

/// An order as a client sees it now, with its authorizations' ids.
#[derive(Debug, Clone)]
pub struct OrderView {
    /// The order, its status computed for now.
    pub order: Order,
    /// Its authorizations' ids.
    pub authz_ids: Vec<String>,
}

/// An authorization as a client sees it now.
#[derive(Debug, Clone)]
pub struct AuthzView {
    /// The authorization, its status computed for now.
    pub authz: Authz,
    /// Its challenges.
    pub challenges: Vec<Challenge>,
}

/// What a validation worker checks for one challenge.
#[derive(Debug, Clone)]
pub struct ValidationJob {
    /// The challenge.
    pub challenge: Challenge,
    /// What must be proven (without `*.`).
    pub identifier: Identifier,
    /// The expected key authorization (RFC 8555 8.1).
    pub key_authorization: String,
    /// The account, for the audit entry.
    pub account_id: String,
}

/// What a newOrder request asks for (RFC 8555 7.4, draft-ietf-acme-profiles, RFC 9773).
#[derive(Debug, Clone, Default)]
pub struct NewOrder {
    /// The `identifiers` member, as sent.
    pub identifiers: Value,
    /// The profile, if named.
    pub profile: Option<String>,
    /// notBefore, if sent.
    pub not_before: Option<SystemTime>,
    /// notAfter, if sent.
    pub not_after: Option<SystemTime>,
    /// `replaces`, if sent: the ARI id of the certificate this order renews.
    pub replaces: Option<String>,
}

/// The ACME service.
pub struct AcmeService {
    pub(super) ca: Arc<Ca>,
    pub(super) store: Arc<dyn AcmeStore>,
    pub(super) certs: Arc<dyn CertificateQueries>,
    pub(super) publisher: Arc<Publisher>,
    pub(super) secret: Arc<AcmeSecret>,
    pub(super) settings: AcmeSettings,
}

impl std::fmt::Debug for AcmeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A fresh random id: 128 bits, base64url.
pub(super) fn random_id() -> Result<String, AcmeProblem> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| AcmeProblem::new(ProblemKind::ServerInternal, "no randomness"))?;
    Ok(b64url(&bytes))
}

/// A storage failure: logged here, answered as `serverInternal` without internals.
pub(super) fn internal(e: StoreError) -> AcmeProblem {
    tracing::error!(error = %e, "acme storage failed");
    AcmeProblem::new(ProblemKind::ServerInternal, "the server failed; try again")
}

/// The audit actor of an account.
pub fn actor(account_id: &str) -> String {
    format!("acme:{account_id}")
}

fn event(action: Action, account: &Account, source: &str, object: String) -> AuditEvent {
    let e = AuditEvent::new(action, actor(&account.id), source, object);
    match &account.eab_kid {
        Some(kid) => e.with("eab_kid", kid.as_str()),
        None => e,
    }
}

fn unauthorized(detail: impl Into<String>) -> AcmeProblem {
    AcmeProblem::new(ProblemKind::Unauthorized, detail)
}

fn not_found(what: &str) -> AcmeProblem {
    // RFC 8555 does not name a type for an unknown resource; malformed, answered with 404.
    AcmeProblem::malformed(format!("no such {what}"))
}

fn san_of(id: &Identifier) -> San {
    match id {
        Identifier::Dns(name) => San::Dns(name.clone()),
        Identifier::Ip(ip) => San::Ip(*ip),
    }
}

impl AcmeService {
    /// Assembles the service.
    pub fn new(
        ca: Arc<Ca>,
        store: Arc<dyn AcmeStore>,
        certs: Arc<dyn CertificateQueries>,
        publisher: Arc<Publisher>,
        secret: Arc<AcmeSecret>,
        settings: AcmeSettings,
    ) -> Self {
        AcmeService {
            ca,
            store,
            certs,
            publisher,
            secret,
            settings,
        }
    }

    /// The secret nonces are minted with.
    pub fn secret(&self) -> &AcmeSecret {
        &self.secret
    }

    /// Whether new accounts need an external account binding.
    pub fn require_eab(&self) -> bool {
        self.settings.require_eab
    }

    /// How long clients should wait before asking renewalInfo again.
    pub fn ari_retry_after(&self) -> Duration {
        self.settings.ari_retry_after
    }

    /// The profiles open to ACME (`acme = true`), by name.
    pub fn profiles(&self) -> Vec<&Profile> {
        self.ca.profiles().iter().filter(|p| p.acme()).collect()
    }

    /// The account with this id, which must be valid: `accountDoesNotExist` if there is
    /// none, `unauthorized` if it was deactivated.
    pub fn account(&self, id: &str) -> Result<Account, AcmeProblem> {
        let account = self.store.account(id).map_err(internal)?.ok_or_else(|| {
            AcmeProblem::new(ProblemKind::AccountDoesNotExist, "no account at this URL")
        })?;
        if account.status != AccountStatus::Valid {
            return Err(unauthorized(format!(
                "account is {}",
                super::store::StatusText::as_str(account.status)
            )));
        }
        Ok(account)
    }

    /// The account's key.
    pub fn account_key(&self, account: &Account) -> Result<Jwk, AcmeProblem> {
        let value: Value = serde_json::from_str(&account.jwk).map_err(|_| {
            internal(StoreError::Database(format!(
                "account {} has a corrupt key",
                account.id
            )))
        })?;
        Jwk::from_json(&value)
    }

    /// newAccount (RFC 8555 7.3): the account of `jwk`, created unless it exists. Returns
    /// the account and whether it was created. `eab` is verified against `url` (the
    /// newAccount URL).
    pub fn new_account(
        &self,
        jwk: &Jwk,
        payload: &Value,
        url: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<(Account, bool), AcmeProblem> {
        let thumbprint = jwk.thumbprint();
        if let Some(existing) = self
            .store
            .account_by_thumbprint(&thumbprint)
            .map_err(internal)?
        {
            if existing.status != AccountStatus::Valid {
                return Err(unauthorized("the account of this key is deactivated"));
            }
            return Ok((existing, false));
        }
        if payload.get("onlyReturnExisting").and_then(Value::as_bool) == Some(true) {
            return Err(AcmeProblem::new(
                ProblemKind::AccountDoesNotExist,
                "no account has this key",
            ));
        }
        let contact = contacts(payload)?;
        let eab_kid = match payload.get("externalAccountBinding") {
            Some(binding) => {
                let eab = super::eab::Eab::from_json(binding)?;
                let key = self.live_eab_key(&eab.key_id)?;
                let hmac = self
                    .secret
                    .open(&key.kid, &key.hmac_sealed)
                    .map_err(|e| internal(StoreError::Database(e)))?;
                eab.verify(&hmac, jwk, url)?;
                Some(key.kid)
            }
            None if self.settings.require_eab => {
                return Err(AcmeProblem::new(
                    ProblemKind::ExternalAccountRequired,
                    "this directory requires an external account binding",
                ));
            }
            None => None,
        };
        let account = Account {
            id: random_id()?,
            thumbprint,
            jwk: jwk.canonical_json(),
            status: AccountStatus::Valid,
            contact,
            eab_kid,
            created_at: now,
        };
        let e = event(
            Action::AcmeAccountCreated,
            &account,
            source,
            format!("acme-account:{}", account.id),
        )
        .with("thumbprint", account.thumbprint.as_str());
        match self.store.create_account(&account, &e) {
            Ok(()) => Ok((account, true)),
            // Two requests with one new key raced: the other created it.
            Err(StoreError::Conflict(_)) => match self
                .store
                .account_by_thumbprint(&account.thumbprint)
                .map_err(internal)?
            {
                Some(existing) => Ok((existing, false)),
                None => Err(internal(StoreError::Conflict("account vanished".into()))),
            },
            Err(e) => Err(internal(e)),
        }
    }

    fn live_eab_key(&self, kid: &str) -> Result<EabKey, AcmeProblem> {
        match self.store.eab_key(kid).map_err(internal)? {
            Some(key) if key.revoked_at.is_none() => Ok(key),
            Some(_) => Err(unauthorized("the external account binding key is revoked")),
            None => Err(unauthorized("unknown external account binding key id")),
        }
    }

    /// Account update (RFC 8555 7.3.2) and deactivation (7.3.6).
    pub fn update_account(
        &self,
        account: &Account,
        payload: &Value,
        source: &str,
    ) -> Result<Account, AcmeProblem> {
        let mut updated = account.clone();
        if payload.get("contact").is_some() {
            updated.contact = contacts(payload)?;
        }
        match payload.get("status").map(|s| s.as_str()) {
            None => {}
            Some(Some("deactivated")) => updated.status = AccountStatus::Deactivated,
            Some(Some("valid")) => {}
            Some(_) => {
                return Err(AcmeProblem::malformed(
                    "account status may only be set to \"deactivated\"",
                ));
            }
        }
        if updated == *account {
            return Ok(updated);
        }
        let e = event(
            Action::AcmeAccountUpdated,
            account,
            source,
            format!("acme-account:{}", account.id),
        )
        .with("status", super::store::StatusText::as_str(updated.status))
        .with("contact", updated.contact.join(" "));
        self.store
            .update_account(&account.id, &updated.contact, updated.status, &e)
            .map_err(|e| match e {
                StoreError::Conflict(d) => unauthorized(d),
                e => internal(e),
            })?;
        Ok(updated)
    }

    /// keyChange (RFC 8555 7.3.5), after [`super::keychange::check_key_change`] passed.
    pub fn change_key(
        &self,
        account: &Account,
        new_key: &Jwk,
        source: &str,
    ) -> Result<(), AcmeProblem> {
        let thumbprint = new_key.thumbprint();
        let e = event(
            Action::AcmeAccountUpdated,
            account,
            source,
            format!("acme-account:{}", account.id),
        )
        .with("old_thumbprint", account.thumbprint.as_str())
        .with("thumbprint", thumbprint.as_str());
        self.store
            .change_account_key(&account.id, &thumbprint, &new_key.canonical_json(), &e)
            .map_err(|e| match e {
                StoreError::Conflict(d) => AcmeProblem::malformed(d),
                e => internal(e),
            })
    }

    /// The profile an order of `account` gets: the one it names, else its EAB key's first,
    /// else the directory's default, else the first open to ACME. Fails with
    /// `invalidProfile` if the profile is not open to ACME or not to this account's key.
    fn order_profile(
        &self,
        named: Option<&str>,
        eab: Option<&EabKey>,
    ) -> Result<&Profile, AcmeProblem> {
        let open = self.profiles();
        let allowed = |p: &Profile| eab.is_none_or(|k| k.profiles.contains(&p.name));
        let name = named
            .map(str::to_owned)
            .or_else(|| eab.and_then(|k| k.profiles.first().cloned()))
            .or_else(|| self.settings.default_profile.clone())
            .or_else(|| open.first().map(|p| p.name.clone()))
            .ok_or_else(|| {
                AcmeProblem::new(ProblemKind::InvalidProfile, "no profile is open to ACME")
            })?;
        match open.into_iter().find(|p| p.name == name) {
            Some(p) if allowed(p) => Ok(p),
            Some(_) => Err(AcmeProblem::new(
                ProblemKind::InvalidProfile,
                format!("profile {name:?} is not open to this account's EAB key"),
            )),
            None => Err(AcmeProblem::new(
                ProblemKind::InvalidProfile,
                format!("profile {name:?} is not offered"),
            )),
        }
    }

    /// newOrder (RFC 8555 7.4): checks the identifiers against the profile exactly as the
    /// API's policy does, and records the order with one authorization per identifier.
    pub fn new_order(
        &self,
        account: &Account,
        request: &NewOrder,
        source: &str,
        now: SystemTime,
    ) -> Result<OrderView, AcmeProblem> {
        let identifiers = order_identifiers(&request.identifiers, MAX_IDENTIFIERS)?;
        let eab = match &account.eab_kid {
            Some(kid) => Some(self.live_eab_key(kid)?),
            None => None,
        };
        let profile = self.order_profile(request.profile.as_deref(), eab.as_ref())?;
        let sans: Vec<San> = identifiers.iter().map(san_of).collect();
        let mut refused = profile.names_refused(&sans);
        if let Some(key) = eab.as_ref().filter(|k| !k.names.is_empty()) {
            for id in &identifiers {
                let value = id.authorization_value();
                if !key.names.iter().any(|n| {
                    n.eq_ignore_ascii_case(&value)
                        || (n.starts_with('.') && value.ends_with(n.as_str()))
                }) {
                    refused.push(format!(
                        "{value} is outside the names EAB key {} may use",
                        key.name
                    ));
                }
            }
        }
        if !refused.is_empty() {
            return Err(AcmeProblem::new(
                ProblemKind::RejectedIdentifier,
                refused.join("; "),
            ));
        }
        if self.settings.orders_per_hour > 0 {
            let since = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
            let placed = self
                .store
                .orders_since(&account.id, since)
                .map_err(internal)?;
            if placed >= i64::from(self.settings.orders_per_hour) {
                return Err(AcmeProblem::new(
                    ProblemKind::RateLimited,
                    format!(
                        "this account placed {placed} orders in the last hour; the limit is {}",
                        self.settings.orders_per_hour
                    ),
                ));
            }
        }
        if self.settings.orders_per_identifier_per_hour > 0 {
            // An authorization made within the hour expires later than an hour before
            // its lifetime from now.
            let after = (now + self.settings.order_ttl)
                .checked_sub(Duration::from_secs(3600))
                .unwrap_or(now);
            for id in &identifiers {
                let value = id.authorization_value();
                let recent = self.store.authzs_for(&value, after).map_err(internal)?;
                if recent >= i64::from(self.settings.orders_per_identifier_per_hour) {
                    return Err(AcmeProblem::new(
                        ProblemKind::RateLimited,
                        format!(
                            "{value} was ordered {recent} times in the last hour; the limit is {}",
                            self.settings.orders_per_identifier_per_hour
                        ),
                    ));
                }
            }
        }
        // notBefore/notAfter (RFC 8555 7.4): certificates start when they are issued, so a
        // notBefore in the future cannot be honoured; notAfter becomes the requested validity.
        if request
            .not_before
            .is_some_and(|t| t > now + Duration::from_secs(300))
        {
            return Err(AcmeProblem::malformed(
                "notBefore in the future is not supported: certificates start when issued",
            ));
        }
        if request.not_after.is_some_and(|t| t <= now) {
            return Err(AcmeProblem::malformed("notAfter is in the past"));
        }
        let replaces = self.check_replaces(account, request.replaces.as_deref());
        let order_id = random_id()?;
        let expires_at = now + self.settings.order_ttl;
        let mut authzs = Vec::new();
        for id in &identifiers {
            let authz_id = random_id()?;
            let mut challenges = Vec::new();
            for kind in id.challenge_types() {
                challenges.push(Challenge {
                    id: random_id()?,
                    authz_id: authz_id.clone(),
                    kind: *kind,
                    token: format!("{}{}", random_id()?, random_id()?),
                    status: ChallengeStatus::Pending,
                    validated_at: None,
                    error: None,
                });
            }
            let base = match id {
                Identifier::Dns(_) => Identifier::Dns(id.authorization_value()),
                Identifier::Ip(_) => id.clone(),
            };
            authzs.push((
                Authz {
                    id: authz_id,
                    order_id: order_id.clone(),
                    identifier: base,
                    wildcard: id.is_wildcard(),
                    status: AuthzStatus::Pending,
                    expires_at,
                },
                challenges,
            ));
        }
        let order = Order {
            id: order_id,
            account_id: account.id.clone(),
            status: OrderStatus::Pending,
            identifiers,
            profile: profile.name.clone(),
            not_before: request.not_before,
            not_after: request.not_after,
            expires_at,
            created_at: now,
            serial: None,
            error: None,
            replaces,
        };
        let mut e = event(
            Action::AcmeOrderCreated,
            account,
            source,
            format!("acme-order:{}", order.id),
        )
        .with("profile", order.profile.as_str())
        .with("identifiers", sans_text(&sans));
        if let Some(r) = &order.replaces {
            e = e.with("replaces", r.as_str());
        }
        self.store
            .create_order(&order, &authzs, &e)
            .map_err(internal)?;
        Ok(OrderView {
            authz_ids: authzs.iter().map(|(a, _)| a.id.clone()).collect(),
            order,
        })
    }

    /// An order of `account`, its status computed for `now`.
    pub fn order(
        &self,
        account: &Account,
        id: &str,
        now: SystemTime,
    ) -> Result<OrderView, AcmeProblem> {
        let mut order = self
            .store
            .order(id)
            .map_err(internal)?
            .ok_or_else(|| not_found("order"))?;
        if order.account_id != account.id {
            return Err(unauthorized("the order belongs to another account"));
        }
        let authzs = self.store.order_authzs(id).map_err(internal)?;
        let statuses: Vec<AuthzStatus> = authzs
            .iter()
            .map(|(a, cs)| current_authz_status(a, cs, now))
            .collect();
        order.status = order_status(order.status, &statuses, order.expires_at, now);
        Ok(OrderView {
            authz_ids: authzs.into_iter().map(|(a, _)| a.id).collect(),
            order,
        })
    }

    /// An authorization of `account`, its status computed for `now`.
    pub fn authz(
        &self,
        account: &Account,
        id: &str,
        now: SystemTime,
    ) -> Result<AuthzView, AcmeProblem> {
        let (mut authz, challenges) = self
            .store
            .authz(id)
            .map_err(internal)?
            .ok_or_else(|| not_found("authorization"))?;
        self.owned_order(account, &authz.order_id)?;
        authz.status = current_authz_status(&authz, &challenges, now);
        Ok(AuthzView { authz, challenges })
    }

    fn owned_order(&self, account: &Account, order_id: &str) -> Result<Order, AcmeProblem> {
        let order = self
            .store
            .order(order_id)
            .map_err(internal)?
            .ok_or_else(|| not_found("order"))?;
        if order.account_id != account.id {
            return Err(unauthorized("the resource belongs to another account"));
        }
        Ok(order)
    }

    /// Authorization deactivation by the client (RFC 8555 7.5.2).
    pub fn deactivate_authz(
        &self,
        account: &Account,
        id: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<AuthzView, AcmeProblem> {
        let view = self.authz(account, id, now)?;
        let e = event(
            Action::AcmeAuthzDeactivated,
            account,
            source,
            format!("acme-authz:{id}"),
        );
        if !self.store.deactivate_authz(id, &e).map_err(internal)? {
            return Err(unauthorized(format!(
                "authorization is {}, not pending or valid",
                super::store::StatusText::as_str(view.authz.status)
            )));
        }
        self.authz(account, id, now)
    }

    /// A client answers a challenge (RFC 8555 7.5.1). Returns the challenge and whether a
    /// validation must now be queued.
    pub fn answer_challenge(
        &self,
        account: &Account,
        id: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<(Challenge, bool), AcmeProblem> {
        let mut challenge = self
            .store
            .challenge(id)
            .map_err(internal)?
            .ok_or_else(|| not_found("challenge"))?;
        let view = self.authz(account, &challenge.authz_id, now)?;
        match order::answer_challenge(view.authz.status, challenge.status)? {
            ChallengeAnswer::Unchanged => Ok((challenge, false)),
            ChallengeAnswer::StartValidation => {
                let e = event(
                    Action::AcmeChallengeAnswered,
                    account,
                    source,
                    format!("acme-challenge:{id}"),
                )
                .with("type", challenge.kind.name())
                .with("identifier", view.authz.identifier.authorization_value());
                let started = self.store.start_challenge(id, &e).map_err(internal)?;
                if started {
                    challenge.status = ChallengeStatus::Processing;
                }
                Ok((challenge, started))
            }
        }
    }

    /// A challenge of `account`, as it is.
    pub fn challenge(
        &self,
        account: &Account,
        id: &str,
        now: SystemTime,
    ) -> Result<Challenge, AcmeProblem> {
        let challenge = self
            .store
            .challenge(id)
            .map_err(internal)?
            .ok_or_else(|| not_found("challenge"))?;
        self.authz(account, &challenge.authz_id, now)?;
        Ok(challenge)
    }

    /// What a validation worker must check for a processing challenge; `None` if it is not
    /// processing (settled already, by this node or another).
    pub fn validation_job(&self, challenge_id: &str) -> Result<Option<ValidationJob>, AcmeProblem> {
        let Some(challenge) = self.store.challenge(challenge_id).map_err(internal)? else {
            return Ok(None);
        };
        if challenge.status != ChallengeStatus::Processing {
            return Ok(None);
        }
        let (authz, _) = self
            .store
            .authz(&challenge.authz_id)
            .map_err(internal)?
            .ok_or_else(|| not_found("authorization"))?;
        let order = self
            .store
            .order(&authz.order_id)
            .map_err(internal)?
            .ok_or_else(|| not_found("order"))?;
        let account = self
            .store
            .account(&order.account_id)
            .map_err(internal)?
            .ok_or_else(|| not_found("account"))?;
        let key = self.account_key(&account)?;
        Ok(Some(ValidationJob {
            key_authorization: key_authorization(&challenge.token, &key),
            identifier: authz.identifier,
            challenge,
            account_id: account.id,
        }))
    }

    /// Records how a validation ended (audited with the account as actor).
    pub fn settle(&self, job: &ValidationJob, result: &Validation) -> Result<(), AcmeProblem> {
        let mut e = AuditEvent::new(
            Action::AcmeValidated,
            actor(&job.account_id),
            "validation",
            format!("acme-challenge:{}", job.challenge.id),
        )
        .with("type", job.challenge.kind.name())
        .with("identifier", job.identifier.authorization_value());
        e = match result {
            Validation::Valid => e.with("result", "valid"),
            Validation::Invalid(why) => e.with("result", "invalid").with("error", why.as_str()),
        };
        self.store
            .finish_challenge(&job.challenge.id, result, &e)
            .map_err(internal)?;
        Ok(())
    }
}

fn sans_text(sans: &[San]) -> String {
    crate::policy::sans_text(sans)
}

/// An authorization's status now (RFC 8555 7.1.6), from its stored status and challenges.
pub(super) fn current_authz_status(
    authz: &Authz,
    challenges: &[Challenge],
    now: SystemTime,
) -> AuthzStatus {
    let statuses: Vec<ChallengeStatus> = challenges.iter().map(|c| c.status).collect();
    authz_status(authz.status, &statuses, authz.expires_at, now)
}

/// The `contact` member: `mailto:` URLs only (RFC 8555 7.3: `unsupportedContact` would be
/// the exact type; Keyhold sends no mail, so it only checks the form).
fn contacts(payload: &Value) -> Result<Vec<String>, AcmeProblem> {
    let Some(list) = payload.get("contact") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| AcmeProblem::malformed("contact is not an array"))?;
    list.iter()
        .map(|c| match c.as_str() {
            Some(s) if s.starts_with("mailto:") && s.len() <= 256 && !s.contains(' ') => {
                Ok(s.to_owned())
            }
            _ => Err(AcmeProblem::malformed("each contact must be a mailto: URL")),
        })
        .collect()
}
