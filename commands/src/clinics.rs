//! Clinic use cases: a clinic is registered together with its first admin, whose account is
//! created with the hire. The HTTP API and the CLI (`clinic setup-clinic`) both call these.

use domain::clinic::{default_departments, Clinic, ClinicCommand, ClinicError};
use domain::ids::StaffId;
use domain::staff::{NewStaff, StaffCommand, StaffError, StaffProfile};
use domain::values::{ClinicCode, Email, NonEmptyText, PersonName, Plan, Role, TimeZone};

use crate::accounts::credentials;
use crate::accounts::{find_by_email, hire_with_credentials};
use crate::error::{CommandError, StoreError};
use crate::metadata::CommandMeta;
use crate::plans::{self, StaffAdds};
use crate::registry::clinic_by_code;
use crate::store::{Committed, EventStore, Expect};

/// The clinic's first admin.
#[derive(Debug, Clone)]
pub struct NewAdmin {
    pub name: PersonName,
    pub email: Email,
    pub password: String,
}

/// A clinic to register with its first admin.
#[derive(Debug, Clone)]
pub struct RegisterClinic {
    pub name: NonEmptyText,
    pub code: ClinicCode,
    pub time_zone: TimeZone,
    pub plan: Plan,
    pub admin: NewAdmin,
}

#[derive(Debug, thiserror::Error)]
pub enum ClinicsError {
    /// The admin's password breaks the policy (the message says how).
    #[error("{0}")]
    WeakPassword(String),
    /// The admin's e-mail already belongs to an account.
    #[error("the e-mail address already belongs to an account")]
    AdminEmailTaken,
    /// Registering the clinic failed (a taken code is `ClinicCodeTaken`).
    #[error(transparent)]
    Clinic(#[from] CommandError<ClinicError>),
    /// Hiring the admin failed.
    #[error(transparent)]
    Admin(#[from] CommandError<StaffError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClinicsError {
    /// The request field at fault, for the errors about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ClinicsError::WeakPassword(_) => Some("admin.password"),
            ClinicsError::AdminEmailTaken => Some("admin.email"),
            _ => None,
        }
    }
}

/// Registers a clinic under `meta.clinic_id` (a new id) and hires its first admin, in one
/// transaction: both commit or neither does. The answer is the hire's. The code and e-mail
/// are looked up first, so that a clash costs no password hashing; the `events` triggers
/// hold both rules under races.
pub async fn register_with_admin(
    store: &EventStore,
    meta: &CommandMeta,
    req: RegisterClinic,
) -> Result<Committed, ClinicsError> {
    credentials::check_policy(&req.admin.password).map_err(ClinicsError::WeakPassword)?;
    if clinic_by_code(store.pool(), &req.code).await?.is_some() {
        return Err(ClinicsError::Clinic(CommandError::ClinicCodeTaken));
    }
    if find_by_email(store.pool(), req.admin.email.as_str())
        .await?
        .is_some()
    {
        return Err(ClinicsError::AdminEmailTaken);
    }
    let hash = credentials::hash(req.admin.password).await?;
    let command = ClinicCommand::Register {
        clinic_id: meta.clinic_id,
        name: req.name,
        code: req.code,
        time_zone: req.time_zone,
        plan: req.plan,
        departments: default_departments(),
    };
    let mut tx = store.begin().await?;
    let id = meta.clinic_id.as_uuid();
    tx.decide::<Clinic>(meta, id, None, command, Expect::Any)
        .await?;
    let admin = new_admin(meta, req.admin.name, req.admin.email);
    let committed = hire_with_credentials(&mut tx, meta, admin.0, admin.1, Some(hash)).await?;
    tx.commit().await?;
    Ok(committed)
}

/// Hires a clinic admin into `meta.clinic_id` with an already hashed password (the account is
/// created with the hire).
pub async fn hire_admin(
    store: &EventStore,
    meta: &CommandMeta,
    name: PersonName,
    email: Email,
    password_hash: String,
) -> Result<Committed, CommandError<StaffError>> {
    let (staff_id, command) = new_admin(meta, name, email);
    let mut tx = store.begin().await?;
    let one_more = StaffAdds {
        doctors: 0,
        staff: 1,
    };
    plans::admit_staff::<StaffError>(&mut tx, meta.clinic_id, one_more).await?;
    let committed =
        hire_with_credentials(&mut tx, meta, staff_id, command, Some(password_hash)).await?;
    tx.commit().await?;
    Ok(committed)
}

/// The hire of a new clinic admin of `meta.clinic_id`.
fn new_admin(meta: &CommandMeta, name: PersonName, email: Email) -> (StaffId, StaffCommand) {
    let staff_id = StaffId::new();
    let command = StaffCommand::Hire(NewStaff {
        staff_id,
        clinic_id: meta.clinic_id,
        profile: StaffProfile {
            name,
            email,
            role: Role::ClinicAdmin,
            department_id: None,
            specialty: None,
            licence_number: None,
        },
    });
    (staff_id, command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_errors_name_the_nested_fields() {
        assert_eq!(
            ClinicsError::WeakPassword("too short".into()).field(),
            Some("admin.password")
        );
        assert_eq!(ClinicsError::AdminEmailTaken.field(), Some("admin.email"));
        assert_eq!(
            ClinicsError::from(CommandError::<ClinicError>::ClinicCodeTaken).field(),
            None
        );
    }
}
