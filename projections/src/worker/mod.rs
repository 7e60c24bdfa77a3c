//! Projection workers. Each projection is tailed by at most one worker at a time (a session
//! advisory lock is its lease; when the owner dies, its connection closes and another worker
//! takes over). A batch reads events in commit order — `(transaction_id, position)` above the
//! checkpoint and below the oldest running transaction, so a transaction that commits late
//! with a lower position is never skipped — applies them, and moves the checkpoint in the same
//! transaction, as a compare-and-swap on the old value. A crash mid-batch rolls the whole batch
//! back: no event is lost or applied twice. LISTEN/NOTIFY wakes the workers; polling is the
//! fallback. The read models run as one group, one transaction per batch for all of them
//! ([`group`]); the hash chain runs on its own.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use tokio::sync::watch;
use tracing::{instrument, Instrument};

use crate::event::read_after;
use crate::{Projection, ProjectionError, PROJECTIONS};

pub mod group;
use group::GroupBatch;

/// The NOTIFY channel that wakes the workers: signalled after commands commit
/// (`commands::Wake`, the same name) and by the billing process manager's batches.
pub const CHANNEL: &str = "clinic_events";
/// The database role the workers run as (bypasses RLS: it writes every clinic's rows).
pub const WORKER_ROLE: &str = "clinic_worker";

/// [`WorkerConfig::settle`] unless configured.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(5);

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The most events applied in one transaction.
    pub batch_size: i64,
    /// How often to look for events when no notification arrives.
    pub poll_interval: Duration,
    /// After a batch that caught up (fewer events than `batch_size`), how long to wait
    /// before reading again; the events committed meanwhile go into the next batch together.
    /// The first event after a quiet spell is applied at once. Without it, under load, the
    /// workers ran one transaction per command: at 1,600 registrations a second the read
    /// models' group committed 4,174 batches for 4,270 events, the hash chain 4,250, and
    /// woke for nothing 5,000 more times (issue 11). A read model shows an event at most
    /// this much later than it could.
    pub settle: Duration,
    /// Which projections to run (default: all).
    pub projections: Vec<Projection>,
    /// Test hook: fail a batch after applying this many of its events (before commit), as a
    /// crash would.
    pub crash_after: Option<usize>,
    /// Where the batch metrics go (`clinic_projection_*`); `None`: the process-wide `metrics`
    /// recorder, a no-op unless one is installed.
    pub recorder: Option<Recorder>,
    /// Bumped after every round that committed batches (once for a group batch, not once
    /// per projection in it): a read waiting in this process for a position
    /// (`X-Min-Position`) checks again at once instead of at its next poll.
    pub applied: Option<Arc<watch::Sender<u64>>>,
    /// The billing process manager, run beside the projections (woken by the same
    /// notifications) when set.
    pub billing: Option<crate::billing::BillingConfig>,
}

/// A shared `metrics` recorder (each application has its own, so two in one process do not
/// mix their figures).
#[derive(Clone)]
pub struct Recorder(pub Arc<dyn metrics::Recorder + Send + Sync>);

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            settle: DEFAULT_SETTLE,
            projections: PROJECTIONS.to_vec(),
            crash_after: None,
            recorder: None,
            applied: None,
            billing: None,
        }
    }
}

/// A dedicated connection as the worker role, whose statements are planned once per
/// connection (`plan_cache_mode = force_generic_plan`). A worker runs a fixed set of
/// statements, each an index range or a join on keys whatever its values. Left to choose,
/// PostgreSQL planned some of them again at every batch (the checkpoint's update, the hash
/// chain's read of the events and of each clinic's last link: `pg_prepared_statements`
/// counted 10 custom plans in 10 batches, and none generic).
pub async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut conn = options.connect().await?;
    conn.execute("SET ROLE clinic_worker; SET plan_cache_mode = force_generic_plan")
        .await?;
    Ok(conn)
}

/// What one batch did.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    pub applied: usize,
    pub position: i64,
}

