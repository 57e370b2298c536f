//! One struct per template, holding display-ready text (never database rows).

use std::fmt;
use std::time::{Duration, SystemTime};

use askama::Template;

use super::session::SignedIn;

/// Text a page shows but `Debug` never does: anti-CSRF tokens, one-time passwords. Forms
/// read their anti-CSRF field into it too, so that a logged form shows no token.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Hidden(pub String);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the page frame shows: who is signed in, their roles, the sign-out form, the menu.
#[derive(Debug, Clone)]
pub struct Layout {
    /// User name.
    pub user: String,
    /// Roles, comma-separated.
    pub roles: String,
    /// The session's anti-CSRF token, for the sign-out form and the page's forms.
    pub csrf: Hidden,
    /// Whether the menu shows the audit log.
    pub show_audit: bool,
    /// Whether the menu shows the users and API tokens (admins).
    pub show_users: bool,
    /// The menu entry to highlight.
    pub active: &'static str,
}

impl Layout {
    /// The frame for `s`, with menu entry `active` highlighted.
    pub fn new(s: &SignedIn, active: &'static str) -> Self {
        use ca_core::users::Role;
        Layout {
            user: s.user.name.clone(),
            roles: s.user.roles_text(),
            csrf: Hidden(s.csrf()),
            show_audit: s.user.has_any(&[Role::Admin, Role::Auditor]),
            show_users: s.user.has(Role::Admin),
            active,
        }
    }
}

/// `login.html`.
#[derive(Debug, Template)]
#[template(path = "login/login.html")]
pub struct LoginPage {
    /// The sign-in form's anti-CSRF token (also in its cookie).
    pub csrf: Hidden,
    /// The name typed, shown again after a failure.
    pub name: String,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// `password.html`.
#[derive(Debug, Template)]
#[template(path = "login/password.html")]
pub struct PasswordPage {
    /// Frame.
    pub layout: Layout,
    /// The user must change a one-time password before anything else.
    pub forced: bool,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// One audit entry, as shown.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Sequence number.
    pub seq: i64,
    /// When (UTC).
    pub at: String,
    /// Who.
    pub actor: String,
    /// From where.
    pub source: String,
    /// What.
    pub action: String,
    /// On what.
    pub object: String,
    /// Details, `key=value` per line.
    pub details: String,
}

/// `dashboard.html`.
#[derive(Debug, Template)]
#[template(path = "dashboard/dashboard.html")]
pub struct DashboardPage {
    /// Frame.
    pub layout: Layout,
    /// Whether the counts cover only the user's own certificates.
    pub own_only: bool,
    /// Valid certificates.
    pub valid: String,
    /// Valid certificates expiring within 30 days.
    pub expiring: String,
    /// Revoked certificates.
    pub revoked: String,
    /// Requests waiting for approval.
    pub pending: String,
    /// Recent audit entries (empty when the user may not see the log).
    pub events: Vec<AuditRow>,
    /// Whether the user may see the log.
    pub show_events: bool,
    /// Each dependency and whether it answers.
    pub health: Vec<(&'static str, bool)>,
    /// Each issuer's CRL: (issuer, what its last CRL says of the next one).
    pub crls: Vec<(String, String)>,
    /// Scheduled backups: the last one and whether they are overdue; `None` when none are
    /// scheduled.
    pub backup: Option<(String, bool)>,
    /// Certificates issued per day, drawn as inline SVG on the server (no script).
    pub chart: IssuanceChart,
    /// ACME: (certificates issued, accounts), when ACME is enabled and the user sees all.
    pub acme: Option<(String, String)>,
}

/// One day's bar of the issuance chart, in SVG user units.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Height (0 for a day without certificates).
    pub height: u32,
    /// `2026-11-20: 42 issued`, the bar's tooltip and accessible name.
    pub label: String,
}

/// The issuance chart: one bar per day, oldest on the left, today on the right.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuanceChart {
    /// One per day.
    pub bars: Vec<Bar>,
    /// The tallest day's count.
    pub max: u64,
    /// Certificates over the whole span.
    pub total: u64,
    /// The first and last day shown, `YYYY-MM-DD`.
    pub first: String,
    /// See `first`.
    pub last: String,
}

impl IssuanceChart {
    /// Bar width plus gap, and the plot's height, in SVG user units.
    pub const STEP: u32 = 8;
    /// See [`IssuanceChart::STEP`].
    pub const HEIGHT: u32 = 100;
    /// Days shown.
    pub const DAYS: u32 = 90;

