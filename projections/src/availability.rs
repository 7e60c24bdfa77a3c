//! What a doctor's availability is computed from, read from the staff, clinics and
//! appointments read models in one statement.

use chrono::{DateTime, Utc};
use domain::ids::{ClinicId, StaffId};
use domain::values::{TimeRange, TimeZone, WorkingHours};
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::scope::{clinic_tx, end_read};
use crate::staff::TimeOffView;

/// What a doctor's availability is computed from (see `domain::schedule::Schedule`): the
/// doctor's weekly hours and time off, the clinic's time zone and slot step, and the doctor's
/// active appointments (`booked`, `checked-in`, `in-progress`) overlapping the window asked
/// about.
#[derive(Debug, Clone)]
pub struct DoctorSchedule {
    pub doctor_id: Uuid,
    pub hours: WorkingHours,
    pub time_off: Vec<TimeRange>,
    pub time_zone: TimeZone,
    /// The clinic's slot step in minutes.
    pub step_minutes: u32,
    /// The doctor's active appointments overlapping `[from, to)`, by start time.
    pub busy: Vec<TimeRange>,
}

#[derive(sqlx::FromRow)]
struct DoctorScheduleRow {
    working_hours: Json<serde_json::Value>,
    time_off: Json<Vec<TimeOffView>>,
    time_zone: String,
    slot_minutes: i32,
    busy: Json<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
}

/// A read-model value that does not parse as its domain type (a projection bug, not the
/// caller's): surfaced as a decode error.
fn corrupt(what: &str, error: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("rm: {what}: {error}").into())
}

/// Everything availability needs for one doctor of `clinic` over `[from, to)`, read in one
/// clinic-scoped transaction. `None` unless `doctor` is an active member of the clinic with the
/// doctor role (and the clinic itself is projected).
pub async fn doctor_schedule(
    pool: &PgPool,
    clinic: ClinicId,
    doctor: StaffId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DoctorSchedule>, sqlx::Error> {
    let mut tx = clinic_tx(pool, clinic).await?;
    // One statement: the doctor's schedule, and their active appointments overlapping the
    // window, by start. An appointment that overlaps `from` started less than the longest one
    // before it: the scan of the doctor's appointments starts there ($5), not at the first one
    // ever booked.
    let row: Option<DoctorScheduleRow> = sqlx::query_as(
        "SELECT s.working_hours, s.time_off, c.time_zone, c.slot_minutes, \
                (SELECT coalesce(json_agg(json_build_array(a.start_at, a.end_at) \
                                          ORDER BY a.start_at, a.appointment_id), '[]') \
                 FROM rm.appointments a \
                 WHERE a.clinic_id = $1 AND a.doctor_id = $2 \
                   AND a.status IN ('booked', 'checked-in', 'in-progress') \
                   AND a.start_at < $4 AND a.end_at > $3 AND a.start_at > $5) AS busy \
         FROM rm.staff s JOIN rm.clinics c ON c.clinic_id = s.clinic_id \
         WHERE s.clinic_id = $1 AND s.staff_id = $2 AND s.role = 'doctor' AND s.active",
    )
    .bind(clinic.as_uuid())
    .bind(doctor.as_uuid())
    .bind(from)
    .bind(to)
    .bind(from - crate::dashboard::longest_appointment())
    .fetch_optional(&mut *tx)
    .await?;
    end_read(tx);
    let Some(row) = row else {
        return Ok(None);
    };

    let hours: WorkingHours = serde_json::from_value(row.working_hours.0)
        .map_err(|e| corrupt("staff.working_hours", e))?;
    let time_off = row
        .time_off
        .0
        .into_iter()
        .map(|off| TimeRange::new(off.start, off.end).map_err(|e| corrupt("staff.time_off", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let time_zone = TimeZone::parse(&row.time_zone).map_err(|e| corrupt("clinics.time_zone", e))?;
    let step_minutes = u32::try_from(row.slot_minutes)
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| corrupt("clinics.slot_minutes", row.slot_minutes))?;
    let busy = row
        .busy
        .0
        .into_iter()
        .map(|(start, end)| TimeRange::new(start, end).map_err(|e| corrupt("appointments", e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(DoctorSchedule {
        doctor_id: doctor.as_uuid(),
        hours,
        time_off,
        time_zone,
        step_minutes,
        busy,
    }))
}
