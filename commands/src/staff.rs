//! Staff use cases: hiring creates the member's account with the hire; a department named in
//! a hire or a profile must be open in the clinic; a hire, a role changed to doctor and a
//! reactivation stay within the plan's active doctors and staff ([`plans::admit_staff`]).

use cqrs_es::Aggregate;
use domain::clinic::Clinic;
use domain::clock::Services;
use domain::ids::{DepartmentId, StaffId};
use domain::staff::{
    NewStaff, ProfileChanges, Staff, StaffCommand, StaffError, StaffEvent, StaffProfile,
};
use domain::values::Role;
use uuid::Uuid;

use crate::accounts::credentials;
use crate::accounts::hire_with_credentials;
use crate::error::{CommandError, StoreError};
use crate::metadata::CommandMeta;
use crate::plans::{self, StaffAdds};
use crate::store::{Committed, EventStore, Expect};
use crate::tx::CommandTx;

/// A new staff member and their initial password.
#[derive(Debug, Clone)]
pub struct Hire {
    pub profile: StaffProfile,
    pub password: String,
}

/// Profile fields to change; absent fields stay as they are.
pub type UpdateProfile = ProfileChanges;

/// A hire that committed.
#[derive(Debug, Clone)]
pub struct Hired {
    pub staff_id: StaffId,
    pub committed: Committed,
}

#[derive(Debug, thiserror::Error)]
pub enum StaffingError {
    /// The initial password breaks the policy (the message says how).
    #[error("{0}")]
    WeakPassword(String),
    #[error("no open department with this id in your clinic")]
    DepartmentNotFound,
    /// The command would leave the clinic without an active clinic admin (who alone can
    /// hire, set roles and reactivate accounts: nobody could undo it).
    #[error(
        "this is the clinic's last active clinic admin: make another member clinic admin first"
    )]
    LastClinicAdmin,
    #[error(transparent)]
    Command(#[from] CommandError<StaffError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StaffingError {
    /// The request field at fault, for the errors about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            StaffingError::WeakPassword(_) => Some("password"),
            StaffingError::DepartmentNotFound => Some("department_id"),
            _ => None,
        }
    }
}

/// Hires a staff member into the caller's clinic and creates their account. The password is
/// hashed before the transaction opens; the department check, the staged hash and the hire
/// are one transaction.
pub async fn hire(
    store: &EventStore,
    meta: &CommandMeta,
    req: Hire,
) -> Result<Hired, StaffingError> {
    credentials::check_policy(&req.password).map_err(StaffingError::WeakPassword)?;
    let hash = credentials::hash(req.password).await?;
    let mut tx = store.begin().await?;
    let clinic = tx
        .load::<Clinic>(meta.clinic_id, meta.clinic_id.as_uuid())
        .await?
        .map(|(c, _)| c);
    let department_id = match req.profile.department_id {
        Some(id) => Some(check_department(clinic.as_ref(), id)?),
        None => None,
    };
    // A new doctor starts with the clinic's working week, if it set one.
    let working_week = clinic
        .as_ref()
        .and_then(Clinic::working_week)
        .filter(|_| req.profile.role == Role::Doctor)
        .cloned();
    let staff_id = StaffId::new();
    let command = StaffCommand::Hire(NewStaff {
        staff_id,
        clinic_id: meta.clinic_id,
        profile: StaffProfile {
            department_id,
            ..req.profile
        },
    });
    let (adding, hired) = adds(None, &command, tx.services()).map_err(CommandError::Domain)?;
    plans::admit_staff::<StaffError>(&mut tx, meta.clinic_id, adding).await?;
    let mut committed = hire_with_credentials(&mut tx, meta, staff_id, command, Some(hash)).await?;
    if let Some(hours) = working_week {
        // The hired member as the hire's own events made them: no need to read them back.
        let hired = Some((hired, committed.version));
        let set = StaffCommand::SetWorkingHours { hours };
        let more = tx
            .decide(meta, staff_id.as_uuid(), hired, set, Expect::Any)
            .await?;
        committed.version = more.version;
        committed.events.extend(more.events);
    }
    tx.commit().await?;
    Ok(Hired {
        staff_id,
        committed,
    })
}

/// Updates staff member `id`'s profile.
pub async fn update_profile(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: Uuid,
    req: UpdateProfile,
) -> Result<Committed, StaffingError> {
    let mut tx = store.begin().await?;
    let command = StaffCommand::UpdateProfile(ProfileChanges {
        department_id: open_department(&mut tx, meta, req.department_id).await?,
        ..req
    });
    let loaded = tx.load::<Staff>(meta.clinic_id, id).await?;
    let committed = tx.decide(meta, id, loaded, command, expect).await?;
    tx.commit().await?;
    Ok(committed)
}

