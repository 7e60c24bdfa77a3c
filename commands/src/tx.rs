//! One command, one transaction: [`CommandTx`] loads the streams a command needs, lets the
//! domain decide, appends the events and commits, all on one connection in one transaction.
//!
//! A use case that needs more than the stream it writes (the MRN counter, other aggregates'
//! facts, a staged password hash) does those steps on the same transaction
//! ([`CommandTx::conn`], [`CommandTx::load_streams`]) before it decides, so everything a
//! command reads or claims commits — or rolls back — with its events.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use domain::clock::Services;
use domain::ids::ClinicId;
use serde::Deserialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tracing::instrument;
use uuid::Uuid;

use crate::error::{CommandError, StoreError};
use crate::metadata::{CommandMeta, StreamId};
use crate::store::{Committed, CommittedEvent, Expect};
use crate::wake::Wake;

/// The events of several streams, read in one statement, ordered by stream and sequence.
const SELECT_STREAMS: &str = "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.payload \
     FROM unnest($1::text[], $2::text[]) AS s(aggregate_type, aggregate_id) \
     JOIN events e ON e.aggregate_type = s.aggregate_type AND e.aggregate_id = s.aggregate_id \
     ORDER BY e.aggregate_type, e.aggregate_id, e.sequence";

/// As [`SELECT_STREAMS`], but only the events at or before a point of the commit order
/// (`(transaction_id, position)`): the streams as they stood when that event committed.
const SELECT_STREAMS_UPTO: &str = "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.payload \
     FROM unnest($1::text[], $2::text[]) AS s(aggregate_type, aggregate_id) \
     JOIN events e ON e.aggregate_type = s.aggregate_type AND e.aggregate_id = s.aggregate_id \
     WHERE (e.transaction_id, e.position) <= ($3::xid8, $4) \
     ORDER BY e.aggregate_type, e.aggregate_id, e.sequence";

/// Appends a command's events in one statement. The columns are the ones postgres-es names;
/// `tenant_id`, `position` and `transaction_id` are filled by the table. The primary key
/// `(aggregate_type, aggregate_id, sequence)` is the optimistic lock: a racing append at the
/// same sequence fails with a unique violation (23505), reported as `Concurrency`.
const INSERT_EVENTS: &str = "INSERT INTO events \
     (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
     SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, $7 \
     FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[]) \
         AS e(sequence, event_type, event_version, payload) \
     ORDER BY e.sequence \
     RETURNING sequence, position";

/// An open command transaction. Dropping it without [`CommandTx::commit`] rolls it back.
/// Its own transaction (`'static`, from [`crate::EventStore::begin`]), or a savepoint inside
/// a caller's transaction ([`CommandTx::within`]: a process manager's batch).
pub struct CommandTx<'c> {
    tx: Transaction<'c, Postgres>,
    services: Services,
    /// Wakes the workers once the transaction commits with events: `None` for a savepoint,
    /// whose events commit with the caller's transaction.
    wake: Option<Wake>,
    appended: bool,
}

impl std::fmt::Debug for CommandTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandTx").finish_non_exhaustive()
    }
}

/// Rows of several streams read by [`CommandTx::load_streams`]; [`Streams::get`] replays one.
#[derive(Debug, Default)]
pub struct Streams {
    rows: Vec<(String, String, i64, Value)>,
}

impl Streams {
    /// The state and version of aggregate `entity_id` of `clinic_id`, or `None` for an empty
    /// stream (or one that was not asked for).
    pub fn get<A: Aggregate>(
        &self,
        clinic_id: ClinicId,
        entity_id: Uuid,
    ) -> Result<Option<(A, u64)>, StoreError> {
        let stream_id = StreamId::new(clinic_id, entity_id);
        let mut aggregate = A::default();
        let mut version = 0;
        for (_, _, sequence, payload) in self
            .rows
            .iter()
            .filter(|(t, id, _, _)| t == A::TYPE && id == stream_id.as_str())
        {
            let event = A::Event::deserialize(payload).map_err(|e| StoreError(Box::new(e)))?;
            aggregate.apply(event);
            version = *sequence as u64;
        }
        Ok((version > 0).then_some((aggregate, version)))
    }
}

