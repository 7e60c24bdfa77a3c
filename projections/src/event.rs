//! The events as the projections read them, and what every apply function shares. Values
//! come from the event (and its metadata's `occurred_at`), never from the clock, so a rebuild
//! produces identical rows.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::ProjectionError;

/// What applying an event to a projection comes to.
pub type Applied = Result<(), ProjectionError>;

/// An event as the workers read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub position: i64,
    pub transaction_id: String,
    pub tenant_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub payload: Value,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The columns every reader selects, in `StoredEvent`'s order. The payload is read as stored
/// (`json` text, parsed once by `serde_json`): a `::jsonb` cast had PostgreSQL parse it and
/// sort its keys first, a sixth of a rebuild's database time.
pub const EVENT_COLUMNS: &str =
    "position, transaction_id::text AS transaction_id, tenant_id, aggregate_type, \
     aggregate_id, sequence, event_type, payload, \
     (metadata ->> 'occurred_at')::timestamptz AS occurred_at";

/// The next `limit` events after `(transaction_id, position)` in commit order, below the
/// oldest running transaction: a transaction still open — even one holding a lower position
/// than an event already committed — is never skipped, only waited for. Every reader of the
/// log in order (workers, rebuild) goes through here.
///
/// The `ORDER BY` names the table's columns (`e.`): unqualified, `transaction_id` meant the
/// text of the select list, so batches were sorted as strings (`10` before `9`: out of
/// commit order wherever the transaction ids gain a digit) and, with no index for that,
/// every batch sorted the whole rest of the log (1.4 s a batch at 1M events, 21 ms now).
pub async fn read_after(
    conn: &mut sqlx::PgConnection,
    transaction_id: &str,
    position: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e \
         WHERE (e.transaction_id, e.position) > ($1::xid8, $2) \
           AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY e.transaction_id, e.position LIMIT $3"
    ))
    .bind(transaction_id)
    .bind(position)
    .bind(limit)
    .fetch_all(conn)
    .await
}

impl StoredEvent {
    pub(crate) fn poison(&self, reason: impl ToString) -> ProjectionError {
        ProjectionError::Poison {
            position: self.position,
            event_type: self.event_type.clone(),
            reason: reason.to_string(),
        }
    }

    /// The entity id: the part of `{clinic_id}:{entity_id}` after the colon.
    pub(crate) fn entity(&self) -> Result<Uuid, ProjectionError> {
        self.aggregate_id
            .split_once(':')
            .and_then(|(_, id)| id.parse().ok())
            .ok_or_else(|| self.poison(format!("malformed stream id {}", self.aggregate_id)))
    }

    pub(crate) fn at(&self) -> Result<DateTime<Utc>, ProjectionError> {
        self.occurred_at
            .ok_or_else(|| self.poison("metadata has no occurred_at"))
    }

    pub(crate) fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, ProjectionError> {
        // Deserialised from the borrowed value: no copy of the payload.
        E::deserialize(&self.payload).map_err(|e| self.poison(e))
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Runs `query`, which must change exactly one row.
pub(crate) async fn one(
    conn: &mut PgConnection,
    event: &StoredEvent,
    query: Query<'_, Postgres, PgArguments>,
) -> Result<(), ProjectionError> {
    let done = query.execute(conn).await?;
    if done.rows_affected() != 1 {
        return Err(event.poison(format!(
            "expected to change one read-model row, changed {}",
            done.rows_affected()
        )));
    }
    Ok(())
}
