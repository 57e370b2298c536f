//! Rules every certificate keeps, checked on the template before it is signed.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::issuer::Issuer;
use crate::keystore::SpkiDer;
use crate::policy::Plan;
use crate::x509::CertTemplate;

/// Rules every certificate keeps, checked on the template before it is signed (a linter in
/// the spirit of zlint, for the fields Keyhold sets).
pub(super) fn lint(
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
