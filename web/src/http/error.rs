//! `ApiError`: the one place that turns failures into HTTP statuses and problem JSON
//! (`{"type", "detail", "violations", "request_id"}`). 5xx bodies never carry internals:
//! the detail is logged with the request id instead.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use ca_core::codesign::CodesignError;
use ca_core::error::ErrorKind;
use ca_core::issuance::IssueError;
use ca_core::revocation::RevocationError;
use ca_core::store::StoreError;
use serde::Serialize;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

/// The current request's id, or `-` outside a request.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".into())
}

/// A failed API call.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    violations: Vec<String>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    violations: &'a [String],
    request_id: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            detail: detail.into(),
            violations: Vec::new(),
        }
    }

    /// 421: this listener does not serve that (the UI and API on plain HTTP).
    pub fn misdirected(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::MISDIRECTED_REQUEST, "misdirected", detail)
    }

    /// 400: the request is malformed.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", detail)
    }

    /// 401: no usable credential.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    /// 403: the credential does not allow this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this resource does not answer that method",
        )
    }

    /// 413.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", detail)
    }

    /// 415.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )
    }

    /// 429: a rate limit or quota; the caller may retry later.
    pub fn too_many_requests(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
    }

    /// 422: the policy refused, for every one of `violations`.
    pub fn rejected(violations: Vec<String>) -> Self {
        ApiError {
            violations,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rejected",
                "the profile refused the request",
            )
        }
    }

    /// 503 (a dependency failed) or 500 (a bug); `what` is logged, not shown.
    pub fn server(kind: ErrorKind, what: &dyn fmt::Display) -> Self {
        tracing::error!(request_id = %request_id(), error = %what, "request failed");
        if kind == ErrorKind::Unavailable {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "a dependency of the CA is unavailable; try again later",
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }

    /// By kind, for errors whose message is fit for the caller.
    fn from_kind(kind: ErrorKind, what: &dyn fmt::Display) -> Self {
        match kind {
            ErrorKind::Invalid => Self::invalid(what.to_string()),
            ErrorKind::Rejected => Self::forbidden(what.to_string()),
            ErrorKind::NotFound => Self::not_found(what.to_string()),
            ErrorKind::Conflict => Self::new(StatusCode::CONFLICT, "conflict", what.to_string()),
            ErrorKind::Unavailable | ErrorKind::Internal => Self::server(kind, what),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.kind, self.status, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status).json(Problem {
            kind: self.kind,
            detail: &self.detail,
            violations: &self.violations,
            request_id: request_id(),
        });
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // A key store or database outage: HSM members are probed back within seconds.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keyhold\""),
            );
        }
        res
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match &e {
            // A client mistake in the body, not a missing resource at this URL.
            IssueError::UnknownProfile { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_profile",
                e.to_string(),
            ),
            _ => Self::from_kind(e.kind(), &e),
        }
    }
}

impl From<CodesignError> for ApiError {
    fn from(e: CodesignError) -> Self {
        if e.is_rate_limited() {
            Self::too_many_requests(e.to_string())
        } else {
            Self::from_kind(e.kind(), &e)
        }
    }
}

impl From<RevocationError> for ApiError {
    fn from(e: RevocationError) -> Self {
        Self::from_kind(e.kind(), &e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::from_kind(e.kind(), &e)
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::server(ErrorKind::Unavailable, &e)
    }
}
