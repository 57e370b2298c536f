//! Row structs (private to this crate) and their conversions to ca-core's types.

use std::time::SystemTime;

use ca_core::audit::{AuditRecord, Checkpoint, from_unix_micros, unix_micros};
use ca_core::store::{
    Approval, CertStatus, CertificateRow, NewCertificate, NewRequest, RequestRow, RequestStatus,
    Serial, StoreError,
};
use diesel::prelude::*;

use crate::error::corrupt;
use crate::schema::{approvals, audit_checkpoints, audit_log, certificates, issuers, requests};

#[derive(Insertable)]
#[diesel(table_name = issuers)]
pub(crate) struct NewIssuerRecord<'a> {
    pub id: &'a str,
    pub certificate: &'a [u8],
    pub created_at: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = certificates)]
pub(crate) struct CertRecord {
    serial: String,
    issuer: String,
    subject: String,
    sans: String,
    not_before: i64,
    not_after: i64,
    profile: String,
    requester: String,
    status: String,
    der: Option<Vec<u8>>,
    created_at: i64,
    request_id: Option<i64>,
    failure: Option<String>,
}

impl TryFrom<CertRecord> for CertificateRow {
    type Error = StoreError;
    fn try_from(r: CertRecord) -> Result<Self, StoreError> {
        Ok(CertificateRow {
            serial: Serial::parse(&r.serial).map_err(|e| corrupt("serial", e))?,
            status: CertStatus::parse(&r.status)
                .ok_or_else(|| corrupt("certificate status", &r.status))?,
            issuer: r.issuer,
            profile: r.profile,
            requester: r.requester,
            subject: r.subject,
            sans: r.sans,
            not_before: from_unix_micros(r.not_before),
            not_after: from_unix_micros(r.not_after),
            der: r.der,
            created_at: from_unix_micros(r.created_at),
            request_id: r.request_id,
            failure: r.failure,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = certificates)]
pub(crate) struct NewCertRecord<'a> {
    serial: &'a str,
    issuer: &'a str,
    subject: &'a str,
    sans: &'a str,
    search: String,
    not_before: i64,
    not_after: i64,
    profile: &'a str,
    requester: &'a str,
    status: &'static str,
    created_at: i64,
    request_id: Option<i64>,
    reserved_by: Option<&'a str>,
}

impl<'a> NewCertRecord<'a> {
    /// `by`: the instance reserving it (see `ca_core::cluster`), if it said.
    pub(crate) fn reserved(cert: &'a NewCertificate, now: SystemTime, by: Option<&'a str>) -> Self {
        NewCertRecord {
            serial: cert.serial.as_str(),
            issuer: cert.issuer.as_str(),
            subject: &cert.subject,
            sans: &cert.sans,
            search: search_text(cert.serial.as_str(), &cert.subject, &cert.sans),
            not_before: unix_micros(cert.not_before),
            not_after: unix_micros(cert.not_after),
            profile: &cert.profile,
            requester: &cert.requester,
            status: CertStatus::Reserved.as_str(),
            created_at: unix_micros(now),
            request_id: cert.request_id,
            reserved_by: by,
        }
    }
}

/// What `CertFilter::search` is matched against: lowercase, one field per line so a match
/// cannot span two fields.
pub(crate) fn search_text(serial: &str, subject: &str, sans: &str) -> String {
    format!("{serial}\n{subject}\n{sans}").to_lowercase()
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = requests)]
pub(crate) struct RequestRecord {
    pub id: i64,
    profile: String,
    pub requester: String,
    csr_der: Vec<u8>,
    subject: String,
    sans: String,
    pub status: String,
    approvals_needed: i64,
    created_at: i64,
    pub expires_at: i64,
    decided_by: Option<String>,
    reason: Option<String>,
    serial: Option<String>,
}

impl RequestRecord {
    pub(crate) fn status(&self) -> Result<RequestStatus, StoreError> {
        RequestStatus::parse(&self.status).ok_or_else(|| corrupt("request status", &self.status))
    }

