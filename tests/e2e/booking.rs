//! Booking never double-books: concurrency across API instances, working hours, time off,
//! reschedule, cancellation, and a booking that dies half way.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Executor;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::helpers::{
    default_now, patient_body, spawn_app, spawn_app_at, Answer, ClinicFixture, TestApp,
};

async fn patients(app: &TestApp, clinic: &ClinicFixture, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let p = app
            .post(
                "/v1/patients",
                &clinic.receptionist,
                patient_body(&format!("Q{i}")),
            )
            .await;
        assert_eq!(p.status, 201, "{p:?}");
        ids.push(p.id());
    }
    ids
}

fn booking(
    patient: Uuid,
    doctor: Uuid,
    start: chrono::DateTime<chrono::Utc>,
    minutes: i64,
) -> serde_json::Value {
    json!({"patient_id": patient, "doctor_id": doctor, "start": start,
           "end": start + chrono::Duration::minutes(minutes)})
}

async fn booked_events(app: &TestApp, doctor: Uuid) -> i64 {
    let mut conn = app.db.owner_connection().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'AppointmentBooked' \
         AND payload -> 'AppointmentBooked' ->> 'doctor_id' = $1",
    )
    .bind(doctor.to_string())
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn fifty_concurrent_bookings_across_two_instances_give_exactly_one() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "race").await;
    let second = app.second_instance().await;
    let patients = patients(&app, &clinic, 50).await;
    let before = booked_events(&app, clinic.doctor_id).await;
    let base = app.future(5, 9);
    let client = reqwest::Client::new();
    let requests = patients.iter().enumerate().map(|(i, patient)| {
        // Overlapping times on the grid: every one overlaps every other.
        let start = base + chrono::Duration::minutes(15 * (i as i64 % 4));
        let body = booking(*patient, clinic.doctor_id, start, 60);
        let address = if i % 2 == 0 {
            app.address.clone()
        } else {
            second.address.clone()
        };
        let client = client.clone();
        let token = clinic.receptionist.clone();
        async move {
            let res = client
                .post(format!("{address}/v1/appointments"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (status, body)
        }
    });
    let answers = futures::future::join_all(requests).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let taken: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|(s, _)| *s == 409)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created, 1, "{answers:?}");
    assert_eq!(taken.len(), 49, "{answers:?}");
    for body in &taken {
        assert!(
            body["type"].as_str().unwrap().ends_with("/slot-taken"),
            "{body}"
        );
        assert!(!body["conflicts"].as_array().unwrap().is_empty(), "{body}");
    }
    assert_eq!(booked_events(&app, clinic.doctor_id).await - before, 1);
}

#[tokio::test]
async fn a_slot_taken_answer_names_the_ranges_but_not_the_other_patient() {
    a_slot_taken_answer_names_the_ranges_but_not_the_other_patient_at(default_now()).await;
}