    /// The chart of `per_day` ((unix day, count), as the store gives them) for the
    /// [`IssuanceChart::DAYS`] days up to and including `now`'s.
    pub fn new(per_day: &[(i64, u64)], now: SystemTime) -> Self {
        let today = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| (d.as_secs() / 86_400) as i64);
        let first_day = today - i64::from(Self::DAYS) + 1;
        let counts: Vec<u64> = (first_day..=today)
            .map(|day| {
                per_day
                    .iter()
                    .find(|(d, _)| *d == day)
                    .map_or(0, |(_, n)| *n)
            })
            .collect();
        let max = counts.iter().copied().max().unwrap_or(0);
        let date = |day: i64| {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(day.max(0) as u64 * 86_400);
            ca_core::revocation::rfc3339(t)
                .chars()
                .take(10)
                .collect::<String>()
        };
        let bars = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let height = if max == 0 {
                    0
                } else {
                    // At least one unit for a day with any certificate, so it shows.
                    ((n * u64::from(Self::HEIGHT)).div_ceil(max)) as u32
                };
                Bar {
                    x: i as u32 * Self::STEP,
                    y: Self::HEIGHT - height,
                    height,
                    label: format!("{}: {n} issued", date(first_day + i as i64)),
                }
            })
            .collect();
        IssuanceChart {
            bars,
            max,
            total: counts.iter().sum(),
            first: date(first_day),
            last: date(today),
        }
    }

    /// The SVG's width.
    pub fn width(&self) -> u32 {
        Self::DAYS * Self::STEP
    }
}

/// One certificate in a list.
#[derive(Debug, Clone)]
pub struct CertRow {
    /// Serial (hex).
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// SANs.
    pub sans: String,
    /// Profile.
    pub profile: String,
    /// Requester.
    pub requester: String,
    /// Effective status.
    pub status: String,
    /// notAfter.
    /// When it was issued, UTC.
    pub issued: String,
    pub not_after: String,
}

/// `certs.html`.
#[derive(Debug, Template)]
#[template(path = "certs/list.html")]
pub struct CertListPage {
    /// Frame.
    pub layout: Layout,
    /// Search text as typed.
    pub q: String,
    /// Profile filter.
    pub profile: String,
    /// Status filter.
    pub status: String,
    /// Profiles to choose from.
    pub profiles: Vec<String>,
    /// Statuses to choose from.
    pub statuses: Vec<&'static str>,
    /// Requester filter as typed.
    pub requester: String,
    /// Whether the user sees only their own (no requester filter then).
    pub own_only: bool,
    /// Order as asked (empty: the default).
    pub sort: String,
    /// Orders to choose from: (value, label).
    pub sorts: Vec<(&'static str, &'static str)>,
    /// This page.
    pub rows: Vec<CertRow>,
    /// The next page's URL, if there is one.
    pub next: Option<String>,
    /// The first page's URL when this is a later page.
    pub first: Option<String>,
    /// The CSV export of the current filter.
    pub csv: String,
}

/// `cert.html`.
#[derive(Debug, Template)]
#[template(path = "certs/show.html")]
pub struct CertPage {
    /// Frame.
    pub layout: Layout,
    /// Serial (hex, no colons), for links.
    pub serial: String,
    /// Effective status.
    pub status: String,
    /// Labelled fields, in order.
    pub fields: Vec<(String, String)>,
    /// SANs.
    pub sans: Vec<String>,
    /// Extensions: name, critical, value.
    pub extensions: Vec<(String, bool, String)>,
    /// Whether the certificate exists (a reserved or failed serial has none).
    pub issued: bool,
    /// When and why it was revoked.
    pub revoked: Option<String>,
    /// Reasons this user may revoke it with; empty when they may not revoke it.
    pub revoke_reasons: Vec<&'static str>,
    /// The outcome of the last action.
    pub notice: Option<String>,
}

/// One request in the queue.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// Id.
    pub id: i64,
    /// Profile.
    pub profile: String,
    /// Who asked.
    pub requester: String,
    /// Subject.
    pub subject: String,
    /// SANs.
    pub sans: String,
    /// Effective status.
    pub status: String,
    /// `1 of 2: alice`.
    pub approvals: String,
    /// When it arrived.
    pub created_at: String,
    /// Approval deadline.
    pub expires_at: String,
    /// Whether this user may approve or reject it (an officer, not the requester, pending).
    pub decidable: bool,
    /// Why the user may not, when they are an officer.
    pub why_not: String,
}

