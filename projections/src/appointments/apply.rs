//! `rm.appointments`: one row per appointment, with its FHIR status. A batch of events is
//! merged per appointment in memory and written with one `INSERT` and one `UPDATE` (see
//! [`crate::changes`]).

use chrono::{DateTime, Utc};
use domain::appointment::AppointmentEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::changes::{self, Changes, Entry, Merge, Unnest};
use crate::event::{Applied, StoredEvent};

/// An appointment row (from `AppointmentBooked`) or a patch of one.
#[derive(Default)]
struct Row {
    patient_id: Option<Uuid>,
    doctor_id: Option<Uuid>,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    status: Option<&'static str>,
    reason: Option<String>,
    cancel_reason: Option<String>,
    booked_at: Option<DateTime<Utc>>,
    appointment_type: Option<String>,
}

impl Merge for Row {
    fn merge(&mut self, n: Row) {
        changes::merge_newer! { self, n; patient_id, doctor_id, start_at, end_at, status, reason, cancel_reason, booked_at, appointment_type }
    }

    fn columns(rows: &[Entry<Row>]) -> Unnest<'_, Row> {
        Unnest::new(rows)
            .col(|r| r.patient_id)
            .col(|r| r.doctor_id)
            .col(|r| r.start_at)
            .col(|r| r.end_at)
            .col(|r| r.status.map(str::to_owned))
            .col(|r| r.reason.as_deref())
            .col(|r| r.cancel_reason.as_deref())
            .col(|r| r.booked_at)
            .col(|r| r.appointment_type.as_deref())
    }
}

fn fold(rows: &mut Changes<Row>, e: &StoredEvent) -> Applied {
    let mut row = Row::default();
    row.status = match e.decode::<AppointmentEvent>()? {
        AppointmentEvent::AppointmentBooked {
            patient_id,
            doctor_id,
            slot,
            reason,
            appointment_type,
            ..
        } => {
            row.patient_id = Some(patient_id.as_uuid());
            row.doctor_id = Some(doctor_id.as_uuid());
            row.start_at = Some(slot.start());
            row.end_at = Some(slot.end());
            row.status = Some("booked");
            row.reason = reason.map(|r| r.as_str().to_owned());
            row.booked_at = Some(e.at()?);
            row.appointment_type = appointment_type.map(|t| t.as_str().to_owned());
            return rows.create(e, row);
        }
        AppointmentEvent::AppointmentRescheduled { to, .. } => {
            row.start_at = Some(to.start());
            row.end_at = Some(to.end());
            None
        }
        AppointmentEvent::AppointmentCancelled { reason, .. } => {
            row.cancel_reason = Some(reason.as_str().to_owned());
            Some("cancelled")
        }
        AppointmentEvent::PatientCheckedIn { .. } => Some("checked-in"),
        AppointmentEvent::AppointmentStarted { .. } => Some("in-progress"),
        AppointmentEvent::AppointmentCompleted { .. } => Some("fulfilled"),
        AppointmentEvent::AppointmentMarkedNoShow { .. } => Some("noshow"),
    };
    rows.patch(e, row)
}

const UNNEST: &str = "unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::timestamptz[], \
     $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], \
     $12::timestamptz[], $13::int8[]) \
     AS u(clinic_id, appointment_id, patient_id, doctor_id, start_at, end_at, status, reason, \
          cancel_reason, booked_at, appointment_type, updated_at, version)";

/// Applies `events` (this projection's, in commit order) to `s.appointments`.
pub(super) async fn apply(s: &str, conn: &mut PgConnection, events: &[&StoredEvent]) -> Applied {
    let insert = format!(
        "INSERT INTO {s}.appointments (clinic_id, appointment_id, patient_id, doctor_id, start_at, \
         end_at, status, reason, cancel_reason, booked_at, appointment_type, updated_at, version) \
         SELECT * FROM {UNNEST} RETURNING clinic_id, appointment_id"
    );
    let update = format!(
        "UPDATE {s}.appointments t SET start_at = coalesce(u.start_at, t.start_at), \
         end_at = coalesce(u.end_at, t.end_at), status = coalesce(u.status, t.status), \
         cancel_reason = coalesce(u.cancel_reason, t.cancel_reason), \
         updated_at = u.updated_at, version = u.version \
         FROM {UNNEST} WHERE t.clinic_id = u.clinic_id AND t.appointment_id = u.appointment_id \
         RETURNING t.clinic_id, t.appointment_id"
    );
    changes::apply(conn, events, fold, &insert, &update).await
}
