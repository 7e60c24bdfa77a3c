//! Plans (issue 13): the four plans and their limits at `GET /v1/plans`, each limit enforced at
//! exactly its number and under concurrency, downgrades, the trial's end, plan changes in the
//! clinic's history, and the stored events of the old plan names.

use chrono::Duration;
use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn hire_body(code: &str, n: usize, role: &str) -> Value {
    let mut body = json!({
        "name": format!("{role} {n}"),
        "email": format!("{role}-{n}@{code}.example"),
        "role": role,
        "password": PASSWORD
    });
    if role == "doctor" {
        body["licence_number"] = json!(format!("LIC-{n}"));
    }
    body
}

async fn hire(app: &TestApp, admin: &str, code: &str, n: usize, role: &str) -> Answer {
    app.post("/v1/staff", admin, hire_body(code, n, role)).await
}

/// Asserts a 402 `plan-limit` naming `limit`, its number, the use and the plan.
#[track_caller]
fn assert_over(answer: &Answer, plan: &str, limit: &str, allowed: u64, in_use: u64) {
    let body = answer.problem(402);
    assert_eq!(
        body["type"], "https://clinic.example/problems/plan-limit",
        "{body}"
    );
    assert_eq!(body["plan"], plan, "{body}");
    assert_eq!(body["limit"], limit, "{body}");
    assert_eq!(body["allowed"], allowed, "{body}");
    assert_eq!(body["in_use"], in_use, "{body}");
}

#[tokio::test]
async fn the_plans_and_their_limits_are_listed_for_any_signed_in_caller() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "plans-list", "basic").await;
    for token in [platform.as_str(), admin.as_str()] {
        let answer = app
            .send(reqwest::Method::GET, "/v1/plans", Some(token), None)
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let items = answer.body["items"].as_array().unwrap();
        let names: Vec<&str> = items.iter().map(|p| p["plan"].as_str().unwrap()).collect();
        assert_eq!(names, ["trial", "basic", "professional", "enterprise"]);
        // Each row is the domain's (the one place the numbers are written).
        for (row, plan) in items.iter().zip(domain::plan::PlanLimits::all()) {
            assert_eq!(row["trial_days"], json!(plan.trial_days));
            assert_eq!(row["limits"]["active_doctors"], json!(plan.active_doctors));
            assert_eq!(row["limits"]["active_staff"], json!(plan.active_staff));
            assert_eq!(row["limits"]["patients"], json!(plan.patients));
            assert_eq!(
                row["limits"]["monthly_bookings"],
                json!(plan.monthly_bookings)
            );
            assert_eq!(row["modules"], json!(plan.modules));
        }
        assert_eq!(items[0]["trial_days"], 30);
        assert_eq!(items[0]["limits"]["active_doctors"], 2);
        assert_eq!(items[3]["limits"]["patients"], Value::Null);
    }
    let anonymous = app
        .send(reqwest::Method::GET, "/v1/plans", None, None)
        .await;
    anonymous.problem(401);
}

