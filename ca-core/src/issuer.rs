//! Issuers: a CA certificate together with the key-store key that signs for it.
//!
//! Invariant: an [`Issuer`] exists only if its key's public key is the one in its
//! certificate (Boulder's rule: an issuer whose key does not match its certificate refuses to
//! load), so nothing can ever be signed under the wrong name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::keystore::{KeyStore, Signer};
use crate::x509::{self, SignedCert};

/// An issuer's short name, used in URLs and file names: 1 to 32 characters from `a-z0-9-`,
/// starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IssuerId(String);

impl IssuerId {
    /// Checks and wraps an id.
    ///
    /// Fails with a message saying what an id may contain.
    pub fn new(id: &str) -> Result<Self, String> {
        let ok = (1..=32).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(IssuerId(id.into()))
        } else {
            Err(format!(
                "invalid issuer id {id:?}: use 1 to 32 characters from a-z 0-9 - starting with a letter"
            ))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IssuerId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        IssuerId::new(&s)
    }
}

impl From<IssuerId> for String {
    fn from(id: IssuerId) -> String {
        id.0
    }
}

impl fmt::Display for IssuerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A certificate and the key-store key that signs for it, as written in `keyhold.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedCertConfig {
    /// PEM certificate; relative paths are relative to the data directory.
    pub certificate: PathBuf,
    /// The key's URI: `embedded:LABEL` or an RFC 7512 `pkcs11:` URI.
    pub key: String,
}

/// One `[[issuers]]` entry of `keyhold.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer's id.
    pub id: IssuerId,
    /// The id of the issuer that signed this one's certificate; none for the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<IssuerId>,
    /// The CA certificate and key.
    #[serde(flatten)]
    pub ca: KeyedCertConfig,
    /// The delegated OCSP responder, if this issuer has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<KeyedCertConfig>,
}

/// A certificate whose key has been checked against it.
#[derive(Debug, Clone)]
pub struct KeyedCert {
    /// The certificate.
    pub cert: SignedCert,
    /// Signs with the certificate's key.
    pub signer: Arc<dyn Signer>,
}

/// A loaded issuer, ready to sign.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Its id.
    pub id: IssuerId,
    /// Its parent's id.
    pub parent: Option<IssuerId>,
    /// The CA certificate and key.
    pub ca: KeyedCert,
    /// The OCSP responder certificate and key.
    pub ocsp: Option<KeyedCert>,
}

/// `issuer` and the issuers above it, nearest first, up to and including the root, each
/// found by its parent's id among `issuers`. This is the one walk up an issuer chain.
///
/// Stops at a parent that is not among `issuers`, and before visiting any issuer twice, so
/// a cycle in a hand-edited configuration cannot loop ([`load_all`] reports both).
pub fn ancestry<'a>(issuers: &'a [Issuer], issuer: &'a Issuer) -> Ancestry<'a> {
    Ancestry {
        issuers,
        next: Some(issuer),
        seen: Vec::new(),
    }
}

/// The iterator [`ancestry`] returns.
#[derive(Debug, Clone)]
pub struct Ancestry<'a> {
    issuers: &'a [Issuer],
    next: Option<&'a Issuer>,
    seen: Vec<&'a IssuerId>,
}

impl<'a> Iterator for Ancestry<'a> {
    type Item = &'a Issuer;

    fn next(&mut self) -> Option<&'a Issuer> {
        let at = self.next.take()?;
        if self.seen.contains(&&at.id) {
            return None;
        }
        self.seen.push(&at.id);
        self.next = at
            .parent
            .as_ref()
            .and_then(|p| self.issuers.iter().find(|c| &c.id == p));
        Some(at)
    }
}

/// The CA certificates a relying party needs above a certificate `issuer` signed: the
/// issuer's and its parents', nearest first, without the self-signed root (relying parties
/// hold it).
pub fn chain_without_root(issuers: &[Issuer], issuer: &Issuer) -> Vec<SignedCert> {
    ancestry(issuers, issuer)
        .take_while(|i| i.parent.is_some())
        .map(|i| i.ca.cert.clone())
        .collect()
}

