//! Appointments: book, reschedule, cancel, check in, start, complete, no-show. Front-desk
//! roles act on any appointment of their clinic; a doctor only on their own.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use commands::ActorRole;
use domain::appointment::{Appointment, AppointmentCommand};
use domain::clinic::Clinic;
use domain::ids::{AppointmentId, PatientId, StaffId};
use domain::patient::Patient;
use domain::schedule::{Refusal, Schedule};
use domain::staff::Staff;
use domain::values::{NonEmptyText, Role, TimeRange};
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

/// Refuses a slot outside the doctor's working hours, in their time off, or off the clinic's
/// slot grid (all in clinic-local time), unless a clinic admin overrides it.
async fn check_schedule(
    state: &AppState,
    principal: &Principal,
    doctor: &Staff,
    slot: &TimeRange,
    override_hours: bool,
) -> Result<(), ApiError> {
    if override_hours {
        if principal.role != ActorRole::ClinicAdmin {
            return Err(ApiError::Forbidden(
                "only a clinic admin may override working hours".into(),
            ));
        }
        return Ok(());
    }
    let clinic_id = principal.clinic()?;
    let (clinic, _) = state
        .store
        .load::<Clinic>(clinic_id, clinic_id.as_uuid())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound("clinic not found".into()))?;
    let time_zone = clinic
        .time_zone()
        .ok_or_else(|| ApiError::NotFound("clinic not found".into()))?;
    let time_off: Vec<TimeRange> = doctor.time_off().iter().map(|t| t.range).collect();
    let schedule = Schedule {
        hours: doctor.working_hours(),
        time_off: &time_off,
        time_zone: &time_zone,
        step_minutes: clinic.slot_minutes(),
    };
    match schedule.check(slot) {
        Ok(()) => Ok(()),
        Err(Refusal::OffGrid) => Err(ApiError::field(
            "start",
            format!(
                "must start on the clinic's {}-minute grid in {} time",
                clinic.slot_minutes(),
                time_zone
            ),
        )),
        Err(Refusal::OutsideHours) => Err(ApiError::OutsideWorkingHours(format!(
            "the doctor does not work at that time (working hours are in {time_zone} time)"
        ))),
        Err(Refusal::TimeOff) => Err(ApiError::OutsideWorkingHours(
            "the doctor is on time off at that time".into(),
        )),
    }
}

/// An appointment of the caller's clinic (404 otherwise); a doctor gets 403 for another
/// doctor's.
async fn own_appointment(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<Appointment, ApiError> {
    let (appointment, _) = state
        .store
        .load::<Appointment>(principal.clinic()?, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound("appointment not found".into()))?;
    if principal.role == ActorRole::Doctor && appointment.doctor_id() != principal.staff_id() {
        return Err(ApiError::Forbidden(
            "a doctor may only act on their own appointments".into(),
        ));
    }
    Ok(appointment)
}

async fn execute(
    state: &AppState,
    principal: &Principal,
    cmd: &CommandRequest,
    id: Uuid,
    command: AppointmentCommand,
) -> Result<CommandResponse, ApiError> {
    let committed = state
        .store
        .execute::<Appointment>(&principal.meta()?, id, command, cmd.expect)
        .await
        .map_err(ApiError::from_command)?;
    Ok(CommandResponse::updated(id, &committed))
}

/// Runs a command on an existing appointment of the caller's clinic, after the role check and
/// (for a doctor) the own-appointment check. For other roles the domain's own NotFound answers
/// for a missing appointment, so nothing is loaded twice.
async fn transition(
    state: &AppState,
    principal: &Principal,
    cmd: &CommandRequest,
    id: Uuid,
    command: AppointmentCommand,
) -> Result<CommandResponse, ApiError> {
    if principal.role == ActorRole::Doctor {
        own_appointment(state, principal, id).await?;
    }
    execute(state, principal, cmd, id, command).await
}

/// Book an appointment. The patient and the doctor must be active in the caller's clinic, and
/// the doctor must have the doctor role (422 naming the field otherwise).
#[utoipa::path(post, path = "/v1/appointments", tag = "appointments", request_body = BookAppointment,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Booked; `Location` names the appointment", body = CommandAccepted), CommandProblems))]
async fn book(
    State(state): State<AppState>,
    principal: Principal,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::BOOKING)?;
    cmd.run(&state, &principal, &body, async {
        let req: BookAppointment = body.parse()?;
        let slot = slot(req.start, req.end)?;
        let meta = principal.meta()?;
        if principal.role == ActorRole::Doctor
            && principal.staff_id() != Some(StaffId::from_uuid(req.doctor_id))
        {
            return Err(ApiError::Forbidden(
                "a doctor may only book their own appointments".into(),
            ));
        }
        match state
            .store
            .load::<Patient>(meta.clinic_id, req.patient_id)
            .await
            .map_err(ApiError::internal)?
        {
            Some((patient, _)) if patient.is_active() => {}
            Some(_) => return Err(ApiError::field("patient_id", "the patient is not active")),
            None => {
                return Err(ApiError::field(
                    "patient_id",
                    "no such patient in your clinic",
                ))
            }
        }
        match state
            .store
            .load::<Staff>(meta.clinic_id, req.doctor_id)
            .await
            .map_err(ApiError::internal)?
        {
            Some((doctor, _)) if !doctor.is_active() => {
                return Err(ApiError::field("doctor_id", "the doctor is not active"))
            }
            Some((doctor, _)) if doctor.role() != Some(Role::Doctor) => {
                return Err(ApiError::field(
                    "doctor_id",
                    "this staff member is not a doctor",
                ))
            }
            Some((doctor, _)) => {
                check_schedule(&state, &principal, &doctor, &slot, req.override_hours).await?
            }
            None => {
                return Err(ApiError::field(
                    "doctor_id",
                    "no such doctor in your clinic",
                ))
            }
        }
        let appointment_id = AppointmentId::new();
        let committed = state
            .store
            .execute::<Appointment>(
                &meta,
                appointment_id.as_uuid(),
                AppointmentCommand::Book {
                    appointment_id,
                    clinic_id: meta.clinic_id,
                    patient_id: PatientId::from_uuid(req.patient_id),
                    doctor_id: StaffId::from_uuid(req.doctor_id),
                    slot,
                    reason: req.reason,
                    override_hours: req.override_hours,
                },
                cmd.expect,
            )
            .await
            .map_err(ApiError::from_command)?;
        Ok(CommandResponse::created(
            appointment_id.as_uuid(),
            format!("/v1/appointments/{appointment_id}"),
            &committed,
        ))
    })
    .await
}

