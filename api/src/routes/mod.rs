//! The `/v1` resources. Each module owns its `router()` and OpenAPI paths; handlers are
//! parse → authorise → execute → map.

pub mod appointments;
pub mod audit;
pub mod audit_chain;
pub mod clinic;
pub mod clinics;
pub mod patients;
pub mod reads;
pub mod staff;

use utoipa::IntoResponses;
use utoipa_axum::router::OpenApiRouter;

use crate::problem::Problem;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(crate::auth::routes::router())
        .merge(clinics::router())
        .merge(clinic::router())
        .merge(staff::router())
        .merge(patients::router())
        .merge(appointments::router())
        .merge(audit::router())
        .merge(audit_chain::router())
        .merge(reads::router())
}

/// The role sets (kept in [`crate::roles`]; re-exported for the handlers here).
pub use crate::roles;

/// The problems any command endpoint may answer with (documentation only).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum CommandProblems {
    #[response(
        status = 400,
        description = "Malformed JSON or header",
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
        description = "The caller's role may not do this, or the clinic is suspended",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "No such record in the caller's clinic",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "A domain conflict: illegal transition, already done, taken",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 412,
        description = "`If-Match` names another version",
        content_type = "application/problem+json"
    )]
    PreconditionFailed(Problem),
    #[response(
        status = 413,
        description = "Body over 64 KiB",
        content_type = "application/problem+json"
    )]
    PayloadTooLarge(Problem),
    #[response(
        status = 415,
        description = "Body is not application/json",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(Problem),
    #[response(
        status = 422,
        description = "Invalid fields (listed in `errors`), or an Idempotency-Key reused with another body",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
}