/// [`a_slot_taken_answer_names_the_ranges_but_not_the_other_patient`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn a_slot_taken_answer_names_the_ranges_but_not_the_other_patient_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "private").await;
    let ids = patients(&app, &clinic, 2).await;
    let start = app.future(6, 10);
    let first = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[0], clinic.doctor_id, start, 30),
        )
        .await;
    assert_eq!(first.status, 201);
    let clash = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(
                ids[1],
                clinic.doctor_id,
                start + chrono::Duration::minutes(15),
                30,
            ),
        )
        .await;
    let body = clash.problem(409);
    assert!(body["type"].as_str().unwrap().ends_with("/slot-taken"));
    let conflicts = body["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflicts[0]["start"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        start
    );
    let text = body.to_string();
    assert!(
        !text.contains(&ids[0].to_string()) && !text.contains("Q0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_patient_cannot_hold_two_overlapping_appointments() {
    a_patient_cannot_hold_two_overlapping_appointments_at(default_now()).await;
}

/// [`a_patient_cannot_hold_two_overlapping_appointments`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn a_patient_cannot_hold_two_overlapping_appointments_at(now: DateTime<Utc>) {
    let app = spawn_app_at(now).await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "twice").await;
    // A second doctor.
    let hired = app
        .post(
            "/v1/staff",
            &clinic.admin,
            json!({"name": "Second Doctor", "email": "doc2@twice.example", "role": "doctor",
                   "licence_number": "LIC-2", "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert_eq!(hired.status, 201);
    let other_doctor = hired.id();
    let hours = app
        .put(
            &format!("/v1/staff/{other_doctor}/working-hours"),
            &clinic.admin,
            crate::helpers::all_day_hours(),
        )
        .await;
    assert_eq!(hours.status, 200);
    let patient = patients(&app, &clinic, 1).await[0];
    let start = app.future(7, 9);
    assert_eq!(
        app.post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(patient, clinic.doctor_id, start, 30)
        )
        .await
        .status,
        201
    );
    let clash = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(patient, other_doctor, start, 30),
        )
        .await;
    let body = clash.problem(409);
    assert!(
        body["detail"].as_str().unwrap().contains("patient"),
        "{body}"
    );
    // Back to back is fine.
    let next = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(
                patient,
                other_doctor,
                start + chrono::Duration::minutes(30),
                30,
            ),
        )
        .await;
    assert_eq!(next.status, 201, "{next:?}");
}

async fn get_appointment(app: &TestApp, clinic: &ClinicFixture, id: Uuid, position: i64) -> Answer {
    app.read_at(&format!("/v1/appointments/{id}"), &clinic.admin, position)
        .await
}

#[tokio::test]
async fn a_reschedule_onto_a_taken_slot_keeps_the_old_time() {
    a_reschedule_onto_a_taken_slot_keeps_the_old_time_at(default_now()).await;
}

/// [`a_reschedule_onto_a_taken_slot_keeps_the_old_time`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn a_reschedule_onto_a_taken_slot_keeps_the_old_time_at(now: DateTime<Utc>) {
    let app = spawn_app_at(now).await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "move").await;
    let ids = patients(&app, &clinic, 3).await;
    let ten = app.future(8, 10);
    let eleven = ten + chrono::Duration::hours(1);
    let a = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[0], clinic.doctor_id, ten, 30),
        )
        .await;
    let b = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[1], clinic.doctor_id, eleven, 30),
        )
        .await;
    assert_eq!((a.status, b.status), (201, 201));
    let moved = app
        .post(
            &format!("/v1/appointments/{}/reschedule", b.id()),
            &clinic.receptionist,
            json!({"start": ten, "end": ten + chrono::Duration::minutes(30)}),
        )
        .await;
    moved.problem(409);
    let position = b.body["position"].as_i64().unwrap();
    let still = get_appointment(&app, &clinic, b.id(), position).await;
    assert_eq!(still.status, 200, "{still:?}");
    assert_eq!(
        still.body["start"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        eleven
    );
    // The old time is still claimed: nobody else can take it.
    let third = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[2], clinic.doctor_id, eleven, 30),
        )
        .await;
    third.problem(409);
    // A reschedule to a free time releases the old one at once.
    let twelve = eleven + chrono::Duration::hours(1);
    let ok = app
        .post(
            &format!("/v1/appointments/{}/reschedule", b.id()),
            &clinic.receptionist,
            json!({"start": twelve, "end": twelve + chrono::Duration::minutes(30)}),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let third = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[2], clinic.doctor_id, eleven, 30),
        )
        .await;
    assert_eq!(third.status, 201, "{third:?}");
}

#[tokio::test]
async fn cancel_no_show_and_complete_free_the_slot_at_once() {
    cancel_no_show_and_complete_free_the_slot_at_once_at(default_now()).await;
}