/// Applies the next batch of `projection` to its tables in `rm` and moves its checkpoint.
/// `Ok(None)` when there was nothing to do.
#[instrument(skip_all, fields(name = projection.name, position))]
pub async fn run_batch(
    conn: &mut PgConnection,
    projection: &Projection,
    config: &WorkerConfig,
) -> Result<Option<Batch>, ProjectionError> {
    let name = projection.name;
    let mut tx = conn.begin().await?;
    // Locking the checkpoint row first serialises batches with each other and with a rebuild's
    // swap, before any read-model row is touched.
    let (old_tx, old_pos): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let events = read_after(&mut tx, &old_tx, old_pos, config.batch_size).await?;
    let Some(last) = events.last() else {
        // Release the checkpoint row now, not when the connection is next used.
        tx.rollback().await?;
        return Ok(None);
    };
    let (new_tx, new_pos) = (last.transaction_id.clone(), last.position);
    if let Some(n) = config.crash_after.filter(|n| *n < events.len()) {
        projection.apply("rm", &mut tx, &events[..n]).await?;
        return Err(simulated_crash(n));
    }
    projection.apply("rm", &mut tx, &events).await?;
    move_checkpoints(&mut tx, &[name], (&old_tx, old_pos), (&new_tx, new_pos)).await?;
    tx.commit().await?;
    tracing::Span::current().record("position", new_pos);
    tracing::debug!(applied = events.len(), "batch applied");
    Ok(Some(Batch {
        applied: events.len(),
        position: new_pos,
    }))
}

/// The error of the test hook `crash_after`.
fn simulated_crash(n: usize) -> ProjectionError {
    ProjectionError::Db(sqlx::Error::Protocol(format!(
        "simulated crash after {n} events of a batch"
    )))
}

/// Moves the checkpoints of `names` from `old` to `new`, as a compare-and-swap: an error when
/// another worker moved one of them first (the caller's batch is then rolled back).
pub(crate) async fn move_checkpoints(
    conn: &mut PgConnection,
    names: &[&str],
    (old_tx, old_pos): (&str, i64),
    (new_tx, new_pos): (&str, i64),
) -> Result<(), ProjectionError> {
    let moved = sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = $2::xid8, position = $3, updated_at = now(), \
         failed_position = NULL, last_error = NULL \
         WHERE name = ANY($1) AND transaction_id = $4::xid8 AND position = $5",
    )
    .bind(names)
    .bind(new_tx)
    .bind(new_pos)
    .bind(old_tx)
    .bind(old_pos)
    .execute(conn)
    .await?
    .rows_affected();
    if moved != names.len() as u64 {
        return Err(ProjectionError::Db(sqlx::Error::Protocol(format!(
            "checkpoints of {names:?} moved during the batch"
        ))));
    }
    Ok(())
}

/// Records a committed batch: the position applied, the events it applied and its size. Lag
/// (events committed but not applied, and their age) is read from the database when
/// `/metrics` is scraped, so a batch costs no extra query.
fn record_batch(config: &WorkerConfig, name: &'static str, batch: &Batch) {
    let record = || {
        metrics::gauge!("clinic_projection_position", "projection" => name)
            .set(batch.position as f64);
        metrics::counter!("clinic_projection_events_applied_total", "projection" => name)
            .increment(batch.applied as u64);
        metrics::histogram!("clinic_projection_batch_events", "projection" => name)
            .record(batch.applied as f64);
    };
    match &config.recorder {
        Some(Recorder(recorder)) => metrics::with_local_recorder(recorder.as_ref(), record),
        None => record(),
    }
}

/// Records that `name` stopped at an event it cannot apply.
async fn record_failure(conn: &mut PgConnection, name: &str, err: &ProjectionError) {
    let position = match err {
        ProjectionError::Poison { position, .. } => Some(*position),
        _ => None,
    };
    let _ = sqlx::query(
        "UPDATE projection_checkpoints SET failed_position = $2, last_error = $3 WHERE name = $1",
    )
    .bind(name)
    .bind(position)
    .bind(err.to_string())
    .execute(conn)
    .await;
}

pub(crate) fn lease_key(name: &str) -> i64 {
    // A stable 63-bit key per projection (FNV-1a), in one advisory-lock namespace.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in b"clinic-projection:".iter().chain(name.as_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    (h >> 1) as i64
}

/// Waits for a notification, `shutdown` or `poll`, whichever comes first.
async fn idle(wake: &watch::Receiver<u64>, shutdown: &watch::Receiver<bool>, poll: Duration) {
    let mut wake = wake.clone();
    let mut shutdown = shutdown.clone();
    tokio::select! {
        _ = wake.changed() => {},
        _ = shutdown.changed() => {},
        _ = tokio::time::sleep(poll) => {},
    }
}