/// One stream to read: the aggregate type and the stream id.
pub type StreamRef = (&'static str, StreamId);

/// The stream of aggregate `A` with id `entity_id` in `clinic_id`, for [`CommandTx::load_streams`].
pub fn stream<A: Aggregate>(clinic_id: ClinicId, entity_id: Uuid) -> StreamRef {
    (A::TYPE, StreamId::new(clinic_id, entity_id))
}

/// Reads the events of `streams` in one statement on `conn`.
pub(crate) async fn read_streams(
    conn: &mut PgConnection,
    streams: &[StreamRef],
) -> Result<Streams, StoreError> {
    read_streams_upto(conn, streams, None).await
}

/// A point of the commit order: an event's `(transaction_id, position)`, the transaction id
/// as text (`xid8`).
pub type CommitPoint<'a> = (&'a str, i64);

/// Reads the events of `streams` in one statement on `conn`, all of them or (`upto`) those
/// at or before a point of the commit order.
async fn read_streams_upto(
    conn: &mut PgConnection,
    streams: &[StreamRef],
    upto: Option<CommitPoint<'_>>,
) -> Result<Streams, StoreError> {
    let mut wanted: Vec<(&str, &str)> = streams.iter().map(|(t, s)| (*t, s.as_str())).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let (types, ids): (Vec<&str>, Vec<&str>) = wanted.into_iter().unzip();
    let rows = match upto {
        None => {
            sqlx::query_as(SELECT_STREAMS)
                .bind(types)
                .bind(ids)
                .fetch_all(conn)
                .await?
        }
        Some((transaction_id, position)) => {
            sqlx::query_as(SELECT_STREAMS_UPTO)
                .bind(types)
                .bind(ids)
                .bind(transaction_id)
                .bind(position)
                .fetch_all(conn)
                .await?
        }
    };
    Ok(Streams { rows })
}

impl CommandTx<'static> {
    pub(crate) async fn begin(
        pool: &PgPool,
        services: Services,
        wake: Wake,
    ) -> Result<Self, StoreError> {
        Ok(CommandTx {
            tx: pool.begin().await?,
            services,
            wake: Some(wake),
            appended: false,
        })
    }
}

impl<'c> CommandTx<'c> {
    /// A command inside the transaction open on `conn`, as a savepoint: its commit releases
    /// the savepoint (the events commit with the caller's transaction), and a refusal or a
    /// failed append rolls back to it, leaving the caller's transaction usable.
    pub async fn within(
        conn: &'c mut PgConnection,
        services: Services,
    ) -> Result<Self, StoreError> {
        Ok(CommandTx {
            tx: sqlx::Connection::begin(conn).await?,
            services,
            wake: None,
            appended: false,
        })
    }

