//! The issuance cycle: a CSR comes in, the policy decides, the key store signs, and nothing is
//! ever signed that the database and the audit log do not know.
//!
//! The order is the invariant: parse and verify the CSR, evaluate the profile, reserve the
//! serial with its audit entry (one committed transaction), build and check the
//! certificate, sign it, record it with its audit entry (one durable transaction), and only
//! then return it. A crash between reservation and recording leaves a `Reserved` row that
//! [`Ca::recover`] closes, or, if the reservation had not reached the disk yet, no trace:
//! either way the certificate was never returned to anyone, and its serial is not reused.
//! The reservation is not flushed on its own (see [`Store::reserve`]): the database orders
//! it before the recording, whose flush covers both.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use const_oid::ObjectIdentifier;
use der::Decode;
use der::asn1::{Ia5String, OctetString};
use x509_cert::ext::pkix::constraints::name::{GeneralSubtree, NameConstraints};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::name::Name;

use crate::audit::{Action, AuditEvent};
use crate::csr::{self, CsrError};
use crate::error::ErrorKind;
use crate::issuer::{Issuer, IssuerId};
use crate::keystore::SpkiDer;
use crate::policy::{self, Decision, Plan, Profile, Requester, San};
use crate::store::{
    Approval, CertStatus, NewCertificate, NewRequest, RequestRow, RequestStatus, Serial, Store,
    StoreError,
};
use crate::x509::{self, CertTemplate, SignedCert, X509Error};

/// A reservation older than this belongs to a process that died while signing (signing takes
/// milliseconds; the margin covers a slow HSM and clock skew between processes).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(300);

/// The requester recorded for the certificates Keyhold issues to its own HTTPS listener.
pub const OWN_SERVER_REQUESTER: &str = "keyhold-server";

/// Where a request came from, which decides the profiles it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The `keyhold` command line, run by someone with access to the data directory.
    Cli,
    /// The HTTP API.
    Api,
}

/// A certificate request as it arrives.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// The profile's name.
    pub profile: &'a str,
    /// The CSR, PEM or DER.
    pub csr: &'a [u8],
    /// Who asks.
    pub requester: &'a Requester,
    /// From where (`cli`, an IP address), for the audit log.
    pub source: &'a str,
    /// Through which interface.
    pub channel: Channel,
}

/// A certificate that has been signed and recorded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Its serial.
    pub serial: Serial,
    /// The certificate.
    pub cert: SignedCert,
    /// The issuing CA certificates above it, nearest first, without the self-signed root.
    pub chain: Vec<SignedCert>,
}

impl Issued {
    /// The certificate followed by its chain, as PEM.
    ///
    /// Fails only if a certificate does not fit PEM, which never happens.
    pub fn chain_pem(&self) -> Result<String, X509Error> {
        let mut out = self.cert.to_pem()?;
        for c in &self.chain {
            out.push_str(&c.to_pem()?);
        }
        Ok(out)
    }
}

/// What became of a submission or an approval.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Issued.
    Issued(Box<Issued>),
    /// Recorded; waiting for approvals.
    Pending {
        /// The request's id.
        request_id: i64,
        /// Approvals given so far that still count.
        approvals: u32,
        /// Approvals needed in all.
        approvals_needed: u32,
        /// Approvals given that no longer count, each with why (the officer's account was
        /// disabled or lost the officer role since).
        void: Vec<String>,
    },
    /// Refused, for every one of these reasons.
    Rejected(Vec<String>),
}

/// Why issuance failed (as opposed to a policy refusal, which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// No profile has that name.
    #[error("unknown profile {name:?} (known: {known})")]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The profiles there are.
        known: String,
    },
    /// The CSR is malformed, too large or its signature does not verify.
    #[error("certificate request: {0}")]
    Csr(CsrError),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The database refused or failed; nothing was signed, or what was signed was discarded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key store failed to sign, or the certificate could not be built.
    #[error("signing failed: {0}")]
    Signing(X509Error),
    /// The built certificate broke a rule it must keep; it was not signed.
    #[error("the certificate failed its checks before signing: {}", .0.join("; "))]
    Lint(Vec<String>),
    /// The configuration names an issuer that is not loaded.
    #[error("profile {profile} names issuer {issuer}, which is not configured")]
    NoIssuer {
        /// The profile.
        profile: String,
        /// Its issuer.
        issuer: IssuerId,
    },
}

// Not `#[from]`: that would also make the inner error the source, and `{:#}` would print
// its message twice.
impl From<CsrError> for IssueError {
    fn from(e: CsrError) -> Self {
        IssueError::Csr(e)
    }
}

impl From<X509Error> for IssueError {
    fn from(e: X509Error) -> Self {
        IssueError::Signing(e)
    }
}

impl From<der::Error> for IssueError {
    fn from(e: der::Error) -> Self {
        IssueError::Signing(e.into())
    }
}

