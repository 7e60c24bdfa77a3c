//! Appointment lists and single appointments, with the patient's and the doctor's names.

use chrono::{DateTime, Utc};
use domain::appointment::AppointmentStatus;
use domain::ids::{AppointmentId, ClinicId, PatientId, StaffId};
use domain::values::AppointmentType;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::page::{decode_token, encode_token, page_end, InvalidQuery, MAX_PAGE_SIZE};
use crate::scope::{clinic_generic_plan_tx, clinic_tx, end_read};

/// The position after the last appointment of a page: (start, appointment_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentCursor {
    #[serde(rename = "s")]
    start: DateTime<Utc>,
    #[serde(rename = "i")]
    appointment_id: Uuid,
}

impl AppointmentCursor {
    pub fn decode(token: &str) -> Result<Self, InvalidQuery> {
        decode_token(token)
    }

    pub fn encode(&self) -> String {
        encode_token(self)
    }
}

/// Filters of the appointment list; `None` means any. `from`/`to` bound the start time,
/// `[from, to)`.
#[derive(Debug, Clone)]
pub struct AppointmentFilter {
    pub doctor: Option<StaffId>,
    pub patient: Option<PatientId>,
    pub status: Option<AppointmentStatus>,
    pub appointment_type: Option<AppointmentType>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after: Option<AppointmentCursor>,
    /// 1..=[`MAX_PAGE_SIZE`].
    pub limit: i64,
}

/// An appointment, with the patient's and the doctor's names.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppointmentView {
    pub appointment_id: Uuid,
    pub patient_id: Uuid,
    /// "Given Family" (absent if the patient's record is not projected yet).
    pub patient_name: Option<String>,
    pub doctor_id: Uuid,
    pub doctor_name: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// FHIR code: `booked`, `checked-in`, `in-progress`, `fulfilled`, `cancelled`, `noshow`.
    pub status: String,
    /// The reason for the visit (clinical). Absent, not null, for receptionists.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<Option<String>>,
    pub cancel_reason: Option<String>,
    /// The kind of visit, the clinic's own code (`follow-up`); null when the booking named none.
    pub appointment_type: Option<String>,
    pub booked_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl AppointmentView {
    /// Drops the clinical notes (for roles that may not see them): `reason` disappears from
    /// the JSON.
    pub fn without_clinical_notes(mut self) -> Self {
        self.reason = None;
        self
    }
}

