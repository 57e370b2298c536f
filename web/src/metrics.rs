//! `GET /metrics` in Prometheus' text format: issuance counts and latency by profile and
//! outcome, and responses by status. Labels never hold subjects, names or tokens; a profile
//! label is only ever a configured profile's name (anything else counts as `unknown`), so
//! callers cannot grow the label set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{HttpResponse, web};

use crate::state::AppState;

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

#[derive(Debug, Default)]
struct Inner {
    issuance: BTreeMap<(String, IssueOutcome), Histogram>,
    responses: BTreeMap<u16, u64>,
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
        let h = inner
            .issuance
            .entry((profile.to_owned(), outcome))
            .or_default();
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Records one response's status.
    pub fn response(&self, status: u16) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner.responses.entry(status).or_default() += 1;
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let (issuance, responses) = match self.inner.lock() {
            Ok(inner) => (inner.issuance.clone(), inner.responses.clone()),
            Err(_) => Default::default(),
        };
        let mut out = String::new();
        out.push_str(
            "# HELP keyhold_issuance_duration_seconds Certificate submissions over the API, by profile and outcome.\n\
             # TYPE keyhold_issuance_duration_seconds histogram\n",
        );
        for ((profile, outcome), h) in &issuance {
            let labels = format!("profile=\"{profile}\",outcome=\"{}\"", outcome.as_str());
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "keyhold_issuance_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "keyhold_issuance_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "keyhold_issuance_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "keyhold_issuance_duration_seconds_count{{{labels}}} {}",
                h.count
            );
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

/// `GET /metrics`.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
