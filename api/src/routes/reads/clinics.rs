//! The platform admin's reads: `GET /v1/clinics` and `GET /v1/platform/overview` (counts, no
//! patient data).

use axum::extract::State;
use axum::Json;
use projections::clinics::{self, ClinicList, PlatformOverview};
use projections::Projection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ReadProblems;
use crate::auth::Principal;
use crate::problem::ApiError;
use crate::query::{NoParams, ReadQuery};
use crate::read::{wait_for, MinPosition, MinPositionHeader, MinPositionQuery};
use crate::roles;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clinics))
        .routes(routes!(platform_overview))
}

/// The projections the platform's reads read, for `X-Min-Position`.
const READS: &[Projection] = &[clinics::PROJECTION];

/// Every clinic of the platform, with counts (platform admin; no patient data).
#[utoipa::path(get, path = "/v1/clinics", tag = "clinics", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The clinics", body = ClinicList), ReadProblems))]
async fn list_clinics(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<Json<ClinicList>, ApiError> {
    principal.require(roles::PLATFORM)?;
    params?;
    wait_for(&state, READS, min).await?;
    clinics::platform_clinics(&state.pool)
        .await
        .map(Json)
        .map_err(Into::into)
}

/// Platform statistics: clinics by plan and by status, and totals of staff, patients and
/// appointments (platform admin; no patient data).
#[utoipa::path(get, path = "/v1/platform/overview", tag = "clinics", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The platform's figures", body = PlatformOverview), ReadProblems))]
async fn platform_overview(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<Json<PlatformOverview>, ApiError> {
    principal.require(roles::PLATFORM)?;
    params?;
    wait_for(&state, READS, min).await?;
    clinics::platform_overview(&state.pool)
        .await
        .map(Json)
        .map_err(Into::into)
}
