//! The fee schedule (issue 14): configuration of the clinic, read from its own stream (one per
//! clinic, whose entity id is the clinic's), with no read model. A clinic admin sets the whole
//! schedule at once; every doctor a rule names must be a staff member of the clinic with the
//! doctor role (inactive doctors included: a rule may outlive a doctor's last day), checked in
//! the transaction that appends the schedule.

use domain::fees::{FeeSchedule, FeeScheduleCommand, FeeScheduleError, Schedule};
use domain::ids::ClinicId;
use domain::staff::Staff;
use domain::values::Role;

use crate::error::{CommandError, StoreError};
use crate::metadata::CommandMeta;
use crate::store::{Committed, EventStore, Expect};
use crate::tx::{stream, Streams};

#[derive(Debug, thiserror::Error)]
pub enum FeesError {
    /// Rule `index` names no staff member of the caller's clinic.
    #[error("no doctor with this id in your clinic")]
    UnknownDoctor { index: usize },
    /// Rule `index` names a staff member who is not a doctor.
    #[error("this staff member is not a doctor")]
    NotADoctor { index: usize },
    #[error(transparent)]
    Command(#[from] CommandError<FeeScheduleError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FeesError {
    /// The request field at fault, as the API names fields of array items
    /// (`rules[2].doctor_id`): for a doctor, the rule's `doctor_id`; for a rule the domain
    /// refuses (no key, a duplicate), the rule; for too many rules, `rules`.
    pub fn field(&self) -> Option<String> {
        match self {
            FeesError::UnknownDoctor { index } | FeesError::NotADoctor { index } => {
                Some(format!("rules[{index}].doctor_id"))
            }
            FeesError::Command(CommandError::Domain(e)) => Some(match e {
                FeeScheduleError::RuleWithoutKey { index }
                | FeeScheduleError::DuplicateRule { index, .. } => format!("rules[{index}]"),
                FeeScheduleError::TooManyRules { .. } => "rules".to_owned(),
            }),
            _ => None,
        }
    }
}

/// Sets the caller's clinic's fee schedule (`expect`: its stream's version, `If-Match`). One
/// transaction: the schedule's rules are checked by the domain first (no read for a schedule
/// it refuses), then the schedule's stream and every staff member the rules name are read in
/// one statement, each named doctor is checked, and the domain decides. The schedule it
/// already is writes nothing.
pub async fn set_schedule(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    schedule: Schedule,
) -> Result<Committed, FeesError> {
    let clinic = meta.clinic_id;
    let id = clinic.as_uuid();
    // The rules' own refusals, before anything is read.
    FeeSchedule::default()
        .decide(FeeScheduleCommand::Set(schedule.clone()))
        .map_err(CommandError::Domain)?;
    let mut wanted = vec![stream::<FeeSchedule>(clinic, id)];
    wanted.extend(
        FeeSchedule::doctors(&schedule)
            .into_iter()
            .map(|d| stream::<Staff>(clinic, d.as_uuid())),
    );
    let mut tx = store.begin().await?;
    let facts = tx.load_streams(&wanted).await?;
    check_doctors(&facts, clinic, &schedule)?;
    let loaded = facts.get::<FeeSchedule>(clinic, id)?;
    let command = FeeScheduleCommand::Set(schedule);
    let committed = tx.decide(meta, id, loaded, command, expect).await?;
    tx.commit().await?;
    Ok(committed)
}

/// Every doctor the rules name, in rule order: a staff member of `clinic` (as `facts` read
/// them) with the doctor role.
fn check_doctors(facts: &Streams, clinic: ClinicId, schedule: &Schedule) -> Result<(), FeesError> {
    for (index, rule) in schedule.rules.iter().enumerate() {
        let Some(doctor) = rule.doctor_id else {
            continue;
        };
        match facts.get::<Staff>(clinic, doctor.as_uuid())? {
            None => return Err(FeesError::UnknownDoctor { index }),
            Some((staff, _)) => check_doctor(&staff, index)?,
        }
    }
    Ok(())
}

fn check_doctor(staff: &Staff, index: usize) -> Result<(), FeesError> {
    match staff.role() {
        Some(Role::Doctor) => Ok(()),
        None => Err(FeesError::UnknownDoctor { index }),
        Some(_) => Err(FeesError::NotADoctor { index }),
    }
}

/// The clinic's fee schedule and its stream's version (for `If-Match`), or `None` until a
/// clinic admin sets one. Read from the stream itself, so always current.
pub async fn current(
    store: &EventStore,
    clinic: ClinicId,
) -> Result<Option<(Schedule, u64)>, StoreError> {
    let loaded = store.load::<FeeSchedule>(clinic, clinic.as_uuid()).await?;
    Ok(loaded.and_then(|(fees, version)| fees.schedule().cloned().map(|s| (s, version))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::staff;

    #[test]
    fn a_rule_names_a_doctor() {
        assert!(check_doctor(&staff(Role::Doctor, true), 0).is_ok());
        // A former doctor's rule stays valid.
        assert!(check_doctor(&staff(Role::Doctor, false), 0).is_ok());
        let e = check_doctor(&staff(Role::Nurse, true), 2).unwrap_err();
        assert!(matches!(e, FeesError::NotADoctor { index: 2 }));
        assert_eq!(e.field().as_deref(), Some("rules[2].doctor_id"));
        let e = check_doctor(&Staff::default(), 1).unwrap_err();
        assert!(matches!(e, FeesError::UnknownDoctor { index: 1 }));
    }

    #[test]
    fn the_domains_refusals_name_the_rule() {
        let field = |e: FeeScheduleError| FeesError::from(CommandError::Domain(e)).field();
        assert_eq!(
            field(FeeScheduleError::RuleWithoutKey { index: 3 }).as_deref(),
            Some("rules[3]")
        );
        assert_eq!(
            field(FeeScheduleError::DuplicateRule { index: 2, first: 0 }).as_deref(),
            Some("rules[2]")
        );
        assert_eq!(
            field(FeeScheduleError::TooManyRules { max: 500 }).as_deref(),
            Some("rules")
        );
        assert_eq!(
            FeesError::from(CommandError::<FeeScheduleError>::Concurrency).field(),
            None
        );
    }
}
