//! The read side: projection workers that tail the event store in commit order and build the
//! per-clinic read models (schema `rm`), and the queries that read them.
//!
//! One folder per read model, with its apply function and its queries: [`clinics`],
//! [`staff`], [`patients`], [`appointments`], [`invoices`], and the tamper-evidence chain
//! [`audit_chain`].
//! [`dashboard`] and [`availability`] read several read models; [`audit`] reads the event
//! log itself. Every projection is a [`Projection`], listed in [`PROJECTIONS`].
//!
//! Every clinic query opens its own read transaction with [`scope::clinic_tx`], so row-level
//! security limits it to the caller's clinic, and filters on `clinic_id` itself as well
//! (defence in depth). The platform queries ([`clinics::platform_clinics`],
//! [`clinics::platform_overview`], [`invoices::platform_billing`]) use [`scope::platform_tx`]
//! and read `rm.clinics` only, which holds no patient data, and counts and sums of the other
//! read models through SECURITY DEFINER functions that return no row of them. Who may see what (a doctor only their own patients and
//! appointments, a receptionist no clinical notes) is decided by the API; the queries take the
//! resulting restriction as an explicit argument.
//!
//! `commands` and `projections` never call each other; they meet in the event store.

pub mod access_chain;
pub mod appointments;
pub mod audit;
pub mod audit_chain;
pub mod availability;
pub mod billing;
mod changes;
pub mod checkpoint;
pub mod clinics;
pub mod dashboard;
pub mod event;
pub mod invoices;
pub mod page;
pub mod patients;
pub mod projection;
pub mod rebuild;
pub mod reports;
pub mod scope;
pub mod staff;
pub mod worker;

pub use projection::{Projection, PROJECTIONS};

/// Errors of the read side.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// An event the projection cannot apply: the projection stops here.
    #[error("cannot apply event at position {position} ({event_type}): {reason}")]
    Poison {
        position: i64,
        event_type: String,
        reason: String,
    },
    #[error("unknown projection `{0}` (known: {known})", known = projection::rebuildable_names())]
    UnknownProjection(String),
    /// The hash chain is evidence, not a read model: rebuilding it would forge it.
    #[error("`{0}` is not a read model and is never rebuilt (it is the tamper-evidence chain)")]
    NotRebuildable(String),
    /// A process manager's command failed (its batch is rolled back and retried).
    #[error("process manager: {0}")]
    Process(String),
    /// A rebuild's writer task stopped without an answer (it panicked or was cancelled).
    #[error("a rebuild writer stopped: {0}")]
    RebuildWriter(String),
}
