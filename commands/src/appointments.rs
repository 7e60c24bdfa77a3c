//! Appointment use cases: booking and rescheduling look at the patient, the doctor and the
//! clinic before the appointment decides; a doctor may only act on their own appointments.
//! Each use case is one transaction: what it reads and what it appends commit together.
//!
//! The doctor's schedule (hours, time off, the clinic's grid) is checked by the `Appointment`
//! aggregate itself, from the [`DoctorSchedule`] these use cases put in the command.

use domain::appointment::{Appointment, AppointmentCommand, AppointmentError};
use domain::clinic::Clinic;
use domain::ids::{AppointmentId, PatientId, StaffId};
use domain::patient::Patient;
use domain::schedule::DoctorSchedule;
use domain::staff::Staff;
use domain::values::{AppointmentType, NonEmptyText, Role, TimeRange};
use uuid::Uuid;

use crate::error::{CommandError, StoreError};
use crate::metadata::{ActorRole, CommandMeta};
use crate::plans;
use crate::registry;
use crate::store::{Committed, EventStore, Expect};
use crate::tx::{stream, CommandTx};

/// Book `patient_id` with `doctor_id` in `slot`.
#[derive(Debug, Clone)]
pub struct Book {
    pub patient_id: PatientId,
    pub doctor_id: StaffId,
    pub slot: TimeRange,
    pub reason: Option<NonEmptyText>,
    /// The kind of visit, which the fee schedule prices by.
    pub appointment_type: Option<AppointmentType>,
    /// Clinic admins only: book outside the doctor's working hours, time off or grid.
    pub override_hours: bool,
}

/// Move an appointment to `slot`.
#[derive(Debug, Clone)]
pub struct Reschedule {
    pub slot: TimeRange,
    /// Clinic admins only, as for booking.
    pub override_hours: bool,
}

/// A booking that committed.
#[derive(Debug, Clone)]
pub struct Booked {
    pub appointment_id: AppointmentId,
    pub committed: Committed,
}

/// Why a booking, a reschedule or another appointment command did not commit.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("no such patient in your clinic")]
    PatientNotFound,
    #[error("the patient is not active")]
    PatientInactive,
    #[error("no such doctor in your clinic")]
    DoctorNotFound,
    #[error("the doctor is not active")]
    DoctorInactive,
    #[error("this staff member is not a doctor")]
    NotADoctor,
    /// A doctor booking another doctor (forbidden).
    #[error("a doctor may only book their own appointments")]
    NotOwnBooking,
    /// A doctor acting on another doctor's appointment (forbidden).
    #[error("a doctor may only act on their own appointments")]
    NotOwnAppointment,
    /// Overriding the working hours without being a clinic admin (forbidden).
    #[error("only a clinic admin may override working hours")]
    OverrideNotAllowed,
    #[error("appointment not found")]
    AppointmentNotFound,
    #[error("clinic not found")]
    ClinicNotFound,
    #[error(transparent)]
    Command(#[from] CommandError<AppointmentError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BookingError {
    /// The request field at fault, for the errors about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            BookingError::PatientNotFound | BookingError::PatientInactive => Some("patient_id"),
            BookingError::DoctorNotFound
            | BookingError::DoctorInactive
            | BookingError::NotADoctor => Some("doctor_id"),
            _ => None,
        }
    }

    /// Whether the caller's role or identity forbids the command.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            BookingError::NotOwnBooking
                | BookingError::NotOwnAppointment
                | BookingError::OverrideNotAllowed
        )
    }
}

/// Books an appointment: the patient and the doctor must be active in the caller's clinic, the
/// doctor must be a doctor (and, for a doctor caller, the caller), and the slot must fit the
/// doctor's schedule unless a clinic admin overrides it. One transaction: the patient, the
/// doctor and the clinic are read in one statement, the new appointment stream is not read.
pub async fn book(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    req: Book,
) -> Result<Booked, BookingError> {
    check_own_booking(meta, req.doctor_id)?;
    let clinic = meta.clinic_id;
    let mut tx = store.begin().await?;
    // The clinic: its plan (monthly bookings) and, unless overridden, the hours' time zone.
    let wanted = [
        stream::<Patient>(clinic, req.patient_id.as_uuid()),
        stream::<Staff>(clinic, req.doctor_id.as_uuid()),
        stream::<Clinic>(clinic, clinic.as_uuid()),
    ];
    let facts = tx.load_streams(&wanted).await?;
    // A doctor books only a patient they may already see: a booking must not be the way to
    // see a record (the desk books a patient's first visit with a doctor). Checked before the
    // patient, so that the answer says nothing about a patient the doctor may not see.
    if meta.actor.role == ActorRole::Doctor
        && !registry::doctor_sees_patient(tx.conn(), clinic, req.doctor_id, req.patient_id).await?
    {
        return Err(BookingError::PatientNotFound);
    }
    let patient = facts.get::<Patient>(clinic, req.patient_id.as_uuid())?;
    check_patient(patient.map(|(p, _)| p).as_ref())?;
    let doctor = facts.get::<Staff>(clinic, req.doctor_id.as_uuid())?;
    let doctor = doctor.map(|(d, _)| d);
    let doctor = check_doctor(doctor.as_ref())?;
    let clinic_state = facts
        .get::<Clinic>(clinic, clinic.as_uuid())?
        .map(|(c, _)| c);
    let schedule = schedule_to_check(meta, doctor, clinic_state.as_ref(), req.override_hours)?;
    if let Some(c) = &clinic_state {
        if let Some(time_zone) = c.time_zone() {
            let now = tx.now();
            plans::admit_booking::<AppointmentError>(&mut tx, clinic, c.plan(), time_zone, now)
                .await?;
        }
    }
    let appointment_id = AppointmentId::new();
    let command = AppointmentCommand::Book {
        appointment_id,
        clinic_id: meta.clinic_id,
        patient_id: req.patient_id,
        doctor_id: req.doctor_id,
        slot: req.slot,
        reason: req.reason,
        appointment_type: req.appointment_type,
        override_hours: req.override_hours,
        schedule,
    };
    let id = appointment_id.as_uuid();
    let committed = tx
        .decide::<Appointment>(meta, id, None, command, expect)
        .await?;
    tx.commit().await?;
    Ok(Booked {
        appointment_id,
        committed,
    })
}

