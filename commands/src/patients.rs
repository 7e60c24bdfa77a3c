//! Patient use cases: registering takes an MRN from the clinic's registry; merging looks at
//! the surviving record first; a doctor changes only a patient they may see. Each runs in one
//! transaction.

use domain::ids::{PatientId, StaffId};
use domain::patient::{Demographics, DemographicsChanges, Patient, PatientCommand, PatientError};
use uuid::Uuid;

use crate::error::{CommandError, StoreError};
use crate::metadata::{ActorRole, CommandMeta};
use crate::plans;
use crate::registry;
use crate::store::{Committed, EventStore, Expect};
use crate::tx::stream;

/// A registration that committed.
#[derive(Debug, Clone)]
pub struct Registered {
    pub patient_id: PatientId,
    pub committed: Committed,
}

#[derive(Debug, thiserror::Error)]
pub enum PatientsError {
    /// The record does not exist in the caller's clinic, or the caller is a doctor who may
    /// not see it (the same answer, so it does not tell them that the patient exists).
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
/// straight into the [`Demographics`]. One transaction: the new stream is not read, the MRN
/// is taken right before the append, so the clinic's counter row is locked only for the
/// append and the commit.
pub async fn register(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    demographics: Demographics,
) -> Result<Registered, PatientsError> {
    let patient_id = PatientId::new();
    let mut tx = store.begin().await?;
    let taken = registry::next_mrn(tx.conn(), meta.clinic_id).await?;
    plans::admit_patient::<PatientError>(taken.plan, taken.patients)?;
    let command = PatientCommand::Register {
        patient_id,
        clinic_id: meta.clinic_id,
        mrn: taken.mrn,
        demographics,
    };
    let id = patient_id.as_uuid();
    let committed = tx
        .decide::<Patient>(meta, id, None, command, expect)
        .await?;
    tx.commit().await?;
    Ok(Registered {
        patient_id,
        committed,
    })
}

/// Changes the demographics of patient `id`. A doctor may change only a patient they may see
/// ([`registry::doctor_sees_patient`]); for any other, the answer is the same "not found" as
/// for a patient that does not exist, and nothing is written.
pub async fn update_demographics(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: Uuid,
    changes: DemographicsChanges,
) -> Result<Committed, PatientsError> {
    let clinic = meta.clinic_id;
    let mut tx = store.begin().await?;
    if meta.actor.role == ActorRole::Doctor {
        let doctor = StaffId::from_uuid(meta.actor.id);
        let patient = PatientId::from_uuid(id);
        if !registry::doctor_sees_patient(tx.conn(), clinic, doctor, patient).await? {
            return Err(PatientsError::NotFound);
        }
    }
    let loaded = tx.load::<Patient>(clinic, id).await?;
    let command = PatientCommand::UpdateDemographics { changes };
    let committed = tx.decide(meta, id, loaded, command, expect).await?;
    tx.commit().await?;
    Ok(committed)
}

/// Merges patient `id` into the surviving record `into` (same clinic, active). The record
/// itself must exist first (not found), then the survivor (the `into` field). Both streams
/// are read in one statement of the merge's transaction.
pub async fn merge(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: Uuid,
    into: PatientId,
) -> Result<Committed, PatientsError> {
    let clinic = meta.clinic_id;
    let mut tx = store.begin().await?;
    let streams = tx
        .load_streams(&[
            stream::<Patient>(clinic, id),
            stream::<Patient>(clinic, into.as_uuid()),
        ])
        .await?;
    let merged = streams.get::<Patient>(clinic, id)?;
    let survivor = streams.get::<Patient>(clinic, into.as_uuid())?;
    check_merge(merged.is_some(), survivor.map(|(p, _)| p).as_ref())?;
    let command = PatientCommand::MergeInto { survivor: into };
    let committed = tx.decide(meta, id, merged, command, expect).await?;
    tx.commit().await?;
    Ok(committed)
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
