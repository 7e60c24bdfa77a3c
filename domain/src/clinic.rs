//! The `Clinic` aggregate: a tenant, its settings, plan and departments.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::clock::Services;
use crate::error::{DomainError, ErrorKind};
use crate::ids::{ClinicId, DepartmentId};
use crate::plan::{Limit, OverLimit, PlanLimits};
use crate::values::{
    Address, ClinicCode, Module, NonEmptyText, Phone, Plan, TimeZone, WebUrl, WorkingHours,
};

/// Slot length of a newly registered clinic, in minutes.
pub const DEFAULT_SLOT_MINUTES: u32 = 15;
/// Allowed slot lengths, in minutes.
pub const SLOT_MINUTES: std::ops::RangeInclusive<u32> = 5..=240;
/// Default appointment length of a newly registered clinic, in minutes.
pub const DEFAULT_APPOINTMENT_MINUTES: u32 = 30;
/// Allowed default appointment lengths, in minutes.
pub const APPOINTMENT_MINUTES: std::ops::RangeInclusive<u32> = 5..=480;
/// The departments a new clinic starts with; each can be renamed or closed.
pub const DEFAULT_DEPARTMENTS: [&str; 5] = [
    "General practice",
    "Emergency",
    "Cardiology",
    "Paediatrics",
    "Laboratory",
];

/// A department to add at registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDepartment {
    pub department_id: DepartmentId,
    pub name: NonEmptyText,
}

/// [`DEFAULT_DEPARTMENTS`] with new ids, for a registration.
pub fn default_departments() -> Vec<NewDepartment> {
    DEFAULT_DEPARTMENTS
        .iter()
        .map(|name| NewDepartment {
            department_id: DepartmentId::new(),
            name: NonEmptyText::parse(name).expect("a default department name is valid"),
        })
        .collect()
}

/// The modules a clinic registered before modules existed has: appointments, the one module
/// there was.
fn modules_before_modules() -> Vec<Module> {
    vec![Module::Appointments]
}

/// What a clinic admin may set; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub name: Option<NonEmptyText>,
    /// Changing it never moves a booked appointment: appointments keep their instants.
    pub time_zone: Option<TimeZone>,
    /// The slot step: bookings start on this grid.
    pub slot_minutes: Option<u32>,
    pub logo_url: Option<WebUrl>,
    pub address: Option<Address>,
    pub phone: Option<Phone>,
    /// The default length of an appointment.
    pub appointment_minutes: Option<u32>,
    /// The working week a new doctor starts with.
    pub working_week: Option<WorkingHours>,
}

// The settings make `UpdateSettings` the big variant; a clinic's commands are rare and
// short-lived, so its size costs nothing that boxing would save.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClinicCommand {
    Register {
        clinic_id: ClinicId,
        name: NonEmptyText,
        code: ClinicCode,
        time_zone: TimeZone,
        plan: Plan,
        /// Added with the registration ([`default_departments`] for a new clinic).
        departments: Vec<NewDepartment>,
    },
    /// Changes the given settings; `None` leaves a setting as it is.
    UpdateSettings(Settings),
    /// Switches a module on, within the plan.
    EnableModule {
        module: Module,
    },
    /// Switches a module off. Its data stays, and comes back when it is enabled again.
    DisableModule {
        module: Module,
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
    /// The modules enabled at registration: all the plan allows. A clinic registered before
    /// modules existed has appointments only.
    #[serde(default = "modules_before_modules")]
    pub modules: Vec<Module>,
}

