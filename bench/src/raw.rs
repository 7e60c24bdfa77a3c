//! The raw baseline: the least a command costs in PostgreSQL. One transaction reads a stream
//! and appends an event to it, on a table shaped like `events` (same columns, defaults,
//! generated columns, constraints and indexes) in the same database, with one connection per
//! client.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, Row};

use crate::client::Outcome;
use crate::error::Result;
use crate::load::{self, Stats};

const TABLE: &str = "bench_raw_events";

pub async fn prepare(database_url: &str) -> Result<()> {
    let mut conn = crate::harness::connect(database_url).await?;
    conn.execute(format!("DROP TABLE IF EXISTS {TABLE}").as_str())
        .await?;
    conn.execute(format!("CREATE TABLE {TABLE} (LIKE events INCLUDING ALL)").as_str())
        .await?;
    Ok(())
}

pub async fn cleanup(database_url: &str) -> Result<()> {
    let mut conn = crate::harness::connect(database_url).await?;
    conn.execute(format!("DROP TABLE IF EXISTS {TABLE}").as_str())
        .await?;
    Ok(())
}

/// Read-a-stream-and-append transactions from `clients` connections for `duration`.
pub async fn run(database_url: &str, clients: usize, duration: Duration) -> Result<Stats> {
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32)
        .min_connections(clients as u32)
        .connect(database_url)
        .await?;
    let tenant = uuid::Uuid::new_v4();
    let pool = Arc::new(pool);
    let stats = load::run("raw read+append (sqlx)", clients, duration, {
        let pool = pool.clone();
        move |_, _| {
            let pool = pool.clone();
            async move {
                match append(&pool, tenant).await {
                    Ok(()) => Outcome::Accepted,
                    Err(e) => {
                        eprintln!("raw baseline: {e}");
                        Outcome::Failed
                    }
                }
            }
        }
    })
    .await;
    pool.close().await;
    Ok(stats)
}

async fn append(pool: &sqlx::PgPool, tenant: uuid::Uuid) -> Result<(), sqlx::Error> {
    let stream = format!("{tenant}:{}", uuid::Uuid::new_v4());
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(&format!(
        "SELECT sequence, payload FROM {TABLE} WHERE aggregate_type = 'Patient' AND aggregate_id = $1 ORDER BY sequence"
    ))
    .bind(&stream)
    .fetch_all(&mut *tx)
    .await?;
    let next: i64 = rows.last().map(|r| r.get::<i64, _>(0) + 1).unwrap_or(1);
    let payload = serde_json::json!({"PatientRegistered": {
        "patient_id": stream, "clinic_id": tenant, "mrn": "MRN-000001",
        "name": {"given": "Raw", "family": "Baseline"}, "birth_date": "1980-01-01", "sex": "female",
        "phone": "+49301234567", "email": null, "address": null, "emergency_contact": null,
        "insurance": null, "allergies": ["latex"]}});
    let metadata = serde_json::json!({"tenant_id": tenant, "actor_id": uuid::Uuid::nil(),
        "actor_role": "clinic_admin", "request_id": "bench", "occurred_at": chrono::Utc::now()});
    sqlx::query(&format!(
        "INSERT INTO {TABLE} (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Patient', $1, $2, 'PatientRegistered', '1.0', $3::json, $4::json)"
    ))
    .bind(&stream)
    .bind(next)
    .bind(&payload)
    .bind(&metadata)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