/// Runs `command` on staff member `id` (a role change, a reactivation, working hours, time
/// off, a deactivation) within the plan: what would add an active doctor or staff member past
/// the plan's limit is refused before anything is written. So is a role change or a
/// deactivation of the clinic's last active clinic admin ([`keep_an_admin`]).
pub async fn act(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: Uuid,
    command: StaffCommand,
) -> Result<Committed, StaffingError> {
    let mut tx = store.begin().await?;
    let loaded = tx.load::<Staff>(meta.clinic_id, id).await?;
    let staff = loaded.as_ref().map(|(s, _)| s);
    let (adding, after) = adds(staff, &command, tx.services()).map_err(CommandError::Domain)?;
    if staff.is_some_and(is_active_admin) && !is_active_admin(&after) {
        keep_an_admin(&mut tx, meta, id).await?;
    }
    plans::admit_staff::<StaffError>(&mut tx, meta.clinic_id, adding).await?;
    let committed = tx.decide(meta, id, loaded, command, expect).await?;
    tx.commit().await?;
    Ok(committed)
}

fn is_active_admin(staff: &Staff) -> bool {
    staff.is_active() && staff.role() == Some(Role::ClinicAdmin)
}

/// Refuses to take the clinic's last active clinic admin (`leaving`) away. The clinic's
/// registry row is locked first, so two admins demoting or deactivating each other at once
/// are serialised and the second sees the first's change (`accounts` follows the events in
/// their transaction); the count is a statement of its own, with a snapshot taken after the
/// lock.
async fn keep_an_admin(
    tx: &mut CommandTx<'_>,
    meta: &CommandMeta,
    leaving: Uuid,
) -> Result<(), StaffingError> {
    plans::lock_plan(tx.conn(), meta.clinic_id).await?;
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts \
         WHERE clinic_id = $1 AND active AND role = 'clinic_admin' AND id <> $2",
    )
    .bind(meta.clinic_id.as_uuid())
    .bind(leaving)
    .fetch_one(tx.conn())
    .await
    .map_err(StoreError::from)?;
    if others == 0 {
        return Err(StaffingError::LastClinicAdmin);
    }
    Ok(())
}

/// What `command` on `staff` (`None` for a hire) adds to the clinic's active doctors and
/// staff, read from the events the domain decides for it: a pure run, before anything is
/// appended. A command the domain refuses gets the domain's answer, before any plan check.
/// Also the member as those events leave them.
fn adds(
    staff: Option<&Staff>,
    command: &StaffCommand,
    services: &Services,
) -> Result<(StaffAdds, Staff), StaffError> {
    let current = staff.cloned().unwrap_or_default();
    let doctor = |role: Option<Role>| u64::from(role == Some(Role::Doctor));
    let mut adds = StaffAdds::default();
    let mut after = current.clone();
    for event in current.decide(command.clone(), services)? {
        after.apply(event.clone());
        match event {
            StaffEvent::StaffHired(new) => {
                adds.staff += 1;
                adds.doctors += doctor(Some(new.profile.role));
            }
            StaffEvent::StaffReactivated => {
                adds.staff += 1;
                adds.doctors += doctor(current.role());
            }
            StaffEvent::StaffRoleChanged { from, to } if from != Role::Doctor => {
                adds.doctors += doctor(Some(to));
            }
            _ => {}
        }
    }
    Ok((adds, after))
}

/// `department`, if it is open in the caller's clinic.
async fn open_department(
    tx: &mut CommandTx<'_>,
    meta: &CommandMeta,
    department: Option<DepartmentId>,
) -> Result<Option<DepartmentId>, StaffingError> {
    let Some(id) = department else {
        return Ok(None);
    };
    let clinic = tx
        .load::<Clinic>(meta.clinic_id, meta.clinic_id.as_uuid())
        .await?;
    check_department(clinic.map(|(c, _)| c).as_ref(), id).map(Some)
}

fn check_department(
    clinic: Option<&Clinic>,
    id: DepartmentId,
) -> Result<DepartmentId, StaffingError> {
    match clinic {
        Some(clinic) if clinic.has_open_department(id) => Ok(id),
        _ => Err(StaffingError::DepartmentNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::clinic_with;

    #[test]
    fn a_department_must_be_open_in_the_clinic() {
        let (open, closed, unknown) = (
            DepartmentId::new(),
            DepartmentId::new(),
            DepartmentId::new(),
        );
        let clinic = clinic_with(&[open], &[closed]);
        assert_eq!(check_department(Some(&clinic), open).unwrap(), open);
        for id in [closed, unknown] {
            let e = check_department(Some(&clinic), id).unwrap_err();
            assert!(matches!(e, StaffingError::DepartmentNotFound));
            assert_eq!(e.field(), Some("department_id"));
        }
        assert!(check_department(None, open).is_err());
    }

    #[test]
    fn a_weak_password_names_the_password_field() {
        let e = StaffingError::WeakPassword("must be at least 12 characters".into());
        assert_eq!(e.field(), Some("password"));
        assert_eq!(e.to_string(), "must be at least 12 characters");
    }
}
