//! `rm.clinics`: one row per clinic, with its departments and the counts the platform admin
//! sees (staff, patients, appointments).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::clinic::ClinicEvent;
use domain::plan::PlanLimits;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::changes;
use crate::event::{one, Applied, StoredEvent};
use crate::ProjectionError;

/// How a batch changes one clinic's counters.
struct Counts {
    staff: i32,
    patients: i32,
    appointments: i32,
    /// The first event of the batch that counted, to name if the clinic row is missing.
    first: (i64, String),
}

/// Applies `events` (every event; in commit order, or in a rebuild stream by stream) to
/// `s.clinics`. The clinic's own events
/// (rare) are applied one statement each, in order; the counts of staff, patients and
/// appointments (one per `StaffHired`, `PatientRegistered`, `AppointmentBooked`: the bulk of
/// the log) are summed per clinic and written by one `UPDATE` at the end of the batch.
/// `updated_at` is the newest instant among the clinic's events applied so far (every
/// statement keeps the greater of the row's and the event's), so the row does not depend on
/// the order of events across streams: a rebuild reads stream by stream
/// ([`crate::event::StreamCursor`]).
pub(super) async fn apply(s: &str, conn: &mut PgConnection, events: &[&StoredEvent]) -> Applied {
    let mut counts: BTreeMap<Uuid, Counts> = BTreeMap::new();
    let mut last_at: BTreeMap<Uuid, DateTime<Utc>> = BTreeMap::new();
    for e in events {
        let at = e.at()?;
        let column = match (e.aggregate_type.as_str(), e.event_type.as_str()) {
            ("Staff", "StaffHired") => 0,
            ("Patient", "PatientRegistered") => 1,
            ("Appointment", "AppointmentBooked") => 2,
            ("Clinic", _) => {
                clinic_event(s, conn, e, at).await?;
                newest(&mut last_at, e.tenant_id, at);
                continue;
            }
            _ => continue,
        };
        let count = counts.entry(e.tenant_id).or_insert_with(|| Counts {
            staff: 0,
            patients: 0,
            appointments: 0,
            first: (e.position, e.event_type.clone()),
        });
        *[
            &mut count.staff,
            &mut count.patients,
            &mut count.appointments,
        ][column] += 1;
        newest(&mut last_at, e.tenant_id, at);
    }
    if counts.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE {s}.clinics t SET staff_count = staff_count + u.staff, \
         patient_count = patient_count + u.patients, appointment_count = appointment_count + u.appointments, \
         updated_at = greatest(t.updated_at, u.updated_at) \
         FROM unnest($1::uuid[], $2::int4[], $3::int4[], $4::int4[], $5::timestamptz[]) \
              AS u(clinic_id, staff, patients, appointments, updated_at) \
         WHERE t.clinic_id = u.clinic_id RETURNING t.clinic_id"
    );
    let updated: Vec<Uuid> = sqlx::query_scalar(&sql)
        .bind(counts.keys().copied().collect::<Vec<_>>())
        .bind(counts.values().map(|c| c.staff).collect::<Vec<_>>())
        .bind(counts.values().map(|c| c.patients).collect::<Vec<_>>())
        .bind(counts.values().map(|c| c.appointments).collect::<Vec<_>>())
        .bind(counts.keys().map(|k| last_at[k]).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    if updated.len() == counts.len() {
        return Ok(());
    }
    let (position, event_type) = counts
        .into_iter()
        .filter(|(clinic, _)| !updated.contains(clinic))
        .map(|(_, c)| c.first)
        .min()
        .unwrap_or_default();
    Err(changes::changed_nothing(position, event_type))
}

/// Keeps in `last_at` the newest instant seen for `clinic`.
fn newest(last_at: &mut BTreeMap<Uuid, DateTime<Utc>>, clinic: Uuid, at: DateTime<Utc>) {
    let newest = last_at.entry(clinic).or_insert(at);
    *newest = (*newest).max(at);
}

/// Applies one event of a clinic's own stream.
async fn clinic_event(
    s: &str,
    conn: &mut PgConnection,
    e: &StoredEvent,
    at: DateTime<Utc>,
) -> Applied {
    let clinic = e.tenant_id;
    match e.decode::<ClinicEvent>()? {
        ClinicEvent::ClinicRegistered(new) => {
            let sql = format!(
                "INSERT INTO {s}.clinics (clinic_id, name, code, time_zone, plan, status, slot_minutes, \
                    registered_at, updated_at, trial_ends_at, modules) \
                 VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7, $8, $9)"
            );
            // A trial registered before the four plans (`free`) records no end: it ends the
            // trial's days after the registration.
            let trial_ends_at = new
                .trial_ends_at
                .or_else(|| PlanLimits::of(new.plan).trial_end(at));
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
                    .bind(at)
                    .bind(trial_ends_at)
                    .bind(new.modules.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
            )
            .await
        }
        ClinicEvent::ClinicSettingsUpdated {
            name,
            time_zone,
            slot_minutes,
            logo_url,
            address,
            phone,
            appointment_minutes,
            working_week,
        } => {
            // The settings beyond the columns, merged key by key (only the changed ones).
            let mut more = serde_json::Map::new();
            let mut put = |key: &str, value: Option<Value>| {
                if let Some(v) = value {
                    more.insert(key.to_owned(), v);
                }
            };
            put("logo_url", logo_url.map(|u| json!(u)));
            put("address", address.map(|a| json!(a)));
            put("phone", phone.map(|p| json!(p)));
            put("appointment_minutes", appointment_minutes.map(|m| json!(m)));
            put("working_week", working_week.map(|w| json!(w)));
            let sql = format!(
                "UPDATE {s}.clinics SET name = coalesce($2, name), time_zone = coalesce($3, time_zone), \
                 slot_minutes = coalesce($4, slot_minutes), updated_at = greatest(updated_at, $5), settings = settings || $6 \
                 WHERE clinic_id = $1"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(name.map(|n| n.as_str().to_owned()))
                    .bind(time_zone.map(|t| t.to_string()))
                    .bind(slot_minutes.map(|m| m as i32))
                    .bind(at)
                    .bind(Value::Object(more)),
            )
            .await
        }
        ClinicEvent::ModuleEnabled { module } | ClinicEvent::ModuleDisabled { module } => {
            let add = matches!(e.event_type.as_str(), "ModuleEnabled");
            let sql = format!(
                "UPDATE {s}.clinics SET updated_at = greatest(updated_at, $3), modules = CASE WHEN $4 \
                    THEN array_append(array_remove(modules, $2), $2) ELSE array_remove(modules, $2) END \
                 WHERE clinic_id = $1"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(module.as_str())
                    .bind(at)
                    .bind(add),
            )
            .await
        }
        ClinicEvent::ClinicPlanChanged { to, .. } => {
            // No plan change leads to a trial, so any change ends one.
            let sql = format!(
                "UPDATE {s}.clinics SET plan = $2, trial_ends_at = NULL, updated_at = greatest(updated_at, $3) WHERE clinic_id = $1"
            );
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
                format!("UPDATE {s}.clinics SET status = $2, updated_at = greatest(updated_at, $3) WHERE clinic_id = $1");
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
                "UPDATE {s}.clinics SET departments = departments || jsonb_build_array($2::jsonb), updated_at = greatest(updated_at, $3) \
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
        "UPDATE {s}.clinics SET updated_at = greatest(updated_at, $5), departments = ( \
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
