//! The CA key ceremony: a whole hierarchy (root, issuing CAs, an OCSP responder for each)
//! created inside a key store in one step, from one reviewable file.
//!
//! Invariant: the ceremony either completes or leaves the key store as it found it. Every
//! label is checked free before the first key is generated, and a failure after that
//! destroys the keys this ceremony generated.
//!
//! Every certificate is built here and signed through the key store, so with PKCS#11 no
//! private key byte ever exists in the Keyhold process.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};

use crate::issuer::IssuerId;
use crate::keystore::{KeyRef, KeySpec, KeyStore, KeyStoreError, SpkiDer};
use crate::x509::{self, CertTemplate, SignedCert, X509Error};

const DAY: Duration = Duration::from_secs(86_400);
/// id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1).
const ID_PKIX_OCSP_NOCHECK: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");

/// A ceremony file (`--ceremony FILE`): what hierarchy to create. Every field has a default,
/// so an empty file (or no file) makes a root, a TLS issuing CA and a code-signing issuing
/// CA, each with its delegated OCSP responder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonySpec {
    /// Format version; must be 1.
    #[serde(default = "one")]
    pub version: u32,
    /// Where the CA publishes certificates, CRLs and OCSP (no trailing slash); goes into CDP
    /// and AIA URLs.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Prepended to every key label, so several CAs can share one token.
    #[serde(default)]
    pub key_label_prefix: String,
    /// The root CA.
    #[serde(default)]
    pub root: RootSpec,
    /// The issuing CAs, each signed by the root.
    #[serde(default = "default_issuing")]
    pub issuing: Vec<IssuingSpec>,
}

/// The root CA's part of a ceremony.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSpec {
    /// Subject DN, RFC 4514.
    #[serde(default = "default_root_subject")]
    pub subject: String,
    /// Key label (before the prefix).
    #[serde(default = "default_root_label")]
    pub key_label: String,
    /// Key type.
    #[serde(default = "p384")]
    pub key_type: KeySpec,
    /// Validity in years (365 days each).
    #[serde(default = "twenty")]
    pub validity_years: u32,
    /// The key may leave the key store, never in plaintext (`keyhold keys export`: PKCS#11
    /// wrapped under a trusted key, embedded token re-encrypted to a recipient). Default false.
    #[serde(default)]
    pub exportable: bool,
    /// The root's delegated OCSP responder's certificate validity in days (it answers for
    /// the CA certificates the root signs, so a whole chain can be checked by OCSP).
    #[serde(default = "thirty")]
    pub ocsp_validity_days: u32,
}

/// One issuing CA's part of a ceremony.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuingSpec {
    /// Short name used in URLs and file names (`/crl/{id}.crl`, `ca/{id}.pem`).
    #[serde(default = "default_issuing_id")]
    pub id: String,
    /// Subject DN, RFC 4514.
    #[serde(default = "default_issuing_subject")]
    pub subject: String,
    /// Key label (before the prefix); defaults to the id.
    #[serde(default)]
    pub key_label: Option<String>,
    /// Key type.
    #[serde(default = "p384")]
    pub key_type: KeySpec,
    /// Validity in years (365 days each), capped by the root's.
    #[serde(default = "five")]
    pub validity_years: u32,
    /// The delegated OCSP responder's certificate validity in days.
    #[serde(default = "thirty")]
    pub ocsp_validity_days: u32,
    /// The CA key (not its OCSP responder's, which is renewed instead) may leave the key
    /// store, never in plaintext (`keyhold keys export`). Default false.
    #[serde(default)]
    pub exportable: bool,
    /// The extended key usages that constrain this CA (`serverAuth`, `clientAuth`,
    /// `codeSigning`, `emailProtection`, `timeStamping`): relying parties that chain EKUs
    /// (NSS, Windows) accept only those purposes below it. Empty: unconstrained (no EKU).
    #[serde(default)]
    pub extended_key_usage: Vec<String>,
}

/// The purposes an issuing CA can be constrained to, by name, as in profiles.
const CA_EKUS: [(&str, const_oid::ObjectIdentifier); 5] = [
    ("serverAuth", const_oid::db::rfc5280::ID_KP_SERVER_AUTH),
    ("clientAuth", const_oid::db::rfc5280::ID_KP_CLIENT_AUTH),
    ("codeSigning", const_oid::db::rfc5280::ID_KP_CODE_SIGNING),
    (
        "emailProtection",
        const_oid::db::rfc5280::ID_KP_EMAIL_PROTECTION,
    ),
    ("timeStamping", const_oid::db::rfc5280::ID_KP_TIME_STAMPING),
];

