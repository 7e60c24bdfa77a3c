//! The caller's own clinic: its dashboard and settings (clinic roles); settings, departments
//! and modules (clinic admin).

use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use commands::{modules, Committed};
use domain::clinic::{Clinic, ClinicCommand, Settings};
use domain::ids::DepartmentId;
use domain::values::{Address, Module, NonEmptyText, Phone, TimeZone, WebUrl, WorkingHours};
use projections::clinics::ClinicView;
use projections::dashboard::{self, Dashboard};
use projections::Projection;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{roles, CommandProblems};
use crate::access_log::{self, ClientIp, Subjects};
use crate::http::{CommandAccepted, CommandResponse, IdPath};
use crate::pipeline::{Command, Ctx};
use crate::problem::ApiError;
use crate::read::{clinic_and_doctor, found, in_clinic, Read, ReadProblems};
use crate::read::{MinPositionHeader, MinPositionQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_dashboard))
        .routes(routes!(get_clinic))
        .routes(routes!(update_clinic))
        .routes(routes!(add_department))
        .routes(routes!(update_department))
        .routes(routes!(set_module))
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
    /// The clinic's logo: an `https://` address.
    #[schema(value_type = Option<String>, example = "https://north.example/logo.png")]
    pub logo_url: Option<WebUrl>,
    #[schema(value_type = Option<Object>, example = json!({"lines": ["1 High Street"], "city": "Berlin", "postal_code": "10115", "country": "DE"}))]
    pub address: Option<Address>,
    #[schema(value_type = Option<String>, example = "+49 30 1234567")]
    pub phone: Option<Phone>,
    /// The default length of an appointment, 5–480 minutes.
    pub appointment_minutes: Option<u32>,
    /// The working week a new doctor starts with (as `PUT /v1/staff/{id}/working-hours`).
    #[schema(value_type = Option<Object>, example = json!({"mon": [{"start": "09:00", "end": "17:00"}]}))]
    pub working_week: Option<WorkingHours>,
}

/// Whether a module is on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetModule {
    pub enabled: bool,
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

const DEPARTMENTS: &str = "/v1/clinic/departments";

/// Runs `command` on the caller's clinic.
async fn execute<P>(ctx: &Ctx<P>, command: ClinicCommand) -> Result<Committed, ApiError> {
    let clinic_id = ctx.meta()?.clinic_id;
    ctx.execute::<Clinic>(clinic_id.as_uuid(), command).await
}

impl From<UpdateClinic> for ClinicCommand {
    fn from(req: UpdateClinic) -> Self {
        ClinicCommand::UpdateSettings(Settings {
            name: req.name,
            time_zone: req.time_zone,
            slot_minutes: req.slot_minutes,
            logo_url: req.logo_url,
            address: req.address,
            phone: req.phone,
            appointment_minutes: req.appointment_minutes,
            working_week: req.working_week,
        })
    }
}

impl UpdateDepartment {
    /// A rename or a close, one at a time.
    fn into_command(self, department_id: DepartmentId) -> Result<ClinicCommand, ApiError> {
        match (self.name, self.closed) {
            (Some(name), None | Some(false)) => Ok(ClinicCommand::RenameDepartment {
                department_id,
                name,
            }),
            (None, Some(true)) => Ok(ClinicCommand::CloseDepartment { department_id }),
            (Some(_), Some(true)) => Err(ApiError::field(
                "closed",
                "rename and close in separate requests",
            )),
            (None, _) => Err(ApiError::field(
                "name",
                "give a new name, or \"closed\": true",
            )),
        }
    }
}

/// Change the clinic's settings.
#[utoipa::path(patch, path = "/v1/clinic", tag = "clinic", request_body = UpdateClinic,
    security(("bearer" = [])),
    responses((status = 200, description = "Updated", body = CommandAccepted), CommandProblems))]
async fn update_clinic(cmd: Command) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: UpdateClinic, ctx| async move {
        let committed = execute(&ctx, req.into()).await?;
        let clinic_id = ctx.principal.clinic()?;
        Ok(CommandResponse::updated(clinic_id.as_uuid(), &committed))
    })
    .await
}

/// Add a department.
#[utoipa::path(post, path = "/v1/clinic/departments", tag = "clinic", request_body = AddDepartment,
    security(("bearer" = [])),
    responses((status = 201, description = "Added; the version is the clinic's", body = CommandAccepted), CommandProblems))]
async fn add_department(cmd: Command) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: AddDepartment, ctx| async move {
        let id = DepartmentId::new();
        let add = ClinicCommand::AddDepartment {
            department_id: id,
            name: req.name,
        };
        let committed = execute(&ctx, add).await?;
        Ok(CommandResponse::created_in(DEPARTMENTS, id, &committed))
    })
    .await
}