/// `requests.html`.
#[derive(Debug, Template)]
#[template(path = "requests/list.html")]
pub struct RequestsPage {
    /// Frame.
    pub layout: Layout,
    /// The status shown (`pending` or `all`).
    pub show: String,
    /// The requests.
    pub rows: Vec<RequestView>,
    /// The outcome of the last decision.
    pub notice: Option<String>,
    /// Whether the user may submit a CSR.
    pub can_submit: bool,
    /// Sensitive operations waiting for officers (empty for requesters).
    pub operations: Vec<OperationView>,
}

/// A sensitive operation waiting for a quorum, as shown.
#[derive(Debug, Clone)]
pub struct OperationView {
    /// Its id.
    pub id: i64,
    /// `create_admin` or `destroy_key`.
    pub kind: String,
    /// The user or key.
    pub target: String,
    /// Who asked.
    pub requested_by: String,
    /// `1 of 2: alice`.
    pub approvals: String,
    /// Deadline, UTC.
    pub expires_at: String,
    /// Whether this user may approve or reject it now.
    pub decidable: bool,
}

/// `request_new.html`.
#[derive(Debug, Template)]
#[template(path = "requests/new.html")]
pub struct SubmitPage {
    /// Frame.
    pub layout: Layout,
    /// Profiles the user may request: name and description.
    pub profiles: Vec<(String, String)>,
    /// The profile chosen.
    pub profile: String,
    /// The CSR as pasted.
    pub csr: String,
    /// Why the last submission failed: one line per reason.
    pub errors: Vec<String>,
}

/// `audit.html`.
#[derive(Debug, Template)]
#[template(path = "audit/list.html")]
pub struct AuditPage {
    /// Frame.
    pub layout: Layout,
    /// Entries, newest first.
    pub rows: Vec<AuditRow>,
    /// The older page's URL.
    pub older: Option<String>,
    /// Said when a filtered search stopped before the start of the log.
    pub note: Option<String>,
    /// Actor filter.
    pub actor: String,
    /// Action filter.
    pub action: String,
    /// Object filter.
    pub object: String,
}

/// One user, as an administrator sees them.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Name.
    pub name: String,
    /// Roles, comma-separated.
    pub roles: String,
    /// `active`, `new` (one-time password not yet changed), `locked` or `disabled`.
    pub state: &'static str,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// When created (UTC).
    pub created_at: String,
    /// Who created them.
    pub created_by: String,
    /// Whether this is the signed-in administrator (who cannot disable themselves).
    pub is_self: bool,
}

/// `users.html`.
#[derive(Debug, Template)]
#[template(path = "admin/users.html")]
pub struct UsersPage {
    /// Frame.
    pub layout: Layout,
    /// Every user.
    pub rows: Vec<UserRow>,
    /// The outcome of the last change.
    pub notice: Option<String>,
    /// A one-time password to show once, with its user's name.
    pub one_time: Option<(String, Hidden)>,
    /// Why the last change failed.
    pub error: Option<String>,
}

/// One CA certificate on the CA page.
#[derive(Debug, Clone)]
pub struct CaCertView {
    /// What it is: `Root CA`, `Issuing CA`, `OCSP responder`.
    pub kind: &'static str,
    /// Labelled fields.
    pub fields: Vec<(String, String)>,
}

/// One issuer on the CA page.
#[derive(Debug, Clone)]
pub struct IssuerView {
    /// Its id (for download links).
    pub id: String,
    /// Its parent's id.
    pub parent: Option<String>,
    /// The CA certificate, then the OCSP responder's if any.
    pub certs: Vec<CaCertView>,
    /// Its CRL and OCSP status, as lines of text.
    pub revocation: Vec<(String, String)>,
}

/// `ca.html`.
#[derive(Debug, Template)]
#[template(path = "ca/show.html")]
pub struct CaPage {
    /// Frame.
    pub layout: Layout,
    /// Issuers, roots first.
    pub issuers: Vec<IssuerView>,
    /// The key store's HSM members, if it has any.
    pub members: Vec<MemberView>,
}

/// One HSM member on the CA page, display-ready.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// Its name.
    pub name: String,
    /// `in` or `out`.
    pub state: &'static str,
    /// The last error, or a dash.
    pub last_error: String,
    /// The last signature's latency, e.g. `1.2 ms`, or a dash.
    pub latency: String,
    /// `3 / 30` calls in flight.
    pub load: String,
}

/// One profile on the policies page.
#[derive(Debug, Clone)]
pub struct ProfileView {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Its issuer's id.
    pub issuer: String,
    /// Roles that may request under it, or that only the ceremony CLI may.
    pub who: String,
    /// The profile's file as it is on disk now (it was loaded at start-up).
    pub text: String,
}

