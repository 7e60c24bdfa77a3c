//! Appointments: list and read them; book, reschedule, cancel, check in, start, complete,
//! no-show. Front-desk roles act on any appointment of their clinic; a doctor only on their
//! own.

use std::str::FromStr;

use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::appointments::{self, Book};
use commands::ActorRole;
use domain::appointment::{AppointmentCommand, AppointmentStatus};
use domain::ids::{AppointmentId, PatientId, StaffId};
use domain::values::{AppointmentType, Module, NonEmptyText, TimeRange};
use projections::appointments::{
    AppointmentCursor, AppointmentFilter, AppointmentPage, AppointmentView,
};
use projections::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use projections::Projection;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{roles, CommandProblems};
use crate::access_log::{self, ClientIp, Subjects};
use crate::auth::RequiredModule;
use crate::http::{CommandAccepted, CommandResponse, IdPath};
use crate::pipeline::{Command, Ctx};
use crate::problem::ApiError;
use crate::query::{self, NoParams};
use crate::read::{clinic_and_doctor, found, with_etag, Read, ReadProblems};
use crate::read::{MinPositionHeader, MinPositionQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_appointments))
        .routes(routes!(get_appointment))
        .routes(routes!(book))
        .routes(routes!(reschedule))
        .routes(routes!(cancel))
        .routes(routes!(check_in))
        .routes(routes!(start))
        .routes(routes!(complete))
        .routes(routes!(no_show))
        // The appointments module: 403 `module-disabled` when the clinic has it off.
        .layer(axum::Extension(RequiredModule(Module::Appointments)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookAppointment {
    pub patient_id: Uuid,
    /// A staff member with the doctor role; a doctor may only book themselves.
    pub doctor_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[schema(value_type = Option<String>, example = "annual check-up")]
    pub reason: Option<NonEmptyText>,
    /// The kind of visit, the clinic's own code (`consultation`, `follow-up`): lowercase
    /// letters, digits and '-', at most 40. The fee schedule prices a visit by it.
    #[schema(value_type = Option<String>, example = "follow-up")]
    pub appointment_type: Option<AppointmentType>,
    /// Clinic admins only: book outside the doctor's working hours, time off or slot grid
    /// (recorded in the event). Overlaps are refused all the same.
    #[serde(default)]
    pub override_hours: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reschedule {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Clinic admins only, as for booking.
    #[serde(default)]
    pub override_hours: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    #[schema(value_type = String, example = "patient called in sick")]
    pub reason: NonEmptyText,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

fn slot(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<TimeRange, ApiError> {
    TimeRange::new(start, end).map_err(|e| ApiError::field("end", e.to_string()))
}

impl TryFrom<BookAppointment> for Book {
    type Error = ApiError;

    fn try_from(req: BookAppointment) -> Result<Self, ApiError> {
        Ok(Book {
            slot: slot(req.start, req.end)?,
            patient_id: PatientId::from_uuid(req.patient_id),
            doctor_id: StaffId::from_uuid(req.doctor_id),
            reason: req.reason,
            appointment_type: req.appointment_type,
            override_hours: req.override_hours,
        })
    }
}

impl TryFrom<Reschedule> for appointments::Reschedule {
    type Error = ApiError;

    fn try_from(req: Reschedule) -> Result<Self, ApiError> {
        Ok(appointments::Reschedule {
            slot: slot(req.start, req.end)?,
            override_hours: req.override_hours,
        })
    }
}

/// Runs `command` on the appointment the path names (a doctor only on their own).
async fn act(ctx: Ctx<IdPath>, command: AppointmentCommand) -> Result<CommandResponse, ApiError> {
    let meta = ctx.meta()?;
    let committed = appointments::act(ctx.store(), &meta, ctx.expect, ctx.id(), command).await?;
    Ok(CommandResponse::updated(ctx.id(), &committed))
}

/// Book an appointment. The patient and the doctor must be active in the caller's clinic, and
/// the doctor must have the doctor role (422 naming the field otherwise).
#[utoipa::path(post, path = "/v1/appointments", tag = "appointments", request_body = BookAppointment,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Booked; `Location` names the appointment", body = CommandAccepted), CommandProblems))]
async fn book(cmd: Command) -> Result<Response, ApiError> {
    cmd.run(roles::BOOKING, |req: BookAppointment, ctx| async move {
        let req = Book::try_from(req)?;
        let booked = appointments::book(ctx.store(), &ctx.meta()?, ctx.expect, req).await?;
        let id = booked.appointment_id;
        Ok(CommandResponse::created_in(
            "/v1/appointments",
            id,
            &booked.committed,
        ))
    })
    .await
}

/// Move a booked appointment to another time.
#[utoipa::path(post, path = "/v1/appointments/{id}/reschedule", tag = "appointments", request_body = Reschedule,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Appointment id")),
    responses((status = 200, description = "Rescheduled", body = CommandAccepted), CommandProblems))]
async fn reschedule(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::BOOKING, |req: Reschedule, ctx| async move {
        let req = req.try_into()?;
        let meta = ctx.meta()?;
        let committed =
            appointments::reschedule(ctx.store(), &meta, ctx.expect, ctx.id(), req).await?;
        Ok(CommandResponse::updated(ctx.id(), &committed))
    })
    .await
}

/// Cancel a booked appointment. Cancelling twice is a 409.
#[utoipa::path(post, path = "/v1/appointments/{id}/cancel", tag = "appointments", request_body = Cancel,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Appointment id")),
    responses((status = 200, description = "Cancelled", body = CommandAccepted), CommandProblems))]
