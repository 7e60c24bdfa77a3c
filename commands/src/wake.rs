//! Waking the projection workers after commands commit.
//!
//! The workers `LISTEN` on [`WAKE_CHANNEL`]. The channel was signalled by a trigger on
//! `events`, inside each command's transaction. PostgreSQL serialises the commits of
//! transactions that `NOTIFY` on a database-wide lock held until the commit is flushed, so
//! every command's commit waited for the one before it: `pgbench` on this machine, 32 clients,
//! one insert per transaction, 7,005–7,026 tx/s without a `NOTIFY` and 3,043–3,148 with one.
//!
//! A command's transaction now notifies nobody. After it commits, [`Wake::wake`] asks a task
//! of the process to send one `NOTIFY` on a connection of its own; the requests of the
//! commands that commit while one is on its way are answered by the next one, so one
//! `NOTIFY` wakes the workers for any number of commands. The `NOTIFY` is not flushed to disk
//! (`synchronous_commit` off for its transaction): a wake-up lost in a crash costs the
//! workers one poll interval, never an event.

use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use tokio::sync::Notify;

/// The channel the projection workers listen on.
pub const WAKE_CHANNEL: &str = "clinic_events";

/// Wakes the projection workers (of every process) after a commit. Cheap to clone; the task
/// that sends the `NOTIFY` starts at the first wake-up.
#[derive(Clone)]
pub struct Wake {
    pool: PgPool,
    asked: Arc<Notify>,
    task: Arc<OnceLock<()>>,
}

impl Wake {
    pub fn new(pool: PgPool) -> Self {
        Wake {
            pool,
            asked: Arc::new(Notify::new()),
            task: Arc::new(OnceLock::new()),
        }
    }

    /// Asks for a `NOTIFY` on [`WAKE_CHANNEL`] after this call: sent at once when none is on
    /// its way, otherwise right after that one. Never waits. Call it from a Tokio runtime.
    pub fn wake(&self) {
        self.task.get_or_init(|| {
            let (pool, asked) = (self.pool.clone(), self.asked.clone());
            tokio::spawn(async move {
                loop {
                    // A request made while the last `NOTIFY` was on its way left a permit:
                    // it is answered at once.
                    asked.notified().await;
                    if let Err(error) = sqlx::query(
                        "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')",
                    )
                    .bind(WAKE_CHANNEL)
                    .execute(&pool)
                    .await
                    {
                        tracing::warn!(%error, "could not wake the projection workers; they poll");
                    }
                }
            });
        });
        self.asked.notify_one();
    }
}
