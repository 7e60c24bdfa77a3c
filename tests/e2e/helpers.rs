//! Shared test harness: the PostgreSQL server, per-test databases and a running app.

use std::path::PathBuf;
use std::sync::OnceLock;

use api::config::{DatabaseSettings, DatabaseSource, HttpSettings, Settings};
use api::embedded_pg::{EmbeddedCluster, StartOptions};
use commands::EventStore;
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
            let options = api::config::parse_database_url(&url).expect("DATABASE_URL");
            return Server {
                admin: options.database("postgres"),
                _cluster: None,
            };
        }
        if api::db::server_answers("127.0.0.1:5432".parse().unwrap()) {
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
            for m in api::db::MIGRATOR.iter() {
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
                api::db::migrate(&server().admin.clone().database(&building))
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

    /// A pool that runs as the service does (`SET ROLE clinic_app`).
    pub async fn app_pool(&self) -> PgPool {
        api::db::app_pool(&self.owner, 8).await.expect("app pool")
    }

    /// A connection as the owner, to look at (or tamper with) what the service wrote.
    pub async fn owner_connection(&self) -> PgConnection {
        self.owner.connect().await.expect("owner connection")
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

/// A running application on a free port with its own database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn test_settings(db: &TestDb) -> Settings {
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
        },
        migrate_on_start: false,
    }
}

pub async fn spawn_app() -> TestApp {
    let db = TestDb::new().await;
    let app = api::startup::Application::build(test_settings(&db))
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
        shutdown: Some(tx),
    }
}
