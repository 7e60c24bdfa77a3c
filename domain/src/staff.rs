//! The `Staff` aggregate: a clinic's staff member (who is also a user), their
//! role, profile, working hours and time off.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::clock::Services;
use crate::error::{DomainError, ErrorKind};
use crate::ids::{ClinicId, DepartmentId, StaffId};
use crate::values::{Email, NonEmptyText, PersonName, Role, TimeRange, WorkingHours};

/// A staff member as hired: what `Hire` asks for and `StaffHired` records. The profile's
/// fields are stored beside the ids, as one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewStaff {
    pub staff_id: StaffId,
    pub clinic_id: ClinicId,
    #[serde(flatten)]
    pub profile: StaffProfile,
}

/// Who a staff member is and what they do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaffProfile {
    pub name: PersonName,
    pub email: Email,
    pub role: Role,
    pub department_id: Option<DepartmentId>,
    pub specialty: Option<NonEmptyText>,
    pub licence_number: Option<NonEmptyText>,
}

/// Profile fields to change; `None` leaves a field as it is. `UpdateProfile` asks for them,
/// `StaffProfileUpdated` carries only those that changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileChanges {
    pub name: Option<PersonName>,
    pub email: Option<Email>,
    pub department_id: Option<DepartmentId>,
    pub specialty: Option<NonEmptyText>,
    pub licence_number: Option<NonEmptyText>,
}

impl ProfileChanges {
    /// Whether no field changes.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

// A variant holding a struct serialises as a struct variant does: `{"Hire": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StaffCommand {
    Hire(NewStaff),
    ChangeRole {
        role: Role,
    },
    UpdateProfile(ProfileChanges),
    SetWorkingHours {
        hours: WorkingHours,
    },
    AddTimeOff {
        range: TimeRange,
        reason: Option<NonEmptyText>,
    },
    Deactivate {
        reason: Option<NonEmptyText>,
    },
    Reactivate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StaffEvent {
    StaffHired(NewStaff),
    StaffRoleChanged {
        from: Role,
        to: Role,
    },
    /// Carries only the fields that changed.
    StaffProfileUpdated(ProfileChanges),
    WorkingHoursSet {
        hours: WorkingHours,
    },
    TimeOffAdded {
        range: TimeRange,
        reason: Option<NonEmptyText>,
    },
    StaffDeactivated {
        reason: Option<NonEmptyText>,
    },
    StaffReactivated,
}

impl DomainEvent for StaffEvent {
    fn event_type(&self) -> String {
        match self {
            StaffEvent::StaffHired(_) => "StaffHired",
            StaffEvent::StaffRoleChanged { .. } => "StaffRoleChanged",
            StaffEvent::StaffProfileUpdated(_) => "StaffProfileUpdated",
            StaffEvent::WorkingHoursSet { .. } => "WorkingHoursSet",
            StaffEvent::TimeOffAdded { .. } => "TimeOffAdded",
            StaffEvent::StaffDeactivated { .. } => "StaffDeactivated",
            StaffEvent::StaffReactivated => "StaffReactivated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaffError {
    #[error("staff member not found")]
    NotFound,
    #[error("staff member is already hired")]
    AlreadyHired,
    #[error("a doctor must have a licence number")]
    LicenceRequired,
    #[error("staff member already has the role {0}")]
    RoleUnchanged(Role),
    #[error("nothing to update")]
    NothingToUpdate,
    #[error("time off must end in the future")]
    TimeOffInPast,
    #[error("time off overlaps existing time off from {} to {}", .0.start(), .0.end())]
    TimeOffOverlaps(TimeRange),
    #[error("staff member is deactivated")]
    Deactivated,
    #[error("staff member is already deactivated")]
    AlreadyDeactivated,
    #[error("staff member is already active")]
    AlreadyActive,
}

impl StaffError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StaffError::NotFound => ErrorKind::NotFound,
            StaffError::AlreadyHired
            | StaffError::RoleUnchanged(_)
            | StaffError::TimeOffOverlaps(_)
            | StaffError::Deactivated
            | StaffError::AlreadyDeactivated
            | StaffError::AlreadyActive => ErrorKind::Conflict,
            StaffError::LicenceRequired
            | StaffError::NothingToUpdate
            | StaffError::TimeOffInPast => ErrorKind::Invalid,
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            StaffError::LicenceRequired => Some("licence_number"),
            StaffError::RoleUnchanged(_) => Some("role"),
            StaffError::TimeOffInPast | StaffError::TimeOffOverlaps(_) => Some("time_off"),
            _ => None,
        }
    }
}

