//! Plan limits (`domain::plan`), held under concurrency. A command that adds to a limited use
//! checks it on its own transaction before it appends, and nothing is written when it would go
//! past the limit ([`CommandError::OverLimit`]).
//!
//! - **Staff and doctors** (a hire, a role changed to doctor, a reactivation): the clinic's
//!   registry row (`clinic_codes`) is locked `FOR UPDATE`, then the active accounts are
//!   counted in a statement of their own, whose snapshot is taken after the lock: it sees every
//!   staff command of the clinic that went before. Such commands of one clinic queue on the
//!   row; they are rare.
//! - **Patients**: a registration already holds the clinic's MRN counter row, which carries
//!   the number of patients; the statement that takes the MRN counts the patient and returns
//!   the count before it ([`crate::registry::next_mrn`]; a merge takes one off in a trigger
//!   on `events`). No extra lock, no extra round trip.
//! - **Monthly bookings**: only a plan that limits them (the trial) pays for the check: the
//!   registry row is locked and the month's bookings counted (`care_links.booked_at`, at most
//!   a few hundred rows of a trial clinic). On other plans a booking takes no clinic-wide
//!   lock and no extra index.
//!
//! A plan change that races a command may let that one command through on the old plan; the
//! next one sees the new plan. A downgrade never removes anything: use over a limit stays,
//! and only new use is refused.

use chrono::{DateTime, Utc};
use domain::ids::ClinicId;
use domain::plan::{self, Limit, PlanLimits};
use domain::values::{Plan, TimeZone};
use sqlx::PgConnection;

use crate::error::{CommandError, StoreError};
use crate::tx::CommandTx;

/// What a staff command adds to the uses a plan limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaffAdds {
    pub doctors: u64,
    pub staff: u64,
}

impl StaffAdds {
    pub fn is_nothing(self) -> bool {
        self == StaffAdds::default()
    }
}

/// Locks the clinic's registry row until the transaction ends and reads its plan.
pub(crate) async fn lock_plan(
    conn: &mut PgConnection,
    clinic: ClinicId,
) -> Result<Plan, StoreError> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT plan FROM clinic_codes WHERE clinic_id = $1 FOR UPDATE")
            .bind(clinic.as_uuid())
            .fetch_optional(conn)
            .await?
            .flatten();
    stored_plan(name.as_deref().unwrap_or_default())
}

/// A plan as the clinic registry names it.
pub(crate) fn stored_plan(name: &str) -> Result<Plan, StoreError> {
    plan::stored::parse(name).ok_or_else(|| {
        StoreError(format!("the clinic registry names no known plan: {name:?}").into())
    })
}

/// Refuses a staff command that would take the clinic past its plan's active doctors or
/// active staff. Run it on the command's transaction, before the append.
pub async fn admit_staff<E: std::error::Error>(
    tx: &mut CommandTx<'_>,
    clinic: ClinicId,
    adds: StaffAdds,
) -> Result<(), CommandError<E>> {
    if adds.is_nothing() {
        return Ok(());
    }
    let limits = PlanLimits::of(lock_plan(tx.conn(), clinic).await?);
    if limits.active_doctors.is_none() && limits.active_staff.is_none() {
        return Ok(());
    }
    // A statement of its own: its snapshot is taken after the lock.
    let (doctors, staff): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE role = 'doctor'), count(*) \
         FROM accounts WHERE clinic_id = $1 AND active",
    )
    .bind(clinic.as_uuid())
    .fetch_one(tx.conn())
    .await
    .map_err(StoreError::from)?;
    limits
        .admit(Limit::ActiveDoctors, doctors as u64, adds.doctors)
        .and_then(|()| limits.admit(Limit::ActiveStaff, staff as u64, adds.staff))
        .map_err(CommandError::OverLimit)
}

/// Refuses a registration that would take the clinic past its plan's patients; `patients` and
/// `plan` are what [`crate::registry::next_mrn`] read with the MRN (its row is locked).
pub fn admit_patient<E: std::error::Error>(
    plan: Option<Plan>,
    patients: u64,
) -> Result<(), CommandError<E>> {
    let Some(plan) = plan else {
        return Err(CommandError::Store(StoreError(
            "the clinic has no registry row (no plan)".into(),
        )));
    };
    PlanLimits::of(plan)
        .admit(Limit::Patients, patients, 1)
        .map_err(CommandError::OverLimit)
}

/// Refuses a booking that would take the clinic past its plan's bookings in the current
/// calendar month of `time_zone` (`now` is the service clock's). On a plan without that
/// limit this reads and locks nothing.
pub async fn admit_booking<E: std::error::Error>(
    tx: &mut CommandTx<'_>,
    clinic: ClinicId,
    plan: Plan,
    time_zone: TimeZone,
    now: DateTime<Utc>,
) -> Result<(), CommandError<E>> {
    if PlanLimits::of(plan).monthly_bookings.is_none() {
        return Ok(());
    }
    // The plan as the locked row has it (a change may have committed since the load).
    let limits = PlanLimits::of(lock_plan(tx.conn(), clinic).await?);
    if limits.monthly_bookings.is_none() {
        return Ok(());
    }
    let (start, end) = plan::local_month(now, time_zone);
    let booked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM care_links WHERE clinic_id = $1 AND booked_at >= $2 AND booked_at < $3",
    )
    .bind(clinic.as_uuid())
    .bind(start)
    .bind(end)
    .fetch_one(tx.conn())
    .await
    .map_err(StoreError::from)?;
    limits
        .admit(Limit::MonthlyBookings, booked as u64, 1)
        .map_err(CommandError::OverLimit)
}
