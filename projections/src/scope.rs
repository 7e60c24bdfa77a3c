//! Clinic-scoped read transactions. Row-level security on every read-model table compares
//! `clinic_id` with `app.clinic_id`, set here per transaction, so a query that forgets its
//! `WHERE clinic_id = …` still sees only the caller's clinic.
//!
//! The setting travels with `BEGIN` in one simple-query message (one round trip, not two):
//! the clinic id is a UUID, formatted by `uuid`, so it cannot break out of its quotes.

use domain::ids::ClinicId;
use sqlx::{PgPool, Postgres, Transaction};

/// Begins a read transaction scoped to `clinic`.
pub async fn clinic_tx(
    pool: &PgPool,
    clinic: ClinicId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    begin_scoped(pool, clinic, "").await
}

/// [`clinic_tx`] for a search whose best plan depends on what is searched (a common or a rare
/// prefix): each statement is planned with its parameters' values, never with a generic plan
/// that would guess how many rows a prefix matches and evaluate the folding once per row.
pub async fn clinic_search_tx(
    pool: &PgPool,
    clinic: ClinicId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    begin_scoped(
        pool,
        clinic,
        "; SET LOCAL plan_cache_mode = force_custom_plan",
    )
    .await
}

/// [`clinic_tx`] for a large statement whose best plan does not depend on its parameters'
/// values (the dashboard's, whose bounds are computed inside it): planned once per
/// connection and reused, never planned again for each execution. Left to choose, PostgreSQL
/// kept planning it anew on every execution (its generic estimate looked dearer than the
/// custom plans), which cost more than running it.
pub async fn clinic_generic_plan_tx(
    pool: &PgPool,
    clinic: ClinicId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    begin_scoped(
        pool,
        clinic,
        "; SET LOCAL plan_cache_mode = force_generic_plan",
    )
    .await
}

async fn begin_scoped(
    pool: &PgPool,
    clinic: ClinicId,
    more: &str,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(format!(
        "BEGIN; SET LOCAL app.clinic_id = '{}'{more}",
        clinic.as_uuid()
    ))
    .await
}

/// Begins a read transaction for the platform admin: every clinic's row of `rm.clinics`
/// (which holds no patient data) and nothing else.
pub async fn platform_tx(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with("BEGIN; SET LOCAL app.platform = 'on'")
        .await
}

/// Ends a read transaction opened by the functions above. It wrote nothing, so it is rolled
/// back rather than committed: dropping it queues the `ROLLBACK` on the connection, and sqlx
/// sends it together with the check it makes of every connection going back to the pool (a
/// `Sync`, answered once the `ROLLBACK` is done, before the connection can be handed out
/// again). A read pays one round trip for both instead of a `COMMIT` of its own, and after
/// its answer rather than before it.
pub fn end_read(tx: Transaction<'static, Postgres>) {
    drop(tx);
}
