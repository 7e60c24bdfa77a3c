//! RFC 9457 problem details: the only way an error leaves the API.
//!
//! [`ApiError`] is the one error type of the HTTP layer and has the only `IntoResponse`.
//! Internal causes are logged with their chain and answered with an opaque 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::error::{DomainError, ErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

/// Base of every problem `type` URI. The part after it is stable and documented.
pub const PROBLEM_BASE: &str = "https://clinic.example/problems/";

/// One invalid input field.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field in the request body, e.g. `email` or `address.city`; for a query
    /// parameter or header, its name.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An `application/problem+json` body.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; stable across releases.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Invalid fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
    /// For `slot-taken`: the time ranges the requested slot overlaps (never whose they are).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub conflicts: Option<Vec<ConflictingRange>>,
    /// For `plan-limit` and `trial-ended`: the clinic's plan.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(example = "trial")]
    pub plan: Option<String>,
    /// For `plan-limit`: the limit (`active_doctors`, `active_staff`, `patients`,
    /// `monthly_bookings`, `modules`), its number on the plan, and the use before the command.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(example = "active_doctors")]
    pub limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(example = 2)]
    pub allowed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(example = 2)]
    pub in_use: Option<u64>,
    /// For `trial-ended`: when the trial ended.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trial_ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// For `module-disabled`: the module (`appointments`, `billing`, `laboratory`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(example = "appointments")]
    pub module: Option<String>,
}

/// A time range that a requested slot overlaps.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct ConflictingRange {
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
}

/// Every error the HTTP layer can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON at all, or a header is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: no token, or a token that does not verify.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: the caller's role may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 403: the caller's clinic is suspended.
    #[error("clinic suspended")]
    ClinicSuspended,
    /// 403: the endpoint belongs to a module the caller's clinic has not enabled.
    #[error("module {0} disabled")]
    ModuleDisabled(domain::values::Module),
    /// 402: the command would take the clinic past a limit of its plan.
    #[error("plan limit: {0}")]
    PlanLimit(domain::plan::OverLimit),
    /// 402: the clinic's trial has ended; it is read-only until it is on a paid plan.
    #[error("trial ended")]
    TrialEnded {
        ended_at: chrono::DateTime<chrono::Utc>,
    },
    /// 404: missing, or another clinic's.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: a domain conflict (illegal transition, already done, taken).
    #[error("conflict: {detail}")]
    Conflict {
        slug: &'static str,
        detail: String,
        field: Option<String>,
    },
    /// 409: the doctor or the patient already has an appointment at that time.
    #[error("slot taken")]
    SlotTaken {
        detail: String,
        conflicts: Vec<ConflictingRange>,
    },
    /// 422: the slot is outside the doctor's working hours or inside their time off.
    #[error("outside working hours: {0}")]
    OutsideWorkingHours(String),
    /// 412: `If-Match` names another version.
    #[error("precondition failed: expected version {expected}, current {actual}")]
    PreconditionFailed { expected: u64, actual: u64 },
    /// 408: the request ran past the request timeout (a slow body, or slow work).
    #[error("request timeout")]
    RequestTimeout,
    /// 413.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: invalid fields.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422: a request that is well-formed but cannot be processed (other than field errors).
    #[error("unprocessable: {detail}")]
    Unprocessable { slug: &'static str, detail: String },
    /// 429.
    #[error("too many requests")]
    TooManyRequests {
        retry_after_secs: u64,
        detail: String,
    },
    /// 503.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: e.g. the read models have not caught up with `X-Min-Position`.
    #[error("service unavailable, retry in {retry_after_secs} s: {detail}")]
    RetryLater {
        retry_after_secs: u64,
        detail: String,
    },
    /// 500: logged with its cause chain, never described to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// The `Retry-After` of a 503 while the database cannot be reached, in seconds.
pub const DATABASE_RETRY_AFTER_SECS: u64 = 2;

/// Whether `err`, or an error in its chain of causes, says that the database cannot be reached:
/// no connection could be had in time, the connection broke, or the server is shutting down,
/// starting up or out of connection slots. Any other database error is the request's or
/// ours, and stays a 500.
pub fn database_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(sqlx_err) = e.downcast_ref::<sqlx::Error>() {
            return match sqlx_err {
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
                // The connection broke in the middle of a message.
                sqlx::Error::Protocol(_) => true,
                sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    // Class 08: connection exception; 57P01-03: shutting down or starting up;
                    // 53300: too many connections.
                    code.starts_with("08")
                        || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
                }),
                _ => false,
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | BrokenPipe
                    | UnexpectedEof
            );
        }
        cause = e.source();
    }
    false
}

