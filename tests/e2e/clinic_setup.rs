//! A clinic's setup (issue 13): the departments a new clinic starts with, its settings (and a
//! time-zone change that moves no appointment, a working week that new doctors start with),
//! and its modules (a disabled module's endpoints refused, its data back when enabled).

use chrono::Duration;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

async fn clinic_view(app: &TestApp, token: &str) -> Value {
    let answer = app.read_at("/v1/clinic", token, app.head().await).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

#[tokio::test]
async fn a_new_clinic_starts_with_five_departments_each_renamed_or_closed_at_will() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "defaults").await;
    let clinic = clinic_view(&app, &north.admin).await;
    let departments = clinic["departments"].as_array().unwrap().clone();
    let names: Vec<&str> = departments
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "General practice",
            "Emergency",
            "Cardiology",
            "Paediatrics",
            "Laboratory"
        ]
    );
    assert!(departments.iter().all(|d| d["open"] == true));
    // The registration wrote them with the clinic, in one transaction.
    let mut conn = app.db.owner_connection().await;
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT transaction_id) FROM events WHERE tenant_id = $1 \
         AND event_type IN ('ClinicRegistered', 'DepartmentAdded')",
    )
    .bind(north.id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(transactions, 1);

    let id = |n: usize| departments[n]["department_id"].as_str().unwrap().to_owned();
    let renamed = app
        .patch(
            &format!("/v1/clinic/departments/{}", id(0)),
            &north.admin,
            json!({"name": "Family medicine"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    let closed = app
        .patch(
            &format!("/v1/clinic/departments/{}", id(4)),
            &north.admin,
            json!({"closed": true}),
        )
        .await;
    assert_eq!(closed.status, 200, "{closed:?}");
    // A second "Cardiology" is refused while the first is open.
    let again = app
        .post(
            "/v1/clinic/departments",
            &north.admin,
            json!({"name": "cardiology"}),
        )
        .await;
    assert_eq!(again.status, 409, "{again:?}");
    let clinic = clinic_view(&app, &north.admin).await;
    assert_eq!(clinic["departments"][0]["name"], "Family medicine");
    assert_eq!(clinic["departments"][4]["open"], false);
}

#[tokio::test]
async fn a_clinic_admin_sets_the_settings_and_bad_values_name_their_field() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "settings").await;
    let week = json!({"mon": [{"start": "08:00", "end": "16:00"}],
                      "tue": [{"start": "08:00", "end": "12:00"}]});
    let updated = app
        .patch(
            "/v1/clinic",
            &north.admin,
            json!({
                "name": "North Health Centre",
                "logo_url": "https://north.example/logo.png",
                "address": {"lines": ["1 High Street"], "city": "Berlin", "postal_code": "10115", "country": "DE"},
                "phone": "+49 30 1234567",
                "slot_minutes": 10,
                "appointment_minutes": 20,
                "working_week": week
            }),
        )
        .await;
    assert_eq!(updated.status, 200, "{updated:?}");
    let clinic = clinic_view(&app, &north.auditor).await;
    assert_eq!(clinic["name"], "North Health Centre");
    assert_eq!(clinic["logo_url"], "https://north.example/logo.png");
    assert_eq!(clinic["address"]["city"], "Berlin");
    // Stored in its normal form (digits only, after the +).
    assert_eq!(clinic["phone"], "+49301234567");
    assert_eq!(clinic["slot_minutes"], 10);
    assert_eq!(clinic["appointment_minutes"], 20);
    assert_eq!(clinic["working_week"]["mon"][0]["start"], "08:00:00");
    assert_eq!(clinic["working_week"]["tue"][0]["end"], "12:00:00");

    let before = app.event_count().await;
    for (body, field) in [
        (
            json!({"logo_url": "http://north.example/logo.png"}),
            "logo_url",
        ),
        (json!({"logo_url": "https://"}), "logo_url"),
        (json!({"logo_url": "https://a b.example"}), "logo_url"),
        (
            json!({"logo_url": format!("https://x.example/{}", "a".repeat(3000))}),
            "logo_url",
        ),
        (json!({"logo_url": "https://x.example/\u{0}"}), "logo_url"),
        (json!({"phone": "call me"}), "phone"),
        (json!({"appointment_minutes": 0}), "appointment_minutes"),
        (json!({"appointment_minutes": 481}), "appointment_minutes"),
        (json!({"address": {}}), "address"),
        (
            json!({"working_week": {"mon": [{"start": "17:00", "end": "09:00"}]}}),
            "working_week.mon[0]",
        ),
        (json!({"name": "x".repeat(1001)}), "name"),
        (json!({"name": "N\u{0}rth"}), "name"),
    ] {
        app.patch("/v1/clinic", &north.admin, body.clone())
            .await
            .names_field(field);
    }
    // Only the clinic admin sets them.
    for role in ["doctor", "nurse", "receptionist", "auditor"] {
        let answer = app
            .patch(
                "/v1/clinic",
                north.token(role),
                json!({"phone": "+49 30 7654321"}),
            )
            .await;
        answer.problem(403);
    }
    assert_eq!(app.event_count().await, before, "nothing written");
}

#[tokio::test]
async fn a_time_zone_change_moves_no_booked_appointment() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "tz-move").await;
    let path = format!("/v1/appointments/{}", north.appointment_id);
    let before = app.read_at(&path, &north.admin, app.head().await).await;
    assert_eq!(before.status, 200, "{before:?}");
    let changed = app
        .patch(
            "/v1/clinic",
            &north.admin,
            json!({"time_zone": "America/New_York"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let after = app.read_at(&path, &north.admin, app.head().await).await;
    for key in ["start", "end"] {
        assert_eq!(
            after.body[key].as_str().map(utc),
            before.body[key].as_str().map(utc),
            "{key}"
        );
    }
    let clinic = clinic_view(&app, &north.admin).await;
    assert_eq!(clinic["time_zone"], "America/New_York");
}

#[tokio::test]
async fn a_new_doctor_starts_with_the_clinics_working_week() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "week").await;
    let week = json!({"wed": [{"start": "09:00", "end": "13:00"}]});
    let set = app
        .patch("/v1/clinic", &north.admin, json!({"working_week": week}))
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    let hire = |email: &str, role: &str| {
        let mut body = json!({"name": "New Person", "email": email, "role": role,
                              "password": PASSWORD});
        if role == "doctor" {
            body["licence_number"] = json!("LIC-9");
        }
        body
    };
    let doctor = app
        .post(
            "/v1/staff",
            &north.admin,
            hire("new-doc@week.example", "doctor"),
        )
        .await;
    assert_eq!(doctor.status, 201, "{doctor:?}");
    let nurse = app
        .post(
            "/v1/staff",
            &north.admin,
            hire("new-nurse@week.example", "nurse"),
        )
        .await;
    assert_eq!(nurse.status, 201, "{nurse:?}");
    let mut conn = app.db.owner_connection().await;
    let events = |id: Uuid| {
        sqlx::query_scalar::<_, String>(
            "SELECT event_type FROM events WHERE aggregate_type = 'Staff' \
             AND aggregate_id = $1 ORDER BY sequence",
        )
        .bind(format!("{}:{id}", north.id))
    };
    let doctor_events = events(doctor.id()).fetch_all(&mut conn).await.unwrap();
    assert_eq!(doctor_events, ["StaffHired", "WorkingHoursSet"]);
    let nurse_events = events(nurse.id()).fetch_all(&mut conn).await.unwrap();
    assert_eq!(nurse_events, ["StaffHired"]);
    let member = app
        .read_at(
            &format!("/v1/staff/{}", doctor.id()),
            &north.admin,
            app.head().await,
        )
        .await;
    assert_eq!(
        member.body["working_hours"]["wed"],
        json!([{"start": "09:00:00", "end": "13:00:00"}]),
        "{member:?}"
    );
    // The version the answer gives is the stream's, after both events.
    assert_eq!(doctor.body["version"], 2);
}

