//! The certificate list (filters, sorting, keyset pages, CSV export), one certificate's
//! fields, and its download.
//!
//! Handlers parse, check the session's rights (and the anti-CSRF token on POST), call one
//! core service on the blocking pool, and render; the rules live in ca-core.

use std::time::SystemTime;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use ca_core::audit::{self};
use ca_core::error::ErrorKind;
use ca_core::inspect;
use ca_core::issuance::{self};
use ca_core::status;
use ca_core::store::{CertFilter, CertSort, CertStatus, Serial};
use ca_core::x509::SignedCert;
use serde::Deserialize;

use crate::http::public::{DER, PEM};
use crate::http::state::AppState;
use crate::http::ui::session::SignedIn;
use crate::http::ui::views::{CertListPage, CertPage, CertRow, Layout, query_value};
use crate::http::ui::{PREFIX, UiError, render};
use crate::text::humantime;

/// Certificates per page.
pub(super) const PAGE: u32 = 50;

/// "Expiring soon" on the dashboard and in the list.
pub(super) use ca_core::status::EXPIRING_WITHIN;

/// `GET /ui/certs` query.
#[derive(Debug, Default, Deserialize)]
pub struct CertQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    status: String,
    /// Exactly this requester's (ignored for requesters, who see only their own).
    #[serde(default)]
    requester: String,
    /// `newest` (default; `expiry` when the status is `expiring`), `oldest`, `expiry`,
    /// `expiry-desc`.
    #[serde(default)]
    sort: String,
    after: Option<String>,
}

impl CertQuery {
    /// The order asked for; an expiring filter lists the soonest first unless told.
    fn sort(&self) -> Result<CertSort, UiError> {
        match self.sort.as_str() {
            "" if self.status == "expiring" => Ok(CertSort::ExpiresFirst),
            "" => Ok(CertSort::Newest),
            other => CertSort::parse(other).ok_or_else(|| {
                UiError::Invalid(format!(
                    "unknown sort {other:?} ({})",
                    CertSort::ALL.map(CertSort::as_str).join(", ")
                ))
            }),
        }
    }
}

/// The list's orders, as offered in its form: (value, label).
pub(super) const SORTS: [(&str, &str); 4] = [
    ("newest", "Issued, newest first"),
    ("oldest", "Issued, oldest first"),
    ("expiry", "Expiry, soonest first"),
    ("expiry-desc", "Expiry, latest first"),
];

/// A search for a serial typed with colons (`4f:0a:...`) matches the stored hex.
pub(super) fn search_text(q: &str) -> Option<String> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let serial_like = q.contains(':')
        && q.chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == ' ');
    Some(if serial_like {
        q.chars()
            .filter(|c| c.is_ascii_hexdigit())
            .collect::<String>()
            .to_ascii_lowercase()
    } else {
        q.to_owned()
    })
}

pub(super) fn certs_url(q: &CertQuery, after: Option<&str>) -> String {
    let mut url = format!(
        "{PREFIX}/certs?q={}&profile={}&status={}&requester={}&sort={}",
        query_value(&q.q),
        query_value(&q.profile),
        query_value(&q.status),
        query_value(&q.requester),
        query_value(&q.sort)
    );
    if let Some(a) = after {
        url.push_str("&after=");
        url.push_str(&query_value(a));
    }
    url
}

/// The store filter for `q` as `s` may see it (requesters: their own only).
pub(super) fn cert_filter(
    q: &CertQuery,
    s: &SignedIn,
    now: SystemTime,
    limit: u32,
) -> Result<CertFilter, UiError> {
    let mut filter = CertFilter {
        profile: Some(q.profile.clone()).filter(|p| !p.is_empty()),
        search: search_text(&q.q),
        requester: if s.own_only() {
            Some(s.user.name.clone())
        } else {
            Some(q.requester.trim().to_owned()).filter(|r| !r.is_empty())
        },
        sort: q.sort()?,
        limit,
        ..CertFilter::default()
    };
    if !q.status.is_empty() {
        status::filter_by_status(&mut filter, &q.status, now).map_err(UiError::Invalid)?;
    }
    if let Some(a) = q.after.as_deref().filter(|a| !a.is_empty()) {
        filter.after =
            Some(crate::text::parse_cursor(a).map_err(|e| UiError::Invalid(e.to_string()))?);
    }
    Ok(filter)
}

/// Rows one CSV export holds at most.
pub(super) const CSV_MAX: usize = 100_000;