impl IssueError {
    /// The broad kind, for exit codes and HTTP statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IssueError::UnknownProfile { .. } => ErrorKind::NotFound,
            IssueError::Csr(_) => ErrorKind::Invalid,
            IssueError::Forbidden(_) => ErrorKind::Rejected,
            IssueError::Store(e) => e.kind(),
            IssueError::Signing(_) => ErrorKind::Unavailable,
            IssueError::Lint(_) | IssueError::NoIssuer { .. } => ErrorKind::Internal,
        }
    }
}

/// The CA: its issuers, its profiles and its database.
pub struct Ca {
    issuers: Vec<Issuer>,
    profiles: Vec<Profile>,
    store: Arc<dyn Store>,
    base_url: String,
    ca_keys: Vec<SpkiDer>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|i| i.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field(
                "profiles",
                &self.profiles.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Assembles the CA, records every issuer in the database, and checks that every profile
    /// names a loaded issuer.
    ///
    /// Fails with every problem found.
    pub fn new(
        issuers: Vec<Issuer>,
        profiles: Vec<Profile>,
        store: Arc<dyn Store>,
        base_url: &str,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        for profile in &profiles {
            if !issuers.iter().any(|i| &i.id == profile.issuer()) {
                problems.push(format!(
                    "profile {} ({}): issuer {} is not configured",
                    profile.name,
                    profile.path.display(),
                    profile.issuer()
                ));
            }
        }
        for issuer in &issuers {
            if let Err(e) = store.ensure_issuer(&issuer.id, &issuer.ca.cert.der) {
                problems.push(format!("issuer {}: {e}", issuer.id));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut ca_keys: Vec<SpkiDer> = Vec::new();
        for issuer in &issuers {
            ca_keys.push(issuer.ca.signer.public_key().clone());
            if let Some(ocsp) = &issuer.ocsp {
                ca_keys.push(ocsp.signer.public_key().clone());
            }
        }
        Ok(Ca {
            issuers,
            profiles,
            store,
            base_url: base_url.trim_end_matches('/').to_owned(),
            ca_keys,
        })
    }

    /// The database.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The URL the CA's own certificates, CRLs and OCSP responder are published under
    /// (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The profiles.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The issuers, root first.
    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Handles a submission at time `now`: issues, records it for approval, or refuses it
    /// with every reason (refusals are audited too).
    ///
    /// Fails if the profile is unknown, the CSR is bad, or the database or key store fails.
    pub fn submit(&self, s: &Submission<'_>, now: SystemTime) -> Result<Outcome, IssueError> {
        let profile = self.profile(s.profile)?;
        let parsed = csr::parse(s.csr, &self.ca_keys)?;
        let issuer = self.issuer_for(profile)?;
        // The CLI is the one place a cli_only profile is issued from.
        let unrestricted;
        let effective = if profile.cli_only() && s.channel == Channel::Cli {
            unrestricted = profile.without_cli_only();
            &unrestricted
        } else {
            profile
        };
        let decision = policy::evaluate(
            effective,
            &parsed.facts,
            s.requester,
            now,
            issuer.ca.cert.not_after(),
        );
        let decision = self.with_issuer_constraints(decision, issuer);
        match decision {
            Decision::Reject(reasons) => {
                let mut event = AuditEvent::new(
                    Action::RequestRefused,
                    &s.requester.name,
                    s.source,
                    format!("profile:{}", profile.name),
                )
                .with("subject", facts_subject(&parsed.facts.subject));
                for r in &reasons {
                    event = event.with("reason", r.as_str());
                }
                self.store.audit(&[event])?;
                Ok(Outcome::Rejected(reasons))
            }
            Decision::NeedsApproval { approvals, plan } => {
                let csr_der = csr_der(s.csr)?;
                let request = NewRequest {
                    profile: profile.name.clone(),
                    requester: s.requester.name.clone(),
                    csr_der,
                    subject: plan_subject(&plan),
                    sans: sans_text(&plan.sans),
                    approvals_needed: approvals,
                    expires_at: now + profile.approval_ttl(),
                };
                let event = AuditEvent::new(
                    Action::RequestReceived,
                    &s.requester.name,
                    s.source,
                    String::new(),
                )
                .with("profile", profile.name.as_str())
                .with("subject", request.subject.as_str())
                .with("sans", request.sans.as_str())
                .with("approvals_needed", approvals.to_string());
                let request_id = self.store.create_request(&request, &event)?;
                Ok(Outcome::Pending {
                    request_id,
                    approvals: 0,
                    approvals_needed: approvals,
                    void: Vec::new(),
                })
            }
            Decision::Issue(plan) => {
                let issued = self.issue(
                    &plan,
                    profile,
                    &parsed.public_key,
                    &s.requester.name,
                    s.source,
                    None,
                    now,
                )?;
                Ok(Outcome::Issued(Box::new(issued)))
            }
        }
    }

    /// Records `officer`'s approval of request `id`; once the quorum is reached, evaluates
    /// the policy again at `now` and issues (or fails the request with the reasons).
    ///
    /// The quorum is counted again here, from the accounts as they stand now: an approval
    /// by an officer whose account has since been disabled, or who no longer holds the
    /// officer role (or now holds admin), does not count, and the request stays pending
    /// (the outcome says whose approvals are void and why).
    ///
    /// Fails if the officer lacks the officer role (or their account is disabled), the
    /// request is unknown, not pending, expired, theirs, or already approved by them.
    pub fn approve(
        &self,
        id: i64,
        officer: &Requester,
        comment: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<Outcome, IssueError> {
        require_officer(officer)?;
        if let Some(why) = self.approval_void(&officer.name)? {
            return Err(IssueError::Forbidden(format!(
                "{why}: {} cannot approve",
                officer.name
            )));
        }
        let approval = Approval {
            officer: officer.name.clone(),
            comment: comment.to_owned(),
            at: now,
        };
        let event = AuditEvent::new(
            Action::RequestApproved,
            &officer.name,
            source,
            format!("request:{id}"),
        )
        .with("comment", comment);
        let row = self.store.approve(id, &approval, now, &event)?;
        let void = self.void_approvals(&row)?;
        let given = row.approvals.len().saturating_sub(void.len());
        let given = u32::try_from(given).unwrap_or(u32::MAX);
        if given < row.approvals_needed {
            return Ok(Outcome::Pending {
                request_id: id,
                approvals: given,
                approvals_needed: row.approvals_needed,
                void: void.into_iter().map(|(_, why)| why).collect(),
            });
        }
        self.issue_approved(&row, source, now)
    }

    /// Why an approval by `officer` would not count now (see [`approval_void`]).
    ///
    /// Fails if the database fails.
    pub fn approval_void(&self, officer: &str) -> Result<Option<String>, StoreError> {
        approval_void(self.store.as_ref(), officer)
    }

    /// The approvals of `row` that no longer count (see [`void_approvals`]).
    ///
    /// Fails if the database fails.
    pub fn void_approvals(&self, row: &RequestRow) -> Result<Vec<(String, String)>, StoreError> {
        void_approvals(self.store.as_ref(), row)
    }

    /// Rejects request `id` for `reason`. One rejection ends a request.
    ///
    /// Fails if the officer lacks the officer role, the request is unknown, not pending, or
    /// theirs.
    pub fn reject(
        &self,
        id: i64,
        officer: &Requester,
        reason: &str,
        source: &str,
    ) -> Result<(), IssueError> {
        require_officer(officer)?;
        if reason.trim().is_empty() {
            return Err(IssueError::Forbidden(
                "a rejection needs a reason (--reason TEXT)".into(),
            ));
        }
        let event = AuditEvent::new(
            Action::RequestRejected,
            &officer.name,
            source,
            format!("request:{id}"),
        )
        .with("reason", reason);
        self.store.reject(id, &officer.name, reason, &event)?;
        Ok(())
    }

    /// Issues the certificate of Keyhold's own HTTPS listener for `public_key`, naming
    /// `sans`, under `profile` (normally `tls-server`), valid for `lifetime` at most.
    ///
    /// This path bypasses the requester policy ([`policy::own_server_plan`]: no roles,
    /// approvals or allowed-name lists, since the server's own names such as `localhost` are
    /// rarely in them) but not the issuer: its name constraints and validity, the lint and
    /// the issuance cycle (reserve, audit, sign, record) are the same as for any other
    /// certificate. The requester recorded and audited is [`OWN_SERVER_REQUESTER`].
    ///
    /// Fails if the profile is unknown, the plan or the issuer's constraints refuse it
    /// (audited as a refusal, reasons in [`IssueError::Forbidden`]), or the database or key
    /// store fails.
    pub fn issue_own_server_cert(
        &self,
        profile: &str,
        public_key: &SpkiDer,
        sans: &[San],
        lifetime: Duration,
        source: &str,
        now: SystemTime,
    ) -> Result<Issued, IssueError> {
        let profile = self.profile(profile)?;
        let issuer = self.issuer_for(profile)?;
        let decision =
            match policy::own_server_plan(profile, sans, lifetime, now, issuer.ca.cert.not_after())
            {
                Ok(plan) => self.with_issuer_constraints(Decision::Issue(plan), issuer),
                Err(reasons) => Decision::Reject(reasons),
            };
        match decision {
            Decision::Issue(plan) | Decision::NeedsApproval { plan, .. } => self.issue(
                &plan,
                profile,
                public_key,
                OWN_SERVER_REQUESTER,
                source,
                None,
                now,
            ),
            Decision::Reject(reasons) => {
                let mut event = AuditEvent::new(
                    Action::RequestRefused,
                    OWN_SERVER_REQUESTER,
                    source,
                    format!("profile:{}", profile.name),
                )
                .with("sans", sans_text(sans));
                for r in &reasons {
                    event = event.with("reason", r.as_str());
                }
                self.store.audit(&[event])?;
                Err(IssueError::Forbidden(format!(
                    "the server's own certificate was refused: {}",
                    reasons.join("; ")
                )))
            }
        }
    }

    /// Closes reservations left by a process that died while signing (older than
    /// [`ABANDONED_AFTER`] at `now`): each becomes `Failed`, audited. Their certificates
    /// were never returned to anyone; their serials are never reused. Returns how many.
    ///
    /// Fails if the database fails.
    pub fn recover(&self, now: SystemTime) -> Result<usize, IssueError> {
        let mut closed = 0;
        for row in self.store.reserved()? {
            if row.created_at + ABANDONED_AFTER > now {
                continue; // another process may be signing it right now
            }
            let event = AuditEvent::new(
                Action::IssuanceAbandoned,
                "system",
                "startup",
                format!("certificate:{}", row.serial),
            )
            .with("reserved_at", format!("{:?}", row.created_at));
            match self.store.fail(
                &row.serial,
                "interrupted while signing; the certificate was never returned",
                &event,
            ) {
                Ok(()) => closed += 1,
                // Another process closed it first.
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(closed)
    }

    fn issue_approved(
        &self,
        row: &RequestRow,
        source: &str,
        now: SystemTime,
    ) -> Result<Outcome, IssueError> {
        let profile = self.profile(&row.profile)?;
        let issuer = self.issuer_for(profile)?;
        let parsed = csr::parse(&row.csr_der, &self.ca_keys)?;
        // The requester's roles were checked when the request arrived.
        let requester = Requester {
            name: row.requester.clone(),
            roles: profile.requester_roles().to_vec(),
        };
        let unrestricted;
        let profile_now = if profile.cli_only() {
            unrestricted = profile.without_cli_only();
            &unrestricted
        } else {
            profile
        };
        let decision = policy::evaluate(
            profile_now,
            &parsed.facts,
            &requester,
            now,
            issuer.ca.cert.not_after(),
        );
        match self.with_issuer_constraints(decision, issuer) {
            Decision::Reject(reasons) => {
                let mut event = AuditEvent::new(
                    Action::SigningFailed,
                    "system",
                    source,
                    format!("request:{}", row.id),
                );
                for r in &reasons {
                    event = event.with("reason", r.as_str());
                }
                self.store.fail_request(
                    row.id,
                    &format!("the policy no longer allows it: {}", reasons.join("; ")),
                    &event,
                )?;
                Ok(Outcome::Rejected(reasons))
            }
            Decision::Issue(plan) | Decision::NeedsApproval { plan, .. } => {
                let issued = self.issue(
                    &plan,
                    profile,
                    &parsed.public_key,
                    &row.requester,
                    source,
                    Some(row.id),
                    now,
                )?;
                Ok(Outcome::Issued(Box::new(issued)))
            }
        }
    }

    /// Reserve, build, check, sign, record.
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        plan: &Plan,
        profile: &Profile,
        public_key: &SpkiDer,
        requester: &str,
        source: &str,
        request_id: Option<i64>,
        now: SystemTime,
    ) -> Result<Issued, IssueError> {
        let issuer = self.issuer_for(profile)?;
        let serial_number = x509::random_serial()?;
        let serial = Serial::from_bytes(serial_number.as_bytes());
        let subject_text = plan_subject(plan);
        let sans = sans_text(&plan.sans);
        let template = self.template(plan, issuer, public_key, serial_number)?;
        let problems = lint(&template, plan, issuer, &self.ca_keys, now);
        if !problems.is_empty() {
            return Err(IssueError::Lint(problems));
        }

        let reservation = NewCertificate {
            serial: serial.clone(),
            issuer: issuer.id.clone(),
            profile: profile.name.clone(),
            requester: requester.to_owned(),
            subject: subject_text.clone(),
            sans: sans.clone(),
            not_before: plan.not_before,
            not_after: plan.not_after,
            request_id,
        };
        let started = AuditEvent::new(
            Action::IssuanceStarted,
            requester,
            source,
            format!("certificate:{serial}"),
        )
        .with("profile", profile.name.as_str())
        .with("issuer", issuer.id.as_str())
        .with("subject", subject_text)
        .with("sans", sans);
        let started = match request_id {
            Some(id) => started.with("request", id.to_string()),
            None => started,
        };
        self.store.reserve(&reservation, &started)?;

        let cert = match x509::sign_certificate(template, issuer.ca.signer.as_ref()) {
            Ok(cert) => cert,
            Err(e) => {
                self.burn(&serial, requester, source, &e.to_string());
                return Err(e.into());
            }
        };
        let issued = AuditEvent::new(
            Action::CertificateIssued,
            requester,
            source,
            format!("certificate:{serial}"),
        )
        .with("sha256", cert.fingerprint_sha256());
        if let Err(e) = self.store.complete(&serial, &cert.der, &issued) {
            // The certificate exists only in this process's memory: drop it, burn the serial.
            self.burn(
                &serial,
                requester,
                source,
                &format!("recording failed: {e}"),
            );
            return Err(e.into());
        }
        Ok(Issued {
            serial,
            cert,
            chain: self.chain(issuer),
        })
    }

    /// Best effort: mark the serial failed. If even that fails, the reservation stays and
    /// [`Ca::recover`] closes it later.
    fn burn(&self, serial: &Serial, actor: &str, source: &str, reason: &str) {
        let event = AuditEvent::new(
            Action::SigningFailed,
            actor,
            source,
            format!("certificate:{serial}"),
        )
        .with("reason", reason);
        let _ = self.store.fail(serial, reason, &event);
    }

    fn template(
        &self,
        plan: &Plan,
        issuer: &Issuer,
        public_key: &SpkiDer,
        serial: x509_cert::serial_number::SerialNumber,
    ) -> Result<CertTemplate, IssueError> {
        let subject = subject_name(&plan.subject)?;
        let issuer_key = issuer.ca.signer.public_key();
        // A profile granting keyCertSign makes a subordinate CA (the profile loader allows it
        // only for cli_only profiles under a quorum of two or more), which may not issue CAs
        // below itself.
        let ca = plan.key_usage.iter().any(|k| k == "keyCertSign");
        let mut extensions = vec![
            x509::to_ext(
                true,
                &BasicConstraints {
                    ca,
                    path_len_constraint: ca.then_some(0),
                },
            )?,
            x509::to_ext(true, &KeyUsage(key_usages(&plan.key_usage)))?,
        ];
        if !plan.extended_key_usage.is_empty() {
            let ekus = plan
                .extended_key_usage
                .iter()
                .map(|n| eku_oid(n))
                .collect::<Result<Vec<_>, _>>()?;
            extensions.push(x509::to_ext(false, &ExtendedKeyUsage(ekus))?);
        }
        if !plan.sans.is_empty() {
            // RFC 5280 4.2.1.6: critical when the subject is empty.
            extensions.push(x509::to_ext(
                subject.is_empty(),
                &SubjectAltName(general_names(&plan.sans)?),
            )?);
        }
        extensions.push(x509::ski_extension(public_key)?);
        extensions.push(x509::aki_extension(issuer_key)?);
        extensions.push(x509::crl_dp_extension(&format!(
            "{}/crl/{}.crl",
            self.base_url, issuer.id
        ))?);
        extensions.push(x509::aia_extension(
            &format!("{}/ocsp", self.base_url),
            &format!("{}/ca/{}.der", self.base_url, issuer.id),
        )?);
        Ok(CertTemplate {
            serial,
            issuer: issuer.ca.cert.cert.tbs_certificate().subject().clone(),
            subject,
            not_before: plan.not_before,
            not_after: plan.not_after,
            public_key: public_key.clone(),
            extensions,
        })
    }

    /// The issuer's chain up to, not including, the self-signed root.
    fn chain(&self, issuer: &Issuer) -> Vec<SignedCert> {
        let mut chain = Vec::new();
        let mut at = Some(issuer);
        while let Some(i) = at {
            if i.parent.is_none() {
                break;
            }
            chain.push(i.ca.cert.clone());
            at = i
                .parent
                .as_ref()
                .and_then(|p| self.issuers.iter().find(|c| &c.id == p));
        }
        chain
    }

    fn profile(&self, name: &str) -> Result<&Profile, IssueError> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| IssueError::UnknownProfile {
                name: name.to_owned(),
                known: self
                    .profiles
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn issuer_for(&self, profile: &Profile) -> Result<&Issuer, IssueError> {
        self.issuers
            .iter()
            .find(|i| &i.id == profile.issuer())
            .ok_or_else(|| IssueError::NoIssuer {
                profile: profile.name.clone(),
                issuer: profile.issuer().clone(),
            })
    }

    /// Adds a violation for every SAN outside the name constraints of the issuer or any CA
    /// above it (RFC 5280 4.2.1.10): the profile can narrow them, never widen them.
    fn with_issuer_constraints(&self, decision: Decision, issuer: &Issuer) -> Decision {
        let plan = match &decision {
            Decision::Issue(plan) | Decision::NeedsApproval { plan, .. } => plan,
            Decision::Reject(_) => return decision,
        };
        let mut why = Vec::new();
        let mut at = Some(issuer);
        let mut seen = HashSet::new();
        while let Some(ca) = at {
            if !seen.insert(ca.id.clone()) {
                break;
            }
            if let Some(nc) = name_constraints(&ca.ca.cert) {
                check_constraints(&nc, &ca.id, &plan.sans, &mut why);
            }
            at = ca
                .parent
                .as_ref()
                .and_then(|p| self.issuers.iter().find(|c| &c.id == p));
        }
        if why.is_empty() {
            decision
        } else {
            Decision::Reject(why)
        }
    }
}

/// Why an approval by `officer` would not count now, or `None` if it counts. An officer
/// named on the command line (`--as NAME`) without a web UI account is vouched for by
/// whoever runs the CLI with access to the data directory; one with an account must hold it
/// enabled, with the officer role and without the admin role.
///
/// Fails if the database fails.
pub fn approval_void(store: &dyn Store, officer: &str) -> Result<Option<String>, StoreError> {
    use crate::users::Role;
    Ok(match store.account(officer)? {
        None => None,
        Some(u) if u.disabled => Some(format!("{officer}'s account is disabled")),
        Some(u) if u.has(Role::Admin) => Some(format!("{officer}'s account holds the admin role")),
        Some(u) if !u.has(Role::Officer) => Some(format!(
            "{officer}'s account does not hold the officer role"
        )),
        Some(_) => None,
    })
}

/// The approvals of `row` that no longer count, as `(officer, why)`, in the order given.
///
/// Fails if the database fails.
pub fn void_approvals(
    store: &dyn Store,
    row: &RequestRow,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut void = Vec::new();
    for a in &row.approvals {
        if let Some(why) = approval_void(store, &a.officer)? {
            void.push((a.officer.clone(), why));
        }
    }
    Ok(void)
}

/// Fails unless `who` holds the officer role and not the admin role.
pub fn require_officer(who: &Requester) -> Result<(), IssueError> {
    // Separation of duties: administrators make accounts and tokens, officers approve. One
    // person holding both could approve with credentials they made themselves.
    if who.roles.iter().any(|r| r == "admin") {
        Err(IssueError::Forbidden(format!(
            "{} is an administrator: administrators cannot approve or reject requests",
            who.name
        )))
    } else if who.roles.iter().any(|r| r == "officer") {
        Ok(())
    } else {
        Err(IssueError::Forbidden(format!(
            "{} does not hold the officer role",
            who.name
        )))
    }
}

/// The CSR as DER (it arrives as PEM or DER and was already parsed once).
fn csr_der(input: &[u8]) -> Result<Vec<u8>, IssueError> {
    if input.starts_with(b"-----BEGIN") || input.first().is_some_and(u8::is_ascii_whitespace) {
        let text = std::str::from_utf8(input)
            .map_err(|_| CsrError::Malformed("PEM is not UTF-8".into()))?;
        let (_, der) = der::pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| CsrError::Malformed(format!("PEM: {e}")))?;
        Ok(der)
    } else {
        Ok(input.to_vec())
    }
}

/// RFC 4514 text of the planned subject, most specific attribute first.
fn plan_subject(plan: &Plan) -> String {
    let mut attrs = plan.subject.clone();
    attrs.sort_by_key(|(k, _)| std::cmp::Reverse(attr_rank(k)));
    attrs
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_rdn_value(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn facts_subject(subject: &[(String, String)]) -> String {
    subject
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_rdn_value(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The DER order of subject attributes: country first, common name last.
fn attr_rank(attr: &str) -> u8 {
    match attr {
        "C" => 0,
        "ST" => 1,
        "L" => 2,
        "O" => 3,
        "OU" => 4,
        "CN" => 6,
        "emailAddress" => 7,
        _ => 5,
    }
}

/// Escapes a value for RFC 4514 text (section 2.4).
fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn subject_name(attrs: &[(String, String)]) -> Result<Name, IssueError> {
    if attrs.is_empty() {
        return Ok(Name::default());
    }
    let plan = Plan {
        issuer: IssuerId::new("x").map_err(IssueError::Forbidden)?,
        not_before: SystemTime::UNIX_EPOCH,
        not_after: SystemTime::UNIX_EPOCH,
        subject: attrs.to_vec(),
        sans: Vec::new(),
        key_usage: Vec::new(),
        extended_key_usage: Vec::new(),
    };
    Ok(x509::parse_name(&plan_subject(&plan))?)
}

/// SANs as searchable text: `DNS:a.internal IP:10.0.0.1 email:a@b URI:https://x`.
pub fn sans_text(sans: &[San]) -> String {
    sans.iter()
        .map(|s| match s {
            San::Dns(d) => format!("DNS:{d}"),
            San::Ip(ip) => format!("IP:{ip}"),
            San::Email(e) => format!("email:{e}"),
            San::Uri(u) => format!("URI:{u}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn general_names(sans: &[San]) -> Result<Vec<GeneralName>, IssueError> {
    let ia5 = |s: &str| {
        Ia5String::new(s).map_err(|_| X509Error::Encoding(format!("{s:?} is not IA5 (ASCII)")))
    };
    sans.iter()
        .map(|s| {
            Ok(match s {
                San::Dns(d) => GeneralName::DnsName(ia5(d)?),
                San::Email(e) => GeneralName::Rfc822Name(ia5(e)?),
                San::Uri(u) => GeneralName::UniformResourceIdentifier(ia5(u)?),
                San::Ip(IpAddr::V4(v4)) => GeneralName::IpAddress(
                    OctetString::new(v4.octets().to_vec()).map_err(X509Error::from)?,
                ),
                San::Ip(IpAddr::V6(v6)) => GeneralName::IpAddress(
                    OctetString::new(v6.octets().to_vec()).map_err(X509Error::from)?,
                ),
            })
        })
        .collect()
}

fn key_usages(names: &[String]) -> der::flagset::FlagSet<KeyUsages> {
    let mut set = der::flagset::FlagSet::<KeyUsages>::default();
    for n in names {
        set |= match n.as_str() {
            "digitalSignature" => KeyUsages::DigitalSignature,
            "nonRepudiation" => KeyUsages::NonRepudiation,
            "keyEncipherment" => KeyUsages::KeyEncipherment,
            "dataEncipherment" => KeyUsages::DataEncipherment,
            "keyAgreement" => KeyUsages::KeyAgreement,
            "keyCertSign" => KeyUsages::KeyCertSign,
            "cRLSign" => KeyUsages::CRLSign,
            _ => continue, // profiles are validated at load; lint catches an empty set
        };
    }
    set
}

fn eku_oid(name: &str) -> Result<ObjectIdentifier, IssueError> {
    use const_oid::db::rfc5280::{
        ID_KP_CLIENT_AUTH, ID_KP_CODE_SIGNING, ID_KP_EMAIL_PROTECTION, ID_KP_OCSP_SIGNING,
        ID_KP_SERVER_AUTH, ID_KP_TIME_STAMPING,
    };
    Ok(match name {
        "serverAuth" => ID_KP_SERVER_AUTH,
        "clientAuth" => ID_KP_CLIENT_AUTH,
        "codeSigning" => ID_KP_CODE_SIGNING,
        "emailProtection" => ID_KP_EMAIL_PROTECTION,
        "timeStamping" => ID_KP_TIME_STAMPING,
        "OCSPSigning" => ID_KP_OCSP_SIGNING,
        other => return Err(IssueError::Lint(vec![format!("unknown EKU {other}")])),
    })
}

/// Rules every certificate keeps, checked on the template before it is signed (a linter in
/// the spirit of zlint, for the fields Keyhold sets).
fn lint(
    t: &CertTemplate,
    plan: &Plan,
    issuer: &Issuer,
    ca_keys: &[SpkiDer],
    now: SystemTime,
) -> Vec<String> {
    let mut why = Vec::new();
    let serial = t.serial.as_bytes();
    if serial.is_empty() || serial.len() > 20 || serial[0] & 0x80 != 0 {
        why.push("serial must be positive and at most 20 octets".into());
    }
    let issuer_tbs = issuer.ca.cert.cert.tbs_certificate();
    if t.not_before < issuer_tbs.validity().not_before.to_system_time()
        || t.not_after > issuer.ca.cert.not_after()
    {
        why.push("validity must lie within the issuer's".into());
    }
    if t.not_after <= t.not_before || t.not_before > now + Duration::from_secs(300) {
        why.push("validity is empty or starts in the future".into());
    }
    if t.subject.is_empty() && plan.sans.is_empty() {
        why.push("a certificate needs a subject or a subject alternative name".into());
    }
    if ca_keys.contains(&t.public_key) {
        why.push("the subject key is one of the CA's own keys".into());
    }
    if plan.key_usage.is_empty() {
        why.push("keyUsage is empty".into());
    }
    let ca = plan.key_usage.iter().any(|k| k == "keyCertSign");
    if !ca && plan.key_usage.iter().any(|k| k == "cRLSign") {
        why.push("an end-entity certificate may not have cRLSign".into());
    }
    if ca && !plan.extended_key_usage.is_empty() {
        why.push("a CA certificate here carries no extended key usage".into());
    }
    let mut oids = HashSet::new();
    for ext in &t.extensions {
        if !oids.insert(ext.extn_id) {
            why.push(format!("extension {} appears twice", ext.extn_id));
        }
    }
    why
}

/// The NameConstraints extension of a CA certificate, if it has one that decodes.
fn name_constraints(cert: &SignedCert) -> Option<NameConstraints> {
    use const_oid::AssociatedOid;
    cert.cert
        .tbs_certificate()
        .extensions()?
        .iter()
        .find(|e| e.extn_id == NameConstraints::OID)
        .and_then(|e| NameConstraints::from_der(e.extn_value.as_bytes()).ok())
}

fn check_constraints(nc: &NameConstraints, ca: &IssuerId, sans: &[San], why: &mut Vec<String>) {
    let permitted = nc.permitted_subtrees.as_deref().unwrap_or_default();
    let excluded = nc.excluded_subtrees.as_deref().unwrap_or_default();
    for san in sans {
        let same_type = |t: &&GeneralSubtree| same_kind(&t.base, san);
        if excluded
            .iter()
            .filter(same_type)
            .any(|t| matches(&t.base, san))
        {
            why.push(format!(
                "{} is excluded by the name constraints of issuer {ca}",
                sans_text(std::slice::from_ref(san))
            ));
            continue;
        }
        let mut of_type = permitted.iter().filter(same_type).peekable();
        if of_type.peek().is_some() && !of_type.any(|t| matches(&t.base, san)) {
            why.push(format!(
                "{} is outside the name constraints of issuer {ca}",
                sans_text(std::slice::from_ref(san))
            ));
        }
    }
}

fn same_kind(base: &GeneralName, san: &San) -> bool {
    matches!(
        (base, san),
        (GeneralName::DnsName(_), San::Dns(_))
            | (GeneralName::IpAddress(_), San::Ip(_))
            | (GeneralName::Rfc822Name(_), San::Email(_))
            | (GeneralName::UniformResourceIdentifier(_), San::Uri(_))
    )
}

/// Whether `san` lies within the subtree `base` (RFC 5280 4.2.1.10 matching rules).
fn matches(base: &GeneralName, san: &San) -> bool {
    match (base, san) {
        (GeneralName::DnsName(b), San::Dns(d)) => dns_within(b.as_str(), d),
        (GeneralName::Rfc822Name(b), San::Email(e)) => {
            let b = b.as_str().to_ascii_lowercase();
            let e = e.to_ascii_lowercase();
            if b.contains('@') {
                e == b
            } else if b.starts_with('.') {
                e.rsplit_once('@')
                    .is_some_and(|(_, host)| host.ends_with(&b))
            } else {
                e.rsplit_once('@').is_some_and(|(_, host)| host == b)
            }
        }
        (GeneralName::UniformResourceIdentifier(b), San::Uri(u)) => uri_host(u).is_some_and(|h| {
            let b = b.as_str().to_ascii_lowercase();
            if b.starts_with('.') {
                h.ends_with(&b)
            } else {
                h == b
            }
        }),
        (GeneralName::IpAddress(b), San::Ip(ip)) => {
            let b = b.as_bytes();
            let addr: Vec<u8> = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            b.len() == addr.len() * 2
                && addr
                    .iter()
                    .zip(&b[..addr.len()])
                    .zip(&b[addr.len()..])
                    .all(|((a, net), mask)| a & mask == net & mask)
        }
        _ => false,
    }
}

/// DNS subtree matching: `b` = `corp.example` permits `corp.example` and `x.corp.example`;
/// a leading dot permits only subdomains.
fn dns_within(base: &str, name: &str) -> bool {
    let base = base.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    if base.is_empty() {
        return true;
    }
    if let Some(suffix) = base.strip_prefix('.') {
        return name.ends_with(&format!(".{suffix}"));
    }
    name == base || name.ends_with(&format!(".{base}"))
}

fn uri_host(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The status a certificate row shows, with expiry taken into account.
pub fn effective_status(
    status: CertStatus,
    not_after: SystemTime,
    now: SystemTime,
) -> &'static str {
    match status {
        CertStatus::Valid if not_after < now => "expired",
        s => s.as_str(),
    }
}

/// The status a request row shows, with its approval deadline taken into account.
pub fn effective_request_status(row: &RequestRow, now: SystemTime) -> &'static str {
    match row.status {
        RequestStatus::Pending if row.expires_at < now => "expired",
        s => s.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_officers_who_are_not_administrators_may_decide_requests() {
        let who = |roles: &[&str]| Requester {
            name: "pat".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        assert!(require_officer(&who(&["officer"])).is_ok());
        assert!(require_officer(&who(&["officer", "auditor"])).is_ok());
        for roles in [&["requester"][..], &["admin"], &["officer", "admin"], &[]] {
            let err = require_officer(&who(roles)).unwrap_err();
            assert!(matches!(err, IssueError::Forbidden(_)), "{roles:?}: {err}");
        }
    }

    #[test]
    fn rdn_values_are_escaped() {
        assert_eq!(escape_rdn_value("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rdn_value(" #x "), "\\ #x\\ ");
        let name = subject_name(&[
            ("CN".into(), "web, \"prod\"".into()),
            ("O".into(), "Keyhold".into()),
        ])
        .unwrap();
        assert_eq!(name.to_string(), "CN=web\\, \\\"prod\\\",O=Keyhold");
    }

    #[test]
    fn dns_subtrees_match_by_label() {
        assert!(dns_within("corp.example", "corp.example"));
        assert!(dns_within("corp.example", "a.corp.example"));
        assert!(!dns_within("corp.example", "evilcorp.example"));
        assert!(!dns_within(".corp.example", "corp.example"));
        assert!(dns_within(".corp.example", "a.corp.example"));
    }

    #[test]
    fn uri_hosts_are_extracted() {
        assert_eq!(
            uri_host("https://user@Svc.corp:8443/x").as_deref(),
            Some("svc.corp")
        );
        assert_eq!(uri_host("not a uri"), None);
    }
}
