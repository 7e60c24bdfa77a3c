//! Command execution over postgres-es.

use std::fmt::Debug;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, EventStore as _};
use domain::clock::Services;
use domain::ids::ClinicId;
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tracing::instrument;
use uuid::Uuid;

use crate::error::{CommandError, StoreError};
use crate::metadata::{CommandMeta, StreamId};

/// What the caller expects of the stream's version before the command runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expect {
    /// Run against whatever the current version is (optimistic concurrency still applies
    /// between load and append).
    #[default]
    Any,
    /// Run only if the stream is at exactly this version (`If-Match`); 0 is an empty stream.
    Version(u64),
}

/// One appended event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedEvent {
    pub sequence: u64,
    pub position: i64,
    pub event_type: String,
}

/// The result of a command that committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub stream_id: StreamId,
    /// The stream's version after the command: the sequence of its last event.
    pub version: u64,
    /// The appended events in order; empty when the command decided nothing needed to change.
    pub events: Vec<CommittedEvent>,
}

impl Committed {
    /// The position of the last committed event, for read-your-writes.
    pub fn last_position(&self) -> Option<i64> {
        self.events.last().map(|e| e.position)
    }
}

/// The tenant-scoped event store. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    services: Services,
}

impl Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore").finish_non_exhaustive()
    }
}

impl EventStore {
    pub fn new(pool: PgPool, services: Services) -> Self {
        EventStore { pool, services }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The services (the clock) the aggregates decide with.
    pub fn services(&self) -> &Services {
        &self.services
    }

    fn framework_store<A>(&self) -> PersistedEventStore<PostgresEventRepository, A>
    where
        A: Aggregate,
    {
        PersistedEventStore::new_event_store(PostgresEventRepository::new(self.pool.clone()))
    }

    /// Runs `command` against the stream of `entity_id` inside `meta.clinic_id`, as
    /// `meta.actor`. On success the events are committed and their positions returned; on any
    /// error nothing was written.
    #[instrument(
        skip_all,
        fields(
            clinic_id = %meta.clinic_id,
            aggregate_type = A::TYPE,
            aggregate_id = %entity_id,
            request_id = %meta.request_id,
        )
    )]
    pub async fn execute<A>(
        &self,
        meta: &CommandMeta,
        entity_id: Uuid,
        command: A::Command,
        expect: Expect,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Aggregate<Services = Services>,
        A::Error: Send + Sync + 'static,
        A::Command: Send,
    {
        let stream_id = StreamId::new(meta.clinic_id, entity_id);
        let store = self.framework_store::<A>();
        let mut context = store
            .load_aggregate(stream_id.as_str())
            .await
            .map_err(CommandError::from_aggregate)?;
        let loaded_version = context.current_sequence as u64;
        if let Expect::Version(expected) = expect {
            if expected != loaded_version {
                return Err(CommandError::VersionMismatch {
                    expected,
                    actual: loaded_version,
                });
            }
        }

        let sink = cqrs_es::event_sink::EventSink::<A>::default();
        context
            .aggregate()
            .handle(command, &self.services, &sink)
            .await
            .map_err(CommandError::Domain)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(Committed {
                stream_id,
                version: loaded_version,
                events: Vec::new(),
            });
        }

        let envelopes = store
            .commit(events, context, meta.to_event_metadata(self.services.now()))
            .await
            .map_err(CommandError::from_aggregate)?;
        let version = envelopes
            .last()
            .map(|e| e.sequence as u64)
            .unwrap_or(loaded_version);

        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT sequence, position, event_type FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
             ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(stream_id.as_str())
        .bind(loaded_version as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from)?;
        let events = rows
            .into_iter()
            .filter(|(sequence, _, _)| (*sequence as u64) <= version)
            .map(|(sequence, position, event_type)| CommittedEvent {
                sequence: sequence as u64,
                position,
                event_type,
            })
            .collect::<Vec<_>>();
        tracing::debug!(
            version,
            events = events.len(),
            last_position = events.last().map(|e| e.position),
            "command committed"
        );
        Ok(Committed {
            stream_id,
            version,
            events,
        })
    }

    /// The current state of one aggregate of a clinic and its version, or `None` when the
    /// clinic has no such stream.
    pub async fn load<A>(
        &self,
        clinic_id: ClinicId,
        entity_id: Uuid,
    ) -> Result<Option<(A, u64)>, StoreError>
    where
        A: Aggregate<Services = Services>,
        A::Error: Send + Sync + 'static,
    {
        let stream_id = StreamId::new(clinic_id, entity_id);
        let context = self
            .framework_store::<A>()
            .load_aggregate(stream_id.as_str())
            .await
            .map_err(|e| match CommandError::from_aggregate(e) {
                CommandError::Store(e) => e,
                other => StoreError(other.to_string().into()),
            })?;
        if context.current_sequence == 0 {
            return Ok(None);
        }
        Ok(Some((context.aggregate, context.current_sequence as u64)))
    }
}
