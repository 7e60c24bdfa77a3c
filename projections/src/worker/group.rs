//! Several projections in one transaction. The read models' workers share one read of the
//! events and one commit per batch: a batch locks every checkpoint of the group (in name
//! order, as a rebuild's swap does), reads the events after them once, applies them to each
//! projection, and moves every checkpoint as one compare-and-swap. Before, each projection
//! ran its own transaction (lock, read, apply, move, commit) for every batch: at 800
//! registrations a second their five workers took a third of the machine's CPU.
//!
//! The group only runs while its checkpoints are all at one place. When they are not (a
//! projection was rebuilt or is new) or a projection meets an event it cannot apply, the
//! caller runs the projections one by one ([`super::run_batch`]) until they meet again; a
//! projection that stops leaves the group.

use sqlx::{Connection, PgConnection};
use tracing::instrument;

use super::{move_checkpoints, simulated_crash, Batch, WorkerConfig};
use crate::event::read_after;
use crate::{Projection, ProjectionError};

/// What a group batch did.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupBatch {
    /// Every projection of the group applied the same events and moved its checkpoint.
    Applied(Batch),
    /// Nothing to do.
    Idle,
    /// The checkpoints are not all at one place (or one is missing): nothing was done; run
    /// the projections one by one.
    Diverged,
}

/// Applies the next batch to every one of `projections` (their tables in `rm`) in one
/// transaction, and moves their checkpoints in it.
#[instrument(skip_all, fields(projections = projections.len(), position))]
pub async fn run_group_batch(
    conn: &mut PgConnection,
    projections: &[Projection],
    config: &WorkerConfig,
) -> Result<GroupBatch, ProjectionError> {
    let names: Vec<&str> = projections.iter().map(|p| p.name).collect();
    let mut tx = conn.begin().await?;
    let checkpoints: Vec<(String, i64)> = sqlx::query_as(
        "SELECT transaction_id::text, position FROM projection_checkpoints \
         WHERE name = ANY($1) ORDER BY name FOR UPDATE",
    )
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    let Some((old_tx, old_pos)) = checkpoints.first().cloned() else {
        tx.rollback().await?;
        return Ok(GroupBatch::Diverged);
    };
    let together = checkpoints.len() == names.len()
        && checkpoints
            .iter()
            .all(|(t, p)| *t == old_tx && *p == old_pos);
    if !together {
        tx.rollback().await?;
        return Ok(GroupBatch::Diverged);
    }
    let events = read_after(&mut tx, &old_tx, old_pos, config.batch_size).await?;
    let Some(last) = events.last() else {
        tx.rollback().await?;
        return Ok(GroupBatch::Idle);
    };
    let (new_tx, new_pos) = (last.transaction_id.clone(), last.position);
    let crash = config.crash_after.filter(|n| *n < events.len());
    for projection in projections {
        let upto = crash.unwrap_or(events.len());
        projection.apply("rm", &mut tx, &events[..upto]).await?;
    }
    if let Some(n) = crash {
        return Err(simulated_crash(n));
    }
    move_checkpoints(&mut tx, &names, (&old_tx, old_pos), (&new_tx, new_pos)).await?;
    tx.commit().await?;
    tracing::Span::current().record("position", new_pos);
    Ok(GroupBatch::Applied(Batch {
        applied: events.len(),
        position: new_pos,
    }))
}
