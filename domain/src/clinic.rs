//! The `Clinic` aggregate: a tenant, its settings, plan and departments.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::clock::Services;
use crate::error::{DomainError, ErrorKind};
use crate::ids::{ClinicId, DepartmentId};
use crate::plan::PlanLimits;
use crate::values::{ClinicCode, NonEmptyText, Plan, TimeZone};

/// Slot length of a newly registered clinic, in minutes.
pub const DEFAULT_SLOT_MINUTES: u32 = 15;
/// Allowed slot lengths, in minutes.
pub const SLOT_MINUTES: std::ops::RangeInclusive<u32> = 5..=240;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClinicCommand {
    Register {
        clinic_id: ClinicId,
        name: NonEmptyText,
        code: ClinicCode,
        time_zone: TimeZone,
        plan: Plan,
    },
    /// Changes the given settings; `None` leaves a setting as it is.
    UpdateSettings {
        name: Option<NonEmptyText>,
        time_zone: Option<TimeZone>,
        slot_minutes: Option<u32>,
    },
    /// A plan change by the platform: to any plan but `trial`, which a clinic has only from
    /// its registration. A downgrade below the clinic's use is allowed; only new use past a
    /// limit is refused from then on.
    ChangePlan {
        plan: Plan,
        reason: NonEmptyText,
    },
    Suspend {
        reason: NonEmptyText,
    },
    Reactivate,
    AddDepartment {
        department_id: DepartmentId,
        name: NonEmptyText,
    },
    RenameDepartment {
        department_id: DepartmentId,
        name: NonEmptyText,
    },
    CloseDepartment {
        department_id: DepartmentId,
    },
}

/// A clinic as registered: what `ClinicRegistered` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewClinic {
    pub clinic_id: ClinicId,
    pub name: NonEmptyText,
    pub code: ClinicCode,
    pub time_zone: TimeZone,
    /// Events before the four plans say `free` or `standard` ([`crate::plan::stored`]).
    #[serde(deserialize_with = "crate::plan::stored::deserialize")]
    pub plan: Plan,
    pub slot_minutes: u32,
    /// When a trial ends: the registration plus the trial's days. `None` on a paid plan, and
    /// in events from before the four plans (a `free` clinic's trial then ends the trial's
    /// days after the event's `occurred_at`, which the readers that need it have).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_ends_at: Option<DateTime<Utc>>,
}

// A variant holding a struct serialises as a struct variant does: `{"ClinicRegistered": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClinicEvent {
    ClinicRegistered(NewClinic),
    /// Carries only the settings that changed.
    ClinicSettingsUpdated {
        name: Option<NonEmptyText>,
        time_zone: Option<TimeZone>,
        slot_minutes: Option<u32>,
    },
    /// Who changed the plan and when are the event's metadata; why is `reason` (absent in
    /// events from before it was asked for).
    ClinicPlanChanged {
        #[serde(deserialize_with = "crate::plan::stored::deserialize")]
        from: Plan,
        #[serde(deserialize_with = "crate::plan::stored::deserialize")]
        to: Plan,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<NonEmptyText>,
    },
    ClinicSuspended {
        reason: NonEmptyText,
    },
    ClinicReactivated,
    DepartmentAdded {
        department_id: DepartmentId,
        name: NonEmptyText,
    },
    DepartmentRenamed {
        department_id: DepartmentId,
        name: NonEmptyText,
    },
    DepartmentClosed {
        department_id: DepartmentId,
    },
}

impl DomainEvent for ClinicEvent {
    fn event_type(&self) -> String {
        match self {
            ClinicEvent::ClinicRegistered(_) => "ClinicRegistered",
            ClinicEvent::ClinicSettingsUpdated { .. } => "ClinicSettingsUpdated",
            ClinicEvent::ClinicPlanChanged { .. } => "ClinicPlanChanged",
            ClinicEvent::ClinicSuspended { .. } => "ClinicSuspended",
            ClinicEvent::ClinicReactivated => "ClinicReactivated",
            ClinicEvent::DepartmentAdded { .. } => "DepartmentAdded",
            ClinicEvent::DepartmentRenamed { .. } => "DepartmentRenamed",
            ClinicEvent::DepartmentClosed { .. } => "DepartmentClosed",
        }
        .to_owned()
    }

