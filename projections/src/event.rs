//! The events as the projections read them, and what every apply function shares. Values
//! come from the event (and its metadata's `occurred_at`), never from the clock, so a rebuild
//! produces identical rows.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
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
    /// The payload as stored, checked to be JSON but not parsed into a tree: each projection
    /// deserialises it straight into the event it expects ([`StoredEvent::decode`]). A
    /// `serde_json::Value` built for every event and dropped after its decode was about a
    /// tenth of a rebuild's client time (maps, allocations).
    #[sqlx(json)]
    pub payload: Box<RawValue>,
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

/// Where a rebuild's bulk stops: `fence`, the oldest transaction running when it began (every
/// transaction below it has ended, so the set of events below it never changes), and `end`,
/// the last of those events in commit order (`("0", 0)` for an empty log). Every event below
/// the fence is at or before `end` in commit order, and every later one after it, so a reader
/// in commit order continues from `end` without a gap or a repeat.
pub async fn rebuild_fence(
    conn: &mut PgConnection,
) -> Result<(String, (String, i64)), sqlx::Error> {
    let fence: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(&mut *conn)
        .await?;
    let end: Option<(String, i64)> = sqlx::query_as(
        "SELECT e.transaction_id::text, e.position FROM events e WHERE e.transaction_id < $1::xid8 \
         ORDER BY e.transaction_id DESC, e.position DESC LIMIT 1",
    )
    .bind(&fence)
    .fetch_optional(&mut *conn)
    .await?;
    Ok((fence, end.unwrap_or_else(|| ("0".to_owned(), 0))))
}

/// A rebuild's reader of the events below a fence (see [`rebuild_fence`]) stream by stream:
/// the clinics' own streams first, then every other stream in the primary key's order
/// (aggregate type, stream id), each stream's events in sequence. A rebuild reads its bulk
/// this way so that all the events of a row arrive together, in one batch or in consecutive
/// ones, and a row is written once rather than once per batch its events fall in (a clinic's
/// import registers its patients, then updates each of them: in commit order, the update of
/// a row came batches after its insert). Every projection's row is one stream's, and what
/// spans streams (the clinics' counts, the registrations per bucket) is a sum, so the order
/// across streams does not change the result; the clinics come first because every other
/// stream's count is added to its clinic's row.
pub struct StreamCursor {
    fence: String,
    /// Only the streams of this aggregate type (`None`: every stream).
    only: Option<&'static str>,
    /// Reading the clinics' streams (else, the others).
    clinics: bool,
    /// The last (aggregate type, stream id, sequence) read.
    after: (String, String, i64),
}

impl StreamCursor {
    /// Every stream below `fence`, or (`only`) the streams of one aggregate type: what a
    /// rebuild of a single read model of that type needs.
    pub fn new(fence: String, only: Option<&'static str>) -> StreamCursor {
        StreamCursor {
            fence,
            only,
            clinics: only.is_none(),
            after: (only.unwrap_or("Clinic").to_owned(), String::new(), -1),
        }
    }

    /// The next `limit` events; empty at the end.
    pub async fn next(
        &mut self,
        conn: &mut PgConnection,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        loop {
            // The primary key (aggregate_type, aggregate_id, sequence) serves both: a range
            // of one aggregate type, and the whole key after a point (the few clinic rows on
            // the way are filtered out).
            let which = if self.only.is_some() {
                "e.aggregate_type = $1 AND (e.aggregate_type, e.aggregate_id, e.sequence) > ($1, $2, $3)"
            } else if self.clinics {
                "e.aggregate_type = 'Clinic' AND (e.aggregate_type, e.aggregate_id, e.sequence) > ($1, $2, $3)"
            } else {
                "e.aggregate_type <> 'Clinic' AND (e.aggregate_type, e.aggregate_id, e.sequence) > ($1, $2, $3)"
            };
            let events: Vec<StoredEvent> = sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM events e WHERE {which} AND e.transaction_id < $4::xid8 \
                 ORDER BY e.aggregate_type, e.aggregate_id, e.sequence LIMIT $5"
            ))
            .bind(&self.after.0)
            .bind(&self.after.1)
            .bind(self.after.2)
            .bind(&self.fence)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
            if let Some(last) = events.last() {
                self.after = (
                    last.aggregate_type.clone(),
                    last.aggregate_id.clone(),
                    last.sequence,
                );
                return Ok(events);
            }
            if !self.clinics {
                return Ok(events);
            }
            self.clinics = false;
            self.after = (String::new(), String::new(), -1);
        }
    }
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
        serde_json::from_str(self.payload.get()).map_err(|e| self.poison(e))
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
