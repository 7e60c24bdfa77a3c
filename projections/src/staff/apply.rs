//! `rm.staff`: one row per staff member, with working hours and time off.

use domain::staff::StaffEvent;
use serde_json::json;
use sqlx::PgConnection;

use crate::event::{one, to_json, Applied, StoredEvent};

pub(super) async fn apply(s: &str, conn: &mut PgConnection, e: &StoredEvent) -> Applied {
    let clinic = e.tenant_id;
    let id = e.entity()?;
    let at = e.at()?;
    let version = e.sequence;
    let update = |set: &str| {
        format!("UPDATE {s}.staff SET {set}, updated_at = $3, version = $4 WHERE clinic_id = $1 AND staff_id = $2")
    };
    match e.decode::<StaffEvent>()? {
        StaffEvent::StaffHired {
            name,
            email,
            role,
            department_id,
            specialty,
            licence_number,
            ..
        } => {
            let sql = format!(
                "INSERT INTO {s}.staff (clinic_id, staff_id, name, email, role, department_id, specialty, \
                 licence_number, active, hired_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9, $9, $10)"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(name.as_str())
                    .bind(email.as_str())
                    .bind(role.as_str())
                    .bind(department_id.map(|d| d.as_uuid()))
                    .bind(specialty.map(|t| t.as_str().to_owned()))
                    .bind(licence_number.map(|t| t.as_str().to_owned()))
                    .bind(at)
                    .bind(version),
            )
            .await
        }
        StaffEvent::StaffRoleChanged { to, .. } => {
            let sql = update("role = $5");
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(to.as_str()),
            )
            .await
        }
        StaffEvent::StaffProfileUpdated {
            name,
            email,
            department_id,
            specialty,
            licence_number,
        } => {
            let sql = update(
                "name = coalesce($5, name), email = coalesce($6, email), department_id = coalesce($7, department_id), \
                 specialty = coalesce($8, specialty), licence_number = coalesce($9, licence_number)",
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(name.map(|n| n.as_str().to_owned()))
                    .bind(email.map(|m| m.as_str().to_owned()))
                    .bind(department_id.map(|d| d.as_uuid()))
                    .bind(specialty.map(|t| t.as_str().to_owned()))
                    .bind(licence_number.map(|t| t.as_str().to_owned())),
            )
            .await
        }
        StaffEvent::WorkingHoursSet { hours } => {
            let sql = update("working_hours = $5");
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(to_json(&hours)),
            )
            .await
        }
        StaffEvent::TimeOffAdded { range, reason } => {
            let sql = update("time_off = time_off || jsonb_build_array($5::jsonb)");
            let entry = json!({"start": range.start(), "end": range.end(), "reason": reason});
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(entry),
            )
            .await
        }
        StaffEvent::StaffDeactivated { .. } | StaffEvent::StaffReactivated => {
            let active = e.event_type == "StaffReactivated";
            let sql = update("active = $5");
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(active),
            )
            .await
        }
    }
}
