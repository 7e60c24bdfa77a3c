//! `clinic rebuild`: rebuilds projections from position zero into fresh tables (schema
//! `rm_rebuild_<name>`), then swaps them into `rm` in one short transaction, so reads keep
//! working on the old tables during the rebuild.
//!
//! The events are read once for all the projections being rebuilt, in large batches, in two
//! parts. The bulk is every event below the fence (the oldest transaction running when the
//! load begins), read stream by stream ([`StreamCursor`]): all the events of a read-model row
//! arrive together, so the row is written once, with what all of them make of it, instead of
//! once per batch of the commit order that one of its events falls in. Every row is one
//! stream's, and what spans streams (counts, the registrations per bucket, the clinic's
//! newest instant) does not depend on the order across streams, so the tables are the ones
//! the commit order makes (the e2e test `projections::incremental_and_rebuilt_read_models_are_identical`
//! compares them). With a second connection, as `clinic rebuild` gives, the next batch is read
//! and decoded while this one is written; with more, they write beside the first, each a share
//! of the streams ([`Helpers`]). Each batch is applied to every projection (set-based: see
//! [`crate::changes`]) and committed with `synchronous_commit = off` — a crash only loses
//! rebuild tables nobody reads yet, and a rebuild is re-run from zero. Each batch is its own
//! transaction, so the rebuild never holds the commit fence (the oldest running transaction)
//! back for long. The fresh tables are loaded with their primary keys and unique indexes
//! only (every write of a projection finds its row by primary key), filled to the default
//! fill factor: read stream by stream, a row is written once (a rebuild of the benchmark's
//! 1M events updates no row of `rm.patients`), so the half-filled pages the load once left
//! room on for HOT updates only doubled the heap (522 MB against 261 MB for 467k patients).
//! The other indexes are built once the bulk is in, and the tables vacuumed and analysed,
//! before the swap. The swap holds the projections' checkpoint rows (which every live batch
//! locks first), catches up in commit order from the bulk's last event to the newest committed
//! ones, moves the tables, and sets the
//! checkpoints to where the rebuild stopped; it commits synchronously.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use sqlx::{Connection, Executor, PgConnection};

use crate::event::{read_after, rebuild_fence, StoredEvent, StreamCursor};
use crate::{Projection, ProjectionError, PROJECTIONS};

/// The read model called `name`: an error for an unknown name, or for the hash chain.
pub fn rebuildable(name: &str) -> Result<Projection, ProjectionError> {
    let projection = Projection::named(name)?;
    if !projection.rebuildable {
        return Err(ProjectionError::NotRebuildable(name.to_owned()));
    }
    Ok(projection)
}

/// How the load's connections write: as the worker role (row-level security holds for the
/// owner too: the tables FORCE it), with commits that do not wait for the WAL flush.
const LOAD_SESSION: &str = "SET ROLE clinic_worker; SET synchronous_commit = off";

/// Events read per batch of a rebuild.
pub const BATCH: i64 = 10_000;

/// What a rebuild did for one projection.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub projection: String,
    /// Events read: up to `position`, read once for every projection rebuilt; only the streams
    /// of its aggregate type for a single read model that reads one type.
    pub events: u64,
    /// The whole rebuild, from the first read to the swap.
    pub duration: Duration,
    pub position: i64,
    /// Of `events`, those this projection applies.
    pub applied: u64,
    /// Time spent writing this projection's tables.
    pub apply_time: Duration,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// Per projection: events it applied and time spent applying them.
type Tally = Vec<(u64, Duration)>;

/// Reads everything after `(tx, pos)` below the commit fence, in commit order, in batches,
/// and applies each batch to every one of `projections` (their tables in
/// `rm_rebuild_<name>`), in the transaction `conn` is in (the swap's). Returns the new
/// position and the number of events read.
async fn catch_up(
    conn: &mut PgConnection,
    projections: &[Projection],
    from: (String, i64),
    batch: i64,
    tally: &mut Tally,
) -> Result<((String, i64), u64), ProjectionError> {
    let mut at = from;
    let mut read = 0u64;
    loop {
        let events = read_after(conn, &at.0, at.1, batch).await?;
        let Some(next) = end_of(&events) else {
            return Ok((at, read));
        };
        apply_all(conn, projections, &events, (0, 1), tally).await?;
        read += events.len() as u64;
        at = next;
    }
}

/// Where a read continues after `events`: the last one's (transaction, position).
fn end_of(events: &[StoredEvent]) -> Option<(String, i64)> {
    events
        .last()
        .map(|e| (e.transaction_id.clone(), e.position))
}

