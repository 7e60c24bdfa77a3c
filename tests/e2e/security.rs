//! Regression tests for the outside security review (issue 12), one or more per finding. Each
//! names the finding it covers; `docs/security.md` maps every threat to its test.

use reqwest::Method;
use serde_json::{json, Value};

use crate::auth::refresh;
use crate::endpoints;
use crate::helpers::{patient_body, spawn_app, Answer, ClinicFixture, TestApp, PASSWORD};

fn refresh_token_of(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["refresh_token"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// 1. A refresh token presented twice at once must leave its whole family dead.

#[tokio::test]
async fn f01_a_refresh_token_raced_against_itself_leaves_no_live_successor() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "racerefresh").await;
    let email = clinic.emails["receptionist"].clone();
    for attempt in 0..10 {
        let login = app.login_answer(&email, PASSWORD).await;
        let token = refresh_token_of(&login);
        let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));
        let statuses = [a.status, b.status];
        assert!(
            statuses.contains(&401),
            "attempt {attempt}: one of two uses of one token is refused: {statuses:?}"
        );
        // Whatever successor the winner got, the reuse revoked it with the family.
        for answer in [&a, &b].into_iter().filter(|x| x.status == 200) {
            let successor = refresh_token_of(answer);
            let after = refresh(&app, &successor).await;
            assert_eq!(
                after.status, 401,
                "attempt {attempt}: the successor of a reused token lived on: {after:?}"
            );
        }
    }
}

#[tokio::test]
async fn f01_reusing_an_old_token_while_its_successor_rotates_kills_the_new_one_too() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "racefamily").await;
    let email = clinic.emails["nurse"].clone();
    for attempt in 0..10 {
        let r1 = refresh_token_of(&app.login_answer(&email, PASSWORD).await);
        let r2 = refresh_token_of(&refresh(&app, &r1).await);
        // r1 is spent: presenting it revokes the family, while r2 rotates at the same moment.
        let (reuse, rotate) = tokio::join!(refresh(&app, &r1), refresh(&app, &r2));
        assert_eq!(reuse.status, 401, "attempt {attempt}: {reuse:?}");
        if rotate.status == 200 {
            let r3 = refresh_token_of(&rotate);
            let after = refresh(&app, &r3).await;
            assert_eq!(
                after.status, 401,
                "attempt {attempt}: a token of a revoked family lived on: {after:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. U+0000 in any string the API takes is a 422 naming the field, never a 500.

/// Every string leaf of `value` with its path, as the 422s name fields.
fn string_leaves(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::String(_) => out.push(path.to_owned()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                string_leaves(item, &at, out);
            }
        }
        _ => {}
    }
}

/// `value` with a NUL appended to the string at `path`.
fn with_nul_at(value: &Value, path: &str) -> Value {
    let mut value = value.clone();
    let mut at = &mut value;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        at = &mut at[key];
        for index in indexes
            .trim_matches(['[', ']'])
            .split("][")
            .filter(|s| !s.is_empty())
        {
            at = &mut at[index.parse::<usize>().unwrap()];
        }
    }
    let text = at.as_str().unwrap().to_owned();
    *at = Value::String(format!("{text}\u{0}"));
    value
}

#[tokio::test]
async fn f03_nul_in_any_json_field_of_any_command_is_a_422_naming_it_and_writes_nothing() {
    let app = spawn_app().await;
    let w = endpoints::setup(&app).await;
    let mut tried = 0;
    let mut failures = Vec::new();
    for case in endpoints::cases(&w) {
        let mut leaves = Vec::new();
        string_leaves(&case.body, "", &mut leaves);
        for leaf in leaves {
            let body = with_nul_at(&case.body, &leaf);
            let before = app.event_count().await;
            let answer = app
                .send(
                    case.method.clone(),
                    &case.path,
                    Some(w.token(case.actor)),
                    Some(&body),
                )
                .await;
            let named = answer.status == 422
                && answer.body["errors"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["field"] == leaf.as_str()));
            if !named || app.event_count().await != before {
                failures.push(format!("{} `{leaf}`: {answer:?}", case.endpoint));
            }
            tried += 1;
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(tried > 40, "only {tried} fields tried");
}

#[tokio::test]
async fn f03_nul_in_auth_bodies_is_a_422_before_any_authentication() {
    let app = spawn_app().await;
    for (path, body, field) in [
        (
            "/v1/auth/login",
            json!({"email": "a\u{0}@x.io", "password": "x"}),
            "email",
        ),
        (
            "/v1/auth/login",
            json!({"email": "a@x.io", "password": "pass\u{0}word"}),
            "password",
        ),
        (
            "/v1/auth/refresh",
            json!({"refresh_token": "abc\u{0}"}),
            "refresh_token",
        ),
        (
            "/v1/auth/logout",
            json!({"refresh_token": "abc\u{0}"}),
            "refresh_token",
        ),
    ] {
        app.send(Method::POST, path, None, Some(&body))
            .await
            .names_field(field);
    }
}

/// Sends `GET path?query` with every role in turn until one may use the endpoint; the
/// answer of that role.
async fn get_as_anyone(app: &TestApp, w: &endpoints::World, path_and_query: &str) -> Answer {
    let mut last = None;
    for role in endpoints::ALL_ROLES {
        let answer = app
            .send(Method::GET, path_and_query, Some(w.token(role)), None)
            .await;
        if answer.status != 403 {
            return answer;
        }
        last = Some(answer);
    }
    last.expect("a role")
}

#[tokio::test]
async fn f03_nul_in_any_query_parameter_of_any_read_is_a_422_naming_it_and_odd_text_no_5xx() {
    let app = spawn_app().await;
    let w = endpoints::setup(&app).await;
    let doc = serde_json::to_value(api::startup::openapi()).unwrap();
    let mut tried = 0;
    let mut failures = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        let path = path.replace("{id}", &w.north.patient_id.to_string());
        let params = get["parameters"].as_array().cloned().unwrap_or_default();
        for param in params.iter().filter(|p| p["in"] == "query") {
            let name = param["name"].as_str().unwrap();
            for value in ["ab%00", "%00", "2026-01-01%00"] {
                let answer = get_as_anyone(&app, &w, &format!("{path}?{name}={value}")).await;
                let named = answer.status == 422
                    && answer.body["errors"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|e| e["field"] == name));
                if !named {
                    failures.push(format!("GET {path}?{name}={value}: {answer:?}"));
                }
                tried += 1;
            }
        }
    }
    // Huge values and Unicode edge cases (right-to-left override, combining marks, a ZWJ
    // emoji sequence, a BOM, a non-character, an over-long UTF-8 sequence) are answered,
    // never with a 5xx.
    let huge = "x".repeat(16 * 1024);
    let odd = [
        huge.as_str(),
        "%E2%80%AEab",
        "e%CC%81%CC%81%CC%81",
        "%F0%9F%91%A9%E2%80%8D%F0%9F%94%AC",
        "%EF%BB%BFab",
        "%EF%BF%BF",
        "%C0%80",
        "%FF%FE",
    ];
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        let path = path.replace("{id}", &w.north.patient_id.to_string());
        let params = get["parameters"].as_array().cloned().unwrap_or_default();
        for param in params.iter().filter(|p| p["in"] == "query") {
            let name = param["name"].as_str().unwrap();
            for value in odd {
                let answer = get_as_anyone(&app, &w, &format!("{path}?{name}={value}")).await;
                if answer.status >= 500 {
                    failures.push(format!(
                        "GET {path}?{name}=<{} bytes>: {answer:?}",
                        value.len()
                    ));
                }
            }
        }
    }
    // A NUL in a parameter's name is named too (written %00), not a 500.
    let answer = get_as_anyone(&app, &w, "/v1/patients?q%00=ab").await;
    answer.names_field("q%00");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(tried > 30, "only {tried} parameters tried");
}