/// One CSV field: quoted when needed, and with a leading `'` when it would start a
/// spreadsheet formula (subjects come from CSRs, so from anyone).
pub(super) fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// `GET /ui/certs.csv`: the list's current filter as CSV (every page, up to 100,000 rows).
pub async fn certificates_csv(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<CertQuery>,
) -> Result<HttpResponse, UiError> {
    let now = SystemTime::now();
    let mut filter = cert_filter(&query, &s, now, db::MAX_PAGE)?;
    let certs = state.certs.clone();
    let csv = web::block(move || -> Result<String, ca_core::store::StoreError> {
        let mut out = String::from(
            "serial,status,subject,sans,profile,requester,not_before,not_after,issued_at\r\n",
        );
        let mut rows_out = 0;
        loop {
            let rows = certs.certificates(&filter)?;
            for r in &rows {
                let fields = [
                    r.serial.to_string(),
                    issuance::effective_status(r.status, r.not_after, now).to_owned(),
                    r.subject.clone(),
                    r.sans.clone(),
                    r.profile.clone(),
                    r.requester.clone(),
                    humantime(r.not_before),
                    humantime(r.not_after),
                    humantime(r.created_at),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                out.push_str(&line.join(","));
                out.push_str("\r\n");
            }
            rows_out += rows.len();
            match rows.last() {
                Some(last) if rows.len() == filter.limit as usize && rows_out < CSV_MAX => {
                    filter.after = Some((filter.sort.key(last), last.serial.clone()));
                }
                _ => break,
            }
        }
        Ok(out)
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"certificates.csv\"",
        ))
        .body(csv))
}

/// `GET /ui/certs`: newest first, keyset pagination; requesters see their own only.
pub async fn certificates(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<CertQuery>,
) -> Result<HttpResponse, UiError> {
    let q = query.into_inner();
    let now = SystemTime::now();
    let filter = cert_filter(&q, &s, now, PAGE)?;
    let certs = state.certs.clone();
    let f = filter.clone();
    let rows = web::block(move || certs.certificates(&f)).await??;
    let next = rows
        .last()
        .filter(|_| rows.len() == PAGE as usize)
        .map(|r| format!("{}:{}", audit::unix_micros(filter.sort.key(r)), r.serial));
    let mut profiles: Vec<String> = state.ca.profiles().iter().map(|p| p.name.clone()).collect();
    profiles.sort();
    render(&CertListPage {
        csv: certs_url(&q, None).replacen("/certs?", "/certs.csv?", 1),
        layout: Layout::new(&s, "certs"),
        profiles,
        statuses: status::CERT_STATUSES.to_vec(),
        sorts: SORTS.to_vec(),
        rows: rows
            .iter()
            .map(|r| CertRow {
                serial: r.serial.to_string(),
                subject: r.subject.clone(),
                sans: r.sans.clone(),
                profile: r.profile.clone(),
                requester: r.requester.clone(),
                status: issuance::effective_status(r.status, r.not_after, now).to_owned(),
                issued: humantime(r.created_at),
                not_after: humantime(r.not_after),
            })
            .collect(),
        next: next.as_deref().map(|n| certs_url(&q, Some(n))),
        first: q.after.is_some().then(|| certs_url(&q, None)),
        q: q.q,
        profile: q.profile,
        status: q.status,
        requester: q.requester,
        own_only: s.own_only(),
        sort: q.sort,
    })
}

pub(super) async fn load_cert(
    state: &AppState,
    s: &SignedIn,
    serial: &str,
) -> Result<(ca_core::store::CertificateRow, Option<SignedCert>), UiError> {
    let serial = Serial::parse(serial).map_err(UiError::NotFound)?;
    let certs = state.certs.clone();
    let sr = serial.clone();
    let row = web::block(move || certs.certificate(&sr))
        .await??
        .filter(|r| !s.own_only() || r.requester == s.user.name)
        .ok_or_else(|| UiError::NotFound(format!("no certificate with serial {serial}")))?;
    let cert = row
        .der
        .as_deref()
        .map(SignedCert::from_der)
        .transpose()
        .map_err(|e| UiError::server(ErrorKind::Internal, &e))?;
    Ok((row, cert))
}

/// `GET /ui/certs/{serial}` query.
#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    done: Option<String>,
}