/// Move a booked appointment to another time.
#[utoipa::path(post, path = "/v1/appointments/{id}/reschedule", tag = "appointments", request_body = Reschedule,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Appointment id")),
    responses((status = 200, description = "Rescheduled", body = CommandAccepted), CommandProblems))]
async fn reschedule(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::BOOKING)?;
    cmd.run(&state, &principal, &body, async {
        let req: Reschedule = body.parse()?;
        let slot = slot(req.start, req.end)?;
        let appointment = own_appointment(&state, &principal, id).await?;
        if let Some(doctor_id) = appointment.doctor_id() {
            if let Some((doctor, _)) = state
                .store
                .load::<Staff>(principal.clinic()?, doctor_id.as_uuid())
                .await
                .map_err(ApiError::internal)?
            {
                check_schedule(&state, &principal, &doctor, &slot, req.override_hours).await?;
            }
        }
        let command = AppointmentCommand::Reschedule {
            slot,
            override_hours: req.override_hours,
        };
        execute(&state, &principal, &cmd, id, command).await
    })
    .await
}

/// Cancel a booked appointment. Cancelling twice is a 409.
#[utoipa::path(post, path = "/v1/appointments/{id}/cancel", tag = "appointments", request_body = Cancel,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Appointment id")),
    responses((status = 200, description = "Cancelled", body = CommandAccepted), CommandProblems))]
async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::BOOKING)?;
    cmd.run(&state, &principal, &body, async {
        let req: Cancel = body.parse()?;
        let by = principal
            .staff_id()
            .ok_or_else(|| ApiError::Forbidden("only clinic staff may cancel".into()))?;
        transition(
            &state,
            &principal,
            &cmd,
            id,
            AppointmentCommand::Cancel {
                reason: req.reason,
                by,
            },
        )
        .await
    })
    .await
}

macro_rules! simple_transition {
    ($name:ident, $path:literal, $roles:expr, $command:expr, $doc:literal, $done:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "appointments",
            security(("bearer" = [])), params(("id" = Uuid, Path, description = "Appointment id")),
            responses((status = 200, description = $done, body = CommandAccepted), CommandProblems))]
        async fn $name(
            State(state): State<AppState>,
            principal: Principal,
            IdPath(id): IdPath,
            cmd: CommandRequest,
            body: JsonBody,
        ) -> Result<Response, ApiError> {
            principal.require($roles)?;
            cmd.run(&state, &principal, &body, async {
                let _: Empty = body.parse()?;
                transition(&state, &principal, &cmd, id, $command).await
            })
            .await
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