#[tokio::test]
async fn f03_a_forged_page_token_with_nul_is_a_422_naming_it() {
    use base64::Engine as _;
    let app = spawn_app().await;
    let w = endpoints::setup(&app).await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged = [
        (
            "/v1/patients",
            json!({"f": "ab\u{0}", "g": "", "i": uuid::Uuid::new_v4()}),
        ),
        (
            "/v1/patients",
            json!({"f": "ab", "g": "\u{0}", "i": uuid::Uuid::new_v4()}),
        ),
        (
            "/v1/invoices",
            json!({"t": "2027-01-13T08:00:00Z\u{0}", "i": uuid::Uuid::new_v4()}),
        ),
    ];
    for (path, key) in forged {
        let token = b64.encode(serde_json::to_vec(&key).unwrap());
        let answer = app
            .send(
                Method::GET,
                &format!("{path}?page_token={token}"),
                Some(&w.north.admin),
                None,
            )
            .await;
        answer.names_field("page_token");
    }
}

#[tokio::test]
async fn f03_nul_in_a_header_is_refused_by_the_server_not_a_500() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "nulheader").await;
    let host = app.url("/").replace("http://", "");
    let host = host.trim_end_matches('/');
    for header in [
        "Idempotency-Key",
        "If-Match",
        "X-Request-Id",
        "X-Min-Position",
    ] {
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let body = patient_body("Nul");
        let body = serde_json::to_vec(&body).unwrap();
        let mut request = format!(
            "POST /v1/patients HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{header}: ab",
            clinic.admin,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(b"\x00cd\r\n\r\n");
        request.extend_from_slice(&body);
        stream.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let status_line = String::from_utf8_lossy(&answer);
        let status_line = status_line.lines().next().unwrap_or_default();
        assert!(
            status_line.starts_with("HTTP/1.1 400"),
            "{header}: {status_line}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. A doctor cannot give themselves access to a patient.

/// Books `patient` with the fixture's doctor, `days` from now at 10:00 (UTC), as `token`.
async fn book_with_doctor(
    app: &TestApp,
    clinic: &crate::helpers::ClinicFixture,
    token: &str,
    patient: uuid::Uuid,
    days: i64,
) -> Answer {
    let start = app.future(days, 10);
    app.post(
        "/v1/appointments",
        token,
        json!({
            "patient_id": patient,
            "doctor_id": clinic.doctor_id,
            "start": start,
            "end": start + chrono::Duration::minutes(30),
        }),
    )
    .await
}

#[tokio::test]
async fn f02_a_doctor_cannot_book_cancel_or_update_their_way_into_a_record() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "selfgrant").await;
    let registered = app
        .post("/v1/patients", &n.receptionist, patient_body("Hidden"))
        .await;
    assert_eq!(registered.status, 201, "{registered:?}");
    let hidden = registered.id();
    let events = app.event_count().await;
    let record = format!("/v1/patients/{hidden}");
    let seen = |answer: &Answer| answer.status == 200;

    // The patient is not the doctor's: 404, and not in their list.
    let read = app.read_at(&record, &n.doctor, pos(&registered)).await;
    read.problem(404);
    let list = app
        .read_at("/v1/patients?limit=200", &n.doctor, pos(&registered))
        .await;
    assert!(
        !list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["patient_id"] == hidden.to_string()),
        "{list:?}"
    );

    // Booking the patient with themselves is refused with the answer of an unknown patient.
    let booked = book_with_doctor(&app, &n, &n.doctor, hidden, 2).await;
    booked.names_field("patient_id");
    let unknown = book_with_doctor(&app, &n, &n.doctor, uuid::Uuid::new_v4(), 2).await;
    assert_eq!(
        booked.body["errors"], unknown.body["errors"],
        "{booked:?} vs {unknown:?}"
    );
    // Updating them is a 404, like reading them; nothing was written.
    let patched = app
        .patch(&record, &n.doctor, json!({"phone": "+49 30 7654321"}))
        .await;
    patched.problem(404);
    let patched_unknown = app
        .patch(
            &format!("/v1/patients/{}", uuid::Uuid::new_v4()),
            &n.doctor,
            json!({"phone": "+49 30 7654321"}),
        )
        .await;
    assert_eq!(patched.body["detail"], patched_unknown.body["detail"]);
    assert_eq!(
        app.event_count().await,
        events,
        "a refused command writes nothing"
    );

    // The desk books the patient with the doctor: now the doctor sees and may update them.
    let desk = book_with_doctor(&app, &n, &n.receptionist, hidden, 3).await;
    assert_eq!(desk.status, 201, "{desk:?}");
    assert!(seen(&app.read_at(&record, &n.doctor, pos(&desk)).await));
    let patched = app
        .patch(&record, &n.doctor, json!({"phone": "+49 30 7654321"}))
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    // ... and may book a follow-up themselves.
    let follow_up = book_with_doctor(&app, &n, &n.doctor, hidden, 5).await;
    assert_eq!(follow_up.status, 201, "{follow_up:?}");

    // Cancelled, both appointments grant nothing: the record is a 404 to the doctor again,
    // for reads, updates and bookings.
    for appointment in [desk.id(), follow_up.id()] {
        let cancelled = app
            .post(
                &format!("/v1/appointments/{appointment}/cancel"),
                &n.receptionist,
                json!({"reason": "moved away"}),
            )
            .await;
        assert_eq!(cancelled.status, 200, "{cancelled:?}");
    }
    let position = app.event_count().await;
    let read = app
        .read_at(&record, &n.doctor, last_position(&app).await)
        .await;
    read.problem(404);
    app.patch(&record, &n.doctor, json!({"phone": "+49 30 1111111"}))
        .await
        .problem(404);
    book_with_doctor(&app, &n, &n.doctor, hidden, 6)
        .await
        .names_field("patient_id");
    assert_eq!(app.event_count().await, position);

    // A no-show grants nothing either; a fulfilled visit does.
    let no_show = book_with_doctor(&app, &n, &n.receptionist, hidden, 0).await;
    assert_eq!(no_show.status, 201, "{no_show:?}");
    app.advance(chrono::Duration::days(1));
    // (A day later, the access tokens have expired.)
    let desk = app.login(&n.emails["receptionist"]).await;
    let doctor = app.login(&n.emails["doctor"]).await;
    let marked = app
        .post(
            &format!("/v1/appointments/{}/no-show", no_show.id()),
            &desk,
            json!({}),
        )
        .await;
    assert_eq!(marked.status, 200, "{marked:?}");
    app.read_at(&record, &doctor, last_position(&app).await)
        .await
        .problem(404);

    // The fixture's patient, booked by the desk, stays visible throughout.
    let own = format!("/v1/patients/{}", n.patient_id);
    let own = app.read_at(&own, &doctor, last_position(&app).await).await;
    assert!(seen(&own), "{own:?}");
}

