//! `GET /v1/dashboard` and `GET /v1/clinic`: the caller's clinic.

use axum::extract::State;
use axum::Json;
use projections::clinics::{self, ClinicView};
use projections::dashboard::{self, Dashboard};
use projections::{appointments, patients, staff, Projection};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{doctor_scope, ReadProblems};
use crate::auth::Principal;
use crate::problem::ApiError;
use crate::query::{NoParams, ReadQuery};
use crate::read::{wait_for, MinPosition, MinPositionHeader, MinPositionQuery};
use crate::roles;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_dashboard))
        .routes(routes!(get_clinic))
}

/// The projections the dashboard reads, for `X-Min-Position`.
const DASHBOARD_READS: &[Projection] = &[
    clinics::PROJECTION,
    staff::PROJECTION,
    patients::PROJECTION,
    appointments::PROJECTION,
];

/// The clinic's dashboard, in its local time zone: appointments per status for today and the
/// next 7 days, each doctor's load per day, the no-show rate of the last 30 days, patients
/// registered this (ISO) week and the next 10 active appointments. For a doctor the next
/// appointments are their own.
#[utoipa::path(get, path = "/v1/dashboard", tag = "clinic", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The dashboard", body = Dashboard), ReadProblems))]
async fn get_dashboard(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<Json<Dashboard>, ApiError> {
    principal.require(roles::read::DASHBOARD)?;
    let clinic = principal.clinic()?;
    let doctor = doctor_scope(&principal)?;
    params?;
    wait_for(&state, DASHBOARD_READS, min).await?;
    dashboard::dashboard(&state.pool, clinic, doctor, state.clock.now())
        .await
        .map(Json)
        .map_err(Into::into)
}

/// The caller's clinic: name, code, time zone, plan, status, slot length and departments.
#[utoipa::path(get, path = "/v1/clinic", tag = "clinic", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The clinic", body = ClinicView), ReadProblems))]
async fn get_clinic(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<Json<ClinicView>, ApiError> {
    principal.require(roles::read::CLINIC)?;
    let clinic = principal.clinic()?;
    params?;
    wait_for(&state, &[clinics::PROJECTION], min).await?;
    clinics::clinic(&state.pool, clinic)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("clinic not found".into()))
}
