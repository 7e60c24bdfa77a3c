//! The fee schedule (issue 14): `GET`/`PUT /v1/clinic/fees` (roles, another clinic's, bad
//! input naming the field, `If-Match`, one event per change and none for the same schedule),
//! billing refused until there is a schedule, and appointment types on bookings in the read
//! model (the answers, the list's filter, the auditor's replay check).

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

const FEES: &str = "/v1/clinic/fees";

/// A schedule with a rule of each kind, for `doctor`.
fn schedule(doctor: Uuid) -> Value {
    json!({
        "currency": "eur",
        "default_fee": 6000,
        "no_show_fee": 2500,
        "rules": [
            {"appointment_type": "Follow-Up", "doctor_id": doctor, "amount": 9000},
            {"appointment_type": "follow-up", "amount": 4000},
            {"doctor_id": doctor, "amount": 8000}
        ]
    })
}

async fn get_fees(app: &TestApp, token: &str) -> Answer {
    app.send(Method::GET, FEES, Some(token), None).await
}

async fn put_fees(app: &TestApp, token: &str, body: &Value, if_match: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = if_match.map(|v| ("if-match", v)).into_iter().collect();
    app.send_with(Method::PUT, FEES, Some(token), Some(body), &headers)
        .await
}

/// The staff id of the account behind `token`.
async fn me(app: &TestApp, token: &str) -> Uuid {
    let me = app.send(Method::GET, "/v1/me", Some(token), None).await;
    assert_eq!(me.status, 200, "{me:?}");
    me.id()
}

#[tokio::test]
async fn clinic_admins_set_the_schedule_and_every_clinic_role_reads_it() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;

    // None yet.
    get_fees(&app, &north.admin).await.problem(404);

    // Only clinic admins set it; nothing is written otherwise.
    let body = schedule(north.doctor_id);
    let before = app.event_count().await;
    for token in [
        &platform,
        &north.doctor,
        &north.nurse,
        &north.receptionist,
        &north.auditor,
    ] {
        let refused = put_fees(&app, token, &body, None).await;
        assert!(
            refused.problem(403)["type"]
                .as_str()
                .unwrap()
                .ends_with("/forbidden"),
            "{refused:?}"
        );
    }
    assert_eq!(app.event_count().await, before);

    let set = put_fees(&app, &north.admin, &body, None).await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.id(), north.id, "the answer names the clinic");
    assert_eq!(set.body["version"], 1, "{set:?}");
    assert_eq!(set.header("etag"), Some("\"1\""));
    assert_eq!(app.event_count().await, before + 1);

    // Every clinic role reads it, as stored (codes normalised), with its version.
    let expected = json!({
        "currency": "EUR",
        "default_fee": 6000,
        "no_show_fee": 2500,
        "rules": [
            {"appointment_type": "follow-up", "doctor_id": north.doctor_id, "amount": 9000},
            {"appointment_type": "follow-up", "doctor_id": null, "amount": 4000},
            {"appointment_type": null, "doctor_id": north.doctor_id, "amount": 8000}
        ],
        "version": 1
    });
    for role in ["clinic_admin", "doctor", "nurse", "receptionist", "auditor"] {
        let read = get_fees(&app, north.token(role)).await;
        assert_eq!(read.status, 200, "{role}: {read:?}");
        assert_eq!(read.body, expected, "{role}");
        assert_eq!(read.header("etag"), Some("\"1\""), "{role}");
    }
    // The platform admin reads no clinic's configuration.
    get_fees(&app, &platform).await.problem(403);
    // Another clinic has a schedule of its own (none yet), never North's.
    get_fees(&app, &south.admin).await.problem(404);
    get_fees(&app, &south.receptionist).await.problem(404);
    // No token: 401.
    app.send(Method::GET, FEES, None, None).await.problem(401);
}