/// Moves appointment `id` to another slot, which must fit its doctor's schedule unless a
/// clinic admin overrides it. One transaction: the appointment, then its doctor and the
/// clinic in one statement; the appointment is not read again to decide.
pub async fn reschedule(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: Uuid,
    req: Reschedule,
) -> Result<Committed, BookingError> {
    let clinic = meta.clinic_id;
    let mut tx = store.begin().await?;
    let loaded = own_appointment(&mut tx, meta, id).await?;
    let mut schedule = None;
    if let Some(doctor_id) = loaded.0.doctor_id() {
        let mut wanted = vec![stream::<Staff>(clinic, doctor_id.as_uuid())];
        if !req.override_hours {
            wanted.push(stream::<Clinic>(clinic, clinic.as_uuid()));
        }
        let facts = tx.load_streams(&wanted).await?;
        if let Some((doctor, _)) = facts.get::<Staff>(clinic, doctor_id.as_uuid())? {
            let clinic_state = facts
                .get::<Clinic>(clinic, clinic.as_uuid())?
                .map(|(c, _)| c);
            schedule = schedule_to_check(meta, &doctor, clinic_state.as_ref(), req.override_hours)?;
        }
    }
    let command = AppointmentCommand::Reschedule {
        slot: req.slot,
        override_hours: req.override_hours,
        schedule,
    };
    let committed = tx.decide(meta, id, Some(loaded), command, expect).await?;
    tx.commit().await?;
    Ok(committed)
}

/// Runs `command` on appointment `id`; a doctor may only act on their own appointments. For
/// other roles the domain's own NotFound answers for a missing appointment. The appointment
/// is read once, in the command's transaction.
pub async fn act(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: Uuid,
    command: AppointmentCommand,
) -> Result<Committed, BookingError> {
    let mut tx = store.begin().await?;
    let loaded = if meta.actor.role == ActorRole::Doctor {
        Some(own_appointment(&mut tx, meta, id).await?)
    } else {
        tx.load::<Appointment>(meta.clinic_id, id).await?
    };
    let committed = tx.decide(meta, id, loaded, command, expect).await?;
    tx.commit().await?;
    Ok(committed)
}

/// An appointment of the caller's clinic and its version; a doctor only gets their own.
async fn own_appointment(
    tx: &mut CommandTx<'_>,
    meta: &CommandMeta,
    id: Uuid,
) -> Result<(Appointment, u64), BookingError> {
    let loaded = tx
        .load::<Appointment>(meta.clinic_id, id)
        .await?
        .ok_or(BookingError::AppointmentNotFound)?;
    check_own_appointment(meta, &loaded.0)?;
    Ok(loaded)
}

/// The schedule the slot must fit: none when a clinic admin overrides the hours. `clinic` is
/// the clinic as the command read it (with the doctor), folded once by the caller.
fn schedule_to_check(
    meta: &CommandMeta,
    doctor: &Staff,
    clinic: Option<&Clinic>,
    override_hours: bool,
) -> Result<Option<DoctorSchedule>, BookingError> {
    if check_override(meta, override_hours)? {
        return Ok(None);
    }
    doctor_schedule(doctor, clinic).map(Some)
}

fn check_own_booking(meta: &CommandMeta, doctor_id: StaffId) -> Result<(), BookingError> {
    if meta.actor.role == ActorRole::Doctor && meta.actor.id != doctor_id.as_uuid() {
        return Err(BookingError::NotOwnBooking);
    }
    Ok(())
}

fn check_own_appointment(
    meta: &CommandMeta,
    appointment: &Appointment,
) -> Result<(), BookingError> {
    if meta.actor.role == ActorRole::Doctor
        && appointment.doctor_id() != Some(StaffId::from_uuid(meta.actor.id))
    {
        return Err(BookingError::NotOwnAppointment);
    }
    Ok(())
}

