//! Code signing with keys that Keyhold holds in its key store for their owners.
//!
//! Invariants:
//! - a code-signing key is generated inside the key store (PKCS#11: CKA_SENSITIVE true,
//!   CKA_EXTRACTABLE false) and recorded in the database with its owner before anything else
//!   happens to it; its certificate request is signed by the key itself (proof of possession)
//!   and goes through the ordinary issuance cycle, quorum included;
//! - only the key's owner, a principal (a person, or the API token that asked for the key;
//!   never a token merely named like a person), or an API token the owner bound to the key
//!   (while that token is neither revoked nor expired), signs with it, and only while its
//!   certificate is issued, unrevoked and within its validity, and while the profile's rate
//!   limit and daily quota allow;
//! - a signature is returned only once it and its audit entry (`codesign.signed`: digest,
//!   key, caller, certificate, time) are recorded; the store re-checks the limits in that
//!   same transaction, so concurrent callers cannot overrun them.
//!
//! The certificate a key signs under is found through the database
//! ([`CodesignStore::codesign_certificate`]): the serial bound to the key, or else the one
//! issued for its request, however that request was approved. That method is also the one
//! place the certificate's revocation status is read.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use der::Encode;
use der::asn1::BitString;
use spki::AlgorithmIdentifierOwned;
use x509_cert::request::{CertReq, CertReqInfo, Version};

use crate::audit::{Action, AuditEvent};
use crate::cms::{self, CmsError, Digest, SignedCms};
use crate::error::ErrorKind;
use crate::issuance::{Ca, Channel, IssueError, Outcome, Submission};
use crate::issuer::Issuer;
use crate::keystore::{KeyRef, KeySpec, KeyStore, KeyStoreError, Signer, SpkiDer};
use crate::policy::{Profile, Requester};
use crate::store::{CertStatus, Serial, StoreError};
use crate::x509::{self, SignedCert, X509Error};

mod store;

pub use self::store::{
    CodesignKeyRow, CodesignStore, KeyBinding, NewCodesignKey, NewSignature, OwnerKind, Principal,
    SignatureRow, SigningWindow,
};

/// Why a code-signing operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CodesignError {
    /// The request is malformed (a subject, a profile that does not sign code).
    #[error("{0}")]
    Invalid(String),
    /// No such key.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not use this key.
    #[error("{0}")]
    Forbidden(String),
    /// The key cannot sign now: no certificate yet, revoked, expired, retired.
    #[error("{0}")]
    Unusable(String),
    /// The profile's rate limit or daily quota is reached.
    #[error("{0}")]
    RateLimited(String),
    /// The digest or the signature.
    #[error(transparent)]
    Cms(#[from] CmsError),
    /// Requesting the certificate failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key store failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
}

impl CodesignError {
    /// What kind of failure this is. A rate limit is `Rejected`, like a refusal by policy;
    /// [`CodesignError::is_rate_limited`] tells it apart (HTTP 429 rather than 403).
    pub fn kind(&self) -> ErrorKind {
        match self {
            CodesignError::Invalid(_) => ErrorKind::Invalid,
            CodesignError::NotFound(_) => ErrorKind::NotFound,
            CodesignError::Forbidden(_) | CodesignError::RateLimited(_) => ErrorKind::Rejected,
            CodesignError::Unusable(_) => ErrorKind::Conflict,
            CodesignError::Cms(e) => e.kind(),
            CodesignError::Issue(e) => e.kind(),
            CodesignError::Store(e) => e.kind(),
            CodesignError::KeyStore(e) => e.kind(),
        }
    }

    /// Whether the refusal is a rate limit or quota (the caller may retry later).
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, CodesignError::RateLimited(_))
    }
}

impl From<X509Error> for CodesignError {
    fn from(e: X509Error) -> Self {
        CodesignError::Cms(e.into())
    }
}