#[tokio::test]
async fn staff_and_doctor_limits_hold_at_exactly_their_number() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let code = "trial-staff";
    let (_, admin) = app.clinic_on(&platform, code, "trial").await;
    // The trial: 2 doctors, 10 staff (the admin is one).
    for n in 1..=2 {
        let hired = hire(&app, &admin, code, n, "doctor").await;
        assert_eq!(hired.status, 201, "doctor {n}: {hired:?}");
    }
    let before = app.event_count().await;
    assert_over(
        &hire(&app, &admin, code, 3, "doctor").await,
        "trial",
        "active_doctors",
        2,
        2,
    );
    assert_eq!(
        app.event_count().await,
        before,
        "a refused hire writes nothing"
    );
    let mut nurses = Vec::new();
    for n in 1..=7 {
        let hired = hire(&app, &admin, code, n, "nurse").await;
        assert_eq!(hired.status, 201, "nurse {n}: {hired:?}");
        nurses.push(hired.id());
    }
    // 10 in use: the 11th of any role is refused.
    assert_over(
        &hire(&app, &admin, code, 8, "nurse").await,
        "trial",
        "active_staff",
        10,
        10,
    );
    // A nurse made doctor would be a third doctor.
    let promoted = app
        .put(
            &format!("/v1/staff/{}/role", nurses[0]),
            &admin,
            json!({"role": "doctor"}),
        )
        .await;
    // (A nurse has no licence: the domain's own answer comes first.)
    promoted.names_field("licence_number");
    // A deactivation makes room; reactivating the same member then goes past it again.
    let gone = app
        .post(
            &format!("/v1/staff/{}/deactivate", nurses[1]),
            &admin,
            json!({"reason": "left"}),
        )
        .await;
    assert_eq!(gone.status, 200, "{gone:?}");
    let hired = hire(&app, &admin, code, 9, "nurse").await;
    assert_eq!(hired.status, 201, "{hired:?}");
    let before = app.event_count().await;
    let back = app
        .post(
            &format!("/v1/staff/{}/reactivate", nurses[1]),
            &admin,
            json!({}),
        )
        .await;
    assert_over(&back, "trial", "active_staff", 10, 10);
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn a_role_change_to_doctor_counts_against_the_doctors() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let code = "trial-role";
    let (_, admin) = app.clinic_on(&platform, code, "trial").await;
    for n in 1..=2 {
        assert_eq!(hire(&app, &admin, code, n, "doctor").await.status, 201);
    }
    // A receptionist with a licence (so that the domain would allow the change).
    let mut body = hire_body(code, 1, "receptionist");
    body["licence_number"] = json!("LIC-R");
    let clerk = app.post("/v1/staff", &admin, body).await;
    assert_eq!(clerk.status, 201, "{clerk:?}");
    let before = app.event_count().await;
    let promoted = app
        .put(
            &format!("/v1/staff/{}/role", clerk.id()),
            &admin,
            json!({"role": "doctor"}),
        )
        .await;
    assert_over(&promoted, "trial", "active_doctors", 2, 2);
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn twenty_concurrent_hires_at_one_below_the_limit_let_exactly_one_through() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let code = "trial-race";
    let (clinic, admin) = app.clinic_on(&platform, code, "trial").await;
    assert_eq!(hire(&app, &admin, code, 0, "doctor").await.status, 201);
    // 1 doctor in use, 2 allowed: 20 hires at once.
    let answers = join_all((1..=20).map(|n| hire(&app, &admin, code, n, "doctor"))).await;
    let hired = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(hired, 1, "{answers:#?}");
    for refused in answers.iter().filter(|a| a.status != 201) {
        assert_over(refused, "trial", "active_doctors", 2, 2);
    }
    let mut conn = app.db.owner_connection().await;
    let doctors: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts WHERE clinic_id = $1 AND role = 'doctor' AND active",
    )
    .bind(clinic)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(doctors, 2);

    // The same for the staff: 3 in use (the admin, 2 doctors), 6 nurses make 9 of 10, then
    // 20 nurses at once.
    for n in 1..=6 {
        assert_eq!(hire(&app, &admin, code, n, "nurse").await.status, 201);
    }
    let answers = join_all((100..120).map(|n| hire(&app, &admin, code, n, "nurse"))).await;
    assert_eq!(
        answers.iter().filter(|a| a.status == 201).count(),
        1,
        "{answers:#?}"
    );
    for refused in answers.iter().filter(|a| a.status != 201) {
        assert_over(refused, "trial", "active_staff", 10, 10);
    }
}

/// Registers `n` patients, `batch` at a time; all must succeed.
async fn register_patients(app: &TestApp, token: &str, n: usize, batch: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(batch) {
        let answers = join_all(
            chunk
                .iter()
                .map(|i| app.post("/v1/patients", token, patient_body(&format!("P{i}")))),
        )
        .await;
        for a in answers {
            assert_eq!(a.status, 201, "{a:?}");
        }
    }
}