/// The `position` of a command answer (for `X-Min-Position`).
fn pos(answer: &Answer) -> i64 {
    answer.body["position"]
        .as_i64()
        .unwrap_or_else(|| panic!("no position in {answer:?}"))
}

async fn last_position(app: &TestApp) -> i64 {
    let mut conn = app.db.owner_connection().await;
    sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// 5. While PostgreSQL cannot be reached, requests get a 503 with Retry-After within 1 s.

/// A TCP proxy in front of the test's PostgreSQL that the test can take down (every open
/// connection is cut, new ones are closed at once) and bring back up on the same port.
struct PgProxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    kill: tokio::sync::broadcast::Sender<()>,
}

impl PgProxy {
    async fn start(target: String) -> PgProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(AtomicBool::new(true));
        let (kill, _) = tokio::sync::broadcast::channel(4);
        let (accepting, sender) = (up.clone(), kill.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut killed = sender.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = killed.recv() => {}
                    }
                });
            }
        });
        PgProxy { port, up, kill }
    }

    fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = self.kill.send(());
    }

    fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn f05_while_the_database_is_down_requests_get_a_fast_503_with_retry_after_and_recover() {
    let db = crate::helpers::TestDb::new().await;
    let target = format!("{}:{}", db.owner.get_host(), db.owner.get_port());
    let proxy = PgProxy::start(target).await;
    let through_proxy = db.owner.clone().port(proxy.port);
    let app = crate::helpers::spawn_app_with_db(db, |s| {
        s.database.source = api::infra::config::DatabaseSource::Url(Box::new(through_proxy));
    })
    .await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "dbdown").await;
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);

    proxy.down();
    let requests: [(Method, &str, Option<&str>, Option<Value>); 5] = [
        (Method::GET, "/v1/me", Some(&clinic.admin), None),
        (Method::GET, "/v1/patients", Some(&clinic.admin), None),
        (
            Method::POST,
            "/v1/patients",
            Some(&clinic.receptionist),
            Some(patient_body("Down")),
        ),
        (Method::GET, "/v1/dashboard", Some(&clinic.nurse), None),
        (
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": clinic.emails["nurse"], "password": PASSWORD})),
        ),
    ];
    // Twice: the first use of a pooled connection finds it cut, the second finds none.
    for round in 0..2 {
        for (method, path, token, body) in &requests {
            let started = std::time::Instant::now();
            let answer = app.send(method.clone(), path, *token, body.as_ref()).await;
            let took = started.elapsed();
            assert_eq!(
                answer.status, 503,
                "round {round}: {method} {path}: {answer:?}"
            );
            let problem = answer.problem(503);
            assert_eq!(
                problem["type"],
                "https://clinic.example/problems/unavailable"
            );
            assert!(answer.header("retry-after").is_some(), "{answer:?}");
            assert!(
                took < std::time::Duration::from_millis(1000),
                "round {round}: {method} {path} took {took:?}"
            );
        }
        let started = std::time::Instant::now();
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status().as_u16(), 503);
        assert!(started.elapsed() < std::time::Duration::from_millis(1000));
    }

    // Back up: the same requests succeed again, without a restart of the service.
    proxy.up();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if app.get("/readyz").await.status().as_u16() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no recovery in 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let registered = app
        .post("/v1/patients", &clinic.receptionist, patient_body("Back"))
        .await;
    assert_eq!(registered.status, 201, "{registered:?}");
    assert_eq!(
        app.send(Method::GET, "/v1/me", Some(&clinic.admin), None)
            .await
            .status,
        200
    );
}

