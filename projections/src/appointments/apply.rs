//! `rm.appointments`: one row per appointment, with its FHIR status.

use domain::appointment::AppointmentEvent;
use sqlx::PgConnection;

use crate::event::{one, Applied, StoredEvent};

pub(super) async fn apply(s: &str, conn: &mut PgConnection, e: &StoredEvent) -> Applied {
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
                 VALUES ($1, $2, $5, $6, $7, $8, 'booked', $9, $3, $3, $4)"
            );
            let query = e
                .entity_query(&sql)?
                .bind(patient_id.as_uuid())
                .bind(doctor_id.as_uuid())
                .bind(slot.start())
                .bind(slot.end())
                .bind(reason.map(|r| r.as_str().to_owned()));
            return one(conn, e, query).await;
        }
        AppointmentEvent::AppointmentRescheduled { to, .. } => {
            let sql = update("start_at = $5, end_at = $6");
            let query = e.entity_query(&sql)?.bind(to.start()).bind(to.end());
            return one(conn, e, query).await;
        }
        AppointmentEvent::AppointmentCancelled { reason, .. } => {
            let sql = update("status = 'cancelled', cancel_reason = $5");
            return one(conn, e, e.entity_query(&sql)?.bind(reason.as_str())).await;
        }
        AppointmentEvent::PatientCheckedIn { .. } => status("checked-in"),
        AppointmentEvent::AppointmentStarted { .. } => status("in-progress"),
        AppointmentEvent::AppointmentCompleted { .. } => status("fulfilled"),
        AppointmentEvent::AppointmentMarkedNoShow { .. } => status("noshow"),
    };
    one(conn, e, e.entity_query(&sql)?.bind(code)).await
}