impl ApiError {
    /// A failure of the server's own. When its cause is that the database cannot be reached
    /// (see [`database_unreachable`]), the answer is a 503 with `Retry-After` instead of a
    /// 500: the client may retry, and the service recovers when the database is back.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        if database_unreachable(&err) {
            tracing::warn!(error = %error_chain(&err), "the database cannot be reached");
            return ApiError::RetryLater {
                retry_after_secs: DATABASE_RETRY_AFTER_SECS,
                detail: "The database cannot be reached; retry shortly.".into(),
            };
        }
        ApiError::Internal(Box::new(err))
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ClinicSuspended | ApiError::ModuleDisabled(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::PlanLimit(_) | ApiError::TrialEnded { .. } => StatusCode::PAYMENT_REQUIRED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } | ApiError::SlotTaken { .. } => StatusCode::CONFLICT,
            ApiError::OutsideWorkingHours(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) | ApiError::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::RetryLater { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        let (slug, title, detail, errors): (&str, &str, String, Vec<FieldError>) = match self {
            ApiError::BadRequest(d) => ("bad-request", "Bad request", d.clone(), vec![]),
            ApiError::Unauthorized(d) => ("unauthorized", "Unauthorized", d.clone(), vec![]),
            ApiError::Forbidden(d) => ("forbidden", "Forbidden", d.clone(), vec![]),
            ApiError::ClinicSuspended => (
                "clinic-suspended",
                "Clinic suspended",
                "The clinic is suspended; its users cannot log in or issue commands.".into(),
                vec![],
            ),
            ApiError::ModuleDisabled(module) => (
                "module-disabled",
                "Module disabled",
                format!("The clinic has not enabled the {module} module; a clinic admin can enable it within the plan."),
                vec![],
            ),
            ApiError::PlanLimit(over) => (
                "plan-limit",
                "Plan limit reached",
                format!(
                    "The {} plan allows {} {}; {} in use. Nothing was written.",
                    over.plan, over.allowed, over.limit, over.in_use
                ),
                vec![],
            ),
            ApiError::TrialEnded { ended_at } => (
                "trial-ended",
                "Trial ended",
                format!(
                    "The clinic's trial ended at {}; it is read-only until it is on a paid plan. Nothing was written.",
                    ended_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                vec![],
            ),
            ApiError::NotFound(d) => ("not-found", "Not found", d.clone(), vec![]),
            ApiError::Conflict {
                slug,
                detail,
                field,
            } => (
                slug,
                "Conflict",
                detail.clone(),
                field
                    .iter()
                    .map(|f| FieldError::new(f.clone(), detail.clone()))
                    .collect(),
            ),
            ApiError::SlotTaken { detail, .. } => {
                ("slot-taken", "Slot taken", detail.clone(), vec![])
            }
            ApiError::OutsideWorkingHours(detail) => (
                "outside-working-hours",
                "Outside working hours",
                detail.clone(),
                vec![FieldError::new("start", detail.clone())],
            ),
            ApiError::PreconditionFailed { expected, actual } => (
                "version-mismatch",
                "Precondition failed",
                format!("If-Match names version {expected}, but the record is at version {actual}"),
                vec![],
            ),
            ApiError::RequestTimeout => (
                "request-timeout",
                "Request timeout",
                "The request took longer than the server allows (its body came too slowly, or the work did not finish in time)."
                    .into(),
                vec![],
            ),
            ApiError::PayloadTooLarge => (
                "payload-too-large",
                "Payload too large",
                "The request body is larger than the 64 KiB limit.".into(),
                vec![],
            ),
            ApiError::UnsupportedMediaType => (
                "unsupported-media-type",
                "Unsupported media type",
                "Send the body as application/json.".into(),
                vec![],
            ),
            ApiError::Validation(errors) => (
                "validation",
                "Invalid request",
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                errors.clone(),
            ),
            ApiError::Unprocessable { slug, detail } => {
                (slug, "Unprocessable request", detail.clone(), vec![])
            }
            ApiError::TooManyRequests { detail, .. } => (
                "too-many-requests",
                "Too many requests",
                detail.clone(),
                vec![],
            ),
            ApiError::Unavailable(d) => ("unavailable", "Service unavailable", d.clone(), vec![]),
            ApiError::RetryLater { detail, .. } => {
                ("unavailable", "Service unavailable", detail.clone(), vec![])
            }
            ApiError::Internal(_) => (
                "internal",
                "Internal error",
                "The server failed to handle the request; it has been logged.".into(),
                vec![],
            ),
        };
        Problem {
            type_uri: format!("{PROBLEM_BASE}{slug}"),
            title: title.into(),
            status: self.status().as_u16(),
            detail,
            errors,
            conflicts: match self {
                ApiError::SlotTaken { conflicts, .. } => Some(conflicts.clone()),
                _ => None,
            },
            plan: match self {
                ApiError::PlanLimit(over) => Some(over.plan.as_str().to_owned()),
                ApiError::TrialEnded { .. } => {
                    Some(domain::values::Plan::Trial.as_str().to_owned())
                }
                _ => None,
            },
            limit: match self {
                ApiError::PlanLimit(over) => Some(over.limit.as_str().to_owned()),
                _ => None,
            },
            allowed: match self {
                ApiError::PlanLimit(over) => Some(over.allowed),
                _ => None,
            },
            in_use: match self {
                ApiError::PlanLimit(over) => Some(over.in_use),
                _ => None,
            },
            trial_ended_at: match self {
                ApiError::TrialEnded { ended_at } => Some(*ended_at),
                _ => None,
            },
            module: match self {
                ApiError::ModuleDisabled(module) => Some(module.as_str().to_owned()),
                _ => None,
            },
        }
    }

    /// Maps a domain rejection by kind: not found → 404, conflict → 409, invalid → 422 naming
    /// the field, unavailable (outside working hours) → 422 `outside-working-hours`.
    pub fn from_domain<E: DomainError + ?Sized>(e: &E) -> Self {
        if let Some(over) = e.over_limit() {
            return ApiError::PlanLimit(over.clone());
        }
        match e.kind() {
            ErrorKind::NotFound => ApiError::NotFound(e.to_string()),
            ErrorKind::Conflict => ApiError::Conflict {
                slug: "conflict",
                detail: e.to_string(),
                field: None,
            },
            ErrorKind::Invalid => ApiError::field(api_field(e.field()), e.to_string()),
            ErrorKind::Unavailable => ApiError::OutsideWorkingHours(e.to_string()),
        }
    }
}

