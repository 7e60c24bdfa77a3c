//! The state every handler shares: the database pool, the event store, the token keys and
//! the service clock. It depends on nothing else of the HTTP layer, so routes import it from
//! here without an import cycle through `startup`.

use std::sync::Arc;

use commands::EventStore;
use sqlx::PgPool;

use crate::auth::JwtKeys;

/// The header that carries a request's id (kept when the client sends one).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Shared, cloneable state of every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: PgPool,
    pub store: EventStore,
    pub jwt: Arc<JwtKeys>,
    /// The service clock: the only source of "now" for business rules (the same one the
    /// aggregates decide with).
    pub clock: domain::clock::Services,
    /// This application's metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// How long an `Idempotency-Key` claim blocks retries: longer than any request may run.
    pub idempotency_lease: std::time::Duration,
    /// The audit exports' own pool and each clinic's share of it.
    pub streams: Arc<crate::audit_streams::StreamGate>,
    /// Writes the access log's rows, the rows of reads waiting together in one transaction.
    pub access: projections::audit::AccessWriter,
    /// Reads the callers' accounts, the look-ups of requests arriving together in one
    /// statement.
    pub accounts: commands::accounts::lookups::AccountLookups,
    /// The log-ins' password checks running or waiting (a full gate is a 429).
    pub password_checks: Arc<commands::accounts::credentials::CheckGate>,
    /// Changes after every batch the projection workers of this process commit (never, when
    /// they run in another process): a read waiting for `X-Min-Position` checks again then.
    pub applied: tokio::sync::watch::Receiver<u64>,
}
