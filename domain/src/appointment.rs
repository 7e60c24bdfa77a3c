//! The `Appointment` aggregate: one patient's booked slot with one doctor, and
//! its lifecycle (FHIR R4 `Appointment.status` codes).
//!
//! Double-booking a doctor is prevented outside this aggregate (the doctor's
//! schedule is the consistency boundary); this aggregate guards its own lifecycle.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::clock::Services;
use crate::error::{DomainError, ErrorKind};
use crate::ids::{AppointmentId, ClinicId, PatientId, StaffId};
use crate::schedule::{DoctorSchedule, Refusal};
use crate::values::{AppointmentType, NonEmptyText, TimeRange, TimeZone};

/// The longest bookable appointment.
pub const MAX_DURATION_HOURS: i64 = 12;

/// FHIR R4 appointment status codes used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppointmentStatus {
    Booked,
    CheckedIn,
    InProgress,
    Fulfilled,
    Cancelled,
    #[serde(rename = "noshow")]
    NoShow,
}

impl AppointmentStatus {
    pub const ALL: &'static [AppointmentStatus] = &[
        AppointmentStatus::Booked,
        AppointmentStatus::CheckedIn,
        AppointmentStatus::InProgress,
        AppointmentStatus::Fulfilled,
        AppointmentStatus::Cancelled,
        AppointmentStatus::NoShow,
    ];

    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::CheckedIn => "checked-in",
            AppointmentStatus::InProgress => "in-progress",
            AppointmentStatus::Fulfilled => "fulfilled",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::NoShow => "noshow",
        }
    }

    /// Whether the appointment still occupies its slot.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            AppointmentStatus::Booked
                | AppointmentStatus::CheckedIn
                | AppointmentStatus::InProgress
        )
    }

    /// Whether no further transition is possible.
    pub fn is_final(self) -> bool {
        !self.is_active()
    }
}

impl fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AppointmentStatus {
    type Err = crate::values::ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AppointmentStatus::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s.trim())
            .ok_or_else(|| crate::values::ValueError::UnknownVariant {
                kind: "appointment status",
                value: s.trim().to_owned(),
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppointmentCommand {
    Book {
        appointment_id: AppointmentId,
        clinic_id: ClinicId,
        patient_id: PatientId,
        doctor_id: StaffId,
        slot: TimeRange,
        reason: Option<NonEmptyText>,
        /// The kind of visit, which the fee schedule prices by (`None`: the clinic's default).
        #[serde(default)]
        appointment_type: Option<AppointmentType>,
        /// A clinic admin booked outside the doctor's working hours (or time off, or off the
        /// slot grid); the caller checked the role, the event records it.
        #[serde(default)]
        override_hours: bool,
        /// The doctor's schedule, which the slot must fit unless `override_hours`; `None`
        /// when there is nothing to check against.
        #[serde(default)]
        schedule: Option<DoctorSchedule>,
    },
    Reschedule {
        slot: TimeRange,
        #[serde(default)]
        override_hours: bool,
        /// As for `Book`.
        #[serde(default)]
        schedule: Option<DoctorSchedule>,
    },
    Cancel {
        reason: NonEmptyText,
        by: StaffId,
    },
    CheckIn,
    Start,
    Complete,
    MarkNoShow,
}

/// Every event carries `at`, the instant (from the clock) it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppointmentEvent {
    AppointmentBooked {
        appointment_id: AppointmentId,
        clinic_id: ClinicId,
        patient_id: PatientId,
        doctor_id: StaffId,
        slot: TimeRange,
        reason: Option<NonEmptyText>,
        /// Absent from events written before appointment types existed: `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        appointment_type: Option<AppointmentType>,
        /// Booked outside the doctor's working hours by a clinic admin.
        #[serde(default)]
        override_hours: bool,
        at: DateTime<Utc>,
    },
    AppointmentRescheduled {
        from: TimeRange,
        to: TimeRange,
        #[serde(default)]
        override_hours: bool,
        at: DateTime<Utc>,
    },
    AppointmentCancelled {
        reason: NonEmptyText,
        by: StaffId,
        at: DateTime<Utc>,
    },
    PatientCheckedIn {
        at: DateTime<Utc>,
    },
    AppointmentStarted {
        at: DateTime<Utc>,
    },
    AppointmentCompleted {
        at: DateTime<Utc>,
    },
    AppointmentMarkedNoShow {
        at: DateTime<Utc>,
    },
}

impl AppointmentEvent {
    /// The instant the event happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            AppointmentEvent::AppointmentBooked { at, .. }
            | AppointmentEvent::AppointmentRescheduled { at, .. }
            | AppointmentEvent::AppointmentCancelled { at, .. }
            | AppointmentEvent::PatientCheckedIn { at }
            | AppointmentEvent::AppointmentStarted { at }
            | AppointmentEvent::AppointmentCompleted { at }
            | AppointmentEvent::AppointmentMarkedNoShow { at } => *at,
        }
    }
}