    /// The services (the clock) the aggregates decide with.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The service clock's now (what the events will record as `occurred_at`).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.services.now()
    }

    /// The transaction's connection, for a use case's own statements (the MRN counter, a
    /// staged password hash, a registry look-up).
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Reads several streams (of any aggregate types) in one statement.
    pub async fn load_streams(&mut self, streams: &[StreamRef]) -> Result<Streams, StoreError> {
        read_streams(&mut self.tx, streams).await
    }

    /// Reads several streams as they stood at a point of the commit order (a process
    /// manager deciding on an event as of when it committed), in one statement.
    pub async fn load_streams_upto(
        &mut self,
        streams: &[StreamRef],
        upto: CommitPoint<'_>,
    ) -> Result<Streams, StoreError> {
        read_streams_upto(&mut self.tx, streams, Some(upto)).await
    }

    /// The current state of one aggregate of a clinic and its version, or `None` for an empty
    /// stream.
    pub async fn load<A: Aggregate>(
        &mut self,
        clinic_id: ClinicId,
        entity_id: Uuid,
    ) -> Result<Option<(A, u64)>, StoreError> {
        let streams = self
            .load_streams(&[stream::<A>(clinic_id, entity_id)])
            .await?;
        streams.get::<A>(clinic_id, entity_id)
    }

    /// Runs `command` on `loaded` (the stream of `entity_id` as this transaction read it with
    /// [`CommandTx::load`], or `None` when empty) and appends the events it decides (not yet
    /// committed). Checks `expect` against the loaded version first. A stream with an id the
    /// service has just made needs no load: pass `None`; should it exist after all, the
    /// append at sequence 1 fails as a `Concurrency` conflict.
    #[instrument(
        skip_all,
        fields(
            clinic_id = %meta.clinic_id,
            aggregate_type = A::TYPE,
            aggregate_id = %entity_id,
            request_id = %meta.request_id,
        )
    )]
    pub async fn decide<A>(
        &mut self,
        meta: &CommandMeta,
        entity_id: Uuid,
        loaded: Option<(A, u64)>,
        command: A::Command,
        expect: Expect,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Aggregate<Services = Services>,
    {
        let stream_id = StreamId::new(meta.clinic_id, entity_id);
        let (mut aggregate, version) = loaded.unwrap_or_default();
        if let Expect::Version(expected) = expect {
            if expected != version {
                return Err(CommandError::VersionMismatch {
                    expected,
                    actual: version,
                });
            }
        }
        let sink = EventSink::<A>::default();
        aggregate
            .handle(command, &self.services, &sink)
            .await
            .map_err(CommandError::Domain)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(Committed {
                stream_id,
                version,
                events: Vec::new(),
            });
        }
        let events = self.append::<A>(meta, &stream_id, version, events).await?;
        let version = events.last().map_or(version, |e| e.sequence);
        tracing::debug!(
            version,
            events = events.len(),
            last_position = events.last().map(|e| e.position),
            "command appended"
        );
        Ok(Committed {
            stream_id,
            version,
            events,
        })
    }

    /// Appends `events` after `version` in one statement, with the command's metadata.
    async fn append<A: Aggregate>(
        &mut self,
        meta: &CommandMeta,
        stream_id: &StreamId,
        version: u64,
        events: Vec<A::Event>,
    ) -> Result<Vec<CommittedEvent>, CommandError<A::Error>> {
        let metadata = serde_json::to_value(meta.to_event_metadata(self.services.now()))
            .map_err(|e| StoreError(Box::new(e)))?;
        let n = events.len();
        let (mut sequences, mut types, mut versions, mut payloads) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (event, sequence) in events.iter().zip(version + 1..) {
            sequences.push(sequence as i64);
            types.push(event.event_type());
            versions.push(event.event_version());
            payloads.push(serde_json::to_value(event).map_err(|e| StoreError(Box::new(e)))?);
        }
        let mut rows: Vec<(i64, i64)> = sqlx::query_as(INSERT_EVENTS)
            .bind(A::TYPE)
            .bind(stream_id.as_str())
            .bind(&sequences)
            .bind(&types)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadata)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(CommandError::from_sqlx)?;
        self.appended = true;
        rows.sort_unstable();
        Ok(rows
            .into_iter()
            .zip(types)
            .map(|((sequence, position), event_type)| CommittedEvent {
                sequence: sequence as u64,
                position,
                event_type,
            })
            .collect())
    }

    /// Commits everything the transaction did (releases the savepoint of [`CommandTx::within`]).
    /// Then, if it appended events, wakes the projection workers ([`Wake`]).
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        if let (Some(wake), true) = (&self.wake, self.appended) {
            wake.wake();
        }
        Ok(())
    }

    /// Rolls back everything the transaction did (to the savepoint of [`CommandTx::within`]),
    /// now rather than on the connection's next use.
    pub async fn rollback(self) -> Result<(), StoreError> {
        Ok(self.tx.rollback().await?)
    }
}