/// Waits `settle` (or until `shutdown`) after a batch that caught up.
async fn settle(shutdown: &watch::Receiver<bool>, settle: Duration) {
    if settle.is_zero() {
        return;
    }
    let mut shutdown = shutdown.clone();
    tokio::select! {
        _ = shutdown.changed() => {},
        _ = tokio::time::sleep(settle) => {},
    }
}

/// Takes the leases of those of `wanted` this connection does not hold yet; returns the ones
/// taken.
async fn take_leases(conn: &mut PgConnection, wanted: &[Projection]) -> Vec<Projection> {
    let mut taken = Vec::new();
    for projection in wanted {
        match sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lease_key(projection.name))
            .fetch_one(&mut *conn)
            .await
        {
            Ok(true) => {
                tracing::info!(projection = projection.name, "lease acquired");
                taken.push(*projection);
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "lease query failed"),
        }
    }
    taken
}

fn held(set: &[Projection], projection: &Projection) -> bool {
    set.iter().any(|p| p.name == projection.name)
}

/// What a round of batches came to.
enum Round {
    /// Some projection advanced: go on at once if a batch was full, else after
    /// [`WorkerConfig::settle`].
    Advanced { caught_up: bool },
    /// Nothing to do: wait for a notification.
    Idle,
    /// The connection or a batch failed: reconnect.
    Failed,
}

/// Runs `projections` (all read models, or the hash chain alone) until `shutdown` turns true
/// or every one of them has stopped at an event it cannot apply. The projections whose lease
/// this worker holds run as one group ([`group`]) while their checkpoints agree, else one by
/// one; the leases of the others are tried again every `poll_interval`.
async fn run_projections(
    options: PgConnectOptions,
    projections: Vec<Projection>,
    config: WorkerConfig,
    mut wake: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) {
    let mut stopped: Vec<Projection> = Vec::new();
    while !*shutdown.borrow() && stopped.len() < projections.len() {
        let mut conn = match connect(&options).await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "projection worker cannot connect; retrying");
                idle(&wake, &shutdown, config.poll_interval).await;
                continue;
            }
        };
        if projections.iter().all(|p| p.rebuildable) {
            // A read model's batches commit without waiting for the WAL flush. A crash can
            // then lose only the last batches whose commit was not flushed yet — their rows
            // *and* their checkpoint, which commit together — so the worker re-applies them
            // from the checkpoint that survived: nothing is lost or applied twice. The hash
            // chain (evidence an auditor may have exported) keeps synchronous commits.
            if let Err(err) = conn.execute("SET synchronous_commit = off").await {
                tracing::warn!(error = %err, "cannot turn off synchronous_commit");
            }
        }
        let mut leased: Vec<Projection> = Vec::new();
        let mut last_try: Option<tokio::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                let _ = conn.close().await;
                return;
            }
            if leased.len() + stopped.len() < projections.len()
                && last_try.is_none_or(|t| t.elapsed() >= config.poll_interval)
            {
                // Another worker may own some (it may die): look again every poll interval.
                let missing: Vec<Projection> = projections
                    .iter()
                    .filter(|p| !held(&leased, p) && !held(&stopped, p))
                    .copied()
                    .collect();
                leased.extend(take_leases(&mut conn, &missing).await);
                leased.sort_by_key(|p| p.name);
                last_try = Some(tokio::time::Instant::now());
            }
            // Look at the wake-up counter before the batch, so a notification that arrives
            // during it is not lost.
            wake.borrow_and_update();
            match round(&mut conn, &mut leased, &mut stopped, &config).await {
                Round::Advanced { caught_up } => {
                    // Once per round, whether it was one group batch or several.
                    if let Some(applied) = &config.applied {
                        applied.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    if caught_up {
                        settle(&shutdown, config.settle).await;
                    }
                }
                Round::Idle => idle(&wake, &shutdown, config.poll_interval).await,
                Round::Failed => {
                    let _ = conn.close().await;
                    if config.crash_after.is_some() {
                        // The test hook simulates a process crash: this worker is gone.
                        return;
                    }
                    idle(&wake, &shutdown, config.poll_interval).await;
                    break;
                }
            }
            if stopped.len() == projections.len() {
                let _ = conn.close().await;
                return;
            }
        }
    }
}