/// The connections a rebuild may use beside the one it writes and swaps on (`clinic rebuild`
/// opens them, as the tables' owner).
#[derive(Default)]
pub struct Helpers {
    /// Reads the log ahead: the next batch is read and decoded while this one is written.
    pub reader: Option<PgConnection>,
    /// Write a share of each batch beside the main connection (see [`share_of`]).
    pub writers: Vec<PgConnection>,
}

/// Which of `writers` applies `e` to the read models of one aggregate type: a share of the
/// streams, by a hash of the stream id. Every event of a stream goes to the same writer, which
/// applies its batches in order, so a row's events still arrive in sequence; the rows of
/// different writers are different rows. (What rows of several streams share — the
/// registrations per bucket — is added with `ON CONFLICT … DO UPDATE` in key order, so two
/// writers wait for each other there but never deadlock.) The read models of every event
/// (`rm.clinics`: counts of every stream) are applied by the main writer alone, to whole
/// batches, in order.
fn share_of(e: &StoredEvent, writers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    e.aggregate_id.hash(&mut hasher);
    (hasher.finish() % writers as u64) as usize
}

/// Applies writer `share`'s part of a batch (of `writers` writers) to every one of
/// `projections`, in a transaction of its own.
async fn apply_share(
    conn: &mut PgConnection,
    projections: &[Projection],
    events: &[StoredEvent],
    share: (usize, usize),
    tally: &mut Tally,
) -> Result<(), ProjectionError> {
    let mut tx = conn.begin().await?;
    apply_all(&mut tx, projections, events, share, tally).await?;
    tx.commit().await?;
    Ok(())
}

/// Applies writer `share`'s part of a batch (of `writers` writers; all of it for `(0, 1)`) to
/// every one of `projections`, in the transaction `conn` is in.
async fn apply_all(
    conn: &mut PgConnection,
    projections: &[Projection],
    events: &[StoredEvent],
    (share, writers): (usize, usize),
    tally: &mut Tally,
) -> Result<(), ProjectionError> {
    for (projection, (applied, time)) in projections.iter().zip(tally.iter_mut()) {
        let mine: Vec<&StoredEvent> = events
            .iter()
            .filter(|e| match projection.aggregate_type {
                Some(only) => {
                    only == e.aggregate_type && (writers == 1 || share_of(e, writers) == share)
                }
                None => share == 0,
            })
            .collect();
        if mine.is_empty() {
            continue;
        }
        let started = Instant::now();
        (projection.apply)(&format!("rm_rebuild_{}", projection.name), conn, &mine).await?;
        *applied += mine.len() as u64;
        *time += started.elapsed();
    }
    Ok(())
}

/// Where the bulk's batches come from: read on the writing connection between writes, or
/// read ahead by a task on a connection of its own.
enum Batches {
    Inline(StreamCursor),
    Ahead {
        rx: tokio::sync::mpsc::Receiver<Result<Vec<StoredEvent>, sqlx::Error>>,
        reading: tokio::task::JoinHandle<()>,
    },
}

impl Batches {
    fn new(mut cursor: StreamCursor, reader: Option<PgConnection>, batch: i64) -> Batches {
        let Some(mut reader) = reader else {
            return Batches::Inline(cursor);
        };
        // One batch read ahead: the reader waits while the writer is a whole batch behind.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let reading = tokio::spawn(async move {
            loop {
                let events = cursor.next(&mut reader, batch).await;
                // An error or an empty batch is the last thing sent.
                let last = events.as_ref().map_or(true, Vec::is_empty);
                if tx.send(events).await.is_err() || last {
                    break;
                }
            }
            let _ = reader.close().await;
        });
        Batches::Ahead { rx, reading }
    }

    /// The next batch; empty at the end.
    async fn next(
        &mut self,
        conn: &mut PgConnection,
        batch: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        match self {
            Batches::Inline(cursor) => cursor.next(conn, batch).await,
            Batches::Ahead { rx, .. } => rx.recv().await.unwrap_or_else(|| Ok(Vec::new())),
        }
    }

    async fn close(self) {
        if let Batches::Ahead { rx, reading } = self {
            drop(rx);
            let _ = reading.await;
        }
    }
}

type Writer = (
    tokio::sync::mpsc::Sender<Arc<Vec<StoredEvent>>>,
    tokio::task::JoinHandle<Result<Tally, ProjectionError>>,
);

/// A writer beside the main one: applies its share of each batch it is sent, in order, on its
/// own connection; returns what it applied.
fn spawn_writer(
    mut conn: PgConnection,
    projections: Vec<Projection>,
    share: (usize, usize),
) -> Writer {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Arc<Vec<StoredEvent>>>(1);
    let handle = tokio::spawn(async move {
        let mut tally: Tally = vec![(0, Duration::ZERO); projections.len()];
        conn.execute(LOAD_SESSION).await?;
        while let Some(events) = rx.recv().await {
            apply_share(&mut conn, &projections, &events, share, &mut tally).await?;
        }
        let _ = conn.close().await;
        Ok(tally)
    });
    (tx, handle)
}

