//! Abuse (issue 15): what a hostile or broken client can send, and what it gets back. A log-in
//! storm (throttles, memory, the liveness endpoint's latency), bodies (too large, too deep,
//! mistyped, odd Unicode), slow clients, forged tokens, and the headers of every answer.
//! `docs/security.md` ("Abuse") sums up what was tried and what it found.
//!
//! What issue 12 already covers is not repeated here: the password-check cap
//! (`security::f08_*`), one e-mail's lock (`auth::repeated_failures_lock_one_email_with_retry_after`,
//! `auth::simultaneous_guesses_cannot_outrun_the_lock`), NUL in every field
//! (`security::f03_*`), the 64 KiB limit and `text/plain` on `POST /v1/patients`
//! (`endpoints::non_json_oversized_and_malformed_bodies_are_refused`), and expired, `alg: none`
//! and wrong-audience tokens on every endpoint
//! (`endpoints::missing_expired_unsigned_and_foreign_audience_tokens_get_401`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    patient_body, spawn_app, spawn_app_with, Answer, TestApp, PASSWORD, TEST_METRICS_TOKEN,
};

// ---------------------------------------------------------------------------------------
// Helpers.

/// A client whose connections come from `127.0.0.x`, another client address to the server.
fn client_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
        .build()
        .expect("a client")
}

/// `POST /v1/auth/login` through `client`.
async fn login_with(
    app: &TestApp,
    client: &reqwest::Client,
    email: &str,
    password: &str,
) -> Answer {
    let res = client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request");
    answer_of(res).await
}

async fn answer_of(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body");
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Sends `method path` with `token`, the raw `body` and `content_type` (none if `None`).
async fn send_bytes(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut req = app.client.request(method, app.url(path)).body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    answer_of(req.send().await.expect("request")).await
}

/// Asserts a problem+json answer with `status` whose `type` ends with `slug`.
fn assert_problem(what: &str, answer: &Answer, status: u16, slug: &str) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json"),
        "{what}: {answer:?}"
    );
    let kind = answer.body["type"].as_str().unwrap_or_default();
    assert!(
        kind.ends_with(slug),
        "{what}: type {kind}, expected …{slug}"
    );
}

