//! Who may call what: every role set of the API (see the roles table in docs/api.md). A
//! handler names one of these in `principal.require(…)`; none writes its own list.

use commands::ActorRole::{self, *};

// ---------------------------------------------------------------------------------------
// Commands.

pub const PLATFORM: &[ActorRole] = &[PlatformAdmin];
pub const CLINIC_ADMIN: &[ActorRole] = &[ClinicAdmin];
pub const PATIENT_DESK: &[ActorRole] = &[ClinicAdmin, Receptionist, Nurse];
pub const PATIENT_DEMOGRAPHICS: &[ActorRole] = &[ClinicAdmin, Receptionist, Nurse, Doctor];
pub const BOOKING: &[ActorRole] = &[ClinicAdmin, Receptionist, Nurse, Doctor];
pub const CLINICAL: &[ActorRole] = &[ClinicAdmin, Nurse, Doctor];

// ---------------------------------------------------------------------------------------
// The auditor's endpoints: the event history, replay, the access log and the hash chain.

pub const AUDIT: &[ActorRole] = &[Auditor, ClinicAdmin];

// ---------------------------------------------------------------------------------------
// Queries (docs/api.md, "Query endpoints").

/// Who may read what.
pub mod read {
    use commands::ActorRole::{self, *};

    pub const PATIENTS: &[ActorRole] = &[ClinicAdmin, Receptionist, Nurse, Doctor];
    pub const STAFF: &[ActorRole] = &[ClinicAdmin, Doctor, Nurse, Receptionist, Auditor];
    pub const APPOINTMENTS: &[ActorRole] = &[ClinicAdmin, Nurse, Receptionist, Doctor];
    pub const DASHBOARD: &[ActorRole] = &[ClinicAdmin, Doctor, Nurse, Receptionist];
    pub const CLINIC: &[ActorRole] = &[ClinicAdmin, Doctor, Nurse, Receptionist, Auditor];
    /// The fee schedule: clinic configuration, no patient data; front-line staff quote prices.
    pub const FEES: &[ActorRole] = &[ClinicAdmin, Doctor, Nurse, Receptionist, Auditor];
    /// The monthly report: counts and doctors' names, no patient data.
    pub const REPORTS: &[ActorRole] = &[ClinicAdmin];
    /// A doctor's free slots name no patient: every booking role may look.
    pub const AVAILABILITY: &[ActorRole] = &[ClinicAdmin, Receptionist, Nurse, Doctor];
}
