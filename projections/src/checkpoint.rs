//! Checkpoints: how far each projection has read, for read-your-writes and lag figures.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::projection::PROJECTIONS;
use crate::scope::end_read;
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
    /// Committed events not yet applied, counted up to [`LAG_COUNT_LIMIT`]: exact below it,
    /// the limit itself when there are more ([`ProjectionStatus::lag_events_capped`]).
    pub lag_events: i64,
    /// Whether more than [`LAG_COUNT_LIMIT`] events wait (`lag_events` is then the limit).
    pub lag_events_capped: bool,
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

/// How many unapplied events [`status`] counts per projection. A scrape costs at most this
/// many index entries per projection, however long the backlog: counted to the end, the
/// count read every unapplied event on every scrape, and after a rebuild of 1M events each of
/// the benchmark's status reads took 426–437 ms of PostgreSQL's time while the workers caught
/// up. The age of the backlog (`lag_ms`) is exact whatever its length.
pub const LAG_COUNT_LIMIT: i64 = 10_000;

/// The progress of the projections named in `$2`: `$1` is how many unapplied events to count
/// at most, plus one (the one past the limit says that there are more). The age is that of the next
/// event to apply (the first in commit order: one index probe) rather than a `min` over every
/// unapplied event; the count reads at most `$1` entries of the `(transaction_id, position)`
/// index, without the heap.
pub const STATUS_SQL: &str = "\
SELECT c.name, c.position, l.lag_events, o.oldest, c.updated_at, c.failed_position, c.last_error \
FROM projection_checkpoints c \
CROSS JOIN LATERAL (SELECT count(*) AS lag_events FROM ( \
    SELECT FROM events e WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position) \
    ORDER BY e.transaction_id, e.position LIMIT $1) b) l \
LEFT JOIN LATERAL (SELECT (e.metadata ->> 'occurred_at')::timestamptz AS oldest FROM events e \
    WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position) \
    ORDER BY e.transaction_id, e.position LIMIT 1) o ON true \
WHERE c.name = ANY($2) \
ORDER BY c.name";

/// How [`STATUS_SQL`] runs: in a transaction that only lets it read `events` in the order of
/// the `(transaction_id, position)` index. The planner cannot know how far behind each
/// checkpoint is (it guesses a third of the table), and with that guess it chose a
/// sequential scan, or a bitmap scan and a sort, that read the whole table or the whole
/// backlog before the limit applied. `EXPLAIN ANALYZE` on 38k events, six projections: caught
/// up, 16 ms for the sequential scan, 0.3 ms in index order; all 38k behind, 40 ms for the
/// bitmap scan and sort, 7 ms in index order (it was 20–43 ms before the limit, and grew
/// with the backlog).
pub const STATUS_BEGIN: &str =
    "BEGIN READ ONLY; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off";

/// The progress of every projection, ordered by name. `/metrics` runs it on every scrape.
pub async fn status(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    status_counting_up_to(pool, LAG_COUNT_LIMIT).await
}

/// [`status`], counting at most `limit` unapplied events per projection.
pub async fn status_counting_up_to(
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let mut tx = pool.begin_with(STATUS_BEGIN).await?;
    let rows: Vec<StatusRow> = sqlx::query_as(STATUS_SQL)
        .bind(limit.saturating_add(1))
        .bind(PROJECTIONS.iter().map(|p| p.name).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
    end_read(tx);
    // Technical time, not business time: lag is how long ago (by the machine's clock) the
    // oldest unapplied event was recorded.
    let now = Utc::now();
    Ok(rows
        .into_iter()
        // Every row names a projection (the statement asked for those only).
        .filter_map(|r| Some((Projection::named(&r.name).ok()?, r)))
        .map(|(projection, r)| ProjectionStatus {
            projection,
            position: r.position,
            lag_events: r.lag_events.min(limit),
            lag_events_capped: r.lag_events > limit,
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
