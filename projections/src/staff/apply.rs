//! `rm.staff`: one row per staff member, with working hours and time off. A batch of events is
//! merged per staff member in memory and written with one `INSERT` and one `UPDATE` (see
//! [`crate::changes`]).

use chrono::{DateTime, Utc};
use domain::staff::StaffEvent;
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::changes::{self, Changes, Entry, Merge, Unnest};
use crate::event::{to_json, Applied, StoredEvent};

/// A staff row (from `StaffHired`) or a patch of one.
#[derive(Default)]
struct Row {
    name: Option<String>,
    email: Option<String>,
    role: Option<String>,
    department_id: Option<Uuid>,
    specialty: Option<String>,
    licence_number: Option<String>,
    active: Option<bool>,
    working_hours: Option<Value>,
    /// Time-off entries appended (`time_off || these`).
    time_off: Vec<Value>,
    hired_at: Option<DateTime<Utc>>,
}

impl Merge for Row {
    fn merge(&mut self, n: Row) {
        changes::merge_newer! { self, n; name, email, role, department_id, specialty, licence_number, active, working_hours, hired_at }
        self.time_off.extend(n.time_off);
    }

    fn columns(rows: &[Entry<Row>]) -> Unnest<'_, Row> {
        Unnest::new(rows)
            .col(|r| r.name.as_deref())
            .col(|r| r.email.as_deref())
            .col(|r| r.role.as_deref())
            .col(|r| r.department_id)
            .col(|r| r.specialty.as_deref())
            .col(|r| r.licence_number.as_deref())
            .col(|r| r.active)
            .col(|r| r.working_hours.as_ref().map(Json))
            .col(|r| Json(&r.time_off))
            .col(|r| r.hired_at)
    }
}

fn fold(rows: &mut Changes<Row>, e: &StoredEvent) -> Applied {
    let mut row = Row::default();
    match e.decode::<StaffEvent>()? {
        StaffEvent::StaffHired(new) => {
            let hired = new.profile;
            row.name = Some(hired.name.as_str().to_owned());
            row.email = Some(hired.email.as_str().to_owned());
            row.role = Some(hired.role.as_str().to_owned());
            row.department_id = hired.department_id.map(|d| d.as_uuid());
            row.specialty = hired.specialty.map(|t| t.as_str().to_owned());
            row.licence_number = hired.licence_number.map(|t| t.as_str().to_owned());
            row.active = Some(true);
            row.hired_at = Some(e.at()?);
            return rows.create(e, row);
        }
        StaffEvent::StaffRoleChanged { to, .. } => row.role = Some(to.as_str().to_owned()),
        StaffEvent::StaffProfileUpdated(changes) => {
            row.name = changes.name.map(|n| n.as_str().to_owned());
            row.email = changes.email.map(|m| m.as_str().to_owned());
            row.department_id = changes.department_id.map(|d| d.as_uuid());
            row.specialty = changes.specialty.map(|t| t.as_str().to_owned());
            row.licence_number = changes.licence_number.map(|t| t.as_str().to_owned());
        }
        StaffEvent::WorkingHoursSet { hours } => row.working_hours = Some(to_json(&hours)),
        StaffEvent::TimeOffAdded { range, reason } => {
            row.time_off =
                vec![json!({"start": range.start(), "end": range.end(), "reason": reason})];
        }
        StaffEvent::StaffDeactivated { .. } => row.active = Some(false),
        StaffEvent::StaffReactivated => row.active = Some(true),
    }
    rows.patch(e, row)
}

const UNNEST: &str = "unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[], \
     $7::text[], $8::text[], $9::bool[], $10::jsonb[], $11::jsonb[], $12::timestamptz[], \
     $13::timestamptz[], $14::int8[]) \
     AS u(clinic_id, staff_id, name, email, role, department_id, specialty, licence_number, active, \
          working_hours, time_off, hired_at, updated_at, version)";

/// Applies `events` (this projection's, in commit order) to `s.staff`.
pub(super) async fn apply(s: &str, conn: &mut PgConnection, events: &[&StoredEvent]) -> Applied {
    let insert = format!(
            "INSERT INTO {s}.staff (clinic_id, staff_id, name, email, role, department_id, specialty, \
             licence_number, active, working_hours, time_off, hired_at, updated_at, version) \
             SELECT clinic_id, staff_id, name, email, role, department_id, specialty, licence_number, \
             active, coalesce(working_hours, '{{}}'), time_off, hired_at, updated_at, version \
             FROM {UNNEST} RETURNING clinic_id, staff_id"
        );
    let update = format!(
            "UPDATE {s}.staff t SET name = coalesce(u.name, t.name), email = coalesce(u.email, t.email), \
             role = coalesce(u.role, t.role), department_id = coalesce(u.department_id, t.department_id), \
             specialty = coalesce(u.specialty, t.specialty), \
             licence_number = coalesce(u.licence_number, t.licence_number), \
             active = coalesce(u.active, t.active), working_hours = coalesce(u.working_hours, t.working_hours), \
             time_off = t.time_off || u.time_off, updated_at = u.updated_at, version = u.version \
             FROM {UNNEST} WHERE t.clinic_id = u.clinic_id AND t.staff_id = u.staff_id \
             RETURNING t.clinic_id, t.staff_id"
        );
    changes::apply(conn, events, fold, &insert, &update).await
}
