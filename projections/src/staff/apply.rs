//! `rm.staff`: one row per staff member, with working hours and time off.

use domain::staff::StaffEvent;
use serde_json::json;
use sqlx::PgConnection;

use crate::event::{one, to_json, Applied, StoredEvent};

pub(super) async fn apply(s: &str, conn: &mut PgConnection, e: &StoredEvent) -> Applied {
    let update = |set: &str| {
        format!("UPDATE {s}.staff SET {set}, updated_at = $3, version = $4 WHERE clinic_id = $1 AND staff_id = $2")
    };
    match e.decode::<StaffEvent>()? {
        StaffEvent::StaffHired(new) => {
            let hired = new.profile;
            let sql = format!(
                "INSERT INTO {s}.staff (clinic_id, staff_id, name, email, role, department_id, specialty, \
                 licence_number, active, hired_at, updated_at, version) \
                 VALUES ($1, $2, $5, $6, $7, $8, $9, $10, true, $3, $3, $4)"
            );
            let query = e
                .entity_query(&sql)?
                .bind(hired.name.as_str())
                .bind(hired.email.as_str())
                .bind(hired.role.as_str())
                .bind(hired.department_id.map(|d| d.as_uuid()))
                .bind(hired.specialty.map(|t| t.as_str().to_owned()))
                .bind(hired.licence_number.map(|t| t.as_str().to_owned()));
            one(conn, e, query).await
        }
        StaffEvent::StaffRoleChanged { to, .. } => {
            let sql = update("role = $5");
            one(conn, e, e.entity_query(&sql)?.bind(to.as_str())).await
        }
        StaffEvent::StaffProfileUpdated(changes) => {
            let sql = update(
                "name = coalesce($5, name), email = coalesce($6, email), department_id = coalesce($7, department_id), \
                 specialty = coalesce($8, specialty), licence_number = coalesce($9, licence_number)",
            );
            let query = e
                .entity_query(&sql)?
                .bind(changes.name.map(|n| n.as_str().to_owned()))
                .bind(changes.email.map(|m| m.as_str().to_owned()))
                .bind(changes.department_id.map(|d| d.as_uuid()))
                .bind(changes.specialty.map(|t| t.as_str().to_owned()))
                .bind(changes.licence_number.map(|t| t.as_str().to_owned()));
            one(conn, e, query).await
        }
        StaffEvent::WorkingHoursSet { hours } => {
            let sql = update("working_hours = $5");
            one(conn, e, e.entity_query(&sql)?.bind(to_json(&hours))).await
        }
        StaffEvent::TimeOffAdded { range, reason } => {
            let sql = update("time_off = time_off || jsonb_build_array($5::jsonb)");
            let entry = json!({"start": range.start(), "end": range.end(), "reason": reason});
            one(conn, e, e.entity_query(&sql)?.bind(entry)).await
        }
        StaffEvent::StaffDeactivated { .. } | StaffEvent::StaffReactivated => {
            let active = e.event_type == "StaffReactivated";
            let sql = update("active = $5");
            one(conn, e, e.entity_query(&sql)?.bind(active)).await
        }
    }
}
