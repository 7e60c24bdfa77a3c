//! The account look-ups of authentication, batched. Every authenticated request reads its
//! caller's account live (still active, clinic not suspended, current role, tokens not
//! revoked), so that a deactivation takes effect at once. Read one by one, that was a pool
//! checkout, a statement and the pool's return ping for every request, before the request's
//! own work.
//!
//! [`AccountLookups`] gathers the look-ups waiting at the same moment and reads them with one
//! statement (`WHERE a.id = ANY($1)`). Each look-up's statement starts after the look-up was
//! asked for, so it sees every change committed before the request arrived, as a statement of
//! its own would: a batch is taken from the queue before its statement is sent, and a
//! look-up that arrives meanwhile waits for the next one. A look-up that arrives alone is read
//! at once: nothing waits for a batch to fill.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::{Account, ACCOUNT_COLUMNS};
use crate::error::StoreError;

/// Accounts read by one statement at most.
pub const MAX_BATCH: usize = 256;
/// Statements running at a time.
const READERS: usize = 2;
/// Look-ups waiting before a request waits for room in the queue.
const QUEUE: usize = 4 * MAX_BATCH;

/// Why an account could not be looked up.
#[derive(Debug, Clone)]
pub enum LookupError {
    /// The statement that held it failed (every look-up of that batch gets the error).
    Database(Arc<sqlx::Error>),
    /// The readers have stopped (the service is shutting down).
    Stopped,
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Database(_) => f.write_str("could not read the account"),
            LookupError::Stopped => f.write_str("the account look-ups have stopped"),
        }
    }
}

impl std::error::Error for LookupError {
    /// The database error itself (not the `Arc`), so that callers can tell an unreachable
    /// database by walking the sources.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LookupError::Database(e) => Some(e.as_ref()),
            LookupError::Stopped => None,
        }
    }
}

impl From<LookupError> for StoreError {
    fn from(err: LookupError) -> Self {
        StoreError(Box::new(err))
    }
}

type Found = Result<Option<Account>, LookupError>;

struct Pending {
    id: Uuid,
    done: oneshot::Sender<Found>,
}

/// Reads accounts by id in batches (see the module). Cheap to clone.
#[derive(Clone, Debug)]
pub struct AccountLookups {
    queue: mpsc::Sender<Pending>,
    statements: Arc<AtomicU64>,
}

impl AccountLookups {
    /// Starts the readers on the current runtime. They stop when every clone is dropped,
    /// after answering what was queued.
    pub fn spawn(pool: PgPool) -> AccountLookups {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let statements = Arc::new(AtomicU64::new(0));
        for _ in 0..READERS {
            tokio::spawn(run(pool.clone(), rx.clone(), statements.clone()));
        }
        AccountLookups { queue, statements }
    }

    /// Look-ups queued and not yet taken by a reader.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Statements sent so far (each reads one batch).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The account `id`, read by a statement that started after this call; `None` if there
    /// is no such account.
    pub async fn find(&self, id: Uuid) -> Result<Option<Account>, StoreError> {
        let (done, found) = oneshot::channel();
        self.queue
            .send(Pending { id, done })
            .await
            .map_err(|_| LookupError::Stopped)?;
        Ok(found.await.unwrap_or(Err(LookupError::Stopped))?)
    }
}

/// One reader: takes what is queued (at least one look-up, at most [`MAX_BATCH`]), reads it,
/// answers each; again until the queue is closed.
async fn run(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Pending>>>, statements: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let taken = rx.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if taken == 0 {
            return;
        }
        let mut ids: Vec<Uuid> = batch.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        statements.fetch_add(1, Ordering::Relaxed);
        match read(&pool, &ids).await {
            Ok(mut accounts) => {
                for pending in batch.drain(..) {
                    let account = accounts.get(&pending.id).cloned();
                    // A request that gave up (it was dropped) no longer listens.
                    let _ = pending.done.send(Ok(account));
                }
                accounts.clear();
            }
            Err(e) => {
                tracing::warn!(look_ups = batch.len(), error = %e, "an account look-up failed");
                let e = LookupError::Database(Arc::new(e));
                for pending in batch.drain(..) {
                    let _ = pending.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The accounts of `ids` in one statement, by id.
async fn read(pool: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, Account>, sqlx::Error> {
    let accounts: Vec<Account> =
        sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} WHERE a.id = ANY($1)"))
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(accounts.into_iter().map(|a| (a.id, a)).collect())
}
