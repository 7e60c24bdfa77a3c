//! The write side: every command for a clinic runs here.
//!
//! [`EventStore::execute`] runs one command in one transaction: it loads the clinic-scoped
//! stream, lets the domain decide, appends the resulting events in one statement (the rows
//! postgres-es would write; optimistic concurrency on the stream's sequence) with the
//! request's metadata, commits, and answers with the committed events' positions in the
//! global log.
//!
//! A command that needs more than one aggregate or a registry has a use case, one home per
//! resource, which runs all its steps in one [`CommandTx`] (`EventStore::begin`): [`appointments`] (book, reschedule, act), [`patients`] (register, merge),
//! [`clinics`] (register with admin), [`staff`] (hire, update profile, change role,
//! reactivate), [`fees`] (the fee schedule, whose rules name the clinic's doctors),
//! [`modules`] (billing needs a fee schedule). [`plans`] holds the plan limits those use
//! cases check. The HTTP handlers and
//! the CLI call these; neither loads aggregates itself.

pub mod accounts;
pub mod appointments;
pub mod billing;
pub mod clinics;
pub mod error;
pub mod fees;
pub mod invoices;
pub mod metadata;
pub mod modules;
pub mod patients;
pub mod plans;
pub mod registry;
pub mod staff;
pub mod store;
pub mod tx;
pub mod wake;

#[cfg(test)]
pub(crate) mod testing;

pub use error::{Busy, CommandError, Conflict, StoreError};
pub use metadata::{Actor, ActorRole, CommandMeta, StreamId};
pub use store::{Committed, CommittedEvent, EventStore, Expect};
pub use tx::{CommandTx, Streams};
pub use wake::{Wake, WAKE_CHANNEL};
