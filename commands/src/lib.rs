//! The write side: every command for a clinic runs here.
//!
//! [`EventStore::execute`] is the one way to run a command. It loads the clinic-scoped stream,
//! lets the domain decide, appends the resulting events (postgres-es, one transaction,
//! optimistic concurrency on the stream's sequence) with the request's metadata, and answers
//! with the committed events' positions in the global log.

pub mod accounts;
pub mod credentials;
pub mod error;
pub mod metadata;
pub mod registry;
pub mod store;

pub use error::{Busy, CommandError, Conflict, StoreError};
pub use metadata::{Actor, ActorRole, CommandMeta, StreamId};
pub use store::{Committed, CommittedEvent, EventStore, Expect};