/// The count `sql` selects (as the owner).
async fn count_rows(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.db.owner_connection().await;
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

/// What requests wrote: events (not the billing process manager's) and access-log rows.
async fn written(app: &TestApp) -> (i64, i64) {
    (
        app.event_count().await,
        count_rows(app, "SELECT count(*) FROM access_log").await,
    )
}

/// Sessions of the service's login (`clinic_app`) on the test database that are running a
/// query or hold a transaction open: what a request holding a pooled connection shows.
async fn busy_app_sessions(app: &TestApp) -> i64 {
    count_rows(
        app,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND usename = 'clinic_app' AND state IS DISTINCT FROM 'idle'",
    )
    .await
}

/// The `host:port` of the app.
fn authority(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads from `stream` until the server closes it (or resets it), for at most `limit`: what
/// the server sent, and how long after `since` it closed (`None`: still open at the limit).
async fn read_until_closed(
    stream: &mut tokio::net::tcp::OwnedReadHalf,
    since: Instant,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = since + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(since.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `bytes` one at a time, `every` apart, until they are all sent or the server has
/// closed the connection.
fn drip(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    bytes: Vec<u8>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for b in bytes {
            if writer.write_all(&[b]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
        // Keep the write side open: the server must be the one to end it.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(writer);
    })
}

/// The status and body of a raw HTTP/1.1 answer.
fn parse_raw(answer: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// HMAC-SHA256 (RFC 2104), to sign tokens with any header.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// The 99th percentile of `samples` (nearest rank).
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let rank = ((samples.len() as f64) * 0.99).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

// ---------------------------------------------------------------------------------------
// 1. A log-in storm: 300 attempts at once from one address, against one account and many
// unknown e-mails, while a prober times `/healthz`.

/// Times `GET /healthz` from a thread and runtime of its own (so the storm's tasks do not
/// delay the prober's), one request after another on one kept-alive connection, until `stop`:
/// when each request was sent, and how long its answer took.
fn healthz_prober(
    url: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, Duration)>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            // The connection is opened before the storm: its set-up is not a sample.
            let warm = client.get(&url).send().await.expect("healthz");
            assert_eq!(warm.status(), 200);
            warm.bytes().await.expect("body");
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let start = Instant::now();
                let res = client.get(&url).send().await.expect("healthz");
                assert_eq!(res.status(), 200);
                res.bytes().await.expect("body");
                samples.push((start, start.elapsed()));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            samples
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_a_storm_of_300_log_ins_is_throttled_per_e_mail_and_address_bounded_and_healthz_stays_fast(
) {
    use commands::accounts::{LOCK_MINUTES, MAX_CLIENT_FAILURES, MAX_FAILURES, WINDOW_MINUTES};
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "storm", "professional").await;
    let victim = "admin@storm.example";
    let bystander = "nurse@storm.example";
    let hired = app
        .post(
            "/v1/staff",
            &admin,
            json!({"name": "Nora Nurse", "email": bystander, "role": "nurse", "password": PASSWORD}),
        )
        .await;
    assert_eq!(hired.status, 201, "{hired:?}");
    let unknown = |i: usize| format!("nobody-{i}@storm.example");

    let stop = Arc::new(AtomicBool::new(false));
    let prober = healthz_prober(app.url("/healthz"), stop.clone());
    // Let the prober open its connection first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The storm is sent from a runtime of its own too: the service's runtime runs the
    // service's tasks only, as in production, and not the 300 clients'.
    let storm = {
        let url = app.url("/v1/auth/login");
        let victim = victim.to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let client = reqwest::Client::new();
                let started = Instant::now();
                let attempts = (0..300).map(|i| {
                    let email = if i % 2 == 0 {
                        victim.clone()
                    } else {
                        unknown(i)
                    };
                    let req = client
                        .post(&url)
                        .json(&json!({"email": email, "password": format!("guess number {i:03}")}));
                    async move { (email, answer_of(req.send().await.expect("log-in")).await) }
                });
                let answers = futures::future::join_all(attempts).await;
                (answers, started)
            })
        })
    };
    let (answers, started) = tokio::task::spawn_blocking(move || storm.join().expect("the storm"))
        .await
        .unwrap();
    let storm = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    // Only the requests sent while the storm ran count.
    let mut samples: Vec<Duration> = tokio::task::spawn_blocking(move || prober.join())
        .await
        .unwrap()
        .expect("the prober")
        .into_iter()
        .filter(|(sent, _)| *sent >= started)
        .map(|(_, took)| took)
        .collect();

    // Only 401s and 429s: no 5xx, no 200, whatever the load.
    let statuses: Vec<u16> = answers.iter().map(|(_, a)| a.status).collect();
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 429)),
        "{statuses:?}"
    );
    let checked = |only_victim: bool| {
        answers
            .iter()
            .filter(|(e, a)| a.status == 401 && (!only_victim || e == victim))
            .count()
    };
    let refused: Vec<&Answer> = answers
        .iter()
        .map(|(_, a)| a)
        .filter(|a| a.status == 429)
        .collect();
    eprintln!(
        "300 log-ins in {storm:?}: {} checked (401), {} of them the victim's, {} refused (429)",
        checked(false),
        checked(true),
        refused.len()
    );
    // At most 100 attempts from one address are counted before it is locked, and at most 5
    // of those against one e-mail are checked.
    assert!(
        checked(false) <= MAX_CLIENT_FAILURES as usize,
        "{statuses:?}"
    );
    assert!(checked(true) <= MAX_FAILURES as usize, "{statuses:?}");
    for answer in &refused {
        assert_problem("a refused log-in", answer, 429, "/too-many-requests");
        let wait: u64 = answer
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("whole seconds");
        assert!((1..=(LOCK_MINUTES as u64) * 60).contains(&wait), "{wait}");
    }
    assert!(
        refused
            .iter()
            .any(|a| a.body["detail"].as_str().unwrap_or("").contains("address")),
        "the address was never locked"
    );

    // /healthz answered fast all along.
    assert!(samples.len() >= 20, "{} samples", samples.len());
    let n = samples.len();
    let p99 = p99(&mut samples);
    eprintln!(
        "/healthz during the storm: {n} samples, median {:?}, p99 {p99:?}, max {:?}",
        samples[n / 2],
        samples[n - 1]
    );
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");

    // From another address, the victim's right password is still refused (the e-mail is
    // locked), while another account logs in.
    let elsewhere = client_from(2);
    let locked = login_with(&app, &elsewhere, victim, PASSWORD).await;
    assert_problem(
        "the victim's right password",
        &locked,
        429,
        "/too-many-requests",
    );
    assert!(
        locked.body["detail"].as_str().unwrap().contains("e-mail"),
        "{locked:?}"
    );
    assert_eq!(
        login_with(&app, &elsewhere, bystander, PASSWORD)
            .await
            .status,
        200
    );
    // From the storm's address, even a right password is refused: the address is locked.
    let from_storm = app.login_answer(bystander, PASSWORD).await;
    assert_problem(
        "a right password from the storm's address",
        &from_storm,
        429,
        "/too-many-requests",
    );
    assert!(
        from_storm.body["detail"]
            .as_str()
            .unwrap()
            .contains("address"),
        "{from_storm:?}"
    );

    // The throttle keeps at most a row per counted attempt: the 150 unknown e-mails tried
    // left at most 100 rows (the attempts past the address's lock leave none) ...
    let storm_rows = "SELECT count(*) FROM login_throttle WHERE email_key LIKE '%@storm.example'";
    let rows = count_rows(&app, storm_rows).await;
    assert!(rows <= MAX_CLIENT_FAILURES as i64 + 2, "{rows} rows");
    let all = count_rows(&app, "SELECT count(*) FROM login_throttle").await;
    assert!(all <= MAX_CLIENT_FAILURES as i64 + 4, "{all} rows in all");
    // ... and they go once the window and the locks are over (a log-in takes away up to
    // 100 old rows).
    app.advance(chrono::Duration::minutes(WINDOW_MINUTES + LOCK_MINUTES + 1));
    for _ in 0..3 {
        assert_eq!(
            login_with(&app, &elsewhere, bystander, PASSWORD)
                .await
                .status,
            200
        );
    }
    assert_eq!(count_rows(&app, storm_rows).await, 0);
    // The victim can log in again, from the storm's address too.
    let again = app.login_answer(victim, PASSWORD).await;
    assert_eq!(again.status, 200, "{again:?}");
}