#[tokio::test]
async fn a_change_writes_one_event_and_the_same_schedule_none() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let body = schedule(north.doctor_id);
    let first = put_fees(&app, &north.admin, &body, None).await;
    assert_eq!(first.status, 200, "{first:?}");
    let count = app.event_count().await;

    // The same schedule (spelt differently): 200 at the same version, nothing written.
    let mut same = body.clone();
    same["currency"] = json!("EUR");
    let again = put_fees(&app, &north.admin, &same, None).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["version"], 1, "{again:?}");
    assert_eq!(again.body["position"], Value::Null, "{again:?}");
    assert_eq!(app.event_count().await, count);

    // A change: one event, the whole schedule replaced.
    let changed = json!({"currency": "GBP", "default_fee": 5500});
    let set = put_fees(&app, &north.admin, &changed, None).await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.body["version"], 2, "{set:?}");
    assert_eq!(app.event_count().await, count + 1);
    let mut owner = app.db.owner_connection().await;
    let (stream, event_type): (String, String) = sqlx::query_as(
        "SELECT aggregate_id, event_type FROM events WHERE aggregate_type = 'FeeSchedule' \
         ORDER BY position DESC LIMIT 1",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(stream, format!("{}:{}", north.id, north.id));
    assert_eq!(event_type, "FeeScheduleSet");
    let read = get_fees(&app, &north.receptionist).await;
    assert_eq!(
        read.body,
        json!({"currency": "GBP", "default_fee": 5500, "no_show_fee": null, "rules": [], "version": 2})
    );
}

#[tokio::test]
async fn if_match_names_the_schedules_version() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let body = json!({"currency": "EUR", "default_fee": 6000});

    // Before the first schedule the version is 0.
    let before = app.event_count().await;
    let stale = put_fees(&app, &north.admin, &body, Some("\"1\"")).await;
    assert!(stale.problem(412)["type"]
        .as_str()
        .unwrap()
        .ends_with("/version-mismatch"));
    assert_eq!(app.event_count().await, before);
    let first = put_fees(&app, &north.admin, &body, Some("\"0\"")).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["version"], 1);

    // A client that read version 0 cannot overwrite version 1.
    let other = json!({"currency": "EUR", "default_fee": 7000});
    let lost = put_fees(&app, &north.admin, &other, Some("\"0\"")).await;
    lost.problem(412);
    assert_eq!(app.event_count().await, before + 1);
    let etag = get_fees(&app, &north.admin).await;
    let version = etag.header("etag").unwrap().to_owned();
    assert_eq!(version, "\"1\"");
    let second = put_fees(&app, &north.admin, &other, Some(&version)).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body["version"], 2);
    assert_eq!(get_fees(&app, &north.admin).await.body["default_fee"], 7000);
    // A malformed If-Match is a 400.
    put_fees(&app, &north.admin, &other, Some("two"))
        .await
        .problem(400);
}

