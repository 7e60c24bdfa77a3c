//! The event store: commands run here, each in one transaction ([`CommandTx`]).
//!
//! The tables are postgres-es's (`events`, with the tenant, position and transaction columns
//! of our migration); the rows are written exactly as postgres-es would write them, but the
//! load, the decision and the append share one transaction and one connection.

use std::fmt::Debug;

use cqrs_es::Aggregate;
use domain::clock::Services;
use domain::ids::ClinicId;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{CommandError, StoreError};
use crate::metadata::{CommandMeta, StreamId};
use crate::tx::{read_streams, stream, CommandTx};
use crate::wake::Wake;

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
    wake: Wake,
}

impl Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore").finish_non_exhaustive()
    }
}

impl EventStore {
    pub fn new(pool: PgPool, services: Services) -> Self {
        EventStore {
            wake: Wake::new(pool.clone()),
            pool,
            services,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The services (the clock) the aggregates decide with.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Opens a command transaction, for a use case that does more than one step before it
    /// commits (see [`CommandTx`]).
    pub async fn begin(&self) -> Result<CommandTx<'static>, StoreError> {
        CommandTx::begin(&self.pool, self.services.clone(), self.wake.clone()).await
    }

    /// Runs `command` against the stream of `entity_id` inside `meta.clinic_id`, as
    /// `meta.actor`, in one transaction: load the stream, decide, append, commit. On success
    /// the events are committed and their positions returned; on any error nothing was
    /// written. Its log lines carry [`CommandTx::decide`]'s span (clinic, stream, request).
    pub async fn execute<A>(
        &self,
        meta: &CommandMeta,
        entity_id: Uuid,
        command: A::Command,
        expect: Expect,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Aggregate<Services = Services>,
    {
        let mut tx = self.begin().await?;
        let loaded = tx.load::<A>(meta.clinic_id, entity_id).await?;
        let committed = tx.decide(meta, entity_id, loaded, command, expect).await?;
        tx.commit().await?;
        Ok(committed)
    }

    /// The current state of one aggregate of a clinic and its version, or `None` when the
    /// clinic has no such stream (one statement, outside any command).
    pub async fn load<A>(
        &self,
        clinic_id: ClinicId,
        entity_id: Uuid,
    ) -> Result<Option<(A, u64)>, StoreError>
    where
        A: Aggregate<Services = Services>,
    {
        let mut conn = self.pool.acquire().await?;
        let streams = read_streams(&mut conn, &[stream::<A>(clinic_id, entity_id)]).await?;
        streams.get::<A>(clinic_id, entity_id)
    }
}
