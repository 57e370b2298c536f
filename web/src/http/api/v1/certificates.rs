//! `/api/v1/certificates`: submit a CSR, list, show and revoke certificates.

use std::time::SystemTime;

use actix_web::{HttpResponse, web};
use ca_core::apitoken::Role;
use ca_core::audit;
use ca_core::error::ErrorKind;
use ca_core::issuance::{self, Channel, Outcome, Submission};
use ca_core::policy::Requester;
use ca_core::revocation::{self, Reason, RevokeRequest, Revoker};
use ca_core::store::{CertFilter, CertSort, CertificateRow, Serial};
use ca_core::x509::SignedCert;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::auth::{Auth, Presented};
use crate::http::error::ApiError;
use crate::http::metrics::IssueOutcome;
use crate::http::public::{DER, PEM};
use crate::http::state::AppState;
use crate::text::humantime;

/// Largest page of `GET /certificates`.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 50;

/// `POST /certificates` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// The profile's name.
    pub profile: String,
    /// The CSR, PEM.
    pub csr: String,
}

#[derive(Serialize)]
struct IssuedBody {
    serial: String,
    certificate: String,
    chain: String,
    not_after: String,
}

/// `POST /api/v1/certificates`: 201 issued, 202 waiting for approval, 422 refused.
///
/// The token is looked up on the blocking thread the issuance runs on, not on one of its
/// own (see [`Presented`]): one hop between threads per certificate fewer.
pub async fn submit(
    presented: Presented,
    state: web::Data<AppState>,
    body: web::Json<SubmitBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let shared = state.clone();
    let (label, started, outcome) = web::block(move || -> Result<_, ApiError> {
        let state = shared;
        let auth = presented.authenticate(&state)?;
        // Not admin: administrators make credentials, so they must not issue with them too.
        auth.require(&[Role::Requester])?;
        if !auth.token.allows_profile(&body.profile) {
            return Err(ApiError::forbidden(format!(
                "token {:?} may not request profile {:?} (allowed: {})",
                auth.token.name,
                body.profile,
                auth.token.profiles.join(", ")
            )));
        }
        // A label for /metrics: a configured profile's name, never the caller's text.
        let label = if state.ca.profiles().iter().any(|p| p.name == body.profile) {
            body.profile.clone()
        } else {
            "unknown".to_owned()
        };
        let started = std::time::Instant::now();
        let requester = Requester {
            name: auth.token.name.clone(),
            roles: vec![auth.token.role.as_str().to_owned()],
        };
        let outcome = state.ca.submit(
            &Submission {
                profile: &body.profile,
                csr: body.csr.as_bytes(),
                requester: &requester,
                source: &auth.source,
                channel: Channel::Api,
            },
            SystemTime::now(),
        );
        Ok((label, started, outcome))
    })
    .await??;
    let metric = match &outcome {
        Ok(Outcome::Issued(_)) => IssueOutcome::Issued,
        Ok(Outcome::Pending { .. }) => IssueOutcome::Pending,
        Ok(Outcome::Rejected(_)) => IssueOutcome::Rejected,
        Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Internal) => {
            IssueOutcome::Error
        }
        Err(_) => IssueOutcome::Invalid,
    };
    state.metrics.issuance(&label, metric, started.elapsed());
    match outcome? {
        Outcome::Issued(issued) => {
            let mut chain = String::new();
            for c in &issued.chain {
                chain.push_str(&pem(c)?);
            }
            Ok(HttpResponse::Created().json(IssuedBody {
                serial: issued.serial.to_string(),
                certificate: pem(&issued.cert)?,
                chain,
                not_after: humantime(issued.cert.not_after()),
            }))
        }
        Outcome::Pending {
            request_id,
            approvals_needed,
            ..
        } => Ok(HttpResponse::Accepted().json(json!({
            "request_id": request_id,
            "status": "pending_approval",
            "approvals_needed": approvals_needed,
        }))),
        Outcome::Rejected(reasons) => Err(ApiError::rejected(reasons)),
    }
}

pub(super) fn pem(cert: &SignedCert) -> Result<String, ApiError> {
    cert.to_pem()
        .map_err(|e| ApiError::server(ca_core::error::ErrorKind::Internal, &e))
}

/// `GET /certificates` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    profile: Option<String>,
    status: Option<String>,
    expiring_within: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct CertSummary {
    serial: String,
    status: &'static str,
    issuer: String,
    profile: String,
    requester: String,
    subject: String,
    sans: String,
    not_before: String,
    not_after: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<i64>,
}

fn summary(r: &CertificateRow, now: SystemTime) -> CertSummary {
    CertSummary {
        serial: r.serial.to_string(),
        status: issuance::effective_status(r.status, r.not_after, now),
        issuer: r.issuer.clone(),
        profile: r.profile.clone(),
        requester: r.requester.clone(),
        subject: r.subject.clone(),
        sans: r.sans.clone(),
        not_before: humantime(r.not_before),
        not_after: humantime(r.not_after),
        created_at: humantime(r.created_at),
        request_id: r.request_id,
    }
}

