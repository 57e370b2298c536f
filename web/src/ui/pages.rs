//! The UI's handlers: parse, check the session's rights (and CSRF token on POST), call one
//! core service on the blocking pool, render. The rules (who may approve what, lockout)
//! live in ca-core.

use std::time::{Duration, Instant, SystemTime};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::audit::{self, Action, AuditEvent, AuditRecord};
use ca_core::error::ErrorKind;
use ca_core::inspect;
use ca_core::issuance::{self, Outcome};
use ca_core::store::{
    CertCounts, CertFilter, CertSort, CertStatus, RequestFilter, RequestRow, RequestStatus, Serial,
};
use ca_core::users::{self, Login, Refusal, Role, SessionId};
use ca_core::x509::SignedCert;
use serde::Deserialize;

use super::session::{
    AnySession, LOGIN_COOKIE, SESSION_COOKIE, SignedIn, cookie, same_token, set_cookie, source,
};
use super::views::{
    AuditPage, AuditRow, CertListPage, CertPage, CertRow, DashboardPage, Hidden, IssuanceChart,
    Layout, LoginPage, OperationView, PasswordPage, RequestView, RequestsPage, query_value,
};
use super::{PREFIX, UiError, render, render_status, see_other};
use crate::cli::humantime;
use crate::public::{DER, PEM};
use crate::state::AppState;

/// Certificates per page.
const PAGE: u32 = 50;

/// "Expiring soon" on the dashboard and in the list.
const EXPIRING_WITHIN: Duration = Duration::from_secs(30 * 86_400);
/// Audit entries per page.
const AUDIT_PAGE: i64 = 50;

/// The sign-in form and its anti-CSRF token. Its `Debug` shows the name only.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `GET /ui/login`.
pub async fn login_form(req: HttpRequest) -> Result<HttpResponse, UiError> {
    login_page(&req, String::new(), None, StatusCode::OK)
}

