//! The whole flow over HTTP: platform admin → two clinics → staff → patients → appointments.

use serde_json::json;

use crate::helpers::{patient_body, spawn_app};

#[tokio::test]
async fn the_whole_flow_works_over_http() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;

    // Two clinics, each with its admin, a doctor, a nurse, a receptionist and an auditor,
    // a patient and a booked appointment (all through the API).
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;
    assert_ne!(north.id, south.id);

    // /v1/me says who is who.
    let me = app
        .send(reqwest::Method::GET, "/v1/me", Some(&north.doctor), None)
        .await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["role"], "doctor");
    assert_eq!(me.body["clinic_id"], north.id.to_string());
    assert_eq!(me.body["id"], north.doctor_id.to_string());

    // Another patient, booked with the doctor, checked in, started and completed.
    let patient = app
        .post("/v1/patients", &north.receptionist, patient_body("Grace"))
        .await;
    assert_eq!(patient.status, 201, "{patient:?}");
    assert_eq!(
        patient.header("location"),
        Some(format!("/v1/patients/{}", patient.id()).as_str())
    );
    assert!(patient.body["position"].as_i64().unwrap() > 0);
    let start = app.future(2, 10);
    let booked = app
        .post(
            "/v1/appointments",
            &north.receptionist,
            json!({"patient_id": patient.id(), "doctor_id": north.doctor_id,
                   "start": start, "end": start + chrono::Duration::minutes(20)}),
        )
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    let appt = booked.id();
    let checked_in = app
        .post(
            &format!("/v1/appointments/{appt}/check-in"),
            &north.receptionist,
            json!({}),
        )
        .await;
    assert_eq!(checked_in.status, 200, "{checked_in:?}");
    assert_eq!(checked_in.body["version"], 2);
    assert_eq!(checked_in.header("etag"), Some("\"2\""));
    assert!(checked_in.body["position"].as_i64() > booked.body["position"].as_i64());
    let started = app
        .post(
            &format!("/v1/appointments/{appt}/start"),
            &north.doctor,
            json!({}),
        )
        .await;
    assert_eq!(started.status, 200, "{started:?}");
    let completed = app
        .post(
            &format!("/v1/appointments/{appt}/complete"),
            &north.doctor,
            json!({}),
        )
        .await;
    assert_eq!(completed.status, 200, "{completed:?}");
    assert_eq!(completed.body["version"], 4);

    // The fixture's appointment is cancelled; cancelling twice is a conflict with no event.
    let cancel_path = format!("/v1/appointments/{}/cancel", north.appointment_id);
    let cancelled = app
        .post(
            &cancel_path,
            &north.receptionist,
            json!({"reason": "patient called"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    let before = app.event_count().await;
    let again = app
        .post(
            &cancel_path,
            &north.receptionist,
            json!({"reason": "again"}),
        )
        .await;
    again.problem(409);
    assert_eq!(app.event_count().await, before);

    // Completing a cancelled appointment is an illegal transition.
    let illegal = app
        .post(
            &format!("/v1/appointments/{}/complete", north.appointment_id),
            &north.nurse,
            json!({}),
        )
        .await;
    illegal.problem(409);

    // South's staff cannot see North's records.
    let cross = app
        .post(
            &format!("/v1/appointments/{appt}/cancel"),
            &south.receptionist,
            json!({"reason": "x"}),
        )
        .await;
    cross.problem(404);

    // The events carry their clinic, actor, role and request id.
    let mut conn = app.db.owner_connection().await;
    let rows: Vec<(uuid::Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT tenant_id, metadata::jsonb FROM events WHERE aggregate_type = 'Appointment' \
         AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(format!("{}:{appt}", north.id))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|(tenant, _)| *tenant == north.id));
    assert_eq!(rows[0].1["actor_role"], "receptionist");
    assert_eq!(rows[2].1["actor_role"], "doctor");
    assert_eq!(rows[2].1["actor_id"], north.doctor_id.to_string());
    assert!(!rows[0].1["request_id"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn password_hashes_never_reach_the_event_store() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "hashless").await;
    let mut conn = app.db.owner_connection().await;
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%argon2%' OR payload::text LIKE $1 \
         OR metadata::text LIKE '%argon2%'",
    )
    .bind(format!("%{}%", crate::helpers::PASSWORD))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT password_hash FROM accounts WHERE clinic_id = $1")
            .bind(clinic.id)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(hashes.len(), 5);
    assert!(hashes
        .iter()
        .all(|h| h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")));
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_credentials")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, 0, "staged credentials are consumed by the hire");
}