impl DomainEvent for AppointmentEvent {
    fn event_type(&self) -> String {
        match self {
            AppointmentEvent::AppointmentBooked { .. } => "AppointmentBooked",
            AppointmentEvent::AppointmentRescheduled { .. } => "AppointmentRescheduled",
            AppointmentEvent::AppointmentCancelled { .. } => "AppointmentCancelled",
            AppointmentEvent::PatientCheckedIn { .. } => "PatientCheckedIn",
            AppointmentEvent::AppointmentStarted { .. } => "AppointmentStarted",
            AppointmentEvent::AppointmentCompleted { .. } => "AppointmentCompleted",
            AppointmentEvent::AppointmentMarkedNoShow { .. } => "AppointmentMarkedNoShow",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppointmentError {
    #[error("appointment not found")]
    NotFound,
    #[error("appointment is already booked")]
    AlreadyBooked,
    #[error("appointment cannot start in the past")]
    StartInPast,
    #[error("appointment may last at most {max_hours} hours")]
    TooLong { max_hours: i64 },
    #[error("appointment is already in that slot")]
    SameSlot,
    #[error("cannot {action} an appointment that is {from}")]
    IllegalTransition {
        from: AppointmentStatus,
        action: &'static str,
    },
    #[error("appointment is already cancelled")]
    AlreadyCancelled,
    #[error("must start on the clinic's {step_minutes}-minute grid in {time_zone} time")]
    OffGrid {
        step_minutes: u32,
        time_zone: TimeZone,
    },
    #[error("the doctor does not work at that time (working hours are in {time_zone} time)")]
    OutsideWorkingHours { time_zone: TimeZone },
    #[error("the doctor is on time off at that time")]
    DoctorOnTimeOff,
}

impl AppointmentError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AppointmentError::NotFound => ErrorKind::NotFound,
            AppointmentError::AlreadyBooked
            | AppointmentError::IllegalTransition { .. }
            | AppointmentError::AlreadyCancelled => ErrorKind::Conflict,
            AppointmentError::StartInPast
            | AppointmentError::TooLong { .. }
            | AppointmentError::SameSlot
            | AppointmentError::OffGrid { .. } => ErrorKind::Invalid,
            AppointmentError::OutsideWorkingHours { .. } | AppointmentError::DoctorOnTimeOff => {
                ErrorKind::Unavailable
            }
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            AppointmentError::StartInPast
            | AppointmentError::OffGrid { .. }
            | AppointmentError::OutsideWorkingHours { .. }
            | AppointmentError::DoctorOnTimeOff => Some("start"),
            AppointmentError::TooLong { .. } => Some("end"),
            AppointmentError::SameSlot => Some("slot"),
            _ => None,
        }
    }
}

impl DomainError for AppointmentError {
    fn kind(&self) -> ErrorKind {
        AppointmentError::kind(self)
    }

    fn field(&self) -> Option<&'static str> {
        AppointmentError::field(self)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Appointment {
    id: Option<AppointmentId>,
    clinic_id: Option<ClinicId>,
    patient_id: Option<PatientId>,
    doctor_id: Option<StaffId>,
    slot: Option<TimeRange>,
    reason: Option<NonEmptyText>,
    appointment_type: Option<AppointmentType>,
    status: Option<AppointmentStatus>,
    cancellation_reason: Option<NonEmptyText>,
}

fn check_slot(slot: &TimeRange, now: DateTime<Utc>) -> Result<(), AppointmentError> {
    if slot.start() < now {
        return Err(AppointmentError::StartInPast);
    }
    if slot.duration() > Duration::hours(MAX_DURATION_HOURS) {
        return Err(AppointmentError::TooLong {
            max_hours: MAX_DURATION_HOURS,
        });
    }
    Ok(())
}

/// Refuses a slot outside the doctor's working hours, in their time off, or off the clinic's
/// slot grid (all in clinic-local time), unless a clinic admin overrides the hours.
fn check_schedule(
    schedule: Option<&DoctorSchedule>,
    override_hours: bool,
    slot: &TimeRange,
) -> Result<(), AppointmentError> {
    let Some(schedule) = schedule.filter(|_| !override_hours) else {
        return Ok(());
    };
    schedule.check(slot).map_err(|refusal| match refusal {
        Refusal::OffGrid => AppointmentError::OffGrid {
            step_minutes: schedule.step_minutes,
            time_zone: schedule.time_zone,
        },
        Refusal::OutsideHours => AppointmentError::OutsideWorkingHours {
            time_zone: schedule.time_zone,
        },
        Refusal::TimeOff => AppointmentError::DoctorOnTimeOff,
    })
}

impl Appointment {
    pub fn id(&self) -> Option<AppointmentId> {
        self.id
    }