/// [`cancel_no_show_and_complete_free_the_slot_at_once`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn cancel_no_show_and_complete_free_the_slot_at_once_at(now: DateTime<Utc>) {
    let app = spawn_app_at(now).await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "free").await;
    let ids = patients(&app, &clinic, 4).await;
    let start = app.future(9, 9);
    let first = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[0], clinic.doctor_id, start, 30),
        )
        .await;
    assert_eq!(first.status, 201);
    app.post(
        "/v1/appointments",
        &clinic.receptionist,
        booking(ids[1], clinic.doctor_id, start, 30),
    )
    .await
    .problem(409);
    let cancel = app
        .post(
            &format!("/v1/appointments/{}/cancel", first.id()),
            &clinic.receptionist,
            json!({"reason": "ill"}),
        )
        .await;
    assert_eq!(cancel.status, 200);
    let second = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[1], clinic.doctor_id, start, 30),
        )
        .await;
    assert_eq!(second.status, 201, "cancel freed the slot: {second:?}");
    let no_show = app
        .post(
            &format!("/v1/appointments/{}/no-show", second.id()),
            &clinic.receptionist,
            json!({}),
        )
        .await;
    assert_eq!(no_show.status, 200);
    let third = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[2], clinic.doctor_id, start, 30),
        )
        .await;
    assert_eq!(third.status, 201, "no-show freed the slot: {third:?}");
    for step in ["check-in", "start", "complete"] {
        let r = app
            .post(
                &format!("/v1/appointments/{}/{step}", third.id()),
                &clinic.nurse,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{step}: {r:?}");
    }
    let fourth = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[3], clinic.doctor_id, start, 30),
        )
        .await;
    assert_eq!(fourth.status, 201, "complete freed the slot: {fourth:?}");
}

/// A booking whose process dies between claiming the slot and committing leaves nothing
/// blocked: the claim is part of the append's transaction.
#[tokio::test]
async fn a_booking_that_dies_half_way_does_not_block_the_slot() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "crash").await;
    let ids = patients(&app, &clinic, 2).await;
    let start = app.future(10, 9);
    let appointment = Uuid::new_v4();
    let event = json!({"AppointmentBooked": {
        "appointment_id": appointment, "clinic_id": clinic.id, "patient_id": ids[0],
        "doctor_id": clinic.doctor_id,
        "slot": {"start": start, "end": start + chrono::Duration::minutes(30)},
        "reason": null, "override_hours": false, "at": app.now()}});
    // A "process" appends the booking (taking the claim) and dies before committing.
    let mut dying = app.db.owner_connection().await;
    dying.execute("BEGIN").await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Appointment', $1, 1, 'AppointmentBooked', '1.0', $2, $3)",
    )
    .bind(format!("{}:{appointment}", clinic.id))
    .bind(&event)
    .bind(json!({"tenant_id": clinic.id, "actor_id": Uuid::nil(), "actor_role": "system",
                 "request_id": "dying", "occurred_at": app.now()}))
    .execute(&mut dying)
    .await
    .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut dying)
        .await
        .unwrap();

    // Meanwhile a real booking for the same slot waits on the claim...
    let waiting = {
        let client = app.client.clone();
        let url = app.url("/v1/appointments");
        let token = clinic.receptionist.clone();
        let body = booking(ids[1], clinic.doctor_id, start, 30);
        tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the second booking should wait on the open claim"
    );

    // ...until the first process is killed.
    let mut killer = app.db.owner_connection().await;
    let killed_at = Instant::now();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut killer)
        .await
        .unwrap();
    assert!(killed);
    let (status, done_at) = waiting.await.unwrap();
    assert_eq!(status, 201, "the slot was freed by the crash");
    let blocked_for = done_at.duration_since(killed_at);
    assert!(
        blocked_for < Duration::from_secs(3),
        "blocked for {blocked_for:?} after the crash"
    );
    let claims: i64 =
        sqlx::query_scalar("SELECT count(*) FROM slot_claims WHERE appointment_id = $1")
            .bind(appointment)
            .fetch_one(&mut killer)
            .await
            .unwrap();
    assert_eq!(claims, 0);
}