/// Rename or close a department.
#[utoipa::path(patch, path = "/v1/clinic/departments/{id}", tag = "clinic", request_body = UpdateDepartment,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Department id")),
    responses((status = 200, description = "Updated; the version is the clinic's", body = CommandAccepted), CommandProblems))]
async fn update_department(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(
        roles::CLINIC_ADMIN,
        |req: UpdateDepartment, ctx| async move {
            let command = req.into_command(DepartmentId::from_uuid(ctx.id()))?;
            let committed = execute(&ctx, command).await?;
            Ok(CommandResponse::updated(ctx.id(), &committed))
        },
    )
    .await
}

/// Enable or disable a module (`appointments`, `billing`, `laboratory`). Enabling one the
/// plan does not include is a 402 `plan-limit` (`limit: modules`); enabling billing before
/// the fee schedule is set is a 409 `fee-schedule-required`. A disabled module's endpoints
/// answer 403 `module-disabled`; its data is kept and comes back when it is enabled.
#[utoipa::path(put, path = "/v1/clinic/modules/{module}", tag = "clinic", request_body = SetModule,
    security(("bearer" = [])),
    params(("module" = String, Path, description = "`appointments`, `billing` or `laboratory`")),
    responses((status = 200, description = "Set; the version is the clinic's", body = CommandAccepted), CommandProblems))]
async fn set_module(cmd: Command<ModulePath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: SetModule, ctx| async move {
        let meta = ctx.meta()?;
        let (store, module) = (ctx.store(), ctx.path.0);
        let committed = modules::set_module(store, &meta, ctx.expect, module, req.enabled).await?;
        Ok(CommandResponse::updated(
            meta.clinic_id.as_uuid(),
            &committed,
        ))
    })
    .await
}

/// The `{module}` of a path: a 404 for a name that is no module.
pub struct ModulePath(pub Module);

impl axum::extract::FromRequestParts<AppState> for ModulePath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(name) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("no such module".into()))?;
        name.parse()
            .map(ModulePath)
            .map_err(|_| ApiError::NotFound(format!("no module is called {name:?}")))
    }
}

/// The projections the dashboard reads, for `X-Min-Position`.
const DASHBOARD_READS: &[Projection] = &[
    projections::clinics::PROJECTION,
    projections::staff::PROJECTION,
    projections::patients::PROJECTION,
    projections::appointments::PROJECTION,
    projections::invoices::PROJECTION,
];

/// The clinic's dashboard, in its local time zone: appointments per status for today and the
/// next 7 days, each doctor's load per day, the no-show rate of the last 30 days, patients
/// registered this (ISO) week and the next 10 active appointments. For a doctor the next
/// appointments are their own. With the billing module, clinic admins and receptionists also
/// get `billing`: the revenue of the current local month (payments minus refunds recorded in
/// it) and the amount outstanding, per currency; a doctor gets them over their own
/// appointments' invoices; nurses do not get them.
#[utoipa::path(get, path = "/v1/dashboard", tag = "clinic", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The dashboard", body = Dashboard), ReadProblems))]
async fn get_dashboard(
    client_ip: ClientIp,
    uri: Uri,
    mut read: Read,
) -> Result<Json<Dashboard>, ApiError> {
    let result = dashboard_of(&mut read).await;
    // The next appointments name their patients: recorded with those patients.
    let upcoming = result.iter().flat_map(|Json(d)| &d.next_appointments);
    let subjects = Subjects::list(&uri, upcoming.map(|a| a.patient_id));
    let (state, principal) = (&read.state, &read.principal);
    access_log::logged(
        state,
        principal,
        subjects,
        "GET /v1/dashboard",
        client_ip,
        result,
    )
    .await
}

async fn dashboard_of(read: &mut Read) -> Result<Json<Dashboard>, ApiError> {
    let dashboard_roles = roles::read::DASHBOARD;
    let ((clinic, doctor), _) = read
        .ready(dashboard_roles, clinic_and_doctor, DASHBOARD_READS)
        .await?;
    let (pool, now) = (&read.state.pool, read.state.clock.now());
    let principal = &read.principal;
    let with_billing = principal.require(roles::read::DASHBOARD_BILLING).is_ok()
        && principal.require_module(Module::Billing).is_ok();
    let figures = dashboard::dashboard(pool, clinic, doctor, now, with_billing).await?;
    Ok(Json(figures))
}

/// The caller's clinic: name, code, time zone, plan, status, slot length and departments.
#[utoipa::path(get, path = "/v1/clinic", tag = "clinic", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The clinic", body = ClinicView), ReadProblems))]
async fn get_clinic(mut read: Read) -> Result<Json<ClinicView>, ApiError> {
    let reads = &[projections::clinics::PROJECTION];
    let (clinic, _) = read.ready(roles::read::CLINIC, in_clinic, reads).await?;
    let view = projections::clinics::clinic(&read.state.pool, clinic).await?;
    found(view, "clinic").map(Json)
}