#[tokio::test]
async fn the_patient_limit_holds_at_its_number_and_under_concurrency() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "trial-patients", "trial").await;
    // 499 of the trial's 500, then 20 at once: exactly one is the 500th.
    register_patients(&app, &admin, 499, 16).await;
    let before = app.event_count().await;
    let answers =
        join_all((0..20).map(|i| app.post("/v1/patients", &admin, patient_body(&format!("Q{i}")))))
            .await;
    assert_eq!(
        answers.iter().filter(|a| a.status == 201).count(),
        1,
        "{answers:#?}"
    );
    for refused in answers.iter().filter(|a| a.status != 201) {
        assert_over(refused, "trial", "patients", 500, 500);
    }
    assert_eq!(app.event_count().await, before + 1);
    // A merge takes one off the count: one more fits.
    let listed = app
        .read_at("/v1/patients?limit=2", &admin, app.head().await)
        .await;
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["patient_id"].as_str().unwrap())
        .collect();
    let merged = app
        .post(
            &format!("/v1/patients/{}/merge", ids[0]),
            &admin,
            json!({"into": ids[1]}),
        )
        .await;
    assert_eq!(merged.status, 200, "{merged:?}");
    let last = app.post("/v1/patients", &admin, patient_body("Last")).await;
    assert_eq!(last.status, 201, "{last:?}");
    assert_over(
        &app.post("/v1/patients", &admin, patient_body("Over")).await,
        "trial",
        "patients",
        500,
        500,
    );
}

/// A booking of `patient` with `doctor` in the `i`th half-hour from 08:00 on the day after
/// `day0` (Berlin, 16 a day).
fn booking(app: &TestApp, doctor: Uuid, patient: Uuid, i: usize) -> Value {
    let start = app.future(1 + (i / 16) as i64, 7) + Duration::minutes(30 * (i % 16) as i64);
    json!({
        "patient_id": patient,
        "doctor_id": doctor,
        "start": start,
        "end": start + Duration::minutes(30),
        "reason": "check-up",
        "override_hours": true
    })
}

#[tokio::test]
async fn monthly_bookings_hold_at_their_number_under_concurrency_and_start_again_next_month() {
    // 10 March 2027 (Berlin): the next month starts within the trial's 30 days.
    let app = spawn_app_at(utc("2027-03-10T09:00:00Z")).await;
    let platform = app.platform_admin().await;
    let code = "trial-bookings";
    let (_, admin) = app.clinic_on(&platform, code, "trial").await;
    let doctor = hire(&app, &admin, code, 1, "doctor").await.id();
    let patients: Vec<Uuid> = {
        let mut ids = Vec::new();
        for i in 0..2 {
            let p = app
                .post("/v1/patients", &admin, patient_body(&format!("B{i}")))
                .await;
            assert_eq!(p.status, 201, "{p:?}");
            ids.push(p.id());
        }
        ids
    };
    // 299 of the trial's 300 this month, in batches (each a slot of its own).
    for chunk in (0..299).collect::<Vec<_>>().chunks(16) {
        let answers = join_all(chunk.iter().map(|i| {
            app.post(
                "/v1/appointments",
                &admin,
                booking(&app, doctor, patients[0], *i),
            )
        }))
        .await;
        for a in answers {
            assert_eq!(a.status, 201, "{a:?}");
        }
    }
    // 20 at once in 20 more free slots: exactly one is the 300th.
    let answers = join_all((299..319).map(|i| {
        app.post(
            "/v1/appointments",
            &admin,
            booking(&app, doctor, patients[1], i),
        )
    }))
    .await;
    assert_eq!(
        answers.iter().filter(|a| a.status == 201).count(),
        1,
        "{answers:#?}"
    );
    for refused in answers.iter().filter(|a| a.status != 201) {
        assert_over(refused, "trial", "monthly_bookings", 300, 300);
    }
    // April (Berlin) is a new month: the count starts again.
    app.clock.set(utc("2027-03-31T22:00:00Z"));
    let admin = app.login(&format!("admin@{code}.example")).await;
    let april = app
        .post(
            "/v1/appointments",
            &admin,
            booking(&app, doctor, patients[1], 400),
        )
        .await;
    assert_eq!(april.status, 201, "{april:?}");
}