    pub(crate) fn into_row(self, approvals: Vec<Approval>) -> Result<RequestRow, StoreError> {
        Ok(RequestRow {
            status: self.status()?,
            id: self.id,
            profile: self.profile,
            requester: self.requester,
            csr_der: self.csr_der,
            subject: self.subject,
            sans: self.sans,
            approvals_needed: u32::try_from(self.approvals_needed)
                .map_err(|e| corrupt("approvals needed", e))?,
            approvals,
            created_at: from_unix_micros(self.created_at),
            expires_at: from_unix_micros(self.expires_at),
            decided_by: self.decided_by,
            reason: self.reason,
            serial: self
                .serial
                .map(|s| Serial::parse(&s).map_err(|e| corrupt("serial", e)))
                .transpose()?,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = requests)]
pub(crate) struct NewRequestRecord<'a> {
    id: i64,
    profile: &'a str,
    requester: &'a str,
    csr_der: &'a [u8],
    subject: &'a str,
    sans: &'a str,
    status: &'static str,
    approvals_needed: i64,
    created_at: i64,
    expires_at: i64,
}

impl<'a> NewRequestRecord<'a> {
    pub(crate) fn pending(id: i64, r: &'a NewRequest, now: SystemTime) -> Self {
        NewRequestRecord {
            id,
            profile: &r.profile,
            requester: &r.requester,
            csr_der: &r.csr_der,
            subject: &r.subject,
            sans: &r.sans,
            status: RequestStatus::Pending.as_str(),
            approvals_needed: i64::from(r.approvals_needed),
            created_at: unix_micros(now),
            expires_at: unix_micros(r.expires_at),
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = approvals)]
pub(crate) struct ApprovalRecord {
    pub request_id: i64,
    officer: String,
    comment: String,
    at: i64,
}

impl ApprovalRecord {
    pub(crate) fn new(request_id: i64, a: &Approval) -> Self {
        ApprovalRecord {
            request_id,
            officer: a.officer.clone(),
            comment: a.comment.clone(),
            at: unix_micros(a.at),
        }
    }
}

impl From<ApprovalRecord> for Approval {
    fn from(r: ApprovalRecord) -> Self {
        Approval {
            officer: r.officer,
            comment: r.comment,
            at: from_unix_micros(r.at),
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub(crate) struct AuditLogRecord {
    seq: i64,
    at: i64,
    actor: String,
    source: String,
    action: String,
    object: String,
    details: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl From<&AuditRecord> for AuditLogRecord {
    fn from(r: &AuditRecord) -> Self {
        AuditLogRecord {
            seq: r.seq,
            at: r.at_micros,
            actor: r.actor.clone(),
            source: r.source.clone(),
            action: r.action.clone(),
            object: r.object.clone(),
            details: r.details.clone(),
            prev_hash: r.prev_hash.to_vec(),
            hash: r.hash.to_vec(),
        }
    }
}

impl TryFrom<AuditLogRecord> for AuditRecord {
    type Error = StoreError;
    fn try_from(r: AuditLogRecord) -> Result<Self, StoreError> {
        Ok(AuditRecord {
            seq: r.seq,
            at_micros: r.at,
            actor: r.actor,
            source: r.source,
            action: r.action,
            object: r.object,
            details: r.details,
            prev_hash: hash32(&r.prev_hash)?,
            hash: hash32(&r.hash)?,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_checkpoints)]
pub(crate) struct CheckpointRecord {
    seq: i64,
    head_hash: Vec<u8>,
    at: i64,
    key_uri: String,
    signature: Vec<u8>,
}

impl From<&Checkpoint> for CheckpointRecord {
    fn from(c: &Checkpoint) -> Self {
        CheckpointRecord {
            seq: c.seq,
            head_hash: c.head_hash.to_vec(),
            at: c.at_micros,
            key_uri: c.key.clone(),
            signature: c.signature.clone(),
        }
    }
}

impl TryFrom<CheckpointRecord> for Checkpoint {
    type Error = StoreError;
    fn try_from(r: CheckpointRecord) -> Result<Self, StoreError> {
        Ok(Checkpoint {
            seq: r.seq,
            head_hash: hash32(&r.head_hash)?,
            at_micros: r.at,
            key: r.key_uri,
            signature: r.signature,
        })
    }
}

/// A stored SHA-256 hash.
pub(crate) fn hash32(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt("audit hash", format!("{} bytes, not 32", bytes.len())))
}