/// The OIDs of EKU names; `Err` with the first unknown name.
fn eku_oids(names: &[String]) -> Result<Vec<const_oid::ObjectIdentifier>, String> {
    names
        .iter()
        .map(|n| {
            CA_EKUS
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, oid)| *oid)
                .ok_or_else(|| n.clone())
        })
        .collect()
}

fn one() -> u32 {
    1
}
fn five() -> u32 {
    5
}
fn twenty() -> u32 {
    20
}
fn thirty() -> u32 {
    30
}
fn p384() -> KeySpec {
    KeySpec::EcP384
}
fn default_base_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_root_subject() -> String {
    "CN=Keyhold Root CA,O=Keyhold".into()
}
fn default_root_label() -> String {
    "root-ca".into()
}
fn default_issuing_id() -> String {
    "issuing-ca".into()
}
fn default_issuing_subject() -> String {
    "CN=Keyhold Issuing CA,O=Keyhold".into()
}
/// One issuing CA per purpose, each constrained to it: TLS (`issuing-ca`) and code signing
/// (`codesign-ca`), so that NSS's object-signing check accepts code-signing chains.
fn default_issuing() -> Vec<IssuingSpec> {
    vec![
        IssuingSpec {
            extended_key_usage: vec!["serverAuth".into(), "clientAuth".into()],
            ..IssuingSpec::default()
        },
        IssuingSpec {
            id: "codesign-ca".into(),
            subject: "CN=Keyhold Code Signing CA,O=Keyhold".into(),
            extended_key_usage: vec!["codeSigning".into()],
            ..IssuingSpec::default()
        },
    ]
}

impl Default for RootSpec {
    fn default() -> Self {
        RootSpec {
            subject: default_root_subject(),
            key_label: default_root_label(),
            key_type: KeySpec::EcP384,
            validity_years: 20,
            exportable: false,
            ocsp_validity_days: 30,
        }
    }
}

impl Default for IssuingSpec {
    fn default() -> Self {
        IssuingSpec {
            id: default_issuing_id(),
            subject: default_issuing_subject(),
            key_label: None,
            key_type: KeySpec::EcP384,
            validity_years: 5,
            ocsp_validity_days: 30,
            exportable: false,
            extended_key_usage: Vec::new(),
        }
    }
}

impl Default for CeremonySpec {
    fn default() -> Self {
        CeremonySpec {
            version: 1,
            base_url: default_base_url(),
            key_label_prefix: String::new(),
            root: RootSpec::default(),
            issuing: default_issuing(),
        }
    }
}

/// Why a ceremony did not happen. Every variant but [`CeremonyError::RollbackFailed`]
/// leaves the key store unchanged.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// The ceremony file or flags are inconsistent; every problem is listed.
    #[error("invalid ceremony:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
    /// A certificate could not be built or signed.
    #[error(transparent)]
    X509(#[from] X509Error),
    /// The key store refused.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// The ceremony failed and some of the keys it generated could not be destroyed.
    #[error("{cause}; and these keys it generated could not be destroyed, remove them by hand: {}", .left.join(", "))]
    RollbackFailed {
        /// Why the ceremony failed.
        cause: Box<CeremonyError>,
        /// URIs of the keys left in the store.
        left: Vec<String>,
    },
}

/// A CA key and certificate produced by a ceremony.
#[derive(Debug, Clone)]
pub struct CaMaterial {
    /// The key's label in the key store.
    pub key: KeyRef,
    /// The key store's URI for it.
    pub key_uri: String,
    /// The certificate.
    pub cert: SignedCert,
}

/// One issuing CA with its OCSP responder.
#[derive(Debug, Clone)]
pub struct IssuingMaterial {
    /// Its id.
    pub id: IssuerId,
    /// The issuing CA itself.
    pub ca: CaMaterial,
    /// Its delegated OCSP responder.
    pub ocsp: CaMaterial,
}