/// The bulk of a rebuild: every event below the fence, read stream by stream (see
/// [`StreamCursor`]) in batches of `batch`, each batch applied to every one of `projections`
/// and committed on its own — by `conn` alone, or shared with `helpers.writers` (each its
/// share of the streams: [`share_of`]), while `helpers.reader` reads the next batch. Returns
/// the number of events read.
async fn load(
    conn: &mut PgConnection,
    helpers: Helpers,
    cursor: StreamCursor,
    projections: &[Projection],
    batch: i64,
    tally: &mut Tally,
) -> Result<u64, ProjectionError> {
    let writers = helpers.writers.len() + 1;
    let mut batches = Batches::new(cursor, helpers.reader, batch);
    let others: Vec<Writer> = helpers
        .writers
        .into_iter()
        .enumerate()
        .map(|(i, w)| spawn_writer(w, projections.to_vec(), (i + 1, writers)))
        .collect();
    let mut read = 0u64;
    let mut outcome: Result<(), ProjectionError> = Ok(());
    loop {
        let events = match batches.next(conn, batch).await {
            Ok(events) if events.is_empty() => break,
            Ok(events) => Arc::new(events),
            Err(e) => {
                outcome = Err(e.into());
                break;
            }
        };
        // A writer that stopped has failed: its error is taken below.
        let sent = join_all(others.iter().map(|(tx, _)| tx.send(events.clone()))).await;
        if sent.iter().any(Result::is_err) {
            break;
        }
        if let Err(e) = apply_share(conn, projections, &events, (0, writers), tally).await {
            outcome = Err(e);
            break;
        }
        read += events.len() as u64;
    }
    batches.close().await;
    for (tx, handle) in others {
        drop(tx);
        let theirs = match handle.await {
            Ok(result) => result,
            Err(e) => Err(ProjectionError::RebuildWriter(e.to_string())),
        };
        match theirs {
            Ok(theirs) => {
                for (mine, (applied, time)) in tally.iter_mut().zip(theirs) {
                    mine.0 += applied;
                    mine.1 += time;
                }
            }
            Err(e) => outcome = outcome.and(Err(e)),
        }
    }
    outcome.map(|()| read)
}

/// Rebuilds `projections` together. `conn` must be the tables' owner (it creates schemas and
/// moves tables); `helpers` read the log ahead and write beside it during the load.
async fn rebuild_together(
    conn: &mut PgConnection,
    helpers: Helpers,
    projections: &[Projection],
    batch: i64,
) -> Result<Vec<RebuildReport>, ProjectionError> {
    let started = Instant::now();
    for projection in projections {
        let schema = format!("rm_rebuild_{}", projection.name);
        conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
            .await?;
        sqlx::query(&format!("SELECT rm_create_{}($1)", projection.name))
            .bind(&schema)
            .execute(&mut *conn)
            .await?;
    }
    tracing::info!(projections = ?projections, "rebuilding into fresh tables");
    let mut tally: Tally = vec![(0, Duration::ZERO); projections.len()];
    let schemas: Vec<String> = projections
        .iter()
        .map(|p| format!("rm_rebuild_{}", p.name))
        .collect();
    let deferred = drop_secondary_indexes(conn, &schemas).await?;
    let tables = tables_of(conn, &schemas).await?;

    // The bulk of the work, outside any lock, as the worker role (row-level security holds
    // for the owner too: the tables FORCE it).
    conn.execute(LOAD_SESSION).await?;
    let built = match rebuild_fence(conn).await {
        Ok((fence, end)) => load(
            conn,
            helpers,
            // One read model of one aggregate type reads only that type's streams.
            StreamCursor::new(
                fence,
                match projections {
                    [only] => only.aggregate_type,
                    _ => None,
                },
            ),
            projections,
            batch,
            &mut tally,
        )
        .await
        .map(|read| (end, read)),
        Err(e) => Err(e.into()),
    };
    conn.execute("RESET ROLE; RESET synchronous_commit").await?;
    let (position, mut events) = built?;
    index_and_analyse(conn, &deferred, &tables).await?;

    // The swap: hold the checkpoint rows (always in the order of PROJECTIONS, so two
    // rebuilds cannot deadlock; a worker holds one row at a time), catch up the last events,
    // move the tables.
    let mut tx = conn.begin().await?;
    let names: Vec<&str> = projections.iter().map(|p| p.name).collect();
    sqlx::query(
        "SELECT 1 FROM projection_checkpoints WHERE name = ANY($1) ORDER BY name FOR UPDATE",
    )
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    tx.execute("SET LOCAL ROLE clinic_worker").await?;
    let ((final_tx, final_pos), more) =
        catch_up(&mut tx, projections, position, batch, &mut tally).await?;
    tx.execute("RESET ROLE").await?;
    events += more;
    for projection in projections {
        let schema = format!("rm_rebuild_{}", projection.name);
        for table in projection.tables {
            tx.execute(format!("DROP TABLE rm.{table}").as_str())
                .await?;
            tx.execute(format!("ALTER TABLE {schema}.{table} SET SCHEMA rm").as_str())
                .await?;
        }
        tx.execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
            .await?;
    }
    sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = $2::xid8, position = $3, updated_at = now(), \
         failed_position = NULL, last_error = NULL WHERE name = ANY($1)",
    )
    .bind(&names)
    .bind(&final_tx)
    .bind(final_pos)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let duration = started.elapsed();
    let reports: Vec<RebuildReport> = projections
        .iter()
        .zip(tally)
        .map(|(projection, (applied, apply_time))| RebuildReport {
            projection: projection.name.to_owned(),
            events,
            duration,
            position: final_pos,
            applied,
            apply_time,
        })
        .collect();
    for report in &reports {
        tracing::info!(
            projection = report.projection,
            events = report.events,
            applied = report.applied,
            seconds = report.duration.as_secs_f64(),
            apply_seconds = report.apply_time.as_secs_f64(),
            events_per_second = report.events_per_second() as u64,
            "rebuilt"
        );
    }
    Ok(reports)
}