#[tokio::test]
async fn working_hours_time_off_and_the_admin_override() {
    working_hours_time_off_and_the_admin_override_at(default_now()).await;
}

/// [`working_hours_time_off_and_the_admin_override`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn working_hours_time_off_and_the_admin_override_at(now: DateTime<Utc>) {
    let app = spawn_app_at(now).await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "hours").await;
    let ids = patients(&app, &clinic, 5).await;
    let doctor = clinic.doctor_id;
    // 09:00–12:00 Berlin time, every day.
    let day = json!([{"start": "09:00", "end": "12:00"}]);
    let hours =
        json!({"mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day});
    assert_eq!(
        app.put(
            &format!("/v1/staff/{doctor}/working-hours"),
            &clinic.admin,
            hours
        )
        .await
        .status,
        200
    );
    // A day in the future at 14:00 local is outside; 10:00 local is inside.
    let tz = domain::values::TimeZone::parse("Europe/Berlin")
        .unwrap()
        .tz();
    let local = |days: i64, h: u32| {
        use chrono::TimeZone;
        let date = (app.now() + chrono::Duration::days(days))
            .with_timezone(&tz)
            .date_naive();
        tz.from_local_datetime(&date.and_hms_opt(h, 0, 0).unwrap())
            .single()
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let outside = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[0], doctor, local(11, 14), 30),
        )
        .await;
    let body = outside.problem(422);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("/outside-working-hours"),
        "{body}"
    );
    let inside = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[0], doctor, local(11, 10), 30),
        )
        .await;
    assert_eq!(inside.status, 201, "{inside:?}");
    // Off the 15-minute grid.
    let odd = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(
                ids[1],
                doctor,
                local(11, 10) + chrono::Duration::minutes(7),
                30,
            ),
        )
        .await;
    odd.names_field("start");
    // Time off.
    let off = app
        .post(
            &format!("/v1/staff/{doctor}/time-off"),
            &clinic.admin,
            json!({"start": local(12, 0), "end": local(13, 0), "reason": "congress"}),
        )
        .await;
    assert_eq!(off.status, 200, "{off:?}");
    let during = app
        .post(
            "/v1/appointments",
            &clinic.receptionist,
            booking(ids[2], doctor, local(12, 10), 30),
        )
        .await;
    assert!(during.problem(422)["type"]
        .as_str()
        .unwrap()
        .ends_with("/outside-working-hours"));
    // A receptionist may not override; a clinic admin may, and the event records it.
    let mut forced = booking(ids[3], doctor, local(11, 14), 30);
    forced["override_hours"] = json!(true);
    app.post("/v1/appointments", &clinic.receptionist, forced.clone())
        .await
        .problem(403);
    let ok = app.post("/v1/appointments", &clinic.admin, forced).await;
    assert_eq!(ok.status, 201, "{ok:?}");
    let mut conn = app.db.owner_connection().await;
    let recorded: bool = sqlx::query_scalar(
        "SELECT (payload -> 'AppointmentBooked' ->> 'override_hours')::boolean FROM events \
         WHERE aggregate_id = $1",
    )
    .bind(format!("{}:{}", clinic.id, ok.id()))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(recorded);
    // Overrides never allow an overlap.
    let mut clash = booking(ids[4], doctor, local(11, 14), 30);
    clash["override_hours"] = json!(true);
    app.post("/v1/appointments", &clinic.admin, clash)
        .await
        .problem(409);
    // In the past: 422.
    let past = app
        .post("/v1/appointments", &clinic.admin, {
            let mut b = booking(ids[4], doctor, app.now() - chrono::Duration::days(1), 30);
            b["override_hours"] = json!(true);
            b
        })
        .await;
    assert_eq!(past.status, 422, "{past:?}");
}