/// What a ceremony made.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// The root CA.
    pub root: CaMaterial,
    /// The root's delegated OCSP responder: answers for the issuing CAs' certificates.
    pub root_ocsp: CaMaterial,
    /// The issuing CAs, in ceremony order.
    pub issuing: Vec<IssuingMaterial>,
    /// The key that signs the audit log's checkpoints (P-256: it signs often).
    pub audit_key: KeyRef,
    /// The key store's URI for it.
    pub audit_key_uri: String,
}

impl CeremonySpec {
    /// Parses a ceremony file's text.
    ///
    /// Fails with the TOML error (line and reason) or with every inconsistency found.
    pub fn from_toml(text: &str) -> Result<Self, CeremonyError> {
        let spec: CeremonySpec =
            toml::from_str(text).map_err(|e| CeremonyError::Invalid(vec![e.to_string()]))?;
        spec.check()?;
        Ok(spec)
    }

    /// Checks the whole spec and reports every problem together.
    ///
    /// Fails with [`CeremonyError::Invalid`].
    pub fn check(&self) -> Result<(), CeremonyError> {
        let mut problems = Vec::new();
        if self.version != 1 {
            problems.push(format!(
                "version = {} is not supported (use 1)",
                self.version
            ));
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://"))
            || self.base_url.ends_with('/')
        {
            problems.push(format!(
                "base_url {:?} must be an http:// or https:// URL without a trailing slash",
                self.base_url
            ));
        }
        for url in [
            self.crl_url("root"),
            self.ocsp_url(),
            self.ca_cert_url("root"),
        ] {
            if let Err(e) = x509::crl_dp_extension(&url) {
                problems.push(format!("base_url: {e}"));
                break;
            }
        }
        if let Err(e) = x509::parse_name(&self.root.subject) {
            problems.push(format!("root.subject: {e}"));
        }
        if !(1..=50).contains(&self.root.validity_years) {
            problems.push("root.validity_years must be between 1 and 50".into());
        }
        if !(1..=366).contains(&self.root.ocsp_validity_days) {
            problems.push("root.ocsp_validity_days must be between 1 and 366".into());
        }
        if self.issuing.is_empty() {
            problems.push("at least one [[issuing]] CA is needed".into());
        }
        let mut labels = vec![
            self.label(&self.root.key_label),
            self.label(&format!("{}-ocsp", self.root.key_label)),
        ];
        let mut ids = vec!["root".to_string()];
        for (i, ca) in self.issuing.iter().enumerate() {
            let at = format!("issuing[{i}] ({})", ca.id);
            if IssuerId::new(&ca.id).is_err() {
                problems.push(format!(
                    "{at}: id must be 1 to 32 characters from a-z 0-9 - and start with a letter"
                ));
            }
            if ids.contains(&ca.id) {
                problems.push(format!(
                    "{at}: id {:?} is used twice (\"root\" is reserved)",
                    ca.id
                ));
            }
            // File names under ca/ derive from ids: keep them from colliding.
            if ca.id == "chain" || ca.id.ends_with("-chain") || ca.id.ends_with("-ocsp") {
                problems.push(format!(
                    "{at}: id may not be \"chain\" or end in -chain or -ocsp"
                ));
            }
            ids.push(ca.id.clone());
            if let Err(e) = x509::parse_name(&ca.subject) {
                problems.push(format!("{at}.subject: {e}"));
            }
            let same_as_root = x509::parse_name(&ca.subject)
                .ok()
                .zip(x509::parse_name(&self.root.subject).ok())
                .is_some_and(|(a, b)| a == b);
            if same_as_root {
                problems.push(format!("{at}.subject must differ from the root's"));
            }
            if !(1..=30).contains(&ca.validity_years) {
                problems.push(format!("{at}.validity_years must be between 1 and 30"));
            }
            if !(1..=366).contains(&ca.ocsp_validity_days) {
                problems.push(format!("{at}.ocsp_validity_days must be between 1 and 366"));
            }
            if let Err(unknown) = eku_oids(&ca.extended_key_usage) {
                problems.push(format!(
                    "{at}.extended_key_usage: unknown {unknown:?} (use {})",
                    CA_EKUS.map(|(n, _)| n).join(", ")
                ));
            }
            labels.push(self.label(ca.key_label.as_deref().unwrap_or(&ca.id)));
            labels.push(self.label(&format!(
                "{}-ocsp",
                ca.key_label.as_deref().unwrap_or(&ca.id)
            )));
        }
        for (i, label) in labels.iter().enumerate() {
            if let Err(e) = KeyRef::new(label.as_str()) {
                problems.push(e.to_string());
            }
            if labels[..i].contains(label) {
                problems.push(format!("key label {label:?} is used twice"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CeremonyError::Invalid(problems))
        }
    }

    fn label(&self, label: &str) -> String {
        format!("{}{}", self.key_label_prefix, label)
    }

    /// Every key label this ceremony will create, in creation order.
    pub fn key_labels(&self) -> Vec<String> {
        let mut labels = vec![
            self.label(&self.root.key_label),
            self.label(&format!("{}-ocsp", self.root.key_label)),
        ];
        for ca in &self.issuing {
            let base = ca.key_label.as_deref().unwrap_or(&ca.id);
            labels.push(self.label(base));
            labels.push(self.label(&format!("{base}-ocsp")));
        }
        labels.push(self.audit_key_label());
        labels
    }

    /// The label of the audit checkpoint key.
    pub fn audit_key_label(&self) -> String {
        self.label("audit")
    }

    /// The URL of the CRL an issuer publishes.
    pub fn crl_url(&self, issuer: &str) -> String {
        format!("{}/crl/{issuer}.crl", self.base_url)
    }

    /// The OCSP responder URL.
    pub fn ocsp_url(&self) -> String {
        format!("{}/ocsp", self.base_url)
    }

    /// The URL of an issuer's certificate (DER, RFC 5280 4.2.2.1).
    pub fn ca_cert_url(&self, issuer: &str) -> String {
        format!("{}/ca/{issuer}.der", self.base_url)
    }
}

/// Runs the ceremony: generates every key in `store` and issues every certificate, at `now`.
///
/// Fails without changing the store if the spec is invalid or any label exists already;
/// fails and destroys the keys it generated if anything later goes wrong.
pub fn run(
    spec: &CeremonySpec,
    store: &dyn KeyStore,
    now: SystemTime,
) -> Result<Hierarchy, CeremonyError> {
    spec.check()?;
    let existing: Vec<String> = store
        .list()?
        .into_iter()
        .map(|k| k.key.label().to_string())
        .collect();
    let taken: Vec<String> = spec
        .key_labels()
        .into_iter()
        .filter(|l| existing.contains(l))
        .map(|l| format!("key label {l:?} already exists in the key store (pick another key_label_prefix, or destroy the old key)"))
        .collect();
    if !taken.is_empty() {
        return Err(CeremonyError::Invalid(taken));
    }

    let mut generated = Vec::new();
    let result = build(spec, store, now, &mut generated);
    match result {
        Ok(hierarchy) => Ok(hierarchy),
        Err(cause) => {
            let left: Vec<String> = generated
                .iter()
                .rev()
                .filter(|key| store.destroy(key).is_err())
                .map(|key| store.uri(key))
                .collect();
            if left.is_empty() {
                Err(cause)
            } else {
                Err(CeremonyError::RollbackFailed {
                    cause: Box::new(cause),
                    left,
                })
            }
        }
    }
}

fn build(
    spec: &CeremonySpec,
    store: &dyn KeyStore,
    now: SystemTime,
    generated: &mut Vec<KeyRef>,
) -> Result<Hierarchy, CeremonyError> {
    let mut generate = |label: String,
                        key_type: KeySpec,
                        exportable: bool|
     -> Result<(KeyRef, SpkiDer), CeremonyError> {
        let key = KeyRef::new(label)?;
        let spki = if exportable {
            store.generate_exportable(&key, key_type)?
        } else {
            store.generate(&key, key_type)?
        };
        generated.push(key.clone());
        Ok((key, spki))
    };

    // 1. The root: self-signed, CA:TRUE without a path length, keyCertSign|cRLSign.
    let root_name = x509::parse_name(&spec.root.subject)?;
    let (root_key, root_spki) = generate(
        spec.label(&spec.root.key_label),
        spec.root.key_type,
        spec.root.exportable,
    )?;
    let root_signer = store.signer(&root_key)?;
    let root_not_after = now + DAY * 365 * spec.root.validity_years;
    let root_cert = x509::sign_certificate(
        CertTemplate {
            serial: x509::random_serial()?,
            issuer: root_name.clone(),
            subject: root_name.clone(),
            not_before: now,
            not_after: root_not_after,
            public_key: root_spki.clone(),
            extensions: vec![
                x509::to_ext(
                    true,
                    &BasicConstraints {
                        ca: true,
                        path_len_constraint: None,
                    },
                )
                .map_err(X509Error::from)?,
                x509::to_ext(true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))
                    .map_err(X509Error::from)?,
                x509::ski_extension(&root_spki)?,
                x509::aki_extension(&root_spki)?,
            ],
        },
        root_signer.as_ref(),
    )?;
    let root = CaMaterial {
        key_uri: store.uri(&root_key),
        key: root_key,
        cert: root_cert,
    };
    // 1b. The root's delegated OCSP responder (RFC 6960 4.2.2.2): the issuing CAs' AIA
    // names `<base>/ocsp`, so it must answer for their certificates.
    let root_id = IssuerId::new("root").map_err(|e| CeremonyError::Invalid(vec![e]))?;
    let (root_ocsp_key, root_ocsp_spki) = generate(
        spec.label(&format!("{}-ocsp", spec.root.key_label)),
        spec.root.key_type,
        false,
    )?;
    let root_ocsp = CaMaterial {
        key_uri: store.uri(&root_ocsp_key),
        key: root_ocsp_key,
        cert: issue_ocsp_responder(
            &OcspResponderRequest {
                issuer_name: &root_name,
                issuer_not_after: root_not_after,
                issuer_id: &root_id,
                public_key: &root_ocsp_spki,
                validity_days: spec.root.ocsp_validity_days,
            },
            root_signer.as_ref(),
            now,
        )?,
    };

    let root_parts = RootParts {
        name: &root_name,
        spki: &root_spki,
        signer: root_signer.as_ref(),
        not_after: root_not_after,
    };
    let mut issuing = Vec::new();
    for ca in &spec.issuing {
        issuing.push(make_issuing(
            spec,
            ca,
            &root_parts,
            store,
            now,
            &mut generate,
        )?);
    }
    // 4. The audit log's checkpoint key: no certificate, only its URI in the config.
    let (audit_key, _) = generate(spec.audit_key_label(), KeySpec::EcP256, false)?;
    Ok(Hierarchy {
        root,
        root_ocsp,
        issuing,
        audit_key_uri: store.uri(&audit_key),
        audit_key,
    })
}

/// The root, as the signer of issuing CAs.
struct RootParts<'a> {
    name: &'a x509_cert::name::Name,
    spki: &'a SpkiDer,
    signer: &'a dyn crate::keystore::Signer,
    not_after: SystemTime,
}

/// Steps 2 and 3 for one issuing CA: its key and certificate (signed by the root), and its
/// OCSP responder's key and certificate. Keys come from `generate`, which records them.
fn make_issuing(
    spec: &CeremonySpec,
    ca: &IssuingSpec,
    root: &RootParts<'_>,
    store: &dyn KeyStore,
    now: SystemTime,
    generate: &mut dyn FnMut(String, KeySpec, bool) -> Result<(KeyRef, SpkiDer), CeremonyError>,
) -> Result<IssuingMaterial, CeremonyError> {
    let id = IssuerId::new(&ca.id).map_err(|e| CeremonyError::Invalid(vec![e]))?;
    let base_label = ca.key_label.as_deref().unwrap_or(&ca.id);

    // 2. The issuing CA, signed by the root: pathLen 0, its CRL on the root's CRL, AIA.
    let name = x509::parse_name(&ca.subject)?;
    let (key, spki) = generate(spec.label(base_label), ca.key_type, ca.exportable)?;
    let not_after = root.not_after.min(now + DAY * 365 * ca.validity_years);
    let mut extensions = Vec::new();
    let ekus = eku_oids(&ca.extended_key_usage)
        .map_err(|e| CeremonyError::Invalid(vec![format!("unknown EKU {e:?}")]))?;
    if !ekus.is_empty() {
        // Not critical (RFC 5280 4.2.1.12 allows either; CA/B BR 7.1.2.10.6: not critical).
        extensions.push(x509::to_ext(false, &ExtendedKeyUsage(ekus)).map_err(X509Error::from)?);
    }
    let cert = x509::sign_certificate(
        CertTemplate {
            serial: x509::random_serial()?,
            issuer: root.name.clone(),
            subject: name.clone(),
            not_before: now,
            not_after,
            public_key: spki.clone(),
            extensions: [
                x509::to_ext(
                    true,
                    &BasicConstraints {
                        ca: true,
                        path_len_constraint: Some(0),
                    },
                )
                .map_err(X509Error::from)?,
                x509::to_ext(true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))
                    .map_err(X509Error::from)?,
                x509::ski_extension(&spki)?,
                x509::aki_extension(root.spki)?,
                x509::crl_dp_extension(&spec.crl_url("root"))?,
                x509::aia_extension(&spec.ocsp_url(), &spec.ca_cert_url("root"))?,
            ]
            .into_iter()
            .chain(extensions)
            .collect(),
        },
        root.signer,
    )?;
    let ca_signer = store.signer(&key)?;

