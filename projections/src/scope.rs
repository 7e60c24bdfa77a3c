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

/// [`clinic_tx`] for a phone search, whose best plan depends on the digits searched: for a
/// rare prefix, the range of the phone index and a sort; for a common one (a city's code),
/// the patients in page order, filtered, until the page is full. Each statement is planned
/// with its parameters' values, never with a generic plan that would guess how many rows a
/// prefix matches.
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

/// [`clinic_tx`] for a statement whose best plan does not depend on its parameters' values:
/// planned once per connection and reused, never planned again for each execution.
/// - The dashboard's, whose bounds are computed inside it.
/// - A page read in the order of an index (a list of patients or appointments): the plan is
///   that index's range whatever the values. Its `LIMIT` is a parameter, and a generic plan
///   assumes it keeps a tenth of the rows, so the generic estimate always looked dearer than
///   a custom plan that knows it keeps 21.
/// - A name search: two index ranges whose bounds the statement computes once
///   (`patients::search_patients`).
///
/// Left to choose (or forced to, for the name search), PostgreSQL planned each of these
/// anew on every execution, which cost more than running it. `EXPLAIN ANALYZE` of the
/// seventh `EXECUTE`, on a clinic of 2,000 patients and 1,100 appointments:
///
/// | read | planning, before | execution, before | planning, now | execution, now |
/// | --- | ---: | ---: | ---: | ---: |
/// | a page of appointments | 0.32 ms | 0.15 ms | 0.03 ms | 0.23 ms |
/// | a page of patients | 0.13 ms | 0.06 ms | 0.005 ms | 0.03 ms |
/// | a name search matching every patient | 0.84 ms | 0.07 ms | 0.02 ms | 0.18–0.33 ms |
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
