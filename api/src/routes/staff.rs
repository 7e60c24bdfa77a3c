//! Staff members: the roster and one member (clinic roles); hire, update, deactivate (clinic
//! admin). Hiring creates the member's account in the same transaction; deactivating disables
//! it and revokes its refresh tokens.

use std::str::FromStr;

use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::staff::{self, Hire};
use domain::ids::{DepartmentId, StaffId};
use domain::staff::{Staff, StaffCommand, StaffProfile};
use domain::values::{Email, NonEmptyText, PersonName, Role, TimeRange, WorkingHours};
use projections::staff::{StaffFilter, StaffList, StaffMember};
use projections::Projection;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{roles, CommandProblems};
use crate::http::{CommandAccepted, CommandResponse, IdPath};
use crate::pipeline::{Command, Ctx};
use crate::problem::ApiError;
use crate::query::{self, NoParams};
use crate::read::{found, in_clinic, with_etag, Read, ReadProblems};
use crate::read::{MinPositionHeader, MinPositionQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_staff))
        .routes(routes!(get_staff))
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
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct SetWorkingHours {
    pub hours: WorkingHours,
}

/// The body is the map of days itself (`serde(transparent)`), so its schema is written here:
/// the derive would describe a `{"hours": …}` wrapper, which the endpoint refuses.
impl utoipa::PartialSchema for SetWorkingHours {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        let time = |example: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .examples([example])
        };
        let interval = ObjectBuilder::new()
            .property("start", time("09:00"))
            .property("end", time("17:00"))
            .required("start")
            .required("end");
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Weekly working hours in clinic-local time: up to six `{start, end}` intervals \
                 (\"HH:MM\") per day, keyed `mon` … `sun`; a missing day is a day off.",
            ))
            .additional_properties(Some(ArrayBuilder::new().items(interval).max_items(Some(6))))
            .examples([serde_json::json!({"mon": [{"start": "09:00", "end": "12:30"}, {"start": "13:30", "end": "17:00"}], "fri": [{"start": "09:00", "end": "13:00"}]})])
            .into()
    }
}

impl ToSchema for SetWorkingHours {}

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

impl From<HireStaff> for Hire {
    fn from(req: HireStaff) -> Self {
        Hire {
            profile: StaffProfile {
                name: req.name,
                email: req.email,
                role: req.role,
                department_id: req.department_id.map(DepartmentId::from_uuid),
                specialty: req.specialty,
                licence_number: req.licence_number,
            },
            password: req.password,
        }
    }
}

impl From<UpdateProfile> for staff::UpdateProfile {
    fn from(req: UpdateProfile) -> Self {
        staff::UpdateProfile {
            name: req.name,
            email: req.email,
            department_id: req.department_id.map(DepartmentId::from_uuid),
            specialty: req.specialty,
            licence_number: req.licence_number,
        }
    }
}

/// Hire a staff member and create their account.
#[utoipa::path(post, path = "/v1/staff", tag = "staff", request_body = HireStaff,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Hired; `Location` names the member", body = CommandAccepted), CommandProblems))]
async fn hire(cmd: Command) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: HireStaff, ctx| async move {
        let hired = staff::hire(ctx.store(), &ctx.meta()?, req.into()).await?;
        Ok(CommandResponse::created_in(
            "/v1/staff",
            hired.staff_id,
            &hired.committed,
        ))
    })
    .await
}

/// Update a staff member's profile (a new e-mail is also their new log-in).
#[utoipa::path(patch, path = "/v1/staff/{id}", tag = "staff", request_body = UpdateProfile,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Updated", body = CommandAccepted), CommandProblems))]
async fn update_profile(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: UpdateProfile, ctx| async move {
        let (meta, req) = (ctx.meta()?, req.into());
        let committed =
            staff::update_profile(ctx.store(), &meta, ctx.expect, ctx.id(), req).await?;
        Ok(CommandResponse::updated(ctx.id(), &committed))
    })
    .await
}

