//! The query endpoints over HTTP, against the real app and its in-process projection workers:
//! read-your-writes with `X-Min-Position`, patient search and pagination, who sees what, and
//! the platform's view.
//!
//! Reads after a command pass the command's `position` as `X-Min-Position`, so they see the
//! new state without sleeping or polling. Reads of a fixture's state pass the store's head
//! position (the fixture's commands all committed before it is read).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    patient_body, spawn_app, spawn_app_at, spawn_app_with, Answer, ClinicFixture, TestApp, TestDb,
    PASSWORD,
};

// ---------------------------------------------------------------------------------------
// Helpers.

/// `GET path` as `token`, once the read models include the event at `position`.
async fn read(app: &TestApp, token: &str, path: &str, position: i64) -> Answer {
    app.send_with(
        Method::GET,
        path,
        Some(token),
        None,
        &[("x-min-position", &position.to_string())],
    )
    .await
}

/// `read`, asserting a 200.
#[track_caller]
fn ok(answer: Answer) -> Value {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

/// The `position` of a command's answer (asserting it succeeded).
#[track_caller]
fn position(answer: &Answer) -> i64 {
    assert!(answer.status == 200 || answer.status == 201, "{answer:?}");
    answer.body["position"]
        .as_i64()
        .unwrap_or_else(|| panic!("no position in {answer:?}"))
}

fn ids(items: &Value, key: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {items}"))
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
}

/// Registers a patient and returns (id, position).
async fn register(app: &TestApp, token: &str, body: Value) -> (Uuid, i64) {
    let answer = app.post("/v1/patients", token, body).await;
    (answer.id(), position(&answer))
}

/// Registers a patient per (given, family) name; returns their ids and the last position.
async fn register_names(app: &TestApp, token: &str, names: &[(&str, &str)]) -> (Vec<Uuid>, i64) {
    let mut ids = Vec::new();
    let mut position = 0;
    for (given, family) in names {
        let (id, at) = register(
            app,
            token,
            json!({"name": {"given": given, "family": family}, "birth_date": "2000-01-01",
                   "sex": "unknown"}),
        )
        .await;
        ids.push(id);
        position = at;
    }
    (ids, position)
}

/// Hires a second doctor in the clinic and returns (id, token).
async fn hire_doctor(app: &TestApp, clinic: &ClinicFixture, name: &str) -> (Uuid, String) {
    let email = format!("{}@{}.example", name.to_lowercase(), clinic.code);
    let hired = app
        .post(
            "/v1/staff",
            &clinic.admin,
            json!({"name": name, "email": email, "role": "doctor", "password": PASSWORD,
                   "licence_number": "LIC-2"}),
        )
        .await;
    assert_eq!(hired.status, 201, "{hired:?}");
    let hours = app
        .put(
            &format!("/v1/staff/{}/working-hours", hired.id()),
            &clinic.admin,
            crate::helpers::all_day_hours(),
        )
        .await;
    assert_eq!(hours.status, 200, "{hours:?}");
    (hired.id(), app.login(&email).await)
}

/// Books an appointment and returns (id, position).
async fn book(
    app: &TestApp,
    token: &str,
    patient: Uuid,
    doctor: Uuid,
    start: chrono::DateTime<Utc>,
    reason: &str,
) -> (Uuid, i64) {
    // A start off the clinic's slot grid (e.g. "in a moment") needs a clinic admin's override.
    let on_grid = start.timestamp() % (15 * 60) == 0;
    let mut body = json!({"patient_id": patient, "doctor_id": doctor, "start": start,
                          "end": start + chrono::Duration::minutes(30), "reason": reason});
    if !on_grid {
        body["override_hours"] = json!(true);
    }
    let answer = app.post("/v1/appointments", token, body).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    (answer.id(), position(&answer))
}

fn booked_total(dashboard: &Value) -> i64 {
    dashboard["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["by_status"]["booked"].as_i64().unwrap())
        .sum()
}

fn doctor_total(dashboard: &Value, doctor: Uuid) -> i64 {
    dashboard["doctor_load"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["doctor_id"] == doctor.to_string())
        .map(|d| d["total"].as_i64().unwrap())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Read-your-writes.

#[tokio::test]
async fn writes_show_up_in_every_read_model_at_their_position() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let at = app.head().await;
    let dashboard_before = ok(read(&app, &north.admin, "/v1/dashboard", at).await);
    let overview_before = ok(read(&app, &platform, "/v1/platform/overview", at).await);

    // A patient: the record, the search and the clinic's counts.
    let (patient, p) = register(
        &app,
        &north.receptionist,
        json!({"name": {"given": "Grace", "family": "Hopper"}, "birth_date": "1906-12-09",
               "sex": "female", "phone": "+1 212 555 0100", "email": "grace@example.com",
               "address": {"lines": ["1 Navy Way"], "city": "Arlington"},
               "allergies": ["latex"]}),
    )
    .await;
    let record = read(&app, &north.nurse, &format!("/v1/patients/{patient}"), p).await;
    assert_eq!(record.header("etag"), Some("\"1\""));
    let record = ok(record);
    assert_eq!(
        record["name"],
        json!({"given": "Grace", "family": "Hopper"})
    );
    assert_eq!(record["birth_date"], "1906-12-09");
    assert_eq!(record["phone"], "+12125550100", "stored normalised");
    assert_eq!(record["address"]["city"], "Arlington");
    assert_eq!(record["allergies"], json!(["latex"]));
    assert_eq!(record["status"], "active");
    assert_eq!(record["version"], 1);
    assert!(record["mrn"].as_str().unwrap().starts_with("MRN-"));
    let found = ok(read(&app, &north.admin, "/v1/patients?q=hopper", p).await);
    assert_eq!(
        ids(&found["items"], "patient_id"),
        vec![patient.to_string()]
    );

    // An update shows at its own position.
    let updated = app
        .patch(
            &format!("/v1/patients/{patient}"),
            &north.receptionist,
            json!({"phone": "+1 212 555 0199"}),
        )
        .await;
    let record = ok(read(
        &app,
        &north.receptionist,
        &format!("/v1/patients/{patient}"),
        position(&updated),
    )
    .await);
    assert_eq!(record["phone"], "+12125550199");
    assert_eq!(record["version"], 2);

    // Staff: a hire, working hours, time off, in the roster and the member's record.
    let hired = app
        .post(
            "/v1/staff",
            &north.admin,
            json!({"name": "Nina Nurse", "email": "nina@north.example", "role": "nurse",
                   "password": PASSWORD}),
        )
        .await;
    let nina = hired.id();
    let member = ok(read(
        &app,
        &north.auditor,
        &format!("/v1/staff/{nina}"),
        position(&hired),
    )
    .await);
    assert_eq!(member["name"], "Nina Nurse");
    assert_eq!(member["role"], "nurse");
    assert_eq!(member["active"], true);
    let hours = app
        .put(
            &format!("/v1/staff/{nina}/working-hours"),
            &north.admin,
            json!({"mon": [{"start": "09:00", "end": "17:00"}]}),
        )
        .await;
    let member = ok(read(
        &app,
        &north.doctor,
        &format!("/v1/staff/{nina}"),
        position(&hours),
    )
    .await);
    assert_eq!(
        member["working_hours"]["mon"][0]["start"].as_str().unwrap()[..5],
        *"09:00"
    );
    assert_eq!(
        member["working_hours"]["mon"][0]["end"].as_str().unwrap()[..5],
        *"17:00"
    );
    let off_start = app.future(10, 0);
    let off = app
        .post(
            &format!("/v1/staff/{nina}/time-off"),
            &north.admin,
            json!({"start": off_start, "end": off_start + chrono::Duration::days(2),
                   "reason": "conference"}),
        )
        .await;
    let roster = ok(read(
        &app,
        &north.receptionist,
        "/v1/staff?role=nurse",
        position(&off),
    )
    .await);
    let nina_row = roster["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["staff_id"] == nina.to_string())
        .expect("the new nurse is in the roster")
        .clone();
    assert_eq!(nina_row["time_off"][0]["reason"], "conference");
    assert_eq!(
        nina_row["time_off"][0]["start"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc)),
        Some(off_start)
    );

    // An appointment: booked, then checked in.
    let start = app.future(1, 10);
    let (appointment, p) = book(
        &app,
        &north.receptionist,
        patient,
        north.doctor_id,
        start,
        "follow-up",
    )
    .await;
    let view = ok(read(
        &app,
        &north.nurse,
        &format!("/v1/appointments/{appointment}"),
        p,
    )
    .await);
    assert_eq!(view["status"], "booked");
    assert_eq!(view["patient_name"], "Grace Hopper");
    assert_eq!(view["doctor_name"], "doctor person");
    assert_eq!(view["reason"], "follow-up");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(view["start"].as_str().unwrap()).unwrap(),
        start
    );
    let checked_in = app
        .post(
            &format!("/v1/appointments/{appointment}/check-in"),
            &north.receptionist,
            json!({}),
        )
        .await;
    let view = read(
        &app,
        &north.doctor,
        &format!("/v1/appointments/{appointment}"),
        position(&checked_in),
    )
    .await;
    assert_eq!(view.header("etag"), Some("\"2\""));
    assert_eq!(ok(view)["status"], "checked-in");
    let listed = ok(read(
        &app,
        &north.admin,
        &format!("/v1/appointments?patient_id={patient}"),
        position(&checked_in),
    )
    .await);
    assert_eq!(
        ids(&listed["items"], "appointment_id"),
        vec![appointment.to_string()]
    );

    // The clinic: a department.
    let department = app
        .post(
            "/v1/clinic/departments",
            &north.admin,
            json!({"name": "Dermatology"}),
        )
        .await;
    let p = position(&department);
    let clinic = ok(read(&app, &north.auditor, "/v1/clinic", p).await);
    assert_eq!(clinic["code"], "north");
    assert_eq!(clinic["time_zone"], "Europe/Berlin");
    assert_eq!(clinic["plan"], "professional");
    assert_eq!(clinic["status"], "active");
    // The five a new clinic starts with, then the one added.
    let departments = clinic["departments"].as_array().unwrap();
    let names: Vec<&str> = departments
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        domain::clinic::DEFAULT_DEPARTMENTS
            .iter()
            .copied()
            .chain(["Dermatology"])
            .collect::<Vec<_>>()
    );
    assert_eq!(
        departments[5],
        json!({"department_id": department.id(), "name": "Dermatology", "open": true})
    );
    assert_eq!(
        clinic["modules"],
        json!(["appointments", "billing", "laboratory"])
    );
    assert_eq!(clinic["appointment_minutes"], 30);

    // The platform's list and overview count the new records.
    let clinics = ok(read(&app, &platform, "/v1/clinics", p).await);
    let row = clinics["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clinic_id"] == north.id.to_string())
        .expect("north is listed")
        .clone();
    assert_eq!(row["code"], "north");
    assert_eq!(row["patient_count"], 2);
    assert_eq!(row["staff_count"], 6);
    assert_eq!(row["appointment_count"], 2);
    let overview = ok(read(&app, &platform, "/v1/platform/overview", p).await);
    for (key, more) in [("patients", 1), ("staff", 1), ("appointments", 1)] {
        assert_eq!(
            overview[key].as_i64().unwrap(),
            overview_before[key].as_i64().unwrap() + more,
            "{key}: {overview}"
        );
    }

    // The dashboard: one more appointment (checked in), one more patient this week, and the
    // appointment among the next ones.
    let dashboard = ok(read(&app, &north.receptionist, "/v1/dashboard", p).await);
    let checked_in_total: i64 = dashboard["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["by_status"]["checked-in"].as_i64().unwrap())
        .sum();
    assert_eq!(checked_in_total, 1, "{dashboard}");
    assert_eq!(booked_total(&dashboard), booked_total(&dashboard_before));
    assert_eq!(
        doctor_total(&dashboard, north.doctor_id),
        doctor_total(&dashboard_before, north.doctor_id) + 1
    );
    assert_eq!(
        dashboard["new_patients_this_week"].as_i64().unwrap(),
        dashboard_before["new_patients_this_week"].as_i64().unwrap() + 1
    );
    let next = dashboard["next_appointments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["appointment_id"] == appointment.to_string())
        .expect("the new appointment is among the next ones")
        .clone();
    assert_eq!(next["patient_name"], "Grace Hopper");
    assert_eq!(next["doctor_name"], "doctor person");
    assert_eq!(next["status"], "checked-in");
    assert_eq!(dashboard["time_zone"], "Europe/Berlin");
    assert_eq!(dashboard["days"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn the_dashboard_counts_no_shows_of_the_last_30_days() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let dashboard = ok(read(&app, &north.admin, "/v1/dashboard", app.head().await).await);
    assert_eq!(dashboard["no_show_30d"]["counted"], 0, "{dashboard}");
    assert_eq!(dashboard["no_show_30d"]["rate"], Value::Null);

    // Two appointments that start in a quarter of an hour, one a no-show and one checked in.
    // Nothing can be booked in the past, so the test then moves the clock past the start of
    // every appointment it books.
    let (second, _) = hire_doctor(&app, &north, "Watson").await;
    let (idle, _) = hire_doctor(&app, &north, "Idle").await;
    let (patient, _) = register(&app, &north.receptionist, patient_body("Kept")).await;
    let start = app.now() + chrono::Duration::minutes(15);
    let (missed, _) = book(
        &app,
        &north.admin,
        north.patient_id,
        north.doctor_id,
        start,
        "x",
    )
    .await;
    let (kept, _) = book(&app, &north.admin, patient, second, start, "y").await;
    let no_show = app
        .post(
            &format!("/v1/appointments/{missed}/no-show"),
            &north.nurse,
            json!({}),
        )
        .await;
    assert_eq!(no_show.status, 200, "{no_show:?}");
    let checked_in = app
        .post(
            &format!("/v1/appointments/{kept}/check-in"),
            &north.nurse,
            json!({}),
        )
        .await;
    assert_eq!(checked_in.status, 200, "{checked_in:?}");
    // Half an hour later: one in progress and one fulfilled (both counted); an hour later:
    // one cancelled and one still booked (neither counted).
    let later = start + chrono::Duration::minutes(30);
    let (in_progress, _) = book(
        &app,
        &north.admin,
        north.patient_id,
        north.doctor_id,
        later,
        "z",
    )
    .await;
    let (fulfilled, _) = book(&app, &north.admin, patient, second, later, "w").await;
    let last = start + chrono::Duration::minutes(60);
    let (cancelled, _) = book(
        &app,
        &north.admin,
        north.patient_id,
        north.doctor_id,
        last,
        "v",
    )
    .await;
    let (booked, _) = book(&app, &north.admin, patient, second, last, "u").await;
    let mut p = 0;
    for (id, steps) in [
        (in_progress, &["check-in", "start"][..]),
        (fulfilled, &["check-in", "start", "complete"][..]),
    ] {
        for step in steps {
            let answer = app
                .post(
                    &format!("/v1/appointments/{id}/{step}"),
                    &north.nurse,
                    json!({}),
                )
                .await;
            assert_eq!(answer.status, 200, "{step}: {answer:?}");
            p = position(&answer);
        }
    }
    let answer = app
        .post(
            &format!("/v1/appointments/{cancelled}/cancel"),
            &north.receptionist,
            json!({"reason": "moved away"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let p = p.max(position(&answer));
    app.advance(chrono::Duration::minutes(76));
    // The access tokens (15 minutes) have expired meanwhile: fresh ones.
    let doctor = app.login(&north.emails["doctor"]).await;
    let admin = app.login(&north.emails["clinic_admin"]).await;

    let dashboard = ok(read(&app, &doctor, "/v1/dashboard", p).await);
    // Counted: the no-show, the checked-in, the in-progress and the fulfilled one.
    assert_eq!(dashboard["no_show_30d"]["noshow"], 1, "{dashboard}");
    assert_eq!(dashboard["no_show_30d"]["counted"], 4, "{dashboard}");
    assert_eq!(dashboard["no_show_30d"]["rate"], 0.25, "{dashboard}");
    // For a doctor, the next appointments are their own only.
    for next in dashboard["next_appointments"].as_array().unwrap() {
        assert_eq!(
            next["doctor_id"],
            north.doctor_id.to_string(),
            "{dashboard}"
        );
    }
    let for_admin = ok(read(&app, &admin, "/v1/dashboard", p).await);
    assert!(
        for_admin["next_appointments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["appointment_id"] == booked.to_string()),
        "{for_admin}"
    );
    // Today: one appointment in each status. Each doctor's load leaves out the cancelled
    // one; an active doctor with no appointment is listed at 0.
    let today = &for_admin["days"][0];
    assert_eq!(today["total"], 6, "{for_admin}");
    for status in [
        "booked",
        "cancelled",
        "checked-in",
        "fulfilled",
        "in-progress",
        "noshow",
    ] {
        assert_eq!(today["by_status"][status], 1, "{status}: {for_admin}");
    }
    let load = |doctor: Uuid| {
        for_admin["doctor_load"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["doctor_id"] == doctor.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("{doctor} is not listed: {for_admin}"))
    };
    let watson = load(second);
    assert_eq!(watson["doctor_name"], "Watson");
    assert_eq!(watson["total"], 3, "{for_admin}");
    assert_eq!(watson["days"][0]["appointments"], 3, "{for_admin}");
    assert_eq!(
        load(north.doctor_id)["days"][0]["appointments"],
        2,
        "{for_admin}"
    );
    let idle = load(idle);
    assert_eq!(idle["doctor_name"], "Idle");
    assert_eq!(idle["total"], 0, "{for_admin}");
    assert_eq!(idle["days"].as_array().unwrap().len(), 8);
}

// ---------------------------------------------------------------------------------------
// Patient search.

#[tokio::test]
async fn patient_search_ignores_case_and_accents_and_finds_mrn_phone_and_birth_date() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let (zoe, p) = register(
        &app,
        &north.receptionist,
        json!({"name": {"given": "Zoë", "family": "Ångström"}, "birth_date": "1990-07-14",
               "sex": "female", "phone": "+44 20 7946 0958"}),
    )
    .await;
    let zoe = zoe.to_string();
    let mrn = ok(read(&app, &north.admin, &format!("/v1/patients/{zoe}"), p).await)["mrn"]
        .as_str()
        .unwrap()
        .to_owned();
    let number: u64 = mrn.trim_start_matches("MRN-").parse().unwrap();

    let search = |q: String| {
        let app = &app;
        let token = north.receptionist.clone();
        async move {
            let path = format!("/v1/patients?q={}", urlencode(&q));
            ok(read(app, &token, &path, p).await)["items"].clone()
        }
    };
    for q in [
        "ang",
        "ÅNG",
        "angström",
        "zoe",
        "Zoë",
        "ZO",
        "zoe ang",
        "Zoë Ångström",
        "angstrom zoe",
    ] {
        assert_eq!(
            ids(&search(q.into()).await, "patient_id"),
            vec![zoe.clone()],
            "q={q}"
        );
    }
    for q in ["angx", "oe", "strom", "zoe b"] {
        assert!(
            !ids(&search(q.into()).await, "patient_id").contains(&zoe),
            "q={q} must not find Zoë"
        );
    }
    // MRN: exact, any case, normalised.
    for q in [mrn.clone(), mrn.to_lowercase(), format!("mrn-{number}")] {
        assert_eq!(
            ids(&search(q.clone()).await, "patient_id"),
            vec![zoe.clone()],
            "q={q}"
        );
    }
    // Phone: a prefix of the digits, whatever the punctuation.
    for q in ["+44 20 79", "4420794", "(44) 2079-460958"] {
        assert_eq!(
            ids(&search(q.into()).await, "patient_id"),
            vec![zoe.clone()],
            "q={q}"
        );
    }
    assert!(search("4421".into()).await.as_array().unwrap().is_empty());
    // Date of birth.
    assert_eq!(
        ids(&search("1990-07-14".into()).await, "patient_id"),
        vec![zoe.clone()]
    );
    assert_eq!(
        ids(&search("1984-02-29".into()).await, "patient_id"),
        vec![north.patient_id.to_string()]
    );
    // The summary carries the name and MRN.
    let row = search("zoe".into()).await[0].clone();
    assert_eq!(row["name"], json!({"given": "Zoë", "family": "Ångström"}));
    assert_eq!(row["mrn"], mrn);

    // Bad parameters are 422s naming them.
    for (path, field) in [
        ("/v1/patients?q=123", "q"),
        ("/v1/patients?q=1990-02-30", "q"),
        ("/v1/patients?q=MRN-x", "q"),
        ("/v1/patients?limit=0", "limit"),
        ("/v1/patients?limit=201", "limit"),
        ("/v1/patients?limit=ten", "limit"),
        ("/v1/patients?page_token=bogus", "page_token"),
        ("/v1/patients?name=zoe", "name"),
        ("/v1/patients?q=a&q=b", "q"),
    ] {
        read(&app, &north.admin, path, p).await.names_field(field);
    }
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn patient_pages_list_everyone_once_in_name_order() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    // Same family names (the order falls to the given name, then the id), and accents.
    let names = [
        ("Émile", "Zola"),
        ("Anna", "Zola"),
        ("Anna", "Zola"),
        ("Bob", "Meyer"),
        ("Carl", "Ängel"),
        ("Dora", "angel"),
        ("Eve", "Brown"),
    ];
    let (ids, p) = register_names(&app, &north.receptionist, &names).await;
    let mut expected = BTreeSet::from([north.patient_id.to_string()]);
    expected.extend(ids.iter().map(Uuid::to_string));

    let mut seen: Vec<(String, String, String)> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/v1/patients?limit=3&page_token={t}"),
            None => "/v1/patients?limit=3".to_owned(),
        };
        let page = ok(read(&app, &north.nurse, &path, p).await);
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        for item in items {
            seen.push((
                item["name"]["family"].as_str().unwrap().to_owned(),
                item["name"]["given"].as_str().unwrap().to_owned(),
                item["patient_id"].as_str().unwrap().to_owned(),
            ));
        }
        match page.get("next_page_token") {
            Some(next) => {
                assert_eq!(items.len(), 3, "only the last page may be short");
                token = Some(next.as_str().unwrap().to_owned());
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    let listed: Vec<String> = seen.iter().map(|(_, _, id)| id.clone()).collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "no duplicates: {seen:?}");
    assert_eq!(unique, expected, "no gaps");
    let families: Vec<&str> = seen.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(
        families,
        ["Ängel", "angel", "Brown", "Example", "Meyer", "Zola", "Zola", "Zola"],
        "{seen:?}"
    );
    assert_eq!(seen[5].1, "Anna");
    assert_eq!(seen[6].1, "Anna");
    assert_eq!(seen[7].1, "Émile");
}

/// The list's order is code point order of the folded keys, whatever the database's
/// collation: a space and an apostrophe sort before letters, letters outside Latin after `z`.
/// A name search merges family-name and given-name matches in that order, across pages.
#[tokio::test]
async fn name_order_is_code_point_order_of_the_folded_keys_across_search_pages() {
    let names = [
        ("Ann", "Oakley"),
        ("Brian", "O'Brien"),
        ("Cleo", "Delacroix"),
        ("Dan", "Dean"),
        ("Ella", "de la Cruz"),
        ("Dora", "Zimmer"),
        ("Olga", "Ωmega"),
    ];
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let (_, p) = register_names(&app, &north.receptionist, &names).await;
    let families = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"]["family"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ok(read(&app, &north.nurse, "/v1/patients?limit=50", p).await);
    assert_eq!(
        families(&all),
        [
            "de la Cruz",
            "Dean",
            "Delacroix",
            "Example",
            "O'Brien",
            "Oakley",
            "Zimmer",
            "Ωmega"
        ]
    );

    // `d`: three family names and one given name (Dora Zimmer), two to a page.
    let first = ok(read(&app, &north.nurse, "/v1/patients?q=d&limit=2", p).await);
    assert_eq!(families(&first), ["de la Cruz", "Dean"]);
    let token = first["next_page_token"].as_str().unwrap();
    let path = format!("/v1/patients?q=d&limit=2&page_token={token}");
    let second = ok(read(&app, &north.nurse, &path, p).await);
    assert_eq!(families(&second), ["Delacroix", "Zimmer"]);
    assert!(second.get("next_page_token").is_none(), "{second}");

    for (q, expected) in [
        ("de la", vec!["de la Cruz"]),
        ("O'B", vec!["O'Brien"]),
        ("o", vec!["O'Brien", "Oakley", "Ωmega"]),
        ("ω", vec!["Ωmega"]),
        ("dora zim", vec!["Zimmer"]),
        ("zimmer d", vec!["Zimmer"]),
        ("ella de la c", vec!["de la Cruz"]),
    ] {
        let path = format!("/v1/patients?q={}", urlencoding(q));
        let page = ok(read(&app, &north.nurse, &path, p).await);
        assert_eq!(families(&page), expected, "q={q}");
    }
}

fn urlencoding(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Who sees what.

#[tokio::test]
async fn doctors_see_only_their_own_appointments_and_patients() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let (watson, watson_token) = hire_doctor(&app, &north, "Watson").await;
    let (theirs, _) = register(&app, &north.receptionist, patient_body("Sherlock")).await;
    let (other_appointment, p) = book(
        &app,
        &north.receptionist,
        theirs,
        watson,
        app.future(4, 11),
        "violin injury",
    )
    .await;
    let mine = north.appointment_id.to_string();
    let doctor = &north.doctor;

    // Appointments: their own without a filter or with their own id; 403 for another
    // doctor's id; 404 for another doctor's appointment.
    let listed = ok(read(&app, doctor, "/v1/appointments", p).await);
    assert_eq!(ids(&listed["items"], "appointment_id"), vec![mine.clone()]);
    let path = format!("/v1/appointments?doctor_id={}", north.doctor_id);
    assert_eq!(
        ids(
            &ok(read(&app, doctor, &path, p).await)["items"],
            "appointment_id"
        ),
        vec![mine.clone()]
    );
    let path = format!("/v1/appointments?doctor_id={watson}");
    read(&app, doctor, &path, p).await.problem(403);
    let path = format!("/v1/appointments/{other_appointment}");
    read(&app, doctor, &path, p).await.problem(404);
    assert_eq!(
        ok(read(&app, &watson_token, &path, p).await)["reason"],
        "violin injury"
    );
    // Front-desk roles see everyone's.
    let all = ok(read(&app, &north.receptionist, "/v1/appointments", p).await);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let path = format!("/v1/appointments?doctor_id={watson}");
    let watsons = ok(read(&app, &north.nurse, &path, p).await);
    assert_eq!(
        ids(&watsons["items"], "appointment_id"),
        vec![other_appointment.to_string()]
    );

    // Patients: only those with an appointment with them.
    let patients = ok(read(&app, doctor, "/v1/patients", p).await);
    assert_eq!(
        ids(&patients["items"], "patient_id"),
        vec![north.patient_id.to_string()]
    );
    ok(read(
        &app,
        doctor,
        &format!("/v1/patients/{}", north.patient_id),
        p,
    )
    .await);
    read(&app, doctor, &format!("/v1/patients/{theirs}"), p)
        .await
        .problem(404);
    let patients = ok(read(&app, &watson_token, "/v1/patients?q=sherlock", p).await);
    assert_eq!(
        ids(&patients["items"], "patient_id"),
        vec![theirs.to_string()]
    );
    ok(read(&app, &watson_token, &format!("/v1/patients/{theirs}"), p).await);
    // A cancelled appointment grants nothing (issue 12, finding 2): Watson loses the record.
    let cancelled = app
        .post(
            &format!("/v1/appointments/{other_appointment}/cancel"),
            &north.receptionist,
            json!({"reason": "moved away"}),
        )
        .await;
    let p = position(&cancelled);
    read(&app, &watson_token, &format!("/v1/patients/{theirs}"), p)
        .await
        .problem(404);
    let patients = ok(read(&app, &watson_token, "/v1/patients?q=sherlock", p).await);
    assert_eq!(ids(&patients["items"], "patient_id"), Vec::<String>::new());
    let view = ok(read(
        &app,
        &north.receptionist,
        &format!("/v1/appointments/{other_appointment}"),
        p,
    )
    .await);
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["cancel_reason"], "moved away");
}

#[tokio::test]
async fn receptionists_do_not_see_the_reason_for_a_visit() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let at = app.head().await;
    let one = format!("/v1/appointments/{}", north.appointment_id);
    for path in [one.as_str(), "/v1/appointments"] {
        for role in ["clinic_admin", "doctor", "nurse", "receptionist"] {
            let body = ok(read(&app, north.token(role), path, at).await);
            let view = if path == "/v1/appointments" {
                body["items"][0].clone()
            } else {
                body
            };
            let fields = view.as_object().unwrap();
            if role == "receptionist" {
                assert!(!fields.contains_key("reason"), "{role} on {path}: {view}");
            } else {
                assert_eq!(view["reason"], "check-up", "{role} on {path}: {view}");
            }
            assert_eq!(view["patient_name"], "Ada Example", "{role} on {path}");
            assert_eq!(view["doctor_name"], "doctor person", "{role} on {path}");
            assert_eq!(view["status"], "booked");
        }
    }
}

/// Every GET endpoint, and who may use it.
fn endpoints(c: &ClinicFixture) -> Vec<(String, &'static [&'static str])> {
    const PATIENTS: &[&str] = &["clinic_admin", "receptionist", "nurse", "doctor"];
    const STAFF: &[&str] = &["clinic_admin", "doctor", "nurse", "receptionist", "auditor"];
    const APPOINTMENTS: &[&str] = &["clinic_admin", "nurse", "receptionist", "doctor"];
    const DASHBOARD: &[&str] = &["clinic_admin", "doctor", "nurse", "receptionist"];
    const CLINIC: &[&str] = STAFF;
    const PLATFORM: &[&str] = &["platform_admin"];
    vec![
        ("/v1/patients".into(), PATIENTS),
        (format!("/v1/patients/{}", c.patient_id), PATIENTS),
        ("/v1/staff".into(), STAFF),
        (format!("/v1/staff/{}", c.doctor_id), STAFF),
        ("/v1/appointments".into(), APPOINTMENTS),
        (
            format!("/v1/appointments/{}", c.appointment_id),
            APPOINTMENTS,
        ),
        ("/v1/dashboard".into(), DASHBOARD),
        ("/v1/clinic".into(), CLINIC),
        ("/v1/clinics".into(), PLATFORM),
        ("/v1/platform/overview".into(), PLATFORM),
    ]
}

const ALL_ROLES: &[&str] = &[
    "platform_admin",
    "clinic_admin",
    "doctor",
    "nurse",
    "receptionist",
    "auditor",
];

#[tokio::test]
async fn each_endpoint_answers_its_roles_and_refuses_the_others_with_403() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let at = app.head().await;
    let token = |role: &str| -> String {
        if role == "platform_admin" {
            platform.clone()
        } else {
            north.token(role).to_owned()
        }
    };
    let mut failures = Vec::new();
    for (path, allowed) in endpoints(&north) {
        for role in ALL_ROLES {
            let answer = read(&app, &token(role), &path, at).await;
            let expected = if allowed.contains(role) { 200 } else { 403 };
            let problem_ok = expected == 200
                || (answer.header("content-type") == Some("application/problem+json")
                    && answer.body["type"] == "https://clinic.example/problems/forbidden");
            if answer.status != expected || !problem_ok {
                failures.push(format!(
                    "GET {path} as {role}: {} {}",
                    answer.status, answer.body
                ));
            }
        }
        let anonymous = app.send(Method::GET, &path, None, None).await;
        if anonymous.status != 401 {
            failures.push(format!("GET {path} without a token: {}", anonymous.status));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn another_clinics_records_are_404_and_malformed_ids_422() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;
    let at = app.head().await;
    let mut failures = Vec::new();
    // South's ids, asked by every North role that may read them; and ids that exist nowhere.
    for (north_path, allowed) in endpoints(&north) {
        let Some((prefix, _)) = north_path
            .rsplit_once('/')
            .filter(|(_, id)| id.parse::<Uuid>().is_ok())
        else {
            continue;
        };
        let south_path = endpoints(&south)
            .into_iter()
            .map(|(p, _)| p)
            .find(|p| p.starts_with(&format!("{prefix}/")))
            .unwrap();
        for role in allowed {
            // South's own staff see the record.
            ok(read(&app, south.token(role), &south_path, at).await);
            for path in [south_path.clone(), format!("{prefix}/{}", Uuid::now_v7())] {
                let answer = read(&app, north.token(role), &path, at).await;
                if answer.status != 404
                    || answer.body["type"] != "https://clinic.example/problems/not-found"
                {
                    failures.push(format!(
                        "GET {path} as North's {role}: {} {}",
                        answer.status, answer.body
                    ));
                }
            }
            let answer = read(&app, north.token(role), &format!("{prefix}/not-a-uuid"), at).await;
            if answer.status != 422 || answer.body["errors"][0]["field"] != "id" {
                failures.push(format!(
                    "GET {prefix}/not-a-uuid as {role}: {}",
                    answer.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Lists hold only the caller's clinic.
    let patients = ok(read(&app, &north.admin, "/v1/patients", at).await);
    assert_eq!(
        ids(&patients["items"], "patient_id"),
        vec![north.patient_id.to_string()]
    );
    let appointments = ok(read(&app, &north.admin, "/v1/appointments", at).await);
    assert_eq!(
        ids(&appointments["items"], "appointment_id"),
        vec![north.appointment_id.to_string()]
    );
    let staff = ok(read(&app, &north.admin, "/v1/staff", at).await);
    assert_eq!(staff["items"].as_array().unwrap().len(), 5);
    assert!(!staff.to_string().contains("south.example"));
    // A filter on another clinic's doctor finds nothing.
    let path = format!("/v1/appointments?doctor_id={}", south.doctor_id);
    assert!(ok(read(&app, &north.admin, &path, at).await)["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_platform_sees_clinics_and_counts_but_no_patient_data() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;
    let suspended = app
        .post(
            &format!("/v1/clinics/{}/suspend", south.id),
            &platform,
            json!({"reason": "unpaid"}),
        )
        .await;
    let (_, p) = register(
        &app,
        &north.receptionist,
        json!({"name": {"given": "Theodora", "family": "Quintessence"}, "birth_date": "1970-01-01",
               "sex": "female", "phone": "+49 170 5550123", "email": "theo@example.com"}),
    )
    .await;
    let p = p.max(position(&suspended));

    let overview = read(&app, &platform, "/v1/platform/overview", p).await;
    let raw = serde_json::to_string(&overview.body).unwrap();
    let overview = ok(overview);
    assert_eq!(overview["clinics"], 2);
    assert_eq!(overview["clinics_by_plan"]["professional"], 2);
    assert_eq!(overview["clinics_by_plan"]["trial"], 0);
    assert_eq!(overview["clinics_by_status"]["active"], 1);
    assert_eq!(overview["clinics_by_status"]["suspended"], 1);
    assert_eq!(overview["patients"], 3);
    assert_eq!(overview["staff"], 10);
    assert_eq!(overview["appointments"], 2);
    let clinics = read(&app, &platform, "/v1/clinics", p).await;
    let raw_clinics = serde_json::to_string(&clinics.body).unwrap();
    let clinics = ok(clinics);
    assert_eq!(clinics["items"].as_array().unwrap().len(), 2);
    let south_row = clinics["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "south")
        .unwrap()
        .clone();
    assert_eq!(south_row["status"], "suspended");
    assert_eq!(south_row["patient_count"], 1);
    for text in [
        "Theodora",
        "Quintessence",
        "Ada",
        "Example",
        "theo@example.com",
        "5550123",
        "MRN-",
    ] {
        assert!(!raw.contains(text), "the overview names `{text}`: {raw}");
        assert!(
            !raw_clinics.contains(text),
            "the clinic list names `{text}`: {raw_clinics}"
        );
    }
    // The platform admin reads no clinic's records.
    for path in [
        "/v1/patients",
        "/v1/appointments",
        "/v1/staff",
        "/v1/dashboard",
    ] {
        read(&app, &platform, path, p).await.problem(403);
    }
}

// ---------------------------------------------------------------------------------------
// Filters.

#[tokio::test]
async fn appointment_and_staff_filters_and_their_422s() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let early = app.future(2, 8);
    let late = app.future(6, 15);
    let (a_early, _) = book(
        &app,
        &north.receptionist,
        north.patient_id,
        north.doctor_id,
        early,
        "a",
    )
    .await;
    let (a_late, _) = book(
        &app,
        &north.receptionist,
        north.patient_id,
        north.doctor_id,
        late,
        "b",
    )
    .await;
    let cancelled = app
        .post(
            &format!("/v1/appointments/{a_late}/cancel"),
            &north.admin,
            json!({"reason": "r"}),
        )
        .await;
    let p = position(&cancelled);
    let list = |query: String| {
        let app = &app;
        let token = north.nurse.clone();
        async move {
            ids(
                &ok(read(app, &token, &format!("/v1/appointments?{query}"), p).await)["items"],
                "appointment_id",
            )
        }
    };
    let fixture = north.appointment_id.to_string();
    // Ordered by start time.
    assert_eq!(
        list(String::new()).await,
        vec![a_early.to_string(), fixture.clone(), a_late.to_string()]
    );
    assert_eq!(
        list("status=cancelled".into()).await,
        vec![a_late.to_string()]
    );
    assert_eq!(
        list("status=booked".into()).await,
        vec![a_early.to_string(), fixture.clone()]
    );
    let from = (early + chrono::Duration::hours(1)).to_rfc3339();
    assert_eq!(
        list(format!("from={}", urlencode(&from))).await,
        vec![fixture.clone(), a_late.to_string()]
    );
    // `from` is inclusive, `to` exclusive; an unencoded `+` in an offset still works.
    let to = late
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339();
    assert_eq!(
        list(format!("from={}&to={to}", early.to_rfc3339())).await,
        vec![a_early.to_string(), fixture.clone()]
    );
    assert_eq!(
        list(format!("patient_id={}&limit=1", north.patient_id)).await,
        vec![a_early.to_string()]
    );
    let page = ok(read(&app, &north.nurse, "/v1/appointments?limit=2", p).await);
    let next = page["next_page_token"].as_str().unwrap();
    assert_eq!(
        list(format!("limit=2&page_token={next}")).await,
        vec![a_late.to_string()]
    );

    for (query, field) in [
        ("status=done", "status"),
        ("status=Booked", "status"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", "to"),
        ("doctor_id=42", "doctor_id"),
        ("patient_id=x", "patient_id"),
        ("limit=500", "limit"),
        ("page_token=%%%", "page_token"),
        ("sort=start", "sort"),
    ] {
        read(&app, &north.admin, &format!("/v1/appointments?{query}"), p)
            .await
            .names_field(field);
    }

    // Staff filters.
    let hired = app
        .post(
            "/v1/staff",
            &north.admin,
            json!({"name": "Gone Person", "email": "gone@north.example", "role": "receptionist",
                   "password": PASSWORD}),
        )
        .await;
    let gone = hired.id();
    let deactivated = app
        .post(
            &format!("/v1/staff/{gone}/deactivate"),
            &north.admin,
            json!({}),
        )
        .await;
    let p = position(&deactivated);
    let staff = |query: &str| {
        let query = query.to_owned();
        let app = &app;
        let token = north.auditor.clone();
        async move { ok(read(app, &token, &format!("/v1/staff?{query}"), p).await)["items"].clone() }
    };
    assert_eq!(
        ids(&staff("role=doctor").await, "staff_id"),
        vec![north.doctor_id.to_string()]
    );
    assert_eq!(
        ids(&staff("active=false").await, "staff_id"),
        vec![gone.to_string()]
    );
    assert_eq!(staff("active=true").await.as_array().unwrap().len(), 5);
    assert_eq!(
        staff("role=receptionist&active=true")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(staff(&format!("department_id={}", Uuid::now_v7()))
        .await
        .as_array()
        .unwrap()
        .is_empty());
    for (query, field) in [
        ("role=janitor", "role"),
        ("role=platform_admin", "role"),
        ("active=yes", "active"),
        ("department_id=cardiology", "department_id"),
    ] {
        read(&app, &north.admin, &format!("/v1/staff?{query}"), p)
            .await
            .names_field(field);
    }
}

// ---------------------------------------------------------------------------------------
// X-Min-Position.

#[tokio::test]
async fn a_written_position_the_read_models_do_not_reach_is_a_503_after_2_seconds() {
    // No projection workers: the registration below is written but never applied.
    let app = spawn_app_with(|s| s.workers = None).await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "north").await;
    let written = app
        .post(
            "/v1/patients",
            &clinic.receptionist,
            patient_body("Unapplied"),
        )
        .await;
    assert_eq!(written.status, 201, "{written:?}");
    let position = written.body["position"].as_i64().unwrap();

    let started = Instant::now();
    let answer = read(&app, &clinic.admin, "/v1/patients", position).await;
    let waited = started.elapsed();
    let body = answer.problem(503);
    assert_eq!(body["type"], "https://clinic.example/problems/unavailable");
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(
        waited >= Duration::from_millis(1900) && waited <= Duration::from_secs(4),
        "waited {waited:?}"
    );
    // The query parameter works the same way.
    let started = Instant::now();
    let answer = app
        .send(
            Method::GET,
            &format!("/v1/patients?min_position={position}"),
            Some(&clinic.admin),
            None,
        )
        .await;
    answer.problem(503);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(started.elapsed() >= Duration::from_millis(1900));
}

/// Issue 12, finding 6: a position no event has (beyond the head of the store) cannot be
/// used to hold a request for the whole wait while it polls: it is a 422 naming where it came
/// from, at once.
#[tokio::test]
async fn a_position_beyond_the_head_of_the_store_is_a_422_at_once() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let head = app.head().await;
    for far in [
        head + 1,
        head + 1_000_000,
        9_223_372_036_854_775_806,
        i64::MAX,
    ] {
        let started = Instant::now();
        read(&app, &north.admin, "/v1/patients", far)
            .await
            .names_field("X-Min-Position");
        let answer = app
            .send(
                Method::GET,
                &format!("/v1/clinics?min_position={far}"),
                Some(&platform),
                None,
            )
            .await;
        answer.names_field("min_position");
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{far}: took {:?}",
            started.elapsed()
        );
    }
    // The head itself is written and reached: answered at once.
    let started = Instant::now();
    assert_eq!(
        read(&app, &north.admin, "/v1/patients", head).await.status,
        200
    );
    assert!(started.elapsed() < Duration::from_millis(1900));
}

#[tokio::test]
async fn a_malformed_min_position_is_a_400_and_a_reached_one_answers_at_once() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    for value in ["abc", "-1", "1.5", "99999999999999999999"] {
        app.send_with(
            Method::GET,
            "/v1/staff",
            Some(&north.admin),
            None,
            &[("x-min-position", value)],
        )
        .await
        .problem(400);
        app.send(
            Method::GET,
            &format!("/v1/staff?min_position={value}"),
            Some(&north.admin),
            None,
        )
        .await
        .problem(400);
    }
    // A position already applied (or 0) does not wait. The head is applied only once the
    // workers have caught up: under load they may still be behind when the fixture returns.
    app.db.caught_up().await;
    let at = app.head().await;
    for value in [at.to_string(), "0".to_owned()] {
        let started = Instant::now();
        ok(app
            .send_with(
                Method::GET,
                "/v1/clinic",
                Some(&north.admin),
                None,
                &[("x-min-position", &value)],
            )
            .await);
        assert!(started.elapsed() < Duration::from_millis(1500));
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_query_endpoint() {
    let doc = api::startup::openapi();
    let json = serde_json::to_value(&doc).unwrap();
    for path in [
        "/v1/patients",
        "/v1/patients/{id}",
        "/v1/staff",
        "/v1/staff/{id}",
        "/v1/appointments",
        "/v1/appointments/{id}",
        "/v1/dashboard",
        "/v1/clinic",
        "/v1/clinics",
        "/v1/platform/overview",
    ] {
        let op = &json["paths"][path]["get"];
        assert!(op.is_object(), "GET {path} is not documented");
        assert_eq!(op["security"], json!([{"bearer": []}]), "GET {path}");
        for status in ["200", "401", "403", "404", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "GET {path} documents no {status}"
            );
        }
        assert!(
            op["responses"]["403"]["content"]["application/problem+json"].is_object(),
            "GET {path}: 403 as problem+json"
        );
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            params.contains(&"X-Min-Position") && params.contains(&"min_position"),
            "GET {path}: {params:?}"
        );
    }
    // The commands on the same paths are still there.
    assert!(json["paths"]["/v1/patients"]["post"].is_object());
    assert!(json["paths"]["/v1/clinics"]["post"].is_object());
    assert!(json["paths"]["/v1/clinic"]["patch"].is_object());
}

/// "New patients this week" sums the clinic's registrations per 15-minute bucket from the
/// local Monday 00:00 on: a registration at 23:59 on Sunday is last week's, one at 00:00 on
/// Monday this week's, and the buckets agree with the rows.
#[tokio::test]
async fn new_patients_this_week_start_at_the_local_monday_midnight() {
    use chrono::TimeZone;
    // Sunday 2027-01-17, 22:00 in Berlin; the local week starts at 23:00 UTC.
    let app = spawn_app_at(Utc.with_ymd_and_hms(2027, 1, 17, 21, 0, 0).unwrap()).await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let monday = Utc.with_ymd_and_hms(2027, 1, 17, 23, 0, 0).unwrap();
    // A fresh token each time: the clock moves past an access token's lifetime.
    let register = |given: &'static str| {
        let app = &app;
        let email = north.emails["receptionist"].clone();
        async move {
            let token = app.login(&email).await;
            position(&app.post("/v1/patients", &token, patient_body(given)).await)
        }
    };
    let set_clock = |at: chrono::DateTime<Utc>| app.advance(at - app.now());
    set_clock(monday - chrono::Duration::minutes(30));
    register("Sunday").await;
    set_clock(monday - chrono::Duration::seconds(1));
    register("Late").await;
    set_clock(monday);
    register("Midnight").await;
    set_clock(monday + chrono::Duration::minutes(14));
    register("Early").await;
    set_clock(monday + chrono::Duration::minutes(40));
    let last = register("Later").await;
    let admin = app.login(&north.emails["clinic_admin"]).await;
    let dashboard = ok(read(&app, &admin, "/v1/dashboard", last).await);
    assert_eq!(dashboard["week_start"], "2027-01-18", "{dashboard}");
    assert_eq!(dashboard["new_patients_this_week"], 3, "{dashboard}");

    // The buckets hold every registration of the clinic (the fixture's patient included), in
    // the bucket of its time.
    let mut owner = app.db.owner_connection().await;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT to_char(bucket AT TIME ZONE 'UTC', 'DD HH24:MI'), registered::int8 \
         FROM rm.patient_registrations WHERE clinic_id = $1 ORDER BY bucket",
    )
    .bind(north.id)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let patients: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.patients WHERE clinic_id = $1")
        .bind(north.id)
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.1).sum::<i64>(), patients, "{rows:?}");
    let tail: Vec<(String, i64)> = rows[rows.len() - 4..].to_vec();
    assert_eq!(
        tail,
        vec![
            ("17 22:30".to_owned(), 1),
            ("17 22:45".to_owned(), 1),
            ("17 23:00".to_owned(), 2),
            ("17 23:30".to_owned(), 1)
        ]
    );
}

/// The patients' writes fold names with `rm_fold`'s body written out (PostgreSQL does not
/// inline the function); searches fold the query with `rm_fold` itself. The two must agree,
/// or a search misses the rows it should find.
#[tokio::test]
async fn the_written_out_fold_folds_like_rm_fold() {
    let db = TestDb::new().await;
    let mut conn = db.owner_connection().await;
    let inline = projections::patients::fold_expression("$1::text");
    let names = [
        Some("Zoë"),
        Some("ÅNGSTRÖM"),
        Some("Łukasz Żółć"),
        Some("Nguyễn Thị Minh Khai"),
        Some("李小龍"),
        Some("straße ǅ ﬁ Ｆｕｌｌ"),
        Some("Émile 🎉 O'Brien-Smith"),
        Some(""),
        Some("  spaced  "),
        None,
    ];
    for name in names {
        let (folded, written): (String, String) =
            sqlx::query_as(&format!("SELECT rm_fold($1::text), {inline}"))
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(written, folded, "{name:?}");
    }
    let (zoe,): (String,) = sqlx::query_as(&format!("SELECT {inline}"))
        .bind("Zoë")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(zoe, "zoe");
}

/// Found by `scripts/fuzz-api`: `?to=`, `?until=`, `?patient_id=` and `?department_id=` were
/// read as "absent" and answered 200. Every query parameter of every read endpoint (walked
/// from the OpenAPI document, so a later one is covered too), given empty, is a 422 naming it
/// for some role (`min_position`: the documented 400), and a 2xx for none.
#[tokio::test]
async fn an_empty_query_parameter_is_refused_by_every_endpoint() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "emptyq").await;
    let doc = serde_json::to_value(api::startup::openapi()).unwrap();
    let tokens = [
        &platform,
        &north.admin,
        &north.doctor,
        &north.nurse,
        &north.receptionist,
        &north.auditor,
    ];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(params) = item["get"]["parameters"].as_array() else {
            continue;
        };
        let path = path.replace("{id}", &north.doctor_id.to_string());
        if path.contains('{') {
            continue;
        }
        for param in params.iter().filter(|p| p["in"] == "query") {
            let name = param["name"].as_str().unwrap();
            let mut named = false;
            for token in tokens {
                let answer = app
                    .send(Method::GET, &format!("{path}?{name}="), Some(token), None)
                    .await;
                assert!(
                    !(200..300).contains(&answer.status),
                    "GET {path}?{name}= answered {answer:?}"
                );
                // `min_position` is read apart (with `X-Min-Position`): a malformed one is the
                // documented 400.
                named |= (answer.status == 422
                    && answer.body["errors"]
                        .as_array()
                        .is_some_and(|es| es.iter().any(|e| e["field"] == name)))
                    || (name == "min_position" && answer.status == 400);
            }
            assert!(named, "GET {path}?{name}= was a 422 naming it for no role");
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} query parameters");
}

/// The clinic's dashboard, and a doctor's, list the next active appointments without reading
/// the cancelled ones ahead of them: along a partial index of the active appointments,
/// whatever the number of cancellations. One scan in start order filtered on the status read
/// every cancelled appointment first (1,454 rows for 10 listed at the benchmark's large
/// clinic; the doctor's statement did so until 2026-12-07). Rows are written straight into
/// the read model (no workers), around a fixed instant.
#[tokio::test]
async fn the_dashboard_lists_the_next_appointments_without_reading_the_cancelled_ones_ahead() {
    use chrono::{DateTime, Duration as Span, TimeZone};
    use domain::ids::{ClinicId, StaffId};
    use projections::dashboard::{dashboard, dashboard_statement};

    let db = TestDb::new().await;
    let mut owner = db.owner_connection().await;
    let clinic = Uuid::now_v7();
    let (doctor, patient) = (Uuid::now_v7(), Uuid::now_v7());
    let now: DateTime<Utc> = Utc.with_ymd_and_hms(2030, 3, 4, 8, 0, 0).unwrap();
    // 2,000 cancelled appointments from 9 days ahead (past the dashboard's 8 days), then
    // 2,000 of every status, 15 minutes apart: booked, checked in, in progress, cancelled, in
    // turn. (With as many active ones as cancelled, the planner expects to find the active
    // ones soon in start order, as it did at the benchmark's large clinic.)
    let statuses = ["booked", "checked-in", "in-progress", "cancelled"];
    let mut rows: Vec<(DateTime<Utc>, String)> = (0..2_000)
        .map(|i| {
            (
                now + Span::days(9) + Span::minutes(15 * i),
                "cancelled".to_owned(),
            )
        })
        .collect();
    let active_from = now + Span::days(40);
    rows.extend((0..2_000).map(|i| {
        (
            active_from + Span::minutes(15 * i),
            statuses[i as usize % 4].to_owned(),
        )
    }));
    let (starts, kinds): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
    sqlx::query(
        "INSERT INTO rm.appointments (clinic_id, appointment_id, patient_id, doctor_id, start_at, \
                                      end_at, status, booked_at, updated_at, version) \
         SELECT $1, gen_random_uuid(), $2, $3, s, s + interval '15 minutes', k, $4, $4, 1 \
         FROM unnest($5::timestamptz[], $6::text[]) AS t(s, k)",
    )
    .bind(clinic)
    .bind(patient)
    .bind(doctor)
    .bind(now - Span::days(1))
    .bind(&starts)
    .bind(&kinds)
    .execute(&mut owner)
    .await
    .unwrap();
    // The clinic's patients: the appointments' one and 4,999 others. (As a join, the
    // patients' names were once planned as a hash join over every patient of the clinic.)
    sqlx::query(
        "INSERT INTO rm.patients (clinic_id, patient_id, mrn, given, family, given_key, family_key, \
                                  birth_date, sex, status, record, registered_at, updated_at, version) \
         SELECT $1, CASE WHEN i = 0 THEN $2 ELSE gen_random_uuid() END, 'M' || i, 'Given' || i, \
                'Family', 'given' || i, 'family', '1990-01-01', 'female', 'active', '{}', $3, $3, 1 \
         FROM generate_series(0, 4999) i",
    )
    .bind(clinic)
    .bind(patient)
    .bind(now - Span::days(1))
    .execute(&mut owner)
    .await
    .unwrap();
    sqlx::query("ANALYZE rm.appointments, rm.patients")
        .execute(&mut owner)
        .await
        .unwrap();

    // The next ten: the first ten active ones, in start order, none cancelled; for the
    // clinic and for the doctor (all of them are the doctor's).
    let pool = db.owner_pool().await;
    let expected: Vec<(DateTime<Utc>, &str)> = (0..20)
        .filter(|i| i % 4 != 3)
        .take(10)
        .map(|i| {
            (
                active_from + Span::minutes(15 * i),
                statuses[i as usize % 4],
            )
        })
        .collect();
    for who in [None, Some(doctor)] {
        let board = dashboard(
            &pool,
            ClinicId::from_uuid(clinic),
            who.map(StaffId::from_uuid),
            now,
            false,
        )
        .await
        .unwrap();
        let listed: Vec<(DateTime<Utc>, &str)> = board
            .next_appointments
            .iter()
            .map(|a| (a.start, a.status.as_str()))
            .collect();
        assert_eq!(listed, expected, "doctor {who:?}");
        assert!(
            board
                .next_appointments
                .iter()
                .all(|a| a.patient_name.as_deref() == Some("Given0 Family")),
            "{:?}",
            board.next_appointments
        );

        // Its statement, in the transaction the dashboard reads in (generic plan), reads the
        // listed ones and a few more, not the 2,000 cancelled ones (nor the 500 cancelled
        // among the active ones: the doctor's statement, along the doctor's appointments in
        // start order, read them all until 2026-12-07).
        let mut tx = projections::scope::clinic_generic_plan_tx(&pool, ClinicId::from_uuid(clinic))
            .await
            .unwrap();
        let (plan,): (serde_json::Value,) = sqlx::query_as(&format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) {}",
            dashboard_statement(who.is_some())
        ))
        .bind(clinic)
        .bind(projections::dashboard::DASHBOARD_DAYS as i32)
        .bind(now)
        .bind(now - Span::hours(domain::appointment::MAX_DURATION_HOURS))
        .bind(projections::dashboard::DASHBOARD_NEXT)
        .bind(who)
        .bind(false)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        let scanned = crate::helpers::rows_scanned(&plan[0]["Plan"]);
        assert!(
            scanned <= 100.0,
            "doctor {who:?}: {scanned} rows scanned: {plan:#}"
        );
    }
}