/// Whether the hours are overridden; only a clinic admin may.
fn check_override(meta: &CommandMeta, override_hours: bool) -> Result<bool, BookingError> {
    if override_hours && meta.actor.role != ActorRole::ClinicAdmin {
        return Err(BookingError::OverrideNotAllowed);
    }
    Ok(override_hours)
}

fn check_patient(patient: Option<&Patient>) -> Result<(), BookingError> {
    match patient {
        Some(p) if p.is_active() => Ok(()),
        Some(_) => Err(BookingError::PatientInactive),
        None => Err(BookingError::PatientNotFound),
    }
}

fn check_doctor(doctor: Option<&Staff>) -> Result<&Staff, BookingError> {
    match doctor {
        None => Err(BookingError::DoctorNotFound),
        Some(d) if !d.is_active() => Err(BookingError::DoctorInactive),
        Some(d) if d.role() != Some(Role::Doctor) => Err(BookingError::NotADoctor),
        Some(d) => Ok(d),
    }
}

/// The doctor's schedule in the clinic's time zone and on its grid.
fn doctor_schedule(
    doctor: &Staff,
    clinic: Option<&Clinic>,
) -> Result<DoctorSchedule, BookingError> {
    let clinic = clinic.ok_or(BookingError::ClinicNotFound)?;
    let time_zone = clinic.time_zone().ok_or(BookingError::ClinicNotFound)?;
    Ok(DoctorSchedule {
        hours: doctor.working_hours().clone(),
        time_off: doctor.time_off().iter().map(|t| t.range).collect(),
        time_zone,
        step_minutes: clinic.slot_minutes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{clinic, doctor, meta, patient, staff};

    #[test]
    fn a_doctor_books_only_themselves() {
        let me = StaffId::new();
        let as_doctor = meta(ActorRole::Doctor, me.as_uuid());
        assert!(check_own_booking(&as_doctor, me).is_ok());
        assert!(matches!(
            check_own_booking(&as_doctor, StaffId::new()),
            Err(BookingError::NotOwnBooking)
        ));
        let desk = meta(ActorRole::Receptionist, Uuid::new_v4());
        assert!(check_own_booking(&desk, StaffId::new()).is_ok());
    }

    #[test]
    fn only_a_clinic_admin_overrides_hours() {
        let admin = meta(ActorRole::ClinicAdmin, Uuid::new_v4());
        assert!(check_override(&admin, true).unwrap());
        assert!(!check_override(&admin, false).unwrap());
        for role in [ActorRole::Doctor, ActorRole::Nurse, ActorRole::Receptionist] {
            let m = meta(role, Uuid::new_v4());
            let err = check_override(&m, true).unwrap_err();
            assert!(matches!(err, BookingError::OverrideNotAllowed));
            assert!(err.is_forbidden());
            assert!(!check_override(&m, false).unwrap());
        }
    }

    #[test]
    fn the_patient_must_exist_and_be_active() {
        assert!(check_patient(Some(&patient(true))).is_ok());
        let e = check_patient(Some(&patient(false))).unwrap_err();
        assert!(matches!(e, BookingError::PatientInactive));
        assert_eq!(e.field(), Some("patient_id"));
        let e = check_patient(None).unwrap_err();
        assert!(matches!(e, BookingError::PatientNotFound));
        assert_eq!(e.to_string(), "no such patient in your clinic");
    }

    #[test]
    fn the_doctor_must_exist_be_active_and_be_a_doctor() {
        assert!(check_doctor(Some(&doctor(true))).is_ok());
        let e = check_doctor(Some(&doctor(false))).unwrap_err();
        assert!(matches!(e, BookingError::DoctorInactive));
        assert_eq!(e.field(), Some("doctor_id"));
        let e = check_doctor(Some(&staff(Role::Nurse, true))).unwrap_err();
        assert!(matches!(e, BookingError::NotADoctor));
        assert_eq!(e.field(), Some("doctor_id"));
        assert!(matches!(
            check_doctor(None),
            Err(BookingError::DoctorNotFound)
        ));
    }

    #[test]
    fn a_doctor_acts_only_on_their_own_appointments() {
        let (me, other) = (StaffId::new(), StaffId::new());
        let booked = crate::testing::appointment(me);
        assert!(check_own_appointment(&meta(ActorRole::Doctor, me.as_uuid()), &booked).is_ok());
        let e = check_own_appointment(&meta(ActorRole::Doctor, other.as_uuid()), &booked);
        assert!(matches!(e, Err(BookingError::NotOwnAppointment)));
        let nurse = meta(ActorRole::Nurse, other.as_uuid());
        assert!(check_own_appointment(&nurse, &booked).is_ok());
    }

    #[test]
    fn the_schedule_is_the_doctors_on_the_clinics_grid() {
        let d = doctor(true);
        let c = clinic();
        let s = doctor_schedule(&d, Some(&c)).unwrap();
        assert_eq!(s.step_minutes, c.slot_minutes());
        assert_eq!(Some(s.time_zone), c.time_zone());
        assert_eq!(&s.hours, d.working_hours());
        assert!(matches!(
            doctor_schedule(&d, None),
            Err(BookingError::ClinicNotFound)
        ));
    }
}
