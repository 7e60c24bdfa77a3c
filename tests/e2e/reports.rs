//! Reports (issue 13): a clinic's monthly report checked against figures computed here, from
//! the clinic's events alone; its CSV form; who may read it; the platform overview's use of
//! the plans; and the platform admin seeing no patient data on any endpoint.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Europe::Berlin;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// A Berlin wall-clock time as an instant.
fn berlin(s: &str) -> DateTime<Utc> {
    use chrono::TimeZone as _;
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    Berlin
        .from_local_datetime(&naive)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

async fn book(app: &TestApp, token: &str, patient: Uuid, doctor: Uuid, start: &str) -> Uuid {
    let start = berlin(start);
    let booked = app
        .post(
            "/v1/appointments",
            token,
            json!({"patient_id": patient, "doctor_id": doctor, "start": start,
                   "end": start + Duration::minutes(30), "reason": "check-up"}),
        )
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    booked.id()
}

async fn act(app: &TestApp, token: &str, appointment: Uuid, action: &str, body: Value) {
    let done = app
        .post(
            &format!("/v1/appointments/{appointment}/{action}"),
            token,
            body,
        )
        .await;
    assert_eq!(done.status, 200, "{action}: {done:?}");
}

/// What the March report must say, computed from the clinic's events only.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    by_status: BTreeMap<String, i64>,
    new_patients: i64,
    bookings_per_doctor: BTreeMap<String, i64>,
    hours: BTreeMap<i64, i64>,
    lead_hours: Option<f64>,
}