    pub fn clinic_id(&self) -> Option<ClinicId> {
        self.clinic_id
    }

    pub fn patient_id(&self) -> Option<PatientId> {
        self.patient_id
    }

    pub fn doctor_id(&self) -> Option<StaffId> {
        self.doctor_id
    }

    pub fn slot(&self) -> Option<TimeRange> {
        self.slot
    }

    pub fn reason(&self) -> Option<&NonEmptyText> {
        self.reason.as_ref()
    }

    pub fn appointment_type(&self) -> Option<&AppointmentType> {
        self.appointment_type.as_ref()
    }

    /// `None` until booked.
    pub fn status(&self) -> Option<AppointmentStatus> {
        self.status
    }

    pub fn is_booked(&self) -> bool {
        self.status.is_some()
    }

    pub fn cancellation_reason(&self) -> Option<&NonEmptyText> {
        self.cancellation_reason.as_ref()
    }

    fn current(&self) -> Result<AppointmentStatus, AppointmentError> {
        self.status.ok_or(AppointmentError::NotFound)
    }

    /// Checks that the appointment is `required` before doing `action`.
    fn transition(
        &self,
        required: AppointmentStatus,
        action: &'static str,
    ) -> Result<(), AppointmentError> {
        let from = self.current()?;
        if from != required {
            return Err(AppointmentError::IllegalTransition { from, action });
        }
        Ok(())
    }