// ---------------------------------------------------------------------------------------
// 4. Every answer that carries patient data is in the access log, once, naming the patients
// it returned or the filter it used.

#[tokio::test]
async fn f04_lists_searches_exports_histories_and_the_dashboard_are_in_the_access_log() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "accesslist").await;
    let second = app
        .post("/v1/patients", &n.receptionist, patient_body("Second"))
        .await;
    assert_eq!(second.status, 201, "{second:?}");
    let second = second.id();
    app.db.caught_up().await;
    let (p, a) = (n.patient_id, n.appointment_id);
    let both = {
        let mut ids = vec![p.to_string(), second.to_string()];
        ids.sort();
        ids
    };
    let just = |id: uuid::Uuid| vec![id.to_string()];
    let none: Vec<String> = Vec::new();
    // (role, path, endpoint, patient_id, patient_ids, filter)
    type Read<'a> = (&'a str, String, &'a str, Option<String>, Vec<String>, Value);
    let reads: Vec<Read> = vec![
        (
            "receptionist",
            "/v1/patients?limit=50".into(),
            "GET /v1/patients",
            None,
            both.clone(),
            json!({"limit": "50"}),
        ),
        (
            "nurse",
            "/v1/patients?q=Ada".into(),
            "GET /v1/patients",
            None,
            just(p),
            json!({"q": "Ada"}),
        ),
        (
            "auditor",
            "/v1/audit/events".into(),
            "GET /v1/audit/events",
            None,
            none.clone(),
            json!({}),
        ),
        (
            "auditor",
            format!("/v1/audit/events?aggregate_type=Patient&aggregate_id={p}"),
            "GET /v1/audit/events",
            Some(p.to_string()),
            none.clone(),
            json!({"aggregate_type": "Patient", "aggregate_id": p.to_string()}),
        ),
        (
            "auditor",
            format!("/v1/audit/appointments/{a}/history"),
            "GET /v1/audit/appointments/{id}/history",
            Some(p.to_string()),
            none.clone(),
            json!({}),
        ),
        (
            "clinic_admin",
            format!(
                "/v1/audit/state?aggregate_type=Appointment&aggregate_id={a}&as_of={}",
                app.now().to_rfc3339().replace('+', "%2B")
            ),
            "GET /v1/audit/state",
            Some(p.to_string()),
            none.clone(),
            Value::Null,
        ),
        (
            "nurse",
            "/v1/dashboard".into(),
            "GET /v1/dashboard",
            None,
            just(p),
            json!({}),
        ),
        (
            "receptionist",
            "/v1/appointments".into(),
            "GET /v1/appointments",
            None,
            just(p),
            json!({}),
        ),
    ];
    let mut failures = Vec::new();
    for (role, path, endpoint, patient_id, patient_ids, filter) in &reads {
        let answer = app.send(Method::GET, path, Some(n.token(role)), None).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        let request_id = answer.header("x-request-id").unwrap().to_owned();
        let log = app
            .send(
                Method::GET,
                "/v1/audit/access-log?limit=1000",
                Some(&n.auditor),
                None,
            )
            .await;
        let rows: Vec<&Value> = log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["request_id"] == request_id.as_str())
            .collect();
        let expected = json!({
            "endpoint": endpoint, "outcome": "allowed", "role": role,
            "patient_id": patient_id, "patient_ids": patient_ids,
            "filter": filter,
        });
        match rows.as_slice() {
            [row] => {
                let got = json!({
                    "endpoint": row["endpoint"], "outcome": row["outcome"], "role": row["role"],
                    "patient_id": row["patient_id"], "patient_ids": row["patient_ids"],
                    "filter": row["filter"],
                });
                if got != expected {
                    failures.push(format!("{path}: expected {expected}, got {got}"));
                }
            }
            other => failures.push(format!("{path}: {} rows for one request", other.len())),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // "Who read the second patient?" finds the lists that returned them.
    let who = app
        .send(
            Method::GET,
            &format!("/v1/audit/access-log?patient_id={second}"),
            Some(&n.auditor),
            None,
        )
        .await;
    let endpoints: Vec<&str> = who.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(endpoints, ["GET /v1/patients"], "{who:?}");

    // Staff events carry no patient data and are not recorded; a refused list is.
    let before = access_rows(&app).await;
    let staff = app
        .send(
            Method::GET,
            "/v1/audit/events?aggregate_type=Staff",
            Some(&n.auditor),
            None,
        )
        .await;
    assert_eq!(staff.status, 200);
    assert_eq!(access_rows(&app).await, before);
    let refused = app
        .send(Method::GET, "/v1/patients", Some(&n.auditor), None)
        .await;
    refused.problem(403);
    assert_eq!(access_rows(&app).await, before + 1);
}

/// The access log's rows, all clinics.
pub(crate) async fn access_rows(app: &TestApp) -> i64 {
    let mut conn = app.db.owner_connection().await;
    sqlx::query_scalar("SELECT count(*) FROM access_log")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// 10. A client's X-Request-Id is kept only if it is a short plain token.

#[tokio::test]
async fn f10_an_unusable_request_id_is_replaced_before_it_reaches_events_or_logs() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "requestid").await;
    let long = "x".repeat(65);
    let cases: [(&str, bool); 5] = [
        ("frontdesk.retry-7_a", true),
        ("6f0174ee-ec9a-4505-b0f2-a4f988c9a057", true),
        (&long, false),
        ("{\"actor\": \"admin\"} forged", false),
        ("line\tbreak", false),
    ];
    for (sent, kept) in cases {
        let answer = app
            .send_with(
                Method::POST,
                "/v1/patients",
                Some(&n.receptionist),
                Some(&patient_body("Tracked")),
                &[("x-request-id", sent)],
            )
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        let answered = answer.header("x-request-id").unwrap().to_owned();
        if kept {
            assert_eq!(answered, sent);
        } else {
            assert_ne!(answered, sent);
            assert!(uuid::Uuid::parse_str(&answered).is_ok(), "{answered}");
        }
        // The event carries the id the answer names, never the refused one.
        let mut conn = app.db.owner_connection().await;
        let stored: String =
            sqlx::query_scalar("SELECT metadata ->> 'request_id' FROM events WHERE position = $1")
                .bind(pos(&answer))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(stored, answered);
    }
}