async fn cancel(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::BOOKING, |req: Cancel, ctx| async move {
        let by = ctx
            .principal
            .staff_id()
            .ok_or_else(|| ApiError::Forbidden("only clinic staff may cancel".into()))?;
        let reason = req.reason;
        act(ctx, AppointmentCommand::Cancel { reason, by }).await
    })
    .await
}

macro_rules! simple_transition {
    ($name:ident, $path:literal, $roles:expr, $command:expr, $doc:literal, $done:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "appointments",
            security(("bearer" = [])), params(("id" = Uuid, Path, description = "Appointment id")),
            responses((status = 200, description = $done, body = CommandAccepted), CommandProblems))]
        async fn $name(cmd: Command<IdPath>) -> Result<Response, ApiError> {
            cmd.run($roles, |_: Empty, ctx| act(ctx, $command)).await
        }
    };
}
simple_transition!(
    check_in,
    "/v1/appointments/{id}/check-in",
    roles::BOOKING,
    AppointmentCommand::CheckIn,
    "Check the patient in (booked → checked-in).",
    "Checked in"
);
simple_transition!(
    start,
    "/v1/appointments/{id}/start",
    roles::CLINICAL,
    AppointmentCommand::Start,
    "Start the visit (checked-in → in-progress). Clinical roles only.",
    "Started"
);
simple_transition!(
    complete,
    "/v1/appointments/{id}/complete",
    roles::CLINICAL,
    AppointmentCommand::Complete,
    "Complete the visit (in-progress → fulfilled). Clinical roles only.",
    "Completed"
);
simple_transition!(
    no_show,
    "/v1/appointments/{id}/no-show",
    roles::BOOKING,
    AppointmentCommand::MarkNoShow,
    "Mark a booked appointment as a no-show.",
    "Marked as no-show"
);

/// The projections the appointment endpoints read, for `X-Min-Position`.
const READS: &[Projection] = &[
    projections::appointments::PROJECTION,
    projections::patients::PROJECTION,
    projections::staff::PROJECTION,
];

/// The filters of the appointment list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AppointmentParams {
    /// Only this doctor's
    #[serde(default, deserialize_with = "query::uuid")]
    pub doctor_id: Option<Uuid>,
    /// Only this patient's
    #[serde(default, deserialize_with = "query::uuid")]
    pub patient_id: Option<Uuid>,
    /// FHIR code: `booked`, `checked-in`, `in-progress`, `fulfilled`, `cancelled`, `noshow`
    #[serde(default, deserialize_with = "status")]
    #[param(value_type = Option<String>)]
    pub status: Option<AppointmentStatus>,
    /// Only appointments of this type (the clinic's code, e.g. `follow-up`)
    #[serde(default, deserialize_with = "appointment_type")]
    #[param(value_type = Option<String>)]
    pub appointment_type: Option<AppointmentType>,
    /// Starting at or after this instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    pub from: Option<DateTime<Utc>>,
    /// Starting before this instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    pub to: Option<DateTime<Utc>>,
    /// `next_page_token` of the previous page
    #[serde(default, deserialize_with = "page_token")]
    #[param(value_type = Option<String>)]
    pub page_token: Option<AppointmentCursor>,
    /// Page size, 1 to 200 (default 50)
    #[serde(default, deserialize_with = "query::int_in::<_, 1, MAX_PAGE_SIZE>")]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AppointmentStatus>, D::Error> {
    query::with(d, |s| {
        AppointmentStatus::from_str(s).map_err(|_| {
            "must be a FHIR status: booked, checked-in, in-progress, fulfilled, cancelled or noshow"
                .to_owned()
        })
    })
}

