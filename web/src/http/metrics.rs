//! `GET /metrics` in Prometheus' text format: issuance counts and latency by profile and
//! outcome, signing latency by key store, database latency by operation, and responses by
//! status. Labels never hold subjects, names or tokens; a profile
//! label is only ever a configured profile's name (anything else counts as `unknown`), so
//! callers cannot grow the label set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ca_core::keystore::{KeyStoreError, SigAlg, Signer, SpkiDer};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What happened to a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IssueOutcome {
    /// 201.
    Issued,
    /// 202.
    Pending,
    /// Refused by the profile.
    Rejected,
    /// Bad CSR or unknown profile.
    Invalid,
    /// The database or key store failed.
    Error,
}

impl IssueOutcome {
    fn as_str(self) -> &'static str {
        match self {
            IssueOutcome::Issued => "issued",
            IssueOutcome::Pending => "pending",
            IssueOutcome::Rejected => "rejected",
            IssueOutcome::Invalid => "invalid",
            IssueOutcome::Error => "error",
        }
    }
}

impl Histogram {
    fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// Appends the series of `name` with `labels` (`a="b",c="d"`).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (le, n) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    issuance: BTreeMap<(String, IssueOutcome), Histogram>,
    responses: BTreeMap<u16, u64>,
    /// By key store backend.
    signing: BTreeMap<&'static str, Histogram>,
    /// By operation.
    database: BTreeMap<&'static str, Histogram>,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Records one submission under `profile` (already reduced to a known name or
    /// `unknown`).
    pub fn issuance(&self, profile: &str, outcome: IssueOutcome, took: Duration) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner
            .issuance
            .entry((profile.to_owned(), outcome))
            .or_default()
            .observe(took);
    }

    /// Records one signature by a key in the `backend` key store.
    pub fn signing(&self, backend: &'static str, took: Duration) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.signing.entry(backend).or_default().observe(took);
        }
    }

    /// Records one database call `op`.
    pub fn database(&self, op: &'static str, took: Duration) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.database.entry(op).or_default().observe(took);
        }
    }

    /// Records one response's status.
    pub fn response(&self, status: u16) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner.responses.entry(status).or_default() += 1;
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let (issuance, responses, signing, database) = match self.inner.lock() {
            Ok(inner) => (
                inner.issuance.clone(),
                inner.responses.clone(),
                inner.signing.clone(),
                inner.database.clone(),
            ),
            Err(_) => Default::default(),
        };
        let mut out = String::new();
        out.push_str(
            "# HELP keyhold_issuance_duration_seconds Certificate submissions over the API, by profile and outcome.\n\
             # TYPE keyhold_issuance_duration_seconds histogram\n",
        );
        for ((profile, outcome), h) in &issuance {
            let labels = format!("profile=\"{profile}\",outcome=\"{}\"", outcome.as_str());
            h.render(&mut out, "keyhold_issuance_duration_seconds", &labels);
        }
        out.push_str(
            "# HELP keyhold_signing_duration_seconds Signatures by CA and responder keys, by key store.\n\
             # TYPE keyhold_signing_duration_seconds histogram\n",
        );
        for (backend, h) in &signing {
            let labels = format!("keystore=\"{backend}\"");
            h.render(&mut out, "keyhold_signing_duration_seconds", &labels);
        }
        out.push_str(
            "# HELP keyhold_database_duration_seconds Database calls made by the HTTP layer, by operation.\n\
             # TYPE keyhold_database_duration_seconds histogram\n",
        );
        for (op, h) in &database {
            let labels = format!("op=\"{op}\"");
            h.render(&mut out, "keyhold_database_duration_seconds", &labels);
        }
        out.push_str(
            "# HELP keyhold_http_responses_total HTTP responses, by status code.\n\
             # TYPE keyhold_http_responses_total counter\n",
        );
        for (status, n) in &responses {
            let _ = writeln!(out, "keyhold_http_responses_total{{code=\"{status}\"}} {n}");
        }
        out
    }
}

/// Per HSM member: state, calls in flight, errors and signing latency (issue 18).
pub fn render_members(out: &mut String, members: &[ca_core::keystore::MemberStatus]) {
    if members.is_empty() {
        return;
    }
    out.push_str(
        "# HELP keyhold_hsm_member_up Whether the HSM member is in service (1) or out (0).\n\
         # TYPE keyhold_hsm_member_up gauge\n",
    );
    for m in members {
        let up = u8::from(m.state == ca_core::keystore::MemberState::In);
        let _ = writeln!(out, "keyhold_hsm_member_up{{member=\"{}\"}} {up}", m.name);
    }
    out.push_str(
        "# HELP keyhold_hsm_member_in_flight Signing calls running on the member.\n\
         # TYPE keyhold_hsm_member_in_flight gauge\n",
    );
    for m in members {
        let _ = writeln!(
            out,
            "keyhold_hsm_member_in_flight{{member=\"{}\"}} {}",
            m.name, m.in_flight
        );
    }
    out.push_str(
        "# HELP keyhold_hsm_member_errors_total Signing calls that failed or missed the deadline on the member.\n\
         # TYPE keyhold_hsm_member_errors_total counter\n",
    );
    for m in members {
        let _ = writeln!(
            out,
            "keyhold_hsm_member_errors_total{{member=\"{}\"}} {}",
            m.name, m.errors
        );
    }
    out.push_str(
        "# HELP keyhold_hsm_member_signing_duration_seconds Signatures made by the member (probes included).\n\
         # TYPE keyhold_hsm_member_signing_duration_seconds histogram\n",
    );
    for m in members {
        for (le, n) in &m.latency_buckets {
            let le = if le.is_finite() {
                le.to_string()
            } else {
                "+Inf".into()
            };
            let _ = writeln!(
                out,
                "keyhold_hsm_member_signing_duration_seconds_bucket{{member=\"{}\",le=\"{le}\"}} {n}",
                m.name
            );
        }
        let _ = writeln!(
            out,
            "keyhold_hsm_member_signing_duration_seconds_sum{{member=\"{}\"}} {}\n\
             keyhold_hsm_member_signing_duration_seconds_count{{member=\"{}\"}} {}",
            m.name, m.latency_sum, m.name, m.signatures
        );
    }
}

/// A [`Signer`] that records how long each signature takes.
#[derive(Debug)]
pub struct TimedSigner {
    inner: Arc<dyn Signer>,
    backend: &'static str,
    metrics: Arc<Metrics>,
}

impl TimedSigner {
    /// Wraps `inner`, a key of the `backend` key store.
    pub fn wrap(
        inner: Arc<dyn Signer>,
        backend: &'static str,
        metrics: Arc<Metrics>,
    ) -> Arc<dyn Signer> {
        Arc::new(TimedSigner {
            inner,
            backend,
            metrics,
        })
    }
}

impl Signer for TimedSigner {
    fn algorithm(&self) -> SigAlg {
        self.inner.algorithm()
    }

    fn public_key(&self) -> &SpkiDer {
        self.inner.public_key()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let started = Instant::now();
        let signature = self.inner.sign(message);
        self.metrics.signing(self.backend, started.elapsed());
        signature
    }

    fn ready(&self) -> Result<(), KeyStoreError> {
        self.inner.ready()
    }
}