/// `policies.html`.
#[derive(Debug, Template)]
#[template(path = "ca/policies.html")]
pub struct PoliciesPage {
    /// Frame.
    pub layout: Layout,
    /// Profiles by name.
    pub profiles: Vec<ProfileView>,
}

/// One API token, as an administrator sees it (never the token itself).
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Name.
    pub name: String,
    /// Role.
    pub role: &'static str,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
    /// Profiles, or `(all)`.
    pub profiles: String,
    /// When created (UTC).
    pub created_at: String,
    /// When it expires (UTC), or `never`.
    pub expires_at: String,
    /// Who created it.
    pub created_by: String,
}

/// `tokens.html`.
#[derive(Debug, Template)]
#[template(path = "tokens/list.html")]
pub struct TokensPage {
    /// Frame.
    pub layout: Layout,
    /// Every token.
    pub rows: Vec<TokenRow>,
    /// Profiles to choose from.
    pub profiles: Vec<String>,
    /// A new token to show once, with its name.
    pub created: Option<(String, Hidden)>,
    /// The outcome of the last change.
    pub notice: Option<String>,
    /// Why the last change failed.
    pub error: Option<String>,
}

/// One ACME account on `/ui/acme`.
#[derive(Debug)]
pub struct AcmeAccountRow {
    /// Its id (the last segment of its URL; `acme:<id>` in the audit log).
    pub id: String,
    /// valid, deactivated or revoked.
    pub status: &'static str,
    /// Its contact URLs.
    pub contact: String,
    /// The EAB key it was bound with, if any.
    pub eab_kid: String,
    /// When it was created.
    pub created_at: String,
}

/// One ACME order on `/ui/acme`.
#[derive(Debug)]
pub struct AcmeOrderRow {
    /// Its id.
    pub id: String,
    /// Its account.
    pub account_id: String,
    /// Its stored status.
    pub status: &'static str,
    /// What it names.
    pub identifiers: String,
    /// Its profile.
    pub profile: String,
    /// Its certificate's serial, once issued.
    pub serial: String,
    /// When it was placed.
    pub created_at: String,
}

/// One EAB key on `/ui/acme`.
#[derive(Debug)]
pub struct EabRow {
    /// Its name.
    pub name: String,
    /// Its key id.
    pub kid: String,
    /// active or revoked.
    pub state: &'static str,
    /// Its profiles.
    pub profiles: String,
    /// The names it allows.
    pub names: String,
    /// When it was made.
    pub created_at: String,
    /// Who made it.
    pub created_by: String,
}

/// `acme/list.html`.
#[derive(Debug, Template)]
#[template(path = "acme/list.html")]
pub struct AcmePage {
    /// Frame.
    pub layout: Layout,
    /// Whether `[acme] enabled = true`.
    pub enabled: bool,
    /// The newest accounts.
    pub accounts: Vec<AcmeAccountRow>,
    /// The newest orders.
    pub orders: Vec<AcmeOrderRow>,
    /// Every EAB key.
    pub keys: Vec<EabRow>,
    /// The profiles open to ACME.
    pub profiles: Vec<String>,
    /// A new EAB key to show once: name, kid, HMAC key.
    pub created: Option<(String, String, Hidden)>,
    /// The outcome of the last change.
    pub notice: Option<String>,
    /// Why the last change failed.
    pub error: Option<String>,
}

/// `error.html`.
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// HTTP status.
    pub status: u16,
    /// Its reason phrase.
    pub title: String,
    /// What went wrong, for the user.
    pub detail: String,
    /// For the logs.
    pub request_id: String,
}

/// Percent-encodes `text` for a query string value.
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod chart_tests {
    use super::*;

    #[test]
    fn the_chart_has_a_bar_per_day_scaled_to_the_busiest_day() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 3_600);
        let chart = IssuanceChart::new(&[(20_000, 40), (19_990, 1), (19_000, 999)], now);
        assert_eq!(chart.bars.len(), 90);
        // Day 19,000 is outside the 90 days and counts for nothing.
        assert_eq!((chart.max, chart.total), (40, 41));
        let today = chart.bars.last().unwrap();
        assert_eq!((today.x, today.y, today.height), (89 * 8, 0, 100));
        assert!(today.label.ends_with(": 40 issued"), "{}", today.label);
        let small = &chart.bars[79];
        assert_eq!(small.height, 3, "a day with one certificate still shows");
        assert_eq!(chart.bars[0].height, 0);
        assert_eq!(chart.last, "2024-10-04");
        assert_eq!(chart.width(), 720);
        let empty = IssuanceChart::new(&[], now);
        assert!(empty.bars.iter().all(|b| b.height == 0 && b.y == 100));
    }
}