// ---------------------------------------------------------------------------------------
// 12. Logout and deactivation end the access tokens already issued, at once.

#[tokio::test]
async fn f12_logout_and_deactivation_end_issued_access_tokens_at_once() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "logoutnow").await;
    let email = n.emails["nurse"].clone();
    let me = |token: String| {
        let app = &app;
        async move {
            app.send(Method::GET, "/v1/me", Some(&token), None)
                .await
                .status
        }
    };
    let pair = |answer: &Answer| {
        assert_eq!(answer.status, 200, "{answer:?}");
        (
            answer.body["access_token"].as_str().unwrap().to_owned(),
            answer.body["refresh_token"].as_str().unwrap().to_owned(),
        )
    };
    let (phone_access, phone_refresh) = pair(&app.login_answer(&email, PASSWORD).await);
    let (tablet_access, tablet_refresh) = pair(&app.login_answer(&email, PASSWORD).await);
    assert_eq!(me(phone_access.clone()).await, 200);

    // Logging out on the phone ends every access token issued so far, in the same second.
    let out = app
        .send(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(&json!({"refresh_token": phone_refresh})),
        )
        .await;
    assert_eq!(out.status, 204);
    assert_eq!(me(phone_access).await, 401);
    assert_eq!(me(tablet_access).await, 401);
    // The tablet's login lives on: its refresh token gets a new access token that works, even
    // in the second of the logout; so does a new log-in.
    let (tablet_access, _) = pair(&refresh(&app, &tablet_refresh).await);
    assert_eq!(me(tablet_access.clone()).await, 200);
    let (again, _) = pair(&app.login_answer(&email, PASSWORD).await);
    assert_eq!(me(again).await, 200);

    // Deactivated and reactivated a minute later: a token from before stays dead.
    let nurse_id = app
        .send(Method::GET, "/v1/me", Some(&tablet_access), None)
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = n.admin.clone();
    let deactivated = app
        .post(
            &format!("/v1/staff/{nurse_id}/deactivate"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(deactivated.status, 200, "{deactivated:?}");
    app.advance(chrono::Duration::minutes(1));
    let reactivated = app
        .post(
            &format!("/v1/staff/{nurse_id}/reactivate"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(reactivated.status, 200, "{reactivated:?}");
    assert_eq!(me(tablet_access).await, 401);
    let (fresh, _) = pair(&app.login_answer(&email, PASSWORD).await);
    assert_eq!(me(fresh).await, 200);
}

// ---------------------------------------------------------------------------------------
// 9. An Idempotency-Key claim is a lease: an attempt that died does not block the key for a
// day, and a retry learns what it did from the event store.

async fn expire_lease(app: &TestApp, key: &str) {
    let mut conn = app.db.owner_connection().await;
    let lapsed = sqlx::query(
        "UPDATE idempotency_keys SET lease_until = now() - interval '1 second' WHERE key = $1",
    )
    .bind(key)
    .execute(&mut conn)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(lapsed, 1, "{key} is claimed");
}

#[tokio::test]
async fn f09_a_key_whose_attempt_timed_out_is_free_once_its_lease_ends_and_runs_once() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.http.request_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "leases").await;
    let key = [("Idempotency-Key", "register-timed-out-1")];
    let body = patient_body("Lapsed");

    // The first attempt is held at its append (the events table is locked) until the server
    // answers 408 and drops it, with its claim taken and nothing committed.
    let mut locker = app.db.owner_connection().await;
    let mut lock = sqlx::Connection::begin(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let events = app.event_count().await;
    let first = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(&n.receptionist),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(first.status, 408, "{first:?}");
    lock.rollback().await.unwrap();

    // Within the lease, a retry is told to come back, and when.
    let during = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(&n.receptionist),
            Some(&body),
            &key,
        )
        .await;
    let problem = during.problem(409);
    assert!(problem["type"]
        .as_str()
        .unwrap()
        .ends_with("/idempotency-in-progress"));
    let retry_after: u64 = during.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=7).contains(&retry_after), "{retry_after}");

    // Once the lease has run out, the retry finds that nothing was committed and runs it, once.
    expire_lease(&app, key[0].1).await;
    let retried = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(&n.receptionist),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(retried.status, 201, "{retried:?}");
    assert_eq!(retried.header("idempotent-replayed"), None);
    let again = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(&n.receptionist),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, retried.body);
    assert_eq!(app.event_count().await, events + 1, "one registration");
}

#[tokio::test]
async fn f09_a_retry_after_a_lapsed_claim_that_committed_gets_that_answer_from_the_event_store() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "outcomes").await;
    let patient = n.patient_id;
    type Case<'a> = (Method, String, &'a str, Value, Vec<(&'a str, &'a str)>);
    let cases: [Case; 3] = [
        (
            Method::POST,
            "/v1/patients".into(),
            &n.receptionist,
            patient_body("Committed"),
            vec![],
        ),
        (
            Method::POST,
            "/v1/clinic/departments".into(),
            &n.admin,
            json!({"name": "Radiology"}),
            vec![],
        ),
        (
            Method::PATCH,
            format!("/v1/patients/{patient}"),
            &n.nurse,
            json!({"phone": "+49 30 5550000"}),
            vec![("If-Match", "\"1\"")],
        ),
    ];
    for (i, (method, path, token, body, extra)) in cases.into_iter().enumerate() {
        let key = format!("lapsed-after-commit-{i}");
        let mut headers = extra.clone();
        headers.push(("Idempotency-Key", &key));
        let first = app
            .send_with(method.clone(), &path, Some(token), Some(&body), &headers)
            .await;
        assert!(first.status == 200 || first.status == 201, "{first:?}");
        // The attempt committed, but its answer was never stored (it died right after the
        // commit), and its lease ran out.
        let mut conn = app.db.owner_connection().await;
        sqlx::query(
            "UPDATE idempotency_keys SET status_code = NULL, response_body = NULL, \
             location = NULL, lease_until = now() - interval '1 second' WHERE key = $1",
        )
        .bind(&key)
        .execute(&mut conn)
        .await
        .unwrap();
        let events = app.event_count().await;
        let retry = app
            .send_with(method.clone(), &path, Some(token), Some(&body), &headers)
            .await;
        assert_eq!(retry.status, first.status, "{path}: {retry:?}");
        assert_eq!(retry.header("idempotent-replayed"), Some("true"), "{path}");
        assert_eq!(retry.body, first.body, "{path}");
        assert_eq!(retry.header("location"), first.header("location"), "{path}");
        assert_eq!(retry.header("etag"), first.header("etag"), "{path}");
        assert_eq!(app.event_count().await, events, "{path}: nothing ran again");
    }
}

