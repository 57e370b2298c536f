//! OCSP answers about CA certificates: a configured CA's certificate is not in the
//! `certificates` table (the ceremony made it), so its status comes from the configuration
//! (it exists, with this serial and notAfter) and from `ca_revocations` (whether its parent
//! revoked it). This is what lets a relying party check a whole chain by OCSP.

use crate::issuer::{Issuer, IssuerId};
use crate::store::{CertStatus, Serial, SerialStatus, StoreError};

use super::OcspResponder;

/// A configured CA certificate and the configured CA that signed it.
#[derive(Debug, Clone)]
pub(super) struct ChildCa {
    parent: IssuerId,
    serial: Serial,
    not_after: std::time::SystemTime,
}

/// Every issuer in `issuers` whose parent is among them, as a [`ChildCa`].
pub(super) fn children(issuers: &[Issuer]) -> Vec<ChildCa> {
    issuers
        .iter()
        .filter_map(|i| {
            let parent = i.parent.as_ref()?;
            if !issuers.iter().any(|p| &p.id == parent) {
                return None;
            }
            Some(ChildCa {
                parent: parent.clone(),
                serial: Serial::from_bytes(
                    i.ca.cert.cert.tbs_certificate().serial_number().as_bytes(),
                ),
                not_after: i.ca.cert.not_after(),
            })
        })
        .collect()
}

impl OcspResponder {
    /// The status of `serial` of `issuer` if it is a configured CA certificate `issuer`
    /// signed: good, or revoked as `ca_revocations` records; `None` otherwise.
    pub(super) fn ca_status(
        &self,
        issuer: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<SerialStatus>, StoreError> {
        let Some(ca) = self
            .cas
            .iter()
            .find(|c| &c.parent == issuer && &c.serial == serial)
        else {
            return Ok(None);
        };
        let revoked = self.status.ca_revocation(issuer, serial)?;
        Ok(Some(SerialStatus {
            status: if revoked.is_some() {
                CertStatus::Revoked
            } else {
                CertStatus::Valid
            },
            not_after: ca.not_after,
            revoked: revoked.map(|r| (r.revoked_at, r.reason)),
        }))
    }

    /// The CA certificates this responder answers for, as (parent, serial): what the
    /// pre-signer signs ahead of time besides issued certificates.
    pub fn ca_serials(&self) -> Vec<(IssuerId, Serial)> {
        self.cas
            .iter()
            .filter(|c| self.served.iter().any(|s| s.id == c.parent))
            .map(|c| (c.parent.clone(), c.serial.clone()))
            .collect()
    }

    /// Whether `serial` of `issuer` is a configured CA certificate `issuer` signed.
    pub fn is_ca(&self, issuer: &IssuerId, serial: &Serial) -> bool {
        self.cas
            .iter()
            .any(|c| &c.parent == issuer && &c.serial == serial)
    }
}