/// One batch of the group, or, when the group cannot run, one batch of each projection.
async fn round(
    conn: &mut PgConnection,
    leased: &mut Vec<Projection>,
    stopped: &mut Vec<Projection>,
    config: &WorkerConfig,
) -> Round {
    if leased.is_empty() {
        return Round::Idle;
    }
    if leased.len() > 1 {
        match group::run_group_batch(conn, leased, config).await {
            Ok(GroupBatch::Applied(batch)) => {
                for projection in leased.iter() {
                    record_batch(config, projection.name, &batch);
                }
                tracing::debug!(
                    position = batch.position,
                    applied = batch.applied,
                    projections = leased.len(),
                    "projections advanced together"
                );
                return Round::Advanced {
                    caught_up: caught_up(config, &batch),
                };
            }
            Ok(GroupBatch::Idle) => return Round::Idle,
            // One by one below: the projection that cannot apply its event stops there.
            Ok(GroupBatch::Diverged) | Err(ProjectionError::Poison { .. }) => {}
            Err(err) => {
                tracing::warn!(error = %err, "projection batch failed; retrying");
                return Round::Failed;
            }
        }
    }
    let mut advanced: Option<bool> = None;
    for projection in leased.clone() {
        let span = tracing::info_span!("projection", projection = projection.name);
        match run_batch(conn, &projection, config).instrument(span).await {
            Ok(Some(batch)) => {
                record_batch(config, projection.name, &batch);
                tracing::debug!(
                    projection = projection.name,
                    position = batch.position,
                    applied = batch.applied,
                    "projection advanced"
                );
                advanced = Some(advanced.unwrap_or(true) && caught_up(config, &batch));
            }
            Ok(None) => {}
            Err(err @ ProjectionError::Poison { .. }) => {
                tracing::error!(
                    projection = projection.name,
                    error = %err,
                    "projection stopped at an event it cannot apply"
                );
                record_failure(conn, projection.name, &err).await;
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(lease_key(projection.name))
                    .execute(&mut *conn)
                    .await;
                leased.retain(|p| p.name != projection.name);
                stopped.push(projection);
            }
            Err(err) => {
                tracing::warn!(projection = projection.name, error = %err, "projection batch failed; retrying");
                return Round::Failed;
            }
        }
    }
    match advanced {
        Some(caught_up) => Round::Advanced { caught_up },
        None => Round::Idle,
    }
}

/// Whether `batch` took every event there was (it was not full).
fn caught_up(config: &WorkerConfig, batch: &Batch) -> bool {
    (batch.applied as i64) < config.batch_size
}

/// Starts the workers: one LISTEN connection and one task per projection. They stop when
/// `shutdown` turns true; await the handle to wait for them.
pub fn spawn(
    pool: PgPool,
    options: PgConnectOptions,
    config: WorkerConfig,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let listener = {
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let mut listener = match PgListener::connect_with(&pool).await {
                        Ok(l) => l,
                        Err(err) => {
                            tracing::warn!(error = %err, "LISTEN connection failed; polling only");
                            tokio::select! {
                                _ = shutdown.changed() => return,
                                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                            }
                        }
                    };
                    if let Err(err) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %err, "LISTEN failed; polling only");
                    }
                    loop {
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            n = listener.recv() => match n {
                                Ok(_) => { wake_tx.send_modify(|n| *n = n.wrapping_add(1)); }
                                Err(err) => {
                                    tracing::warn!(error = %err, "LISTEN connection lost; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                }
            })
        };
        // The read models run as one group; the hash chain (synchronous commits) on its own.
        let (models, others): (Vec<Projection>, Vec<Projection>) =
            config.projections.iter().partition(|p| p.rebuildable);
        let sets = std::iter::once(models)
            .chain(others.into_iter().map(|p| vec![p]))
            .filter(|set| !set.is_empty());
        // The access log's hash chain (not an event projection) on its own.
        let access_chain = tokio::spawn(
            crate::access_chain::run(
                options.clone(),
                config.batch_size,
                config.poll_interval,
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("access_chain")),
        );
        let billing = config.billing.clone().map(|billing| {
            crate::billing::spawn(options.clone(), billing, wake_rx.clone(), shutdown.clone())
        });
        let tasks: Vec<_> = sets
            .map(|set| {
                let names: Vec<&str> = set.iter().map(|p| p.name).collect();
                let span = tracing::info_span!("projections", names = ?names);
                tokio::spawn(
                    run_projections(
                        options.clone(),
                        set,
                        config.clone(),
                        wake_rx.clone(),
                        shutdown.clone(),
                    )
                    .instrument(span),
                )
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        let _ = access_chain.await;
        if let Some(billing) = billing {
            let _ = billing.await;
        }
        listener.abort();
    })
}
