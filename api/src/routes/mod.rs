//! The `/v1` resources. Each module owns its `router()` and OpenAPI paths, the reads and the
//! commands of its resource: a command handler runs through [`crate::pipeline`], a query
//! handler through [`crate::read::Read`].

pub mod appointments;
pub mod audit;
pub mod audit_chain;
pub mod availability;
pub mod clinic;
pub mod clinics;
pub mod fees;
pub mod invoices;
pub mod patients;
pub mod plans;
pub mod reports;
pub mod staff;

use std::collections::BTreeMap;

use utoipa::openapi::{RefOr, Response as OpenApiResponse};
use utoipa::IntoResponses;
use utoipa_axum::router::OpenApiRouter;

use crate::problem::{problem_responses, UNAUTHORIZED};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(crate::auth::routes::router())
        .merge(clinics::router())
        .merge(plans::router())
        .merge(reports::router())
        .merge(clinic::router())
        .merge(fees::router())
        .merge(staff::router())
        .merge(patients::router())
        .merge(appointments::router())
        .merge(availability::router())
        .merge(invoices::router())
        .merge(audit::router())
        .merge(audit_chain::router())
}

/// The role sets (kept in [`crate::roles`]; re-exported for the handlers here).
pub use crate::roles;

/// The problems any command endpoint may answer with (documentation only).
pub struct CommandProblems;

impl IntoResponses for CommandProblems {
    fn responses() -> BTreeMap<String, RefOr<OpenApiResponse>> {
        problem_responses(&[
            (400, "Malformed JSON or header"),
            (401, UNAUTHORIZED),
            (402, "Past a limit of the clinic's plan (`plan-limit`: `limit`, `allowed`, `in_use`, `plan`), or the clinic's trial has ended (`trial-ended`)"),
            (403, "The caller's role may not do this, the clinic is suspended, or the endpoint's module is disabled"),
            (404, "No such record in the caller's clinic"),
            (409, "A domain conflict: illegal transition, already done, taken; or the Idempotency-Key's first request still running (`Retry-After`)"),
            (412, "`If-Match` names another version"),
            (413, "Body over 64 KiB"),
            (415, "Body is not application/json"),
            (422, "Invalid fields (listed in `errors`; a string with U+0000 included), or an Idempotency-Key reused with another request"),
            (503, "The database cannot be reached (`Retry-After`)"),
        ])
    }
}