#[tokio::test]
async fn f09_the_same_key_with_another_if_match_is_another_request() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "ifmatchkey").await;
    let path = format!("/v1/patients/{}", n.patient_id);
    let body = json!({"phone": "+49 30 5551111"});
    let first = app
        .send_with(
            Method::PATCH,
            &path,
            Some(&n.nurse),
            Some(&body),
            &[("Idempotency-Key", "patch-1"), ("If-Match", "\"1\"")],
        )
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let other = app
        .send_with(
            Method::PATCH,
            &path,
            Some(&n.nurse),
            Some(&body),
            &[("Idempotency-Key", "patch-1"), ("If-Match", "\"7\"")],
        )
        .await;
    assert!(other.problem(422)["type"]
        .as_str()
        .unwrap()
        .ends_with("/idempotency-key-reused"));
}

// ---------------------------------------------------------------------------------------
// 7. A slow reader of the event export costs other clinics nothing.

/// Opens `GET path` on a raw connection, reads the status line and headers, then stops
/// reading (the connection is kept open, as a stalled client would).
async fn stalled_reader(app: &TestApp, path: &str, token: &str) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.url("/").replace("http://", "");
    let host = host.trim_end_matches('/').to_owned();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(host.parse().unwrap()).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    let status = String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (status, stream)
}

#[tokio::test]
async fn f07_a_stalled_export_holds_neither_the_request_pool_nor_its_connection_for_long() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.workers = None;
        s.http.streams = api::audit_streams::StreamSettings {
            pool_size: 2,
            per_clinic: 1,
            stall: std::time::Duration::from_secs(3),
            total: std::time::Duration::from_secs(60),
        };
    })
    .await;
    let platform = app.platform_admin().await;
    let a = app.clinic(&platform, "slowexport").await;
    let b = app.clinic(&platform, "otherexport").await;
    // About 40 MB of A's events: far more than the channel, the server's and the client's
    // socket buffers hold.
    let mut owner = app.db.owner_connection().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'AuditTestMarker', $1 || ':' || gen_random_uuid(), 1, 'Marked', '1.0', \
                json_build_object('Marked', json_build_object('pad', repeat('x', 1000))), \
                json_build_object('tenant_id', $1, 'actor_id', $2, 'actor_role', 'system', \
                                  'request_id', 'padding', 'occurred_at', now()) \
         FROM generate_series(1, 40000)",
    )
    .bind(a.id.to_string())
    .bind(uuid::Uuid::nil().to_string())
    .execute(&mut owner)
    .await
    .unwrap();

    let (status, stalled) = stalled_reader(&app, "/v1/audit/events", &a.auditor).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // Meanwhile: A's second export is a 429 (its share is taken), B exports in full, and
    // ordinary requests of both clinics are answered: the requests' pool is not the exports'.
    let second = app
        .send(Method::GET, "/v1/audit/events", Some(&a.auditor), None)
        .await;
    second.problem(429);
    assert!(second.header("retry-after").is_some());
    let b_export = app
        .client
        .get(app.url("/v1/audit/events"))
        .bearer_auth(&b.auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(b_export.status().as_u16(), 200);
    let b_lines = b_export.text().await.unwrap().lines().count() as i64;
    assert!(b_lines > 5, "{b_lines}");
    for (clinic, path) in [(&a, "/v1/patients"), (&b, "/v1/staff"), (&a, "/v1/staff")] {
        let answer = app.send(Method::GET, path, Some(&clinic.admin), None).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }

    // The stalled export is cut off: its place and its connection come back. Both clinics
    // then export at once on the pool of two.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let again = app
            .send(
                Method::GET,
                "/v1/audit/events?aggregate_type=Staff",
                Some(&a.auditor),
                None,
            )
            .await;
        if again.status == 200 {
            break;
        }
        assert_eq!(again.status, 429, "{again:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled export was never cut off"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (a_again, b_again) = tokio::join!(
        app.send(
            Method::GET,
            "/v1/audit/events?limit=10",
            Some(&a.auditor),
            None
        ),
        app.send(
            Method::GET,
            "/v1/audit/events?limit=10",
            Some(&b.auditor),
            None
        ),
    );
    assert_eq!((a_again.status, b_again.status), (200, 200));
    drop(stalled);
}

// ---------------------------------------------------------------------------------------
// 8. Log-in under attack: a cap on password checks, a limit per client address, throttle rows
// that expire, and one normal form of an e-mail for the account and the throttle.

#[tokio::test]
async fn f08_a_flood_of_log_ins_beyond_the_password_check_cap_is_a_429_at_once() {
    let app = crate::helpers::spawn_app_with(|s| s.auth.password_checks = 3).await;
    let logins = (0..40).map(|i| {
        let app = &app;
        async move {
            app.login_answer(&format!("nobody-{i}@flood.example"), "not the password")
                .await
        }
    });
    let answers = futures::future::join_all(logins).await;
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    let refused = answers.iter().filter(|a| a.status == 401).count();
    assert_eq!(busy.len() + refused, 40, "only 401s and 429s: {answers:?}");
    assert!(
        !busy.is_empty() && refused >= 3,
        "{} busy, {refused} refused",
        busy.len()
    );
    for answer in busy {
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert!(answer.problem(429)["type"]
            .as_str()
            .unwrap()
            .ends_with("/too-many-requests"));
    }
    // The gate empties again: a log-in after the flood is checked.
    let platform = app.platform_admin().await;
    assert!(!platform.is_empty());
}

#[tokio::test]
async fn f08_one_client_address_cannot_guess_across_many_e_mails() {
    let app = spawn_app().await;
    let limit = commands::accounts::MAX_CLIENT_FAILURES;
    for i in 0..limit {
        let answer = app
            .login_answer(&format!("guess-{i}@spray.example"), "not the password")
            .await;
        assert_eq!(answer.status, 401, "attempt {i}: {answer:?}");
    }
    let locked = app
        .login_answer("guess-last@spray.example", "not the password")
        .await;
    let problem = locked.problem(429);
    assert!(
        problem["detail"].as_str().unwrap().contains("address"),
        "{problem}"
    );
    assert!(locked.header("retry-after").is_some());
}

#[tokio::test]
async fn f08_throttle_rows_of_unknown_e_mails_expire() {
    let app = spawn_app().await;
    for i in 0..20 {
        let answer = app
            .login_answer(&format!("ghost-{i}@expire.example"), "x")
            .await;
        assert_eq!(answer.status, 401);
    }
    assert_eq!(expire_rows(&app).await, 20);
    // A window later, the next log-in takes the old rows away.
    app.advance(chrono::Duration::minutes(
        commands::accounts::WINDOW_MINUTES + 1,
    ));
    app.login_answer("ghost-new@other.example", "x").await;
    assert_eq!(expire_rows(&app).await, 0);
}

#[tokio::test]
async fn f08_an_e_mail_is_one_key_for_the_account_and_the_throttle_whatever_its_case_or_form() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "nfkc").await;
    let hired = app
        .post(
            "/v1/staff",
            &n.admin,
            json!({"name": "İnci Yılmaz", "email": "İnci@NFKC.example", "role": "nurse", "password": PASSWORD}),
        )
        .await;
    assert_eq!(hired.status, 201, "{hired:?}");
    // Stored normalised: NFKC, then Unicode lower case (İ is i + combining dot).
    let mut conn = app.db.owner_connection().await;
    let stored: String = sqlx::query_scalar("SELECT email FROM accounts WHERE id = $1")
        .bind(hired.id())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, "i\u{307}nci@nfkc.example");
    for form in [
        "İnci@nfkc.example",
        "İNCI@NFKC.EXAMPLE",
        "i\u{307}nci@nfkc.example",
        "İｎｃｉ@nfkc.example",
    ] {
        let answer = app.login_answer(form, PASSWORD).await;
        assert_eq!(answer.status, 200, "{form}: {answer:?}");
    }
    // Five failures under one form lock every form out, the right password included.
    for _ in 0..commands::accounts::MAX_FAILURES {
        assert_eq!(
            app.login_answer("İNCI@nfkc.example", "wrong").await.status,
            401
        );
    }
    let locked = app.login_answer("i\u{307}nci@NFKC.example", PASSWORD).await;
    locked.problem(429);
}