/// `GET /api/v1/certificates`: newest first unless `sort` says otherwise, keyset
/// pagination by `cursor` (whose key is the issue time or the expiry, as `sort` orders).
pub async fn list(
    auth: Auth,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let now = SystemTime::now();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let mut filter = CertFilter {
        profile: q.profile,
        search: q.q.filter(|s| !s.is_empty()),
        limit,
        requester: auth.own_only().then(|| auth.token.name.clone()),
        ..CertFilter::default()
    };
    if let Some(sort) = q.sort.as_deref() {
        filter.sort = CertSort::parse(sort).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown sort {sort:?} ({})",
                CertSort::ALL.map(CertSort::as_str).join(", ")
            ))
        })?;
    }
    if let Some(word) = q.status.as_deref() {
        ca_core::status::filter_by_status(&mut filter, word, now).map_err(ApiError::invalid)?;
    }
    if let Some(d) = q.expiring_within {
        let d = crate::text::parse_duration(&d).map_err(|e| ApiError::invalid(e.to_string()))?;
        filter.expiring_before = Some(
            now.checked_add(d)
                .ok_or_else(|| ApiError::invalid("expiring_within is too far in the future"))?,
        );
    }
    if let Some(c) = q.cursor {
        filter.after =
            Some(crate::text::parse_cursor(&c).map_err(|e| ApiError::invalid(e.to_string()))?);
    }
    let certs = state.certs.clone();
    let f = filter.clone();
    let metrics = state.metrics.clone();
    let rows = web::block(move || {
        let started = std::time::Instant::now();
        let rows = certs.certificates(&f);
        metrics.database("certificate_list", started.elapsed());
        rows
    })
    .await??;
    let next = rows
        .last()
        .filter(|_| rows.len() == filter.limit as usize)
        .map(|r| format!("{}:{}", audit::unix_micros(filter.sort.key(r)), r.serial));
    let items: Vec<CertSummary> = rows.iter().map(|r| summary(r, now)).collect();
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next})))
}

/// `GET /certificates/{serial}` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    format: Option<String>,
}

/// `GET /api/v1/certificates/{serial}`: JSON, or `?format=pem|der`.
pub async fn show(
    auth: Auth,
    state: web::Data<AppState>,
    serial: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let serial = Serial::parse(&serial).map_err(ApiError::invalid)?;
    let format = query.into_inner().format;
    if !matches!(format.as_deref(), None | Some("json" | "pem" | "der")) {
        return Err(ApiError::invalid("format must be json, pem or der"));
    }
    let certs = state.certs.clone();
    let s = serial.clone();
    let metrics = state.metrics.clone();
    let row = web::block(move || {
        let started = std::time::Instant::now();
        let row = certs.certificate(&s);
        metrics.database("certificate_get", started.elapsed());
        row
    })
    .await??
    .filter(|r| !auth.own_only() || r.requester == auth.token.name)
    .ok_or_else(|| ApiError::not_found(format!("no certificate with serial {serial}")))?;
    let cert = row
        .der
        .as_deref()
        .map(SignedCert::from_der)
        .transpose()
        .map_err(|e| ApiError::server(ca_core::error::ErrorKind::Internal, &e))?;
    match (format.as_deref(), &cert) {
        (Some("pem" | "der"), None) => Err(ApiError::not_found(format!(
            "serial {serial} was never issued (status {})",
            row.status.as_str()
        ))),
        (Some("pem"), Some(c)) => Ok(HttpResponse::Ok().content_type(PEM).body(pem(c)?)),
        (Some("der"), Some(c)) => Ok(HttpResponse::Ok().content_type(DER).body(c.der.clone())),
        _ => {
            let mut body = serde_json::to_value(summary(&row, SystemTime::now()))
                .map_err(|e| ApiError::server(ca_core::error::ErrorKind::Internal, &e))?;
            if let (Some(c), Some(obj)) = (&cert, body.as_object_mut()) {
                obj.insert("certificate".into(), pem(c)?.into());
            }
            Ok(HttpResponse::Ok().json(body))
        }
    }
}

/// `POST /certificates/{serial}/revoke` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// An RFC 5280 reason name (`keyCompromise`, `superseded`...).
    pub reason: String,
    /// When the key was known or suspected to be compromised, RFC 3339 UTC.
    #[serde(default)]
    pub invalidity_date: Option<String>,
}

/// `POST /api/v1/certificates/{serial}/revoke`: an officer revokes any certificate; a
/// requester only its own, and never for cACompromise. 200 with the revocation; 409 if it
/// is already revoked or was never issued. The issuer's served CRL is regenerated at the
/// next fetch, and OCSP answers `revoked` at once (cached answers are dropped).
pub async fn revoke(
    auth: Auth,
    state: web::Data<AppState>,
    serial: web::Path<String>,
    body: web::Json<RevokeBody>,
) -> Result<HttpResponse, ApiError> {
    auth.require(&[Role::Officer, Role::Requester])?;
    let serial = Serial::parse(&serial).map_err(ApiError::invalid)?;
    let body = body.into_inner();
    let reason = Reason::parse(&body.reason).map_err(|e| ApiError::invalid(e.to_string()))?;
    let invalidity_date = body
        .invalidity_date
        .as_deref()
        .map(revocation::parse_rfc3339)
        .transpose()
        .map_err(|e| ApiError::invalid(format!("invalidity_date: {e}")))?;
    let app = state.clone();
    let revoked = web::block(move || {
        let revoker = match auth.token.role {
            Role::Officer => Revoker::Officer,
            _ => Revoker::Requester(&auth.token.name),
        };
        app.publisher.revoke(
            &RevokeRequest {
                serial: &serial,
                reason,
                invalidity_date,
                actor: &auth.token.name,
                revoker,
                source: &auth.source,
            },
            SystemTime::now(),
        )
    })
    .await?
    .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(json!({
        "serial": revoked.serial.as_str(),
        "status": "revoked",
        "reason": revoked.reason.as_str(),
        "revoked_at": revocation::rfc3339(revoked.revoked_at),
        "invalidity_date": revoked.invalidity_date.map(revocation::rfc3339),
    })))
}
