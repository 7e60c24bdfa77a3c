//! Shared test harness: the PostgreSQL server, per-test databases and a running app.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use api::auth::JwtKeys;
use api::infra::config::{AuthSettings, DatabaseSettings, DatabaseSource, HttpSettings, Settings};
use api::infra::embedded_pg::{EmbeddedCluster, StartOptions};
use chrono::{DateTime, Utc};
use commands::EventStore;
use domain::clock::{Clock, ManualClock};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};
use tokio::sync::OnceCell;

/// The server every test database lives on, found once per test process.
struct Server {
    /// Superuser connection options to the maintenance database.
    admin: PgConnectOptions,
    /// Kept alive for the process; its watchdog stops and removes it when the process ends.
    _cluster: Option<EmbeddedCluster>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

fn init_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        api::telemetry::init();
    }
}

/// Same rule as `clinic serve`: DATABASE_URL, else a server on 127.0.0.1:5432, else a private
/// cluster (here under the target directory, removed when the test process ends).
fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        init_tracing();
        if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            let options = api::infra::config::parse_database_url(&url).expect("DATABASE_URL");
            return Server {
                admin: options.database("postgres"),
                _cluster: None,
            };
        }
        if api::infra::db::server_answers("127.0.0.1:5432".parse().unwrap()) {
            let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
            return Server {
                admin: PgConnectOptions::new()
                    .host("127.0.0.1")
                    .port(5432)
                    .username(&user)
                    .database("postgres"),
                _cluster: None,
            };
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("clinic-test-pg-{}", std::process::id()));
        let cluster = EmbeddedCluster::start(
            &dir,
            StartOptions {
                ephemeral: true,
                remove_on_stop: true,
            },
        )
        .expect("start a private PostgreSQL cluster for the tests");
        Server {
            admin: cluster.connect_options("postgres"),
            _cluster: Some(cluster),
        }
    })
}

async fn admin_connection() -> PgConnection {
    server()
        .admin
        .connect()
        .await
        .expect("connect to the test PostgreSQL server")
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The migrated template for this set of migrations, made once (under an advisory lock, so
/// parallel test processes agree) and cloned by every test.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let mut fingerprint: u64 = 0xcbf29ce484222325;
            for m in api::infra::db::MIGRATOR.iter() {
                for b in m.version.to_le_bytes().iter().chain(m.checksum.iter()) {
                    fingerprint = (fingerprint ^ u64::from(*b)).wrapping_mul(0x100000001b3);
                }
            }
            let name = format!("clinic_tpl_{fingerprint:016x}");
            let mut conn = admin_connection().await;
            conn.execute("SELECT pg_advisory_lock(72177001)").await.unwrap();
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            if !exists {
                // Templates of older migration sets are dropped (best effort: one may be in use).
                let stale: Vec<String> = sqlx::query_scalar(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'clinic\\_tpl\\_%' AND datname <> $1",
                )
                .bind(&name)
                .fetch_all(&mut conn)
                .await
                .unwrap();
                for old in stale {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {}", quote_ident(&old)).as_str())
                        .await;
                }
                let building = format!("{name}_building");
                conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&building)).as_str())
                    .await
                    .unwrap();
                conn.execute(format!("CREATE DATABASE {}", quote_ident(&building)).as_str())
                    .await
                    .unwrap();
                api::infra::db::migrate(&server().admin.clone().database(&building))
                    .await
                    .expect("migrate the template database");
                conn.execute(
                    format!("ALTER DATABASE {} RENAME TO {}", quote_ident(&building), quote_ident(&name))
                        .as_str(),
                )
                .await
                .unwrap();
            }
            conn.execute("SELECT pg_advisory_unlock(72177001)").await.unwrap();
            let _ = conn.close().await;
            name
        })
        .await
}

