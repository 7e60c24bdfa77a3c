//! Patient use cases: registering takes an MRN from the clinic's registry; merging looks at
//! the surviving record first.

use domain::ids::PatientId;
use domain::patient::{Demographics, Patient, PatientCommand, PatientError};
use uuid::Uuid;

use crate::error::{CommandError, StoreError};
use crate::metadata::CommandMeta;
use crate::registry;
use crate::store::{Committed, EventStore, Expect};

/// A registration that committed.
#[derive(Debug, Clone)]
pub struct Registered {
    pub patient_id: PatientId,
    pub committed: Committed,
}

#[derive(Debug, thiserror::Error)]
pub enum PatientsError {
    /// The record to merge does not exist in the caller's clinic.
    #[error("patient not found")]
    NotFound,
    #[error("no such patient in your clinic")]
    SurvivorNotFound,
    #[error("the surviving patient is not active")]
    SurvivorInactive,
    #[error(transparent)]
    Command(#[from] CommandError<PatientError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PatientsError {
    /// The request field at fault, for the errors about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            PatientsError::SurvivorNotFound | PatientsError::SurvivorInactive => Some("into"),
            _ => None,
        }
    }
}

/// Registers a patient under the clinic's next MRN. The body of `POST /v1/patients` is read
/// straight into the [`Demographics`].
pub async fn register(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    demographics: Demographics,
) -> Result<Registered, PatientsError> {
    let mrn = registry::next_mrn(store.pool(), meta.clinic_id).await?;
    let patient_id = PatientId::new();
    let command = PatientCommand::Register {
        patient_id,
        clinic_id: meta.clinic_id,
        mrn,
        demographics,
    };
    let committed = store
        .execute::<Patient>(meta, patient_id.as_uuid(), command, expect)
        .await?;
    Ok(Registered {
        patient_id,
        committed,
    })
}

/// Merges patient `id` into the surviving record `into` (same clinic, active). The record
/// itself must exist first (not found), then the survivor (the `into` field).
pub async fn merge(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: Uuid,
    into: PatientId,
) -> Result<Committed, PatientsError> {
    let merged = store.load::<Patient>(meta.clinic_id, id).await?;
    let survivor = store
        .load::<Patient>(meta.clinic_id, into.as_uuid())
        .await?;
    check_merge(merged.is_some(), survivor.map(|(p, _)| p).as_ref())?;
    let command = PatientCommand::MergeInto { survivor: into };
    Ok(store.execute::<Patient>(meta, id, command, expect).await?)
}

fn check_merge(merged_exists: bool, survivor: Option<&Patient>) -> Result<(), PatientsError> {
    if !merged_exists {
        return Err(PatientsError::NotFound);
    }
    match survivor {
        Some(s) if s.is_active() => Ok(()),
        Some(_) => Err(PatientsError::SurvivorInactive),
        None => Err(PatientsError::SurvivorNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::patient;

    #[test]
    fn the_merged_record_must_exist_before_the_survivor_is_looked_at() {
        assert!(matches!(
            check_merge(false, None),
            Err(PatientsError::NotFound)
        ));
        assert_eq!(PatientsError::NotFound.field(), None);
    }

    #[test]
    fn the_survivor_must_exist_and_be_active() {
        assert!(check_merge(true, Some(&patient(true))).is_ok());
        let e = check_merge(true, Some(&patient(false))).unwrap_err();
        assert!(matches!(e, PatientsError::SurvivorInactive));
        assert_eq!(e.field(), Some("into"));
        let e = check_merge(true, None).unwrap_err();
        assert!(matches!(e, PatientsError::SurvivorNotFound));
        assert_eq!(e.to_string(), "no such patient in your clinic");
    }
}