#[tokio::test]
async fn a_disabled_modules_endpoints_are_refused_and_its_data_comes_back_when_enabled() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "modules").await;
    let south = app.clinic(&platform, "modules-south").await;
    let listed = app
        .read_at("/v1/appointments", &north.receptionist, app.head().await)
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");

    let off = app
        .put(
            "/v1/clinic/modules/appointments",
            &north.admin,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(off.status, 200, "{off:?}");
    let clinic = clinic_view(&app, &north.admin).await;
    assert_eq!(clinic["modules"], json!(["billing", "laboratory"]));

    let start = app.future(4, 10);
    let booking = json!({"patient_id": north.patient_id, "doctor_id": north.doctor_id,
                         "start": start, "end": start + Duration::minutes(30)});
    let appointment = format!("/v1/appointments/{}", north.appointment_id);
    let before = app.event_count().await;
    for (method, path, body) in [
        (reqwest::Method::GET, "/v1/appointments".to_owned(), None),
        (reqwest::Method::GET, appointment.clone(), None),
        (
            reqwest::Method::POST,
            "/v1/appointments".to_owned(),
            Some(booking.clone()),
        ),
        (
            reqwest::Method::POST,
            format!("{appointment}/cancel"),
            Some(json!({"reason": "x"})),
        ),
        (
            reqwest::Method::GET,
            format!("/v1/doctors/{}/availability", north.doctor_id),
            None,
        ),
    ] {
        for role in ["clinic_admin", "receptionist", "doctor"] {
            let answer = app
                .send(
                    method.clone(),
                    &path,
                    Some(north.token(role)),
                    body.as_ref(),
                )
                .await;
            let problem = answer.problem(403);
            assert_eq!(
                problem["type"], "https://clinic.example/problems/module-disabled",
                "{method} {path} as {role}: {problem}"
            );
            assert_eq!(problem["module"], "appointments");
        }
    }
    assert_eq!(app.event_count().await, before, "nothing written");
    // Another clinic is not affected.
    let theirs = app
        .send(
            reqwest::Method::GET,
            "/v1/appointments",
            Some(&south.receptionist),
            None,
        )
        .await;
    assert_eq!(theirs.status, 200, "{theirs:?}");
    // Patients are not in the module.
    let patients = app
        .send(
            reqwest::Method::GET,
            "/v1/patients",
            Some(&north.receptionist),
            None,
        )
        .await;
    assert_eq!(patients.status, 200, "{patients:?}");

    let on = app
        .put(
            "/v1/clinic/modules/appointments",
            &north.admin,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(on.status, 200, "{on:?}");
    let again = app
        .read_at("/v1/appointments", &north.receptionist, app.head().await)
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        again.body["items"], listed.body["items"],
        "the same appointments"
    );
    let booked = app
        .post("/v1/appointments", &north.receptionist, booking)
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
}

#[tokio::test]
async fn a_module_outside_the_plan_cannot_be_enabled() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "basic-mod", "basic").await;
    let clinic = clinic_view(&app, &admin).await;
    assert_eq!(clinic["modules"], json!(["appointments", "billing"]));
    let before = app.event_count().await;
    let lab = app
        .put(
            "/v1/clinic/modules/laboratory",
            &admin,
            json!({"enabled": true}),
        )
        .await;
    let problem = lab.problem(402);
    assert_eq!(
        problem["type"],
        "https://clinic.example/problems/plan-limit"
    );
    assert_eq!(problem["limit"], "modules");
    assert_eq!(problem["plan"], "basic");
    assert_eq!(problem["allowed"], 2);
    assert_eq!(problem["in_use"], 2);
    assert_eq!(app.event_count().await, before);
    // Twice the same is a conflict; an unknown module is a 404.
    let twice = app
        .put(
            "/v1/clinic/modules/billing",
            &admin,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(twice.status, 409, "{twice:?}");
    let unknown = app
        .put(
            "/v1/clinic/modules/radiology",
            &admin,
            json!({"enabled": true}),
        )
        .await;
    unknown.problem(404);
}