// A variant holding a struct serialises as a struct variant does: `{"ClinicRegistered": {...}}`.
// The settings make `ClinicSettingsUpdated` the big variant; clinic events are rare (a few per
// clinic), so its size costs nothing that boxing would save.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClinicEvent {
    ClinicRegistered(NewClinic),
    /// Carries only the settings that changed.
    ClinicSettingsUpdated {
        name: Option<NonEmptyText>,
        time_zone: Option<TimeZone>,
        slot_minutes: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logo_url: Option<WebUrl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<Address>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<Phone>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        appointment_minutes: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        working_week: Option<WorkingHours>,
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
    ModuleEnabled {
        module: Module,
    },
    ModuleDisabled {
        module: Module,
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
            ClinicEvent::ModuleEnabled { .. } => "ModuleEnabled",
            ClinicEvent::ModuleDisabled { .. } => "ModuleDisabled",
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
    #[error("the default appointment length must be between 5 and 480 minutes, got {0}")]
    InvalidAppointmentMinutes(u32),
    #[error("the {0} module is already enabled")]
    ModuleAlreadyEnabled(Module),
    #[error("the {0} module is not enabled")]
    ModuleNotEnabled(Module),
    #[error(transparent)]
    OverLimit(OverLimit),
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
            | ClinicError::DepartmentClosed(_)
            | ClinicError::ModuleAlreadyEnabled(_)
            | ClinicError::ModuleNotEnabled(_)
            | ClinicError::OverLimit(_) => ErrorKind::Conflict,
            ClinicError::InvalidAppointmentMinutes(_)
            | ClinicError::NothingToUpdate
            | ClinicError::InvalidSlotMinutes(_)
            | ClinicError::TrialOnlyAtRegistration => ErrorKind::Invalid,
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            ClinicError::PlanUnchanged(_) | ClinicError::TrialOnlyAtRegistration => Some("plan"),
            ClinicError::InvalidSlotMinutes(_) => Some("slot_minutes"),
            ClinicError::InvalidAppointmentMinutes(_) => Some("appointment_minutes"),
            ClinicError::ModuleAlreadyEnabled(_) | ClinicError::ModuleNotEnabled(_) => {
                Some("module")
            }
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

    fn over_limit(&self) -> Option<&OverLimit> {
        match self {
            ClinicError::OverLimit(over) => Some(over),
            _ => None,
        }
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
    logo_url: Option<WebUrl>,
    address: Option<Address>,
    phone: Option<Phone>,
    appointment_minutes: u32,
    working_week: Option<WorkingHours>,
    modules: Vec<Module>,
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

    /// The default appointment length, in minutes.
    pub fn appointment_minutes(&self) -> u32 {
        self.appointment_minutes
    }

    /// The working week a new doctor starts with, if the clinic set one.
    pub fn working_week(&self) -> Option<&WorkingHours> {
        self.working_week.as_ref()
    }

    pub fn logo_url(&self) -> Option<&WebUrl> {
        self.logo_url.as_ref()
    }

    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    pub fn phone(&self) -> Option<&Phone> {
        self.phone.as_ref()
    }

    /// The enabled modules, in the order they were enabled.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    pub fn has_module(&self, module: Module) -> bool {
        self.modules.contains(&module)
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
                departments,
            } => {
                if self.is_registered() {
                    return Err(ClinicError::AlreadyRegistered);
                }
                let limits = PlanLimits::of(plan);
                let mut events = vec![E::ClinicRegistered(NewClinic {
                    clinic_id,
                    name,
                    code,
                    time_zone,
                    plan,
                    slot_minutes: DEFAULT_SLOT_MINUTES,
                    trial_ends_at: limits.trial_end(services.now()),
                    modules: limits.modules.to_vec(),
                })];
                // Each checked against the ones before it, as an admin's additions would be.
                let mut clinic = self.clone();
                for d in departments {
                    if clinic.department(d.department_id).is_some() {
                        return Err(ClinicError::DepartmentAlreadyExists(d.department_id));
                    }
                    clinic.ensure_name_free(&d.name, None)?;
                    let added = E::DepartmentAdded {
                        department_id: d.department_id,
                        name: d.name,
                    };
                    clinic.evolve(added.clone());
                    events.push(added);
                }
                Ok(events)
            }
            C::EnableModule { module } => {
                self.ensure_active()?;
                if self.has_module(module) {
                    return Err(ClinicError::ModuleAlreadyEnabled(module));
                }
                let limits = PlanLimits::of(self.plan);
                if !limits.allows_module(module) {
                    return Err(ClinicError::OverLimit(OverLimit {
                        plan: self.plan,
                        limit: Limit::Modules,
                        allowed: limits.modules.len() as u32,
                        in_use: self.modules.len() as u64,
                    }));
                }
                Ok(vec![E::ModuleEnabled { module }])
            }
            C::DisableModule { module } => {
                self.ensure_active()?;
                if !self.has_module(module) {
                    return Err(ClinicError::ModuleNotEnabled(module));
                }
                Ok(vec![E::ModuleDisabled { module }])
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
            C::UpdateSettings(asked) => {
                self.ensure_active()?;
                if let Some(minutes) = asked.slot_minutes {
                    if !SLOT_MINUTES.contains(&minutes) {
                        return Err(ClinicError::InvalidSlotMinutes(minutes));
                    }
                }
                if let Some(minutes) = asked.appointment_minutes {
                    if !APPOINTMENT_MINUTES.contains(&minutes) {
                        return Err(ClinicError::InvalidAppointmentMinutes(minutes));
                    }
                }
                let changed = Settings {
                    name: asked.name.filter(|n| Some(n) != self.name.as_ref()),
                    time_zone: asked.time_zone.filter(|tz| Some(*tz) != self.time_zone),
                    slot_minutes: asked.slot_minutes.filter(|m| *m != self.slot_minutes),
                    logo_url: asked.logo_url.filter(|u| Some(u) != self.logo_url.as_ref()),
                    address: asked.address.filter(|a| Some(a) != self.address.as_ref()),
                    phone: asked.phone.filter(|p| Some(p) != self.phone.as_ref()),
                    appointment_minutes: asked
                        .appointment_minutes
                        .filter(|m| *m != self.appointment_minutes),
                    working_week: asked
                        .working_week
                        .filter(|w| Some(w) != self.working_week.as_ref()),
                };
                if changed == Settings::default() {
                    return Err(ClinicError::NothingToUpdate);
                }
                Ok(vec![E::ClinicSettingsUpdated {
                    name: changed.name,
                    time_zone: changed.time_zone,
                    slot_minutes: changed.slot_minutes,
                    logo_url: changed.logo_url,
                    address: changed.address,
                    phone: changed.phone,
                    appointment_minutes: changed.appointment_minutes,
                    working_week: changed.working_week,
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
                self.appointment_minutes = DEFAULT_APPOINTMENT_MINUTES;
                self.modules = new.modules;
            }
            ClinicEvent::ClinicSettingsUpdated {
                name,
                time_zone,
                slot_minutes,
                logo_url,
                address,
                phone,
                appointment_minutes,
                working_week,
            } => {
                self.logo_url = logo_url.or(self.logo_url.take());
                self.address = address.or(self.address.take());
                self.phone = phone.or(self.phone.take());
                if let Some(minutes) = appointment_minutes {
                    self.appointment_minutes = minutes;
                }
                self.working_week = working_week.or(self.working_week.take());
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
            ClinicEvent::ModuleEnabled { module } => {
                if !self.modules.contains(&module) {
                    self.modules.push(module);
                }
            }
            ClinicEvent::ModuleDisabled { module } => self.modules.retain(|m| *m != module),
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
            modules: PlanLimits::of(Plan::Professional).modules.to_vec(),
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
            departments: vec![],
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
            ClinicCommand::UpdateSettings(Settings {
                name: Some(text("x")),
                time_zone: None,
                slot_minutes: None,
                ..Settings::default()
            }),
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
            .when(ClinicCommand::UpdateSettings(Settings {
                name: Some(text("North Clinic")),
                time_zone: Some(TimeZone::parse("Europe/Paris").unwrap()),
                slot_minutes: Some(30),
                ..Settings::default()
            }))
            .then_expect_events(vec![ClinicEvent::ClinicSettingsUpdated {
                name: None,
                time_zone: Some(TimeZone::parse("Europe/Paris").unwrap()),
                slot_minutes: Some(30),
                logo_url: None,
                address: None,
                phone: None,
                appointment_minutes: None,
                working_week: None,
            }]);
    }

    #[test]
    fn update_settings_with_nothing_is_invalid() {
        fx().given(vec![registered()])
            .when(ClinicCommand::UpdateSettings(Settings {
                name: None,
                time_zone: None,
                slot_minutes: None,
                ..Settings::default()
            }))
            .then_expect_error(ClinicError::NothingToUpdate);
    }

    #[test]
    fn update_settings_to_current_values_is_invalid() {
        let r = fx()
            .given(vec![registered()])
            .when(ClinicCommand::UpdateSettings(Settings {
                name: Some(text("North Clinic")),
                time_zone: Some(london()),
                slot_minutes: Some(DEFAULT_SLOT_MINUTES),
                ..Settings::default()
            }))
            .inspect_result();
        assert_kind(r, ErrorKind::Invalid, None);
    }

    #[test]
    fn slot_minutes_must_be_in_range() {
        for bad in [0, 4, 241] {
            let r = fx()
                .given(vec![registered()])
                .when(ClinicCommand::UpdateSettings(Settings {
                    name: None,
                    time_zone: None,
                    slot_minutes: Some(bad),
                    ..Settings::default()
                }))
                .inspect_result();
            assert_eq!(r, Err(ClinicError::InvalidSlotMinutes(bad)));
            assert_kind(r, ErrorKind::Invalid, Some("slot_minutes"));
        }
        for good in [5, 240] {
            fx().given(vec![registered()])
                .when(ClinicCommand::UpdateSettings(Settings {
                    name: None,
                    time_zone: None,
                    slot_minutes: Some(good),
                    ..Settings::default()
                }))
                .then_expect_events(vec![ClinicEvent::ClinicSettingsUpdated {
                    name: None,
                    time_zone: None,
                    slot_minutes: Some(good),
                    logo_url: None,
                    address: None,
                    phone: None,
                    appointment_minutes: None,
                    working_week: None,
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
            ClinicCommand::UpdateSettings(Settings {
                name: Some(text("x")),
                time_zone: None,
                slot_minutes: None,
                ..Settings::default()
            }),
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
                logo_url: None,
                address: None,
                phone: None,
                appointment_minutes: None,
                working_week: None,
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
                logo_url: None,
                address: None,
                phone: None,
                appointment_minutes: None,
                working_week: None,
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
        let golden = r#"{"ClinicRegistered":{"clinic_id":"00000000-0000-0000-0000-000000000001","name":"North Clinic","code":"north","time_zone":"Europe/London","plan":"professional","slot_minutes":15,"modules":["appointments","billing","laboratory"]}}"#;
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
        // Before modules, a clinic had appointments only.
        assert_eq!(new.modules, vec![Module::Appointments]);
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
    fn a_registration_adds_its_departments_and_enables_the_plans_modules() {
        let mut command = register_cmd();
        let departments = default_departments();
        if let ClinicCommand::Register {
            departments: d,
            plan,
            ..
        } = &mut command
        {
            *d = departments.clone();
            *plan = Plan::Basic;
        }
        let events = fx()
            .given_no_previous_events()
            .when(command)
            .inspect_result();
        let Ok(events) = events else {
            panic!("{events:?}")
        };
        assert_eq!(events.len(), 6);
        let mut clinic = Clinic::default();
        for e in events {
            clinic.apply(e);
        }
        let names: Vec<&str> = clinic
            .departments()
            .iter()
            .map(|d| d.name().as_str())
            .collect();
        assert_eq!(names, DEFAULT_DEPARTMENTS);
        assert_eq!(clinic.modules(), [Module::Appointments, Module::Billing]);
        assert_eq!(clinic.appointment_minutes(), DEFAULT_APPOINTMENT_MINUTES);
        // Two departments of one name in a registration are refused, as an admin's would be.
        let mut twice = register_cmd();
        if let ClinicCommand::Register { departments: d, .. } = &mut twice {
            *d = vec![
                departments[0].clone(),
                NewDepartment {
                    department_id: dept(9),
                    name: text("general PRACTICE"),
                },
            ];
        }
        let r = fx().given_no_previous_events().when(twice).inspect_result();
        assert!(
            matches!(r, Err(ClinicError::DuplicateDepartmentName(_))),
            "{r:?}"
        );
    }

    #[test]
    fn modules_are_enabled_within_the_plan_and_disabled_keeping_nothing_else() {
        let basic = ClinicEvent::ClinicPlanChanged {
            from: Plan::Professional,
            to: Plan::Basic,
            reason: None,
        };
        let off = ClinicEvent::ModuleDisabled {
            module: Module::Laboratory,
        };
        // Basic allows appointments and billing: laboratory is past the plan.
        let r = fx()
            .given(vec![registered(), off.clone(), basic.clone()])
            .when(ClinicCommand::EnableModule {
                module: Module::Laboratory,
            })
            .inspect_result();
        let over = OverLimit {
            plan: Plan::Basic,
            limit: Limit::Modules,
            allowed: 2,
            in_use: 2,
        };
        assert_eq!(r, Err(ClinicError::OverLimit(over.clone())));
        assert_eq!(
            DomainError::over_limit(&ClinicError::OverLimit(over.clone())),
            Some(&over)
        );
        fx().given(vec![registered(), off.clone()])
            .when(ClinicCommand::EnableModule {
                module: Module::Laboratory,
            })
            .then_expect_events(vec![ClinicEvent::ModuleEnabled {
                module: Module::Laboratory,
            }]);
        fx().given(vec![registered()])
            .when(ClinicCommand::EnableModule {
                module: Module::Billing,
            })
            .then_expect_error(ClinicError::ModuleAlreadyEnabled(Module::Billing));
        fx().given(vec![registered(), off.clone()])
            .when(ClinicCommand::DisableModule {
                module: Module::Laboratory,
            })
            .then_expect_error(ClinicError::ModuleNotEnabled(Module::Laboratory));
        // A downgrade keeps what is enabled.
        let mut clinic = Clinic::default();
        for e in [registered(), basic] {
            clinic.apply(e);
        }
        assert!(clinic.has_module(Module::Laboratory));
        clinic.apply(off);
        assert!(!clinic.has_module(Module::Laboratory));
    }

    #[test]
    fn settings_carry_only_what_changed_and_check_the_appointment_length() {
        let hours: WorkingHours = serde_json::from_value(serde_json::json!({
            "mon": [{"start": "08:00", "end": "16:00"}]
        }))
        .unwrap();
        let asked = Settings {
            name: Some(text("North Clinic")),
            logo_url: Some(WebUrl::parse("https://north.example/logo.png").unwrap()),
            phone: Some(Phone::parse("+44 20 7946 0000").unwrap()),
            appointment_minutes: Some(20),
            working_week: Some(hours.clone()),
            ..Settings::default()
        };
        let events = fx()
            .given(vec![registered()])
            .when(ClinicCommand::UpdateSettings(asked))
            .inspect_result()
            .unwrap();
        let [ClinicEvent::ClinicSettingsUpdated {
            name,
            logo_url,
            appointment_minutes,
            working_week,
            ..
        }] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        // The name did not change, so the event does not carry it.
        assert_eq!(name, &None);
        assert!(logo_url.is_some());
        assert_eq!(appointment_minutes, &Some(20));
        assert_eq!(working_week.as_ref(), Some(&hours));
        let mut clinic = Clinic::default();
        for e in [registered()].into_iter().chain(events) {
            clinic.apply(e);
        }
        assert_eq!(clinic.working_week(), Some(&hours));
        assert_eq!(clinic.appointment_minutes(), 20);
        assert!(clinic.phone().is_some());
        let r = fx()
            .given(vec![registered()])
            .when(ClinicCommand::UpdateSettings(Settings {
                appointment_minutes: Some(481),
                ..Settings::default()
            }))
            .inspect_result();
        assert_kind(r, ErrorKind::Invalid, Some("appointment_minutes"));
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