/// `GET /ui/certs/{serial}`: every field decoded, the revocation status, and the revoke
/// form for those who may use it.
pub async fn certificate(
    state: web::Data<AppState>,
    s: SignedIn,
    serial: web::Path<String>,
    query: web::Query<DetailQuery>,
) -> Result<HttpResponse, UiError> {
    let (row, cert) = load_cert(&state, &s, &serial).await?;
    let now = SystemTime::now();
    let revoked = if row.status == CertStatus::Revoked {
        let statuses = state.statuses.clone();
        let (issuer, sr) = (row.issuer.clone(), row.serial.clone());
        web::block(move || -> Result<_, ca_core::store::StoreError> {
            let Ok(id) = ca_core::issuer::IssuerId::new(&issuer) else {
                return Ok(None);
            };
            Ok(statuses
                .revocation_status(&id, &sr)?
                .and_then(|st| st.revoked))
        })
        .await??
        .map(|(at, reason)| format!("on {} ({reason})", humantime(at)))
        .or_else(|| Some(String::new()))
    } else {
        None
    };
    let revoke_reasons = if row.status == CertStatus::Valid {
        super::revoke::reasons_for(&s, &row)
    } else {
        Vec::new()
    };
    let notice = (query.done.as_deref() == Some("revoked"))
        .then(|| "Revoked. OCSP answers say so at once; the CRL within five minutes.".to_owned());
    let mut fields = vec![
        ("Profile".to_owned(), row.profile.clone()),
        ("Requester".to_owned(), row.requester.clone()),
        ("Issuer id".to_owned(), row.issuer.clone()),
    ];
    if let Some(id) = row.request_id {
        fields.push(("Request".into(), id.to_string()));
    }
    if let Some(f) = &row.failure {
        fields.push(("Failure".into(), f.clone()));
    }
    let (mut sans, mut extensions) = (Vec::new(), Vec::new());
    match &cert {
        Some(c) => {
            let d = inspect::details(c);
            fields.splice(
                0..0,
                [
                    ("Subject".to_owned(), d.subject),
                    ("Issuer".to_owned(), d.issuer),
                    ("Serial".to_owned(), d.serial),
                    ("Not before (UTC)".to_owned(), humantime(d.not_before)),
                    (
                        "Not after (UTC)".to_owned(),
                        format!(
                            "{} ({})",
                            humantime(d.not_after),
                            status::expires_in(d.not_after, now)
                        ),
                    ),
                    ("Public key".to_owned(), d.key),
                    ("Signature algorithm".to_owned(), d.signature_algorithm),
                    ("SHA-256 fingerprint".to_owned(), d.sha256),
                    ("SHA-1 fingerprint".to_owned(), d.sha1),
                ],
            );
            sans = d.sans;
            extensions = d.extensions;
        }
        None => {
            fields.splice(
                0..0,
                [
                    ("Subject".to_owned(), row.subject.clone()),
                    ("SANs".to_owned(), row.sans.clone()),
                ],
            );
        }
    }
    render(&CertPage {
        layout: Layout::new(&s, "certs"),
        serial: row.serial.to_string(),
        status: issuance::effective_status(row.status, row.not_after, now).to_owned(),
        fields,
        sans,
        extensions,
        issued: cert.is_some(),
        revoked,
        revoke_reasons,
        notice,
    })
}

/// `GET /ui/certs/{serial}/download/{pem|der}`.
pub async fn download(
    state: web::Data<AppState>,
    s: SignedIn,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UiError> {
    let (serial, format) = path.into_inner();
    if !matches!(format.as_str(), "pem" | "der") {
        return Err(UiError::NotFound("download as pem or der".into()));
    }
    let (row, cert) = load_cert(&state, &s, &serial).await?;
    let cert = cert.ok_or_else(|| {
        UiError::NotFound(format!(
            "serial {} was never issued (status {})",
            row.serial,
            row.status.as_str()
        ))
    })?;
    let disposition = format!("attachment; filename=\"{}.{format}\"", row.serial);
    let mut res = if format == "pem" {
        let pem = cert
            .to_pem()
            .map_err(|e| UiError::server(ErrorKind::Internal, &e))?;
        HttpResponse::Ok().content_type(PEM).body(pem)
    } else {
        HttpResponse::Ok().content_type(DER).body(cert.der.clone())
    };
    if let Ok(v) = header::HeaderValue::from_str(&disposition) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_start_a_formula() {
        assert_eq!(csv_field("CN=a,O=b"), "\"CN=a,O=b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn serials_typed_with_colons_search_as_stored() {
        assert_eq!(search_text(" 0A:1b:FF ").as_deref(), Some("0a1bff"));
        assert_eq!(search_text("web.internal").as_deref(), Some("web.internal"));
        assert_eq!(search_text("  "), None);
    }
}