fn login_page(
    req: &HttpRequest,
    name: String,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, UiError> {
    let token = SessionId::generate()?;
    let csrf = token.csrf_token();
    let mut res = render_status(
        status,
        &LoginPage {
            csrf: Hidden(csrf.clone()),
            name,
            error,
        },
    )?;
    set_cookie(&mut res, req, LOGIN_COOKIE, &csrf, Some(3600));
    Ok(res)
}

/// `POST /ui/login`.
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, UiError> {
    let form = form.into_inner();
    let expected = cookie(&req, LOGIN_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || expected.is_empty() || !same_token(&form.csrf, &expected) {
        return Err(UiError::Forbidden(
            "the sign-in form's anti-CSRF token is missing or stale: reload the sign-in page \
             (your browser must accept cookies from this site)"
                .into(),
        ));
    }
    // Each check costs an Argon2id hash (19 MiB, tens of ms) even for unknown names: a few
    // at a time, so a flood of sign-ins cannot exhaust memory or the blocking pool that
    // signing and the database share.
    let Some(slot) = state.sign_ins.try_acquire() else {
        return Err(UiError::Busy(
            "too many sign-ins at once: try again in a moment".into(),
        ));
    };
    let id = SessionId::generate()?;
    let hash = id.hash();
    let store = super::users(&state);
    let src = source(&req);
    let name = form.name.clone();
    let outcome = web::block(move || {
        let _slot = slot;
        users::login(
            store.as_ref(),
            &form.name,
            &form.password,
            &hash,
            &src,
            SystemTime::now(),
        )
    })
    .await??;
    match outcome {
        Login::Succeeded(user) => {
            let to = if user.must_change_password {
                format!("{PREFIX}/password")
            } else {
                format!("{PREFIX}/")
            };
            let mut res = see_other(&to);
            set_cookie(&mut res, &req, SESSION_COOKIE, id.expose(), None);
            set_cookie(&mut res, &req, LOGIN_COOKIE, "", Some(0));
            Ok(res)
        }
        Login::Refused(Refusal::AwaitingApproval(id)) => login_page(
            &req,
            name.chars().take(64).collect(),
            Some(format!(
                "This administrator account waits for officers to approve it (operation \
                 {id}: keyhold ops approve {id}); it cannot sign in before."
            )),
            StatusCode::FORBIDDEN,
        ),
        Login::Refused(_) => login_page(
            &req,
            name.chars().take(64).collect(),
            Some(
                "Sign-in failed: wrong user name or password, or the account is disabled or \
                 locked (for 15 minutes after 5 failures)."
                    .into(),
            ),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

/// A form that only carries the anti-CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Hidden,
}

/// `POST /ui/logout`.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: AnySession,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    let s = session.0;
    s.check_csrf(&form.csrf.0)?;
    let store = super::users(&state);
    let event = AuditEvent::new(
        Action::Logout,
        &s.user.name,
        &s.source,
        format!("user:{}", s.user.name),
    );
    let hash = s.id.hash();
    web::block(move || store.end_session(&hash, Some(&event))).await??;
    let mut res = see_other(&format!("{PREFIX}/login"));
    set_cookie(&mut res, &req, SESSION_COOKIE, "", Some(0));
    Ok(res)
}

/// `GET /ui/password`.
pub async fn password_form(session: AnySession) -> Result<HttpResponse, UiError> {
    let s = session.0;
    render(&PasswordPage {
        forced: s.user.must_change_password,
        layout: Layout::new(&s, "password"),
        error: None,
    })
}

/// The password change form. Its `Debug` shows nothing of it.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

impl std::fmt::Debug for PasswordForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordForm").finish_non_exhaustive()
    }
}

/// `POST /ui/password`.
pub async fn change_password(
    state: web::Data<AppState>,
    session: AnySession,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, UiError> {
    let s = session.0;
    s.check_csrf(&form.csrf.0)?;
    let form = form.into_inner();
    let again = |error: String| {
        render_status(
            StatusCode::BAD_REQUEST,
            &PasswordPage {
                forced: s.user.must_change_password,
                layout: Layout::new(&s, "password"),
                error: Some(error),
            },
        )
    };
    if form.new != form.confirm {
        return again("The two new passwords differ.".into());
    }
    let store = super::users(&state);
    let (user, keep, src) = (s.user.clone(), s.id.hash(), s.source.clone());
    let done = web::block(move || {
        users::change_password(store.as_ref(), &user, &form.current, &form.new, &keep, &src)
    })
    .await?;
    match done {
        Ok(()) => Ok(see_other(&format!("{PREFIX}/"))),
        Err(users::UserError::Invalid(why)) => again(why),
        Err(e) => Err(e.into()),
    }
}

fn audit_row(r: &AuditRecord) -> AuditRow {
    AuditRow {
        seq: r.seq,
        at: humantime(r.at()),
        actor: r.actor.clone(),
        source: r.source.clone(),
        action: r.action.clone(),
        object: r.object.clone(),
        details: r.details.clone(),
    }
}

/// How long the dashboard's counts are reused. Counting a million certificates takes tens of
/// milliseconds per count: a dashboard left open by many operators should not do it on
/// every load.
const COUNTS_FOR: Duration = Duration::from_secs(10);
/// The most requesters whose own counts are kept.
const COUNTS_KEPT: usize = 1_000;

/// The dashboard's counts, by requester (`None`: everyone's), each reused for
/// [`COUNTS_FOR`].
#[derive(Debug, Default)]
pub struct CountsCache {
    counts: std::sync::Mutex<std::collections::HashMap<Option<String>, (Instant, CertCounts)>>,
}

impl CountsCache {
    /// `requester`'s counts, from `count` if those kept are older than [`COUNTS_FOR`].
    ///
    /// Fails if `count` does.
    fn get<E>(
        &self,
        requester: Option<&str>,
        count: impl FnOnce() -> Result<CertCounts, E>,
    ) -> Result<CertCounts, E> {
        let key = requester.map(str::to_owned);
        if let Ok(counts) = self.counts.lock()
            && let Some((at, c)) = counts.get(&key)
            && at.elapsed() < COUNTS_FOR
        {
            return Ok(*c);
        }
        let fresh = count()?;
        if let Ok(mut counts) = self.counts.lock() {
            if counts.len() >= COUNTS_KEPT {
                counts.retain(|_, (at, _)| at.elapsed() < COUNTS_FOR);
            }
            if counts.len() < COUNTS_KEPT {
                counts.insert(key, (Instant::now(), fresh));
            }
        }
        Ok(fresh)
    }
}

/// For each issuer, when its CRL is next due, from the last CRL this server made.
pub(crate) fn crl_lines(state: &AppState) -> Vec<(String, String)> {
    state
        .ca
        .issuers()
        .iter()
        .map(|i| {
            let id = i.id.as_str();
            let line = match state.crls.status(id) {
                Some((number, this_update, next_update)) => format!(
                    "CRL number {number}, this update {}, next update {} at the latest",
                    humantime(this_update),
                    humantime(next_update)
                ),
                None => "no CRL made by this server yet: the first fetch makes one".to_owned(),
            };
            (id.to_owned(), line)
        })
        .collect()
}

/// `n` with thousands separators: `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// `GET /ui/`: counts and, for auditors and admins, recent audit events.
pub async fn dashboard(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, UiError> {
    let own = s.own_only().then(|| s.user.name.clone());
    let show_events = s.user.has_any(&[Role::Admin, Role::Auditor]);
    let ca = state.ca.clone();
    let now = SystemTime::now();
    let probes = state.probes.clone();
    let counts_cache = state.dashboard_counts.clone();
    let (counts, events, health, per_day) = web::block(move || {
        let store = ca.store();
        let health = vec![
            ("Database", probes.database().is_ok()),
            ("Key store", probes.key_store().is_ok()),
        ];
        let per_day = store.issued_per_day(now - CHART_DAYS_SPAN, own.as_deref())?;
        let counts = counts_cache.get(own.as_deref(), || {
            store.counts(own.as_deref(), now + EXPIRING_WITHIN)
        })?;
        let events = if show_events {
            match store.audit_head()? {
                Some((head, _)) => store.audit_entries((head - 9).max(1), head)?,
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        Ok::<_, ca_core::store::StoreError>((counts, events, health, per_day))
    })
    .await??;
    render(&DashboardPage {
        own_only: s.own_only(),
        layout: Layout::new(&s, "dashboard"),
        valid: grouped(counts.valid),
        expiring: grouped(counts.expiring),
        revoked: grouped(counts.revoked),
        pending: grouped(counts.pending),
        events: events.iter().rev().map(audit_row).collect(),
        show_events,
        health,
        crls: crl_lines(&state),
        chart: IssuanceChart::new(&per_day, now),
    })
}

/// How far back the dashboard's issuance chart reaches.
const CHART_DAYS: u64 = 90;
const CHART_DAYS_SPAN: Duration = Duration::from_secs(CHART_DAYS * 86_400);

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

const STATUSES: [&str; 6] = [
    "valid", "expiring", "expired", "revoked", "failed", "reserved",
];

/// The list's orders, as offered in its form: (value, label).
const SORTS: [(&str, &str); 4] = [
    ("newest", "Issued, newest first"),
    ("oldest", "Issued, oldest first"),
    ("expiry", "Expiry, soonest first"),
    ("expiry-desc", "Expiry, latest first"),
];

/// A search for a serial typed with colons (`4f:0a:...`) matches the stored hex.
fn search_text(q: &str) -> Option<String> {
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

fn certs_url(q: &CertQuery, after: Option<&str>) -> String {
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
fn cert_filter(
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
    match q.status.as_str() {
        "" => {}
        "valid" => {
            filter.status = Some(CertStatus::Valid);
            filter.expired = Some(false);
        }
        "expiring" => {
            filter.status = Some(CertStatus::Valid);
            filter.expiring_before = Some(now + EXPIRING_WITHIN);
        }
        "expired" => filter.expired = Some(true),
        other => {
            filter.status = Some(CertStatus::parse(other).ok_or_else(|| {
                UiError::Invalid(format!(
                    "unknown status {other:?} ({})",
                    STATUSES.join(", ")
                ))
            })?);
        }
    }
    if let Some(a) = q.after.as_deref().filter(|a| !a.is_empty()) {
        filter.after =
            Some(crate::ops::parse_cursor(a).map_err(|e| UiError::Invalid(e.to_string()))?);
    }
    Ok(filter)
}

/// Rows one CSV export holds at most.
const CSV_MAX: usize = 100_000;

/// One CSV field: quoted when needed, and with a leading `'` when it would start a
/// spreadsheet formula (subjects come from CSRs, so from anyone).
fn csv_field(text: &str) -> String {
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
    let ca = state.ca.clone();
    let csv = web::block(move || -> Result<String, ca_core::store::StoreError> {
        let mut out = String::from(
            "serial,status,subject,sans,profile,requester,not_before,not_after,issued_at\r\n",
        );
        let mut rows_out = 0;
        loop {
            let rows = ca.store().certificates(&filter)?;
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
    let ca = state.ca.clone();
    let f = filter.clone();
    let rows = web::block(move || ca.store().certificates(&f)).await??;
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
        statuses: STATUSES.to_vec(),
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

async fn load_cert(
    state: &AppState,
    s: &SignedIn,
    serial: &str,
) -> Result<(ca_core::store::CertificateRow, Option<SignedCert>), UiError> {
    let serial = Serial::parse(serial).map_err(UiError::NotFound)?;
    let ca = state.ca.clone();
    let sr = serial.clone();
    let row = web::block(move || ca.store().certificate(&sr))
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

fn countdown(not_after: SystemTime, now: SystemTime) -> String {
    match not_after.duration_since(now) {
        Ok(left) => {
            let days = left.as_secs() / 86_400;
            if days >= 1 {
                format!("expires in {days} days")
            } else {
                format!("expires in {} hours", left.as_secs() / 3600)
            }
        }
        Err(_) => "expired".into(),
    }
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
        let ca = state.ca.clone();
        let (issuer, sr) = (row.issuer.clone(), row.serial.clone());
        web::block(move || -> Result<_, ca_core::store::StoreError> {
            let Ok(id) = ca_core::issuer::IssuerId::new(&issuer) else {
                return Ok(None);
            };
            Ok(ca
                .store()
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
                            countdown(d.not_after, now)
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

/// `GET /ui/requests` query.
#[derive(Debug, Deserialize)]
pub struct RequestsQuery {
    show: Option<String>,
    done: Option<String>,
    id: Option<i64>,
}

fn request_view(
    r: &RequestRow,
    void: &[(String, String)],
    s: &SignedIn,
    now: SystemTime,
) -> RequestView {
    let status = issuance::effective_request_status(r, now);
    let officer = s.user.has(Role::Officer);
    let mine = r.requester == s.user.name;
    let approved = r.approvals.iter().any(|a| a.officer == s.user.name);
    let why_not = if !officer || status != "pending" {
        String::new()
    } else if mine {
        "You requested this: another officer decides.".into()
    } else if approved {
        "You approved this already.".into()
    } else {
        String::new()
    };
    let counted = |o: &str| !void.iter().any(|(v, _)| v == o);
    let who: Vec<&str> = r
        .approvals
        .iter()
        .map(|a| a.officer.as_str())
        .filter(|o| counted(o))
        .collect();
    let void_text: String = void
        .iter()
        .map(|(_, why)| format!("; no longer counts: {why}"))
        .collect();
    RequestView {
        id: r.id,
        profile: r.profile.clone(),
        requester: r.requester.clone(),
        subject: r.subject.clone(),
        sans: r.sans.clone(),
        status: status.to_owned(),
        approvals: if who.is_empty() {
            format!("0 of {}{void_text}", r.approvals_needed)
        } else {
            format!(
                "{} of {}: {}{void_text}",
                who.len(),
                r.approvals_needed,
                who.join(", ")
            )
        },
        created_at: humantime(r.created_at),
        expires_at: humantime(r.expires_at),
        decidable: officer && status == "pending" && !mine && !approved,
        why_not,
    }
}

/// `GET /ui/requests`: the approval queue (or every request); requesters see their own.
pub async fn requests(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<RequestsQuery>,
) -> Result<HttpResponse, UiError> {
    let q = query.into_inner();
    let all = q.show.as_deref() == Some("all");
    let filter = RequestFilter {
        status: (!all).then_some(RequestStatus::Pending),
        requester: s.own_only().then(|| s.user.name.clone()),
        limit: 200,
        ..RequestFilter::default()
    };
    let ca = state.ca.clone();
    let rows = web::block(move || -> Result<_, ca_core::store::StoreError> {
        let rows = ca.store().requests(&filter)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let void = ca.void_approvals(&r)?;
            out.push((r, void));
        }
        Ok(out)
    })
    .await??;
    let now = SystemTime::now();
    let notice = match (q.done.as_deref(), q.id) {
        (Some("approved"), Some(id)) => Some(format!(
            "Request {id} approved; it waits for further approvals."
        )),
        (Some("issued"), Some(id)) => {
            Some(format!("Request {id} approved and its certificate issued."))
        }
        (Some("refused"), Some(id)) => Some(format!(
            "Request {id} approved, but the profile no longer allows it: nothing was issued."
        )),
        (Some("rejected"), Some(id)) => Some(format!("Request {id} rejected.")),
        (Some("op-approved"), Some(id)) => Some(format!(
            "Operation {id} approved; it waits for further approvals."
        )),
        (Some("op-done"), Some(id)) => Some(format!(
            "Operation {id} approved by its quorum and carried out."
        )),
        (Some("op-rejected"), Some(id)) => Some(format!("Operation {id} rejected.")),
        (Some("submitted"), Some(id)) => Some(format!(
            "Request {id} recorded: it waits for an officer's approval."
        )),
        _ => None,
    };
    let operations = if s.own_only() {
        Vec::new()
    } else {
        let db = state.db.clone();
        let ops =
            web::block(move || ca_core::quorum::OperationStore::operations(db.as_ref(), true))
                .await??;
        ops.iter()
            .filter(|o| o.effective_status(now) == "pending")
            .map(|o| {
                let who: Vec<&str> = o.approvals.iter().map(|a| a.officer.as_str()).collect();
                let mine = o.op.requested_by == s.user.name || o.op.target == s.user.name;
                let approved = who.contains(&s.user.name.as_str());
                OperationView {
                    id: o.id,
                    kind: o.op.kind.as_str().to_owned(),
                    target: o.op.target.clone(),
                    requested_by: o.op.requested_by.clone(),
                    approvals: format!(
                        "{} of {}{}{}",
                        who.len(),
                        o.op.approvals_needed,
                        if who.is_empty() { "" } else { ": " },
                        who.join(", ")
                    ),
                    expires_at: humantime(o.op.expires_at),
                    decidable: s.user.has(Role::Officer)
                        && !s.user.has(Role::Admin)
                        && !mine
                        && !approved,
                }
            })
            .collect()
    };
    render(&RequestsPage {
        operations,
        layout: Layout::new(&s, "requests"),
        show: if all { "all" } else { "pending" }.into(),
        rows: rows
            .iter()
            .filter(|(r, _)| all || issuance::effective_request_status(r, now) == "pending")
            .map(|(r, void)| request_view(r, void, &s, now))
            .collect(),
        notice,
        can_submit: s.user.has(Role::Requester),
    })
}

/// The approve form.
#[derive(Debug, Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    comment: String,
}

/// `POST /ui/requests/{id}/approve` (officers; never one's own request: ca-core refuses).
pub async fn approve(
    state: web::Data<AppState>,
    s: SignedIn,
    id: web::Path<i64>,
    form: web::Form<ApproveForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer])?;
    let id = id.into_inner();
    let ca = state.ca.clone();
    let (officer, src, comment) = (
        s.user.requester(),
        s.source.clone(),
        form.into_inner().comment,
    );
    let outcome =
        web::block(move || ca.approve(id, &officer, comment.trim(), &src, SystemTime::now()))
            .await??;
    let done = match outcome {
        Outcome::Issued(_) => "issued",
        Outcome::Pending { .. } => "approved",
        Outcome::Rejected(_) => "refused",
    };
    Ok(see_other(&format!("{PREFIX}/requests?done={done}&id={id}")))
}

/// `POST /ui/operations/{id}/approve` (officers; never the one who asked): at the quorum
/// the operation is carried out here.
pub async fn approve_operation(
    state: web::Data<AppState>,
    s: SignedIn,
    id: web::Path<i64>,
    form: web::Form<ApproveForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer])?;
    let id = id.into_inner();
    let (db, codesign) = (state.db.clone(), state.codesign.clone());
    let (officer, src, comment) = (
        s.user.requester(),
        s.source.clone(),
        form.into_inner().comment,
    );
    let done = web::block(move || -> Result<String, UiError> {
        let now = SystemTime::now();
        let quorum = ca_core::quorum::Quorum {
            ops: db.as_ref(),
            accounts: db.as_ref(),
        };
        match quorum.approve(id, &officer, comment.trim(), &src, now)? {
            ca_core::quorum::Approved::Pending { .. } => Ok("op-approved".into()),
            ca_core::quorum::Approved::Ready(row) => {
                let destroy = |label: &str, why: &str| {
                    codesign
                        .destroy_key(db.as_ref(), label, why, &officer.name, &src, now)
                        .map_err(anyhow::Error::from)
                };
                crate::ops::operations::carry_out(&db, destroy, &row, &officer.name, &src)
                    .map_err(|e| UiError::server(ErrorKind::Unavailable, &format!("{e:#}")))?;
                Ok("op-done".into())
            }
        }
    })
    .await??;
    Ok(see_other(&format!("{PREFIX}/requests?done={done}&id={id}")))
}

/// `POST /ui/operations/{id}/reject` (officers; a reason is required).
pub async fn reject_operation(
    state: web::Data<AppState>,
    s: SignedIn,
    id: web::Path<i64>,
    form: web::Form<RejectForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer])?;
    let id = id.into_inner();
    let db = state.db.clone();
    let (officer, src, reason) = (
        s.user.requester(),
        s.source.clone(),
        form.into_inner().reason,
    );
    web::block(move || {
        ca_core::quorum::Quorum {
            ops: db.as_ref(),
            accounts: db.as_ref(),
        }
        .reject(id, &officer, reason.trim(), &src)
    })
    .await??;
    Ok(see_other(&format!(
        "{PREFIX}/requests?done=op-rejected&id={id}"
    )))
}

/// The reject form.
#[derive(Debug, Deserialize)]
pub struct RejectForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    reason: String,
}

/// `POST /ui/requests/{id}/reject` (officers; a reason is required).
pub async fn reject(
    state: web::Data<AppState>,
    s: SignedIn,
    id: web::Path<i64>,
    form: web::Form<RejectForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer])?;
    let id = id.into_inner();
    let reason = form.into_inner().reason.trim().to_owned();
    if reason.is_empty() {
        return Err(UiError::Invalid("a rejection needs a reason".into()));
    }
    let ca = state.ca.clone();
    let (officer, src) = (s.user.requester(), s.source.clone());
    web::block(move || ca.reject(id, &officer, &reason, &src)).await??;
    Ok(see_other(&format!(
        "{PREFIX}/requests?done=rejected&id={id}"
    )))
}

/// `GET /ui/audit` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    object: String,
}

/// Entries read per round trip while filtering.
const AUDIT_CHUNK: i64 = 500;
/// Entries one filtered page looks through at most, so a rare match cannot make one
/// request read the whole log; the "older" link goes on from where it stopped.
const AUDIT_SCAN: i64 = 20_000;

impl AuditQuery {
    fn filtered(&self) -> bool {
        !(self.actor.is_empty() && self.action.is_empty() && self.object.is_empty())
    }

    /// Actor exactly, action exactly or by prefix (`login.`), object by substring.
    fn matches(&self, r: &AuditRecord) -> bool {
        (self.actor.is_empty() || r.actor == self.actor)
            && (self.action.is_empty()
                || r.action == self.action
                || (self.action.ends_with('.') && r.action.starts_with(&self.action)))
            && (self.object.is_empty() || r.object.contains(&self.object))
    }

    fn url(&self, before: i64) -> String {
        format!(
            "{PREFIX}/audit?actor={}&action={}&object={}&before={before}",
            query_value(&self.actor),
            query_value(&self.action),
            query_value(&self.object)
        )
    }
}

/// `GET /ui/audit`: newest first, filtered by actor, action and object (auditors and
/// admins).
pub async fn audit_log(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, UiError> {
    s.require(&[Role::Auditor, Role::Admin])?;
    let q = query.into_inner();
    let ca = state.ca.clone();
    let filter = AuditQuery {
        before: q.before,
        actor: q.actor.trim().to_owned(),
        action: q.action.trim().to_owned(),
        object: q.object.trim().to_owned(),
    };
    let f = filter.clone();
    // (matching entries newest first; the next page shows entries below `lowest`; how many
    // entries were looked through)
    let (rows, lowest, scanned) = web::block(move || {
        let store = ca.store();
        let Some((head, _)) = store.audit_head()? else {
            return Ok((Vec::new(), 1, 0));
        };
        let mut to = f.before.map_or(head, |b| b.saturating_sub(1).min(head));
        let mut rows: Vec<AuditRecord> = Vec::new();
        let mut scanned = 0;
        let mut lowest = to + 1;
        while to >= 1 && rows.len() < AUDIT_PAGE as usize && scanned < AUDIT_SCAN {
            let chunk = if f.filtered() {
                AUDIT_CHUNK
            } else {
                AUDIT_PAGE
            };
            let from = (to - chunk + 1).max(1);
            let mut entries = store.audit_entries(from, to)?;
            entries.reverse();
            // Where the next page starts: after the last entry looked at.
            lowest = from;
            for e in entries {
                if rows.len() == AUDIT_PAGE as usize {
                    lowest = e.seq + 1;
                    break;
                }
                if f.matches(&e) {
                    rows.push(e);
                }
            }
            scanned += to - from + 1;
            to = from - 1;
        }
        Ok::<_, ca_core::store::StoreError>((rows, lowest, scanned))
    })
    .await??;
    let older = (lowest > 1).then(|| filter.url(lowest));
    let note = (filter.filtered() && scanned >= AUDIT_SCAN && rows.len() < AUDIT_PAGE as usize)
        .then(|| format!("Looked through {scanned} entries; older ones may match too."));
    render(&AuditPage {
        layout: Layout::new(&s, "audit"),
        rows: rows.iter().map(audit_row).collect(),
        older,
        note,
        actor: filter.actor,
        action: filter.action,
        object: filter.object,
    })
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
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn serials_typed_with_colons_search_as_stored() {
        assert_eq!(search_text(" 0A:1b:FF ").as_deref(), Some("0a1bff"));
        assert_eq!(search_text("web.internal").as_deref(), Some("web.internal"));
        assert_eq!(search_text("  "), None);
    }
}