#[tokio::test]
async fn a_downgrade_below_use_is_allowed_and_only_new_use_is_refused() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let code = "downgrade";
    let (clinic, admin) = app.clinic_on(&platform, code, "professional").await;
    let mut doctors = Vec::new();
    for n in 1..=6 {
        let hired = hire(&app, &admin, code, n, "doctor").await;
        assert_eq!(hired.status, 201, "{hired:?}");
        doctors.push(hired.id());
    }
    // Basic allows 5 doctors; the clinic has 6.
    let changed = app
        .put(
            &format!("/v1/clinics/{clinic}/plan"),
            &platform,
            json!({"plan": "basic", "reason": "cost cutting"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    // Nothing is removed: the six still work. (The read models first take in the hires: the
    // read below carries no `X-Min-Position`.)
    app.db.caught_up().await;
    let doctor = app.login(&format!("doctor-1@{code}.example")).await;
    let own = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/staff/{}", doctors[0]),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!(own.status, 200, "{own:?}");
    assert_over(
        &hire(&app, &admin, code, 7, "doctor").await,
        "basic",
        "active_doctors",
        5,
        6,
    );
    for id in &doctors[..2] {
        let gone = app
            .post(
                &format!("/v1/staff/{id}/deactivate"),
                &admin,
                json!({"reason": "left"}),
            )
            .await;
        assert_eq!(gone.status, 200, "{gone:?}");
    }
    assert_eq!(hire(&app, &admin, code, 8, "doctor").await.status, 201);
    assert_over(
        &hire(&app, &admin, code, 9, "doctor").await,
        "basic",
        "active_doctors",
        5,
        5,
    );
}

#[tokio::test]
async fn plan_changes_are_in_the_clinics_history_with_who_when_and_why() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "plan-history").await;
    let path = format!("/v1/clinics/{}/plan", north.id);
    // Bad bodies: no reason, the trial (only at registration), an old name.
    let before = app.event_count().await;
    app.put(&path, &platform, json!({"plan": "enterprise"}))
        .await
        .names_field("reason");
    app.put(
        &path,
        &platform,
        json!({"plan": "trial", "reason": "again"}),
    )
    .await
    .names_field("plan");
    app.put(
        &path,
        &platform,
        json!({"plan": "standard", "reason": "old"}),
    )
    .await
    .names_field("plan");
    app.put(
        &path,
        &platform,
        json!({"plan": "enterprise", "reason": "\u{0}"}),
    )
    .await
    .names_field("reason");
    assert_eq!(app.event_count().await, before);
    // A clinic admin may not change their own plan.
    let meddling = app
        .put(
            &path,
            &north.admin,
            json!({"plan": "enterprise", "reason": "free upgrade"}),
        )
        .await;
    assert_eq!(
        meddling.problem(403)["type"],
        "https://clinic.example/problems/forbidden"
    );

    let at = app.now();
    let changed = app
        .put(
            &path,
            &platform,
            json!({"plan": "enterprise", "reason": "signed the contract"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let body = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let res = app
                .client
                .get(app.url("/v1/audit/events?aggregate_type=clinic"))
                .bearer_auth(&north.auditor)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let text = res.text().await.unwrap();
            if text.contains("ClinicPlanChanged") || std::time::Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let change: Value = body
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event_type"] == "ClinicPlanChanged")
        .unwrap_or_else(|| panic!("no plan change in {body}"));
    assert_eq!(
        change["payload"]["ClinicPlanChanged"],
        json!({"from": "professional", "to": "enterprise", "reason": "signed the contract"})
    );
    assert_eq!(change["role"], "platform_admin");
    assert!(change["actor"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(
        change["time"].as_str().map(|t| utc(t)),
        Some(at),
        "{change}"
    );
    assert_eq!(change["event_version"], "2.0");
    // The clinic now reads as enterprise.
    let clinic = app
        .read_at(
            "/v1/clinic",
            &north.admin,
            changed.body["position"].as_i64().unwrap(),
        )
        .await;
    assert_eq!(clinic.body["plan"], "enterprise", "{clinic:?}");
    assert!(clinic.body.get("trial_ends_at").is_none(), "{clinic:?}");
}

#[tokio::test]
async fn an_ended_trial_is_read_only_until_the_clinic_is_on_a_paid_plan() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let code = "trial-end";
    let (clinic, admin) = app.clinic_on(&platform, code, "trial").await;
    let registered = app.now();
    let ends = registered + Duration::days(30);
    let listed = app.read_at("/v1/clinic", &admin, app.head().await).await;
    assert_eq!(listed.body["plan"], "trial", "{listed:?}");
    assert_eq!(
        listed.body["trial_ends_at"].as_str().map(utc),
        Some(ends),
        "{listed:?}"
    );

    // A second before the end, commands work (signed in again: access tokens are short).
    app.clock.set(ends - Duration::seconds(1));
    let admin = app.login(&format!("admin@{code}.example")).await;
    let p = app
        .post("/v1/patients", &admin, patient_body("Early"))
        .await;
    assert_eq!(p.status, 201, "{p:?}");

    app.clock.set(ends);
    let before = app.event_count().await;
    for (method, path, body) in [
        ("POST", "/v1/patients".to_owned(), patient_body("Late")),
        ("PATCH", "/v1/clinic".to_owned(), json!({"name": "Renamed"})),
        ("POST", "/v1/staff".to_owned(), hire_body(code, 1, "nurse")),
        (
            "POST",
            format!("/v1/patients/{}/deactivate", p.id()),
            json!({"reason": "moved"}),
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = app.send(method, &path, Some(&admin), Some(&body)).await;
        let problem = answer.problem(402);
        assert_eq!(
            problem["type"], "https://clinic.example/problems/trial-ended",
            "{path}: {problem}"
        );
        assert_eq!(problem["trial_ended_at"].as_str().map(utc), Some(ends));
        assert_eq!(problem["plan"], "trial");
    }
    assert_eq!(app.event_count().await, before, "nothing written");
    // Log-ins, refreshes and reads work.
    let login = app
        .login_answer(&format!("admin@{code}.example"), PASSWORD)
        .await;
    assert_eq!(login.status, 200, "{login:?}");
    let again = login.body["access_token"].as_str().unwrap().to_owned();
    let refresh_token = login.body["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = app
        .send(
            reqwest::Method::POST,
            "/v1/auth/refresh",
            None,
            Some(&json!({"refresh_token": refresh_token})),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    for path in ["/v1/patients", "/v1/clinic", "/v1/staff", "/v1/dashboard"] {
        let read = app
            .send(reqwest::Method::GET, path, Some(&again), None)
            .await;
        assert_eq!(read.status, 200, "{path}: {read:?}");
    }
    // The platform puts the clinic on a paid plan: it may write again.
    let platform = app.platform_admin().await;
    let paid = app
        .put(
            &format!("/v1/clinics/{clinic}/plan"),
            &platform,
            json!({"plan": "basic", "reason": "paid"}),
        )
        .await;
    assert_eq!(paid.status, 200, "{paid:?}");
    let p = app.post("/v1/patients", &again, patient_body("Paid")).await;
    assert_eq!(p.status, 201, "{p:?}");
}

/// The metadata of the clinic's registration, as stored, for events written by hand.
async fn registration_metadata(app: &TestApp, clinic: Uuid) -> Value {
    let mut conn = app.db.owner_connection().await;
    sqlx::query_scalar::<_, sqlx::types::Json<Value>>(
        "SELECT metadata FROM events WHERE tenant_id = $1 AND event_type = 'ClinicRegistered'",
    )
    .bind(clinic)
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn streams_written_with_the_old_plan_names_are_read_as_the_new_plans() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let code = "legacy";
    let (clinic, admin) = app.clinic_on(&platform, code, "basic").await;
    for n in 1..=5 {
        assert_eq!(hire(&app, &admin, code, n, "doctor").await.status, 201);
    }
    // A plan change as the service wrote it before the four plans, appended by hand (1.0,
    // `standard`, no reason): the clinic is then on `professional`.
    let mut meta = registration_metadata(&app, clinic).await;
    meta["occurred_at"] = json!(app.now());
    let mut conn = app.db.owner_connection().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'Clinic', $1, max(sequence) + 1, 'ClinicPlanChanged', '1.0', $2, $3 \
         FROM events WHERE aggregate_type = 'Clinic' AND aggregate_id = $1",
    )
    .bind(format!("{clinic}:{clinic}"))
    .bind(sqlx::types::Json(json!({"ClinicPlanChanged": {"from": "free", "to": "standard"}})))
    .bind(sqlx::types::Json(&meta))
    .execute(&mut conn)
    .await
    .unwrap();
    // A clinic registered on `free` (1.0), with no trial end in its event.
    let old = Uuid::new_v4();
    let mut old_meta = meta.clone();
    old_meta["tenant_id"] = json!(old);
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Clinic', $1, 1, 'ClinicRegistered', '1.0', $2, $3)",
    )
    .bind(format!("{old}:{old}"))
    .bind(sqlx::types::Json(json!({"ClinicRegistered": {
        "clinic_id": old, "name": "Old Clinic", "code": "old-free",
        "time_zone": "Europe/Berlin", "plan": "free", "slot_minutes": 15}})))
    .bind(sqlx::types::Json(&old_meta))
    .execute(&mut conn)
    .await
    .unwrap();
    let head = app.head().await;

    // The read model, the registry and the aggregate all read the new names.
    let own = app.read_at("/v1/clinic", &admin, head).await;
    assert_eq!(own.body["plan"], "professional", "{own:?}");
    let all = app.read_at("/v1/clinics", &platform, head).await;
    let row = |id: Uuid| {
        all.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["clinic_id"] == id.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {all:?}"))
    };
    assert_eq!(row(old)["plan"], "trial");
    // The old trial ends the trial's days after its registration.
    assert_eq!(
        row(old)["trial_ends_at"].as_str().map(utc),
        Some(app.now() + Duration::days(30))
    );
    assert_eq!(row(clinic)["plan"], "professional");
    let (registry_plan, registry_end): (String, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT plan, trial_ends_at FROM clinic_codes WHERE clinic_id = $1")
            .bind(old)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(registry_plan, "trial");
    assert_eq!(registry_end, Some(app.now() + Duration::days(30)));
    // Professional allows a sixth doctor (basic would not).
    assert_eq!(hire(&app, &admin, code, 6, "doctor").await.status, 201);
    // The aggregate decides from the upcast state: the next change is from `professional`.
    let changed = app
        .put(
            &format!("/v1/clinics/{clinic}/plan"),
            &platform,
            json!({"plan": "enterprise", "reason": "grew"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let payload: sqlx::types::Json<Value> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE tenant_id = $1 AND event_type = 'ClinicPlanChanged' \
         ORDER BY sequence DESC LIMIT 1",
    )
    .bind(clinic)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(payload.0["ClinicPlanChanged"]["from"], "professional");
    // The stored legacy events were not rewritten.
    let legacy: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Clinic' \
         AND (payload::text LIKE '%\"standard\"%' OR payload::text LIKE '%\"free\"%')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(legacy, 2);
}
