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
/// Invoices: add lines to a draft, finalise it, record payments. Refunds and voids are the
/// clinic admin's ([`CLINIC_ADMIN`]).
pub const INVOICE_DESK: &[ActorRole] = &[ClinicAdmin, Receptionist];

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
    /// Invoices and a patient's balance: a doctor only over their own appointments' invoices;
    /// nurses none.
    pub const INVOICES: &[ActorRole] = &[ClinicAdmin, Receptionist, Doctor, Auditor];
    /// The dashboard's revenue and amount outstanding (a doctor's: over their own invoices).
    pub const DASHBOARD_BILLING: &[ActorRole] = &[ClinicAdmin, Receptionist, Doctor];
}
