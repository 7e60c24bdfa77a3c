//! Switching a clinic's modules on and off. Enabling billing needs a fee schedule
//! ([`crate::fees`]): a rule across the clinic and its schedule, checked in the command's
//! transaction.

use domain::clinic::{Clinic, ClinicCommand, ClinicError};
use domain::fees::FeeSchedule;
use domain::ids::ClinicId;
use domain::values::Module;

use crate::error::{CommandError, StoreError};
use crate::metadata::CommandMeta;
use crate::store::{Committed, EventStore, Expect};
use crate::tx::{stream, Streams};

/// Why switching a module on or off did not commit.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// Billing prices every visit by the fee schedule: it cannot be enabled before there is
    /// one.
    #[error("set the fee schedule first (PUT /v1/clinic/fees): billing prices visits by it")]
    FeeScheduleMissing,
    #[error(transparent)]
    Command(#[from] CommandError<ClinicError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Switches `module` of the caller's clinic on or off (`expect`: the clinic's version).
/// Enabling billing needs a fee schedule: the clinic and the schedule are read in one
/// statement of the command's transaction (a schedule is never removed, so one that was read
/// stays). Without one, the clinic's own refusals (already enabled, outside the plan) answer
/// first, then [`ModuleError::FeeScheduleMissing`]; nothing is written.
pub async fn set_module(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    module: Module,
    enabled: bool,
) -> Result<Committed, ModuleError> {
    let clinic = meta.clinic_id;
    let id = clinic.as_uuid();
    let command = if enabled {
        ClinicCommand::EnableModule { module }
    } else {
        ClinicCommand::DisableModule { module }
    };
    let needs_schedule = enabled && module == Module::Billing;
    let mut wanted = vec![stream::<Clinic>(clinic, id)];
    if needs_schedule {
        wanted.push(stream::<FeeSchedule>(clinic, id));
    }
    let mut tx = store.begin().await?;
    let facts = tx.load_streams(&wanted).await?;
    let loaded = facts.get::<Clinic>(clinic, id)?;
    if needs_schedule && !has_schedule(&facts, clinic)? {
        let version = loaded.as_ref().map_or(0, |(_, v)| *v);
        if let Expect::Version(expected) = expect {
            if expected != version {
                let mismatch = CommandError::VersionMismatch {
                    expected,
                    actual: version,
                };
                return Err(mismatch.into());
            }
        }
        let state = loaded.map(|(c, _)| c).unwrap_or_default();
        state
            .decide(command, tx.services())
            .map_err(CommandError::Domain)?;
        return Err(ModuleError::FeeScheduleMissing);
    }
    let committed = tx.decide(meta, id, loaded, command, expect).await?;
    tx.commit().await?;
    Ok(committed)
}

fn has_schedule(facts: &Streams, clinic: ClinicId) -> Result<bool, StoreError> {
    let fees = facts.get::<FeeSchedule>(clinic, clinic.as_uuid())?;
    Ok(fees.is_some_and(|(f, _)| f.schedule().is_some()))
}
