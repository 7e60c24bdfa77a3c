//! The caller's own clinic (clinic admin): settings and departments.

use axum::extract::State;
use axum::response::Response;
use domain::clinic::{Clinic, ClinicCommand};
use domain::ids::DepartmentId;
use domain::values::{NonEmptyText, TimeZone};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{roles, CommandProblems};
use crate::auth::Principal;
use crate::http::{CommandAccepted, CommandRequest, CommandResponse, IdPath, JsonBody};
use crate::problem::ApiError;
use crate::startup::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(update_clinic))
        .routes(routes!(add_department))
        .routes(routes!(update_department))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClinic {
    #[schema(value_type = Option<String>)]
    pub name: Option<NonEmptyText>,
    /// IANA time zone for working hours and "today".
    #[schema(value_type = Option<String>, example = "Europe/Berlin")]
    pub time_zone: Option<TimeZone>,
    /// Step between offered appointment start times, 5–240 minutes.
    pub slot_minutes: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDepartment {
    #[schema(value_type = String, example = "Cardiology")]
    pub name: NonEmptyText,
}

/// Rename a department, or close it with `{"closed": true}` (one at a time).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDepartment {
    #[schema(value_type = Option<String>)]
    pub name: Option<NonEmptyText>,
    pub closed: Option<bool>,
}

async fn execute(
    state: &AppState,
    principal: &Principal,
    cmd: &CommandRequest,
    command: ClinicCommand,
) -> Result<commands::Committed, ApiError> {
    let meta = principal.meta()?;
    state
        .store
        .execute::<Clinic>(&meta, meta.clinic_id.as_uuid(), command, cmd.expect)
        .await
        .map_err(ApiError::from_command)
}

/// Change the clinic's settings.
#[utoipa::path(patch, path = "/v1/clinic", tag = "clinic", request_body = UpdateClinic,
    security(("bearer" = [])),
    responses((status = 200, description = "Updated", body = CommandAccepted), CommandProblems))]
async fn update_clinic(
    State(state): State<AppState>,
    principal: Principal,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: UpdateClinic = body.parse()?;
        let committed = execute(
            &state,
            &principal,
            &cmd,
            ClinicCommand::UpdateSettings {
                name: req.name,
                time_zone: req.time_zone,
                slot_minutes: req.slot_minutes,
            },
        )
        .await?;
        Ok(CommandResponse::updated(
            principal.clinic()?.as_uuid(),
            &committed,
        ))
    })
    .await
}

/// Add a department.
#[utoipa::path(post, path = "/v1/clinic/departments", tag = "clinic", request_body = AddDepartment,
    security(("bearer" = [])),
    responses((status = 201, description = "Added; the version is the clinic's", body = CommandAccepted), CommandProblems))]
async fn add_department(
    State(state): State<AppState>,
    principal: Principal,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: AddDepartment = body.parse()?;
        let department_id = DepartmentId::new();
        let committed = execute(
            &state,
            &principal,
            &cmd,
            ClinicCommand::AddDepartment {
                department_id,
                name: req.name,
            },
        )
        .await?;
        Ok(CommandResponse::created(
            department_id.as_uuid(),
            format!("/v1/clinic/departments/{department_id}"),
            &committed,
        ))
    })
    .await
}

/// Rename or close a department.
#[utoipa::path(patch, path = "/v1/clinic/departments/{id}", tag = "clinic", request_body = UpdateDepartment,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Department id")),
    responses((status = 200, description = "Updated; the version is the clinic's", body = CommandAccepted), CommandProblems))]
async fn update_department(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::CLINIC_ADMIN)?;
    cmd.run(&state, &principal, &body, async {
        let req: UpdateDepartment = body.parse()?;
        let department_id = DepartmentId::from_uuid(id);
        let command = match (req.name, req.closed) {
            (Some(name), None | Some(false)) => ClinicCommand::RenameDepartment {
                department_id,
                name,
            },
            (None, Some(true)) => ClinicCommand::CloseDepartment { department_id },
            (Some(_), Some(true)) => {
                return Err(ApiError::field(
                    "closed",
                    "rename and close in separate requests",
                ))
            }
            (None, _) => {
                return Err(ApiError::field(
                    "name",
                    "give a new name, or \"closed\": true",
                ))
            }
        };
        let committed = execute(&state, &principal, &cmd, command).await?;
        Ok(CommandResponse::updated(id, &committed))
    })
    .await
}