async fn expire_rows(app: &TestApp) -> i64 {
    let mut conn = app.db.owner_connection().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM login_throttle WHERE email_key LIKE '%@expire.example'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// 13. The access log is chained: a row deleted or changed, even by the table's owner, shows.

/// The clinic's nurse reads its patient's record: one access-log row.
async fn nurse_reads_the_patient(app: &TestApp, clinic: &ClinicFixture) {
    let path = format!("/v1/patients/{}", clinic.patient_id);
    let read = app
        .read_at(&path, &clinic.nurse, last_position(app).await)
        .await;
    assert_eq!(read.status, 200);
}

async fn access_chain_caught_up(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut conn = app.db.owner_connection().await;
        let (rows, links): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM access_log), (SELECT count(*) FROM access_chain)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if rows == links {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{links} of {rows} rows chained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn f13_the_access_chain_keeps_going_when_transaction_ids_gain_a_digit() {
    use projections::access_chain;
    use projections::audit_chain::ChainStatus;
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "digits").await;
    let other = app.clinic(&platform, "digitsother").await;
    let mut owner = app.db.owner_connection().await;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(
        existing, 0,
        "the rows below must come first in commit order"
    );
    // Rows as transactions 98, 99, 100 and 101 would write them (all long finished, so below
    // the chain's fence), in two steps: the workers chain 98 and 99 first, so that the
    // checkpoint is "99" when "100" arrives. As text, "99" sorts after "100" and "101".
    let insert = |clinic: uuid::Uuid, xid: &'static str| {
        sqlx::query(
            "INSERT INTO access_log (clinic_id, actor_id, role, endpoint, outcome, request_id, transaction_id) \
             VALUES ($1, $1, 'nurse', 'GET /v1/patients/{id}', 'allowed', $2, $2::xid8)",
        )
        .bind(clinic)
        .bind(xid)
    };
    for (clinic, xid) in [(n.id, "98"), (other.id, "99")] {
        insert(clinic, xid).execute(&mut owner).await.unwrap();
    }
    access_chain_caught_up(&app).await;
    for (clinic, xid) in [(n.id, "100"), (other.id, "101"), (n.id, "101")] {
        insert(clinic, xid).execute(&mut owner).await.unwrap();
    }
    // Before the fix the checkpoint stayed at "99", every next batch met row "100" again,
    // and the chain stopped on a duplicate key: this waited in vain.
    access_chain_caught_up(&app).await;
    let links: Vec<(uuid::Uuid, String, i64)> = sqlx::query_as(
        "SELECT clinic_id, transaction_id::text, link FROM access_chain \
         ORDER BY access_chain.transaction_id, access_id",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let expected: Vec<(uuid::Uuid, String, i64)> = vec![
        (n.id, "98".into(), 1),
        (other.id, "99".into(), 1),
        (n.id, "100".into(), 2),
        (other.id, "101".into(), 2),
        (n.id, "101".into(), 3),
    ];
    assert_eq!(links, expected);
    // More reads, with real transaction ids, are chained after them, and both chains verify.
    for clinic in [&n, &other] {
        nurse_reads_the_patient(&app, clinic).await;
    }
    access_chain_caught_up(&app).await;
    let pool = app.db.app_pool().await;
    for (clinic, rows) in [(&n, 4), (&other, 3)] {
        let verified = access_chain::verify(&pool, domain::ids::ClinicId::from_uuid(clinic.id))
            .await
            .unwrap();
        assert_eq!(verified.status, ChainStatus::Intact, "{verified}");
        assert_eq!((verified.rows, verified.pending), (rows, 0), "{verified}");
    }
}

#[tokio::test]
async fn f13_clinic_verify_finds_access_log_rows_removed_or_changed_by_the_owner() {
    use projections::access_chain;
    use projections::audit_chain::{ChainStatus, DiscrepancyKind};
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "chainedlog").await;
    let other = app.clinic(&platform, "otherlog").await;
    for clinic in [&n, &other] {
        for _ in 0..3 {
            nurse_reads_the_patient(&app, clinic).await;
        }
    }
    access_chain_caught_up(&app).await;
    let pool = app.db.app_pool().await;
    let clinic = domain::ids::ClinicId::from_uuid(n.id);
    let intact = access_chain::verify(&pool, clinic).await.unwrap();
    assert_eq!(intact.status, ChainStatus::Intact, "{intact}");
    assert!(intact.rows >= 3, "{intact}");

    // The owner changes one row: the chain says which.
    let mut owner = app.db.owner_connection().await;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM access_log WHERE clinic_id = $1 ORDER BY transaction_id, id",
    )
    .bind(n.id)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    sqlx::query("UPDATE access_log SET outcome = 'denied' WHERE clinic_id = $1 AND id = $2")
        .bind(n.id)
        .bind(ids[1])
        .execute(&mut owner)
        .await
        .unwrap();
    let changed = access_chain::verify(&pool, clinic).await.unwrap();
    assert_eq!(
        changed.first_discrepancy,
        Some((DiscrepancyKind::Changed, ids[1])),
        "{changed}"
    );
    sqlx::query("UPDATE access_log SET outcome = 'allowed' WHERE clinic_id = $1 AND id = $2")
        .bind(n.id)
        .bind(ids[1])
        .execute(&mut owner)
        .await
        .unwrap();
    assert_eq!(
        access_chain::verify(&pool, clinic).await.unwrap().status,
        ChainStatus::Intact
    );

    // The owner deletes a row: removed. With its link too: still removed (a gap in the links).
    sqlx::query("DELETE FROM access_log WHERE clinic_id = $1 AND id = $2")
        .bind(n.id)
        .bind(ids[0])
        .execute(&mut owner)
        .await
        .unwrap();
    let removed = access_chain::verify(&pool, clinic).await.unwrap();
    assert_eq!(
        removed.first_discrepancy,
        Some((DiscrepancyKind::Removed, ids[0])),
        "{removed}"
    );
    // `clinic verify` says so, and fails.
    let out = crate::chain::verify_cli(&app.db, "chainedlog", &[]).await;
    assert!(!out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!("access log tampered: removed at row {}", ids[0]);
    assert!(stdout.lines().any(|l| l == expected), "{stdout}");
    sqlx::query("DELETE FROM access_chain WHERE clinic_id = $1 AND access_id = $2")
        .bind(n.id)
        .bind(ids[0])
        .execute(&mut owner)
        .await
        .unwrap();
    let both = access_chain::verify(&pool, clinic).await.unwrap();
    assert_eq!(both.status, ChainStatus::Tampered, "{both}");
    // The other clinic's log is untouched.
    let theirs = access_chain::verify(&pool, domain::ids::ClinicId::from_uuid(other.id))
        .await
        .unwrap();
    assert_eq!(theirs.status, ChainStatus::Intact, "{theirs}");
}

