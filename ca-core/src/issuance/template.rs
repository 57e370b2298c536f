//! The certificate template: what the plan says, as X.509 fields and extensions.

use std::net::IpAddr;

use const_oid::ObjectIdentifier;
use der::asn1::{Ia5String, OctetString};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::name::Name;

use super::display::attr_rank;
use super::{Ca, IssueError};
use crate::issuer::Issuer;
use crate::keystore::SpkiDer;
use crate::policy::{Plan, San};
use crate::x509::{self, CertTemplate, X509Error};

impl Ca {
    /// The template of the certificate `plan` describes, for `public_key` under `issuer`.
    pub(super) fn template(
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
}

/// The subject in DER order (country first, common name last), built from the attributes
/// themselves: a value holding `,` `+` `\\` or `=` stays one value.
fn subject_name(attrs: &[(String, String)]) -> Result<Name, IssueError> {
    if attrs.is_empty() {
        return Ok(Name::default());
    }
    let mut attrs = attrs.to_vec();
    attrs.sort_by_key(|(k, _)| attr_rank(k));
    Ok(x509::name_from_attributes(&attrs)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_values_are_escaped() {
        assert_eq!(
            super::super::display::escape_rdn_value("a,b+c"),
            "a\\,b\\+c"
        );
        assert_eq!(super::super::display::escape_rdn_value(" #x "), "\\ #x\\ ");
        let name = subject_name(&[
            ("CN".into(), "web, \"prod\"".into()),
            ("O".into(), "Keyhold".into()),
        ])
        .unwrap();
        assert_eq!(name.to_string(), "CN=web\\, \\\"prod\\\",O=Keyhold");
    }
}