/// A database of one test, dropped when the test ends (pass or fail).
pub struct TestDb {
    pub name: String,
    /// Superuser options for this database (the tables' owner, which bypasses RLS).
    pub owner: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let template = template().await;
        Self::create(template).await
    }

    /// A database with nothing in it (not migrated).
    pub async fn empty() -> TestDb {
        Self::create("template0").await
    }

    async fn create(template: &str) -> TestDb {
        let name = format!("clinic_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin_connection().await;
        conn.execute(
            format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(template)
            )
            .as_str(),
        )
        .await
        .expect("create the test database");
        let _ = conn.close().await;
        TestDb {
            owner: server().admin.clone().database(&name),
            name,
        }
    }

    /// The owner's connection options as `role` (the test server trusts local logins).
    pub fn login_as(&self, role: &str) -> PgConnectOptions {
        self.owner.clone().username(role).password("")
    }

    /// A pool that logs in as the service does (`clinic_app`).
    pub async fn app_pool(&self) -> PgPool {
        self.app_pool_of(8).await
    }

    /// [`TestDb::app_pool`] with `n` connections. Configured as the service's pool, but for
    /// the time a connection may take: the service gives up after 800 ms (a 503), which a
    /// test's own pool must not do while the whole suite loads the 2 cores (a connection
    /// took longer than that to open in one `.ci/run`).
    pub async fn app_pool_of(&self, n: u32) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(n)
            .test_before_acquire(false)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_with(self.login_as(api::infra::db::APP_ROLE))
            .await
            .expect("app pool")
    }

    /// How many projections (and, with `billing`, the billing process manager) have
    /// committed events still to read.
    async fn behind(&self, billing: bool) -> i64 {
        let mut conn = self.owner_connection().await;
        sqlx::query_scalar(
            "SELECT count(*) FROM projection_checkpoints c WHERE ($1 OR c.name <> 'billing') \
             AND EXISTS (SELECT 1 FROM events e \
                 WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position))",
        )
        .bind(billing)
        .fetch_one(&mut conn)
        .await
        .unwrap()
    }

    /// How many projections have committed events still to apply (the billing process
    /// manager is not a projection: a test that plays the workers does not run it).
    pub async fn projections_behind(&self) -> i64 {
        self.behind(false).await
    }

    /// Waits (up to 20 s) until every projection has applied every committed event and the
    /// billing process manager has read them all.
    pub async fn caught_up(&self) {
        self.wait_until_read(true).await
    }

    /// Waits (up to 20 s) until every projection has applied every committed event (for a
    /// test that runs workers without the billing process manager).
    pub async fn projections_caught_up(&self) {
        self.wait_until_read(false).await
    }

    async fn wait_until_read(&self, billing: bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.behind(billing).await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "projections did not catch up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A connection as the owner, to look at (or tamper with) what the service wrote.
    pub async fn owner_connection(&self) -> PgConnection {
        self.owner.connect().await.expect("owner connection")
    }

    /// A pool of owner connections, for the projections' own read functions.
    pub async fn owner_pool(&self) -> PgPool {
        PgPool::connect_with(self.owner.clone())
            .await
            .expect("owner pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = server().admin.clone();
        // Drop runs inside the test's runtime; the drop itself needs its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = admin.connect().await {
                    let _ = conn
                        .execute(
                            format!(
                                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                                quote_ident(&name)
                            )
                            .as_str(),
                        )
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// An event store over a fresh test database, with a fixed clock if wanted.
pub async fn store_with(db: &TestDb, services: domain::clock::Services) -> EventStore {
    EventStore::new(db.app_pool().await, services)
}

// ---------------------------------------------------------------------------------------
// The tests' calendar. Every business date a test uses comes from its app's clock, which
// stands still at an instant the test chose (and moves only when the test moves it), never
// from the machine's date.

/// The instant every test app starts at unless the test says otherwise: Wednesday
/// 13 January 2027, 08:00 UTC (09:00 in Europe/Berlin, winter time, far from a DST change).
pub fn default_now() -> DateTime<Utc> {
    utc("2027-01-13T08:00:00Z")
}

/// An instant from RFC 3339 text.
#[track_caller]
pub fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("bad instant {s}: {e}"))
}

/// The clock of the event-store tests that run without an app.
pub fn test_services() -> domain::clock::Services {
    domain::clock::Services::fixed(default_now())
}

/// A start time `days` after `now`, on the hour `hour` (UTC).
pub fn future_from(now: DateTime<Utc>, days: i64, hour: u32) -> DateTime<Utc> {
    use chrono::Timelike;
    (now + chrono::Duration::days(days))
        .with_hour(hour)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap()
}

/// The first date strictly after `now`'s date (in `tz`) that falls on `weekday`, at
/// `hour:00` local time, as an instant.
pub fn next_weekday_from(
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    weekday: chrono::Weekday,
    hour: u32,
) -> DateTime<Utc> {
    use chrono::{Datelike, TimeZone};
    let mut date = now.with_timezone(&tz).date_naive();
    loop {
        date = date.succ_opt().unwrap();
        if date.weekday() == weekday {
            break;
        }
    }
    tz.from_local_datetime(&date.and_hms_opt(hour, 0, 0).unwrap())
        .earliest()
        .expect("a local time that exists")
        .with_timezone(&Utc)
}

/// A running application on a free port with its own database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    /// The service's clock, shared with every instance the test starts on this database.
    pub clock: Arc<ManualClock>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The service's "now".
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Moves the service's clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    /// A start time `days` after the service's now, on the hour `hour` (UTC).
    pub fn future(&self, days: i64, hour: u32) -> DateTime<Utc> {
        future_from(self.now(), days, hour)
    }

    /// The next `weekday` after the service's today in Europe/Berlin (the fixtures' zone), at
    /// `hour:00` Berlin time.
    pub fn next_weekday(&self, weekday: chrono::Weekday, hour: u32) -> DateTime<Utc> {
        next_weekday_from(self.now(), chrono_tz::Europe::Berlin, weekday, hour)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }
}

