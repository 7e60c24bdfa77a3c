//! Clinics of the platform (platform admin): list them and the platform's figures (counts,
//! no patient data); create with a first admin, suspend, reactivate, change plan.

use axum::response::Response;
use axum::Json;
use commands::clinics::{self, RegisterClinic};
use domain::clinic::{Clinic, ClinicCommand};
use domain::ids::ClinicId;
use domain::values::{ClinicCode, Email, NonEmptyText, PersonName, Plan, TimeZone};
use projections::clinics::{ClinicList, PlatformOverview};
use projections::Projection;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{roles, CommandProblems};
use crate::http::{CommandAccepted, CommandResponse, IdPath};
use crate::pipeline::{Command, Ctx};
use crate::problem::ApiError;
use crate::read::{platform, Read, ReadProblems};
use crate::read::{MinPositionHeader, MinPositionQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clinics))
        .routes(routes!(platform_overview))
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
    /// `trial`, `basic`, `professional` or `enterprise` (`GET /v1/plans`). A trial ends
    /// its days after the registration.
    #[schema(value_type = String, example = "trial")]
    pub plan: Plan,
    pub admin: NewAdmin,
}

impl From<CreateClinic> for RegisterClinic {
    fn from(req: CreateClinic) -> Self {
        RegisterClinic {
            name: req.name,
            code: req.code,
            time_zone: req.time_zone,
            plan: req.plan,
            admin: clinics::NewAdmin {
                name: req.admin.name,
                email: req.admin.email,
                password: req.admin.password,
            },
        }
    }
}

/// Create a clinic and its first clinic admin. Platform admin only.
#[utoipa::path(post, path = "/v1/clinics", tag = "clinics", request_body = CreateClinic,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Created; `Location` names the clinic", body = CommandAccepted), CommandProblems))]
async fn create_clinic(cmd: Command) -> Result<Response, ApiError> {
    cmd.run(roles::PLATFORM, |req: CreateClinic, ctx| async move {
        let clinic_id = ClinicId::new();
        let meta = ctx.principal.meta_for(clinic_id);
        let committed = clinics::register_with_admin(ctx.store(), &meta, req.into()).await?;
        Ok(CommandResponse::created_in(
            "/v1/clinics",
            clinic_id,
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
    /// Any plan but `trial`. A downgrade below the clinic's use is allowed; new use past a
    /// limit is refused from then on.
    #[schema(value_type = String, example = "enterprise")]
    pub plan: Plan,
    /// Why, for the clinic's history (the event records who and when).
    #[schema(value_type = String, example = "signed the enterprise contract")]
    pub reason: NonEmptyText,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Runs `command` on the clinic the path names, as the platform admin.
async fn on_clinic(ctx: Ctx<IdPath>, command: ClinicCommand) -> Result<CommandResponse, ApiError> {
    let meta = ctx.principal.meta_for(ClinicId::from_uuid(ctx.id()));
    let store = ctx.store();
    let committed = store
        .execute::<Clinic>(&meta, ctx.id(), command, ctx.expect)
        .await?;
    Ok(CommandResponse::updated(ctx.id(), &committed))
}

/// Suspend a clinic: its users can no longer log in or issue commands.
#[utoipa::path(post, path = "/v1/clinics/{id}/suspend", tag = "clinics", request_body = SuspendClinic,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Clinic id")),
    responses((status = 200, description = "Suspended", body = CommandAccepted), CommandProblems))]
async fn suspend_clinic(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::PLATFORM, |req: SuspendClinic, ctx| {
        on_clinic(ctx, ClinicCommand::Suspend { reason: req.reason })
    })
    .await
}

/// Reactivate a suspended clinic.
#[utoipa::path(post, path = "/v1/clinics/{id}/reactivate", tag = "clinics",
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Clinic id")),
    responses((status = 200, description = "Reactivated", body = CommandAccepted), CommandProblems))]
async fn reactivate_clinic(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::PLATFORM, |_: Empty, ctx| {
        on_clinic(ctx, ClinicCommand::Reactivate)
    })
    .await
}

/// Change a clinic's plan. The change is an event of the clinic's history with who, when and
/// why.
#[utoipa::path(put, path = "/v1/clinics/{id}/plan", tag = "clinics", request_body = ChangePlan,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Clinic id")),
    responses((status = 200, description = "Plan changed", body = CommandAccepted), CommandProblems))]
async fn change_plan(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::PLATFORM, |req: ChangePlan, ctx| {
        on_clinic(
            ctx,
            ClinicCommand::ChangePlan {
                plan: req.plan,
                reason: req.reason,
            },
        )
    })
    .await
}

/// The projections the platform's reads read, for `X-Min-Position`.
const READS: &[Projection] = &[projections::clinics::PROJECTION];

/// The overview also counts staff, patients and bookings from their read models.
const OVERVIEW_READS: &[Projection] = &[
    projections::clinics::PROJECTION,
    projections::staff::PROJECTION,
    projections::patients::PROJECTION,
    projections::appointments::PROJECTION,
];

/// Every clinic of the platform, with counts (platform admin; no patient data).
#[utoipa::path(get, path = "/v1/clinics", tag = "clinics", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The clinics", body = ClinicList), ReadProblems))]
async fn list_clinics(mut read: Read) -> Result<Json<ClinicList>, ApiError> {
    read.ready(roles::PLATFORM, platform, READS).await?;
    Ok(Json(
        projections::clinics::platform_clinics(&read.state.pool).await?,
    ))
}

/// Platform statistics: clinics by plan and by status, totals of staff, patients and
/// appointments, each clinic's bookings this month, and the clinics closest to their plan's
/// limits (platform admin; no patient data).
#[utoipa::path(get, path = "/v1/platform/overview", tag = "clinics", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The platform's figures", body = PlatformOverview), ReadProblems))]
async fn platform_overview(mut read: Read) -> Result<Json<PlatformOverview>, ApiError> {
    read.ready(roles::PLATFORM, platform, OVERVIEW_READS)
        .await?;
    Ok(Json(
        projections::clinics::platform_overview(&read.state.pool, read.state.clock.now()).await?,
    ))
}
