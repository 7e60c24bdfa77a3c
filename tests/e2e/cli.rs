//! The real `clinic` binary: the private-cluster path and configuration errors.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_clinic");

/// A `clinic` command with no database configuration inherited from the test environment.
pub(crate) fn clinic(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("CLINIC_EMBEDDED_PG")
        .env_remove("CLINIC_PG_DIR")
        .env_remove("CLINIC_BIND")
        .env_remove("CLINIC_LOCAL_PG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run clinic")
}

/// The last non-empty line of stderr, which must be the one error line.
pub(crate) fn last_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "clinic panicked:\n{stderr}");
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned()
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `clinic serve`, waits for its "listening on" line and returns the child and base URL.
fn start_serving(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clinic serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap().to_owned();
                    // Keep draining stderr so the child never blocks on a full pipe.
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return (child, format!("http://{addr}"));
                }
                seen.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("clinic serve exited with {status}:\n{}", seen.join("\n"));
                }
            }
            Err(_) => {
                let _ = child.wait();
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("clinic serve did not start listening:\n{}", seen.join("\n"));
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("clinic serve did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cluster_running(data_dir: &Path) -> bool {
    data_dir.join("postmaster.pid").exists()
}

async fn get_status(url: &str) -> u16 {
    reqwest::get(url)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn assert_private_cluster_serves_and_stops(mut cmd: Command, data_dir: &Path) {
    let (mut child, base) = start_serving({
        cmd.env("CLINIC_PG_DIR", data_dir)
            .env("CLINIC_BIND", "127.0.0.1:0");
        cmd
    });
    assert!(
        cluster_running(data_dir),
        "no cluster in {}",
        data_dir.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(get_status(&format!("{base}/readyz"))), 200);
    assert_eq!(rt.block_on(get_status(&format!("{base}/healthz"))), 200);
    let status = terminate(&mut child);
    assert!(status.success(), "clinic serve exited with {status}");
    assert!(
        !cluster_running(data_dir),
        "the private cluster was left running"
    );
}

#[test]
fn serve_with_embedded_pg_forced_starts_its_own_cluster_and_stops_it() {
    let dir = temp_dir("serve-embedded");
    let data_dir = dir.join("pg");
    let mut cmd = clinic(&["serve"]);
    // Forced even though a URL is given (and even if a server answers on 5432).
    cmd.env("CLINIC_EMBEDDED_PG", "1")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing");
    assert_private_cluster_serves_and_stops(cmd, &data_dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_without_url_or_local_server_falls_back_to_a_private_cluster() {
    let dir = temp_dir("serve-fallback");
    let data_dir = dir.join("pg");
    // Nothing listens on the probed address, so `serve` must start its own cluster.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut cmd = clinic(&["serve"]);
    cmd.env("CLINIC_LOCAL_PG", &dead_addr);
    assert_private_cluster_serves_and_stops(cmd, &data_dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unparsable_database_url_is_one_line_naming_the_variable() {
    let mut cmd = clinic(&["serve"]);
    cmd.env("DATABASE_URL", "mysql://user:hunter2@db/clinic")
        .env("CLINIC_BIND", "127.0.0.1:0");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let line = last_error_line(&out);
    assert!(line.starts_with("clinic: error: DATABASE_URL: "), "{line}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn a_bad_bind_address_is_one_line_naming_the_variable() {
    let mut cmd = clinic(&["serve"]);
    cmd.env("CLINIC_BIND", "not-an-address");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(last_error_line(&out).starts_with("clinic: error: CLINIC_BIND: "));
}

#[tokio::test]
async fn a_bind_address_in_use_is_one_line_naming_the_variable() {
    let db = TestDb::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = clinic(&["serve"]);
    cmd.env("CLINIC_BIND", &addr)
        .env("DATABASE_URL", database_url(&db));
    let out = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = last_error_line(&out);
    assert!(
        line.starts_with(&format!(
            "clinic: error: CLINIC_BIND: cannot listen on {addr}"
        )),
        "{line}"
    );
    drop(taken);
}

#[test]
fn a_database_that_refuses_the_connection_is_one_line_naming_the_variable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cmd = clinic(&["serve"]);
    cmd.env(
        "DATABASE_URL",
        format!("postgres://postgres:s3cret@127.0.0.1:{port}/clinic"),
    )
    .env("CLINIC_BIND", "127.0.0.1:0");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let line = last_error_line(&out);
    assert!(
        line.starts_with("clinic: error: DATABASE_URL: cannot connect to"),
        "{line}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_one_line_naming_the_variable() {
    let db = TestDb::new().await;
    let url = database_url(&db).replace(&db.name, "no_such_database_here");
    let mut cmd = clinic(&["serve"]);
    cmd.env("DATABASE_URL", url)
        .env("CLINIC_BIND", "127.0.0.1:0");
    let out = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = last_error_line(&out);
    assert!(line.starts_with("clinic: error: DATABASE_URL: "), "{line}");
    assert!(line.contains("no_such_database_here"), "{line}");
}

#[tokio::test]
async fn migrate_applies_every_migration_to_an_empty_database() {
    let db = TestDb::empty().await;
    let mut owner = db.owner_connection().await;
    let mut cmd = clinic(&["migrate"]);
    cmd.env("DATABASE_URL", database_url(&db));
    let out = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(applied as usize, api::infra::db::MIGRATOR.iter().count());
    // Running it again is a no-op.
    let mut again = clinic(&["migrate"]);
    again.env("DATABASE_URL", database_url(&db));
    let out = tokio::task::spawn_blocking(move || run(again))
        .await
        .unwrap();
    assert!(out.status.success());
}

pub(crate) fn database_url(db: &TestDb) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        db.owner.get_username(),
        db.owner.get_host(),
        db.owner.get_port(),
        db.name
    )
}

pub(crate) fn last_stdout_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned()
}

pub(crate) async fn run_async(cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run(cmd)).await.unwrap()
}

#[tokio::test]
async fn create_superadmin_is_idempotent_and_the_admin_can_log_in() {
    let db = TestDb::new().await;
    let url = database_url(&db);
    let superadmin = |password: &str| {
        let mut cmd = clinic(&["create-superadmin", "--email", "Root@Platform.example"]);
        cmd.env("DATABASE_URL", &url)
            .env("CLINIC_SUPERADMIN_PASSWORD", password);
        cmd
    };
    let first = run_async(superadmin("first password 123")).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(last_stdout_line(&first).starts_with("created platform admin"));
    let again = run_async(superadmin("second password 456")).await;
    assert!(again.status.success());
    assert!(last_stdout_line(&again).contains("already existed"));

    let mut conn = db.owner_connection().await;
    let admins: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts WHERE role = 'platform_admin'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(admins, 1);
    drop(conn);
    let app = crate::helpers::spawn_app_on(db).await;
    assert_eq!(
        app.login_answer("root@platform.example", "first password 123")
            .await
            .status,
        401
    );
    let ok = app
        .login_answer("root@platform.example", "second password 456")
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[tokio::test]
async fn create_superadmin_explains_bad_input() {
    let db = TestDb::new().await;
    let mut cmd = clinic(&[
        "create-superadmin",
        "--email",
        "not-an-email",
        "--password",
        "long enough password",
    ]);
    cmd.env("DATABASE_URL", database_url(&db));
    let out = run_async(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        last_error_line(&out).starts_with("clinic: error: --email: "),
        "{}",
        last_error_line(&out)
    );
    let mut cmd = clinic(&[
        "create-superadmin",
        "--email",
        "a@b.example",
        "--password",
        "short",
    ]);
    cmd.env("DATABASE_URL", database_url(&db));
    let out = run_async(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let line = last_error_line(&out);
    assert!(
        line.starts_with("clinic: error: --password: must be at least 12"),
        "{line}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("short\""));
}

#[tokio::test]
async fn setup_clinic_is_idempotent_and_its_admin_can_log_in() {
    let db = TestDb::new().await;
    let url = database_url(&db);
    let setup_in = |code: &str, email: &str, zone: &str| {
        let mut cmd = clinic(&[
            "setup-clinic",
            "--name",
            "North Clinic",
            "--code",
            code,
            "--timezone",
            zone,
            "--plan",
            "professional",
            "--admin-email",
            email,
        ]);
        cmd.env("DATABASE_URL", &url)
            .env("CLINIC_ADMIN_PASSWORD", "north admin password");
        cmd
    };
    let setup = |code: &str, email: &str| setup_in(code, email, "Europe/Berlin");
    let first = run_async(setup("north", "admin@north.example")).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        last_stdout_line(&first).starts_with("created clinic north"),
        "{}",
        last_stdout_line(&first)
    );
    let again = run_async(setup("north", "admin@north.example")).await;
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(last_stdout_line(&again).contains("nothing to do"));

    // The same e-mail for another clinic is refused with the flag named.
    let clash = run_async(setup("south", "admin@north.example")).await;
    assert_eq!(clash.status.code(), Some(1));
    assert!(last_error_line(&clash).starts_with("clinic: error: --admin-email: "));

    // A bad time zone names its flag, and nothing is written.
    let bad = run_async(setup_in("west", "admin@west.example", "Mars/Olympus")).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        last_error_line(&bad).starts_with("clinic: error: --timezone: "),
        "{}",
        last_error_line(&bad)
    );

    let mut conn = db.owner_connection().await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        events, 7,
        "one ClinicRegistered, five default DepartmentAdded and one StaffHired"
    );
    drop(conn);
    let app = crate::helpers::spawn_app_on(db).await;
    let ok = app
        .login_answer("admin@north.example", "north admin password")
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

/// Every log line a request causes carries its request id and clinic id, and patient data
/// never reaches the log.
#[tokio::test]
async fn request_logs_carry_request_and_clinic_ids_but_no_patient_data() {
    let db = TestDb::new().await;
    let url = database_url(&db);
    let mut setup = clinic(&[
        "setup-clinic",
        "--name",
        "Log Clinic",
        "--code",
        "logs",
        "--timezone",
        "UTC",
        "--plan",
        "trial",
        "--admin-email",
        "admin@logs.example",
    ]);
    setup
        .env("DATABASE_URL", &url)
        .env("CLINIC_ADMIN_PASSWORD", "log admin password");
    assert!(run_async(setup).await.status.success());

    let mut serve = clinic(&["serve"]);
    serve
        .env("DATABASE_URL", &url)
        .env("CLINIC_BIND", "127.0.0.1:0")
        .env("CLINIC_LOG_FORMAT", "json")
        .env(
            "CLINIC_JWT_SECRET",
            "a-test-secret-that-is-long-enough-for-hs256",
        )
        .env("RUST_LOG", "debug,sqlx=warn,hyper=info,h2=info");
    let mut child = serve
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clinic serve");
    let stderr = child.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let base = loop {
        let found = lines.lock().unwrap().iter().find_map(|l| {
            l.split("listening on http://").nth(1).map(|rest| {
                rest.split(|c: char| c == '"' || c.is_whitespace())
                    .next()
                    .unwrap()
                    .to_owned()
            })
        });
        if let Some(addr) = found {
            break format!("http://{addr}");
        }
        assert!(
            Instant::now() < deadline,
            "serve did not start: {:?}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"email": "admin@logs.example", "password": "log admin password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let patient = client
        .post(format!("{base}/v1/patients"))
        .bearer_auth(&token)
        .header("x-request-id", "req-log-check-1")
        .json(&serde_json::json!({
            "name": {"given": "Zenobia-PHI-canary", "family": "Quillfeather-PHI-canary"},
            "birth_date": "1970-01-01", "sex": "female", "phone": PHONE,
            "email": "zenobia-phi-canary@patients.example", "allergies": ["latex-PHI-canary"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(patient.status(), 201);
    let clinic_id: String = {
        let mut conn = db.owner_connection().await;
        sqlx::query_scalar("SELECT clinic_id::text FROM clinic_codes WHERE code = 'logs'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    terminate(&mut child);
    reader.join().unwrap();

    let lines = lines.lock().unwrap();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}"))
        })
        .collect();
    // The request's lines: those whose span (or one of its parents) has the request id.
    let request_lines: Vec<&serde_json::Value> = parsed
        .iter()
        .filter(|l| {
            l["span"]["request_id"] == "req-log-check-1"
                || l["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["request_id"] == "req-log-check-1"))
        })
        .collect();
    assert!(
        request_lines.len() >= 2,
        "expected the command and response lines: {request_lines:?}"
    );
    let with_clinic = request_lines
        .iter()
        .filter(|l| l["span"]["clinic_id"] == clinic_id.as_str())
        .count();
    assert!(
        with_clinic >= 2,
        "lines without the clinic id: {request_lines:?}"
    );
    // Every line is parsed, and every field name and string value in it is compared with
    // the patient's data and the secrets. The canaries cannot occur by chance in a timestamp,
    // a UUID or a position (letters, or a `+` and spaces), so a match is a leak.
    let canaries = [
        "Zenobia-PHI-canary",
        "Quillfeather-PHI-canary",
        "zenobia-phi-canary@patients.example",
        "latex-PHI-canary",
        PHONE,
        "+442079460018",
        "log admin password",
        "$argon2",
    ];
    let mut fields = 0;
    for line in &parsed {
        for text in strings_of(line) {
            fields += 1;
            let folded = text.to_lowercase();
            for canary in canaries {
                assert!(
                    !folded.contains(&canary.to_lowercase()),
                    "patient data or a secret ({canary}) in the log: {line}"
                );
            }
        }
    }
    assert!(fields > 100, "too little log to mean much: {fields} fields");
}

/// The patient's phone in the log test: a number reserved for drama (Ofcom), written with a
/// `+` and spaces, which no timestamp, UUID or position contains.
const PHONE: &str = "+44 20 7946 0018";

/// Every field name and string value of a JSON document, depth first.
fn strings_of(value: &serde_json::Value) -> Vec<&str> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => out.push(s.as_str()),
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => {
                for (key, item) in map {
                    out.push(key.as_str());
                    stack.push(item);
                }
            }
            _ => {}
        }
    }
    out
}

/// `clinic clinics list|suspend|reactivate|set-plan` do what the platform admin's endpoints
/// do, naming the clinic by its code; bad flags are one line naming the flag, writing nothing.
#[tokio::test]
async fn the_clinics_commands_mirror_the_platform_admins_endpoints() {
    let app = crate::helpers::spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "cli-north").await;
    app.db.caught_up().await;
    let url = database_url(&app.db);
    let clinics = |args: &[&str]| {
        let mut cmd = clinic(&[&["clinics"], args].concat());
        cmd.env("DATABASE_URL", &url);
        cmd
    };
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    let listed = run_async(clinics(&["list"])).await;
    ok(&listed);
    let stdout = String::from_utf8_lossy(&listed.stdout).to_string();
    let line: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("cli-north\t"))
        .unwrap_or_else(|| panic!("no line for cli-north in {stdout}"))
        .split('\t')
        .collect();
    assert_eq!(&line[1..4], ["professional", "active", "-"], "{line:?}");
    assert_eq!(line.last(), Some(&north.id.to_string().as_str()));

    let events_before = app.event_count().await;
    for (args, flag) in [
        (
            vec![
                "set-plan",
                "--code",
                "cli-north",
                "--plan",
                "gold",
                "--reason",
                "x",
            ],
            "--plan",
        ),
        (
            vec![
                "set-plan",
                "--code",
                "cli-north",
                "--plan",
                "trial",
                "--reason",
                "x",
            ],
            "",
        ),
        (
            vec![
                "set-plan", "--code", "nowhere", "--plan", "basic", "--reason", "x",
            ],
            "--code",
        ),
        (
            vec!["suspend", "--code", "cli-north", "--reason", " "],
            "--reason",
        ),
        (vec!["reactivate", "--code", "cli-north"], ""),
    ] {
        let out = run_async(clinics(&args)).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let line = last_error_line(&out);
        assert!(
            line.starts_with(&format!("clinic: error: {flag}")),
            "{args:?}: {line}"
        );
    }
    assert_eq!(app.event_count().await, events_before, "nothing written");

    let changed = run_async(clinics(&[
        "set-plan",
        "--code",
        "cli-north",
        "--plan",
        "enterprise",
        "--reason",
        "signed on paper",
    ]))
    .await;
    ok(&changed);
    assert!(last_stdout_line(&changed).starts_with("clinic cli-north: set-plan done"));
    let mut conn = app.db.owner_connection().await;
    let (payload, metadata): (
        sqlx::types::Json<serde_json::Value>,
        sqlx::types::Json<serde_json::Value>,
    ) = sqlx::query_as(
        "SELECT payload, metadata FROM events WHERE tenant_id = $1 \
             AND event_type = 'ClinicPlanChanged'",
    )
    .bind(north.id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        payload.0["ClinicPlanChanged"],
        serde_json::json!({"from": "professional", "to": "enterprise", "reason": "signed on paper"})
    );
    assert_eq!(metadata.0["actor_role"], "system");
    assert_eq!(metadata.0["request_id"], "cli:clinics set-plan");

    let suspended = run_async(clinics(&[
        "suspend",
        "--code",
        "cli-north",
        "--reason",
        "unpaid",
    ]))
    .await;
    ok(&suspended);
    let refused = app
        .login_answer(&north.emails["clinic_admin"], crate::helpers::PASSWORD)
        .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let reactivated = run_async(clinics(&["reactivate", "--code", "cli-north"])).await;
    ok(&reactivated);
    let back = app
        .login_answer(&north.emails["clinic_admin"], crate::helpers::PASSWORD)
        .await;
    assert_eq!(back.status, 200, "{back:?}");
}