    // 3. Its delegated OCSP responder (RFC 6960 4.2.2.2): EKU OCSPSigning, and
    // id-pkix-ocsp-nocheck so clients do not ask about the responder itself.
    let (ocsp_key, ocsp_spki) = generate(
        spec.label(&format!("{base_label}-ocsp")),
        ca.key_type,
        false,
    )?;
    let ocsp_cert = issue_ocsp_responder(
        &OcspResponderRequest {
            issuer_name: &name,
            issuer_not_after: not_after,
            issuer_id: &id,
            public_key: &ocsp_spki,
            validity_days: ca.ocsp_validity_days,
        },
        ca_signer.as_ref(),
        now,
    )?;

    Ok(IssuingMaterial {
        ca: CaMaterial {
            key_uri: store.uri(&key),
            key,
            cert,
        },
        ocsp: CaMaterial {
            key_uri: store.uri(&ocsp_key),
            key: ocsp_key,
            cert: ocsp_cert,
        },
        id,
    })
}

/// Adds one issuing CA, with its OCSP responder, under an existing `root`
/// (`keyhold ca add-issuing`): `spec` holds the base URL, key label prefix and exactly one
/// `[[issuing]]` entry. This is how a data directory made with one issuing CA gets a
/// code-signing one.
///
/// Fails without changing the store if the spec is invalid or a label is taken; fails and
/// destroys the keys it generated if anything later goes wrong.
pub fn add_issuing(
    spec: &CeremonySpec,
    root: &crate::issuer::Issuer,
    store: &dyn KeyStore,
    now: SystemTime,
) -> Result<IssuingMaterial, CeremonyError> {
    spec.check()?;
    let [ca] = spec.issuing.as_slice() else {
        return Err(CeremonyError::Invalid(vec![
            "exactly one issuing CA is added at a time".into(),
        ]));
    };
    let base = ca.key_label.as_deref().unwrap_or(&ca.id);
    let labels = [spec.label(base), spec.label(&format!("{base}-ocsp"))];
    let existing = store.list()?;
    let taken: Vec<String> = labels
        .iter()
        .filter(|l| existing.iter().any(|k| k.key.label() == l.as_str()))
        .map(|l| format!("key label {l:?} already exists in the key store"))
        .collect();
    if !taken.is_empty() {
        return Err(CeremonyError::Invalid(taken));
    }
    let mut generated: Vec<KeyRef> = Vec::new();
    let result = {
        let mut generate = |label: String,
                            key_type: KeySpec,
                            exportable: bool|
         -> Result<(KeyRef, SpkiDer), CeremonyError> {
            let key = KeyRef::new(label)?;
            let spki = if exportable {
                store.generate_exportable(&key, key_type)?
            } else {
                store.generate(&key, key_type)?
            };
            generated.push(key.clone());
            Ok((key, spki))
        };
        let parts = RootParts {
            name: root.ca.cert.cert.tbs_certificate().subject(),
            spki: root.ca.signer.public_key(),
            signer: root.ca.signer.as_ref(),
            not_after: root.ca.cert.not_after(),
        };
        make_issuing(spec, ca, &parts, store, now, &mut generate)
    };
    result.map_err(|cause| {
        let left: Vec<String> = generated
            .iter()
            .rev()
            .filter(|key| store.destroy(key).is_err())
            .map(|key| store.uri(key))
            .collect();
        if left.is_empty() {
            cause
        } else {
            CeremonyError::RollbackFailed {
                cause: Box::new(cause),
                left,
            }
        }
    })
}

mod responder;
pub use self::responder::{OcspResponderRequest, add_ocsp_responder, issue_ocsp_responder};

#[cfg(test)]
mod tests;
