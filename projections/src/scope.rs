//! Clinic-scoped read transactions. Row-level security on every read-model table compares
//! `clinic_id` with `app.clinic_id`, set here per transaction, so a query that forgets its
//! `WHERE clinic_id = …` still sees only the caller's clinic.

use domain::ids::ClinicId;
use sqlx::{PgPool, Postgres, Transaction};

/// Begins a read transaction scoped to `clinic`.
pub async fn clinic_tx(
    pool: &PgPool,
    clinic: ClinicId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('app.clinic_id', $1, true)")
        .bind(clinic.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Begins a read transaction for the platform admin: every clinic's row of `rm.clinics`
/// (which holds no patient data) and nothing else.
pub async fn platform_tx(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('app.platform', 'on', true)")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
