//! Staff members (clinic admin). Hiring creates the member's account in the same
//! transaction; deactivating disables it and revokes its refresh tokens.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::clinic::Clinic;
use domain::ids::{DepartmentId, StaffId};
use domain::staff::{Staff, StaffCommand};
use domain::values::{Email, NonEmptyText, PersonName, Role, TimeRange, WorkingHours};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{roles, CommandProblems};
use crate::auth::Principal;
use crate::http::{CommandAccepted, CommandRequest, CommandResponse, IdPath, JsonBody};
use crate::problem::ApiError;
use crate::startup::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(hire))
        .routes(routes!(update_profile))
        .routes(routes!(change_role))
        .routes(routes!(set_working_hours))
        .routes(routes!(add_time_off))
        .routes(routes!(deactivate))
        .routes(routes!(reactivate))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HireStaff {
    #[schema(value_type = String, example = "Dr. Ada Lovelace")]
    pub name: PersonName,
    /// The member's log-in; unique across the platform.
    #[schema(value_type = String, example = "ada@north.example")]
    pub email: Email,
    /// `clinic_admin`, `doctor`, `nurse`, `receptionist` or `auditor`.
    #[schema(value_type = String, example = "doctor")]
    pub role: Role,
    pub department_id: Option<Uuid>,
    #[schema(value_type = Option<String>, example = "cardiology")]
    pub specialty: Option<NonEmptyText>,
    /// Required for doctors.
    #[schema(value_type = Option<String>, example = "LIC-12345")]
    pub licence_number: Option<NonEmptyText>,
    /// Initial password, at least 12 characters.
    #[schema(format = Password)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    #[schema(value_type = Option<String>)]
    pub name: Option<PersonName>,
    #[schema(value_type = Option<String>)]
    pub email: Option<Email>,
    pub department_id: Option<Uuid>,
    #[schema(value_type = Option<String>)]
    pub specialty: Option<NonEmptyText>,
    #[schema(value_type = Option<String>)]
    pub licence_number: Option<NonEmptyText>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    #[schema(value_type = String, example = "nurse")]
    pub role: Role,
}

/// Weekly working hours in clinic-local time: up to six `{start, end}` intervals ("HH:MM")
/// per day, keyed `mon` … `sun`; a missing day is a day off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct SetWorkingHours {
    #[schema(value_type = Object, example = json!({"mon": [{"start": "09:00", "end": "12:30"}, {"start": "13:30", "end": "17:00"}], "fri": [{"start": "09:00", "end": "13:00"}]}))]
    pub hours: WorkingHours,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTimeOff {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[schema(value_type = Option<String>)]
    pub reason: Option<NonEmptyText>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deactivate {
    #[schema(value_type = Option<String>)]
    pub reason: Option<NonEmptyText>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// 422 naming `field` unless the department is open in the caller's clinic.
async fn check_department(
    state: &AppState,
    principal: &Principal,
    department: Option<Uuid>,
    field: &str,
) -> Result<Option<DepartmentId>, ApiError> {
    let Some(id) = department.map(DepartmentId::from_uuid) else {
        return Ok(None);
    };
    let clinic_id = principal.clinic()?;
    let clinic = state
        .store
        .load::<Clinic>(clinic_id, clinic_id.as_uuid())
        .await
        .map_err(ApiError::internal)?;
    match clinic {
        Some((clinic, _)) if clinic.has_open_department(id) => Ok(Some(id)),
        _ => Err(ApiError::field(
            field,
            "no open department with this id in your clinic",
        )),
    }
}

async fn execute(
    state: &AppState,
    principal: &Principal,
    cmd: &CommandRequest,
    id: Uuid,
    command: StaffCommand,
) -> Result<CommandResponse, ApiError> {
    let committed = state
        .store
        .execute::<Staff>(&principal.meta()?, id, command, cmd.expect)
        .await
        .map_err(ApiError::from_command)?;
    Ok(CommandResponse::updated(id, &committed))
}

/// Hire a staff member and create their account.
#[utoipa::path(post, path = "/v1/staff", tag = "staff", request_body = HireStaff,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Hired; `Location` names the member", body = CommandAccepted), CommandProblems))]
async fn hire(
    State(state): State<AppState>,
    principal: Principal,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: HireStaff = body.parse()?;
        if let Err(msg) = commands::credentials::check_policy(&req.password) {
            return Err(ApiError::field("password", msg));
        }
        let department_id =
            check_department(&state, &principal, req.department_id, "department_id").await?;
        let meta = principal.meta()?;
        let staff_id = StaffId::new();
        let hash = commands::credentials::hash(req.password)
            .await
            .map_err(ApiError::internal)?;
        let committed = commands::accounts::hire_with_credentials(
            &state.store,
            &meta,
            staff_id,
            StaffCommand::Hire {
                staff_id,
                clinic_id: meta.clinic_id,
                name: req.name,
                email: req.email,
                role: req.role,
                department_id,
                specialty: req.specialty,
                licence_number: req.licence_number,
            },
            Some(hash),
        )
        .await
        .map_err(ApiError::from_command)?;
        Ok(CommandResponse::created(
            staff_id.as_uuid(),
            format!("/v1/staff/{staff_id}"),
            &committed,
        ))
    })
    .await
}