/// Drops the indexes of the tables in `schemas` that neither a primary key nor a unique
/// index needs; returns their definitions, to build them again after the load.
async fn drop_secondary_indexes(
    conn: &mut PgConnection,
    schemas: &[String],
) -> Result<Vec<String>, ProjectionError> {
    let deferred: Vec<(String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid) \
         FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = ANY($1) AND NOT i.indisunique AND NOT i.indisprimary \
         ORDER BY 1",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    for (name, _) in &deferred {
        conn.execute(format!("DROP INDEX {name}").as_str()).await?;
    }
    Ok(deferred
        .into_iter()
        .map(|(_, definition)| definition)
        .collect())
}

/// The tables of `schemas`, qualified.
async fn tables_of(
    conn: &mut PgConnection,
    schemas: &[String],
) -> Result<Vec<String>, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
         WHERE schemaname = ANY($1) ORDER BY 1",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?)
}

/// Builds the `deferred` indexes, vacuums and analyses `tables`, so the swapped-in tables are planned with
/// statistics from their first query and their index-only scans read no heap.
async fn index_and_analyse(
    conn: &mut PgConnection,
    deferred: &[String],
    tables: &[String],
) -> Result<(), ProjectionError> {
    let started = Instant::now();
    conn.execute("SET maintenance_work_mem = '256MB'").await?;
    for definition in deferred {
        conn.execute(definition.as_str()).await?;
    }
    // Vacuumed as well as analysed: the visibility map of the fresh pages is set, so the
    // first reads of an index that covers them do not visit the heap (the dashboard's counts,
    // on a database without autovacuum, fetched every row from the heap: 0.9 ms for 719 rows
    // of one clinic), and the dead versions the load's updates left are gone.
    conn.execute(format!("VACUUM (ANALYZE) {}", tables.join(", ")).as_str())
        .await?;
    conn.execute("RESET maintenance_work_mem").await?;
    tracing::info!(
        indexes = deferred.len(),
        tables = tables.len(),
        seconds = started.elapsed().as_secs_f64(),
        "indexed and analysed the rebuilt tables"
    );
    Ok(())
}

/// Rebuilds `only` (or every projection), reading and writing on `conn`, in batches of
/// [`BATCH`] events.
pub async fn rebuild(
    conn: &mut PgConnection,
    only: Option<&str>,
) -> Result<Vec<RebuildReport>, ProjectionError> {
    rebuild_with(conn, Helpers::default(), only, BATCH).await
}

/// [`rebuild`] in batches of `batch` events, with the connections of `helpers` (if any): one
/// that reads the log ahead, so the reading and decoding of the next batch overlap the writes
/// of this one, and writers that apply a share of each batch beside `conn` (`clinic rebuild`
/// gives a reader and `--writers` − 1 writers).
pub async fn rebuild_with(
    conn: &mut PgConnection,
    helpers: Helpers,
    only: Option<&str>,
    batch: i64,
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
    rebuild_together(conn, helpers, &chosen, batch).await
}