/// Runs a staff command that may add to the plan's active doctors or staff, or take the
/// clinic's last active clinic admin away ([`staff::act`]).
async fn act(ctx: Ctx<IdPath>, command: StaffCommand) -> Result<CommandResponse, ApiError> {
    let meta = ctx.meta()?;
    let committed = staff::act(ctx.store(), &meta, ctx.expect, ctx.id(), command).await?;
    Ok(CommandResponse::updated(ctx.id(), &committed))
}

/// Change a staff member's role (their account's role changes with it). A change to doctor
/// counts against the plan's active doctors (402 `plan-limit` past it).
#[utoipa::path(put, path = "/v1/staff/{id}/role", tag = "staff", request_body = ChangeRole,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Changed", body = CommandAccepted), CommandProblems))]
async fn change_role(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: ChangeRole, ctx| {
        act(ctx, StaffCommand::ChangeRole { role: req.role })
    })
    .await
}

/// Replace a staff member's weekly working hours.
#[utoipa::path(put, path = "/v1/staff/{id}/working-hours", tag = "staff", request_body = SetWorkingHours,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Set", body = CommandAccepted), CommandProblems))]
async fn set_working_hours(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: SetWorkingHours, ctx| {
        ctx.update::<Staff>(StaffCommand::SetWorkingHours { hours: req.hours })
    })
    .await
}

/// Add a period of time off.
#[utoipa::path(post, path = "/v1/staff/{id}/time-off", tag = "staff", request_body = AddTimeOff,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Added", body = CommandAccepted), CommandProblems))]
async fn add_time_off(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: AddTimeOff, ctx| async move {
        let range = TimeRange::new(req.start, req.end)
            .map_err(|e| ApiError::field("end", e.to_string()))?;
        let reason = req.reason;
        ctx.update::<Staff>(StaffCommand::AddTimeOff { range, reason })
            .await
    })
    .await
}

/// Deactivate a staff member: their account is disabled and its refresh tokens revoked.
#[utoipa::path(post, path = "/v1/staff/{id}/deactivate", tag = "staff", request_body = Option<Deactivate>,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Deactivated", body = CommandAccepted), CommandProblems))]
async fn deactivate(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: Deactivate, ctx| {
        act(ctx, StaffCommand::Deactivate { reason: req.reason })
    })
    .await
}

/// Reactivate a staff member (their account can log in again). Counts against the plan's
/// active staff and doctors (402 `plan-limit` past them).
#[utoipa::path(post, path = "/v1/staff/{id}/reactivate", tag = "staff",
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Staff id")),
    responses((status = 200, description = "Reactivated", body = CommandAccepted), CommandProblems))]
async fn reactivate(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |_: Empty, ctx| {
        act(ctx, StaffCommand::Reactivate)
    })
    .await
}

/// The projections the staff endpoints read, for `X-Min-Position`.
const READS: &[Projection] = &[projections::staff::PROJECTION];

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
async fn list_staff(mut read: Read<StaffParams>) -> Result<Json<StaffList>, ApiError> {
    let (clinic, params) = read.ready(roles::read::STAFF, in_clinic, READS).await?;
    let filter = StaffFilter {
        role: params.role,
        department: params.department_id.map(DepartmentId::from_uuid),
        active: params.active,
    };
    let staff = projections::staff::staff_list(&read.state.pool, clinic, &filter).await?;
    Ok(Json(staff))
}

/// One staff member (`ETag` carries the version).
#[utoipa::path(get, path = "/v1/staff/{id}", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Staff id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The staff member", body = StaffMember), ReadProblems))]
async fn get_staff(mut read: Read<NoParams, IdPath>) -> Result<Response, ApiError> {
    let (clinic, _) = read.ready(roles::read::STAFF, in_clinic, READS).await?;
    let id = StaffId::from_uuid(read.path.0);
    let member = projections::staff::staff_member(&read.state.pool, clinic, id).await?;
    let member = found(member, "staff member")?;
    Ok(with_etag(member.version, member))
}