    /// 2.0: plans are named `trial`, `basic`, `professional`, `enterprise`. 1.0 events may
    /// name `free` and `standard`, read by [`crate::plan::stored`].
    fn event_version(&self) -> String {
        "2.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClinicError {
    #[error("clinic not found")]
    NotFound,
    #[error("clinic is already registered")]
    AlreadyRegistered,
    #[error("clinic is suspended")]
    Suspended,
    #[error("clinic is already suspended")]
    AlreadySuspended,
    #[error("clinic is not suspended")]
    NotSuspended,
    #[error("clinic is already on the {0} plan")]
    PlanUnchanged(Plan),
    #[error("a clinic is on the trial plan only from its registration")]
    TrialOnlyAtRegistration,
    #[error("nothing to update")]
    NothingToUpdate,
    #[error("slot length must be between 5 and 240 minutes, got {0}")]
    InvalidSlotMinutes(u32),
    #[error("department {0} already exists")]
    DepartmentAlreadyExists(DepartmentId),
    #[error("an open department is already named {0:?}")]
    DuplicateDepartmentName(String),
    #[error("department {0} not found")]
    DepartmentNotFound(DepartmentId),
    #[error("department {0} is closed")]
    DepartmentClosed(DepartmentId),
}

impl ClinicError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClinicError::NotFound | ClinicError::DepartmentNotFound(_) => ErrorKind::NotFound,
            ClinicError::AlreadyRegistered
            | ClinicError::Suspended
            | ClinicError::AlreadySuspended
            | ClinicError::NotSuspended
            | ClinicError::PlanUnchanged(_)
            | ClinicError::DepartmentAlreadyExists(_)
            | ClinicError::DuplicateDepartmentName(_)
            | ClinicError::DepartmentClosed(_) => ErrorKind::Conflict,
            ClinicError::NothingToUpdate
            | ClinicError::InvalidSlotMinutes(_)
            | ClinicError::TrialOnlyAtRegistration => ErrorKind::Invalid,
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            ClinicError::PlanUnchanged(_) | ClinicError::TrialOnlyAtRegistration => Some("plan"),
            ClinicError::InvalidSlotMinutes(_) => Some("slot_minutes"),
            ClinicError::DuplicateDepartmentName(_) => Some("name"),
            ClinicError::DepartmentAlreadyExists(_)
            | ClinicError::DepartmentNotFound(_)
            | ClinicError::DepartmentClosed(_) => Some("department_id"),
            _ => None,
        }
    }
}

impl DomainError for ClinicError {
    fn kind(&self) -> ErrorKind {
        ClinicError::kind(self)
    }

    fn field(&self) -> Option<&'static str> {
        ClinicError::field(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClinicStatus {
    #[default]
    Unregistered,
    Active,
    Suspended,
}

/// A department as the clinic sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    id: DepartmentId,
    name: NonEmptyText,
    open: bool,
}

impl Department {
    pub fn id(&self) -> DepartmentId {
        self.id
    }

    pub fn name(&self) -> &NonEmptyText {
        &self.name
    }

