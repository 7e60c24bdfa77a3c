//! Set-based rules that no single stream can hold: clinic codes unique on the platform, MRNs
//! unique within a clinic, and which patients a doctor may see (`care_links`).
//!
//! Uniqueness itself is enforced by a trigger on `events` that claims the code or MRN in the
//! same transaction as the append (see the `registries` migration), so it cannot be broken by
//! racing requests. This module hands out MRN numbers and answers look-ups.

use domain::ids::{ClinicId, PatientId, StaffId};
use domain::values::{ClinicCode, Mrn, Plan};
use sqlx::{PgExecutor, PgPool};

use crate::error::StoreError;

/// An MRN taken for a registration, with what the plan check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenMrn {
    pub mrn: Mrn,
    /// The clinic's patients before this registration (registered, less those merged away),
    /// as committed: the counter row is locked.
    pub patients: u64,
    /// The clinic's plan; `None` when the clinic has no registry row (it is written with the
    /// clinic's registration, so only a store written by hand lacks it).
    pub plan: Option<Plan>,
}

/// The next MRN of a clinic, the number of its patients and its plan, in one statement. Run
/// it on the registering command's transaction ([`crate::CommandTx::conn`]), as late as
/// possible: the clinic's counter row stays locked until that transaction ends, so one
/// clinic's registrations queue behind each other there (which is also what holds the plan's
/// patient limit under concurrency; the same update counts the patient, and the `events`
/// trigger takes a merged one off). A
/// number is never given to two patients: a registration that rolls back hands its number
/// back with the counter; one that fails otherwise after taking it leaves a gap.
pub async fn next_mrn<'e>(
    executor: impl PgExecutor<'e>,
    clinic_id: ClinicId,
) -> Result<TakenMrn, StoreError> {
    // The patient is counted in the same row update; the count before it is returned.
    let (n, patients, plan): (i64, i32, Option<String>) = sqlx::query_as(
        "WITH taken AS ( \
             INSERT INTO mrn_counters (clinic_id, last_value, patients) VALUES ($1, 1, 1) \
             ON CONFLICT (clinic_id) DO UPDATE SET last_value = mrn_counters.last_value + 1, \
                                                   patients = mrn_counters.patients + 1 \
             RETURNING last_value, patients) \
         SELECT t.last_value, t.patients - 1, c.plan \
         FROM taken t LEFT JOIN clinic_codes c ON c.clinic_id = $1",
    )
    .bind(clinic_id.as_uuid())
    .fetch_one(executor)
    .await?;
    Ok(TakenMrn {
        mrn: Mrn::from_number(n as u64),
        patients: patients.max(0) as u64,
        plan: plan.as_deref().map(crate::plans::stored_plan).transpose()?,
    })
}

/// Whether `doctor` may see `patient`: the patient has an appointment with them that is
/// booked, checked in, in progress or fulfilled (a cancelled one or a no-show grants nothing).
/// `care_links` is kept by a trigger on `events`, so on a command's transaction
/// ([`crate::CommandTx::conn`]) this is the state at that commit. The read side applies the
/// same rule to `rm.appointments` (`projections::patients`).
pub async fn doctor_sees_patient<'e>(
    executor: impl PgExecutor<'e>,
    clinic_id: ClinicId,
    doctor: StaffId,
    patient: PatientId,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM care_links \
          WHERE clinic_id = $1 AND doctor_id = $2 AND patient_id = $3 AND grants)",
    )
    .bind(clinic_id.as_uuid())
    .bind(doctor.as_uuid())
    .bind(patient.as_uuid())
    .fetch_one(executor)
    .await?)
}

/// The clinic registered under `code`, if any.
pub async fn clinic_by_code(
    pool: &PgPool,
    code: &ClinicCode,
) -> Result<Option<ClinicId>, StoreError> {
    let row: Option<(uuid::Uuid,)> =
        sqlx::query_as("SELECT clinic_id FROM clinic_codes WHERE code = $1")
            .bind(code.as_ref())
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(id,)| ClinicId::from_uuid(id)))
}