// ---------------------------------------------------------------------------------------
// 2. Bodies.

#[tokio::test]
async fn b1_oversized_deep_and_mistyped_bodies_are_problems_and_write_nothing() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "bodies", "professional").await;
    let created = app.post("/v1/patients", &admin, patient_body("Ada")).await;
    assert_eq!(created.status, 201, "{created:?}");
    let patient = format!("/v1/patients/{}", created.id());
    let before = written(&app).await;
    // Three bodies a command takes: a create, an update, and the log-in (before any token).
    let targets: [(Method, &str, Option<&str>); 3] = [
        (Method::POST, "/v1/patients", Some(admin.as_str())),
        (Method::PATCH, patient.as_str(), Some(admin.as_str())),
        (Method::POST, "/v1/auth/login", None),
    ];

    // Beyond the 64 KiB limit: with a Content-Length (refused before it is read) ...
    let mut huge = patient_body("Ada");
    huge["name"]["family"] = json!("x".repeat(100 * 1024));
    let huge = serde_json::to_vec(&huge).unwrap();
    for (method, path, token) in &targets {
        let answer = send_bytes(
            &app,
            method.clone(),
            path,
            *token,
            Some("application/json"),
            huge.clone(),
        )
        .await;
        assert_problem(
            &format!("100 KiB to {method} {path}"),
            &answer,
            413,
            "/payload-too-large",
        );
    }
    // ... and chunked, without one (refused once 64 KiB have come).
    for (method, path, token) in &targets {
        let mut stream = TcpStream::connect(authority(&app)).await.unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            authority(&app)
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
        for _ in 0..9 {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let (mut reader, _writer) = stream.into_split();
        let (got, closed) =
            read_until_closed(&mut reader, Instant::now(), Duration::from_secs(10)).await;
        assert!(
            closed.is_some(),
            "{method} {path}: the connection stayed open"
        );
        let (status, body) = parse_raw(&got);
        assert_eq!(status, 413, "chunked 72 KiB to {method} {path}: {body}");
        assert!(body["type"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/payload-too-large"));
    }

    // 10,000 levels of nesting, at the top and inside a field: a 400 (serde_json stops at
    // 128 levels), never a stack overflow or a 500.
    let depth = 10_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let in_a_field = format!(
        r#"{{"name": {{"given": {arrays}, "family": "Example"}}, "birth_date": "1984-02-29", "sex": "female"}}"#
    );
    let in_allergies = format!(
        r#"{{"name": {{"given": "Ada", "family": "Example"}}, "birth_date": "1984-02-29", "sex": "female", "allergies": [{objects}]}}"#
    );
    for body in [&arrays, &objects, &in_a_field, &in_allergies] {
        for (method, path, token) in &targets {
            let answer = send_bytes(
                &app,
                method.clone(),
                path,
                *token,
                Some("application/json"),
                body.clone().into_bytes(),
            )
            .await;
            let what = format!("{depth} levels ({}…) to {method} {path}", &body[..12]);
            assert!(
                matches!(answer.status, 400 | 422),
                "{what}: {}",
                answer.status
            );
            assert_eq!(
                answer.header("content-type"),
                Some("application/problem+json"),
                "{what}"
            );
        }
    }

    // Not JSON: text, a form, or no content type at all, each a 415.
    let valid = serde_json::to_vec(&patient_body("Ada")).unwrap();
    for (content_type, body) in [
        (Some("text/plain"), valid.clone()),
        (Some("text/plain; charset=utf-8"), valid.clone()),
        (
            Some("application/x-www-form-urlencoded"),
            b"email=admin%40bodies.example&password=x".to_vec(),
        ),
        (Some("multipart/form-data; boundary=x"), valid.clone()),
        (Some("application/jsonp"), valid.clone()),
        (None, valid.clone()),
    ] {
        for (method, path, token) in &targets {
            let answer = send_bytes(
                &app,
                method.clone(),
                path,
                *token,
                content_type,
                body.clone(),
            )
            .await;
            assert_problem(
                &format!("{content_type:?} to {method} {path}"),
                &answer,
                415,
                "/unsupported-media-type",
            );
        }
    }

    assert_eq!(
        written(&app).await,
        before,
        "a refused body wrote something"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn b2_names_with_combining_marks_right_to_left_text_and_emoji_are_kept_exactly() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "unicode", "professional").await;
    let names = [
        // A combining diaeresis (decomposed, as typed on some keyboards): kept decomposed.
        ("Zoe\u{308}", "Bro\u{302}nte\u{301}"),
        // Right-to-left: Hebrew and Arabic, one with a right-to-left mark inside.
        (
            "\u{5d3}\u{5d5}\u{5d3}",
            "\u{645}\u{62d}\u{645}\u{62f}\u{200f} \u{627}\u{644}\u{639}\u{644}\u{64a}",
        ),
        // Emoji: one outside the BMP, a ZWJ sequence with a variation selector, a flag.
        (
            "\u{1f984}",
            "\u{1f469}\u{200d}\u{2695}\u{fe0f} \u{1f1e9}\u{1f1ea}",
        ),
        // Mixed scripts and a precomposed letter next to its decomposed twin.
        (
            "Ñandú n\u{303}",
            "O\u{2019}Brien-\u{5e9}\u{5dc}\u{5d5}\u{5dd}",
        ),
    ];
    let mut created = Vec::new();
    for (given, family) in names {
        let mut body = patient_body(given);
        body["name"]["family"] = json!(family);
        let answer = app.post("/v1/patients", &admin, body).await;
        assert_eq!(answer.status, 201, "{given} {family}: {answer:?}");
        let position = answer.body["position"].as_i64().expect("position");
        created.push((answer.id(), given, family, position));
    }
    for (id, given, family, position) in &created {
        let read = app
            .read_at(&format!("/v1/patients/{id}"), &admin, *position)
            .await;
        assert_eq!(read.status, 200, "{read:?}");
        assert_eq!(read.body["name"]["given"], json!(given));
        assert_eq!(read.body["name"]["family"], json!(family));
        // The event keeps the same code points.
        let mut conn = app.db.owner_connection().await;
        let payload: String = sqlx::query_scalar(
            "SELECT payload::text FROM events WHERE aggregate_id LIKE '%' || $1 ORDER BY sequence LIMIT 1",
        )
        .bind(id.to_string())
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(
            payload.contains(given) && payload.contains(family),
            "{payload}"
        );
    }
    // A search finds the right-to-left name as sent.
    let (_, _, family, position) = &created[1];
    let hebrew = "\u{5d3}\u{5d5}\u{5d3}";
    let found = app
        .read_at(
            &format!("/v1/patients?q={}", urlencode(hebrew)),
            &admin,
            *position,
        )
        .await;
    assert_eq!(found.status, 200, "{found:?}");
    assert!(found.body.to_string().contains(family), "{found:?}");

    // NUL is refused, naming the field, and nothing is written (every field of every body:
    // security::f03_nul_in_any_json_field_of_any_command_is_a_422_naming_it_and_writes_nothing).
    let before = written(&app).await;
    for field in ["given", "family"] {
        let mut body = patient_body("Ada");
        body["name"][field] = json!("Ada\u{0}Lovelace");
        let answer = app.post("/v1/patients", &admin, body).await;
        assert_problem("NUL in a name", &answer, 422, "/validation");
        answer.names_field(&format!("name.{field}"));
    }
    assert_eq!(written(&app).await, before);
}

/// Percent-encodes `s` for a query string.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 3. Slow clients.

/// The request timeout of the slow-client tests.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A slowloris: request lines and headers sent a byte at a time. Each connection is closed
/// once its head has taken longer than the request timeout, though bytes keep coming; none
/// of them holds a database connection, and other requests are served meanwhile.
#[tokio::test]
async fn c1_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_request_timeout() {
    let app = spawn_app_with(|s| s.http.request_timeout = TIMEOUT).await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "slowloris", "professional").await;
    let head = format!(
        "POST /v1/patients HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        authority(&app)
    );
    // More stalled connections than the pool has connections (8).
    let mut stalled = Vec::new();
    let started = Instant::now();
    for _ in 0..12 {
        let stream = TcpStream::connect(authority(&app)).await.unwrap();
        let (reader, writer) = stream.into_split();
        // 100 ms a byte: the head would take a minute.
        let writer = drip(
            writer,
            head.clone().into_bytes(),
            Duration::from_millis(100),
        );
        stalled.push((reader, writer));
    }
    tokio::time::sleep(TIMEOUT / 2).await;
    for _ in 0..3 {
        assert_eq!(busy_app_sessions(&app).await, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let me = app.send(Method::GET, "/v1/me", Some(&admin), None).await;
    assert_eq!(me.status, 200, "{me:?}");
    for (mut reader, writer) in stalled {
        let (got, closed) = read_until_closed(&mut reader, started, TIMEOUT * 4).await;
        let closed = closed.expect("a slow head kept its connection open");
        assert!(
            closed >= TIMEOUT && closed < TIMEOUT * 3,
            "closed after {closed:?}"
        );
        // Whatever hyper says on the way out, it is no answer to the request.
        let (status, _) = parse_raw(&got);
        assert!(
            status == 0 || status == 408 || status == 400,
            "{}",
            String::from_utf8_lossy(&got)
        );
        writer.abort();
    }
    assert_eq!(busy_app_sessions(&app).await, 0);
}

/// A body sent a byte at a time: the request is answered 408 (problem+json) at the request
/// timeout, its pooled connection is not held while the body trickles in, and nothing is
/// written.
#[tokio::test]
async fn c2_a_body_sent_a_byte_at_a_time_is_a_408_problem_and_holds_no_database_connection() {
    let app = spawn_app_with(|s| s.http.request_timeout = TIMEOUT).await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "slowbody", "professional").await;
    let body = serde_json::to_vec(&patient_body("Slow")).unwrap();
    let before = written(&app).await;
    let mut stalled = Vec::new();
    let started = Instant::now();
    for i in 0..12 {
        let mut stream = TcpStream::connect(authority(&app)).await.unwrap();
        let head = format!(
            "POST /v1/patients HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {admin}\r\n\
             Content-Type: application/json\r\nIdempotency-Key: slow-{i}\r\n\
             Content-Length: {}\r\n\r\n",
            authority(&app),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (reader, writer) = stream.into_split();
        let writer = drip(writer, body.clone(), Duration::from_millis(200));
        stalled.push((reader, writer));
    }
    // While the bodies trickle in, the service holds no connection for them and serves others.
    tokio::time::sleep(TIMEOUT / 2).await;
    for _ in 0..3 {
        assert_eq!(busy_app_sessions(&app).await, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let me = app.send(Method::GET, "/v1/me", Some(&admin), None).await;
    assert_eq!(me.status, 200, "{me:?}");
    for (mut reader, writer) in stalled {
        let (got, closed) = read_until_closed(&mut reader, started, TIMEOUT * 4).await;
        let text = String::from_utf8_lossy(&got);
        let (status, problem) = parse_raw(&got);
        assert_eq!(status, 408, "{text}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/request-timeout"),
            "{text}"
        );
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/problem+json"),
            "{text}"
        );
        assert!(lower.contains("cache-control: no-store"), "{text}");
        let closed = closed.expect("the connection stayed open after the 408");
        assert!(closed < TIMEOUT * 3, "answered after {closed:?}");
        writer.abort();
    }
    assert_eq!(busy_app_sessions(&app).await, 0);
    assert_eq!(
        written(&app).await,
        before,
        "a cut-off request wrote something"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Forged tokens.

#[tokio::test]
async fn d1_forged_expired_and_logged_out_tokens_are_401_problems_and_write_nothing() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (_, admin) = app.clinic_on(&platform, "forgery", "professional").await;
    let desk_email = "desk@forgery.example";
    let hired = app
        .post(
            "/v1/staff",
            &admin,
            json!({"name": "Desk Person", "email": desk_email, "role": "receptionist", "password": PASSWORD}),
        )
        .await;
    assert_eq!(hired.status, 201, "{hired:?}");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pair = app.login_answer(desk_email, PASSWORD).await;
    assert_eq!(pair.status, 200, "{pair:?}");
    let desk = pair.body["access_token"].as_str().unwrap().to_owned();
    let refresh = pair.body["refresh_token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = desk.split('.').collect();
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let encode = |v: &Value| b64.encode(serde_json::to_vec(v).unwrap());
    let hmac = |secret: &[u8], header: &Value, payload: &Value| {
        let input = format!("{}.{}", encode(header), encode(payload));
        format!(
            "{input}.{}",
            b64.encode(hmac_sha256(secret, input.as_bytes()))
        )
    };
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let secret = crate::helpers::TEST_JWT_SECRET;
    // The control: our own HS256 over the same claims is accepted.
    let control = hmac(secret, &hs256, &claims);
    assert_eq!(
        app.send(Method::GET, "/v1/me", Some(&control), None)
            .await
            .status,
        200
    );
    let public_key = "-----BEGIN PUBLIC KEY-----\n\
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n\
        4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n\
        -----END PUBLIC KEY-----\n";
    let mut promoted = claims.clone();
    promoted["role"] = json!("clinic_admin");
    let mut platform_claims = claims.clone();
    platform_claims["role"] = json!("platform_admin");
    platform_claims["clinic"] = Value::Null;
    let mut expired = claims.clone();
    expired["iat"] = json!(app.now().timestamp() - 3600);
    expired["exp"] = json!(app.now().timestamp() - 60);
    let mut forever = claims.clone();
    forever["exp"] = json!(app.now().timestamp() + 10 * 365 * 86400);
    let forgeries: Vec<(&str, String)> = vec![
        (
            "signed with another secret",
            hmac(b"another-secret-another-secret-another!", &hs256, &claims),
        ),
        (
            "alg none, no signature",
            format!(
                "{}.{}.",
                encode(&json!({"alg": "none", "typ": "JWT"})),
                encode(&claims)
            ),
        ),
        (
            "alg None, the original signature",
            format!(
                "{}.{}.{}",
                encode(&json!({"alg": "None"})),
                parts[1],
                parts[2]
            ),
        ),
        (
            "header RS256, HMAC signature with our secret",
            hmac(secret, &json!({"alg": "RS256", "typ": "JWT"}), &claims),
        ),
        (
            "header RS256, the original signature",
            format!(
                "{}.{}.{}",
                encode(&json!({"alg": "RS256", "typ": "JWT"})),
                parts[1],
                parts[2]
            ),
        ),
        (
            "HS256 with a public key as the secret",
            hmac(public_key.as_bytes(), &hs256, &claims),
        ),
        (
            "HS512 with our secret",
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .unwrap(),
        ),
        (
            "expired, signed with our secret",
            hmac(secret, &hs256, &expired),
        ),
        (
            "role raised, the original signature",
            format!("{}.{}.{}", parts[0], encode(&promoted), parts[2]),
        ),
        (
            "platform admin, the original signature",
            format!("{}.{}.{}", parts[0], encode(&platform_claims), parts[2]),
        ),
        (
            "expiry pushed out, the original signature",
            format!("{}.{}.{}", parts[0], encode(&forever), parts[2]),
        ),
        ("no signature at all", format!("{}.{}", parts[0], parts[1])),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    let before = written(&app).await;
    let tries = |token: String| {
        let app = &app;
        async move {
            let body = patient_body("Forged");
            vec![
                app.send(Method::GET, "/v1/me", Some(&token), None).await,
                app.send(Method::GET, "/v1/patients", Some(&token), None).await,
                app.send(Method::POST, "/v1/patients", Some(&token), Some(&body))
                    .await,
                app.send(
                    Method::POST,
                    "/v1/staff",
                    Some(&token),
                    Some(&json!({"name": "Mallory", "email": "mallory@forgery.example", "role": "clinic_admin", "password": PASSWORD})),
                )
                .await,
                app.send(Method::GET, "/v1/clinics", Some(&token), None).await,
            ]
        }
    };
    for (what, token) in &forgeries {
        for answer in tries(token.clone()).await {
            assert_problem(what, &answer, 401, "/unauthorized");
            assert!(
                answer
                    .header("www-authenticate")
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{what}: {answer:?}"
            );
        }
    }
    // The real token, after logout.
    assert_eq!(
        app.send(Method::GET, "/v1/me", Some(&desk), None)
            .await
            .status,
        200
    );
    let out = app
        .send(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(&json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(out.status, 204, "{out:?}");
    for answer in tries(desk.clone()).await {
        assert_problem("a token after logout", &answer, 401, "/unauthorized");
    }
    // Our own signature over the same claims after logout: the cut-off, not the signature.
    for answer in tries(control).await {
        assert_problem(
            "a re-signed token after logout",
            &answer,
            401,
            "/unauthorized",
        );
    }
    assert_eq!(
        written(&app).await,
        before,
        "a forged token wrote something"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Response headers.

/// Every answer of every `GET` of the OpenAPI document, to every role and to no token, carries
/// `Cache-Control: no-store` and names no server or framework; so do command answers,
/// problems, the fallbacks and the documents. The endpoints with patient data answer 200 to
/// some role (the header is seen on real data, not only on refusals).
#[tokio::test]
async fn e1_every_answer_is_no_store_and_names_no_server() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "headers").await;
    let visit = crate::invoices::billed_visit(
        &app,
        &north,
        north.patient_id,
        north.doctor_id,
        app.future(2, 9),
    )
    .await;
    app.db.projections_caught_up().await;
    let mut tokens: Vec<(&str, Option<String>)> =
        vec![("nobody", None), ("platform", Some(platform.clone()))];
    for role in ["clinic_admin", "doctor", "nurse", "receptionist", "auditor"] {
        tokens.push((role, Some(app.login(&north.emails[role]).await)));
    }
    tokens.push(("metrics scraper", Some(TEST_METRICS_TOKEN.to_owned())));
    let check = |what: &str, answer: &Answer| {
        assert_eq!(
            answer.header("cache-control"),
            Some("no-store"),
            "{what}: {} {:?}",
            answer.status,
            answer.headers
        );
        for leak in ["server", "x-powered-by", "x-aspnet-version", "via"] {
            assert!(
                answer.header(leak).is_none(),
                "{what}: {leak} {:?}",
                answer.headers
            );
        }
    };

    let doc = api::startup::openapi();
    let now = app.now().to_rfc3339().replace('+', "%2B");
    let mut answered = BTreeSet::new();
    let mut requests = 0;
    for (template, item) in &doc.paths.paths {
        if item.get.is_none() {
            continue;
        }
        let mut paths = Vec::new();
        if template.contains("{id}") {
            for id in [
                north.patient_id,
                north.appointment_id,
                north.doctor_id,
                north.id,
                visit.invoice_id,
            ] {
                paths.push(template.replace("{id}", &id.to_string()));
            }
        } else {
            paths.push(template.replace("{module}", "billing"));
        }
        let query = match template.as_str() {
            "/v1/reports/monthly" => "?month=2027-01".to_owned(),
            "/v1/audit/state" => format!(
                "?as_of={now}&aggregate_type=Patient&aggregate_id={}",
                north.patient_id
            ),
            "/v1/doctors/{id}/availability" => format!(
                "?from={}&to={}",
                app.future(1, 0).to_rfc3339().replace('+', "%2B"),
                app.future(2, 0).to_rfc3339().replace('+', "%2B")
            ),
            _ => String::new(),
        };
        for path in paths {
            for (who, token) in &tokens {
                let url = format!("{path}{query}");
                let answer = app.send(Method::GET, &url, token.as_deref(), None).await;
                requests += 1;
                check(&format!("GET {url} as {who}"), &answer);
                if answer.status == 200 {
                    answered.insert(template.clone());
                }
            }
        }
    }
    for patient_data in [
        "/v1/patients",
        "/v1/patients/{id}",
        "/v1/patients/{id}/balance",
        "/v1/appointments",
        "/v1/appointments/{id}",
        "/v1/invoices",
        "/v1/invoices/{id}",
        "/v1/dashboard",
        "/v1/audit/events",
        "/v1/audit/access-log",
        "/v1/audit/state",
        "/v1/audit/patients/{id}/history",
        "/v1/audit/appointments/{id}/history",
    ] {
        assert!(
            answered.contains(patient_data),
            "GET {patient_data} never answered 200 (answered: {answered:?})"
        );
    }
    eprintln!("{requests} GETs, {} endpoints answered 200", answered.len());

    // Commands, problems, fallbacks and the documents.
    let admin = app.login(&north.emails["clinic_admin"]).await;
    let created = app
        .post("/v1/patients", &admin, patient_body("Header"))
        .await;
    assert_eq!(created.status, 201);
    check("a command's answer", &created);
    let invalid = app.post("/v1/patients", &admin, json!({})).await;
    check("a 422", &invalid);
    let login = app.login_answer(&north.emails["nurse"], PASSWORD).await;
    assert_eq!(login.status, 200);
    check("a log-in's tokens", &login);
    for (method, path) in [
        (Method::GET, "/no/such/endpoint"),
        (Method::DELETE, "/v1/patients"),
        (Method::GET, "/healthz"),
        (Method::GET, "/readyz"),
        (Method::GET, "/openapi.json"),
    ] {
        let answer = app.send(method.clone(), path, Some(&admin), None).await;
        check(&format!("{method} {path}"), &answer);
    }

    // The OpenAPI document says so.
    let description = doc.info.description.clone().unwrap_or_default();
    assert!(
        description.contains("Cache-Control: no-store"),
        "{description}"
    );
}
