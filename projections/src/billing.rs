//! The billing process manager (issue 14): it turns an appointment's `AppointmentCompleted`
//! (FHIR `fulfilled`) or `AppointmentMarkedNoShow` into a command for another aggregate, the
//! draft invoice of that appointment.
//!
//! It tails the event log like a projection: in commit order, below the oldest running
//! transaction (the projections' commit fence, [`crate::event`]), from its own checkpoint row
//! (`billing`). A batch locks the checkpoint, reads the next events, asks the [`Issuer`] for
//! each billable one — on the batch's own transaction — and moves the checkpoint as a
//! compare-and-swap, all in one transaction. So:
//! - a crash (or a kill) anywhere in a batch rolls back its invoices *and* its checkpoint
//!   move: the next batch reads the same events again and issues them once;
//! - two workers serialise on the checkpoint row (and on its lease); the second reads the
//!   checkpoint the first one left;
//! - a replay from position zero (or any repeat) meets invoices that exist: the invoice id is
//!   derived from the appointment id, so the issuer writes nothing the second time.
//!
//! `commands` and `projections` never call each other: what issuing means (reading the fee
//! schedule, appending the invoice) is the [`Issuer`] the composition root (`api`) passes in,
//! which runs the `commands` use case on the connection it is given.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use tokio::sync::watch;
use tracing::{instrument, Instrument};
use uuid::Uuid;

use crate::worker::{lease_key, move_checkpoints};
use crate::ProjectionError;

/// The process manager's checkpoint row and lease name.
pub const NAME: &str = "billing";
/// The database role its connection runs as: it may read and append events and move
/// checkpoints, nothing else.
pub const ROLE: &str = "clinic_billing";

/// What an appointment event bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// `AppointmentCompleted`.
    Visit,
    /// `AppointmentMarkedNoShow`.
    NoShow,
}

impl Basis {
    fn of(event_type: &str) -> Option<Basis> {
        match event_type {
            "AppointmentCompleted" => Some(Basis::Visit),
            "AppointmentMarkedNoShow" => Some(Basis::NoShow),
            _ => None,
        }
    }
}

/// A billable event, and where it sits in the commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub clinic_id: Uuid,
    pub appointment_id: Uuid,
    pub basis: Basis,
    pub transaction_id: String,
    pub position: i64,
}

/// What the issuer did with a trigger (for the log and the figures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// A draft invoice was appended on the batch's transaction.
    New,
    /// The appointment's invoice existed: nothing written.
    Existing,
    /// Not billed, and why (`billing_disabled`, `no_fee_schedule`, …).
    Skipped(&'static str),
}

/// Issues the invoice a trigger calls for, on `conn` (the batch's open transaction): the
/// `commands` use case, passed in by the composition root.
pub trait Issuer: Send + Sync + 'static {
    fn issue<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        trigger: &'a Trigger,
    ) -> BoxFuture<'a, Result<Issued, String>>;
}

/// Where a test may stop a batch, as a crash or a kill would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The events are read; no invoice is written yet.
    AfterRead,
    /// The invoices are written; the checkpoint has not moved yet.
    AfterIssue,
}

/// A test hook, run at each [`Stage`] of a batch with the batch's backend pid; an error fails
/// the batch there.
pub type Hook = Arc<dyn Fn(Stage, i32) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// How the process manager runs.
#[derive(Clone)]
pub struct BillingConfig {
    pub issuer: Arc<dyn Issuer>,
    /// The most events read in one batch.
    pub batch_size: i64,
    /// How often to look for events when no notification arrives.
    pub poll_interval: Duration,
    /// After a batch that reached the newest events, how long to wait before reading again
    /// (notifications that arrive meanwhile are taken together). Under load the process
    /// manager then runs one transaction per `settle`, not one per command: each batch locks
    /// and moves its checkpoint and commits, and at one per command that cost every command
    /// about half a millisecond (issue 11). An invoice is drafted at most this much later.
    pub settle: Duration,
    pub hook: Option<Hook>,
}