/// A request for a key held in the key store, and a code-signing certificate for it.
#[derive(Debug, Clone, Copy)]
pub struct KeyRequest<'a> {
    /// Who will own the key.
    pub owner: &'a Requester,
    /// The code-signing profile.
    pub profile: &'a str,
    /// The certificate subject, RFC 4514 (`CN=Release signing,OU=Builds`); the profile
    /// decides which attributes it may set.
    pub subject: &'a str,
    /// The key type.
    pub spec: KeySpec,
    /// From where, for the audit log.
    pub source: &'a str,
    /// Through which interface.
    pub channel: Channel,
}

/// A key generated for its owner, and what became of its certificate request.
#[derive(Debug, Clone)]
pub struct KeyRequested {
    /// The key's label.
    pub key: KeyRef,
    /// Its public key.
    pub public_key: SpkiDer,
    /// Issued, pending approval (the usual case), or refused (the key was then retired and
    /// destroyed).
    pub outcome: Outcome,
}

/// A digest to sign.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// Who asks, as authenticated by the caller of this module: a person (CLI) or an API
    /// token (API). A token never signs as the person it is named like.
    pub caller: Principal<'a>,
    /// The key's label.
    pub key: &'a str,
    /// The artifact's digest.
    pub digest: &'a Digest,
    /// From where, for the audit log.
    pub source: &'a str,
}

/// A signature made.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The detached CMS SignedData.
    pub cms: SignedCms,
    /// The signer certificate's serial.
    pub serial: Serial,
}

/// Code signing: keys generated for owners, and signatures with them.
pub struct Codesign {
    keys: Arc<dyn KeyStore>,
    store: Arc<dyn CodesignStore>,
    profiles: Vec<Profile>,
    issuers: Vec<Issuer>,
    signers: RwLock<HashMap<KeyRef, Arc<dyn Signer>>>,
}

