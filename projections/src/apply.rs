//! How each projection applies one event to its tables. Values come from the event (and its
//! metadata's `occurred_at`), never from the clock, so a rebuild produces identical rows.

use chrono::{DateTime, Utc};
use domain::appointment::AppointmentEvent;
use domain::clinic::ClinicEvent;
use domain::patient::PatientEvent;
use domain::staff::StaffEvent;
use serde_json::{json, Value};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::ProjectionError;

/// An event as the workers read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub position: i64,
    pub transaction_id: String,
    pub tenant_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub payload: Value,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The columns every reader selects, in `StoredEvent`'s order.
pub const EVENT_COLUMNS: &str =
    "position, transaction_id::text AS transaction_id, tenant_id, aggregate_type, \
     aggregate_id, sequence, event_type, payload::jsonb AS payload, \
     (metadata ->> 'occurred_at')::timestamptz AS occurred_at";

/// The next `limit` events after `(transaction_id, position)` in commit order, below the
/// oldest running transaction: a transaction still open — even one holding a lower position
/// than an event already committed — is never skipped, only waited for. Every reader of the
/// log in order (workers, rebuild) goes through here.
pub async fn read_after(
    conn: &mut sqlx::PgConnection,
    transaction_id: &str,
    position: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, position) > ($1::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY transaction_id, position LIMIT $3"
    ))
    .bind(transaction_id)
    .bind(position)
    .bind(limit)
    .fetch_all(conn)
    .await
}

impl StoredEvent {
    fn poison(&self, reason: impl ToString) -> ProjectionError {
        ProjectionError::Poison {
            position: self.position,
            event_type: self.event_type.clone(),
            reason: reason.to_string(),
        }
    }

    /// The entity id: the part of `{clinic_id}:{entity_id}` after the colon.
    fn entity(&self) -> Result<Uuid, ProjectionError> {
        self.aggregate_id
            .split_once(':')
            .and_then(|(_, id)| id.parse().ok())
            .ok_or_else(|| self.poison(format!("malformed stream id {}", self.aggregate_id)))
    }

    fn at(&self) -> Result<DateTime<Utc>, ProjectionError> {
        self.occurred_at
            .ok_or_else(|| self.poison("metadata has no occurred_at"))
    }

    fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, ProjectionError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| self.poison(e))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Runs `query`, which must change exactly one row.
async fn one(
    conn: &mut PgConnection,
    event: &StoredEvent,
    query: Query<'_, Postgres, PgArguments>,
) -> Result<(), ProjectionError> {
    let done = query.execute(conn).await?;
    if done.rows_affected() != 1 {
        return Err(event.poison(format!(
            "expected to change one read-model row, changed {}",
            done.rows_affected()
        )));
    }
    Ok(())
}

/// Applies `event` to projection `name`'s tables in `schema` (`rm`, or a rebuild schema).
pub async fn apply(
    name: &str,
    schema: &str,
    conn: &mut PgConnection,
    event: &StoredEvent,
) -> Result<(), ProjectionError> {
    match name {
        "clinics" => clinics(schema, conn, event).await,
        "staff" if event.aggregate_type == "Staff" => staff(schema, conn, event).await,
        "patients" if event.aggregate_type == "Patient" => patients(schema, conn, event).await,
        "appointments" if event.aggregate_type == "Appointment" => {
            appointments(schema, conn, event).await
        }
        "staff" | "patients" | "appointments" => Ok(()),
        crate::chain::NAME => crate::chain::apply(conn, event).await,
        other => Err(ProjectionError::UnknownProjection(other.to_owned())),
    }
}