    /// Decides which events a command produces, without changing state.
    pub fn decide(
        &self,
        command: AppointmentCommand,
        services: &Services,
    ) -> Result<Vec<AppointmentEvent>, AppointmentError> {
        use AppointmentCommand as C;
        use AppointmentEvent as E;
        use AppointmentStatus as S;
        let at = services.now();
        match command {
            C::Book {
                appointment_id,
                clinic_id,
                patient_id,
                doctor_id,
                slot,
                reason,
                appointment_type,
                override_hours,
                schedule,
            } => {
                check_schedule(schedule.as_ref(), override_hours, &slot)?;
                if self.is_booked() {
                    return Err(AppointmentError::AlreadyBooked);
                }
                check_slot(&slot, at)?;
                Ok(vec![E::AppointmentBooked {
                    appointment_id,
                    clinic_id,
                    patient_id,
                    doctor_id,
                    slot,
                    reason,
                    appointment_type,
                    override_hours,
                    at,
                }])
            }
            C::Reschedule {
                slot,
                override_hours,
                schedule,
            } => {
                self.current()?;
                check_schedule(schedule.as_ref(), override_hours, &slot)?;
                self.transition(S::Booked, "reschedule")?;
                let from = self.slot.ok_or(AppointmentError::NotFound)?;
                if from == slot {
                    return Err(AppointmentError::SameSlot);
                }
                check_slot(&slot, at)?;
                Ok(vec![E::AppointmentRescheduled {
                    from,
                    to: slot,
                    override_hours,
                    at,
                }])
            }
            C::Cancel { reason, by } => {
                if self.current()? == S::Cancelled {
                    return Err(AppointmentError::AlreadyCancelled);
                }
                self.transition(S::Booked, "cancel")?;
                Ok(vec![E::AppointmentCancelled { reason, by, at }])
            }
            C::CheckIn => {
                self.transition(S::Booked, "check in")?;
                Ok(vec![E::PatientCheckedIn { at }])
            }
            C::Start => {
                self.transition(S::CheckedIn, "start")?;
                Ok(vec![E::AppointmentStarted { at }])
            }
            C::Complete => {
                self.transition(S::InProgress, "complete")?;
                Ok(vec![E::AppointmentCompleted { at }])
            }
            C::MarkNoShow => {
                self.transition(S::Booked, "mark as no-show")?;
                Ok(vec![E::AppointmentMarkedNoShow { at }])
            }
        }
    }
}

crate::aggregate!(
    Appointment,
    "Appointment",
    AppointmentCommand,
    AppointmentEvent,
    AppointmentError,
    decide_with_services
);

impl Appointment {
    /// How an event changes the state (cqrs-es's `Aggregate::apply`).
    fn evolve(&mut self, event: AppointmentEvent) {
        match event {
            AppointmentEvent::AppointmentBooked {
                appointment_id,
                clinic_id,
                patient_id,
                doctor_id,
                slot,
                reason,
                appointment_type,
                ..
            } => {
                self.appointment_type = appointment_type;
                self.id = Some(appointment_id);
                self.clinic_id = Some(clinic_id);
                self.patient_id = Some(patient_id);
                self.doctor_id = Some(doctor_id);
                self.slot = Some(slot);
                self.reason = reason;
                self.status = Some(AppointmentStatus::Booked);
            }
            AppointmentEvent::AppointmentRescheduled { to, .. } => self.slot = Some(to),
            AppointmentEvent::AppointmentCancelled { reason, .. } => {
                self.status = Some(AppointmentStatus::Cancelled);
                self.cancellation_reason = Some(reason);
            }
            AppointmentEvent::PatientCheckedIn { .. } => {
                self.status = Some(AppointmentStatus::CheckedIn)
            }
            AppointmentEvent::AppointmentStarted { .. } => {
                self.status = Some(AppointmentStatus::InProgress)
            }
            AppointmentEvent::AppointmentCompleted { .. } => {
                self.status = Some(AppointmentStatus::Fulfilled)
            }
            AppointmentEvent::AppointmentMarkedNoShow { .. } => {
                self.status = Some(AppointmentStatus::NoShow)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, now, services, text};
    use cqrs_es::test::TestFramework;
    use cqrs_es::Aggregate;
    use uuid::Uuid;
    use AppointmentStatus as S;

    fn fx() -> TestFramework<Appointment> {
        TestFramework::with(services())
    }

    fn ids() -> (AppointmentId, ClinicId, PatientId, StaffId) {
        (
            AppointmentId::from_uuid(Uuid::from_u128(5)),
            ClinicId::from_uuid(Uuid::from_u128(1)),
            PatientId::from_uuid(Uuid::from_u128(3)),
            StaffId::from_uuid(Uuid::from_u128(2)),
        )
    }

    fn range(a: &str, b: &str) -> TimeRange {
        TimeRange::new(at(a), at(b)).unwrap()
    }

    /// Tomorrow 09:00-09:30 (now = 2025-06-02T08:00Z).
    fn slot() -> TimeRange {
        range("2025-06-03T09:00:00Z", "2025-06-03T09:30:00Z")
    }

    fn book(slot: TimeRange) -> AppointmentCommand {
        let (appointment_id, clinic_id, patient_id, doctor_id) = ids();
        AppointmentCommand::Book {
            appointment_id,
            clinic_id,
            patient_id,
            doctor_id,
            slot,
            reason: Some(text("check-up")),
            appointment_type: Some(AppointmentType::parse("checkup").unwrap()),
            override_hours: false,
            schedule: None,
        }
    }

    fn booked() -> AppointmentEvent {
        let (appointment_id, clinic_id, patient_id, doctor_id) = ids();
        AppointmentEvent::AppointmentBooked {
            appointment_id,
            clinic_id,
            patient_id,
            doctor_id,
            slot: slot(),
            reason: Some(text("check-up")),
            appointment_type: Some(AppointmentType::parse("checkup").unwrap()),
            override_hours: false,
            at: now(),
        }
    }

    fn checked_in() -> AppointmentEvent {
        AppointmentEvent::PatientCheckedIn { at: now() }
    }

    fn started() -> AppointmentEvent {
        AppointmentEvent::AppointmentStarted { at: now() }
    }

    fn completed() -> AppointmentEvent {
        AppointmentEvent::AppointmentCompleted { at: now() }
    }

    fn cancelled() -> AppointmentEvent {
        AppointmentEvent::AppointmentCancelled {
            reason: text("ill"),
            by: ids().3,
            at: now(),
        }
    }

    fn no_show() -> AppointmentEvent {
        AppointmentEvent::AppointmentMarkedNoShow { at: now() }
    }

    fn cancel() -> AppointmentCommand {
        AppointmentCommand::Cancel {
            reason: text("ill"),
            by: ids().3,
        }
    }

    /// The events leading to each status.
    fn history(status: AppointmentStatus) -> Vec<AppointmentEvent> {
        match status {
            S::Booked => vec![booked()],
            S::CheckedIn => vec![booked(), checked_in()],
            S::InProgress => vec![booked(), checked_in(), started()],
            S::Fulfilled => vec![booked(), checked_in(), started(), completed()],
            S::Cancelled => vec![booked(), cancelled()],
            S::NoShow => vec![booked(), no_show()],
        }
    }

    fn kind_and_field(
        r: Result<Vec<AppointmentEvent>, AppointmentError>,
    ) -> (ErrorKind, Option<&'static str>) {
        let err = r.expect_err("expected an error");
        (DomainError::kind(&err), DomainError::field(&err))
    }

    // --- status ---

    #[test]
    fn status_codes_are_fhir() {
        for status in S::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(status.as_str().parse::<S>().unwrap(), *status);
        }
        assert_eq!(S::CheckedIn.as_str(), "checked-in");
        assert_eq!(S::InProgress.as_str(), "in-progress");
        assert_eq!(S::NoShow.as_str(), "noshow");
        assert!("no-show".parse::<S>().is_err());
    }

    #[test]
    fn active_statuses() {
        let active: Vec<_> = S::ALL.iter().filter(|s| s.is_active()).collect();
        assert_eq!(active, [&S::Booked, &S::CheckedIn, &S::InProgress]);
        assert!(S::Fulfilled.is_final() && S::Cancelled.is_final() && S::NoShow.is_final());
    }

    // --- book ---

    #[test]
    fn book_an_appointment() {
        fx().given_no_previous_events()
            .when(book(slot()))
            .then_expect_events(vec![booked()]);
    }

    #[test]
    fn book_twice_is_a_conflict() {
        let r = fx()
            .given(vec![booked()])
            .when(book(slot()))
            .inspect_result();
        assert_eq!(r, Err(AppointmentError::AlreadyBooked));
        assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
    }

    #[test]
    fn booking_in_the_past_is_invalid() {
        let r = fx()
            .given_no_previous_events()
            .when(book(range("2025-06-02T07:59:00Z", "2025-06-02T08:30:00Z")))
            .inspect_result();
        assert_eq!(r, Err(AppointmentError::StartInPast));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("start")));
    }