impl fmt::Debug for Codesign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codesign")
            .field("keys", &self.keys)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Codesign {
    /// Code signing over this key store and database, with the CA's profiles (for limits)
    /// and issuers (for the chain in each signature).
    pub fn new(
        keys: Arc<dyn KeyStore>,
        store: Arc<dyn CodesignStore>,
        profiles: Vec<Profile>,
        issuers: Vec<Issuer>,
    ) -> Self {
        Codesign {
            keys,
            store,
            profiles,
            issuers,
            signers: RwLock::new(HashMap::new()),
        }
    }

    /// Generates a key in the key store for `r.owner` and requests a certificate for it
    /// under `r.profile` through `ca` (which usually leaves it pending approval).
    ///
    /// Steps: 1. check the profile signs code and the subject parses; 2. generate the key
    /// (non-extractable); 3. record it with its owner (audited; on failure the key is
    /// destroyed); 4. build a certificate request signed by the key itself and submit it;
    /// 5. bind the key to the request or certificate, or retire and destroy it if refused.
    ///
    /// Fails with [`CodesignError::Invalid`] for a profile that does not issue code-signing
    /// certificates or a malformed subject, and with the key store's, database's or
    /// issuance's error otherwise (the key is then retired and destroyed).
    pub fn request_key(
        &self,
        ca: &Ca,
        r: &KeyRequest<'_>,
        now: SystemTime,
    ) -> Result<KeyRequested, CodesignError> {
        // 1. The profile and the subject; and an owner that is a principal here: a person
        // (CLI) or the token that asks (API). An ACME account owns no code-signing key.
        let owner_kind = match r.channel {
            Channel::Api => OwnerKind::Token,
            Channel::Cli => OwnerKind::User,
            Channel::Acme => {
                return Err(CodesignError::Invalid(
                    "code-signing keys are not requested over ACME".into(),
                ));
            }
        };
        let profile = self.profile(r.profile)?;
        let subject =
            x509::parse_name(r.subject).map_err(|e| CodesignError::Invalid(e.to_string()))?;

        // 2. The key, inside the key store.
        let key = new_label()?;
        let public_key = self.keys.generate(&key, r.spec)?;

        // 3. Its owner, before anything else can happen to it.
        let uri = self.keys.uri(&key);
        let generated = AuditEvent::new(
            Action::KeyGenerated,
            &r.owner.name,
            r.source,
            format!("key:{uri}"),
        )
        .with("purpose", "codesign")
        .with("owner", r.owner.name.as_str())
        .with("profile", profile.name.as_str())
        .with("type", r.spec.as_str())
        .with("public_key_sha256", public_key.fingerprint());
        let record = NewCodesignKey {
            key: key.clone(),
            owner: r.owner.name.clone(),
            owner_kind,
            profile: profile.name.clone(),
            spec: r.spec,
            public_key: public_key.clone(),
            created_at: now,
        };
        if let Err(e) = self.store.add_codesign_key(&record, &generated) {
            // Never recorded: nobody can sign with it, so it goes.
            let _ = self.keys.destroy(&key);
            return Err(e.into());
        }

        // 4. The certificate request, signed by the key (proof of possession).
        let submitted = self
            .keys
            .signer(&key)
            .map_err(CodesignError::from)
            .and_then(|signer| {
                let csr = build_csr(subject, signer.as_ref())?;
                Ok(ca.submit(
                    &Submission {
                        profile: &profile.name,
                        csr: &csr,
                        requester: r.owner,
                        source: r.source,
                        channel: r.channel,
                    },
                    now,
                )?)
            });

        // 5. Bind or retire.
        let outcome = match submitted {
            Ok(outcome) => outcome,
            Err(e) => {
                self.retire(
                    &key,
                    &r.owner.name,
                    r.source,
                    &format!("issuance failed: {e}"),
                );
                return Err(e);
            }
        };
        let binding = match &outcome {
            Outcome::Pending { request_id, .. } => KeyBinding::Request(*request_id),
            Outcome::Issued(issued) => KeyBinding::Certificate(issued.serial.clone()),
            Outcome::Rejected(reasons) => {
                self.retire(
                    &key,
                    &r.owner.name,
                    r.source,
                    &format!("the request was refused: {}", reasons.join("; ")),
                );
                return Ok(KeyRequested {
                    key,
                    public_key,
                    outcome,
                });
            }
        };
        let event = binding_event(&binding, &uri, &r.owner.name, r.source);
        self.store.bind_codesign_key(&key, &binding, &event)?;
        Ok(KeyRequested {
            key,
            public_key,
            outcome,
        })
    }

    /// Signs `r.digest` with key `r.key` for `r.caller` at `now` and returns a detached CMS
    /// SignedData carrying the signer certificate and its chain (without the root).
    ///
    /// Steps: 1. the key exists and is the caller's; 2. its certificate is issued, unrevoked
    /// and valid at `now`; 3. the profile's rate limit and quota allow another signature;
    /// 4. sign (the signature is verified); 5. record the signature with its audit entry,
    /// re-checking the limits in that transaction; only then return it.
    ///
    /// Fails with [`CodesignError::NotFound`] for an unknown key,
    /// [`CodesignError::Forbidden`] if the caller is not its owner,
    /// [`CodesignError::Unusable`] without a usable certificate,
    /// [`CodesignError::RateLimited`] past a limit, [`CodesignError::Cms`] for a digest of
    /// the wrong algorithm, and the key store's or database's error (nothing is returned
    /// then).
    pub fn sign(&self, r: &SignRequest<'_>, now: SystemTime) -> Result<Signature, CodesignError> {
        // 1. The key and its owner.
        let unknown =
            || CodesignError::NotFound(format!("no code-signing key labelled {:?}", r.key));
        let key = KeyRef::new(r.key).map_err(|_| unknown())?;
        let row = self.store.codesign_key(&key)?.ok_or_else(unknown)?;
        let bound = r.caller.kind == OwnerKind::Token
            && self.store.codesign_token_bound(&key, r.caller.name, now)?;
        if row.owner() != r.caller && !bound {
            return Err(CodesignError::Forbidden(format!(
                "{} may not sign with key {key}: only its owner, and API tokens its owner bound \
                 to it, may",
                r.caller
            )));
        }
        if let Some(reason) = &row.retired {
            return Err(CodesignError::Unusable(format!(
                "key {key} is retired ({reason})"
            )));
        }
        cms::check_digest_algorithm(row.spec.signature_algorithm(), r.digest)?;

        // 2. The certificate.
        let cert_row = self.store.codesign_certificate(&key)?.ok_or_else(|| {
            CodesignError::Unusable(match row.request_id {
                Some(id) => {
                    format!("key {key} has no certificate yet: request {id} has not been issued")
                }
                None => format!("key {key} has no certificate"),
            })
        })?;
        let serial = cert_row.serial.clone();
        match cert_row.status {
            CertStatus::Valid => {}
            CertStatus::Revoked => {
                return Err(CodesignError::Unusable(format!(
                    "the certificate {serial} of key {key} is revoked"
                )));
            }
            CertStatus::Reserved | CertStatus::Failed => {
                return Err(CodesignError::Unusable(format!(
                    "the certificate {serial} of key {key} was never issued ({})",
                    cert_row.status.as_str()
                )));
            }
        }
        if now > cert_row.not_after {
            return Err(CodesignError::Unusable(format!(
                "the certificate {serial} of key {key} expired at {}",
                display_time(cert_row.not_after)
            )));
        }
        if now < cert_row.not_before {
            return Err(CodesignError::Unusable(format!(
                "the certificate {serial} of key {key} is not valid before {}",
                display_time(cert_row.not_before)
            )));
        }
        let der = cert_row.der.as_deref().ok_or_else(|| {
            CodesignError::Unusable(format!(
                "the certificate {serial} of key {key} is not stored"
            ))
        })?;
        let cert = SignedCert::from_der(der)?;

        // 3. The limits.
        let profile = self.profile(&cert_row.profile).map_err(|_| {
            CodesignError::Unusable(format!(
                "the certificate {serial} of key {key} was issued under profile {}, which no longer issues code-signing certificates",
                cert_row.profile
            ))
        })?;
        let windows = windows(profile, now)?;
        if let Some(w) = self
            .store
            .codesign_full_window(&key, &windows)?
            .and_then(|i| windows.get(i))
        {
            return Err(CodesignError::RateLimited(limit_reached(&key, w)));
        }

        // 4. Sign.
        let signer = self.signer(&key)?;
        let chain = self.chain(&cert_row.issuer);
        let signed = cms::sign_detached(r.digest, &cert, &chain, signer.as_ref(), now)?;

        // 5. Record, then return.
        let signature = NewSignature {
            key: key.clone(),
            caller: r.caller.name.to_owned(),
            serial: serial.clone(),
            digest_alg: r.digest.alg(),
            digest: r.digest.to_hex(),
            at: now,
        };
        let event = AuditEvent::new(
            Action::CodesignSigned,
            r.caller.name,
            r.source,
            format!("key:{}", self.keys.uri(&key)),
        )
        .with("caller_kind", r.caller.kind.as_str())
        .with("digest_algorithm", r.digest.alg().as_str())
        .with("digest", r.digest.to_hex())
        .with("certificate", serial.as_str())
        .with("signing_time", display_time(now));
        self.store
            .record_codesign_signature(&signature, &windows, &event)
            .map_err(|e| match e {
                StoreError::Conflict(m) => CodesignError::RateLimited(m),
                e => e.into(),
            })?;
        Ok(Signature {
            cms: signed,
            serial,
        })
    }

    /// Lets the API token `token` sign with `key` besides its owner, with the owner's
    /// consent: `actor` must be the key's owner, authenticated (issue 15: an administrator
    /// cannot bind a token it made to someone else's key). Audited as
    /// `codesign.token_bound` by `actor` from `source`.
    ///
    /// Fails with [`CodesignError::Forbidden`] if `actor` is not the owner,
    /// [`CodesignError::NotFound`] for an unknown key or token, and a `Conflict` store error
    /// if the token is revoked or bound to the key already.
    pub fn bind_token(
        &self,
        key: &str,
        token: &str,
        actor: Principal<'_>,
        source: &str,
        now: SystemTime,
    ) -> Result<(), CodesignError> {
        let key = self.owned_key(key, actor, None)?;
        let event = AuditEvent::new(
            Action::CodesignTokenBound,
            actor.name,
            source,
            format!("key:{}", self.keys.uri(&key)),
        )
        .with("token", token);
        self.store
            .bind_codesign_token(&key, token, actor.name, now, &event)
            .map_err(|e| match e {
                StoreError::NotFound(m) => CodesignError::NotFound(format!("{m} not found")),
                e => e.into(),
            })
    }

    /// Takes back [`Codesign::bind_token`], by the key's owner or an administrator (taking a
    /// power away needs no consent); audited as `codesign.token_unbound`.
    ///
    /// Fails with [`CodesignError::Forbidden`] if `actor` is neither, and
    /// [`CodesignError::NotFound`] for an unknown key or a token not bound to it.
    pub fn unbind_token(
        &self,
        key: &str,
        token: &str,
        actor: Principal<'_>,
        admin: bool,
        source: &str,
    ) -> Result<(), CodesignError> {
        let key = self.owned_key(key, actor, Some(admin))?;
        let event = AuditEvent::new(
            Action::CodesignTokenUnbound,
            actor.name,
            source,
            format!("key:{}", self.keys.uri(&key)),
        )
        .with("token", token);
        self.store
            .unbind_codesign_token(&key, token, &event)
            .map_err(|e| match e {
                StoreError::NotFound(m) => CodesignError::NotFound(format!("{m} not found")),
                e => e.into(),
            })
    }

    /// The tokens bound to `key`, by name.
    ///
    /// Fails with [`CodesignError::NotFound`] for an unknown key.
    pub fn bindings(&self, key: &str) -> Result<Vec<String>, CodesignError> {
        let unknown = || CodesignError::NotFound(format!("no code-signing key labelled {key:?}"));
        let key = KeyRef::new(key).map_err(|_| unknown())?;
        self.store.codesign_key(&key)?.ok_or_else(unknown)?;
        Ok(self.store.codesign_bindings(&key)?)
    }

    /// Destroys code-signing key `label` for good (its quorum, if the policy asks for one,
    /// was reached before this is called): 1. the key is recorded retired, so it never signs
    /// again whatever follows; 2. its certificate, if issued and unrevoked, is revoked with
    /// cessationOfOperation through `revoker`; 3. the key object is destroyed in the key
    /// store (PKCS#11 C_DestroyObject, or the embedded token's file); each step audited.
    /// Returns the revoked certificate's serial, if one was revoked.
    ///
    /// Fails with [`CodesignError::NotFound`] for an unknown key,
    /// [`CodesignError::Unusable`] if it is retired already, and the store's or key
    /// store's error (the key is retired from step 1 on, so it never signs again).
    pub fn destroy_key(
        &self,
        revoker: &dyn crate::store::Store,
        label: &str,
        why: &str,
        actor: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<Option<Serial>, CodesignError> {
        let unknown = || CodesignError::NotFound(format!("no code-signing key labelled {label:?}"));
        let key = KeyRef::new(label).map_err(|_| unknown())?;
        let row = self.store.codesign_key(&key)?.ok_or_else(unknown)?;
        if let Some(reason) = &row.retired {
            return Err(CodesignError::Unusable(format!(
                "key {key} is retired already ({reason})"
            )));
        }
        let uri = self.keys.uri(&key);
        // 1. Never signs again.
        let binding = KeyBinding::Retired(format!("destroyed: {why}"));
        let event = binding_event(&binding, &uri, actor, source);
        self.store.bind_codesign_key(&key, &binding, &event)?;
        if let Ok(mut m) = self.signers.write() {
            m.remove(&key);
        }
        // 2. Its certificate, revoked.
        let mut revoked = None;
        if let Some(cert) = self.store.codesign_certificate(&key)?
            && cert.status == CertStatus::Valid
        {
            let event = AuditEvent::new(
                Action::CertificateRevoked,
                actor,
                source,
                format!("certificate:{}", cert.serial),
            )
            .with("reason", "cessationOfOperation")
            .with("key", uri.as_str());
            revoker.revoke(
                &crate::store::Revocation {
                    serial: cert.serial.clone(),
                    reason: crate::revocation::Reason::CessationOfOperation,
                    invalidity_date: None,
                    revoked_at: now,
                },
                &event,
            )?;
            revoked = Some(cert.serial);
        }
        // 3. The key object itself.
        self.keys.destroy(&key)?;
        revoker.audit(&[AuditEvent::new(
            Action::KeyDestroyed,
            actor,
            source,
            format!("key:{uri}"),
        )
        .with("why", why)])?;
        Ok(revoked)
    }

    /// The key named `key`, for its owner `actor` (or, with `Some(true)`, an
    /// administrator).
    fn owned_key(
        &self,
        key: &str,
        actor: Principal<'_>,
        admin: Option<bool>,
    ) -> Result<KeyRef, CodesignError> {
        let unknown = || CodesignError::NotFound(format!("no code-signing key labelled {key:?}"));
        let key = KeyRef::new(key).map_err(|_| unknown())?;
        let row = self.store.codesign_key(&key)?.ok_or_else(unknown)?;
        if row.owner() != actor && admin != Some(true) {
            return Err(CodesignError::Forbidden(format!(
                "{actor} is not the owner of key {key}: only its owner ({}) binds API tokens to \
                 it{}",
                row.owner(),
                if admin.is_some() {
                    " or, as an administrator, takes a binding back"
                } else {
                    ""
                }
            )));
        }
        Ok(key)
    }

    /// The key's signing history, newest first, for its owner.
    ///
    /// Fails with [`CodesignError::NotFound`] or [`CodesignError::Forbidden`] as
    /// [`Codesign::sign`] does.
    pub fn history(
        &self,
        caller: Principal<'_>,
        key: &str,
        limit: u32,
    ) -> Result<Vec<SignatureRow>, CodesignError> {
        let unknown = || CodesignError::NotFound(format!("no code-signing key labelled {key:?}"));
        let key = KeyRef::new(key).map_err(|_| unknown())?;
        let row = self.store.codesign_key(&key)?.ok_or_else(unknown)?;
        if row.owner() != caller {
            return Err(CodesignError::Forbidden(format!(
                "{caller} may not see the history of key {key}: only its owner may"
            )));
        }
        Ok(self.store.codesign_signatures(&key, limit)?)
    }

    fn profile(&self, name: &str) -> Result<&Profile, CodesignError> {
        let profile = self
            .profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| CodesignError::Invalid(format!("unknown profile {name:?}")))?;
        if profile.codesign_limits().is_none() {
            return Err(CodesignError::Invalid(format!(
                "profile {name} does not issue code-signing certificates (its extended key usage lacks codeSigning)"
            )));
        }
        Ok(profile)
    }

    /// A signer for `key`, from the cache: looking a key up costs PKCS#11 round trips.
    fn signer(&self, key: &KeyRef) -> Result<Arc<dyn Signer>, KeyStoreError> {
        if let Some(s) = self.signers.read().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(s);
        }
        let signer = self.keys.signer(key)?;
        if let Ok(mut m) = self.signers.write() {
            m.insert(key.clone(), Arc::clone(&signer));
        }
        Ok(signer)
    }

    /// The CA certificates above a certificate issued by `issuer`, nearest first, without
    /// the self-signed root (relying parties hold it).
    fn chain(&self, issuer: &str) -> Vec<SignedCert> {
        self.issuers
            .iter()
            .find(|i| i.id.as_str() == issuer)
            .map(|i| crate::issuer::chain_without_root(&self.issuers, i))
            .unwrap_or_default()
    }

    /// Best effort: destroy the key and record it retired. A key left in the store by a
    /// failure here is recorded as generated, never bound, and can never sign.
    fn retire(&self, key: &KeyRef, actor: &str, source: &str, reason: &str) {
        let _ = self.keys.destroy(key);
        let binding = KeyBinding::Retired(reason.to_owned());
        let event = binding_event(&binding, &self.keys.uri(key), actor, source);
        let _ = self.store.bind_codesign_key(key, &binding, &event);
    }
}