fn appointment_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AppointmentType>, D::Error> {
    query::with(d, |s| AppointmentType::parse(s).map_err(|e| e.to_string()))
}

fn page_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AppointmentCursor>, D::Error> {
    query::with(d, |t| {
        AppointmentCursor::decode(t).map_err(|e| e.to_string())
    })
}

/// Appointments, ordered by start time, with the patient's and doctor's names.
///
/// A doctor sees only their own: without `doctor_id` they get theirs, and `doctor_id` naming
/// another doctor is a 403. For receptionists `reason` (a clinical note) is absent.
#[utoipa::path(get, path = "/v1/appointments", tag = "appointments", security(("bearer" = [])),
    params(AppointmentParams, MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "One page of appointments", body = AppointmentPage), ReadProblems))]
async fn list_appointments(
    client_ip: ClientIp,
    uri: Uri,
    mut read: Read<AppointmentParams>,
) -> Result<Json<AppointmentPage>, ApiError> {
    // Every page names its patients, so every list is recorded: the patients it returned and
    // the filter. A list of one patient's appointments names that patient, whether or not the
    // rest of the query is valid.
    let patient = query::raw(&uri, "patient_id").and_then(|raw| Uuid::parse_str(&raw).ok());
    let result = read_appointments(&mut read).await;
    let returned = result.iter().flat_map(|Json(page)| &page.items);
    let mut subjects = Subjects::list(&uri, returned.map(|a| a.patient_id));
    subjects.patient_id = patient;
    let (state, principal) = (&read.state, &read.principal);
    let endpoint = "GET /v1/appointments";
    access_log::logged(state, principal, subjects, endpoint, client_ip, result).await
}

async fn read_appointments(
    read: &mut Read<AppointmentParams>,
) -> Result<Json<AppointmentPage>, ApiError> {
    let ((clinic, own), params) = read.authorise(roles::read::APPOINTMENTS, clinic_and_doctor)?;
    if let (Some(from), Some(to)) = (params.from, params.to) {
        if to <= from {
            return Err(ApiError::field("to", "must be after `from`"));
        }
    }
    let doctor = params.doctor_id.map(StaffId::from_uuid);
    let doctor = match own {
        None => doctor,
        Some(me) if doctor.is_none() || doctor == Some(me) => Some(me),
        Some(_) => {
            return Err(ApiError::Forbidden(
                "a doctor may only list their own appointments".into(),
            ))
        }
    };
    read.wait(READS).await?;
    let filter = AppointmentFilter {
        doctor,
        patient: params.patient_id.map(PatientId::from_uuid),
        status: params.status,
        appointment_type: params.appointment_type,
        from: params.from,
        to: params.to,
        after: params.page_token,
        limit: params.limit.unwrap_or(DEFAULT_PAGE_SIZE),
    };
    let mut page =
        projections::appointments::appointments(&read.state.pool, clinic, &filter).await?;
    if read.principal.role == ActorRole::Receptionist {
        page.items = page
            .items
            .into_iter()
            .map(AppointmentView::without_clinical_notes)
            .collect();
    }
    Ok(Json(page))
}

/// One appointment (`ETag` carries its version). A doctor gets a 404 for another doctor's;
/// for receptionists `reason` is absent.
#[utoipa::path(get, path = "/v1/appointments/{id}", tag = "appointments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Appointment id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The appointment", body = AppointmentView), ReadProblems))]
async fn get_appointment(
    client_ip: ClientIp,
    mut read: Read<NoParams, IdPath>,
) -> Result<Response, ApiError> {
    let result = read_appointment(&mut read).await;
    // The answer names the patient; a refused read is logged without one.
    let patient = result.as_ref().ok().map(|view| view.patient_id);
    let endpoint = "GET /v1/appointments/{id}";
    access_log::logged(
        &read.state,
        &read.principal,
        Subjects::patient(patient),
        endpoint,
        client_ip,
        result,
    )
    .await
    .map(|view| with_etag(view.version, view))
}

async fn read_appointment(read: &mut Read<NoParams, IdPath>) -> Result<AppointmentView, ApiError> {
    let ((clinic, doctor), _) = read
        .ready(roles::read::APPOINTMENTS, clinic_and_doctor, READS)
        .await?;
    let id = AppointmentId::from_uuid(read.path.0);
    let view = projections::appointments::appointment(&read.state.pool, clinic, id, doctor).await?;
    let view = found(view, "appointment")?;
    if read.principal.role == ActorRole::Receptionist {
        return Ok(view.without_clinical_notes());
    }
    Ok(view)
}