    #[test]
    fn booking_starting_now_is_fine() {
        let r = fx()
            .given_no_previous_events()
            .when(book(range("2025-06-02T08:00:00Z", "2025-06-02T08:30:00Z")))
            .inspect_result();
        assert!(r.is_ok());
    }

    #[test]
    fn booking_longer_than_twelve_hours_is_invalid() {
        let r = fx()
            .given_no_previous_events()
            .when(book(range("2025-06-03T08:00:00Z", "2025-06-03T20:01:00Z")))
            .inspect_result();
        assert_eq!(r, Err(AppointmentError::TooLong { max_hours: 12 }));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("end")));
        let ok = fx()
            .given_no_previous_events()
            .when(book(range("2025-06-03T08:00:00Z", "2025-06-03T20:00:00Z")))
            .inspect_result();
        assert!(ok.is_ok());
    }

    #[test]
    fn commands_on_unbooked_appointment_are_not_found() {
        for command in [
            AppointmentCommand::Reschedule {
                slot: slot(),
                override_hours: false,
                schedule: None,
            },
            cancel(),
            AppointmentCommand::CheckIn,
            AppointmentCommand::Start,
            AppointmentCommand::Complete,
            AppointmentCommand::MarkNoShow,
        ] {
            let r = fx()
                .given_no_previous_events()
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(AppointmentError::NotFound));
            assert_eq!(kind_and_field(r).0, ErrorKind::NotFound);
        }
    }

    // --- reschedule ---

    #[test]
    fn reschedule_a_booked_appointment() {
        let to = range("2025-06-04T10:00:00Z", "2025-06-04T10:30:00Z");
        fx().given(vec![booked()])
            .when(AppointmentCommand::Reschedule {
                slot: to,
                override_hours: false,
                schedule: None,
            })
            .then_expect_events(vec![AppointmentEvent::AppointmentRescheduled {
                from: slot(),
                to,
                override_hours: false,
                at: now(),
            }]);
    }

    #[test]
    fn reschedule_into_the_past_is_invalid() {
        fx().given(vec![booked()])
            .when(AppointmentCommand::Reschedule {
                slot: range("2025-06-01T10:00:00Z", "2025-06-01T10:30:00Z"),
                override_hours: false,
                schedule: None,
            })
            .then_expect_error(AppointmentError::StartInPast);
    }

    #[test]
    fn reschedule_to_a_too_long_slot_is_invalid() {
        fx().given(vec![booked()])
            .when(AppointmentCommand::Reschedule {
                slot: range("2025-06-04T00:00:00Z", "2025-06-04T13:00:00Z"),
                override_hours: false,
                schedule: None,
            })
            .then_expect_error(AppointmentError::TooLong { max_hours: 12 });
    }

    #[test]
    fn reschedule_to_the_same_slot_is_invalid() {
        let r = fx()
            .given(vec![booked()])
            .when(AppointmentCommand::Reschedule {
                slot: slot(),
                override_hours: false,
                schedule: None,
            })
            .inspect_result();
        assert_eq!(r, Err(AppointmentError::SameSlot));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("slot")));
    }

    #[test]
    fn reschedule_only_when_booked() {
        for status in [
            S::CheckedIn,
            S::InProgress,
            S::Fulfilled,
            S::Cancelled,
            S::NoShow,
        ] {
            fx().given(history(status))
                .when(AppointmentCommand::Reschedule {
                    slot: range("2025-06-04T10:00:00Z", "2025-06-04T10:30:00Z"),
                    override_hours: false,
                    schedule: None,
                })
                .then_expect_error(AppointmentError::IllegalTransition {
                    from: status,
                    action: "reschedule",
                });
        }
    }

    // --- lifecycle ---

    #[test]
    fn check_in_a_booked_appointment() {
        fx().given(history(S::Booked))
            .when(AppointmentCommand::CheckIn)
            .then_expect_events(vec![checked_in()]);
    }

    #[test]
    fn start_a_checked_in_appointment() {
        fx().given(history(S::CheckedIn))
            .when(AppointmentCommand::Start)
            .then_expect_events(vec![started()]);
    }

    #[test]
    fn complete_an_appointment_in_progress() {
        fx().given(history(S::InProgress))
            .when(AppointmentCommand::Complete)
            .then_expect_events(vec![completed()]);
    }

    #[test]
    fn cancel_a_booked_appointment() {
        fx().given(history(S::Booked))
            .when(cancel())
            .then_expect_events(vec![cancelled()]);
    }

    #[test]
    fn mark_a_booked_appointment_as_no_show() {
        fx().given(history(S::Booked))
            .when(AppointmentCommand::MarkNoShow)
            .then_expect_events(vec![no_show()]);
    }

    #[test]
    fn cancelling_a_cancelled_appointment_is_already_cancelled() {
        let r = fx()
            .given(history(S::Cancelled))
            .when(cancel())
            .inspect_result();
        assert_eq!(r, Err(AppointmentError::AlreadyCancelled));
        assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
    }

    #[test]
    fn every_other_transition_is_illegal() {
        let allowed = |command: &AppointmentCommand, from: S| {
            matches!(
                (command, from),
                (AppointmentCommand::CheckIn, S::Booked)
                    | (AppointmentCommand::Start, S::CheckedIn)
                    | (AppointmentCommand::Complete, S::InProgress)
                    | (AppointmentCommand::Cancel { .. }, S::Booked)
                    | (AppointmentCommand::MarkNoShow, S::Booked)
            )
        };
        let commands = [
            (AppointmentCommand::CheckIn, "check in"),
            (AppointmentCommand::Start, "start"),
            (AppointmentCommand::Complete, "complete"),
            (cancel(), "cancel"),
            (AppointmentCommand::MarkNoShow, "mark as no-show"),
        ];
        let mut checked = 0;
        for from in S::ALL.iter().copied() {
            for (command, action) in &commands {
                if allowed(command, from) {
                    continue;
                }
                if from == S::Cancelled && matches!(command, AppointmentCommand::Cancel { .. }) {
                    continue; // AlreadyCancelled, tested above
                }
                let r = fx()
                    .given(history(from))
                    .when(command.clone())
                    .inspect_result();
                assert_eq!(
                    r,
                    Err(AppointmentError::IllegalTransition { from, action }),
                    "{from} {action}"
                );
                assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
                checked += 1;
            }
        }
        assert_eq!(checked, 6 * 5 - 5 - 1);
    }

    #[test]
    fn illegal_transition_message() {
        let e = AppointmentError::IllegalTransition {
            from: S::Fulfilled,
            action: "cancel",
        };
        assert_eq!(
            e.to_string(),
            "cannot cancel an appointment that is fulfilled"
        );
    }

    // --- state and serialisation ---

    #[test]
    fn apply_builds_readable_state() {
        let mut a = Appointment::default();
        assert_eq!(a.status(), None);
        assert!(!a.is_booked());
        let to = range("2025-06-04T10:00:00Z", "2025-06-04T10:30:00Z");
        a.apply(booked());
        a.apply(AppointmentEvent::AppointmentRescheduled {
            from: slot(),
            to,
            override_hours: false,
            at: now(),
        });
        let (id, clinic, patient, doctor) = ids();
        assert_eq!(a.id(), Some(id));
        assert_eq!(a.clinic_id(), Some(clinic));
        assert_eq!(a.patient_id(), Some(patient));
        assert_eq!(a.doctor_id(), Some(doctor));
        assert_eq!(a.slot(), Some(to));
        assert_eq!(a.reason().map(NonEmptyText::as_str), Some("check-up"));
        assert_eq!(a.status(), Some(S::Booked));
        for (event, status) in [
            (checked_in(), S::CheckedIn),
            (started(), S::InProgress),
            (completed(), S::Fulfilled),
        ] {
            a.apply(event);
            assert_eq!(a.status(), Some(status));
        }
        let mut c = Appointment::default();
        for e in history(S::Cancelled) {
            c.apply(e);
        }
        assert_eq!(
            c.cancellation_reason().map(NonEmptyText::as_str),
            Some("ill")
        );
        let snapshot = serde_json::to_value(&a).unwrap();
        assert_eq!(serde_json::from_value::<Appointment>(snapshot).unwrap(), a);
    }

    #[test]
    fn events_have_stable_types_and_round_trip() {
        let events = vec![
            booked(),
            AppointmentEvent::AppointmentRescheduled {
                from: slot(),
                to: slot(),
                override_hours: false,
                at: now(),
            },
            cancelled(),
            checked_in(),
            started(),
            completed(),
            no_show(),
        ];
        let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        assert_eq!(
            types,
            [
                "AppointmentBooked",
                "AppointmentRescheduled",
                "AppointmentCancelled",
                "PatientCheckedIn",
                "AppointmentStarted",
                "AppointmentCompleted",
                "AppointmentMarkedNoShow"
            ]
        );
        for e in events {
            assert_eq!(e.event_version(), "1.0");
            assert_eq!(e.at(), now());
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(serde_json::from_value::<AppointmentEvent>(json).unwrap(), e);
        }
        let json = serde_json::to_value(booked()).unwrap();
        assert_eq!(
            json["AppointmentBooked"]["slot"]["start"],
            "2025-06-03T09:00:00Z"
        );
    }

    // --- the doctor's schedule (facts looked up by the booking use case) ---

    /// Tuesdays 09:00-12:00 in Berlin (07:00-10:00 UTC in June), a 15-minute grid, time off on
    /// Wednesday 4 June.
    fn schedule() -> DoctorSchedule {
        DoctorSchedule {
            hours: serde_json::from_value(serde_json::json!({
                "tue": [{"start": "09:00", "end": "12:00"}]
            }))
            .unwrap(),
            time_off: vec![range("2025-06-04T00:00:00Z", "2025-06-05T00:00:00Z")],
            time_zone: TimeZone::parse("Europe/Berlin").unwrap(),
            step_minutes: 15,
        }
    }

    fn book_within(slot: TimeRange, override_hours: bool) -> AppointmentCommand {
        let mut command = book(slot);
        if let AppointmentCommand::Book {
            override_hours: o,
            schedule: s,
            ..
        } = &mut command
        {
            *o = override_hours;
            *s = Some(schedule());
        }
        command
    }

    fn berlin() -> TimeZone {
        TimeZone::parse("Europe/Berlin").unwrap()
    }

    #[test]
    fn booking_inside_the_doctors_hours_is_fine() {
        fx().given_no_previous_events()
            .when(book_within(slot(), false))
            .then_expect_events(vec![booked()]);
    }

    #[test]
    fn booking_off_the_clinics_grid_is_invalid_at_start() {
        let r = fx()
            .given_no_previous_events()
            .when(book_within(
                range("2025-06-03T08:10:00Z", "2025-06-03T08:30:00Z"),
                false,
            ))
            .inspect_result();
        assert_eq!(
            r,
            Err(AppointmentError::OffGrid {
                step_minutes: 15,
                time_zone: berlin()
            })
        );
        assert_eq!(
            kind_and_field(r.clone()),
            (ErrorKind::Invalid, Some("start"))
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "must start on the clinic's 15-minute grid in Europe/Berlin time"
        );
    }

    #[test]
    fn booking_outside_working_hours_is_unavailable() {
        let r = fx()
            .given_no_previous_events()
            .when(book_within(
                range("2025-06-03T11:00:00Z", "2025-06-03T11:30:00Z"),
                false,
            ))
            .inspect_result();
        assert_eq!(
            r,
            Err(AppointmentError::OutsideWorkingHours {
                time_zone: berlin()
            })
        );
        assert_eq!(kind_and_field(r), (ErrorKind::Unavailable, Some("start")));
    }

    #[test]
    fn booking_in_the_doctors_time_off_is_unavailable() {
        let mut command = book_within(slot(), false);
        if let AppointmentCommand::Book { schedule, .. } = &mut command {
            let s = schedule.as_mut().unwrap();
            s.time_off = vec![range("2025-06-03T00:00:00Z", "2025-06-04T00:00:00Z")];
        }
        fx().given_no_previous_events()
            .when(command)
            .then_expect_error(AppointmentError::DoctorOnTimeOff);
    }

    #[test]
    fn an_override_books_outside_the_doctors_hours() {
        let late = range("2025-06-03T18:05:00Z", "2025-06-03T18:35:00Z");
        let r = fx()
            .given_no_previous_events()
            .when(book_within(late, true))
            .inspect_result()
            .unwrap();
        assert!(matches!(
            r.as_slice(),
            [AppointmentEvent::AppointmentBooked {
                override_hours: true,
                ..
            }]
        ));
    }

    #[test]
    fn rescheduling_checks_the_doctors_schedule_before_the_transition() {
        // Cancelled, and the new time is outside the hours: the schedule answers first.
        fx().given(history(S::Cancelled))
            .when(AppointmentCommand::Reschedule {
                slot: range("2025-06-04T08:00:00Z", "2025-06-04T08:30:00Z"),
                override_hours: false,
                schedule: Some(schedule()),
            })
            .then_expect_error(AppointmentError::OutsideWorkingHours {
                time_zone: berlin(),
            });
        fx().given(vec![booked()])
            .when(AppointmentCommand::Reschedule {
                slot: range("2025-06-03T08:00:00Z", "2025-06-03T08:30:00Z"),
                override_hours: false,
                schedule: Some(schedule()),
            })
            .then_expect_events(vec![AppointmentEvent::AppointmentRescheduled {
                from: slot(),
                to: range("2025-06-03T08:00:00Z", "2025-06-03T08:30:00Z"),
                override_hours: false,
                at: now(),
            }]);
    }

    #[test]
    fn a_booking_written_before_appointment_types_loads_with_none() {
        let mut json = serde_json::to_value(booked()).unwrap();
        json["AppointmentBooked"]
            .as_object_mut()
            .unwrap()
            .remove("appointment_type");
        let old: AppointmentEvent = serde_json::from_value(json).unwrap();
        let mut appointment = Appointment::default();
        appointment.apply(old);
        assert_eq!(appointment.appointment_type(), None);
        let mut typed = Appointment::default();
        typed.apply(booked());
        assert_eq!(
            typed.appointment_type().map(|t| t.as_str()),
            Some("checkup")
        );
        // A booking without a type is written without the key, as before types existed.
        let mut j = serde_json::to_value(booked()).unwrap();
        j["AppointmentBooked"]["appointment_type"] = serde_json::Value::Null;
        let untyped = serde_json::from_value::<AppointmentEvent>(j).unwrap();
        let json = serde_json::to_value(untyped).unwrap();
        assert!(json["AppointmentBooked"].get("appointment_type").is_none());
    }
}