async fn clinics(s: &str, conn: &mut PgConnection, e: &StoredEvent) -> Result<(), ProjectionError> {
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
        ClinicEvent::ClinicRegistered {
            clinic_id,
            name,
            code,
            time_zone,
            plan,
            slot_minutes,
        } => {
            let sql = format!(
                "INSERT INTO {s}.clinics (clinic_id, name, code, time_zone, plan, status, slot_minutes, registered_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7)"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic_id.as_uuid())
                    .bind(name.as_str())
                    .bind(code.as_str())
                    .bind(time_zone.to_string())
                    .bind(plan.as_str())
                    .bind(slot_minutes as i32)
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

async fn staff(s: &str, conn: &mut PgConnection, e: &StoredEvent) -> Result<(), ProjectionError> {
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

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

async fn patients(
    s: &str,
    conn: &mut PgConnection,
    e: &StoredEvent,
) -> Result<(), ProjectionError> {
    let clinic = e.tenant_id;
    let id = e.entity()?;
    let at = e.at()?;
    let version = e.sequence;
    match e.decode::<PatientEvent>()? {
        PatientEvent::PatientRegistered {
            mrn,
            name,
            birth_date,
            sex,
            phone,
            email,
            address,
            emergency_contact,
            insurance,
            allergies,
            ..
        } => {
            let record = json!({
                "patient_id": id, "mrn": mrn, "name": name, "birth_date": birth_date, "sex": sex,
                "phone": phone, "email": email, "address": address,
                "emergency_contact": emergency_contact, "insurance": insurance,
                "allergies": allergies, "status": "active", "merged_into": null,
            });
            let sql = format!(
                "INSERT INTO {s}.patients (clinic_id, patient_id, mrn, given, family, given_key, family_key, \
                 birth_date, sex, phone, phone_digits, email, status, record, registered_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, rm_fold($4), rm_fold($5), $6, $7, $8, $9, $10, 'active', $11, $12, $12, $13)"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(mrn.to_string())
                    .bind(name.given.as_str())
                    .bind(name.family.as_str())
                    .bind(birth_date)
                    .bind(sex.as_str())
                    .bind(phone.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(phone.as_ref().map(|p| digits(p.as_str())))
                    .bind(email.map(|m| m.as_str().to_owned()))
                    .bind(record)
                    .bind(at)
                    .bind(version),
            )
            .await
        }
        PatientEvent::PatientDemographicsUpdated {
            name,
            birth_date,
            sex,
            phone,
            email,
            address,
            emergency_contact,
            insurance,
            allergies,
        } => {
            let mut patch = serde_json::Map::new();
            let mut put = |key: &str, value: Option<Value>| {
                if let Some(v) = value {
                    patch.insert(key.to_owned(), v);
                }
            };
            put("name", name.as_ref().map(to_json));
            put("birth_date", birth_date.as_ref().map(to_json));
            put("sex", sex.as_ref().map(to_json));
            put("phone", phone.as_ref().map(to_json));
            put("email", email.as_ref().map(to_json));
            put("address", address.as_ref().map(to_json));
            put("emergency_contact", emergency_contact.as_ref().map(to_json));
            put("insurance", insurance.as_ref().map(to_json));
            put("allergies", allergies.as_ref().map(to_json));
            let sql = format!(
                "UPDATE {s}.patients SET given = coalesce($5, given), family = coalesce($6, family), \
                 given_key = rm_fold(coalesce($5, given)), family_key = rm_fold(coalesce($6, family)), \
                 birth_date = coalesce($7, birth_date), sex = coalesce($8, sex), phone = coalesce($9, phone), \
                 phone_digits = coalesce($10, phone_digits), email = coalesce($11, email), \
                 record = record || $12, updated_at = $3, version = $4 \
                 WHERE clinic_id = $1 AND patient_id = $2"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(name.as_ref().map(|n| n.given.as_str().to_owned()))
                    .bind(name.as_ref().map(|n| n.family.as_str().to_owned()))
                    .bind(birth_date)
                    .bind(sex.map(|x| x.as_str()))
                    .bind(phone.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(phone.as_ref().map(|p| digits(p.as_str())))
                    .bind(email.map(|m| m.as_str().to_owned()))
                    .bind(Value::Object(patch)),
            )
            .await
        }
        PatientEvent::PatientMerged { survivor } => {
            let sql = format!(
                "UPDATE {s}.patients SET status = 'merged', merged_into = $5, \
                 record = record || jsonb_build_object('status', 'merged', 'merged_into', $5), \
                 updated_at = $3, version = $4 WHERE clinic_id = $1 AND patient_id = $2"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(survivor.as_uuid()),
            )
            .await
        }
        PatientEvent::PatientDeactivated { .. } => {
            let sql = format!(
                "UPDATE {s}.patients SET status = 'inactive', record = record || '{{\"status\": \"inactive\"}}'::jsonb, \
                 updated_at = $3, version = $4 WHERE clinic_id = $1 AND patient_id = $2"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version),
            )
            .await
        }
    }
}

async fn appointments(
    s: &str,
    conn: &mut PgConnection,
    e: &StoredEvent,
) -> Result<(), ProjectionError> {
    let clinic = e.tenant_id;
    let id = e.entity()?;
    let at = e.at()?;
    let version = e.sequence;
    let update = |set: &str| {
        format!(
            "UPDATE {s}.appointments SET {set}, updated_at = $3, version = $4 \
             WHERE clinic_id = $1 AND appointment_id = $2"
        )
    };
    let status = |code: &'static str| (update("status = $5"), code);
    let (sql, code) = match e.decode::<AppointmentEvent>()? {
        AppointmentEvent::AppointmentBooked {
            patient_id,
            doctor_id,
            slot,
            reason,
            ..
        } => {
            let sql = format!(
                "INSERT INTO {s}.appointments (clinic_id, appointment_id, patient_id, doctor_id, start_at, end_at, \
                 status, reason, booked_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'booked', $7, $8, $8, $9)"
            );
            return one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(patient_id.as_uuid())
                    .bind(doctor_id.as_uuid())
                    .bind(slot.start())
                    .bind(slot.end())
                    .bind(reason.map(|r| r.as_str().to_owned()))
                    .bind(at)
                    .bind(version),
            )
            .await;
        }
        AppointmentEvent::AppointmentRescheduled { to, .. } => {
            let sql = update("start_at = $5, end_at = $6");
            return one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(to.start())
                    .bind(to.end()),
            )
            .await;
        }
        AppointmentEvent::AppointmentCancelled { reason, .. } => {
            let sql = update("status = 'cancelled', cancel_reason = $5");
            return one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(reason.as_str()),
            )
            .await;
        }
        AppointmentEvent::PatientCheckedIn { .. } => status("checked-in"),
        AppointmentEvent::AppointmentStarted { .. } => status("in-progress"),
        AppointmentEvent::AppointmentCompleted { .. } => status("fulfilled"),
        AppointmentEvent::AppointmentMarkedNoShow { .. } => status("noshow"),
    };
    one(
        conn,
        e,
        sqlx::query(&sql)
            .bind(clinic)
            .bind(id)
            .bind(at)
            .bind(version)
            .bind(code),
    )
    .await
}