// ---------------------------------------------------------------------------------------
// 11. The service logs in as neither the owner nor a superuser; claims are the triggers'.

#[tokio::test]
async fn f11_the_service_logs_in_as_clinic_app_and_cannot_leave_it_or_touch_claims() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "logins").await;
    let read = app
        .send(Method::GET, "/v1/patients", Some(&n.receptionist), None)
        .await;
    assert_eq!(read.status, 200);

    // Every connection of the running service (API pool, export pool, workers) logs in as
    // clinic_app or clinic_worker; the test's own owner connection is the only other.
    let mut owner = app.db.owner_connection().await;
    let logins: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT usename::text FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(logins.contains(&"clinic_app".to_owned()), "{logins:?}");
    assert!(
        logins
            .iter()
            .all(|u| u == "clinic_app" || u == "clinic_worker"),
        "{logins:?}"
    );
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'clinic_app'")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert!(!superuser && !bypass);

    // An injected RESET ROLE stays clinic_app; it cannot become the owner.
    let pool = app.db.app_pool().await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(who, "clinic_app");
    let owner_name = app.db.owner.get_username().to_owned();
    let escalate = sqlx::query(&format!("SET ROLE \"{owner_name}\""))
        .execute(&mut *conn)
        .await;
    assert!(escalate.is_err(), "clinic_app became {owner_name}");
    // Scheduling claims change only through events (their trigger): not directly, whose-ever.
    for sql in [
        "UPDATE slot_claims SET during = tstzrange(now(), now() + interval '1 hour')",
        "DELETE FROM slot_claims",
        "INSERT INTO slot_claims VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), tstzrange(now(), now() + interval '1 hour'))",
        "UPDATE care_links SET grants = true",
        "DELETE FROM care_links",
    ] {
        let err = sqlx::query(sql).execute(&mut *conn).await.unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
    }
    // ... and booking, which claims through the trigger, still works.
    let start = app.future(4, 11);
    let booked = app
        .post(
            "/v1/appointments",
            &n.receptionist,
            json!({"patient_id": n.patient_id, "doctor_id": n.doctor_id,
                   "start": start, "end": start + chrono::Duration::minutes(30)}),
        )
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
}