fn binding_event(binding: &KeyBinding, uri: &str, actor: &str, source: &str) -> AuditEvent {
    let event = AuditEvent::new(
        Action::CodesignKeyBound,
        actor,
        source,
        format!("key:{uri}"),
    );
    match binding {
        KeyBinding::Request(id) => event.with("request", id.to_string()),
        KeyBinding::Certificate(serial) => event.with("certificate", serial.as_str()),
        KeyBinding::Retired(reason) => event.with("retired", reason.as_str()),
    }
}

/// The windows a profile's limits define at `now`.
fn windows(profile: &Profile, now: SystemTime) -> Result<Vec<SigningWindow>, CodesignError> {
    let limits = profile.codesign_limits().ok_or_else(|| {
        CodesignError::Invalid(format!(
            "profile {} does not issue code-signing certificates",
            profile.name
        ))
    })?;
    let since = |secs| {
        now.checked_sub(Duration::from_secs(secs))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let mut windows = vec![SigningWindow {
        since: since(60),
        max: u64::from(limits.per_minute),
        name: format!("{} signatures per minute", limits.per_minute),
    }];
    if let Some(per_day) = limits.per_day {
        windows.push(SigningWindow {
            since: since(86_400),
            max: u64::from(per_day),
            name: format!("a daily quota of {per_day} signatures"),
        });
    }
    Ok(windows)
}

/// The refusal for a full window.
pub fn limit_reached(key: &KeyRef, w: &SigningWindow) -> String {
    format!(
        "key {key} has reached its limit of {} (profile [codesign]); try again later",
        w.name
    )
}

/// A fresh label for a key held for an owner: `cs-` and 16 random hex digits.
fn new_label() -> Result<KeyRef, CodesignError> {
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| {
        KeyStoreError::Unavailable("the system random number generator failed".into())
    })?;
    Ok(KeyRef::new(format!("cs-{}", hex::encode(random)))?)
}

/// A PKCS#10 request for `subject`, signed by `signer` (RFC 2986).
pub(crate) fn build_csr(
    subject: x509_cert::name::Name,
    signer: &dyn Signer,
) -> Result<Vec<u8>, CodesignError> {
    use der::Decode;
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: spki::SubjectPublicKeyInfoOwned::from_der(signer.public_key().as_bytes())
            .map_err(CmsError::from)?,
        attributes: Default::default(),
    };
    let tbs = info.to_der().map_err(CmsError::from)?;
    let signature = signer.sign(&tbs)?;
    let req = CertReq {
        info,
        // RFC 5758 3.2: no parameters.
        algorithm: AlgorithmIdentifierOwned {
            oid: signer.algorithm().oid(),
            parameters: None,
        },
        signature: BitString::from_bytes(&signature).map_err(CmsError::from)?,
    };
    Ok(req.to_der().map_err(CmsError::from)?)
}

/// `2026-01-01T00:00:00Z`.
fn display_time(t: SystemTime) -> String {
    der::DateTime::from_system_time(t)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("{t:?}"))
}

#[cfg(test)]
mod tests;