/// Loads every issuer and checks each against the others and the key store.
///
/// Fails with every problem found, not just the first: a missing or unreadable certificate,
/// a key the store lacks, a key that does not match its certificate, an unknown parent, a
/// certificate its parent did not sign, a duplicate id.
pub fn load_all(
    configs: &[IssuerConfig],
    base: &Path,
    store: &dyn KeyStore,
) -> Result<Vec<Issuer>, Vec<String>> {
    let mut problems = Vec::new();
    let mut issuers = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        if configs[..i].iter().any(|c| c.id == config.id) {
            problems.push(format!("issuer {}: the id is used twice", config.id));
            continue;
        }
        let ca =
            load_keyed(&config.ca, base, store).map_err(|e| format!("issuer {}: {e}", config.id));
        let ocsp = config
            .ocsp
            .as_ref()
            .map(|o| {
                load_keyed(o, base, store)
                    .map_err(|e| format!("issuer {} ocsp responder: {e}", config.id))
            })
            .transpose();
        match (ca, ocsp) {
            (Ok(ca), Ok(ocsp)) => {
                let unsigned = ocsp.as_ref().and_then(|responder| {
                    x509::verify_signed_by(&responder.cert, ca.signer.public_key()).err()
                });
                if let Some(e) = unsigned {
                    problems.push(format!(
                        "issuer {}: the ocsp responder certificate was not signed by this issuer ({e})",
                        config.id
                    ));
                }
                issuers.push(Issuer {
                    id: config.id.clone(),
                    parent: config.parent.clone(),
                    ca,
                    ocsp,
                });
            }
            (ca, ocsp) => {
                problems.extend(ca.err());
                problems.extend(ocsp.err());
            }
        }
    }
    for issuer in &issuers {
        let Some(parent_id) = &issuer.parent else {
            continue;
        };
        match issuers.iter().find(|p| &p.id == parent_id) {
            None => problems.push(format!(
                "issuer {}: parent {parent_id} is not configured",
                issuer.id
            )),
            Some(parent) => {
                if let Err(e) =
                    x509::verify_signed_by(&issuer.ca.cert, parent.ca.signer.public_key())
                {
                    problems.push(format!(
                        "issuer {}: certificate was not signed by its parent {parent_id} ({e})",
                        issuer.id
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(issuers)
    } else {
        Err(problems)
    }
}

fn load_keyed(
    config: &KeyedCertConfig,
    base: &Path,
    store: &dyn KeyStore,
) -> Result<KeyedCert, String> {
    let path = base.join(&config.certificate);
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cert = SignedCert::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = store.key_from_uri(&config.key).map_err(|e| e.to_string())?;
    let signer = store.signer(&key).map_err(|e| e.to_string())?;
    let cert_key = cert.public_key().map_err(|e| e.to_string())?;
    if &cert_key != signer.public_key() {
        return Err(format!(
            "key {} does not match the certificate in {} (certificate key sha256:{}, key store key sha256:{}); refusing to load",
            config.key,
            path.display(),
            cert_key.fingerprint(),
            signer.public_key().fingerprint()
        ));
    }
    Ok(KeyedCert { cert, signer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestry_walks_up_to_the_root_and_stops_on_a_cycle_or_an_unknown_parent() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, signer, _keys) = crate::revocation::crl::tests::test_ca(dir.path(), "t");
        let issuer = |id: &str, parent: Option<&str>| Issuer {
            id: IssuerId::new(id).unwrap(),
            parent: parent.map(|p| IssuerId::new(p).unwrap()),
            ca: KeyedCert {
                cert: cert.clone(),
                signer: signer.clone(),
            },
            ocsp: None,
        };
        let ids = |all: &[Issuer], from: usize| {
            ancestry(all, &all[from])
                .map(|i| i.id.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let tree = [
            issuer("root", None),
            issuer("mid", Some("root")),
            issuer("leaf", Some("mid")),
        ];
        assert_eq!(ids(&tree, 2), ["leaf", "mid", "root"]);
        assert_eq!(ids(&tree, 0), ["root"]);
        assert_eq!(chain_without_root(&tree, &tree[2]).len(), 2);
        assert!(chain_without_root(&tree, &tree[0]).is_empty());
        let cycle = [issuer("a", Some("b")), issuer("b", Some("a"))];
        assert_eq!(ids(&cycle, 0), ["a", "b"]);
        let orphan = [issuer("a", Some("gone"))];
        assert_eq!(ids(&orphan, 0), ["a"]);
    }

    #[test]
    fn issuer_ids_are_url_safe() {
        assert!(IssuerId::new("issuing-ca-1").is_ok());
        for bad in ["", "Issuing", "1ca", "a/b", "a.b", &"a".repeat(33)] {
            assert!(IssuerId::new(bad).is_err(), "{bad:?}");
        }
    }
}