/// The request-body field a domain field name stands for: the domain speaks of a staff
/// member's `time_off` and an appointment's `slot`; the API bodies carry their `start`/`end`.
fn api_field(domain_field: Option<&'static str>) -> &'static str {
    match domain_field {
        None => "body",
        Some("time_off") => "end",
        Some("slot") => "start",
        Some(other) => other,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %error_chain(cause.as_ref()), "request failed")
            }
            other => {
                tracing::info!(status = other.status().as_u16(), error = %other, "request refused")
            }
        }
        let mut response = problem_response(self.problem());
        match &self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"clinic\""),
                );
            }
            ApiError::TooManyRequests {
                retry_after_secs, ..
            }
            | ApiError::RetryLater {
                retry_after_secs, ..
            } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}

/// Serialises a problem with its status and content type.
pub fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// `error: cause: cause`, for logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The 401 of every endpoint that takes a bearer token (documentation).
pub const UNAUTHORIZED: &str =
    "No token, or an invalid, expired, `alg: none` or wrong-audience token";

/// Documents the problems an endpoint may answer with, one `(status, description)` a row,
/// each a [`Problem`] as `application/problem+json`.
pub fn problem_responses(
    rows: &[(u16, &str)],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    rows.iter()
        .map(|(status, description)| {
            let schema = Ref::from_schema_name("Problem");
            let content = ContentBuilder::new().schema(Some(schema)).build();
            let response = ResponseBuilder::new()
                .description(*description)
                .content("application/problem+json", content)
                .build();
            (status.to_string(), response.into())
        })
        .collect()
}
