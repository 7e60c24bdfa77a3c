//! `clinic rebuild`: rebuilds projections from position zero into fresh tables (schema
//! `rm_rebuild_<name>`), then swaps them into `rm` in one short transaction, so reads keep
//! working on the old tables during the rebuild. The swap holds the projection's checkpoint
//! row (which every live batch locks first), catches up to the newest committed events, moves
//! the tables, and sets the checkpoint to where the rebuild stopped.

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use crate::event::read_after;
use crate::{Projection, ProjectionError, PROJECTIONS};

/// The read model called `name`: an error for an unknown name, or for the hash chain.
pub fn rebuildable(name: &str) -> Result<Projection, ProjectionError> {
    let projection = Projection::named(name)?;
    if !projection.rebuildable {
        return Err(ProjectionError::NotRebuildable(name.to_owned()));
    }
    Ok(projection)
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub projection: String,
    pub events: u64,
    pub duration: Duration,
    pub position: i64,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// Reads and applies everything after `(tx, pos)` below the commit fence into `schema`,
/// in batches; returns the new position and the count.
async fn catch_up(
    conn: &mut PgConnection,
    projection: &Projection,
    schema: &str,
    from: (String, i64),
    batch: i64,
    in_one_tx: bool,
) -> Result<((String, i64), u64), ProjectionError> {
    let (mut tx_id, mut pos) = from;
    let mut applied = 0u64;
    loop {
        let events = read_after(conn, &tx_id, pos, batch).await?;
        let Some(last) = events.last() else {
            return Ok(((tx_id, pos), applied));
        };
        let next = (last.transaction_id.clone(), last.position);
        if in_one_tx {
            for event in &events {
                projection.apply(schema, conn, event).await?;
            }
        } else {
            let mut tx = conn.begin().await?;
            for event in &events {
                projection.apply(schema, &mut tx, event).await?;
            }
            tx.commit().await?;
        }
        applied += events.len() as u64;
        (tx_id, pos) = next;
    }
}

/// Rebuilds `projection`. `conn` must be the tables' owner (it creates schemas and moves
/// tables).
pub async fn rebuild_one(
    conn: &mut PgConnection,
    projection: &Projection,
) -> Result<RebuildReport, ProjectionError> {
    if !projection.rebuildable {
        return Err(ProjectionError::NotRebuildable(projection.name.to_owned()));
    }
    let name = projection.name;
    let started = Instant::now();
    let schema = format!("rm_rebuild_{name}");
    conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
        .await?;
    sqlx::query(&format!("SELECT rm_create_{name}($1)"))
        .bind(&schema)
        .execute(&mut *conn)
        .await?;
    tracing::info!(projection = name, "rebuilding into fresh tables");

    // The bulk of the work, outside any lock, as the worker role (row-level security holds
    // for the owner too: the tables FORCE it).
    conn.execute("SET ROLE clinic_worker").await?;
    let built = catch_up(conn, projection, &schema, ("0".into(), 0), 2000, false).await;
    conn.execute("RESET ROLE").await?;
    let (position, mut events) = built?;

    // The swap: hold the checkpoint row, catch up the last events, move the tables.
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.execute("SET LOCAL ROLE clinic_worker").await?;
    let ((final_tx, final_pos), more) =
        catch_up(&mut tx, projection, &schema, position, 2000, true).await?;
    tx.execute("RESET ROLE").await?;
    events += more;
    for table in projection.tables {
        tx.execute(format!("DROP TABLE rm.{table}").as_str())
            .await?;
        tx.execute(format!("ALTER TABLE {schema}.{table} SET SCHEMA rm").as_str())
            .await?;
    }
    sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = $2::xid8, position = $3, updated_at = now(), \
         failed_position = NULL, last_error = NULL WHERE name = $1",
    )
    .bind(name)
    .bind(&final_tx)
    .bind(final_pos)
    .execute(&mut *tx)
    .await?;
    tx.execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
        .await?;
    tx.commit().await?;
    let report = RebuildReport {
        projection: name.to_owned(),
        events,
        duration: started.elapsed(),
        position: final_pos,
    };
    tracing::info!(
        projection = name,
        events = report.events,
        seconds = report.duration.as_secs_f64(),
        events_per_second = report.events_per_second() as u64,
        "rebuilt"
    );
    Ok(report)
}

/// Rebuilds `only` (or every projection).
pub async fn rebuild(
    conn: &mut PgConnection,
    only: Option<&str>,
) -> Result<Vec<RebuildReport>, ProjectionError> {
    let chosen: Vec<Projection> = match only {
        Some(name) => vec![rebuildable(name)?],
        // Every read model; not the hash chain.
        None => PROJECTIONS
            .iter()
            .copied()
            .filter(|p| p.rebuildable)
            .collect(),
    };
    let mut reports = Vec::new();
    for projection in &chosen {
        reports.push(rebuild_one(conn, projection).await?);
    }
    Ok(reports)
}
