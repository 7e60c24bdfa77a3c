//! Set-based rules that no single stream can hold: clinic codes unique on the platform, MRNs
//! unique within a clinic.
//!
//! Uniqueness itself is enforced by a trigger on `events` that claims the code or MRN in the
//! same transaction as the append (see the `registries` migration), so it cannot be broken by
//! racing requests. This module hands out MRN numbers and answers look-ups.

use domain::ids::ClinicId;
use domain::values::{ClinicCode, Mrn};
use sqlx::{PgExecutor, PgPool};

use crate::error::StoreError;

/// The next MRN of a clinic. Run it on the registering command's transaction
/// ([`crate::CommandTx::conn`]), as late as possible: the clinic's counter row stays locked
/// until that transaction ends, so one clinic's registrations queue behind each other there.
/// A number is never given to two patients: a registration that rolls back hands its number
/// back with the counter; one that fails otherwise after taking it leaves a gap.
pub async fn next_mrn<'e>(
    executor: impl PgExecutor<'e>,
    clinic_id: ClinicId,
) -> Result<Mrn, StoreError> {
    let (n,): (i64,) = sqlx::query_as(
        "INSERT INTO mrn_counters (clinic_id, last_value) VALUES ($1, 1) \
         ON CONFLICT (clinic_id) DO UPDATE SET last_value = mrn_counters.last_value + 1 \
         RETURNING last_value",
    )
    .bind(clinic_id.as_uuid())
    .fetch_one(executor)
    .await?;
    Ok(Mrn::from_number(n as u64))
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
