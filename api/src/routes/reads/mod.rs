//! The query endpoints: patients, staff, appointments and a doctor's availability, the
//! dashboard and the clinic, and the platform's clinics and overview, one module per resource.
//! They read the read models (through the read-model modules of `projections`, always scoped
//! by clinic) under role checks:
//!
//! - a doctor sees only their own appointments and the patients they have (or had) an
//!   appointment with; anything else is a 404 (a filter on another doctor is a 403);
//! - a receptionist sees no clinical notes (an appointment's `reason` is absent);
//! - the platform admin sees clinics and counts, never patient data.
//!
//! Every endpoint honours `X-Min-Position` / `?min_position=` (see [`crate::read`]), reads its
//! other parameters with [`crate::query::ReadQuery`], and checks the caller's role before it
//! looks at them.

pub mod appointments;
pub mod availability;
pub mod clinic;
pub mod clinics;
pub mod patients;
pub mod staff;

use axum::http::header::ETAG;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::ActorRole;
use domain::ids::StaffId;
use serde::Serialize;
use utoipa::IntoResponses;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::Principal;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(patients::router())
        .merge(staff::router())
        .merge(appointments::router())
        .merge(clinic::router())
        .merge(clinics::router())
        .merge(availability::router())
}

/// The problems any query endpoint may answer with (documentation only).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum ReadProblems {
    #[response(
        status = 400,
        description = "Malformed `X-Min-Position` / `min_position`",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "No token, or an invalid, expired, `alg: none` or wrong-audience token",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "The caller's role may not read this (or, for a doctor, filters on another doctor), or the clinic is suspended",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "No such record in the caller's clinic (for a doctor: not one of theirs)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 422,
        description = "An invalid query parameter (or a malformed `{id}`), named in `errors`",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
    #[response(
        status = 503,
        description = "The read models have not reached `X-Min-Position` within 2 s; retry after `Retry-After`",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// The caller as a doctor, if they are one: their view is limited to their own records.
pub(crate) fn doctor_scope(principal: &Principal) -> Result<Option<StaffId>, ApiError> {
    if principal.role != ActorRole::Doctor {
        return Ok(None);
    }
    principal
        .staff_id()
        .map(Some)
        .ok_or_else(|| ApiError::Forbidden("a doctor must belong to a clinic".into()))
}

/// A record with its version in `ETag`, as command answers carry it.
pub(crate) fn with_etag<T: Serialize>(version: i64, body: T) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(ETAG, v);
    }
    response
}
