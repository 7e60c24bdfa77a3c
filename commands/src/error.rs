//! Errors of the write side. Domain rejections, concurrency conflicts and registry clashes are
//! typed so the API can map each to its HTTP answer; anything else is an opaque store failure.

use std::error::Error as StdError;

/// SQLSTATE raised by the `events` trigger when a clinic code is already registered.
pub const SQLSTATE_CLINIC_CODE_TAKEN: &str = "CK001";
/// SQLSTATE raised by the `events` trigger when an MRN is already used in the clinic.
pub const SQLSTATE_MRN_TAKEN: &str = "CK002";
/// SQLSTATE raised by the `events` trigger when a staff e-mail already belongs to an account.
pub const SQLSTATE_EMAIL_TAKEN: &str = "CK003";
/// SQLSTATE raised by the `events` trigger when an appointment's time overlaps an active
/// appointment of the same doctor (message `doctor-busy`) or patient (`patient-busy`); the
/// detail is a JSON list of the conflicting `{start, end}` ranges.
pub const SQLSTATE_SLOT_TAKEN: &str = "CK004";

/// Who is already busy when a slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    Doctor,
    Patient,
}

/// A conflicting time range (never who holds it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Conflict {
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
}

/// A failure of the store itself: the database, (de)serialisation, a broken invariant of the
/// stored data. Never the client's fault.
#[derive(Debug, thiserror::Error)]
#[error("event store failure: {0}")]
pub struct StoreError(#[source] pub Box<dyn StdError + Send + Sync + 'static>);

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError(Box::new(err))
    }
}

/// Why a command did not commit. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: StdError> {
    /// The domain refused the command (a business rule, an illegal transition, bad input, or
    /// an aggregate that does not exist in this clinic).
    #[error(transparent)]
    Domain(E),
    /// Another command appended to the same stream between our load and our append.
    #[error("the record was changed by a concurrent command; retry")]
    Concurrency,
    /// The caller expected another version (`If-Match`).
    #[error("expected version {expected}, but the record is at version {actual}")]
    VersionMismatch { expected: u64, actual: u64 },
    /// The clinic code is registered to another clinic.
    #[error("the clinic code is already registered")]
    ClinicCodeTaken,
    /// The MRN is already used in this clinic.
    #[error("the MRN is already assigned in this clinic")]
    MrnTaken,
    /// The e-mail already belongs to an account (staff e-mails are log-ins).
    #[error("the e-mail address already belongs to an account")]
    EmailTaken,
    /// The doctor or the patient already has an active appointment overlapping this time.
    #[error("the {busy:?} already has an appointment at that time")]
    SlotTaken {
        busy: Busy,
        conflicts: Vec<Conflict>,
    },
    /// The command would take the clinic past a limit of its plan.
    #[error(transparent)]
    OverLimit(domain::plan::OverLimit),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// SQLSTATE of a unique violation: on `events` it is the optimistic lock (another command
/// appended at the same sequence).
const SQLSTATE_UNIQUE_VIOLATION: &str = "23505";

impl<E: StdError> CommandError<E> {
    /// Classifies a failed statement of a command: a unique violation is a concurrent append,
    /// the `events` triggers' SQLSTATEs are registry and slot clashes, anything else is a
    /// store failure.
    pub(crate) fn from_sqlx(err: sqlx::Error) -> Self {
        if let Some(taken) = slot_taken(&err) {
            return taken;
        }
        match err.as_database_error().and_then(|d| d.code()).as_deref() {
            Some(SQLSTATE_UNIQUE_VIOLATION) => CommandError::Concurrency,
            Some(SQLSTATE_CLINIC_CODE_TAKEN) => CommandError::ClinicCodeTaken,
            Some(SQLSTATE_MRN_TAKEN) => CommandError::MrnTaken,
            Some(SQLSTATE_EMAIL_TAKEN) => CommandError::EmailTaken,
            _ => CommandError::Store(StoreError::from(err)),
        }
    }
}

fn slot_taken<E: StdError>(err: &sqlx::Error) -> Option<CommandError<E>> {
    let db = err.as_database_error()?;
    if db.code().as_deref() != Some(SQLSTATE_SLOT_TAKEN) {
        return None;
    }
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let busy = if pg.message() == "patient-busy" {
        Busy::Patient
    } else {
        Busy::Doctor
    };
    let conflicts = pg
        .detail()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    Some(CommandError::SlotTaken { busy, conflicts })
}