    pub fn is_open(&self) -> bool {
        self.open
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Clinic {
    id: Option<ClinicId>,
    name: Option<NonEmptyText>,
    code: Option<ClinicCode>,
    time_zone: Option<TimeZone>,
    plan: Plan,
    trial_ends_at: Option<DateTime<Utc>>,
    slot_minutes: u32,
    status: ClinicStatus,
    suspension_reason: Option<NonEmptyText>,
    departments: Vec<Department>,
}

impl Clinic {
    pub fn id(&self) -> Option<ClinicId> {
        self.id
    }

    pub fn name(&self) -> Option<&NonEmptyText> {
        self.name.as_ref()
    }

    pub fn code(&self) -> Option<&ClinicCode> {
        self.code.as_ref()
    }

    pub fn time_zone(&self) -> Option<TimeZone> {
        self.time_zone
    }

    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// When the clinic's trial ends, as its registration recorded it (`None` on a paid plan,
    /// or for a trial registered before the four plans).
    pub fn trial_ends_at(&self) -> Option<DateTime<Utc>> {
        self.trial_ends_at
    }

    pub fn slot_minutes(&self) -> u32 {
        self.slot_minutes
    }

    pub fn status(&self) -> ClinicStatus {
        self.status
    }

    pub fn is_registered(&self) -> bool {
        self.status != ClinicStatus::Unregistered
    }

    pub fn is_suspended(&self) -> bool {
        self.status == ClinicStatus::Suspended
    }

    pub fn suspension_reason(&self) -> Option<&NonEmptyText> {
        self.suspension_reason.as_ref()
    }

    /// All departments ever added, open and closed, in the order they were added.
    pub fn departments(&self) -> &[Department] {
        &self.departments
    }

    pub fn department(&self, id: DepartmentId) -> Option<&Department> {
        self.departments.iter().find(|d| d.id == id)
    }

    pub fn has_open_department(&self, id: DepartmentId) -> bool {
        self.department(id).is_some_and(Department::is_open)
    }

    fn ensure_active(&self) -> Result<(), ClinicError> {
        match self.status {
            ClinicStatus::Unregistered => Err(ClinicError::NotFound),
            ClinicStatus::Suspended => Err(ClinicError::Suspended),
            ClinicStatus::Active => Ok(()),
        }
    }

    fn ensure_name_free(
        &self,
        name: &NonEmptyText,
        except: Option<DepartmentId>,
    ) -> Result<(), ClinicError> {
        let wanted = name.as_str().to_lowercase();
        let taken = self
            .departments
            .iter()
            .filter(|d| d.open && Some(d.id) != except)
            .any(|d| d.name.as_str().to_lowercase() == wanted);
        if taken {
            return Err(ClinicError::DuplicateDepartmentName(name.to_string()));
        }
        Ok(())
    }

    fn open_department(&self, id: DepartmentId) -> Result<&Department, ClinicError> {
        let department = self
            .department(id)
            .ok_or(ClinicError::DepartmentNotFound(id))?;
        if !department.open {
            return Err(ClinicError::DepartmentClosed(id));
        }
        Ok(department)
    }

    /// Decides which events a command produces, without changing state.
    pub fn decide(
        &self,
        command: ClinicCommand,
        services: &Services,
    ) -> Result<Vec<ClinicEvent>, ClinicError> {
        use ClinicCommand as C;
        use ClinicEvent as E;
        match command {
            C::Register {
                clinic_id,
                name,
                code,
                time_zone,
                plan,
            } => {
                if self.is_registered() {
                    return Err(ClinicError::AlreadyRegistered);
                }
                Ok(vec![E::ClinicRegistered(NewClinic {
                    clinic_id,
                    name,
                    code,
                    time_zone,
                    plan,
                    slot_minutes: DEFAULT_SLOT_MINUTES,
                    trial_ends_at: PlanLimits::of(plan).trial_end(services.now()),
                })])
            }
            C::Suspend { reason } => {
                match self.status {
                    ClinicStatus::Unregistered => return Err(ClinicError::NotFound),
                    ClinicStatus::Suspended => return Err(ClinicError::AlreadySuspended),
                    ClinicStatus::Active => {}
                }
                Ok(vec![E::ClinicSuspended { reason }])
            }
            C::Reactivate => match self.status {
                ClinicStatus::Unregistered => Err(ClinicError::NotFound),
                ClinicStatus::Active => Err(ClinicError::NotSuspended),
                ClinicStatus::Suspended => Ok(vec![E::ClinicReactivated]),
            },
            C::UpdateSettings {
                name,
                time_zone,
                slot_minutes,
            } => {
                self.ensure_active()?;
                if let Some(minutes) = slot_minutes {
                    if !SLOT_MINUTES.contains(&minutes) {
                        return Err(ClinicError::InvalidSlotMinutes(minutes));
                    }
                }
                let name = name.filter(|n| Some(n) != self.name.as_ref());
                let time_zone = time_zone.filter(|tz| Some(*tz) != self.time_zone);
                let slot_minutes = slot_minutes.filter(|m| *m != self.slot_minutes);
                if name.is_none() && time_zone.is_none() && slot_minutes.is_none() {
                    return Err(ClinicError::NothingToUpdate);
                }
                Ok(vec![E::ClinicSettingsUpdated {
                    name,
                    time_zone,
                    slot_minutes,
                }])
            }
            C::ChangePlan { plan, reason } => {
                self.ensure_active()?;
                if plan == self.plan {
                    return Err(ClinicError::PlanUnchanged(plan));
                }
                if plan == Plan::Trial {
                    return Err(ClinicError::TrialOnlyAtRegistration);
                }
                Ok(vec![E::ClinicPlanChanged {
                    from: self.plan,
                    to: plan,
                    reason: Some(reason),
                }])
            }
            C::AddDepartment {
                department_id,
                name,
            } => {
                self.ensure_active()?;
                if self.department(department_id).is_some() {
                    return Err(ClinicError::DepartmentAlreadyExists(department_id));
                }
                self.ensure_name_free(&name, None)?;
                Ok(vec![E::DepartmentAdded {
                    department_id,
                    name,
                }])
            }
            C::RenameDepartment {
                department_id,
                name,
            } => {
                self.ensure_active()?;
                let department = self.open_department(department_id)?;
                if department.name == name {
                    return Err(ClinicError::NothingToUpdate);
                }
                self.ensure_name_free(&name, Some(department_id))?;
                Ok(vec![E::DepartmentRenamed {
                    department_id,
                    name,
                }])
            }
            C::CloseDepartment { department_id } => {
                self.ensure_active()?;
                self.open_department(department_id)?;
                Ok(vec![E::DepartmentClosed { department_id }])
            }
        }
    }
}

crate::aggregate!(
    Clinic,
    "Clinic",
    ClinicCommand,
    ClinicEvent,
    ClinicError,
    decide_with_services
);

impl Clinic {
    /// How an event changes the state (cqrs-es's `Aggregate::apply`).
    fn evolve(&mut self, event: ClinicEvent) {
        match event {
            ClinicEvent::ClinicRegistered(new) => {
                self.id = Some(new.clinic_id);
                self.name = Some(new.name);
                self.code = Some(new.code);
                self.time_zone = Some(new.time_zone);
                self.plan = new.plan;
                self.trial_ends_at = new.trial_ends_at;
                self.slot_minutes = new.slot_minutes;
                self.status = ClinicStatus::Active;
            }
            ClinicEvent::ClinicSettingsUpdated {
                name,
                time_zone,
                slot_minutes,
            } => {
                if let Some(name) = name {
                    self.name = Some(name);
                }
                if let Some(tz) = time_zone {
                    self.time_zone = Some(tz);
                }
                if let Some(minutes) = slot_minutes {
                    self.slot_minutes = minutes;
                }
            }
            ClinicEvent::ClinicPlanChanged { to, .. } => {
                self.plan = to;
                // Only a trial ends; no plan change leads to one.
                self.trial_ends_at = None;
            }
            ClinicEvent::ClinicSuspended { reason } => {
                self.status = ClinicStatus::Suspended;
                self.suspension_reason = Some(reason);
            }
            ClinicEvent::ClinicReactivated => {
                self.status = ClinicStatus::Active;
                self.suspension_reason = None;
            }
            ClinicEvent::DepartmentAdded {
                department_id,
                name,
            } => self.departments.push(Department {
                id: department_id,
                name,
                open: true,
            }),
            ClinicEvent::DepartmentRenamed {
                department_id,
                name,
            } => {
                if let Some(d) = self.departments.iter_mut().find(|d| d.id == department_id) {
                    d.name = name;
                }
            }
            ClinicEvent::DepartmentClosed { department_id } => {
                if let Some(d) = self.departments.iter_mut().find(|d| d.id == department_id) {
                    d.open = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{services, text};
    use cqrs_es::test::TestFramework;
    use cqrs_es::Aggregate;
    use uuid::Uuid;

    type Fx = TestFramework<Clinic>;

    fn fx() -> Fx {
        TestFramework::with(services())
    }

    fn clinic_id() -> ClinicId {
        ClinicId::from_uuid(Uuid::from_u128(1))
    }

    fn dept(n: u128) -> DepartmentId {
        DepartmentId::from_uuid(Uuid::from_u128(100 + n))
    }

    fn london() -> TimeZone {
        TimeZone::parse("Europe/London").unwrap()
    }

    fn registered() -> ClinicEvent {
        ClinicEvent::ClinicRegistered(NewClinic {
            clinic_id: clinic_id(),
            name: text("North Clinic"),
            code: ClinicCode::parse("north").unwrap(),
            time_zone: london(),
            plan: Plan::Professional,
            slot_minutes: DEFAULT_SLOT_MINUTES,
            trial_ends_at: None,
        })
    }

    fn suspended() -> ClinicEvent {
        ClinicEvent::ClinicSuspended {
            reason: text("unpaid"),
        }
    }

    fn added(n: u128, name: &str) -> ClinicEvent {
        ClinicEvent::DepartmentAdded {
            department_id: dept(n),
            name: text(name),
        }
    }

    fn register_cmd() -> ClinicCommand {
        ClinicCommand::Register {
            clinic_id: clinic_id(),
            name: text("North Clinic"),
            code: ClinicCode::parse("north").unwrap(),
            time_zone: london(),
            plan: Plan::Professional,
        }
    }

    fn assert_kind(
        result: Result<Vec<ClinicEvent>, ClinicError>,
        kind: ErrorKind,
        field: Option<&str>,
    ) {
        let err = result.expect_err("expected an error");
        assert_eq!(DomainError::kind(&err), kind, "{err}");
        assert_eq!(DomainError::field(&err), field, "{err}");
    }

    // --- register ---

    #[test]
    fn register_emits_registered_with_default_slot() {
        fx().given_no_previous_events()
            .when(register_cmd())
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn register_twice_is_a_conflict() {
        let r = fx()
            .given(vec![registered()])
            .when(register_cmd())
            .inspect_result();
        assert_eq!(r, Err(ClinicError::AlreadyRegistered));
        assert_kind(r, ErrorKind::Conflict, None);
    }

    #[test]
    fn commands_on_unregistered_clinic_are_not_found() {
        let commands = vec![
            ClinicCommand::UpdateSettings {
                name: Some(text("x")),
                time_zone: None,
                slot_minutes: None,
            },
            ClinicCommand::ChangePlan {
                plan: Plan::Basic,
                reason: text("cheaper"),
            },
            ClinicCommand::Suspend { reason: text("x") },
            ClinicCommand::Reactivate,
            ClinicCommand::AddDepartment {
                department_id: dept(1),
                name: text("x"),
            },
            ClinicCommand::RenameDepartment {
                department_id: dept(1),
                name: text("x"),
            },
            ClinicCommand::CloseDepartment {
                department_id: dept(1),
            },
        ];
        for command in commands {
            let r = fx()
                .given_no_previous_events()
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(ClinicError::NotFound));
            assert_kind(r, ErrorKind::NotFound, None);
        }
    }

    // --- settings ---

    #[test]
    fn update_settings_emits_only_changes() {
        fx().given(vec![registered()])
            .when(ClinicCommand::UpdateSettings {
                name: Some(text("North Clinic")),
                time_zone: Some(TimeZone::parse("Europe/Paris").unwrap()),
                slot_minutes: Some(30),
            })
            .then_expect_events(vec![ClinicEvent::ClinicSettingsUpdated {
                name: None,
                time_zone: Some(TimeZone::parse("Europe/Paris").unwrap()),
                slot_minutes: Some(30),
            }]);
    }

    #[test]
    fn update_settings_with_nothing_is_invalid() {
        fx().given(vec![registered()])
            .when(ClinicCommand::UpdateSettings {
                name: None,
                time_zone: None,
                slot_minutes: None,
            })
            .then_expect_error(ClinicError::NothingToUpdate);
    }

    #[test]
    fn update_settings_to_current_values_is_invalid() {
        let r = fx()
            .given(vec![registered()])
            .when(ClinicCommand::UpdateSettings {
                name: Some(text("North Clinic")),
                time_zone: Some(london()),
                slot_minutes: Some(DEFAULT_SLOT_MINUTES),
            })
            .inspect_result();
        assert_kind(r, ErrorKind::Invalid, None);
    }

    #[test]
    fn slot_minutes_must_be_in_range() {
        for bad in [0, 4, 241] {
            let r = fx()
                .given(vec![registered()])
                .when(ClinicCommand::UpdateSettings {
                    name: None,
                    time_zone: None,
                    slot_minutes: Some(bad),
                })
                .inspect_result();
            assert_eq!(r, Err(ClinicError::InvalidSlotMinutes(bad)));
            assert_kind(r, ErrorKind::Invalid, Some("slot_minutes"));
        }
        for good in [5, 240] {
            fx().given(vec![registered()])
                .when(ClinicCommand::UpdateSettings {
                    name: None,
                    time_zone: None,
                    slot_minutes: Some(good),
                })
                .then_expect_events(vec![ClinicEvent::ClinicSettingsUpdated {
                    name: None,
                    time_zone: None,
                    slot_minutes: Some(good),
                }]);
        }
    }

    // --- plan ---

    #[test]
    fn change_plan_records_from_and_to() {
        fx().given(vec![registered()])
            .when(ClinicCommand::ChangePlan {
                plan: Plan::Enterprise,
                reason: text("grew"),
            })
            .then_expect_events(vec![ClinicEvent::ClinicPlanChanged {
                from: Plan::Professional,
                to: Plan::Enterprise,
                reason: Some(text("grew")),
            }]);
    }

    #[test]
    fn change_plan_to_same_plan_is_a_conflict() {
        let r = fx()
            .given(vec![registered()])
            .when(ClinicCommand::ChangePlan {
                plan: Plan::Professional,
                reason: text("same"),
            })
            .inspect_result();
        assert_eq!(r, Err(ClinicError::PlanUnchanged(Plan::Professional)));
        assert_kind(r, ErrorKind::Conflict, Some("plan"));
    }

    // --- suspension ---

    #[test]
    fn suspend_active_clinic() {
        fx().given(vec![registered()])
            .when(ClinicCommand::Suspend {
                reason: text("unpaid"),
            })
            .then_expect_events(vec![suspended()]);
    }

    #[test]
    fn suspend_twice_is_a_conflict() {
        fx().given(vec![registered(), suspended()])
            .when(ClinicCommand::Suspend {
                reason: text("again"),
            })
            .then_expect_error(ClinicError::AlreadySuspended);
    }

    #[test]
    fn reactivate_suspended_clinic() {
        fx().given(vec![registered(), suspended()])
            .when(ClinicCommand::Reactivate)
            .then_expect_events(vec![ClinicEvent::ClinicReactivated]);
    }

    #[test]
    fn reactivate_active_clinic_is_a_conflict() {
        let r = fx()
            .given(vec![registered()])
            .when(ClinicCommand::Reactivate)
            .inspect_result();
        assert_eq!(r, Err(ClinicError::NotSuspended));
        assert_kind(r, ErrorKind::Conflict, None);
    }

    #[test]
    fn suspended_clinic_rejects_other_commands() {
        let commands = vec![
            ClinicCommand::UpdateSettings {
                name: Some(text("x")),
                time_zone: None,
                slot_minutes: None,
            },
            ClinicCommand::ChangePlan {
                plan: Plan::Basic,
                reason: text("cheaper"),
            },
            ClinicCommand::AddDepartment {
                department_id: dept(1),
                name: text("x"),
            },
            ClinicCommand::RenameDepartment {
                department_id: dept(1),
                name: text("x"),
            },
            ClinicCommand::CloseDepartment {
                department_id: dept(1),
            },
        ];
        for command in commands {
            let r = fx()
                .given(vec![registered(), added(1, "Cardiology"), suspended()])
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(ClinicError::Suspended));
            assert_kind(r, ErrorKind::Conflict, None);
        }
    }

    #[test]
    fn reactivated_clinic_accepts_commands_again() {
        fx().given(vec![
            registered(),
            suspended(),
            ClinicEvent::ClinicReactivated,
        ])
        .when(ClinicCommand::ChangePlan {
            plan: Plan::Basic,
            reason: text("cheaper"),
        })
        .then_expect_events(vec![ClinicEvent::ClinicPlanChanged {
            from: Plan::Professional,
            to: Plan::Basic,
            reason: Some(text("cheaper")),
        }]);
    }

    // --- departments ---

    #[test]
    fn add_department() {
        fx().given(vec![registered()])
            .when(ClinicCommand::AddDepartment {
                department_id: dept(1),
                name: text("Cardiology"),
            })
            .then_expect_events(vec![added(1, "Cardiology")]);
    }

    #[test]
    fn department_names_are_unique_among_open_ones_ignoring_case() {
        let r = fx()
            .given(vec![registered(), added(1, "Cardiology")])
            .when(ClinicCommand::AddDepartment {
                department_id: dept(2),
                name: text("CARDIOLOGY"),
            })
            .inspect_result();
        assert_eq!(
            r,
            Err(ClinicError::DuplicateDepartmentName("CARDIOLOGY".into()))
        );
        assert_kind(r, ErrorKind::Conflict, Some("name"));
    }

    #[test]
    fn a_closed_departments_name_can_be_reused() {
        fx().given(vec![
            registered(),
            added(1, "Cardiology"),
            ClinicEvent::DepartmentClosed {
                department_id: dept(1),
            },
        ])
        .when(ClinicCommand::AddDepartment {
            department_id: dept(2),
            name: text("Cardiology"),
        })
        .then_expect_events(vec![added(2, "Cardiology")]);
    }

    #[test]
    fn adding_an_existing_department_id_is_a_conflict() {
        let r = fx()
            .given(vec![registered(), added(1, "Cardiology")])
            .when(ClinicCommand::AddDepartment {
                department_id: dept(1),
                name: text("Other"),
            })
            .inspect_result();
        assert_eq!(r, Err(ClinicError::DepartmentAlreadyExists(dept(1))));
        assert_kind(r, ErrorKind::Conflict, Some("department_id"));
    }

    #[test]
    fn rename_department() {
        fx().given(vec![registered(), added(1, "Cardiology")])
            .when(ClinicCommand::RenameDepartment {
                department_id: dept(1),
                name: text("Heart Centre"),
            })
            .then_expect_events(vec![ClinicEvent::DepartmentRenamed {
                department_id: dept(1),
                name: text("Heart Centre"),
            }]);
    }

    #[test]
    fn rename_department_may_change_only_case() {
        fx().given(vec![registered(), added(1, "cardiology")])
            .when(ClinicCommand::RenameDepartment {
                department_id: dept(1),
                name: text("Cardiology"),
            })
            .then_expect_events(vec![ClinicEvent::DepartmentRenamed {
                department_id: dept(1),
                name: text("Cardiology"),
            }]);
    }

    #[test]
    fn rename_department_to_same_name_is_invalid() {
        fx().given(vec![registered(), added(1, "Cardiology")])
            .when(ClinicCommand::RenameDepartment {
                department_id: dept(1),
                name: text("Cardiology"),
            })
            .then_expect_error(ClinicError::NothingToUpdate);
    }

    #[test]
    fn rename_department_to_a_taken_name_is_a_conflict() {
        fx().given(vec![
            registered(),
            added(1, "Cardiology"),
            added(2, "Oncology"),
        ])
        .when(ClinicCommand::RenameDepartment {
            department_id: dept(2),
            name: text("cardiology"),
        })
        .then_expect_error(ClinicError::DuplicateDepartmentName("cardiology".into()));
    }

    #[test]
    fn rename_or_close_unknown_department_is_not_found() {
        for command in [
            ClinicCommand::RenameDepartment {
                department_id: dept(9),
                name: text("x"),
            },
            ClinicCommand::CloseDepartment {
                department_id: dept(9),
            },
        ] {
            let r = fx()
                .given(vec![registered()])
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(ClinicError::DepartmentNotFound(dept(9))));
            assert_kind(r, ErrorKind::NotFound, Some("department_id"));
        }
    }

    #[test]
    fn close_department() {
        fx().given(vec![registered(), added(1, "Cardiology")])
            .when(ClinicCommand::CloseDepartment {
                department_id: dept(1),
            })
            .then_expect_events(vec![ClinicEvent::DepartmentClosed {
                department_id: dept(1),
            }]);
    }

    #[test]
    fn closed_department_cannot_be_renamed_or_closed_again() {
        let given = || {
            vec![
                registered(),
                added(1, "Cardiology"),
                ClinicEvent::DepartmentClosed {
                    department_id: dept(1),
                },
            ]
        };
        for command in [
            ClinicCommand::RenameDepartment {
                department_id: dept(1),
                name: text("x"),
            },
            ClinicCommand::CloseDepartment {
                department_id: dept(1),
            },
        ] {
            let r = fx().given(given()).when(command).inspect_result();
            assert_eq!(r, Err(ClinicError::DepartmentClosed(dept(1))));
            assert_kind(r, ErrorKind::Conflict, Some("department_id"));
        }
    }

    // --- state and serialisation ---

    #[test]
    fn apply_builds_readable_state() {
        let mut clinic = Clinic::default();
        assert!(!clinic.is_registered());
        for e in [
            registered(),
            added(1, "Cardiology"),
            added(2, "Oncology"),
            ClinicEvent::DepartmentClosed {
                department_id: dept(2),
            },
            ClinicEvent::ClinicSettingsUpdated {
                name: Some(text("North")),
                time_zone: None,
                slot_minutes: Some(20),
            },
            suspended(),
        ] {
            clinic.apply(e);
        }
        assert!(clinic.is_registered());
        assert!(clinic.is_suspended());
        assert_eq!(clinic.id(), Some(clinic_id()));
        assert_eq!(clinic.name().map(NonEmptyText::as_str), Some("North"));
        assert_eq!(clinic.code().map(ClinicCode::as_str), Some("north"));
        assert_eq!(clinic.time_zone(), Some(london()));
        assert_eq!(clinic.plan(), Plan::Professional);
        assert_eq!(clinic.slot_minutes(), 20);
        assert_eq!(
            clinic.suspension_reason().map(NonEmptyText::as_str),
            Some("unpaid")
        );
        assert_eq!(clinic.departments().len(), 2);
        assert!(clinic.has_open_department(dept(1)));
        assert!(!clinic.has_open_department(dept(2)));
        assert!(!clinic.has_open_department(dept(3)));
        clinic.apply(ClinicEvent::ClinicReactivated);
        assert_eq!(clinic.status(), ClinicStatus::Active);
        assert_eq!(clinic.suspension_reason(), None);
        let snapshot = serde_json::to_value(&clinic).unwrap();
        assert_eq!(serde_json::from_value::<Clinic>(snapshot).unwrap(), clinic);
    }

    #[test]
    fn events_have_stable_types_and_round_trip() {
        let events = vec![
            registered(),
            ClinicEvent::ClinicSettingsUpdated {
                name: None,
                time_zone: None,
                slot_minutes: Some(10),
            },
            ClinicEvent::ClinicPlanChanged {
                from: Plan::Trial,
                to: Plan::Professional,
                reason: Some(text("paid")),
            },
            suspended(),
            ClinicEvent::ClinicReactivated,
            added(1, "A"),
            ClinicEvent::DepartmentRenamed {
                department_id: dept(1),
                name: text("B"),
            },
            ClinicEvent::DepartmentClosed {
                department_id: dept(1),
            },
        ];
        let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        assert_eq!(
            types,
            [
                "ClinicRegistered",
                "ClinicSettingsUpdated",
                "ClinicPlanChanged",
                "ClinicSuspended",
                "ClinicReactivated",
                "DepartmentAdded",
                "DepartmentRenamed",
                "DepartmentClosed"
            ]
        );
        for e in events {
            assert_eq!(e.event_version(), "2.0");
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(serde_json::from_value::<ClinicEvent>(json).unwrap(), e);
        }
        let json = serde_json::to_value(registered()).unwrap();
        assert_eq!(json["ClinicRegistered"]["time_zone"], "Europe/London");
        assert_eq!(json["ClinicRegistered"]["plan"], "professional");
    }

    /// `ClinicRegistered`, whose payload is a struct of its own, is stored as before but for
    /// the plan's name; a paid plan writes no `trial_ends_at`.
    #[test]
    fn stored_json_of_registered() {
        let golden = r#"{"ClinicRegistered":{"clinic_id":"00000000-0000-0000-0000-000000000001","name":"North Clinic","code":"north","time_zone":"Europe/London","plan":"professional","slot_minutes":15}}"#;
        assert_eq!(serde_json::to_string(&registered()).unwrap(), golden);
        assert_eq!(
            serde_json::from_str::<ClinicEvent>(golden).unwrap(),
            registered()
        );
    }

    /// The upcaster: events of version 1.0, stored before the four plans, read with the
    /// plans that replaced theirs. The bytes are those such an event has in a store.
    #[test]
    fn events_with_the_old_plan_names_read_as_the_new_plans() {
        let registered_free = r#"{"ClinicRegistered":{"clinic_id":"00000000-0000-0000-0000-000000000001","name":"North Clinic","code":"north","time_zone":"Europe/London","plan":"free","slot_minutes":15}}"#;
        let changed = r#"{"ClinicPlanChanged":{"from":"free","to":"standard"}}"#;
        let mut clinic = Clinic::default();
        for json in [registered_free, changed] {
            clinic.apply(serde_json::from_str::<ClinicEvent>(json).unwrap());
        }
        assert_eq!(clinic.plan(), Plan::Professional);
        assert_eq!(
            serde_json::from_str::<ClinicEvent>(changed).unwrap(),
            ClinicEvent::ClinicPlanChanged {
                from: Plan::Trial,
                to: Plan::Professional,
                reason: None
            }
        );
        let registered = serde_json::from_str::<ClinicEvent>(registered_free).unwrap();
        let ClinicEvent::ClinicRegistered(new) = registered else {
            panic!("{registered:?}")
        };
        assert_eq!((new.plan, new.trial_ends_at), (Plan::Trial, None));
        let unknown = r#"{"ClinicPlanChanged":{"from":"free","to":"gold"}}"#;
        assert!(serde_json::from_str::<ClinicEvent>(unknown).is_err());
    }

    #[test]
    fn a_trial_registration_records_when_the_trial_ends() {
        let mut command = register_cmd();
        if let ClinicCommand::Register { plan, .. } = &mut command {
            *plan = Plan::Trial;
        }
        let events = fx()
            .given_no_previous_events()
            .when(command)
            .inspect_result();
        let Ok(events) = events else {
            panic!("{events:?}")
        };
        let [ClinicEvent::ClinicRegistered(new)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(
            new.trial_ends_at,
            Some(crate::testing::now() + chrono::Duration::days(30))
        );
    }

    #[test]
    fn no_plan_change_leads_to_a_trial() {
        let r = fx()
            .given(vec![registered()])
            .when(ClinicCommand::ChangePlan {
                plan: Plan::Trial,
                reason: text("try again"),
            })
            .inspect_result();
        assert_eq!(r, Err(ClinicError::TrialOnlyAtRegistration));
        assert_kind(r, ErrorKind::Invalid, Some("plan"));
    }
}
