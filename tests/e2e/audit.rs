//! The auditor's endpoints and `clinic replay`: the NDJSON event stream (commit order,
//! resumable without gaps or repeats), record histories, state as of an instant, the access
//! log, tenancy, and the offline export and consistency check.

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use uuid::Uuid;

use projections::audit::{self, EventFilter};

use crate::helpers::{patient_body, spawn_app, Answer, ClinicFixture, TestApp, TestDb};
use crate::security::access_rows;

// ---------------------------------------------------------------------------------------
// Helpers.

/// `GET path` as `token`: (status, content type, body text).
async fn get_text(app: &TestApp, token: &str, path: &str) -> (u16, String, String) {
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, content_type, res.text().await.expect("body"))
}

async fn get(app: &TestApp, token: &str, path: &str) -> Answer {
    app.send(Method::GET, path, Some(token), None).await
}

/// Parses an NDJSON body: every line one JSON object, the body ending with a newline.
#[track_caller]
fn lines(body: &str) -> Vec<Value> {
    assert!(body.is_empty() || body.ends_with('\n'), "{body:?}");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

fn positions(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["position"].as_i64().expect("position"))
        .collect()
}

/// The clinic's committed events' positions in commit order, as the owner sees them.
async fn commit_order(db: &TestDb, clinic: Uuid) -> Vec<i64> {
    let mut conn = db.owner_connection().await;
    sqlx::query_scalar(
        "SELECT position FROM events WHERE tenant_id = $1 ORDER BY transaction_id, position",
    )
    .bind(clinic)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// The whole stream `query` selects, once it holds every committed event of the clinic (the
/// commit fence may hold the newest back for a moment while another transaction runs).
async fn full_stream(app: &TestApp, token: &str, clinic: Uuid, query: &str) -> String {
    let expected = commit_order(&app.db, clinic).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, content_type, body) =
            get_text(app, token, &format!("/v1/audit/events{query}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "application/x-ndjson");
        if positions(&lines(&body)) == expected {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never caught up: {:?} vs {expected:?}",
            positions(&lines(&body))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[track_caller]
fn ok(answer: &Answer) -> &Value {
    assert!(answer.status == 200 || answer.status == 201, "{answer:?}");
    &answer.body
}

async fn two_clinics() -> (TestApp, String, ClinicFixture, ClinicFixture) {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;
    (app, platform, north, south)
}

// ---------------------------------------------------------------------------------------
// The stream.

#[tokio::test]
async fn an_auditor_streams_the_clinics_events_in_commit_order_and_resumes_without_gaps() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let body = full_stream(&app, &north.auditor, north.id, "").await;
    let events = lines(&body);
    assert!(events.len() >= 8, "{body}");

    // The line shape.
    let registered = events
        .iter()
        .find(|e| e["event_type"] == "PatientRegistered")
        .expect("a PatientRegistered line");
    assert_eq!(registered["aggregate_type"], "Patient");
    assert_eq!(registered["aggregate_id"], north.patient_id.to_string());
    assert_eq!(registered["sequence"], 1);
    assert_eq!(registered["event_version"], "1.0");
    assert_eq!(registered["role"], "receptionist");
    assert!(registered["payload"]["PatientRegistered"]["mrn"].is_string());
    assert!(registered["time"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some());
    assert!(registered["actor"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .is_ok());
    assert!(!registered["request_id"].as_str().unwrap().is_empty());
    for e in &events {
        for key in [
            "position",
            "time",
            "aggregate_type",
            "aggregate_id",
            "sequence",
            "event_type",
            "event_version",
            "payload",
            "actor",
            "role",
            "request_id",
        ] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
        assert!(e["aggregate_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    }

    // Paging with `limit` and `after_position`: the pages add up to the whole stream.
    let mut resumed = Vec::new();
    let mut after = 0;
    loop {
        let (status, _, page) = get_text(
            &app,
            &north.auditor,
            &format!("/v1/audit/events?after_position={after}&limit=3"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let page = lines(&page);
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["position"].as_i64().unwrap();
        resumed.extend(page);
    }
    assert_eq!(positions(&resumed), positions(&events));

    // Filters.
    let (_, _, patients) = get_text(
        &app,
        &north.admin,
        &format!(
            "/v1/audit/events?aggregate_type=patient&aggregate_id={}",
            north.patient_id
        ),
    )
    .await;
    let patients = lines(&patients);
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["event_type"], "PatientRegistered");
    let cut = events[3]["time"].as_str().unwrap().to_owned();
    let (_, _, until) = get_text(
        &app,
        &north.auditor,
        &format!("/v1/audit/events?until={}", cut.replace('+', "%2B")),
    )
    .await;
    let until = lines(&until);
    assert!(until.len() >= 4 && until.len() < events.len());
    assert!(until
        .iter()
        .all(|e| e["time"].as_str().unwrap() <= cut.as_str()));

    // Bad parameters are 422s naming them.
    for (query, field) in [
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
        ("aggregate_type=LabOrder", "aggregate_type"),
        ("aggregate_id=42", "aggregate_id"),
        ("after_position=-1", "after_position"),
        ("after_position=999999999", "after_position"),
        ("colour=red", "colour"),
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
    ] {
        get(&app, &north.auditor, &format!("/v1/audit/events?{query}"))
            .await
            .names_field(field);
    }
}

/// The export writes each line from its row, the payload's JSON text as stored. Its lines say
/// what the typed read (`AuditEvent`, payload parsed) says, also for names with accents, CJK,
/// emoji and quotes, and for a payload stored with line breaks; they come in chunks of whole
/// lines.
#[tokio::test]
async fn the_export_writes_the_lines_of_the_typed_read_in_chunks_of_whole_lines() {
    let (app, _platform, north, _south) = two_clinics().await;
    let names = [
        "Zoë",
        "Łukasz",
        "李小龍",
        "O'Brien",
        "Ana-María",
        "Émile 🎉",
        "Nguyễn",
    ];
    // Enough events for several chunks.
    let mut i = 0;
    while app.event_count().await < 300 {
        let given = names[i % names.len()];
        ok(&app
            .post("/v1/patients", &north.receptionist, patient_body(given))
            .await);
        i += 1;
    }
    // An event stored with line breaks between its JSON tokens (the `json` type keeps them):
    // its line must still be one line.
    let mut owner = app.db.owner_connection().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('AuditTestMarker', $1, 1, 'Marked', '1.0', $2::json, $3)",
    )
    .bind(format!("{}:{}", north.id, Uuid::new_v4()))
    .bind("{\n  \"Marked\": {\"note\": \"two\\nlines\",\r\n \"at\": 1}\n}")
    .bind(json!({"tenant_id": north.id, "actor_id": Uuid::nil(), "actor_role": "system",
                 "request_id": "export-test", "occurred_at": app.now()}))
    .execute(&mut owner)
    .await
    .unwrap();
    let pool = app.db.app_pool().await;
    let clinic = domain::ids::ClinicId::from_uuid(north.id);

    // Both reads stop at the commit-order fence, which an open transaction anywhere on the
    // server (another test's) holds back for a moment: read both again until each holds
    // every committed event of the clinic.
    let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1")
        .bind(north.id)
        .fetch_one(&mut owner)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (typed, chunks) = loop {
        let mut typed = Vec::new();
        let mut rx = audit::stream_events(pool.clone(), clinic, EventFilter::default(), 16);
        while let Some(event) = rx.recv().await {
            typed.extend(event.unwrap().to_ndjson_line());
        }
        let mut chunks = Vec::new();
        let limits = audit::StreamLimits::default();
        let filter = EventFilter::default();
        let mut export = audit::stream_ndjson(pool.clone(), clinic, filter, 2, limits, ());
        while let Some(chunk) = export.rx.recv().await {
            chunks.push(chunk.unwrap());
        }
        let whole = |bytes: &[u8]| bytes.iter().filter(|b| **b == b'\n').count() as i64;
        let exported: i64 = chunks.iter().map(|c| whole(c)).sum();
        if (whole(&typed) == committed && exported == committed) || Instant::now() > deadline {
            break (typed, chunks);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert!(chunks.len() >= 2, "{} chunks", chunks.len());
    for (n, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk.last(), Some(&b'\n'), "chunk {n} ends mid-line");
        if n + 1 < chunks.len() {
            assert!(
                chunk.len() >= audit::CHUNK_BYTES,
                "chunk {n}: {}",
                chunk.len()
            );
        }
    }
    let exported = String::from_utf8(chunks.concat()).unwrap();
    let typed = String::from_utf8(typed).unwrap();
    assert_eq!(lines(&exported), lines(&typed));
    // The payload is the stored text, byte for byte (one line per event, though: the payload
    // stored with line breaks is written compact).
    let stored: Vec<(i64, String)> = sqlx::query_as(
        "SELECT position, payload::text FROM events WHERE tenant_id = $1 \
         ORDER BY transaction_id, position",
    )
    .bind(north.id)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(exported.lines().count(), stored.len());
    for (line, (position, payload)) in exported.lines().zip(&stored) {
        let raw: Value = serde_json::from_str(line).unwrap();
        assert_eq!(raw["position"], *position);
        if payload.contains('\n') {
            assert!(line.contains(r#""payload":{"Marked":{"#), "{line}");
        } else {
            assert!(
                line.contains(&format!(r#""payload":{payload},"actor""#)),
                "{line}"
            );
        }
    }
    let streamed = full_stream(&app, &north.auditor, north.id, "").await;
    assert!(streamed.contains("李小龍") && streamed.contains("Émile 🎉"));
    assert!(lines(&streamed)
        .iter()
        .any(|e| e["payload"] == json!({"Marked": {"note": "two\nlines", "at": 1}})));
    for given in names {
        assert!(lines(&streamed)
            .iter()
            .any(|e| e["payload"]["PatientRegistered"]["name"]["given"] == given));
    }
    pool.close().await;
}

#[tokio::test]
async fn a_resumed_stream_never_misses_a_late_commit_with_a_lower_position() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let seen = lines(&full_stream(&app, &north.auditor, north.id, "").await);
    let last_seen = *positions(&seen).last().unwrap();

    let marker = |sequence: i32| {
        format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('AuditTestMarker', '{clinic}:{id}', {sequence}, 'Marked', '1.0', '{{}}', \
                     json_build_object('tenant_id', '{clinic}', 'actor_id', '{nil}', 'actor_role', 'system', \
                                       'request_id', 'test', 'occurred_at', now())) \
             RETURNING position",
            clinic = north.id,
            id = Uuid::new_v4(),
            nil = Uuid::nil()
        )
    };
    // `late` takes its transaction id first, `early` appends first (lower position) but
    // commits last.
    let mut late = app.db.owner_connection().await;
    let mut early = app.db.owner_connection().await;
    late.execute("BEGIN").await.unwrap();
    late.execute("SELECT pg_current_xact_id()").await.unwrap();
    early.execute("BEGIN").await.unwrap();
    early.execute("SELECT pg_current_xact_id()").await.unwrap();
    let low: i64 = sqlx::query_scalar(&marker(1))
        .fetch_one(&mut early)
        .await
        .unwrap();
    let high: i64 = sqlx::query_scalar(&marker(1))
        .fetch_one(&mut late)
        .await
        .unwrap();
    assert!(low < high);
    late.execute("COMMIT").await.unwrap();

    // The committed event with the higher position is streamed, the open one is not.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let (_, _, body) = get_text(
            &app,
            &north.auditor,
            &format!("/v1/audit/events?after_position={last_seen}"),
        )
        .await;
        let got = positions(&lines(&body));
        if got.contains(&high) {
            break got;
        }
        assert!(Instant::now() < deadline, "never streamed {high}: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!first.contains(&low), "{first:?}");
    assert_eq!(*first.last().unwrap(), high);

    // The lower position commits later; resuming after the last line received gets it.
    early.execute("COMMIT").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = get_text(
            &app,
            &north.auditor,
            &format!("/v1/audit/events?after_position={high}"),
        )
        .await;
        let got = positions(&lines(&body));
        if !got.is_empty() {
            assert_eq!(got, vec![low]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late commit was never streamed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = late.close().await;
    let _ = early.close().await;
}

// ---------------------------------------------------------------------------------------
// Roles and tenancy.

#[tokio::test]
async fn an_auditor_reads_history_and_state_but_issues_no_command() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;

    let history = get(
        &app,
        &north.auditor,
        &format!("/v1/audit/patients/{}/history", north.patient_id),
    )
    .await;
    let history = ok(&history).as_array().unwrap().clone();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["event_type"], "PatientRegistered");
    let history = get(
        &app,
        &north.auditor,
        &format!("/v1/audit/appointments/{}/history", north.appointment_id),
    )
    .await;
    assert_eq!(ok(&history)[0]["event_type"], "AppointmentBooked");
    let state = get(
        &app,
        &north.auditor,
        &format!(
            "/v1/audit/state?as_of={}&aggregate_type=Appointment&aggregate_id={}",
            (app.now() + chrono::Duration::seconds(1))
                .to_rfc3339()
                .replace('+', "%2B"),
            north.appointment_id
        ),
    )
    .await;
    let state = ok(&state);
    assert_eq!(state["version"], 1);
    assert_eq!(state["state"]["status"], "booked");
    assert_eq!(state["state"]["patient_id"], north.patient_id.to_string());

    // Every command endpoint refuses the auditor, and nothing is written.
    let before = app.event_count().await;
    let p = north.patient_id;
    let a = north.appointment_id;
    let d = north.doctor_id;
    let start = app.future(5, 10);
    let commands: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/v1/patients".into(), patient_body("Eve")),
        (
            Method::PATCH,
            format!("/v1/patients/{p}"),
            json!({"phone": "+49 30 7654321"}),
        ),
        (
            Method::POST,
            format!("/v1/patients/{p}/deactivate"),
            json!({}),
        ),
        (
            Method::POST,
            "/v1/appointments".into(),
            json!({"patient_id": p, "doctor_id": d, "start": start,
                   "end": start + chrono::Duration::minutes(30)}),
        ),
        (
            Method::POST,
            format!("/v1/appointments/{a}/cancel"),
            json!({"reason": "no"}),
        ),
        (
            Method::POST,
            format!("/v1/appointments/{a}/check-in"),
            json!({}),
        ),
        (
            Method::POST,
            "/v1/staff".into(),
            json!({"name": "X Y", "email": "x@y.example", "role": "nurse",
                   "password": "correct horse battery staple"}),
        ),
        (
            Method::PUT,
            format!("/v1/staff/{d}/role"),
            json!({"role": "nurse"}),
        ),
        (Method::POST, format!("/v1/staff/{d}/deactivate"), json!({})),
        (
            Method::PATCH,
            "/v1/clinic".into(),
            json!({"name": "Renamed"}),
        ),
        (
            Method::POST,
            "/v1/clinic/departments".into(),
            json!({"name": "Audit"}),
        ),
        (
            Method::POST,
            format!("/v1/clinics/{}/suspend", north.id),
            json!({"reason": "x"}),
        ),
    ];
    for (method, path, body) in commands {
        let answer = app
            .send(method.clone(), &path, Some(&north.auditor), Some(&body))
            .await;
        assert_eq!(answer.status, 403, "{method} {path}: {answer:?}");
    }
    assert_eq!(app.event_count().await, before);

    // Only auditors and clinic admins may audit: every other role, and the platform admin,
    // gets a 403.
    let paths = [
        "/v1/audit/events".to_owned(),
        format!("/v1/audit/patients/{p}/history"),
        format!("/v1/audit/appointments/{a}/history"),
        format!(
            "/v1/audit/state?as_of=2030-01-01T00:00:00Z&aggregate_type=Patient&aggregate_id={p}"
        ),
        "/v1/audit/access-log".to_owned(),
    ];
    for token in [&north.doctor, &north.nurse, &north.receptionist, &platform] {
        for path in &paths {
            get(&app, token, path).await.problem(403);
        }
    }
    for path in &paths {
        let answer = get(&app, &north.admin, path).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }
}

#[tokio::test]
async fn an_auditor_sees_nothing_of_another_clinic() {
    let (app, _platform, north, south) = two_clinics().await;
    let body = full_stream(&app, &north.auditor, north.id, "").await;
    let stream = positions(&lines(&body));
    let south_positions: BTreeSet<i64> =
        commit_order(&app.db, south.id).await.into_iter().collect();
    assert!(!south_positions.is_empty());
    assert!(stream.iter().all(|p| !south_positions.contains(p)));
    assert!(!body.contains(&south.patient_id.to_string()));
    assert!(!body.contains(&south.id.to_string()));

    // South's records are 404s to north's auditor, and south's positions are not north's.
    for path in [
        format!("/v1/audit/patients/{}/history", south.patient_id),
        format!("/v1/audit/appointments/{}/history", south.appointment_id),
        format!(
            "/v1/audit/state?as_of=2099-01-01T00:00:00Z&aggregate_type=Patient&aggregate_id={}",
            south.patient_id
        ),
        format!(
            "/v1/audit/state?as_of=2099-01-01T00:00:00Z&aggregate_type=Clinic&aggregate_id={}",
            south.id
        ),
    ] {
        get(&app, &north.auditor, &path).await.problem(404);
    }
    let south_event = *south_positions.iter().next().unwrap();
    get(
        &app,
        &north.auditor,
        &format!("/v1/audit/events?after_position={south_event}"),
    )
    .await
    .names_field("after_position");
    let (_, _, filtered) = get_text(
        &app,
        &north.auditor,
        &format!("/v1/audit/events?aggregate_id={}", south.patient_id),
    )
    .await;
    assert_eq!(filtered, "");

    // North's own clinic aggregate is there.
    let state = get(
        &app,
        &north.auditor,
        &format!(
            "/v1/audit/state?as_of=2099-01-01T00:00:00Z&aggregate_type=Clinic&aggregate_id={}",
            north.id
        ),
    )
    .await;
    assert_eq!(ok(&state)["state"]["code"], "north");
}

// ---------------------------------------------------------------------------------------
// State as of an instant.

async fn state_at(app: &TestApp, token: &str, kind: &str, id: Uuid, at: DateTime<Utc>) -> Answer {
    get(
        app,
        token,
        &format!(
            "/v1/audit/state?as_of={}&aggregate_type={kind}&aggregate_id={id}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
    )
    .await
}

/// After a command: the time (taken once it answered, before anything else is sent), its
/// version, and the live record at its position.
async fn observe(
    app: &TestApp,
    token: &str,
    patient: Uuid,
    answer: &Answer,
) -> (DateTime<Utc>, u64, Value) {
    let version = ok(answer)["version"].as_u64().unwrap();
    let position = answer.body["position"].as_i64().unwrap();
    // The command happened at the clock's now; the next one happens a second later.
    let at = app.now();
    app.advance(chrono::Duration::seconds(1));
    let live = app
        .send_with(
            Method::GET,
            &format!("/v1/patients/{patient}"),
            Some(token),
            None,
            &[("x-min-position", &position.to_string())],
        )
        .await;
    (at, version, ok(&live).clone())
}

#[tokio::test]
async fn state_as_of_each_instant_matches_the_live_state_then() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let before = app.now();
    app.advance(chrono::Duration::seconds(1));

    // A scripted history; after each step, the time and the live record (read your write).
    let mut steps: Vec<(DateTime<Utc>, u64, Value)> = Vec::new();
    let registered = app
        .post("/v1/patients", &north.receptionist, patient_body("Lin"))
        .await;
    let id = registered.id();
    steps.push(observe(&app, &north.nurse, id, &registered).await);
    let answer = app
        .patch(
            &format!("/v1/patients/{id}"),
            &north.nurse,
            json!({"phone": "+49 30 5550001"}),
        )
        .await;
    steps.push(observe(&app, &north.nurse, id, &answer).await);
    let answer = app
        .patch(
            &format!("/v1/patients/{id}"),
            &north.receptionist,
            json!({"name": {"given": "Linda", "family": "Example"}}),
        )
        .await;
    steps.push(observe(&app, &north.nurse, id, &answer).await);
    let answer = app
        .post(
            &format!("/v1/patients/{id}/deactivate"),
            &north.admin,
            json!({"reason": "moved away"}),
        )
        .await;
    steps.push(observe(&app, &north.nurse, id, &answer).await);
    assert_eq!(
        steps.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );

    state_at(&app, &north.auditor, "Patient", id, before)
        .await
        .problem(404);
    for (at, version, live) in &steps {
        let answer = state_at(&app, &north.auditor, "Patient", id, *at).await;
        let state = ok(&answer);
        assert_eq!(state["version"], *version, "{state}");
        assert_eq!(state["aggregate_type"], "Patient");
        assert_eq!(state["aggregate_id"], id.to_string());
        let s = &state["state"];
        assert_eq!(s["phone"], live["phone"], "{s} vs {live}");
        assert_eq!(s["name"], live["name"]);
        assert_eq!(s["mrn"], live["mrn"]);
        assert_eq!(s["birth_date"], live["birth_date"]);
        let status = match live["status"].as_str().unwrap() {
            "inactive" => "deactivated",
            other => other,
        };
        assert_eq!(s["status"], status);
        assert_eq!(live["version"], *version);
    }

    // An appointment's life: booked, rescheduled, cancelled.
    let start = app.future(4, 10);
    let booked = app
        .post(
            "/v1/appointments",
            &north.receptionist,
            json!({"patient_id": north.patient_id, "doctor_id": north.doctor_id, "start": start,
                   "end": start + chrono::Duration::minutes(30), "reason": "follow-up"}),
        )
        .await;
    let appt = booked.id();
    let t1 = app.now();
    app.advance(chrono::Duration::seconds(1));
    let later = app.future(4, 12);
    let moved = app
        .post(
            &format!("/v1/appointments/{appt}/reschedule"),
            &north.receptionist,
            json!({"start": later, "end": later + chrono::Duration::minutes(30)}),
        )
        .await;
    ok(&moved);
    let t2 = app.now();
    app.advance(chrono::Duration::seconds(1));
    let cancelled = app
        .post(
            &format!("/v1/appointments/{appt}/cancel"),
            &north.receptionist,
            json!({"reason": "patient called in sick"}),
        )
        .await;
    ok(&cancelled);
    let t3 = app.now();
    app.advance(chrono::Duration::seconds(1));
    for (at, version, status, slot_start) in [
        (t1, 1, "booked", start),
        (t2, 2, "booked", later),
        (t3, 3, "cancelled", later),
    ] {
        let answer = state_at(&app, &north.auditor, "Appointment", appt, at).await;
        let state = ok(&answer);
        assert_eq!(state["version"], version);
        assert_eq!(state["state"]["status"], status);
        let got: DateTime<Utc> = state["state"]["slot"]["start"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(got, slot_start);
    }

    // Bad and missing parameters are 422s naming them.
    get(
        &app,
        &north.auditor,
        "/v1/audit/state?aggregate_type=Patient",
    )
    .await
    .names_field("as_of");
    get(
        &app,
        &north.auditor,
        &format!("/v1/audit/state?as_of=noon&aggregate_type=Patient&aggregate_id={id}"),
    )
    .await
    .names_field("as_of");
    get(
        &app,
        &north.auditor,
        &format!(
            "/v1/audit/state?as_of=2030-01-01T00:00:00Z&aggregate_type=LabOrder&aggregate_id={id}"
        ),
    )
    .await
    .names_field("aggregate_type");
}

// ---------------------------------------------------------------------------------------
// The access log.

#[tokio::test]
async fn every_patient_read_is_in_the_access_log_exactly_once() {
    let (app, _platform, north, south) = two_clinics().await;
    // The list and the appointment read come from the read models: a read before the workers
    // have applied the fixture finds no row, and a read that finds no patient logs nothing.
    app.db.caught_up().await;
    let p = north.patient_id;
    let reads: Vec<(&str, String, &str, &str)> = vec![
        // (token role, path, endpoint, outcome)
        (
            "nurse",
            format!("/v1/patients/{p}"),
            "GET /v1/patients/{id}",
            "allowed",
        ),
        (
            "receptionist",
            format!("/v1/appointments?patient_id={p}"),
            "GET /v1/appointments",
            "allowed",
        ),
        (
            "doctor",
            format!("/v1/appointments/{}", north.appointment_id),
            "GET /v1/appointments/{id}",
            "allowed",
        ),
        (
            "auditor",
            format!("/v1/patients/{p}"),
            "GET /v1/patients/{id}",
            "denied",
        ),
        (
            "auditor",
            format!("/v1/audit/patients/{p}/history"),
            "GET /v1/audit/patients/{id}/history",
            "allowed",
        ),
    ];
    let mut request_ids = Vec::new();
    for (role, path, _, _) in &reads {
        let answer = get(&app, north.token(role), path).await;
        request_ids.push(answer.header("x-request-id").unwrap_or("").to_owned());
    }
    // A patient of another clinic: 404, recorded as not found (in the reader's clinic).
    let other = get(
        &app,
        &north.nurse,
        &format!("/v1/patients/{}", south.patient_id),
    )
    .await;
    other.problem(404);

    let log = get(&app, &north.auditor, "/v1/audit/access-log").await;
    let items = ok(&log)["items"].as_array().unwrap().clone();
    // The auditor's own read of the log is not a patient read; everything else is, once.
    let ours: Vec<&Value> = items
        .iter()
        .filter(|i| i["patient_id"] == p.to_string())
        .collect();
    assert_eq!(ours.len(), reads.len(), "{items:#?}");
    for ((role, _, endpoint, outcome), request_id) in reads.iter().zip(&request_ids) {
        let matching: Vec<&&Value> = ours
            .iter()
            .filter(|i| i["request_id"] == request_id.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "{request_id}: {items:#?}");
        let row = matching[0];
        assert_eq!(row["endpoint"], *endpoint);
        assert_eq!(row["outcome"], *outcome);
        assert_eq!(row["role"], *role);
        assert_eq!(row["client_ip"], "127.0.0.1");
        assert!(row["actor_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    }
    let not_found: Vec<&Value> = items
        .iter()
        .filter(|i| i["patient_id"] == south.patient_id.to_string())
        .collect();
    assert_eq!(not_found.len(), 1, "{items:#?}");
    assert_eq!(not_found[0]["outcome"], "not_found");
    assert_eq!(not_found[0]["role"], "nurse");

    // Newest first, and filters.
    let times: Vec<DateTime<Utc>> = items
        .iter()
        .map(|i| i["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let by_patient = get(
        &app,
        &north.admin,
        &format!("/v1/audit/access-log?patient_id={p}&limit=2"),
    )
    .await;
    let by_patient = ok(&by_patient)["items"].as_array().unwrap().clone();
    assert_eq!(by_patient.len(), 2);
    assert_eq!(
        by_patient[0]["endpoint"],
        "GET /v1/audit/patients/{id}/history"
    );
    get(&app, &north.auditor, "/v1/audit/access-log?limit=0")
        .await
        .names_field("limit");
    get(&app, &north.auditor, "/v1/audit/access-log?actor_id=me")
        .await
        .names_field("actor_id");

    // South's auditor sees none of north's log.
    let south_log = get(&app, &south.auditor, "/v1/audit/access-log").await;
    assert_eq!(ok(&south_log)["items"], json!([]));
}

/// The reads of two clinics at the same moment: the access log's writer gathers their rows
/// into shared transactions (group commit). Each read is still logged exactly once, in its
/// own clinic, under its own request id, and answered only after its row committed.
#[tokio::test]
async fn reads_at_the_same_moment_are_each_logged_once_in_their_own_clinic() {
    let (app, _platform, north, south) = two_clinics().await;
    app.db.caught_up().await;
    let before = access_rows(&app).await;
    let app = &app;
    let mut reads = Vec::new();
    for i in 0..48 {
        let (clinic, token, path) = if i % 2 == 0 {
            (
                north.id,
                &north.nurse,
                format!("/v1/patients/{}", north.patient_id),
            )
        } else {
            (
                south.id,
                &south.receptionist,
                "/v1/patients?limit=5".to_owned(),
            )
        };
        reads.push(async move { (clinic, get(app, token, &path).await) });
    }
    let answers = futures::future::join_all(reads).await;
    let mut conn = app.db.owner_connection().await;
    for (clinic, answer) in &answers {
        assert_eq!(answer.status, 200, "{answer:?}");
        let request_id = answer.header("x-request-id").unwrap();
        let logged: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT clinic_id, outcome FROM access_log WHERE request_id = $1")
                .bind(request_id)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(
            logged,
            vec![(*clinic, "allowed".to_owned())],
            "{request_id}"
        );
    }
    assert_eq!(access_rows(app).await - before, answers.len() as i64);
}

/// The statement the writer sends: rows of two clinics in one transaction, each scoped to
/// its own clinic (the insert policy admits it), in the order given within a clinic.
#[tokio::test]
async fn one_access_batch_of_two_clinics_commits_as_one_transaction() {
    let (app, _platform, north, south) = two_clinics().await;
    let pool = app.db.app_pool().await;
    let at = app.now();
    let ids = [north.patient_id];
    let filter = json!({"q": "Exa\u{301}mple \u{1F600}", "limit": "20"});
    let access = |clinic: Uuid, request_id: &'static str| audit::NewAccess {
        clinic: domain::ids::ClinicId::from_uuid(clinic),
        actor_id: Uuid::new_v4(),
        role: "nurse",
        patient_id: None,
        patient_ids: &ids,
        filter: Some(&filter),
        endpoint: "GET /v1/patients",
        outcome: audit::AccessOutcome::Allowed,
        request_id,
        client_ip: Some("127.0.0.1".parse().unwrap()),
        at,
    };
    let batch = [
        access(north.id, "batch-n1"),
        access(south.id, "batch-s1"),
        access(north.id, "batch-n2"),
    ];
    audit::append_accesses(&pool, &batch).await.unwrap();
    let mut conn = app.db.owner_connection().await;
    let rows: Vec<(String, Uuid, String, Vec<Uuid>, Value)> = sqlx::query_as(
        "SELECT request_id, clinic_id, xmin::text, patient_ids, filter FROM access_log \
         WHERE request_id LIKE 'batch-%' ORDER BY clinic_id, id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let transactions: BTreeSet<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(transactions.len(), 1, "{rows:?}");
    for (request_id, clinic, _, patient_ids, stored) in &rows {
        let expected = if request_id.starts_with("batch-n") {
            north.id
        } else {
            south.id
        };
        assert_eq!(*clinic, expected, "{request_id}");
        assert_eq!(patient_ids, &ids.to_vec());
        assert_eq!(stored, &filter);
    }
    let north_order: Vec<&str> = rows
        .iter()
        .filter(|r| r.1 == north.id)
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(north_order, ["batch-n1", "batch-n2"]);
}

/// Fail closed: a read whose access-log row cannot be written is not served (a 500 with no
/// patient data), and reads are served again once the row can be written.
#[tokio::test]
async fn a_read_whose_access_row_cannot_be_written_is_not_served() {
    let (app, _platform, north, _south) = two_clinics().await;
    app.db.caught_up().await;
    let path = format!("/v1/patients/{}", north.patient_id);
    assert_eq!(get(&app, &north.nurse, &path).await.status, 200);
    let mut conn = app.db.owner_connection().await;
    conn.execute("REVOKE INSERT ON access_log FROM clinic_app")
        .await
        .unwrap();
    let refused = get(&app, &north.nurse, &path).await;
    refused.problem(500);
    assert!(refused.body.get("mrn").is_none(), "{refused:?}");
    assert!(!refused.body.to_string().contains("Example"), "{refused:?}");
    conn.execute("GRANT INSERT ON access_log TO clinic_app")
        .await
        .unwrap();
    let served = get(&app, &north.nurse, &path).await;
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(served.body["patient_id"], north.patient_id.to_string());
}

#[tokio::test]
async fn the_service_role_cannot_rewrite_the_access_log() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    // The read below must find the patient: wait for the read models (under load they lag).
    app.db.caught_up().await;
    let answer = get(
        &app,
        &north.nurse,
        &format!("/v1/patients/{}", north.patient_id),
    )
    .await;
    ok(&answer);

    let pool = app.db.app_pool().await;
    let scoped = |sql: &'static str| {
        let pool = pool.clone();
        let clinic = north.id;
        async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT set_config('app.clinic_id', $1, true)")
                .bind(clinic.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
            let query = sqlx::query(sql);
            let query = if sql.contains("$1") {
                query.bind(clinic)
            } else {
                query
            };
            let result = query.execute(&mut *tx).await;
            let _ = tx.rollback().await;
            result
        }
    };
    let rows: i64 = {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.clinic_id', $1, true)")
            .bind(north.id.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT count(*) FROM access_log")
            .fetch_one(&mut *tx)
            .await
            .unwrap()
    };
    assert_eq!(rows, 1);
    for sql in [
        "UPDATE access_log SET outcome = 'denied' WHERE clinic_id = $1",
        "DELETE FROM access_log WHERE clinic_id = $1",
        "TRUNCATE access_log",
    ] {
        let err = scoped(sql).await.expect_err(sql);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
    }
    // It may append, but only to the clinic of its transaction.
    scoped(
        "INSERT INTO access_log (clinic_id, actor_id, role, endpoint, outcome) \
         VALUES ($1, gen_random_uuid(), 'nurse', 'test', 'allowed')",
    )
    .await
    .unwrap();
    let err = scoped(
        "INSERT INTO access_log (clinic_id, actor_id, role, endpoint, outcome) \
         SELECT gen_random_uuid(), gen_random_uuid(), 'nurse', 'test', 'allowed' WHERE $1::uuid IS NOT NULL",
    )
    .await
    .expect_err("another clinic's row");
    assert_eq!(
        err.as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned())
            .as_deref(),
        Some("42501"),
        "{err}"
    );
    pool.close().await;
}

// ---------------------------------------------------------------------------------------
// `clinic replay`.

fn database_url(db: &TestDb) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        db.owner.get_username(),
        db.owner.get_host(),
        db.owner.get_port(),
        db.name
    )
}

pub(crate) async fn replay(db: &TestDb, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clinic"));
    cmd.arg("replay")
        .args(args)
        .env("DATABASE_URL", database_url(db))
        .env_remove("CLINIC_EMBEDDED_PG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || cmd.output().expect("run clinic replay"))
        .await
        .unwrap()
}

#[tokio::test]
async fn clinic_replay_exports_the_stream_and_checks_the_read_models() {
    let (app, _platform, north, _south) = two_clinics().await;
    // Some history beyond the fixture.
    let updated = app
        .patch(
            &format!("/v1/patients/{}", north.patient_id),
            &north.nurse,
            json!({"phone": "+49 30 5550002"}),
        )
        .await;
    ok(&updated);
    let cancelled = app
        .post(
            &format!("/v1/appointments/{}/cancel", north.appointment_id),
            &north.receptionist,
            json!({"reason": "clash"}),
        )
        .await;
    ok(&cancelled);
    app.db.caught_up().await;

    let streamed = full_stream(&app, &north.auditor, north.id, "").await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("replay-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("north.ndjson");
    let out = replay(
        &app.db,
        &["--clinic", "north", "--out", file.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(exported, streamed);

    // To standard output, with --until.
    let events = lines(&streamed);
    let cut = events[4]["time"].as_str().unwrap().to_owned();
    let out = replay(&app.db, &["--clinic", "north", "--until", &cut]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let until = lines(&String::from_utf8(out.stdout).unwrap());
    assert!(until.len() >= 5 && until.len() < events.len());
    assert_eq!(
        positions(&until),
        positions(&events)[..until.len()].to_vec()
    );

    // The read models agree with the events…
    let out = replay(&app.db, &["--clinic", "north", "--check"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("no differences"), "{stdout}");

    // …until a read-model row is altered behind the projections' back.
    let mut owner = app.db.owner_connection().await;
    sqlx::query(
        "UPDATE rm.patients SET birth_date = '1999-12-31', status = 'merged' WHERE patient_id = $1",
    )
    .bind(north.patient_id)
    .execute(&mut owner)
    .await
    .unwrap();
    sqlx::query("UPDATE rm.appointments SET status = 'fulfilled' WHERE appointment_id = $1")
        .bind(north.appointment_id)
        .execute(&mut owner)
        .await
        .unwrap();
    let out = replay(&app.db, &["--clinic", "north", "--check"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let differences: Vec<&str> = stdout.lines().collect();
    assert_eq!(differences.len(), 3, "{stdout}");
    let patient = format!("Patient {}", north.patient_id);
    assert!(differences
        .iter()
        .any(|l| l.starts_with(&patient) && l.contains("birth_date") && l.contains("1999-12-31")));
    assert!(differences
        .iter()
        .any(|l| l.starts_with(&patient) && l.contains("status")));
    assert!(differences.iter().any(|l| l
        .starts_with(&format!("Appointment {}", north.appointment_id))
        && l.contains("\"cancelled\"")
        && l.contains("\"fulfilled\"")));

    // Bad flags are one line naming the flag.
    let out = replay(&app.db, &["--clinic", "nowhere"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--clinic"));
    let out = replay(&app.db, &["--clinic", "north", "--until", "noon"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--until"));
    let _ = std::fs::remove_dir_all(&dir);
}