impl std::fmt::Debug for BillingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingConfig")
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("settle", &self.settle)
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl BillingConfig {
    pub fn new(issuer: Arc<dyn Issuer>) -> Self {
        BillingConfig {
            issuer,
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            settle: Duration::from_millis(100),
            hook: None,
        }
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BillingBatch {
    /// Events read (billable or not); the checkpoint moved past them.
    pub read: usize,
    pub issued: usize,
    pub existing: usize,
    pub skipped: usize,
    pub position: i64,
}

/// A connection for the process manager, as [`ROLE`].
pub async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut conn = options
        .clone()
        .application_name("clinic-billing")
        .connect()
        .await?;
    conn.execute("SET ROLE clinic_billing").await?;
    // A batch's invoices and its checkpoint commit together, so a commit lost in a server
    // crash (not flushed yet) loses both, and the next batch issues them again. Whatever saw
    // them (the workers, the hash chain) committed later, and a flush of its commit flushes
    // this one's first (the log is written in order).
    conn.execute("SET synchronous_commit = off").await?;
    Ok(conn)
}

async fn hook(config: &BillingConfig, stage: Stage, pid: i32) -> Result<(), ProjectionError> {
    match &config.hook {
        Some(hook) => hook(stage, pid).await.map_err(ProjectionError::Process),
        None => Ok(()),
    }
}

/// Reads the next events after the checkpoint, issues the invoices of the billable ones and
/// moves the checkpoint, in one transaction. `Ok(None)` when there was nothing to read.
#[instrument(skip_all, fields(position))]
pub async fn run_batch(
    conn: &mut PgConnection,
    config: &BillingConfig,
) -> Result<Option<BillingBatch>, ProjectionError> {
    let mut tx = conn.begin().await?;
    let (old_tx, old_pos): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(NAME)
    .fetch_one(&mut *tx)
    .await?;
    // Only what deciding needs: no payload (the issuer reads the streams it needs).
    let events: Vec<(String, i64, Uuid, String, String, String)> = sqlx::query_as(
        "SELECT e.transaction_id::text, e.position, e.tenant_id, e.aggregate_type, e.aggregate_id, e.event_type \
         FROM events e \
         WHERE (e.transaction_id, e.position) > ($1::xid8, $2) \
           AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY e.transaction_id, e.position LIMIT $3",
    )
    .bind(&old_tx)
    .bind(old_pos)
    .bind(config.batch_size)
    .fetch_all(&mut *tx)
    .await?;
    let Some((new_tx, new_pos)) = events.last().map(|e| (e.0.clone(), e.1)) else {
        tx.rollback().await?;
        return Ok(None);
    };
    let pid: i32 = if config.hook.is_some() {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *tx)
            .await?
    } else {
        0
    };
    hook(config, Stage::AfterRead, pid).await?;
    let mut batch = BillingBatch {
        read: events.len(),
        position: new_pos,
        ..BillingBatch::default()
    };
    for (transaction_id, position, clinic_id, aggregate_type, aggregate_id, event_type) in events {
        let Some(basis) = Basis::of(&event_type).filter(|_| aggregate_type == "Appointment") else {
            continue;
        };
        let appointment_id = aggregate_id
            .split_once(':')
            .and_then(|(_, id)| id.parse().ok())
            .ok_or_else(|| ProjectionError::Poison {
                position,
                event_type: event_type.clone(),
                reason: format!("malformed stream id {aggregate_id}"),
            })?;
        let trigger = Trigger {
            clinic_id,
            appointment_id,
            basis,
            transaction_id,
            position,
        };
        let issued = config
            .issuer
            .issue(&mut tx, &trigger)
            .await
            .map_err(ProjectionError::Process)?;
        tracing::debug!(clinic_id = %clinic_id, position, outcome = ?issued, "billable event");
        match issued {
            Issued::New => batch.issued += 1,
            Issued::Existing => batch.existing += 1,
            Issued::Skipped(_) => batch.skipped += 1,
        }
    }
    hook(config, Stage::AfterIssue, pid).await?;
    move_checkpoints(&mut tx, &[NAME], (&old_tx, old_pos), (&new_tx, new_pos)).await?;
    if batch.issued > 0 {
        // The invoices' events wake the workers, as a command's do (`commands::Wake`); once
        // per batch, in its transaction.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(crate::worker::CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::Span::current().record("position", new_pos);
    Ok(Some(batch))
}

/// Runs the process manager until `shutdown` turns true: takes its lease (one process
/// manager at a time; another takes over when the holder's connection closes), then runs
/// batches, waking on `wake` (the workers' LISTEN) or every `poll_interval`, and after a
/// batch that caught up waiting `settle` before the next.
pub async fn run(
    options: PgConnectOptions,
    config: BillingConfig,
    wake: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) {
    let idle = |wake: &watch::Receiver<u64>| {
        let mut wake = wake.clone();
        let mut shutdown = shutdown.clone();
        let poll = config.poll_interval;
        async move {
            tokio::select! {
                _ = wake.changed() => {},
                _ = shutdown.changed() => {},
                _ = tokio::time::sleep(poll) => {},
            }
        }
    };
    let mut wake = wake;
    while !*shutdown.borrow() {
        let mut conn = match connect(&options).await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "billing cannot connect; retrying");
                idle(&wake).await;
                continue;
            }
        };
        let mut leased = false;
        while !*shutdown.borrow() {
            if !leased {
                leased = match sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(lease_key(NAME))
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(taken) => taken,
                    Err(err) => {
                        tracing::warn!(error = %err, "billing lease query failed");
                        break;
                    }
                };
                if !leased {
                    idle(&wake).await;
                    continue;
                }
                tracing::info!("billing lease acquired");
            }
            wake.borrow_and_update();
            match run_batch(&mut conn, &config).await {
                Ok(Some(batch)) => {
                    tracing::debug!(
                        position = batch.position,
                        read = batch.read,
                        issued = batch.issued,
                        existing = batch.existing,
                        skipped = batch.skipped,
                        "billing advanced"
                    );
                    // Caught up: let the next events gather (a full batch reads on at once).
                    if (batch.read as i64) < config.batch_size {
                        let mut shutdown = shutdown.clone();
                        tokio::select! {
                            _ = shutdown.changed() => {},
                            _ = tokio::time::sleep(config.settle) => {},
                        }
                    }
                }
                Ok(None) => idle(&wake).await,
                Err(err) => {
                    tracing::warn!(error = %err, "billing batch failed; retrying");
                    idle(&wake).await;
                    break;
                }
            }
        }
        let _ = conn.close().await;
    }
}

/// Starts [`run`] in its own task, with a span naming it.
pub fn spawn(
    options: PgConnectOptions,
    config: BillingConfig,
    wake: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(options, config, wake, shutdown).instrument(tracing::info_span!("billing")))
}
