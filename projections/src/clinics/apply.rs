//! `rm.clinics`: one row per clinic, with its departments and the counts the platform admin
//! sees (staff, patients, appointments).

use chrono::{DateTime, Utc};
use domain::clinic::ClinicEvent;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::event::{one, Applied, StoredEvent};
use crate::ProjectionError;

pub(super) async fn apply(s: &str, conn: &mut PgConnection, e: &StoredEvent) -> Applied {
    let clinic = e.tenant_id;
    let at = e.at()?;
    let counter = |column: &str| {
        format!(
            "UPDATE {s}.clinics SET {column} = {column} + 1, updated_at = $2 WHERE clinic_id = $1"
        )
    };
    match e.aggregate_type.as_str() {
        "Staff" if e.event_type == "StaffHired" => {
            let sql = counter("staff_count");
            return one(conn, e, sqlx::query(&sql).bind(clinic).bind(at)).await;
        }
        "Patient" if e.event_type == "PatientRegistered" => {
            let sql = counter("patient_count");
            return one(conn, e, sqlx::query(&sql).bind(clinic).bind(at)).await;
        }
        "Appointment" if e.event_type == "AppointmentBooked" => {
            let sql = counter("appointment_count");
            return one(conn, e, sqlx::query(&sql).bind(clinic).bind(at)).await;
        }
        "Clinic" => {}
        _ => return Ok(()),
    }
    match e.decode::<ClinicEvent>()? {
        ClinicEvent::ClinicRegistered(new) => {
            let sql = format!(
                "INSERT INTO {s}.clinics (clinic_id, name, code, time_zone, plan, status, slot_minutes, registered_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7)"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(new.clinic_id.as_uuid())
                    .bind(new.name.as_str())
                    .bind(new.code.as_str())
                    .bind(new.time_zone.to_string())
                    .bind(new.plan.as_str())
                    .bind(new.slot_minutes as i32)
                    .bind(at),
            )
            .await
        }
        ClinicEvent::ClinicSettingsUpdated {
            name,
            time_zone,
            slot_minutes,
        } => {
            let sql = format!(
                "UPDATE {s}.clinics SET name = coalesce($2, name), time_zone = coalesce($3, time_zone), \
                 slot_minutes = coalesce($4, slot_minutes), updated_at = $5 WHERE clinic_id = $1"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(name.map(|n| n.as_str().to_owned()))
                    .bind(time_zone.map(|t| t.to_string()))
                    .bind(slot_minutes.map(|m| m as i32))
                    .bind(at),
            )
            .await
        }
        ClinicEvent::ClinicPlanChanged { to, .. } => {
            let sql =
                format!("UPDATE {s}.clinics SET plan = $2, updated_at = $3 WHERE clinic_id = $1");
            one(
                conn,
                e,
                sqlx::query(&sql).bind(clinic).bind(to.as_str()).bind(at),
            )
            .await
        }
        ClinicEvent::ClinicSuspended { .. } | ClinicEvent::ClinicReactivated => {
            let status = if e.event_type == "ClinicSuspended" {
                "suspended"
            } else {
                "active"
            };
            let sql =
                format!("UPDATE {s}.clinics SET status = $2, updated_at = $3 WHERE clinic_id = $1");
            one(
                conn,
                e,
                sqlx::query(&sql).bind(clinic).bind(status).bind(at),
            )
            .await
        }
        ClinicEvent::DepartmentAdded {
            department_id,
            name,
        } => {
            let sql = format!(
                "UPDATE {s}.clinics SET departments = departments || jsonb_build_array($2::jsonb), updated_at = $3 \
                 WHERE clinic_id = $1"
            );
            let department = json!({"department_id": department_id, "name": name, "open": true});
            one(
                conn,
                e,
                sqlx::query(&sql).bind(clinic).bind(department).bind(at),
            )
            .await
        }
        ClinicEvent::DepartmentRenamed {
            department_id,
            name,
        } => department_change(s, conn, e, department_id.as_uuid(), "name", json!(name), at).await,
        ClinicEvent::DepartmentClosed { department_id } => {
            department_change(
                s,
                conn,
                e,
                department_id.as_uuid(),
                "open",
                json!(false),
                at,
            )
            .await
        }
    }
}

async fn department_change(
    s: &str,
    conn: &mut PgConnection,
    e: &StoredEvent,
    department: Uuid,
    key: &str,
    value: Value,
    at: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    let sql = format!(
        "UPDATE {s}.clinics SET updated_at = $5, departments = ( \
           SELECT coalesce(jsonb_agg(CASE WHEN d ->> 'department_id' = $2 THEN jsonb_set(d, ARRAY[$3], $4) ELSE d END \
                                     ORDER BY ord), '[]'::jsonb) \
           FROM jsonb_array_elements(departments) WITH ORDINALITY AS t(d, ord)) \
         WHERE clinic_id = $1"
    );
    one(
        conn,
        e,
        sqlx::query(&sql)
            .bind(e.tenant_id)
            .bind(department.to_string())
            .bind(key)
            .bind(value)
            .bind(at),
    )
    .await
}
