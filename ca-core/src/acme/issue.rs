//! The ACME service's certificate side: finalize (through
//! [`crate::issuance::Ca::submit`], the API's cycle), download, revokeCert, renewal
//! information (RFC 9773) and EAB keys.
//!
//! Invariant: a certificate leaves only for the account whose order made it; a revocation
//! is signed by that account, by an account holding valid authorizations for every name in
//! the certificate, or by the certificate's own key.

use std::collections::BTreeSet;
use std::time::SystemTime;

use der::Decode;
use x509_cert::Certificate;

use super::ari::{CertId, RenewalFacts, RenewalWindow, suggested_window};
use super::identifier::Identifier;
use super::jwk::Jwk;
use super::order::{OrderStatus, check_finalize};
use super::service::{AcmeService, actor, internal};
use super::store::{Account, EabKey, Order};
use super::{AcmeProblem, ProblemKind};
use crate::audit::{Action, AuditEvent};
use crate::issuance::{Channel, IssueError, Outcome, Submission};
use crate::issuer;
use crate::policy::{Requester, San};
use crate::revocation::{Reason, RevocationError, RevokeRequest, Revoker};
use crate::store::{CertStatus, CertificateRow, Serial, StoreError};

/// Who signed a revokeCert request.
#[derive(Debug, Clone, Copy)]
pub enum RevokeSigner<'a> {
    /// An account (`kid`).
    Account(&'a Account),
    /// The certificate's own key (`jwk`).
    CertificateKey(&'a Jwk),
}

fn bad_csr(detail: impl Into<String>) -> AcmeProblem {
    AcmeProblem::new(ProblemKind::BadCsr, detail)
}

fn names_of(identifiers: &[Identifier]) -> BTreeSet<String> {
    identifiers
        .iter()
        .map(|i| match i {
            Identifier::Dns(n) => format!("dns:{n}"),
            Identifier::Ip(ip) => format!("ip:{ip}"),
        })
        .collect()
}

fn csr_names(sans: &[San]) -> Result<BTreeSet<String>, AcmeProblem> {
    sans.iter()
        .map(|s| match s {
            San::Dns(n) => Ok(format!("dns:{}", n.to_ascii_lowercase())),
            San::Ip(ip) => Ok(format!("ip:{ip}")),
            _ => Err(bad_csr(
                "the CSR names something other than DNS names and IPs",
            )),
        })
        .collect()
}

impl AcmeService {
    /// finalize (RFC 8555 7.4): the CSR must name exactly the order's identifiers; then the
    /// API's issuance cycle runs with the account as requester. The certificate is recorded
    /// durably before this returns.
    pub fn finalize(
        &self,
        account: &Account,
        order_id: &str,
        csr_der: &[u8],
        source: &str,
        now: SystemTime,
    ) -> Result<Order, AcmeProblem> {
        let view = self.order(account, order_id, now)?;
        check_finalize(view.order.status)?;
        let parsed = crate::csr::parse(csr_der, &[]).map_err(|e| bad_csr(format!("{e}")))?;
        let wanted = names_of(&view.order.identifiers);
        let got = csr_names(&parsed.facts.sans)?;
        if got != wanted {
            return Err(bad_csr(format!(
                "the CSR names {} but the order names {}",
                got.into_iter().collect::<Vec<_>>().join(", "),
                wanted.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        let stored = self
            .store
            .order(order_id)
            .map_err(internal)?
            .map(|o| o.status)
            .unwrap_or(OrderStatus::Pending);
        let order_event = |status: &str| {
            let e = AuditEvent::new(
                Action::AcmeOrderFinalized,
                actor(&account.id),
                source,
                format!("acme-order:{order_id}"),
            )
            .with("status", status);
            match &account.eab_kid {
                Some(kid) => e.with("eab_kid", kid.as_str()),
                None => e,
            }
        };
        if !self
            .store
            .set_order_status(
                order_id,
                stored,
                OrderStatus::Processing,
                None,
                None,
                &order_event("processing"),
            )
            .map_err(internal)?
        {
            return Err(AcmeProblem::new(
                ProblemKind::OrderNotReady,
                "order is already being finalized",
            ));
        }
        let profile = self
            .ca
            .profiles()
            .iter()
            .find(|p| p.name == view.order.profile);
        let requester = Requester {
            name: actor(&account.id),
            roles: profile
                .map(|p| p.requester_roles().to_vec())
                .unwrap_or_default(),
        };
        let submission = Submission {
            profile: &view.order.profile,
            csr: csr_der,
            requester: &requester,
            source,
            channel: Channel::Acme,
        };
        // notAfter (RFC 8555 7.4) as whole days from now, at least one; the profile clamps it.
        let days = view.order.not_after.map(|t| {
            let secs = t.duration_since(now).map_or(0, |d| d.as_secs());
            u32::try_from(secs / 86_400).unwrap_or(u32::MAX).max(1)
        });
        let (status, serial, error, problem) = match self.ca.submit_for_days(&submission, days, now)
        {
            Ok(Outcome::Issued(issued)) => (
                OrderStatus::Valid,
                Some(issued.serial.as_str().to_owned()),
                None,
                None,
            ),
            Ok(Outcome::Rejected(reasons)) => {
                let why = reasons.join("; ");
                (
                    OrderStatus::Invalid,
                    None,
                    Some(why.clone()),
                    Some(bad_csr(why)),
                )
            }
            Ok(Outcome::Pending { .. }) => {
                let why = "the profile asks for approvals, which ACME cannot wait for";
                (
                    OrderStatus::Invalid,
                    None,
                    Some(why.to_owned()),
                    Some(AcmeProblem::new(ProblemKind::ServerInternal, why)),
                )
            }
            Err(IssueError::Csr(e)) => {
                let why = e.to_string();
                (
                    OrderStatus::Invalid,
                    None,
                    Some(why.clone()),
                    Some(bad_csr(why)),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, order = order_id, "acme issuance failed");
                let why = "issuance failed on the server";
                (
                    OrderStatus::Invalid,
                    None,
                    Some(why.to_owned()),
                    Some(AcmeProblem::new(ProblemKind::ServerInternal, why)),
                )
            }
        };
        let mut e = order_event(super::store::StatusText::as_str(status));
        if let Some(s) = &serial {
            e = e.with("serial", s.as_str());
        }
        self.store
            .set_order_status(
                order_id,
                OrderStatus::Processing,
                status,
                serial.as_deref(),
                error.as_deref(),
                &e,
            )
            .map_err(internal)?;
        if let Some(p) = problem {
            return Err(p);
        }
        Ok(self.order(account, order_id, now)?.order)
    }

    /// The certificate of a valid order: leaf then intermediates, no root, as PEM.
    pub fn certificate_chain(
        &self,
        account: &Account,
        order_id: &str,
    ) -> Result<String, AcmeProblem> {
        let order = self
            .store
            .order(order_id)
            .map_err(internal)?
            .filter(|o| o.account_id == account.id)
            .ok_or_else(|| AcmeProblem::malformed("no such certificate"))?;
        let serial = order
            .serial
            .as_deref()
            .and_then(|s| Serial::parse(s).ok())
            .ok_or_else(|| AcmeProblem::malformed("no such certificate"))?;
        let row = self
            .certs
            .certificate(&serial)
            .map_err(internal)?
            .ok_or_else(|| AcmeProblem::malformed("no such certificate"))?;
        self.chain_pem(&row)
    }

    fn chain_pem(&self, row: &CertificateRow) -> Result<String, AcmeProblem> {
        let der = row
            .der
            .as_deref()
            .ok_or_else(|| AcmeProblem::malformed("no such certificate"))?;
        let pem_err = |_| AcmeProblem::new(ProblemKind::ServerInternal, "cannot encode PEM");
        let mut out = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der)
            .map_err(pem_err)?;
        let issuers = self.ca.issuers();
        if let Some(issuer) = issuers.iter().find(|i| i.id.as_str() == row.issuer) {
            for c in issuer::chain_without_root(issuers, issuer) {
                out.push_str(&c.to_pem().map_err(|_| {
                    AcmeProblem::new(ProblemKind::ServerInternal, "cannot encode PEM")
                })?);
            }
        }
        Ok(out)
    }

    /// revokeCert (RFC 8555 7.6): by the account that ordered the certificate, by an account
    /// holding valid authorizations for every name in it, or signed by the certificate's own
    /// key. Re-signs the OCSP answers before it returns.
    pub fn revoke(
        &self,
        signer: RevokeSigner<'_>,
        cert_der: &[u8],
        reason: Option<u8>,
        source: &str,
        now: SystemTime,
    ) -> Result<(), AcmeProblem> {
        let cert = Certificate::from_der(cert_der)
            .map_err(|_| AcmeProblem::malformed("certificate does not decode"))?;
        let serial = Serial::from_bytes(cert.tbs_certificate().serial_number().as_bytes());
        let row = self
            .certs
            .certificate(&serial)
            .map_err(internal)?
            .filter(|r| r.der.as_deref() == Some(cert_der))
            .ok_or_else(|| {
                AcmeProblem::new(
                    ProblemKind::Unauthorized,
                    "this CA did not issue the certificate",
                )
            })?;
        let (actor_name, revoker_name) = match signer {
            RevokeSigner::Account(account) => {
                let name = actor(&account.id);
                if row.requester == name {
                    (name.clone(), name)
                } else if self.authorized_to_revoke(account, &cert, now)? {
                    (name, row.requester.clone())
                } else {
                    return Err(AcmeProblem::new(
                        ProblemKind::Unauthorized,
                        "the certificate was not issued to this account, and the account \
                         holds no valid authorization for every name in it",
                    ));
                }
            }
            RevokeSigner::CertificateKey(jwk) => {
                let spki = cert.tbs_certificate().subject_public_key_info();
                if !jwk_matches(jwk, spki.subject_public_key.raw_bytes()) {
                    return Err(AcmeProblem::new(
                        ProblemKind::Unauthorized,
                        "the request is signed by neither an account nor the certificate's key",
                    ));
                }
                (
                    format!("acme:certificate-key:{}", jwk.thumbprint()),
                    row.requester.clone(),
                )
            }
        };
        if row.status == CertStatus::Revoked {
            return Err(AcmeProblem::new(
                ProblemKind::AlreadyRevoked,
                "the certificate is already revoked",
            ));
        }
        let reason = Reason::from_code(reason.unwrap_or(0)).ok_or_else(|| {
            AcmeProblem::new(
                ProblemKind::BadRevocationReason,
                "unknown revocation reason code",
            )
        })?;
        let request = RevokeRequest {
            serial: &serial,
            reason,
            invalidity_date: None,
            actor: &actor_name,
            revoker: Revoker::Requester(&revoker_name),
            source,
        };
        match self.publisher.revoke(&request, now) {
            Ok(_) => Ok(()),
            Err(RevocationError::Store(StoreError::Conflict(_))) => Err(AcmeProblem::new(
                ProblemKind::AlreadyRevoked,
                "the certificate is already revoked",
            )),
            Err(
                e @ (RevocationError::ReasonRefused(_)
                | RevocationError::NotAllowed(_)
                | RevocationError::UnknownReason(_)),
            ) => Err(AcmeProblem::new(
                ProblemKind::BadRevocationReason,
                e.to_string(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "acme revocation failed");
                Err(AcmeProblem::new(
                    ProblemKind::ServerInternal,
                    "revocation failed",
                ))
            }
        }
    }

    /// Whether `account` holds valid authorizations for every name `cert` carries
    /// (RFC 8555 7.6); see [`super::revoke_authz`].
    fn authorized_to_revoke(
        &self,
        account: &Account,
        cert: &Certificate,
        now: SystemTime,
    ) -> Result<bool, AcmeProblem> {
        let Some(ids) = super::revoke_authz::cert_identifiers(cert) else {
            return Ok(false);
        };
        super::revoke_authz::holds_authorizations(self.store.as_ref(), &account.id, &ids, now)
            .map_err(internal)
    }

    /// renewalInfo (RFC 9773): the window for the certificate `id` names; in the past when
    /// it is revoked, or after a CA rotation: its profile now names another issuing CA
    /// (`keyhold ca add-issuing`, then the profile's `issuer` changed), so a renewal comes
    /// from the new one. Fails with `malformed` (answered 404) for a certificate this CA did
    /// not issue.
    pub fn renewal_info(&self, id: &str, now: SystemTime) -> Result<RenewalWindow, AcmeProblem> {
        let row = self.certificate_by_ari(id)?;
        let rotated = self
            .ca
            .profiles()
            .iter()
            .find(|p| p.name == row.profile)
            .is_some_and(|p| p.issuer().as_str() != row.issuer);
        Ok(suggested_window(
            RenewalFacts {
                not_before: row.not_before,
                not_after: row.not_after,
                renew_now: row.status == CertStatus::Revoked || rotated,
            },
            now,
        ))
    }

    fn certificate_by_ari(&self, id: &str) -> Result<CertificateRow, AcmeProblem> {
        let cert_id = CertId::parse(id)?;
        let serial = Serial::from_bytes(&cert_id.serial);
        let row = self
            .certs
            .certificate(&serial)
            .map_err(internal)?
            .ok_or_else(|| AcmeProblem::malformed("no such certificate"))?;
        let der = row
            .der
            .as_deref()
            .ok_or_else(|| AcmeProblem::malformed("no such certificate"))?;
        if CertId::of_certificate(der)? != cert_id {
            return Err(AcmeProblem::malformed("no such certificate"));
        }
        Ok(row)
    }

    /// `replaces` (RFC 9773 5): kept only if it names a certificate of this account; any
    /// other value makes a plain new order, logged, never a failed renewal.
    pub(super) fn check_replaces(
        &self,
        account: &Account,
        replaces: Option<&str>,
    ) -> Option<String> {
        let id = replaces?;
        match self.certificate_by_ari(id) {
            Ok(row) if row.requester == actor(&account.id) => Some(id.to_owned()),
            Ok(_) => {
                tracing::info!(account = %account.id, replaces = id,
                    "acme: replaces names another account's certificate; a plain new order");
                None
            }
            Err(_) => {
                tracing::info!(account = %account.id, replaces = id,
                    "acme: replaces names no certificate of this CA; a plain new order");
                None
            }
        }
    }

    /// Creates an EAB key for the profiles open to ACME (see [`super::eab_keys::create`]).
    ///
    /// Fails as that does.
    pub fn create_eab_key(
        &self,
        req: &super::eab_keys::EabRequest<'_>,
        now: SystemTime,
    ) -> Result<super::eab_keys::NewEabKey, String> {
        let open: Vec<String> = self.profiles().iter().map(|p| p.name.clone()).collect();
        super::eab_keys::create(self.store.as_ref(), &self.secret, &open, req, now)
    }

    /// Revokes the EAB key `name` (see [`super::eab_keys::revoke`]).
    ///
    /// Fails as that does.
    pub fn revoke_eab_key(&self, name: &str, actor: &str, source: &str) -> Result<(), StoreError> {
        super::eab_keys::revoke(self.store.as_ref(), name, actor, source)
    }

    /// How many accounts there are, and how many certificates ACME issued.
    pub fn counts(&self) -> Result<(i64, i64), StoreError> {
        self.store.acme_counts()
    }

    /// Every EAB key (never their HMAC keys).
    pub fn eab_keys(&self) -> Result<Vec<EabKey>, StoreError> {
        self.store.eab_keys()
    }

    /// The newest accounts.
    pub fn accounts(&self, limit: i64) -> Result<Vec<Account>, StoreError> {
        self.store.accounts(limit)
    }

    /// An account's orders, newest first.
    pub fn orders_of(&self, account: &Account, limit: i64) -> Result<Vec<Order>, AcmeProblem> {
        self.store.orders_of(&account.id, limit).map_err(internal)
    }

    /// The newest orders.
    pub fn recent_orders(&self, limit: i64) -> Result<Vec<Order>, StoreError> {
        self.store.recent_orders(limit)
    }
}

/// Whether `jwk` is the key in a certificate's subjectPublicKey BIT STRING.
fn jwk_matches(jwk: &Jwk, subject_public_key: &[u8]) -> bool {
    match jwk {
        Jwk::Ec { x, y, .. } => {
            let mut point = vec![0x04];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            point == subject_public_key
        }
        Jwk::Ed25519 { x } => x.as_slice() == subject_public_key,
        Jwk::Rsa { n, e } => {
            #[derive(der::Sequence)]
            struct RsaPublicKey<'a> {
                n: der::asn1::UintRef<'a>,
                e: der::asn1::UintRef<'a>,
            }
            RsaPublicKey::from_der(subject_public_key)
                .is_ok_and(|k| k.n.as_bytes() == n.as_slice() && k.e.as_bytes() == e.as_slice())
        }
    }
}
