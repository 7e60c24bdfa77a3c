//! The read side: projection workers that tail the event store in commit order and build the
//! per-clinic read models (schema `rm`), and the queries that read them.
//!
//! `commands` and `projections` never call each other; they meet in the event store.

pub mod audit;
pub mod chain;
pub mod checkpoint;
pub mod queries;
pub mod scope;
pub mod worker;

mod apply;
pub mod rebuild;

/// The projections, in the order a rebuild runs them. `audit_chain` (tamper evidence, see
/// [`chain`]) is run by the workers but never rebuilt.
pub const PROJECTIONS: &[&str] = &[
    "clinics",
    "staff",
    "patients",
    "appointments",
    "audit_chain",
];

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
    #[error("unknown projection `{0}` (known: clinics, staff, patients, appointments)")]
    UnknownProjection(String),
    /// The hash chain is evidence, not a read model: rebuilding it would forge it.
    #[error("`{0}` is not a read model and is never rebuilt (it is the tamper-evidence chain)")]
    NotRebuildable(String),
}
