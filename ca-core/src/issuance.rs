//! The issuance cycle: a CSR comes in, the policy decides, the key store signs, and nothing is
//! ever signed that the database and the audit log do not know.
//!
//! The order is the invariant: parse and verify the CSR, evaluate the profile, reserve the
//! serial with its audit entry (one committed transaction), build and check the
//! certificate, sign it, record it with its audit entry (one durable transaction), and only
//! then return it. A crash between reservation and recording leaves a `Reserved` row that
//! [`Ca::recover`] closes, or, if the reservation had not reached the disk yet, no trace:
//! either way the certificate was never returned to anyone, and its serial is not reused.
//! The reservation is not flushed on its own (see
//! [`IssuanceLedger::reserve`](crate::store::IssuanceLedger::reserve)): the database orders
//! it before the recording, whose flush covers both.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::Decode;
use x509_cert::ext::pkix::constraints::name::NameConstraints;

use crate::audit::{Action, AuditEvent};
use crate::csr::{self, CsrError};
use crate::issuer::{self, Issuer, IssuerId};
use crate::keystore::SpkiDer;
use crate::policy::{self, Decision, Plan, Profile, Requester, San};
use crate::store::{NewCertificate, NewRequest, RequestRow, Serial, Store, StoreError};
use crate::x509::{self, SignStep, SignedCert, X509Error};

mod approvals;
mod display;
mod errors;
mod lint;
mod template;

pub use self::approvals::{approval_void, require_officer, void_approvals};
pub use self::display::{effective_request_status, effective_status};
use self::display::{facts_subject, plan_subject};
pub use self::errors::{IssueError, Stage};
pub use crate::policy::sans_text;

/// A reservation older than this belongs to a process that died while signing (signing takes
/// milliseconds; the margin covers a slow HSM and clock skew between processes).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(300);

/// The requester recorded for the certificates Keyhold issues to its own HTTPS listener (a
/// name no API token may take).
pub use crate::apitoken::OWN_SERVER_REQUESTER;

/// Where a request came from, which decides the profiles it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The `keyhold` command line, run by someone with access to the data directory.
    Cli,
    /// The HTTP API.
    Api,
    /// ACME (RFC 8555): an account that proved control of every name.
    Acme,
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

/// The CA: its issuers, its profiles and its database.
pub struct Ca {
    issuers: Vec<Issuer>,
    profiles: Vec<Profile>,
    warnings: Vec<String>,
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
    /// names a loaded issuer, or that its `fallback_issuer` is loaded: then it issues from
    /// that one, and a warning says so ([`Ca::warnings`], and the log).
    ///
    /// Fails with every problem found.
    pub fn new(
        issuers: Vec<Issuer>,
        profiles: Vec<Profile>,
        store: Arc<dyn Store>,
        base_url: &str,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let loaded = |id: &IssuerId| issuers.iter().any(|i| &i.id == id);
        for profile in &profiles {
            if loaded(profile.issuer()) {
                continue;
            }
            match profile.fallback_issuer() {
                Some(fallback) if loaded(fallback) => {
                    let warning = format!(
                        "profile {} ({}): issuer {} is not configured, so its fallback_issuer {fallback} \
                         signs under it; add the CA with `keyhold ca add-issuing --id {}`",
                        profile.name,
                        profile.path.display(),
                        profile.issuer(),
                        profile.issuer()
                    );
                    tracing::warn!("{warning}");
                    warnings.push(warning);
                }
                _ => problems.push(format!(
                    "profile {} ({}): issuer {} is not configured{}",
                    profile.name,
                    profile.path.display(),
                    profile.issuer(),
                    profile
                        .fallback_issuer()
                        .map(|f| format!(", nor is its fallback_issuer {f}"))
                        .unwrap_or_default()
                )),
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
            warnings,
            store,
            base_url: base_url.trim_end_matches('/').to_owned(),
            ca_keys,
        })
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

    /// What is amiss but does not stop the CA: profiles signed by their fallback issuer.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
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
        self.submit_for_days(s, None, now)
    }

    /// [`Ca::submit`] asking for `validity_days` of validity (ACME's `notAfter`), which the
    /// profile clamps or refuses as it does for any request.
    ///
    /// Fails as [`Ca::submit`] does.
    pub fn submit_for_days(
        &self,
        s: &Submission<'_>,
        validity_days: Option<u32>,
        now: SystemTime,
    ) -> Result<Outcome, IssueError> {
        self.submit_inner(s, validity_days, now, &mut |_| {})
    }

