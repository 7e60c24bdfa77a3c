//! Checkpoints: how far each projection has read, for read-your-writes and lag figures.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::Projection;

/// Where the read models stand against a position a client sent (`X-Min-Position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Every projection asked for has applied the event at the position.
    Yes,
    /// The event exists; some projection has not applied it yet.
    NotYet,
    /// No committed event has this position (beyond the head of the store, or a position
    /// a rolled-back transaction took). Waiting cannot help: no command answered it.
    Unwritten,
}

/// Whether every one of `projections` has applied the event at `position`, in one statement.
pub async fn reached(
    pool: &PgPool,
    projections: &[Projection],
    position: i64,
) -> Result<Reached, sqlx::Error> {
    let names: Vec<&str> = projections.iter().map(|p| p.name).collect();
    let (written, uncovered): (bool, i64) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM events WHERE position = $2), \
                (SELECT count(*) FROM projection_checkpoints c \
                 WHERE c.name = ANY($1) AND NOT EXISTS ( \
                     SELECT 1 FROM events e WHERE e.position = $2 \
                       AND (e.transaction_id, e.position) <= (c.transaction_id, c.position)))",
    )
    .bind(names)
    .bind(position)
    .fetch_one(pool)
    .await?;
    Ok(match (written, uncovered) {
        (false, _) => Reached::Unwritten,
        (true, 0) => Reached::Yes,
        (true, _) => Reached::NotYet,
    })
}

/// One projection's progress.
#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    pub projection: Projection,
    /// Position of the last applied event (0 before the first).
    pub position: i64,
    /// Committed events not yet applied.
    pub lag_events: i64,
    /// Age of the next event to apply (the oldest unapplied one in commit order), by its
    /// `occurred_at`, in milliseconds (0 when caught up).
    pub lag_ms: i64,
    pub updated_at: DateTime<Utc>,
    /// Set when the projection stopped at an event it cannot apply.
    pub failed_position: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    name: String,
    position: i64,
    lag_events: i64,
    oldest: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    failed_position: Option<i64>,
    last_error: Option<String>,
}

/// The progress of every projection, ordered by name. `/metrics` runs it on every scrape, so
/// the age is that of the next event to apply (the first in commit order: one index probe)
/// rather than a `min` over every unapplied event, and only the count walks the backlog
/// (an index-only scan of the unapplied events).
pub async fn status(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let rows: Vec<StatusRow> = sqlx::query_as(
        "SELECT c.name, c.position, l.lag_events, o.oldest, c.updated_at, c.failed_position, c.last_error \
         FROM projection_checkpoints c \
         CROSS JOIN LATERAL (SELECT count(*) AS lag_events FROM events e \
             WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position)) l \
         LEFT JOIN LATERAL (SELECT (e.metadata ->> 'occurred_at')::timestamptz AS oldest FROM events e \
             WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position) \
             ORDER BY e.transaction_id, e.position LIMIT 1) o ON true \
         ORDER BY c.name",
    )
    .fetch_all(pool)
    .await?;
    // Technical time, not business time: lag is how long ago (by the machine's clock) the
    // oldest unapplied event was recorded.
    let now = Utc::now();
    Ok(rows
        .into_iter()
        // A checkpoint row of no projection this build knows (none exist) is not reported.
        .filter_map(|r| Some((Projection::named(&r.name).ok()?, r)))
        .map(|(projection, r)| ProjectionStatus {
            projection,
            position: r.position,
            lag_events: r.lag_events,
            lag_ms: r
                .oldest
                .map(|t| (now - t).num_milliseconds().max(0))
                .unwrap_or(0),
            updated_at: r.updated_at,
            failed_position: r.failed_position,
            last_error: r.last_error,
        })
        .collect())
}