#[tokio::test]
async fn bad_schedules_are_422s_naming_the_field_and_write_nothing() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;
    let nurse = me(&app, &north.nurse).await;
    let doctor = north.doctor_id;
    let base = json!({"currency": "EUR", "default_fee": 6000, "rules": []});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let rules = |rules: Value| with("rules", rules);
    let huge = "x".repeat(20_000);
    let many: Vec<Value> = (0..=500)
        .map(|n| json!({"appointment_type": format!("t{n}"), "amount": 1}))
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (with("currency", json!("EURO")), "currency"),
        (with("currency", json!("E1")), "currency"),
        (with("currency", json!("€UR")), "currency"),
        (with("currency", json!(huge)), "currency"),
        (with("currency", json!(null)), "currency"),
        (json!({"default_fee": 6000}), "currency"),
        (with("default_fee", json!(0)), "default_fee"),
        (with("default_fee", json!(-500)), "default_fee"),
        (with("default_fee", json!(60.5)), "default_fee"),
        (with("default_fee", json!("6000")), "default_fee"),
        (
            with("default_fee", json!(1_000_000_000_001_i64)),
            "default_fee",
        ),
        (with("default_fee", json!(1e30)), "default_fee"),
        (with("default_fee", json!(u64::MAX)), "default_fee"),
        (with("no_show_fee", json!(0)), "no_show_fee"),
        (with("no_show_fee", json!(-1)), "no_show_fee"),
        (with("rules", json!({"amount": 1})), "rules"),
        (
            rules(json!([{"appointment_type": "a", "amount": 0}])),
            "rules[0].amount",
        ),
        (
            rules(
                json!([{"appointment_type": "a", "amount": 1}, {"appointment_type": "b", "amount": 12.5}]),
            ),
            "rules[1].amount",
        ),
        (
            rules(json!([{"appointment_type": "a", "amount": -3}])),
            "rules[0].amount",
        ),
        (
            rules(json!([{"appointment_type": "a", "amount": 10_000_000_000_000_i64}])),
            "rules[0].amount",
        ),
        (rules(json!([{"appointment_type": "a"}])), "rules[0].amount"),
        // A rule without a key is the default fee's job.
        (
            rules(json!([{"appointment_type": "a", "amount": 1}, {"amount": 100}])),
            "rules[1]",
        ),
        (
            rules(json!([{"appointment_type": null, "doctor_id": null, "amount": 100}])),
            "rules[0]",
        ),
        // The same key twice (the type is compared as stored, lower-cased).
        (
            rules(json!([
                {"appointment_type": "a", "amount": 1},
                {"doctor_id": doctor, "amount": 2},
                {"appointment_type": "A", "amount": 3}
            ])),
            "rules[2]",
        ),
        (
            rules(json!([
                {"appointment_type": "a", "doctor_id": doctor, "amount": 1},
                {"appointment_type": "a", "doctor_id": doctor, "amount": 2}
            ])),
            "rules[1]",
        ),
        // Doctors: another clinic's, a nurse, an id nobody has, not an id.
        (
            rules(json!([{"doctor_id": south.doctor_id, "amount": 1}])),
            "rules[0].doctor_id",
        ),
        (
            rules(json!([{"doctor_id": doctor, "amount": 1}, {"doctor_id": nurse, "amount": 1}])),
            "rules[1].doctor_id",
        ),
        (
            rules(json!([{"doctor_id": Uuid::new_v4(), "amount": 1}])),
            "rules[0].doctor_id",
        ),
        (
            rules(json!([{"doctor_id": "not-a-uuid", "amount": 1}])),
            "rules[0].doctor_id",
        ),
        // Appointment types: the clinic's codes, at most 40 characters.
        (
            rules(json!([{"appointment_type": "follow up", "amount": 1}])),
            "rules[0].appointment_type",
        ),
        (
            rules(json!([{"appointment_type": "x".repeat(41), "amount": 1}])),
            "rules[0].appointment_type",
        ),
        (
            rules(json!([{"appointment_type": huge, "amount": 1}])),
            "rules[0].appointment_type",
        ),
        (
            rules(json!([{"appointment_type": "", "amount": 1}])),
            "rules[0].appointment_type",
        ),
        (
            rules(json!([{"appointment_type": "\u{202e}ab", "amount": 1}])),
            "rules[0].appointment_type",
        ),
        (
            rules(json!([{"appointment_type": "e\u{301}\u{301}", "amount": 1}])),
            "rules[0].appointment_type",
        ),
        (
            rules(json!([{"appointment_type": "\u{feff}ab", "amount": 1}])),
            "rules[0].appointment_type",
        ),
        (
            rules(json!([{"appointment_type": "ab\u{0}", "amount": 1}])),
            "rules[0].appointment_type",
        ),
        (with("currency", json!("EU\u{0}")), "currency"),
        (
            rules(json!([{"appointment_type": "a", "amount": 1, "clinic_id": south.id}])),
            "rules[0].clinic_id",
        ),
        (with("clinic_id", json!(south.id)), "clinic_id"),
        (rules(Value::Array(many)), "rules"),
    ];
    let before = app.event_count().await;
    let mut failures = Vec::new();
    for (body, field) in &cases {
        let answer = put_fees(&app, &north.admin, body, None).await;
        let named = answer.status == 422
            && answer.header("content-type") == Some("application/problem+json")
            && answer.body["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["field"] == *field));
        if !named {
            failures.push(format!("`{field}`: {answer:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(app.event_count().await, before, "nothing was written");
    // Not JSON at all is a 400, not a 422.
    let raw = app
        .client
        .put(app.url(FEES))
        .bearer_auth(&north.admin)
        .header("content-type", "application/json")
        .body("{\"currency\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    get_fees(&app, &north.admin).await.problem(404);
}

#[tokio::test]
async fn billing_cannot_be_enabled_before_the_fee_schedule_is_set() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (_, north) = app.clinic_on(&platform, "north", "professional").await;
    let (_, south) = app.clinic_on(&platform, "south", "professional").await;
    let billing = "/v1/clinic/modules/billing";
    // A new clinic has every module of its plan; switch billing off to switch it on again.
    for admin in [&north, &south] {
        let off = app.put(billing, admin, json!({"enabled": false})).await;
        assert_eq!(off.status, 200, "{off:?}");
    }
    let before = app.event_count().await;
    let on = json!({"enabled": true});
    let refused = app.put(billing, &north, on.clone()).await;
    let problem = refused.problem(409);
    assert_eq!(
        problem["type"],
        "https://clinic.example/problems/fee-schedule-required"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("PUT /v1/clinic/fees"),
        "{problem}"
    );
    assert_eq!(app.event_count().await, before, "nothing was written");
    // A stale If-Match is still a 412 first.
    let stale = app
        .send_with(
            Method::PUT,
            billing,
            Some(&north),
            Some(&on),
            &[("if-match", "\"1\"")],
        )
        .await;
    stale.problem(412);

    // Another clinic's schedule is not North's.
    let south_fees = json!({"currency": "EUR", "default_fee": 5000});
    let set = put_fees(&app, &south, &south_fees, None).await;
    assert_eq!(set.status, 200, "{set:?}");
    app.put(billing, &north, on.clone()).await.problem(409);
    assert_eq!(app.event_count().await, before + 1);

    // With a schedule, billing goes on (and the other modules never needed one).
    let set = put_fees(&app, &north, &south_fees, None).await;
    assert_eq!(set.status, 200, "{set:?}");
    let enabled = app.put(billing, &north, on.clone()).await;
    assert_eq!(enabled.status, 200, "{enabled:?}");
    let clinic = app
        .read_at(
            "/v1/clinic",
            &north,
            enabled.body["position"].as_i64().unwrap(),
        )
        .await;
    let modules = clinic.body["modules"].as_array().unwrap();
    assert!(modules.contains(&json!("billing")), "{clinic:?}");
    // Twice is still the clinic's own 409.
    let twice = app.put(billing, &north, on).await;
    assert!(twice.problem(409)["type"]
        .as_str()
        .unwrap()
        .ends_with("/conflict"));
    // Enabled at registration without a schedule, billing can still be switched off.
    let (_, east) = app.clinic_on(&platform, "east", "professional").await;
    let off = app.put(billing, &east, json!({"enabled": false})).await;
    assert_eq!(off.status, 200, "{off:?}");
}

#[tokio::test]
async fn a_bookings_appointment_type_is_shown_and_filtered_on() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let start = app.future(4, 10);
    let booking = |kind: Value| {
        json!({
            "patient_id": north.patient_id,
            "doctor_id": north.doctor_id,
            "start": start,
            "end": start + chrono::Duration::minutes(30),
            "appointment_type": kind
        })
    };
    // A bad type: 422 naming it, nothing written.
    let before = app.event_count().await;
    for bad in [
        json!("follow up"),
        json!("-x"),
        json!(""),
        json!("x".repeat(41)),
        json!("x".repeat(20_000)),
        json!("\u{202e}ab"),
        json!("ab\u{0}"),
        json!(7),
    ] {
        let answer = app
            .post(
                "/v1/appointments",
                &north.receptionist,
                booking(bad.clone()),
            )
            .await;
        answer.names_field("appointment_type");
    }
    assert_eq!(app.event_count().await, before);

    let booked = app
        .post(
            "/v1/appointments",
            &north.receptionist,
            booking(json!("Follow-Up")),
        )
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    let id = booked.id();
    let position = booked.body["position"].as_i64().unwrap();
    let one = app
        .read_at(&format!("/v1/appointments/{id}"), &north.doctor, position)
        .await;
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.body["appointment_type"], "follow-up");
    // The fixture's booking named none.
    let theirs = app
        .read_at(
            &format!("/v1/appointments/{}", north.appointment_id),
            &north.receptionist,
            position,
        )
        .await;
    assert_eq!(theirs.body["appointment_type"], Value::Null, "{theirs:?}");

    let all = app
        .read_at("/v1/appointments", &north.receptionist, position)
        .await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2, "{all:?}");
    let typed = app
        .read_at(
            "/v1/appointments?appointment_type=FOLLOW-UP",
            &north.nurse,
            position,
        )
        .await;
    let items = typed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{typed:?}");
    assert_eq!(items[0]["appointment_id"], json!(id));
    assert_eq!(items[0]["appointment_type"], "follow-up");
    let none = app
        .read_at(
            "/v1/appointments?appointment_type=vaccination",
            &north.nurse,
            position,
        )
        .await;
    assert_eq!(none.body["items"], json!([]), "{none:?}");
    app.send(
        Method::GET,
        "/v1/appointments?appointment_type=follow%20up",
        Some(&north.nurse),
        None,
    )
    .await
    .names_field("appointment_type");

    // The auditor's replay compares the read model's type with the events'.
    app.db.caught_up().await;
    let check = || crate::audit::replay(&app.db, &["--clinic", "north", "--check"]);
    let out = check().await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("no differences"), "{stdout}");
    let mut owner = app.db.owner_connection().await;
    sqlx::query(
        "UPDATE rm.appointments SET appointment_type = 'checkup' WHERE appointment_id = $1",
    )
    .bind(id)
    .execute(&mut owner)
    .await
    .unwrap();
    let out = check().await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("Appointment {id}"))
                && l.contains("appointment_type")
                && l.contains("\"checkup\"")),
        "{stdout}"
    );
}