/// One page of appointments.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppointmentPage {
    pub items: Vec<AppointmentView>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AppointmentRow {
    appointment_id: Uuid,
    patient_id: Uuid,
    patient_name: Option<String>,
    doctor_id: Uuid,
    doctor_name: Option<String>,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    status: String,
    reason: Option<String>,
    cancel_reason: Option<String>,
    appointment_type: Option<String>,
    booked_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl From<AppointmentRow> for AppointmentView {
    fn from(r: AppointmentRow) -> Self {
        AppointmentView {
            appointment_id: r.appointment_id,
            patient_id: r.patient_id,
            patient_name: r.patient_name,
            doctor_id: r.doctor_id,
            doctor_name: r.doctor_name,
            start: r.start_at,
            end: r.end_at,
            status: r.status,
            reason: Some(r.reason),
            cancel_reason: r.cancel_reason,
            appointment_type: r.appointment_type,
            booked_at: r.booked_at,
            updated_at: r.updated_at,
            version: r.version,
        }
    }
}

const APPOINTMENT_COLUMNS: &str = "SELECT a.appointment_id, a.patient_id, \
     p.given || ' ' || p.family AS patient_name, a.doctor_id, s.name AS doctor_name, \
     a.start_at, a.end_at, a.status, a.reason, a.cancel_reason, a.appointment_type, a.booked_at, \
     a.updated_at, a.version \
     FROM rm.appointments a \
     LEFT JOIN rm.patients p ON p.clinic_id = a.clinic_id AND p.patient_id = a.patient_id \
     LEFT JOIN rm.staff s ON s.clinic_id = a.clinic_id AND s.staff_id = a.doctor_id \
     WHERE a.clinic_id = ";

/// The clinic's appointments, ordered by start time, one page at a time.
pub async fn appointments(
    pool: &PgPool,
    clinic: ClinicId,
    filter: &AppointmentFilter,
) -> Result<AppointmentPage, sqlx::Error> {
    let limit = filter.limit.clamp(1, MAX_PAGE_SIZE);
    let mut sql = QueryBuilder::<Postgres>::new(APPOINTMENT_COLUMNS);
    sql.push_bind(clinic.as_uuid());
    if let Some(doctor) = filter.doctor {
        sql.push(" AND a.doctor_id = ").push_bind(doctor.as_uuid());
    }
    if let Some(patient) = filter.patient {
        sql.push(" AND a.patient_id = ")
            .push_bind(patient.as_uuid());
    }
    if let Some(status) = filter.status {
        sql.push(" AND a.status = ").push_bind(status.as_str());
    }
    if let Some(kind) = &filter.appointment_type {
        sql.push(" AND a.appointment_type = ")
            .push_bind(kind.as_str().to_owned());
    }
    if let Some(from) = filter.from {
        sql.push(" AND a.start_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        sql.push(" AND a.start_at < ").push_bind(to);
    }
    if let Some(after) = &filter.after {
        sql.push(" AND (a.start_at, a.appointment_id) > (")
            .push_bind(after.start)
            .push(", ")
            .push_bind(after.appointment_id)
            .push(")");
    }
    sql.push(" ORDER BY a.start_at, a.appointment_id LIMIT ")
        .push_bind(limit + 1);

    // Every filter has an index in page order (clinic, [doctor | patient | status,] start,
    // id): one plan serves every value.
    let mut tx = clinic_generic_plan_tx(pool, clinic).await?;
    let mut rows: Vec<AppointmentRow> = sql.build_query_as().fetch_all(&mut *tx).await?;
    end_read(tx);

    let next_page_token = page_end(&mut rows, limit).map(|last| {
        AppointmentCursor {
            start: last.start_at,
            appointment_id: last.appointment_id,
        }
        .encode()
    });
    Ok(AppointmentPage {
        items: rows.into_iter().map(AppointmentView::from).collect(),
        next_page_token,
    })
}

/// One appointment of the clinic; with `doctor`, only if it is that doctor's.
pub async fn appointment(
    pool: &PgPool,
    clinic: ClinicId,
    appointment: AppointmentId,
    doctor: Option<StaffId>,
) -> Result<Option<AppointmentView>, sqlx::Error> {
    let mut sql = QueryBuilder::<Postgres>::new(APPOINTMENT_COLUMNS);
    sql.push_bind(clinic.as_uuid())
        .push(" AND a.appointment_id = ")
        .push_bind(appointment.as_uuid());
    if let Some(doctor) = doctor {
        sql.push(" AND a.doctor_id = ").push_bind(doctor.as_uuid());
    }
    let mut tx = clinic_tx(pool, clinic).await?;
    let row: Option<AppointmentRow> = sql.build_query_as().fetch_optional(&mut *tx).await?;
    end_read(tx);
    Ok(row.map(AppointmentView::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        let cursor = AppointmentCursor {
            start: "2027-01-13T08:00:00.123456Z".parse().unwrap(),
            appointment_id: Uuid::now_v7(),
        };
        assert_eq!(AppointmentCursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn hidden_reason_is_absent_not_null() {
        let at: DateTime<Utc> = "2027-01-13T08:00:00Z".parse().unwrap();
        let view = AppointmentView {
            appointment_id: Uuid::nil(),
            patient_id: Uuid::nil(),
            patient_name: None,
            doctor_id: Uuid::nil(),
            doctor_name: None,
            start: at,
            end: at,
            status: "booked".into(),
            reason: Some(None),
            cancel_reason: None,
            appointment_type: None,
            booked_at: at,
            updated_at: at,
            version: 1,
        };
        let shown = serde_json::to_value(&view).unwrap();
        assert!(shown.as_object().unwrap().contains_key("reason"));
        let hidden = serde_json::to_value(view.without_clinical_notes()).unwrap();
        assert!(!hidden.as_object().unwrap().contains_key("reason"));
    }
}