/// Another API server over the same database (stopped when dropped).
pub struct Instance {
    pub address: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    /// Starts a second API process-equivalent on this app's database (with its own workers
    /// and the same clock).
    pub async fn second_instance(&self) -> Instance {
        let app = api::startup::Application::build(test_settings(&self.db, self.clock.clone()))
            .await
            .expect("build the second instance");
        let address = format!("http://127.0.0.1:{}", app.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        Instance {
            address,
            _shutdown: tx,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The JWT secret of every test app, so tests can forge tokens (expired, wrong audience).
pub const TEST_JWT_SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// The `/metrics` scrape token of every test app.
pub const TEST_METRICS_TOKEN: &str = "test-metrics-token-0123456789";

pub fn test_jwt() -> JwtKeys {
    JwtKeys::new(TEST_JWT_SECRET, std::time::Duration::from_secs(15 * 60))
}

pub fn test_settings(db: &TestDb, clock: Arc<ManualClock>) -> Settings {
    Settings {
        database: DatabaseSettings {
            source: DatabaseSource::Url(Box::new(db.owner.clone())),
            local_server: "127.0.0.1:5432".parse().unwrap(),
            pg_dir: PathBuf::from(".clinic/unused"),
            max_connections: 8,
        },
        http: HttpSettings {
            bind: "127.0.0.1:0".parse().unwrap(),
            request_timeout: std::time::Duration::from_secs(30),
            body_limit: 64 * 1024,
            streams: api::audit_streams::StreamSettings::default(),
        },
        auth: AuthSettings {
            jwt_secret: Some(TEST_JWT_SECRET.to_vec()),
            access_ttl: std::time::Duration::from_secs(15 * 60),
            metrics_token: Some(TEST_METRICS_TOKEN.as_bytes().to_vec()),
            password_checks: api::infra::config::default_password_checks(),
        },
        migrate_on_start: false,
        workers: Some(projections::worker::WorkerConfig {
            poll_interval: std::time::Duration::from_millis(200),
            ..Default::default()
        }),
        clock: domain::clock::Services::manual(clock),
    }
}

/// An app on a fresh database whose clock stands at [`default_now`].
pub async fn spawn_app() -> TestApp {
    spawn_app_at(default_now()).await
}

/// An app on a fresh database whose clock stands at `now`.
pub async fn spawn_app_at(now: DateTime<Utc>) -> TestApp {
    let db = TestDb::new().await;
    let clock = Arc::new(ManualClock::new(now));
    let settings = test_settings(&db, clock.clone());
    start_app(db, settings, clock).await
}

/// An app whose settings `adjust` changes first (e.g. without in-process workers).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDb::new().await;
    let clock = Arc::new(ManualClock::new(default_now()));
    let mut settings = test_settings(&db, clock.clone());
    adjust(&mut settings);
    start_app(db, settings, clock).await
}

/// An app over an existing test database whose settings `adjust` changes first (e.g. to reach
/// the database through a proxy).
pub async fn spawn_app_with_db(db: TestDb, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let clock = Arc::new(ManualClock::new(default_now()));
    let mut settings = test_settings(&db, clock.clone());
    adjust(&mut settings);
    start_app(db, settings, clock).await
}

/// An app over an existing test database (e.g. one the CLI has written to).
pub async fn spawn_app_on(db: TestDb) -> TestApp {
    let clock = Arc::new(ManualClock::new(default_now()));
    let settings = test_settings(&db, clock.clone());
    start_app(db, settings, clock).await
}

async fn start_app(db: TestDb, settings: Settings, clock: Arc<ManualClock>) -> TestApp {
    let app = api::startup::Application::build(settings)
        .await
        .expect("build the application");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        clock,
        shutdown: Some(tx),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP helpers for the API.

/// The password of every account the helpers create.
pub const PASSWORD: &str = "correct horse battery staple";

/// A parsed answer: status, headers and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `id` of a command answer.
    pub fn id(&self) -> uuid::Uuid {
        self.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no id in {self:?}"))
    }

    /// Asserts a problem+json answer with this status and returns the body.
    #[track_caller]
    pub fn problem(&self, status: u16) -> &serde_json::Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["status"], status, "{self:?}");
        &self.body
    }

    /// Asserts a 422 whose `errors` name `field`.
    #[track_caller]
    pub fn names_field(&self, field: &str) {
        let body = self.problem(422);
        let named = body["errors"]
            .as_array()
            .map(|errors| errors.iter().any(|e| e["field"] == field))
            .unwrap_or(false);
        assert!(named, "expected field `{field}` in {body}");
    }
}

impl TestApp {
    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Answer {
        self.send_with(method, path, token, body, &[]).await
    }