/// Update a staff member's profile (a new e-mail is also their new log-in).
#[utoipa::path(patch, path = "/v1/staff/{id}", tag = "staff", request_body = UpdateProfile,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Updated", body = CommandAccepted), CommandProblems))]
async fn update_profile(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: UpdateProfile = body.parse()?;
        let department_id =
            check_department(&state, &principal, req.department_id, "department_id").await?;
        let command = StaffCommand::UpdateProfile {
            name: req.name,
            email: req.email,
            department_id,
            specialty: req.specialty,
            licence_number: req.licence_number,
        };
        execute(&state, &principal, &cmd, id, command).await
    })
    .await
}

/// Change a staff member's role (their account's role changes with it).
#[utoipa::path(put, path = "/v1/staff/{id}/role", tag = "staff", request_body = ChangeRole,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Changed", body = CommandAccepted), CommandProblems))]
async fn change_role(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: ChangeRole = body.parse()?;
        execute(
            &state,
            &principal,
            &cmd,
            id,
            StaffCommand::ChangeRole { role: req.role },
        )
        .await
    })
    .await
}

/// Replace a staff member's weekly working hours.
#[utoipa::path(put, path = "/v1/staff/{id}/working-hours", tag = "staff", request_body = SetWorkingHours,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Set", body = CommandAccepted), CommandProblems))]
async fn set_working_hours(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: SetWorkingHours = body.parse()?;
        execute(
            &state,
            &principal,
            &cmd,
            id,
            StaffCommand::SetWorkingHours { hours: req.hours },
        )
        .await
    })
    .await
}

/// Add a period of time off.
#[utoipa::path(post, path = "/v1/staff/{id}/time-off", tag = "staff", request_body = AddTimeOff,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Added", body = CommandAccepted), CommandProblems))]
async fn add_time_off(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: AddTimeOff = body.parse()?;
        let range = TimeRange::new(req.start, req.end)
            .map_err(|e| ApiError::field("end", e.to_string()))?;
        execute(
            &state,
            &principal,
            &cmd,
            id,
            StaffCommand::AddTimeOff {
                range,
                reason: req.reason,
            },
        )
        .await
    })
    .await
}

/// Deactivate a staff member: their account is disabled and its refresh tokens revoked.
#[utoipa::path(post, path = "/v1/staff/{id}/deactivate", tag = "staff", request_body = Deactivate,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Deactivated", body = CommandAccepted), CommandProblems))]
async fn deactivate(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: Deactivate = body.parse()?;
        execute(
            &state,
            &principal,
            &cmd,
            id,
            StaffCommand::Deactivate { reason: req.reason },
        )
        .await
    })
    .await
}

/// Reactivate a staff member (their account can log in again).
#[utoipa::path(post, path = "/v1/staff/{id}/reactivate", tag = "staff",
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Reactivated", body = CommandAccepted), CommandProblems))]
async fn reactivate(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let _: Empty = body.parse()?;
        execute(&state, &principal, &cmd, id, StaffCommand::Reactivate).await
    })
    .await
}
