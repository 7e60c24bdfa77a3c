//! The write side: every command for a clinic runs here.
//!
//! [`EventStore::execute`] is the one way to run a command. It loads the clinic-scoped stream,
//! lets the domain decide, appends the resulting events (postgres-es, one transaction,
//! optimistic concurrency on the stream's sequence) with the request's metadata, and answers
//! with the committed events' positions in the global log.
//!
//! A command that needs more than one aggregate or a registry has a use case, one home per
//! resource: [`appointments`] (book, reschedule, act), [`patients`] (register, merge),
//! [`clinics`] (register with admin), [`staff`] (hire, update profile). The HTTP handlers and
//! the CLI call these; neither loads aggregates itself.

pub mod accounts;
pub mod appointments;
pub mod clinics;
pub mod error;
pub mod metadata;
pub mod patients;
pub mod registry;
pub mod staff;
pub mod store;

#[cfg(test)]
pub(crate) mod testing;

pub use error::{Busy, CommandError, Conflict, StoreError};
pub use metadata::{Actor, ActorRole, CommandMeta, StreamId};
pub use store::{Committed, CommittedEvent, EventStore, Expect};
