//! Appointments: book, reschedule, cancel, check in, start, complete, no-show. Front-desk
//! roles act on any appointment of their clinic; a doctor only on their own.

use axum::response::Response;
use chrono::{DateTime, Utc};
use commands::appointments::{self, Book};
use domain::appointment::AppointmentCommand;
use domain::ids::{PatientId, StaffId};
use domain::values::{NonEmptyText, TimeRange};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{roles, CommandProblems};
use crate::http::{CommandAccepted, CommandResponse, IdPath};
use crate::pipeline::{Command, Ctx};
use crate::problem::ApiError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(book))
        .routes(routes!(reschedule))
        .routes(routes!(cancel))
        .routes(routes!(check_in))
        .routes(routes!(start))
        .routes(routes!(complete))
        .routes(routes!(no_show))
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
