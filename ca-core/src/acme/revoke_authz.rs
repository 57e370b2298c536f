//! Revocation by an account that did not order the certificate (RFC 8555 7.6): allowed
//! when the account holds a valid, unexpired authorization for every identifier the
//! certificate names.
//!
//! Invariant: a wildcard name (`*.a.internal`) is covered only by an authorization made
//! for that wildcard (validated over dns-01); any other name by any valid authorization of
//! that name. A certificate naming something other than DNS names and IP addresses, or
//! nothing at all, is never revocable this way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use der::Decode;
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::identifier::Identifier;
use super::store::AcmeStore;
use crate::store::StoreError;

/// The identifiers `cert` names in its subjectAltName, as ACME spells them (DNS names
/// lowercased, wildcards kept). `None` if it names anything else, or nothing.
pub fn cert_identifiers(cert: &Certificate) -> Option<Vec<Identifier>> {
    let ext = cert
        .tbs_certificate()
        .extensions()?
        .iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)?;
    let san = SubjectAltName::from_der(ext.extn_value.as_bytes()).ok()?;
    let mut out = Vec::with_capacity(san.0.len());
    for name in &san.0 {
        out.push(match name {
            GeneralName::DnsName(d) => Identifier::Dns(d.as_str().to_ascii_lowercase()),
            GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                4 => {
                    let b: [u8; 4] = ip.as_bytes().try_into().ok()?;
                    Identifier::Ip(IpAddr::V4(Ipv4Addr::from(b)))
                }
                16 => {
                    let b: [u8; 16] = ip.as_bytes().try_into().ok()?;
                    Identifier::Ip(IpAddr::V6(Ipv6Addr::from(b)))
                }
                _ => return None,
            },
            _ => return None,
        });
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `account_id` holds, at `now`, a valid authorization for every identifier in
/// `identifiers`.
///
/// Fails if the store fails.
pub fn holds_authorizations(
    store: &dyn AcmeStore,
    account_id: &str,
    identifiers: &[Identifier],
    now: SystemTime,
) -> Result<bool, StoreError> {
    for id in identifiers {
        let base = match id {
            Identifier::Dns(_) => Identifier::Dns(id.authorization_value()),
            Identifier::Ip(ip) => Identifier::Ip(*ip),
        };
        if !store.holds_authorization(account_id, &base, id.is_wildcard(), now)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate naming `san` (openssl's syntax), made by openssl.
    fn cert_with(san: &str) -> Certificate {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-subj", "/CN=t", "-days", "1", "-outform", "DER"])
            .args(["-addext", &format!("subjectAltName={san}")])
            .args(["-keyout", "k.pem", "-out", "c.der"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl must be installed (it is in .ci/setup)");
        assert!(status.success());
        Certificate::from_der(&std::fs::read(dir.path().join("c.der")).unwrap()).unwrap()
    }

    #[test]
    fn a_certificates_identifiers_are_its_dns_names_and_ips_only() {
        let ids = cert_identifiers(&cert_with(
            "DNS:*.A.internal,DNS:a.internal,IP:10.0.0.1,IP:::1",
        ));
        assert_eq!(
            ids,
            Some(vec![
                Identifier::Dns("*.a.internal".into()),
                Identifier::Dns("a.internal".into()),
                Identifier::Ip("10.0.0.1".parse().unwrap()),
                Identifier::Ip("::1".parse().unwrap()),
            ])
        );
        assert_eq!(
            cert_identifiers(&cert_with("DNS:a.internal,email:x@a.internal")),
            None,
            "a name ACME cannot authorize makes the certificate unrevocable this way"
        );
    }
}
