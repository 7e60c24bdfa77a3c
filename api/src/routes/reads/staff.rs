//! `GET /v1/staff` (the roster) and `GET /v1/staff/{id}`.

use std::str::FromStr;

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use domain::ids::{DepartmentId, StaffId};
use domain::values::Role;
use projections::staff::{self, StaffFilter, StaffList, StaffMember};
use projections::Projection;
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{with_etag, ReadProblems};
use crate::auth::Principal;
use crate::http::IdPath;
use crate::problem::ApiError;
use crate::query::{self, NoParams, Query, ReadQuery};
use crate::read::{wait_for, MinPosition, MinPositionHeader, MinPositionQuery};
use crate::roles;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_staff))
        .routes(routes!(get_staff))
}

/// The projections the staff endpoints read, for `X-Min-Position`.
const READS: &[Projection] = &[staff::PROJECTION];

/// The filters of the staff roster.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StaffParams {
    /// `clinic_admin`, `doctor`, `nurse`, `receptionist` or `auditor`
    #[serde(default, deserialize_with = "role")]
    #[param(value_type = Option<String>)]
    pub role: Option<Role>,
    /// Only this department's members
    #[serde(default, deserialize_with = "query::uuid")]
    pub department_id: Option<Uuid>,
    /// Only active (`true`) or deactivated (`false`) members
    #[serde(default, deserialize_with = "query::boolean")]
    pub active: Option<bool>,
}

fn role<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Role>, D::Error> {
    query::with(d, |r| Role::from_str(r).map_err(|e| e.to_string()))
}

/// The staff roster with working hours and time off, ordered by name.
#[utoipa::path(get, path = "/v1/staff", tag = "staff", security(("bearer" = [])),
    params(StaffParams, MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The staff", body = StaffList), ReadProblems))]
async fn list_staff(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<StaffParams>, ApiError>,
) -> Result<Json<StaffList>, ApiError> {
    principal.require(roles::read::STAFF)?;
    let clinic = principal.clinic()?;
    let Query(params) = params?;
    let filter = StaffFilter {
        role: params.role,
        department: params.department_id.map(DepartmentId::from_uuid),
        active: params.active,
    };
    wait_for(&state, READS, min).await?;
    staff::staff_list(&state.pool, clinic, &filter)
        .await
        .map(Json)
        .map_err(Into::into)
}

/// One staff member (`ETag` carries the version).
#[utoipa::path(get, path = "/v1/staff/{id}", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Staff id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The staff member", body = StaffMember), ReadProblems))]
async fn get_staff(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(roles::read::STAFF)?;
    let clinic = principal.clinic()?;
    params?;
    wait_for(&state, READS, min).await?;
    let member = staff::staff_member(&state.pool, clinic, StaffId::from_uuid(id))
        .await?
        .ok_or_else(|| ApiError::NotFound("staff member not found".into()))?;
    Ok(with_etag(member.version, member))
}