impl DomainError for StaffError {
    fn kind(&self) -> ErrorKind {
        StaffError::kind(self)
    }

    fn field(&self) -> Option<&'static str> {
        StaffError::field(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffStatus {
    #[default]
    NotHired,
    Active,
    Deactivated,
}

/// A recorded absence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeOff {
    pub range: TimeRange,
    pub reason: Option<NonEmptyText>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Staff {
    id: Option<StaffId>,
    clinic_id: Option<ClinicId>,
    name: Option<PersonName>,
    email: Option<Email>,
    role: Option<Role>,
    department_id: Option<DepartmentId>,
    specialty: Option<NonEmptyText>,
    licence_number: Option<NonEmptyText>,
    working_hours: WorkingHours,
    time_off: Vec<TimeOff>,
    status: StaffStatus,
}

impl Staff {
    pub fn id(&self) -> Option<StaffId> {
        self.id
    }

    pub fn clinic_id(&self) -> Option<ClinicId> {
        self.clinic_id
    }

    pub fn name(&self) -> Option<&PersonName> {
        self.name.as_ref()
    }

    pub fn email(&self) -> Option<&Email> {
        self.email.as_ref()
    }

    pub fn role(&self) -> Option<Role> {
        self.role
    }

    pub fn department_id(&self) -> Option<DepartmentId> {
        self.department_id
    }

    pub fn specialty(&self) -> Option<&NonEmptyText> {
        self.specialty.as_ref()
    }

    pub fn licence_number(&self) -> Option<&NonEmptyText> {
        self.licence_number.as_ref()
    }

    pub fn working_hours(&self) -> &WorkingHours {
        &self.working_hours
    }

    pub fn time_off(&self) -> &[TimeOff] {
        &self.time_off
    }

    pub fn status(&self) -> StaffStatus {
        self.status
    }

    pub fn is_hired(&self) -> bool {
        self.status != StaffStatus::NotHired
    }

    pub fn is_active(&self) -> bool {
        self.status == StaffStatus::Active
    }

    /// Whether any recorded time off overlaps `range`.
    pub fn is_off_during(&self, range: &TimeRange) -> bool {
        self.time_off.iter().any(|t| t.range.overlaps(range))
    }

    fn ensure_active(&self) -> Result<(), StaffError> {
        match self.status {
            StaffStatus::NotHired => Err(StaffError::NotFound),
            StaffStatus::Deactivated => Err(StaffError::Deactivated),
            StaffStatus::Active => Ok(()),
        }
    }

    /// Decides which events a command produces, without changing state.
    pub fn decide(
        &self,
        command: StaffCommand,
        services: &Services,
    ) -> Result<Vec<StaffEvent>, StaffError> {
        use StaffCommand as C;
        use StaffEvent as E;
        match command {
            C::Hire(new) => {
                if self.is_hired() {
                    return Err(StaffError::AlreadyHired);
                }
                if new.profile.role == Role::Doctor && new.profile.licence_number.is_none() {
                    return Err(StaffError::LicenceRequired);
                }
                Ok(vec![E::StaffHired(new)])
            }
            C::Deactivate { reason } => match self.status {
                StaffStatus::NotHired => Err(StaffError::NotFound),
                StaffStatus::Deactivated => Err(StaffError::AlreadyDeactivated),
                StaffStatus::Active => Ok(vec![E::StaffDeactivated { reason }]),
            },
            C::Reactivate => match self.status {
                StaffStatus::NotHired => Err(StaffError::NotFound),
                StaffStatus::Active => Err(StaffError::AlreadyActive),
                StaffStatus::Deactivated => Ok(vec![E::StaffReactivated]),
            },
            C::ChangeRole { role } => {
                self.ensure_active()?;
                let from = self.role.ok_or(StaffError::NotFound)?;
                if role == from {
                    return Err(StaffError::RoleUnchanged(role));
                }
                if role == Role::Doctor && self.licence_number.is_none() {
                    return Err(StaffError::LicenceRequired);
                }
                Ok(vec![E::StaffRoleChanged { from, to: role }])
            }
            C::UpdateProfile(asked) => {
                self.ensure_active()?;
                let changes = ProfileChanges {
                    name: asked.name.filter(|v| Some(v) != self.name.as_ref()),
                    email: asked.email.filter(|v| Some(v) != self.email.as_ref()),
                    department_id: asked
                        .department_id
                        .filter(|v| Some(*v) != self.department_id),
                    specialty: asked
                        .specialty
                        .filter(|v| Some(v) != self.specialty.as_ref()),
                    licence_number: asked
                        .licence_number
                        .filter(|v| Some(v) != self.licence_number.as_ref()),
                };
                if changes.is_empty() {
                    return Err(StaffError::NothingToUpdate);
                }
                Ok(vec![E::StaffProfileUpdated(changes)])
            }
            C::SetWorkingHours { hours } => {
                self.ensure_active()?;
                Ok(vec![E::WorkingHoursSet { hours }])
            }
            C::AddTimeOff { range, reason } => {
                self.ensure_active()?;
                if range.end() <= services.now() {
                    return Err(StaffError::TimeOffInPast);
                }
                if let Some(existing) = self.time_off.iter().find(|t| t.range.overlaps(&range)) {
                    return Err(StaffError::TimeOffOverlaps(existing.range));
                }
                Ok(vec![E::TimeOffAdded { range, reason }])
            }
        }
    }
}

crate::aggregate!(
    Staff,
    "Staff",
    StaffCommand,
    StaffEvent,
    StaffError,
    decide_with_services
);

impl Staff {
    /// How an event changes the state (cqrs-es's `Aggregate::apply`).
    fn evolve(&mut self, event: StaffEvent) {
        match event {
            StaffEvent::StaffHired(new) => {
                let profile = new.profile;
                self.id = Some(new.staff_id);
                self.clinic_id = Some(new.clinic_id);
                self.name = Some(profile.name);
                self.email = Some(profile.email);
                self.role = Some(profile.role);
                self.department_id = profile.department_id;
                self.specialty = profile.specialty;
                self.licence_number = profile.licence_number;
                self.status = StaffStatus::Active;
            }
            StaffEvent::StaffRoleChanged { to, .. } => self.role = Some(to),
            StaffEvent::StaffProfileUpdated(changes) => {
                self.name = changes.name.or(self.name.take());
                self.email = changes.email.or(self.email.take());
                self.department_id = changes.department_id.or(self.department_id);
                self.specialty = changes.specialty.or(self.specialty.take());
                self.licence_number = changes.licence_number.or(self.licence_number.take());
            }
            StaffEvent::WorkingHoursSet { hours } => self.working_hours = hours,
            StaffEvent::TimeOffAdded { range, reason } => {
                self.time_off.push(TimeOff { range, reason });
                self.time_off.sort_by_key(|t| t.range.start());
            }
            StaffEvent::StaffDeactivated { .. } => self.status = StaffStatus::Deactivated,
            StaffEvent::StaffReactivated => self.status = StaffStatus::Active,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, person, services, text};
    use crate::values::LocalInterval;
    use chrono::{NaiveTime, Weekday};
    use cqrs_es::test::TestFramework;
    use cqrs_es::Aggregate;
    use uuid::Uuid;

    fn fx() -> TestFramework<Staff> {
        TestFramework::with(services())
    }

    fn staff_id() -> StaffId {
        StaffId::from_uuid(Uuid::from_u128(2))
    }

    fn clinic_id() -> ClinicId {
        ClinicId::from_uuid(Uuid::from_u128(1))
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    fn range(a: &str, b: &str) -> TimeRange {
        TimeRange::new(at(a), at(b)).unwrap()
    }

    fn new_staff(role: Role, licence: Option<&str>) -> NewStaff {
        NewStaff {
            staff_id: staff_id(),
            clinic_id: clinic_id(),
            profile: StaffProfile {
                name: person("Gregory House"),
                email: email("house@example.org"),
                role,
                department_id: None,
                specialty: None,
                licence_number: licence.map(text),
            },
        }
    }

    fn hired(role: Role, licence: Option<&str>) -> StaffEvent {
        StaffEvent::StaffHired(new_staff(role, licence))
    }

    fn nurse() -> StaffEvent {
        hired(Role::Nurse, None)
    }

    fn doctor() -> StaffEvent {
        hired(Role::Doctor, Some("GMC-123"))
    }

    fn deactivated() -> StaffEvent {
        StaffEvent::StaffDeactivated { reason: None }
    }

    fn hire(role: Role, licence: Option<&str>) -> StaffCommand {
        StaffCommand::Hire(new_staff(role, licence))
    }

    fn no_profile_change() -> StaffCommand {
        StaffCommand::UpdateProfile(ProfileChanges::default())
    }

    fn hours() -> WorkingHours {
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let five = NaiveTime::from_hms_opt(17, 0, 0).unwrap();
        WorkingHours::new([(Weekday::Mon, vec![LocalInterval::new(nine, five).unwrap()])]).unwrap()
    }

    fn kind_and_field(r: Result<Vec<StaffEvent>, StaffError>) -> (ErrorKind, Option<&'static str>) {
        let err = r.expect_err("expected an error");
        (DomainError::kind(&err), DomainError::field(&err))
    }

    // --- hire ---

    #[test]
    fn hire_a_nurse() {
        fx().given_no_previous_events()
            .when(hire(Role::Nurse, None))
            .then_expect_events(vec![nurse()]);
    }

    #[test]
    fn hire_a_doctor_with_licence() {
        fx().given_no_previous_events()
            .when(hire(Role::Doctor, Some("GMC-123")))
            .then_expect_events(vec![doctor()]);
    }

    #[test]
    fn doctor_needs_a_licence_number() {
        let r = fx()
            .given_no_previous_events()
            .when(hire(Role::Doctor, None))
            .inspect_result();
        assert_eq!(r, Err(StaffError::LicenceRequired));
        assert_eq!(
            kind_and_field(r),
            (ErrorKind::Invalid, Some("licence_number"))
        );
    }

    #[test]
    fn hire_twice_is_a_conflict() {
        let r = fx()
            .given(vec![nurse()])
            .when(hire(Role::Nurse, None))
            .inspect_result();
        assert_eq!(r, Err(StaffError::AlreadyHired));
        assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
    }

    #[test]
    fn commands_on_unhired_staff_are_not_found() {
        let commands = vec![
            StaffCommand::ChangeRole { role: Role::Nurse },
            no_profile_change(),
            StaffCommand::SetWorkingHours { hours: hours() },
            StaffCommand::AddTimeOff {
                range: range("2025-07-01T00:00:00Z", "2025-07-02T00:00:00Z"),
                reason: None,
            },
            StaffCommand::Deactivate { reason: None },
            StaffCommand::Reactivate,
        ];
        for command in commands {
            let r = fx()
                .given_no_previous_events()
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(StaffError::NotFound));
            assert_eq!(kind_and_field(r).0, ErrorKind::NotFound);
        }
    }

    // --- role ---

    #[test]
    fn change_role() {
        fx().given(vec![nurse()])
            .when(StaffCommand::ChangeRole {
                role: Role::Receptionist,
            })
            .then_expect_events(vec![StaffEvent::StaffRoleChanged {
                from: Role::Nurse,
                to: Role::Receptionist,
            }]);
    }

    #[test]
    fn change_to_same_role_is_a_conflict() {
        let r = fx()
            .given(vec![nurse()])
            .when(StaffCommand::ChangeRole { role: Role::Nurse })
            .inspect_result();
        assert_eq!(r, Err(StaffError::RoleUnchanged(Role::Nurse)));
        assert_eq!(kind_and_field(r), (ErrorKind::Conflict, Some("role")));
    }

    #[test]
    fn becoming_a_doctor_needs_a_licence() {
        fx().given(vec![nurse()])
            .when(StaffCommand::ChangeRole { role: Role::Doctor })
            .then_expect_error(StaffError::LicenceRequired);
    }

    #[test]
    fn becoming_a_doctor_after_adding_a_licence() {
        fx().given(vec![
            nurse(),
            StaffEvent::StaffProfileUpdated(ProfileChanges {
                licence_number: Some(text("GMC-9")),
                ..ProfileChanges::default()
            }),
        ])
        .when(StaffCommand::ChangeRole { role: Role::Doctor })
        .then_expect_events(vec![StaffEvent::StaffRoleChanged {
            from: Role::Nurse,
            to: Role::Doctor,
        }]);
    }

    // --- profile ---

    #[test]
    fn update_profile_emits_only_changes() {
        let dept = DepartmentId::from_uuid(Uuid::from_u128(7));
        fx().given(vec![doctor()])
            .when(StaffCommand::UpdateProfile(ProfileChanges {
                name: Some(person("Gregory House")),
                email: Some(email("greg@example.org")),
                department_id: Some(dept),
                specialty: Some(text("Diagnostics")),
                licence_number: Some(text("GMC-123")),
            }))
            .then_expect_events(vec![StaffEvent::StaffProfileUpdated(ProfileChanges {
                name: None,
                email: Some(email("greg@example.org")),
                department_id: Some(dept),
                specialty: Some(text("Diagnostics")),
                licence_number: None,
            })]);
    }

    #[test]
    fn update_profile_with_nothing_is_invalid() {
        let r = fx()
            .given(vec![nurse()])
            .when(no_profile_change())
            .inspect_result();
        assert_eq!(r, Err(StaffError::NothingToUpdate));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, None));
    }

    // --- working hours ---

    #[test]
    fn set_working_hours() {
        fx().given(vec![doctor()])
            .when(StaffCommand::SetWorkingHours { hours: hours() })
            .then_expect_events(vec![StaffEvent::WorkingHoursSet { hours: hours() }]);
    }

    // --- time off ---

    #[test]
    fn add_time_off() {
        let r = range("2025-07-01T00:00:00Z", "2025-07-08T00:00:00Z");
        fx().given(vec![doctor()])
            .when(StaffCommand::AddTimeOff {
                range: r,
                reason: Some(text("holiday")),
            })
            .then_expect_events(vec![StaffEvent::TimeOffAdded {
                range: r,
                reason: Some(text("holiday")),
            }]);
    }

    #[test]
    fn time_off_already_under_way_is_fine() {
        // now = 2025-06-02T08:00Z
        let r = range("2025-06-02T00:00:00Z", "2025-06-03T00:00:00Z");
        fx().given(vec![doctor()])
            .when(StaffCommand::AddTimeOff {
                range: r,
                reason: None,
            })
            .then_expect_events(vec![StaffEvent::TimeOffAdded {
                range: r,
                reason: None,
            }]);
    }

    #[test]
    fn time_off_in_the_past_is_invalid() {
        let r = fx()
            .given(vec![doctor()])
            .when(StaffCommand::AddTimeOff {
                range: range("2025-06-01T00:00:00Z", "2025-06-02T08:00:00Z"),
                reason: None,
            })
            .inspect_result();
        assert_eq!(r, Err(StaffError::TimeOffInPast));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("time_off")));
    }

    #[test]
    fn overlapping_time_off_is_a_conflict() {
        let existing = range("2025-07-01T00:00:00Z", "2025-07-08T00:00:00Z");
        let r = fx()
            .given(vec![
                doctor(),
                StaffEvent::TimeOffAdded {
                    range: existing,
                    reason: None,
                },
            ])
            .when(StaffCommand::AddTimeOff {
                range: range("2025-07-07T00:00:00Z", "2025-07-10T00:00:00Z"),
                reason: None,
            })
            .inspect_result();
        assert_eq!(r, Err(StaffError::TimeOffOverlaps(existing)));
        assert_eq!(kind_and_field(r), (ErrorKind::Conflict, Some("time_off")));
    }

    #[test]
    fn adjacent_time_off_is_fine() {
        let existing = range("2025-07-01T00:00:00Z", "2025-07-08T00:00:00Z");
        let next = range("2025-07-08T00:00:00Z", "2025-07-09T00:00:00Z");
        fx().given(vec![
            doctor(),
            StaffEvent::TimeOffAdded {
                range: existing,
                reason: None,
            },
        ])
        .when(StaffCommand::AddTimeOff {
            range: next,
            reason: None,
        })
        .then_expect_events(vec![StaffEvent::TimeOffAdded {
            range: next,
            reason: None,
        }]);
    }

    // --- deactivation ---

    #[test]
    fn deactivate() {
        fx().given(vec![nurse()])
            .when(StaffCommand::Deactivate {
                reason: Some(text("left")),
            })
            .then_expect_events(vec![StaffEvent::StaffDeactivated {
                reason: Some(text("left")),
            }]);
    }

    #[test]
    fn deactivate_twice_is_a_conflict() {
        let r = fx()
            .given(vec![nurse(), deactivated()])
            .when(StaffCommand::Deactivate { reason: None })
            .inspect_result();
        assert_eq!(r, Err(StaffError::AlreadyDeactivated));
        assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
    }

    #[test]
    fn reactivate() {
        fx().given(vec![nurse(), deactivated()])
            .when(StaffCommand::Reactivate)
            .then_expect_events(vec![StaffEvent::StaffReactivated]);
    }

    #[test]
    fn reactivate_active_is_a_conflict() {
        let r = fx()
            .given(vec![nurse()])
            .when(StaffCommand::Reactivate)
            .inspect_result();
        assert_eq!(r, Err(StaffError::AlreadyActive));
        assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
    }

    #[test]
    fn deactivated_staff_reject_other_commands() {
        let commands = vec![
            StaffCommand::ChangeRole {
                role: Role::Auditor,
            },
            StaffCommand::UpdateProfile(ProfileChanges {
                name: Some(person("X")),
                ..ProfileChanges::default()
            }),
            StaffCommand::SetWorkingHours { hours: hours() },
            StaffCommand::AddTimeOff {
                range: range("2025-07-01T00:00:00Z", "2025-07-02T00:00:00Z"),
                reason: None,
            },
        ];
        for command in commands {
            let r = fx()
                .given(vec![nurse(), deactivated()])
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(StaffError::Deactivated));
            assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
        }
    }

    // --- state and serialisation ---

    #[test]
    fn apply_builds_readable_state() {
        let mut staff = Staff::default();
        assert!(!staff.is_hired() && !staff.is_active());
        let off = range("2025-07-01T00:00:00Z", "2025-07-08T00:00:00Z");
        let earlier = range("2025-06-10T00:00:00Z", "2025-06-11T00:00:00Z");
        for e in [
            nurse(),
            StaffEvent::StaffProfileUpdated(ProfileChanges {
                name: None,
                email: Some(email("h@example.org")),
                department_id: None,
                specialty: None,
                licence_number: Some(text("L-1")),
            }),
            StaffEvent::StaffRoleChanged {
                from: Role::Nurse,
                to: Role::Doctor,
            },
            StaffEvent::WorkingHoursSet { hours: hours() },
            StaffEvent::TimeOffAdded {
                range: off,
                reason: None,
            },
            StaffEvent::TimeOffAdded {
                range: earlier,
                reason: None,
            },
        ] {
            staff.apply(e);
        }
        assert!(staff.is_hired() && staff.is_active());
        assert_eq!(staff.id(), Some(staff_id()));
        assert_eq!(staff.clinic_id(), Some(clinic_id()));
        assert_eq!(staff.role(), Some(Role::Doctor));
        assert_eq!(staff.email().map(Email::as_str), Some("h@example.org"));
        assert_eq!(staff.name().map(PersonName::as_str), Some("Gregory House"));
        assert_eq!(
            staff.licence_number().map(NonEmptyText::as_str),
            Some("L-1")
        );
        assert_eq!(staff.working_hours(), &hours());
        assert_eq!(staff.time_off().len(), 2);
        assert_eq!(staff.time_off()[0].range, earlier);
        assert!(staff.is_off_during(&range("2025-07-07T12:00:00Z", "2025-07-07T13:00:00Z")));
        assert!(!staff.is_off_during(&range("2025-07-08T12:00:00Z", "2025-07-08T13:00:00Z")));
        staff.apply(deactivated());
        assert_eq!(staff.status(), StaffStatus::Deactivated);
        let snapshot = serde_json::to_value(&staff).unwrap();
        assert_eq!(serde_json::from_value::<Staff>(snapshot).unwrap(), staff);
    }

    #[test]
    fn events_have_stable_types_and_round_trip() {
        let events = vec![
            doctor(),
            StaffEvent::StaffRoleChanged {
                from: Role::Doctor,
                to: Role::ClinicAdmin,
            },
            StaffEvent::StaffProfileUpdated(ProfileChanges {
                name: Some(person("A")),
                ..ProfileChanges::default()
            }),
            StaffEvent::WorkingHoursSet { hours: hours() },
            StaffEvent::TimeOffAdded {
                range: range("2025-07-01T00:00:00Z", "2025-07-02T00:00:00Z"),
                reason: Some(text("x")),
            },
            deactivated(),
            StaffEvent::StaffReactivated,
        ];
        let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        assert_eq!(
            types,
            [
                "StaffHired",
                "StaffRoleChanged",
                "StaffProfileUpdated",
                "WorkingHoursSet",
                "TimeOffAdded",
                "StaffDeactivated",
                "StaffReactivated"
            ]
        );
        for e in events {
            assert_eq!(e.event_version(), "1.0");
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(serde_json::from_value::<StaffEvent>(json).unwrap(), e);
        }
    }

    /// The events whose payload is a struct of its own are stored exactly as before, and the
    /// stored JSON still reads back.
    #[test]
    fn stored_json_of_hired_and_profile_updated_is_unchanged() {
        let mut new = new_staff(Role::Doctor, Some("GMC-123"));
        new.profile.department_id = Some(DepartmentId::from_uuid(Uuid::from_u128(3)));
        new.profile.specialty = Some(text("Diagnostics"));
        let hired = StaffEvent::StaffHired(new);
        let updated = StaffEvent::StaffProfileUpdated(ProfileChanges {
            email: Some(email("h@example.org")),
            specialty: Some(text("Nephrology")),
            ..ProfileChanges::default()
        });
        for (event, golden) in [
            (
                hired,
                r#"{"StaffHired":{"staff_id":"00000000-0000-0000-0000-000000000002","clinic_id":"00000000-0000-0000-0000-000000000001","name":"Gregory House","email":"house@example.org","role":"doctor","department_id":"00000000-0000-0000-0000-000000000003","specialty":"Diagnostics","licence_number":"GMC-123"}}"#,
            ),
            (
                updated,
                r#"{"StaffProfileUpdated":{"name":null,"email":"h@example.org","department_id":null,"specialty":"Nephrology","licence_number":null}}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&event).unwrap(), golden);
            assert_eq!(serde_json::from_str::<StaffEvent>(golden).unwrap(), event);
        }
    }
}