async fn expected_from_events(
    app: &TestApp,
    clinic: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Expected {
    let mut conn = app.db.owner_connection().await;
    let rows: Vec<(
        String,
        String,
        sqlx::types::Json<Value>,
        sqlx::types::Json<Value>,
    )> = sqlx::query_as(
        "SELECT aggregate_id, event_type, payload, metadata FROM events \
             WHERE tenant_id = $1 ORDER BY transaction_id, position",
    )
    .bind(clinic)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    struct Visit {
        doctor: String,
        start: DateTime<Utc>,
        booked: DateTime<Utc>,
        status: &'static str,
    }
    let mut visits: HashMap<String, Visit> = HashMap::new();
    let mut expected = Expected::default();
    let instant = |v: &Value| utc(v.as_str().unwrap());
    for (id, kind, payload, metadata) in rows {
        let body = &payload.0[&kind];
        let occurred = instant(&metadata.0["occurred_at"]);
        match kind.as_str() {
            "PatientRegistered" if occurred >= from && occurred < to => expected.new_patients += 1,
            "AppointmentBooked" => {
                let doctor = body["doctor_id"].as_str().unwrap().to_owned();
                if occurred >= from && occurred < to {
                    *expected
                        .bookings_per_doctor
                        .entry(doctor.clone())
                        .or_default() += 1;
                }
                visits.insert(
                    id,
                    Visit {
                        doctor,
                        start: instant(&body["slot"]["start"]),
                        booked: instant(&body["at"]),
                        status: "booked",
                    },
                );
            }
            "AppointmentRescheduled" => {
                visits.get_mut(&id).unwrap().start = instant(&body["to"]["start"]);
            }
            other => {
                let status = match other {
                    "AppointmentCancelled" => "cancelled",
                    "PatientCheckedIn" => "checked-in",
                    "AppointmentStarted" => "in-progress",
                    "AppointmentCompleted" => "fulfilled",
                    "AppointmentMarkedNoShow" => "noshow",
                    _ => continue,
                };
                visits.get_mut(&id).unwrap().status = status;
            }
        }
    }
    let mut lead = Vec::new();
    for v in visits.values().filter(|v| v.start >= from && v.start < to) {
        *expected.by_status.entry(v.status.to_owned()).or_default() += 1;
        if v.status != "cancelled" {
            let hour = i64::from(v.start.with_timezone(&Berlin).hour());
            *expected.hours.entry(hour).or_default() += 1;
            lead.push((v.start - v.booked).num_seconds() as f64 / 3600.0);
        }
        let _ = &v.doctor;
    }
    expected.lead_hours = (!lead.is_empty()).then(|| lead.iter().sum::<f64>() / lead.len() as f64);
    expected
}

#[tokio::test]
async fn the_monthly_report_matches_figures_computed_from_the_events() {
    let app = spawn_app_at(utc("2027-02-20T08:00:00Z")).await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "report").await;
    let desk = north.receptionist.clone();
    let second = app
        .post(
            "/v1/staff",
            &north.admin,
            json!({"name": "Second Doctor", "email": "doc2@report.example", "role": "doctor",
                   "licence_number": "LIC-2", "password": PASSWORD}),
        )
        .await;
    assert_eq!(second.status, 201, "{second:?}");
    let (doc1, doc2) = (north.doctor_id, second.id());
    let hours = app
        .put(
            &format!("/v1/staff/{doc2}/working-hours"),
            &north.admin,
            all_day_hours(),
        )
        .await;
    assert_eq!(hours.status, 200, "{hours:?}");
    let mut patients = vec![north.patient_id];
    for name in ["Feb1", "Feb2", "Feb3"] {
        let p = app.post("/v1/patients", &desk, patient_body(name)).await;
        assert_eq!(p.status, 201, "{p:?}");
        patients.push(p.id());
    }
    // Booked in February: three visits in March, one in April.
    let a1 = book(&app, &desk, patients[0], doc1, "2027-03-03 10:00").await;
    let a2 = book(&app, &desk, patients[1], doc2, "2027-03-03 11:00").await;
    let a3 = book(&app, &desk, patients[2], doc1, "2027-03-10 14:00").await;
    book(&app, &desk, patients[3], doc1, "2027-04-02 09:00").await;

    // March (Berlin) begins at 23:00 UTC on 28 February.
    app.clock.set(utc("2027-02-28T23:30:00Z"));
    let desk = app.login(&north.emails["receptionist"]).await;
    let nurse = app.login(&north.emails["nurse"]).await;
    for name in ["Mar1", "Mar2"] {
        let p = app.post("/v1/patients", &desk, patient_body(name)).await;
        assert_eq!(p.status, 201, "{p:?}");
        patients.push(p.id());
    }
    let a5 = book(&app, &desk, patients[4], doc2, "2027-03-05 10:00").await;
    book(&app, &desk, patients[5], doc1, "2027-03-20 16:00").await;
    let a7 = book(&app, &desk, patients[0], doc2, "2027-03-25 10:15").await;
    act(&app, &desk, a7, "cancel", json!({"reason": "moved away"})).await;

    // Later in March: the visits' outcomes.
    app.clock.set(utc("2027-03-12T09:00:00Z"));
    let desk = app.login(&north.emails["receptionist"]).await;
    let nurse_again = app.login(&north.emails["nurse"]).await;
    let _ = nurse;
    act(&app, &desk, a1, "no-show", json!({})).await;
    act(&app, &desk, a2, "check-in", json!({})).await;
    act(&app, &nurse_again, a2, "start", json!({})).await;
    act(&app, &nurse_again, a2, "complete", json!({})).await;
    act(&app, &desk, a3, "check-in", json!({})).await;
    act(&app, &desk, a5, "no-show", json!({})).await;

    let admin = app.login(&north.emails["clinic_admin"]).await;
    let report = app
        .read_at(
            "/v1/reports/monthly?month=2027-03",
            &admin,
            app.head().await,
        )
        .await;
    assert_eq!(report.status, 200, "{report:?}");
    let r = &report.body;
    let (from, to) = (berlin("2027-03-01 00:00"), berlin("2027-04-01 00:00"));
    assert_eq!(r["from"].as_str().map(utc), Some(from));
    assert_eq!(r["to"].as_str().map(utc), Some(to));
    let expected = expected_from_events(&app, north.id, from, to).await;

    for status in [
        "booked",
        "checked-in",
        "in-progress",
        "fulfilled",
        "cancelled",
        "noshow",
    ] {
        assert_eq!(
            r["appointments_by_status"][status],
            expected.by_status.get(status).copied().unwrap_or(0),
            "{status}: {r}"
        );
    }
    // The history was built to cover each figure, not to leave them at zero.
    assert_eq!(expected.by_status["noshow"], 2);
    assert_eq!(expected.by_status["cancelled"], 1);
    let noshow = expected.by_status["noshow"];
    let counted = noshow
        + ["fulfilled", "checked-in", "in-progress"]
            .iter()
            .map(|s| expected.by_status.get(*s).copied().unwrap_or(0))
            .sum::<i64>();
    assert_eq!(r["no_show_rate"]["noshow"], noshow);
    assert_eq!(r["no_show_rate"]["counted"], counted);
    assert_eq!(
        r["no_show_rate"]["rate"].as_f64(),
        Some(noshow as f64 / counted as f64)
    );
    assert_eq!(r["new_patients"], expected.new_patients);
    assert_eq!(expected.new_patients, 2);
    let per_doctor: BTreeMap<String, i64> = r["bookings_per_doctor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["doctor_id"].as_str().unwrap().to_owned(),
                d["bookings"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_doctor, expected.bookings_per_doctor);
    let names: Vec<&str> = r["bookings_per_doctor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["doctor_name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Second Doctor"), "{names:?}");
    let hours: BTreeMap<i64, i64> = r["busiest_hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["hour"].as_i64().unwrap(),
                h["appointments"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(hours, expected.hours);
    let busiest: Vec<i64> = r["busiest_hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["appointments"].as_i64().unwrap())
        .collect();
    assert!(
        busiest.windows(2).all(|w| w[0] >= w[1]),
        "busiest first: {busiest:?}"
    );
    let lead = r["average_lead_time_hours"].as_f64().unwrap();
    assert!(
        (lead - expected.lead_hours.unwrap()).abs() < 1e-6,
        "{lead} vs {expected:?}"
    );

    // The same figures as CSV.
    let csv = app
        .client
        .get(app.url("/v1/reports/monthly?month=2027-03"))
        .bearer_auth(&admin)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(
        csv.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let text = csv.text().await.unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["metric", "key", "label", "value"]);
    let value = |metric: &str, key: &str| {
        rows.iter()
            .find(|r| r[0] == metric && r[1] == key)
            .map(|r| r[3].to_owned())
            .unwrap_or_else(|| panic!("no {metric},{key} in {text}"))
    };
    assert_eq!(value("new_patients", ""), expected.new_patients.to_string());
    assert_eq!(
        value("appointments_by_status", "noshow"),
        noshow.to_string()
    );
    assert_eq!(value("month", ""), "2027-03");
    for (doctor, n) in &expected.bookings_per_doctor {
        assert_eq!(value("bookings_per_doctor", doctor), n.to_string());
    }

    // February: the four bookings of February, and the registrations of February.
    let february = app
        .read_at(
            "/v1/reports/monthly?month=2027-02",
            &admin,
            app.head().await,
        )
        .await;
    let feb = expected_from_events(&app, north.id, berlin("2027-02-01 00:00"), from).await;
    assert_eq!(february.body["new_patients"], feb.new_patients);
    let feb_bookings: i64 = february.body["bookings_per_doctor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["bookings"].as_i64().unwrap())
        .sum();
    assert_eq!(feb_bookings, feb.bookings_per_doctor.values().sum::<i64>());
}

#[tokio::test]
async fn only_a_clinic_admin_reads_the_report_and_a_bad_month_names_the_field() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "report-roles").await;
    for role in ["doctor", "nurse", "receptionist", "auditor"] {
        let answer = app
            .send(
                reqwest::Method::GET,
                "/v1/reports/monthly?month=2027-01",
                Some(north.token(role)),
                None,
            )
            .await;
        answer.problem(403);
    }
    let answer = app
        .send(
            reqwest::Method::GET,
            "/v1/reports/monthly?month=2027-01",
            Some(&platform),
            None,
        )
        .await;
    answer.problem(403);
    for query in [
        "",
        "?month=2027-1",
        "?month=2027-13",
        "?month=March",
        "?month=2027-01%00",
        "?month=2027-01&month=2027-02",
    ] {
        let answer = app
            .send(
                reqwest::Method::GET,
                &format!("/v1/reports/monthly{query}"),
                Some(&north.admin),
                None,
            )
            .await;
        answer.names_field("month");
    }
    let extra = app
        .send(
            reqwest::Method::GET,
            "/v1/reports/monthly?month=2027-01&clinic_id=x",
            Some(&north.admin),
            None,
        )
        .await;
    extra.names_field("clinic_id");
    // Another clinic's month is not reachable: the report is always the caller's own.
    let south = app.clinic(&platform, "report-south").await;
    let theirs = app
        .read_at(
            "/v1/reports/monthly?month=2027-01",
            &south.admin,
            app.head().await,
        )
        .await;
    let ours = app
        .read_at(
            "/v1/reports/monthly?month=2027-01",
            &north.admin,
            app.head().await,
        )
        .await;
    assert_eq!(theirs.body["new_patients"], 1);
    assert_eq!(ours.body["new_patients"], 1);
    assert_eq!(
        theirs.body["bookings_per_doctor"][0]["doctor_id"],
        south.doctor_id.to_string()
    );
}

#[tokio::test]
async fn the_platform_overview_shows_bookings_this_month_and_the_clinics_closest_to_their_limits() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let big = app.clinic(&platform, "overview-big").await;
    let (_, trial_admin) = app.clinic_on(&platform, "overview-trial", "trial").await;
    // The trial's second (and last) doctor: 2 of 2 doctors is the fullest limit anywhere.
    for n in 1..=2 {
        let hired = app
            .post(
                "/v1/staff",
                &trial_admin,
                json!({"name": format!("Doctor {n}"), "email": format!("d{n}@overview-trial.example"),
                       "role": "doctor", "licence_number": "LIC", "password": PASSWORD}),
            )
            .await;
        assert_eq!(hired.status, 201, "{hired:?}");
    }
    let overview = app
        .read_at("/v1/platform/overview", &platform, app.head().await)
        .await;
    assert_eq!(overview.status, 200, "{overview:?}");
    let o = &overview.body;
    assert_eq!(o["clinics_by_plan"]["trial"], 1);
    assert_eq!(o["clinics_by_plan"]["professional"], 1);
    let bookings: HashMap<&str, i64> = o["bookings_this_month"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["code"].as_str().unwrap(), c["bookings"].as_i64().unwrap()))
        .collect();
    assert_eq!(bookings["overview-big"], 1, "the fixture's booking");
    assert_eq!(bookings["overview-trial"], 0);
    let closest = o["closest_to_limits"].as_array().unwrap();
    assert_eq!(closest[0]["code"], "overview-trial", "{o}");
    assert_eq!(closest[0]["limit"], "active_doctors");
    assert_eq!(closest[0]["in_use"], 2);
    assert_eq!(closest[0]["allowed"], 2);
    assert_eq!(closest[0]["ratio"], 1.0);
    let big_row = closest
        .iter()
        .find(|c| c["clinic_id"] == big.id.to_string())
        .expect("the professional clinic is listed too");
    assert!(big_row["ratio"].as_f64().unwrap() < 1.0);
}

/// Every string a JSON value holds, keys included.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_platform_admin_sees_no_patient_data_on_any_endpoint() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "no-phi").await;
    let at = app.head().await;
    // The patient's identifying data, as stored.
    let patient = app
        .read_at(
            &format!("/v1/patients/{}", north.patient_id),
            &north.admin,
            at,
        )
        .await;
    assert_eq!(patient.status, 200, "{patient:?}");
    let mut identifying = vec![
        north.patient_id.to_string(),
        patient.body["mrn"].as_str().unwrap().to_owned(),
        patient.body["name"]["given"].as_str().unwrap().to_owned(),
        patient.body["name"]["family"].as_str().unwrap().to_owned(),
        patient.body["birth_date"].as_str().unwrap().to_owned(),
        "penicillin".to_owned(),
        "check-up".to_owned(),
    ];
    identifying.push(north.appointment_id.to_string());

    // Every GET of the OpenAPI document, with the clinic's ids in its path.
    let doc = api::startup::openapi();
    let mut reached = 0;
    for (path, item) in &doc.paths.paths {
        if item.get.is_none() || path.starts_with("/docs") {
            continue;
        }
        let concrete = path
            .replace("{id}", &north.patient_id.to_string())
            .replace("{module}", "appointments");
        let mut paths = vec![concrete];
        if path.contains("{id}") {
            for id in [north.appointment_id, north.doctor_id, north.id] {
                paths.push(path.replace("{id}", &id.to_string()));
            }
        }
        for p in paths {
            let query = if p.starts_with("/v1/reports/monthly") {
                "?month=2027-01"
            } else {
                ""
            };
            let answer = app
                .send(
                    reqwest::Method::GET,
                    &format!("{p}{query}"),
                    Some(&platform),
                    None,
                )
                .await;
            if answer.status == 200 {
                reached += 1;
            }
            let mut seen = Vec::new();
            strings(&answer.body, &mut seen);
            let text = answer.body.to_string();
            for secret in &identifying {
                assert!(
                    !seen.iter().any(|s| s.contains(secret.as_str()))
                        && !text.contains(secret.as_str()),
                    "GET {p} shows the platform admin {secret:?}: {text}"
                );
            }
        }
    }
    // The platform's own endpoints answered (the test did not pass by being refused).
    assert!(reached >= 4, "only {reached} answered 200");
}
