//! Set-based rules that no single stream can hold: clinic codes unique on the platform, MRNs
//! unique within a clinic.
//!
//! Uniqueness itself is enforced by a trigger on `events` that claims the code or MRN in the
//! same transaction as the append (see the `registries` migration), so it cannot be broken by
//! racing requests. This module hands out MRN numbers and answers look-ups.

use domain::ids::ClinicId;
use domain::values::{ClinicCode, Mrn};
use sqlx::PgPool;

use crate::error::StoreError;

/// The next MRN of a clinic. Numbers are never reused; a command that fails after taking one
/// leaves a gap, which is harmless.
pub async fn next_mrn(pool: &PgPool, clinic_id: ClinicId) -> Result<Mrn, StoreError> {
    let (n,): (i64,) = sqlx::query_as(
        "INSERT INTO mrn_counters (clinic_id, last_value) VALUES ($1, 1) \
         ON CONFLICT (clinic_id) DO UPDATE SET last_value = mrn_counters.last_value + 1 \
         RETURNING last_value",
    )
    .bind(clinic_id.as_uuid())
    .fetch_one(pool)
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