    /// [`Ca::submit`], calling `lap` as each [`Stage`] ends (the benchmarks measure CPU time
    /// between laps).
    ///
    /// Fails like [`Ca::submit`].
    pub fn submit_timed(
        &self,
        s: &Submission<'_>,
        now: SystemTime,
        lap: &mut dyn FnMut(Stage),
    ) -> Result<Outcome, IssueError> {
        self.submit_inner(s, None, now, lap)
    }

    fn submit_inner(
        &self,
        s: &Submission<'_>,
        validity_days: Option<u32>,
        now: SystemTime,
        lap: &mut dyn FnMut(Stage),
    ) -> Result<Outcome, IssueError> {
        let profile = self.profile(s.profile)?;
        let mut parsed = csr::parse(s.csr, &self.ca_keys)?;
        if validity_days.is_some() {
            parsed.facts.validity_days = validity_days;
        }
        lap(Stage::CsrCheck);
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
        lap(Stage::Policy);
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
                    lap,
                )?;
                Ok(Outcome::Issued(Box::new(issued)))
            }
        }
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
        let family = {
            use der::Decode;
            match spki::SubjectPublicKeyInfoRef::from_der(public_key.as_bytes()) {
                Ok(spki) if spki.algorithm.oid == const_oid::db::rfc5912::RSA_ENCRYPTION => {
                    policy::KeyFamily::Rsa
                }
                _ => policy::KeyFamily::Ec,
            }
        };
        let decision = match policy::own_server_plan(
            profile,
            family,
            sans,
            lifetime,
            now,
            issuer.ca.cert.not_after(),
        ) {
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
                &mut |_| {},
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
                    &mut |_| {},
                )?;
                Ok(Outcome::Issued(Box::new(issued)))
            }
        }
    }

    /// The issuance cycle, in the order the module invariant requires: 1. choose the serial,
    /// 2. build the template, 3. lint it, 4. reserve the serial with its audit entry, 5. sign,
    /// 6. record the certificate with its audit entry, 7. return it with its chain. A failure
    /// after step 4 burns the serial (or leaves the reservation for [`Ca::recover`]).
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
        lap: &mut dyn FnMut(Stage),
    ) -> Result<Issued, IssueError> {
        let issuer = self.issuer_for(profile)?;
        // 1. The serial: random, positive, at most 20 octets (RFC 5280 4.1.2.2).
        let serial_number = x509::random_serial()?;
        let serial = Serial::from_bytes(serial_number.as_bytes());
        let subject_text = plan_subject(plan);
        let sans = sans_text(&plan.sans);
        // 2. The template: everything the certificate will say.
        let template = self.template(plan, issuer, public_key, serial_number)?;
        // 3. Lint the template before anything is written or signed.
        let problems = lint::lint(&template, plan, issuer, &self.ca_keys, now);
        if !problems.is_empty() {
            return Err(IssueError::Lint(problems));
        }
        lap(Stage::Build);
        // While the key store is known to be down (every HSM member out), refuse here: a
        // reservation would only be burnt, a `failed` row and two audit entries per refused
        // request for as long as the outage lasts.
        issuer
            .ca
            .signer
            .ready()
            .map_err(|e| IssueError::Signing(e.into()))?;

        // 4. Reserve the serial with its audit entry (one transaction).
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
        lap(Stage::Reservation);

        // 5. Sign through the key store.
        let mut step = |step| {
            lap(match step {
                SignStep::Build => Stage::Build,
                SignStep::Sign => Stage::Sign,
                SignStep::SelfCheck => Stage::SelfCheck,
            })
        };
        let cert =
            match x509::sign_certificate_timed(template, issuer.ca.signer.as_ref(), &mut step) {
                Ok(cert) => cert,
                Err(e) => {
                    self.burn(&serial, requester, source, &e.to_string());
                    return Err(e.into());
                }
            };
        // 6. Record the certificate with its audit entry (one durable transaction).
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
        lap(Stage::Record);
        // 7. Only now does the certificate leave the CA.
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

    /// The issuer's chain up to, not including, the self-signed root.
    fn chain(&self, issuer: &Issuer) -> Vec<SignedCert> {
        issuer::chain_without_root(&self.issuers, issuer)
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
        let by = |id: &IssuerId| self.issuers.iter().find(|i| &i.id == id);
        by(profile.issuer())
            .or_else(|| profile.fallback_issuer().and_then(by))
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
        for ca in issuer::ancestry(&self.issuers, issuer) {
            if let Some(nc) = name_constraints(&ca.ca.cert) {
                policy::constraints::check_constraints(&nc, &ca.id, &plan.sans, &mut why);
            }
        }
        if why.is_empty() {
            decision
        } else {
            Decision::Reject(why)
        }
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

#[cfg(test)]
mod tests;