    pub async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `GET path` as `token`, reading its own write at `position` (`X-Min-Position`). Like a
    /// well-behaved client, it retries while the answer is a 503 with `Retry-After` (the read
    /// models not there yet), for up to 30 s: on a loaded machine the workers may need longer
    /// than the server's 2-second wait. (Tests of that 503 itself use `send_with`.)
    pub async fn read_at(&self, path: &str, token: &str, position: i64) -> Answer {
        let position = position.to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let answer = self
                .send_with(
                    reqwest::Method::GET,
                    path,
                    Some(token),
                    None,
                    &[("x-min-position", &position)],
                )
                .await;
            let not_yet = answer.status == 503 && answer.header("retry-after").is_some();
            if !not_yet || std::time::Instant::now() >= deadline {
                return answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    pub async fn post(&self, path: &str, token: &str, body: serde_json::Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(token), Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: serde_json::Value) -> Answer {
        self.send(reqwest::Method::PATCH, path, Some(token), Some(&body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: serde_json::Value) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(token), Some(&body))
            .await
    }

    /// Logs in and returns the whole token answer.
    pub async fn login_answer(&self, email: &str, password: &str) -> Answer {
        self.send(
            reqwest::Method::POST,
            "/v1/auth/login",
            None,
            Some(&serde_json::json!({"email": email, "password": password})),
        )
        .await
    }

    /// Logs in with [`PASSWORD`] and returns the access token.
    pub async fn login(&self, email: &str) -> String {
        let answer = self.login_answer(email, PASSWORD).await;
        assert_eq!(answer.status, 200, "login {email}: {answer:?}");
        answer.body["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a platform admin directly (as `clinic create-superadmin` does) and logs in.
    pub async fn platform_admin(&self) -> String {
        let email = format!("root-{}@platform.example", uuid::Uuid::new_v4().simple());
        let pool = self.db.app_pool().await;
        let hash = commands::accounts::credentials::hash(PASSWORD.into())
            .await
            .unwrap();
        commands::accounts::ensure_platform_admin(
            &pool,
            &domain::values::Email::parse(&email).unwrap(),
            &hash,
        )
        .await
        .unwrap();
        pool.close().await;
        self.login(&email).await
    }

    /// The newest position in the store (as the owner), to read after it.
    pub async fn head(&self) -> i64 {
        let mut conn = self.db.owner_connection().await;
        sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }

    /// A clinic created over HTTP on `plan`, in Europe/Berlin, with only its admin (e-mail
    /// `admin@{code}.example`): its id and its admin's token.
    pub async fn clinic_on(&self, platform: &str, code: &str, plan: &str) -> (uuid::Uuid, String) {
        let email = format!("admin@{code}.example");
        let created = self
            .post(
                "/v1/clinics",
                platform,
                serde_json::json!({
                    "name": format!("Clinic {code}"),
                    "code": code,
                    "time_zone": "Europe/Berlin",
                    "plan": plan,
                    "admin": {"name": "Admin Person", "email": email, "password": PASSWORD}
                }),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        (created.id(), self.login(&email).await)
    }

    /// Counts the events requests wrote (as the owner): not the drafts the billing process
    /// manager issues on its own time (request `billing:…`), which a test of what one request
    /// wrote must not count.
    pub async fn event_count(&self) -> i64 {
        let mut conn = self.db.owner_connection().await;
        sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE metadata ->> 'request_id' NOT LIKE 'billing:%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
    }
}

/// A clinic set up over HTTP: its admin, a doctor, a nurse, a receptionist and an auditor
/// (with tokens), a patient and a booked appointment.
#[derive(Debug, Clone)]
pub struct ClinicFixture {
    pub id: uuid::Uuid,
    pub code: String,
    pub admin: String,
    pub doctor: String,
    pub doctor_id: uuid::Uuid,
    pub nurse: String,
    pub receptionist: String,
    pub auditor: String,
    pub patient_id: uuid::Uuid,
    pub appointment_id: uuid::Uuid,
    pub emails: std::collections::HashMap<&'static str, String>,
}

impl ClinicFixture {
    /// The token of a role by name (`clinic_admin`, `doctor`, `nurse`, `receptionist`,
    /// `auditor`).
    pub fn token(&self, role: &str) -> &str {
        match role {
            "clinic_admin" => &self.admin,
            "doctor" => &self.doctor,
            "nurse" => &self.nurse,
            "receptionist" => &self.receptionist,
            "auditor" => &self.auditor,
            other => panic!("no token for {other}"),
        }
    }
}

/// Working hours of 00:00–23:59 (clinic-local) on every day.
pub fn all_day_hours() -> serde_json::Value {
    let day = serde_json::json!([{"start": "00:00", "end": "23:59"}]);
    serde_json::json!({"mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day})
}

pub fn patient_body(given: &str) -> serde_json::Value {
    serde_json::json!({
        "name": {"given": given, "family": "Example"},
        "birth_date": "1984-02-29",
        "sex": "female",
        "phone": "+49 30 1234567",
        "allergies": ["penicillin"]
    })
}

impl TestApp {
    /// Creates a clinic through `POST /v1/clinics` and staffs it through `POST /v1/staff`.
    /// The clock moves one second after each command, so the history has distinct times.
    pub async fn clinic(&self, platform: &str, code: &str) -> ClinicFixture {
        let tick = || self.advance(chrono::Duration::seconds(1));
        let (id, admin) = self.clinic_on(platform, code, "professional").await;
        tick();
        let admin_email = format!("admin@{code}.example");
        let mut emails = std::collections::HashMap::new();
        emails.insert("clinic_admin", admin_email);
        let mut tokens = std::collections::HashMap::new();
        let mut doctor_id = uuid::Uuid::nil();
        for role in ["doctor", "nurse", "receptionist", "auditor"] {
            let email = format!("{role}@{code}.example");
            let mut body = serde_json::json!({
                "name": format!("{role} person"),
                "email": email,
                "role": role,
                "password": PASSWORD
            });
            if role == "doctor" {
                body["licence_number"] = serde_json::json!("LIC-1");
                body["specialty"] = serde_json::json!("general practice");
            }
            let hired = self.post("/v1/staff", &admin, body).await;
            assert_eq!(hired.status, 201, "{hired:?}");
            tick();
            if role == "doctor" {
                doctor_id = hired.id();
                // The doctor works all day, every day, so fixture bookings fit their hours.
                let hours = self
                    .put(
                        &format!("/v1/staff/{doctor_id}/working-hours"),
                        &admin,
                        all_day_hours(),
                    )
                    .await;
                assert_eq!(hours.status, 200, "{hours:?}");
                tick();
            }
            tokens.insert(role, self.login(&email).await);
            emails.insert(role, email);
        }
        let patient = self
            .post("/v1/patients", &tokens["receptionist"], patient_body("Ada"))
            .await;
        assert_eq!(patient.status, 201, "{patient:?}");
        tick();
        let patient_id = patient.id();
        let start = self.future(3, 9);
        let booked = self
            .post(
                "/v1/appointments",
                &tokens["receptionist"],
                serde_json::json!({
                    "patient_id": patient_id,
                    "doctor_id": doctor_id,
                    "start": start,
                    "end": start + chrono::Duration::minutes(30),
                    "reason": "check-up"
                }),
            )
            .await;
        assert_eq!(booked.status, 201, "{booked:?}");
        tick();
        ClinicFixture {
            id,
            code: code.to_owned(),
            admin,
            doctor: tokens["doctor"].clone(),
            doctor_id,
            nurse: tokens["nurse"].clone(),
            receptionist: tokens["receptionist"].clone(),
            auditor: tokens["auditor"].clone(),
            patient_id,
            appointment_id: booked.id(),
            emails,
        }
    }
}

/// The rows every node of a plan (`EXPLAIN (ANALYZE, FORMAT JSON)`) produced or read and
/// filtered out, over all its loops.
pub fn rows_read(plan: &serde_json::Value) -> f64 {
    rows_of_nodes(plan, &|_| true)
}

/// The rows the scans of a plan (`EXPLAIN (ANALYZE, FORMAT JSON)`) read from tables and
/// indexes, kept or filtered out, over all their loops: what the statement had to visit.
pub fn rows_scanned(plan: &serde_json::Value) -> f64 {
    rows_of_nodes(plan, &|node| node.ends_with("Scan"))
}

/// The rows kept or filtered out, over all their loops, by the nodes of `plan` whose type
/// `counted` accepts.
fn rows_of_nodes(plan: &serde_json::Value, counted: &dyn Fn(&str) -> bool) -> f64 {
    let own = if plan["Node Type"].as_str().is_some_and(counted) {
        [
            "Actual Rows",
            "Rows Removed by Filter",
            "Rows Removed by Index Recheck",
        ]
        .iter()
        .map(|key| plan[*key].as_f64().unwrap_or(0.0))
        .sum::<f64>()
            * plan["Actual Loops"].as_f64().unwrap_or(1.0)
    } else {
        0.0
    };
    let children = plan["Plans"].as_array().map_or(0.0, |plans| {
        plans.iter().map(|p| rows_of_nodes(p, counted)).sum()
    });
    own + children
}
