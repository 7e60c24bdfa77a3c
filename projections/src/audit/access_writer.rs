//! Group commit of the access log. Every read of patient data writes its row before it answers
//! (fail closed: a read whose row did not commit is not served). A transaction per read made
//! each read wait for a commit, and its WAL flush, of its own. The [`AccessWriter`] gathers the
//! rows of the reads waiting at the same moment and writes them with one statement
//! (`append_accesses`, migration `20261206000011`) in one transaction; each read resumes when
//! that transaction has committed, with its outcome. A read that arrives alone is written at
//! once, as before: nothing waits for a batch to fill.
//!
//! `WRITERS` flushes run at a time, each taking whatever has queued while the others ran, so one
//! slow commit does not hold every read back.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::NewAccess;

/// Rows written by one transaction at most.
pub const MAX_BATCH: usize = 256;
/// Flushes running at a time.
const WRITERS: usize = 2;
/// Rows waiting to be written before a read waits for room in the queue.
const QUEUE: usize = 4 * MAX_BATCH;

/// An access-log row, owned, on its way to the writer.
#[derive(Debug, Clone)]
struct Row {
    clinic: Uuid,
    actor_id: Uuid,
    role: String,
    patient_id: Option<Uuid>,
    endpoint: String,
    outcome: &'static str,
    request_id: String,
    client_ip: Option<String>,
    at: DateTime<Utc>,
    /// The patient ids as an array literal, `{id,id}` (see the migration).
    patient_ids: String,
    filter: Option<serde_json::Value>,
}

impl Row {
    fn of(access: &NewAccess<'_>) -> Row {
        let ids: Vec<String> = access.patient_ids.iter().map(Uuid::to_string).collect();
        Row {
            clinic: access.clinic.as_uuid(),
            actor_id: access.actor_id,
            role: access.role.to_owned(),
            patient_id: access.patient_id,
            endpoint: access.endpoint.to_owned(),
            outcome: access.outcome.as_str(),
            request_id: access.request_id.to_owned(),
            client_ip: access.client_ip.map(|ip| ip.to_string()),
            at: access.at,
            patient_ids: format!("{{{}}}", ids.join(",")),
            filter: access.filter.cloned(),
        }
    }
}

/// Why an access-log row was not written.
#[derive(Debug, Clone)]
pub enum AccessWriteError {
    /// The transaction that held it failed (every row of that transaction gets the error).
    Database(Arc<sqlx::Error>),
    /// The writer has stopped (the service is shutting down).
    Stopped,
}

impl std::fmt::Display for AccessWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessWriteError::Database(_) => f.write_str("could not write the access log"),
            AccessWriteError::Stopped => f.write_str("the access-log writer has stopped"),
        }
    }
}

impl std::error::Error for AccessWriteError {
    /// The database error itself (not the `Arc`), so that callers can tell an unreachable
    /// database by walking the sources.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AccessWriteError::Database(e) => Some(e.as_ref()),
            AccessWriteError::Stopped => None,
        }
    }
}

type Outcome = Result<(), AccessWriteError>;

struct Pending {
    row: Row,
    done: oneshot::Sender<Outcome>,
}

/// Writes access-log rows in group commits (see the module). Cheap to clone.
#[derive(Clone, Debug)]
pub struct AccessWriter {
    queue: mpsc::Sender<Pending>,
}

impl AccessWriter {
    /// Starts the writers on the current runtime. They stop when every clone of the writer is
    /// dropped, after writing what was queued.
    pub fn spawn(pool: PgPool) -> AccessWriter {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            tokio::spawn(run(pool.clone(), rx.clone()));
        }
        AccessWriter { queue }
    }

    /// Appends `access` and returns once the transaction that holds it has committed.
    pub async fn append(&self, access: &NewAccess<'_>) -> Outcome {
        let (done, outcome) = oneshot::channel();
        let pending = Pending {
            row: Row::of(access),
            done,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| AccessWriteError::Stopped)?;
        outcome.await.unwrap_or(Err(AccessWriteError::Stopped))
    }
}

/// One writer: takes what is queued (at least one row, at most [`MAX_BATCH`]), writes it, tells
/// each read its outcome; again until the queue is closed.
async fn run(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let taken = rx.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if taken == 0 {
            return;
        }
        let rows: Vec<&Row> = batch.iter().map(|p| &p.row).collect();
        let outcome = write(&pool, &rows)
            .await
            .map_err(|e| AccessWriteError::Database(Arc::new(e)));
        if let Err(e) = &outcome {
            tracing::warn!(rows = batch.len(), error = %e, "an access-log batch failed");
        }
        for pending in batch.drain(..) {
            // A read that gave up (its request was dropped) no longer listens.
            let _ = pending.done.send(outcome.clone());
        }
    }
}

/// Writes `rows` in one transaction (the statement's own): one round trip, one commit.
async fn write(pool: &PgPool, rows: &[&Row]) -> Result<(), sqlx::Error> {
    fn col<'r, T>(rows: &[&'r Row], f: impl Fn(&'r Row) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    sqlx::query("SELECT append_accesses($1, $2, $3, $4, $5, $6, $7, $8::inet[], $9, $10, $11)")
        .bind(col(rows, |r| r.clinic))
        .bind(col(rows, |r| r.actor_id))
        .bind(col(rows, |r| r.role.as_str()))
        .bind(col(rows, |r| r.patient_id))
        .bind(col(rows, |r| r.endpoint.as_str()))
        .bind(col(rows, |r| r.outcome))
        .bind(col(rows, |r| r.request_id.as_str()))
        .bind(col(rows, |r| r.client_ip.as_deref()))
        .bind(col(rows, |r| r.at))
        .bind(col(rows, |r| r.patient_ids.as_str()))
        .bind(col(rows, |r| r.filter.as_ref().map(sqlx::types::Json)))
        .execute(pool)
        .await
        .map(|_| ())
}

/// Writes the accesses of `batch` in one transaction, as the writer does with the reads that
/// wait together (for tests of the statement itself).
pub async fn append_accesses(pool: &PgPool, batch: &[NewAccess<'_>]) -> Result<(), sqlx::Error> {
    let rows: Vec<Row> = batch.iter().map(Row::of).collect();
    let refs: Vec<&Row> = rows.iter().collect();
    write(pool, &refs).await
}
