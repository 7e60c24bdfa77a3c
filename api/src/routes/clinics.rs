//! Clinics of the platform (platform admin): create with a first admin, suspend, reactivate,
//! change plan.

use axum::extract::State;
use axum::response::Response;
use commands::{Actor, CommandMeta, Committed, Expect};
use domain::clinic::{Clinic, ClinicCommand};
use domain::ids::{ClinicId, StaffId};
use domain::staff::StaffCommand;
use domain::values::{ClinicCode, Email, NonEmptyText, PersonName, Plan, Role, TimeZone};
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
        .routes(routes!(create_clinic))
        .routes(routes!(suspend_clinic))
        .routes(routes!(reactivate_clinic))
        .routes(routes!(change_plan))
}

/// The clinic's first admin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdmin {
    #[schema(value_type = String, example = "Grace Hopper")]
    pub name: PersonName,
    #[schema(value_type = String, example = "admin@north.example")]
    pub email: Email,
    /// At least 12 characters.
    #[schema(format = Password)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClinic {
    #[schema(value_type = String, example = "North Clinic")]
    pub name: NonEmptyText,
    /// Unique on the platform: 2–32 lowercase letters, digits and `-`.
    #[schema(value_type = String, example = "north")]
    pub code: ClinicCode,
    /// IANA time zone.
    #[schema(value_type = String, example = "Europe/Berlin")]
    pub time_zone: TimeZone,
    #[schema(value_type = String, example = "standard")]
    pub plan: Plan,
    pub admin: NewAdmin,
}

/// Registers a clinic and hires its first admin (whose account is created with the hire).
/// Checks the code and e-mail first so that a clash leaves nothing behind.
pub async fn create_clinic_with_admin(
    state: &AppState,
    actor: Actor,
    request_id: &str,
    req: CreateClinic,
) -> Result<(ClinicId, Committed), ApiError> {
    if let Err(msg) = commands::credentials::check_policy(&req.admin.password) {
        return Err(ApiError::field("admin.password", msg));
    }
    if commands::registry::clinic_by_code(&state.pool, &req.code)
        .await
        .map_err(ApiError::internal)?
        .is_some()
    {
        return Err(ApiError::from_command::<domain::clinic::ClinicError>(
            commands::CommandError::ClinicCodeTaken,
        ));
    }
    if commands::accounts::find_by_email(&state.pool, req.admin.email.as_str())
        .await
        .map_err(ApiError::internal)?
        .is_some()
    {
        return Err(ApiError::Conflict {
            slug: "email-taken",
            detail: "The e-mail address already belongs to an account.".into(),
            field: Some("admin.email".into()),
        });
    }
    let hash = commands::credentials::hash(req.admin.password)
        .await
        .map_err(ApiError::internal)?;
    let clinic_id = ClinicId::new();
    let meta = CommandMeta::new(clinic_id, actor, request_id);
    state
        .store
        .execute::<Clinic>(
            &meta,
            clinic_id.as_uuid(),
            ClinicCommand::Register {
                clinic_id,
                name: req.name,
                code: req.code,
                time_zone: req.time_zone,
                plan: req.plan,
            },
            Expect::Any,
        )
        .await
        .map_err(ApiError::from_command)?;
    let hired = hire_clinic_admin(state, &meta, req.admin.name, req.admin.email, hash).await?;
    Ok((clinic_id, hired))
}

/// Hires a clinic admin into `meta.clinic_id` with an already hashed password (the account
/// is created with the hire).
pub async fn hire_clinic_admin(
    state: &AppState,
    meta: &CommandMeta,
    name: PersonName,
    email: Email,
    password_hash: String,
) -> Result<Committed, ApiError> {
    let staff_id = StaffId::new();
    commands::accounts::hire_with_credentials(
        &state.store,
        meta,
        staff_id,
        StaffCommand::Hire {
            staff_id,
            clinic_id: meta.clinic_id,
            name,
            email,
            role: Role::ClinicAdmin,
            department_id: None,
            specialty: None,
            licence_number: None,
        },
        Some(password_hash),
    )
    .await
    .map_err(ApiError::from_command)
}

/// Create a clinic and its first clinic admin. Platform admin only.
#[utoipa::path(post, path = "/v1/clinics", tag = "clinics", request_body = CreateClinic,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Created; `Location` names the clinic", body = CommandAccepted), CommandProblems))]
async fn create_clinic(
    State(state): State<AppState>,
    principal: Principal,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::PLATFORM)?;
    cmd.run(&state, &principal, &body, async {
        let req: CreateClinic = body.parse()?;
        let (clinic_id, committed) =
            create_clinic_with_admin(&state, principal.actor(), &principal.request_id, req).await?;
        Ok(CommandResponse::created(
            clinic_id.as_uuid(),
            format!("/v1/clinics/{clinic_id}"),
            &committed,
        ))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendClinic {
    #[schema(value_type = String, example = "unpaid invoices")]
    pub reason: NonEmptyText,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePlan {
    #[schema(value_type = String, example = "enterprise")]
    pub plan: Plan,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

async fn run_clinic_command(
    state: &AppState,
    principal: &Principal,
    cmd: &CommandRequest,
    clinic: Uuid,
    command: ClinicCommand,
) -> Result<CommandResponse, ApiError> {
    let clinic_id = ClinicId::from_uuid(clinic);
    let committed = state
        .store
        .execute::<Clinic>(&principal.meta_for(clinic_id), clinic, command, cmd.expect)
        .await
        .map_err(ApiError::from_command)?;
    Ok(CommandResponse::updated(clinic, &committed))
}

/// Suspend a clinic: its users can no longer log in or issue commands.
#[utoipa::path(post, path = "/v1/clinics/{id}/suspend", tag = "clinics", request_body = SuspendClinic,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Clinic id")),
    responses((status = 200, description = "Suspended", body = CommandAccepted), CommandProblems))]
async fn suspend_clinic(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::PLATFORM)?;
    cmd.run(&state, &principal, &body, async {
        let req: SuspendClinic = body.parse()?;
        run_clinic_command(
            &state,
            &principal,
            &cmd,
            id,
            ClinicCommand::Suspend { reason: req.reason },
        )
        .await
    })
    .await
}

/// Reactivate a suspended clinic.
#[utoipa::path(post, path = "/v1/clinics/{id}/reactivate", tag = "clinics",
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Clinic id")),
    responses((status = 200, description = "Reactivated", body = CommandAccepted), CommandProblems))]
async fn reactivate_clinic(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::PLATFORM)?;
    cmd.run(&state, &principal, &body, async {
        let _: Empty = body.parse()?;
        run_clinic_command(&state, &principal, &cmd, id, ClinicCommand::Reactivate).await
    })
    .await
}

/// Change a clinic's plan.
#[utoipa::path(put, path = "/v1/clinics/{id}/plan", tag = "clinics", request_body = ChangePlan,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Clinic id")),
    responses((status = 200, description = "Plan changed", body = CommandAccepted), CommandProblems))]
async fn change_plan(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::PLATFORM)?;
    cmd.run(&state, &principal, &body, async {
        let req: ChangePlan = body.parse()?;
        run_clinic_command(
            &state,
            &principal,
            &cmd,
            id,
            ClinicCommand::ChangePlan { plan: req.plan },
        )
        .await
    })
    .await
}
