//! Finding the database, migrating it, and the service's connection pool.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};

use crate::infra::config::{with_tls_rule, DatabaseSettings, DatabaseSource};
use crate::infra::embedded_pg::{EmbeddedCluster, EmbeddedPgError, StartOptions, SUPERUSER};

/// The migrations, embedded at build time from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The database role every pooled connection switches to. It owns nothing and is no
/// superuser, so row-level security applies and the event log is append-only for it.
pub const APP_ROLE: &str = "clinic_app";

/// The name of the database used on a local server or in the private cluster.
pub const DEFAULT_DATABASE: &str = "clinic";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL: cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("DATABASE_URL: {target}: {reason}")]
    Setup { target: String, reason: String },
    #[error("CLINIC_EMBEDDED_PG: could not start the private PostgreSQL cluster: {0}")]
    Embedded(#[from] EmbeddedPgError),
    #[error("migrations failed on {target}: {reason}")]
    Migrate { target: String, reason: String },
}

/// A resolved database: how to connect as its owner, and the private cluster if one was
/// started (it stops when this is dropped).
#[derive(Debug)]
pub struct Database {
    pub owner_options: PgConnectOptions,
    pub cluster: Option<EmbeddedCluster>,
}

/// The role the projection workers log in as.
pub const WORKER_ROLE: &str = "clinic_worker";

impl Database {
    /// A description for logs and errors, without the password.
    pub fn describe(&self) -> String {
        describe(&self.owner_options)
    }

    /// How the service logs in: as [`APP_ROLE`], neither the tables' owner nor a superuser,
    /// so row-level security holds even against a statement that says `RESET ROLE`.
    pub fn app_login(&self) -> PgConnectOptions {
        login_as(&self.owner_options, APP_ROLE, "CLINIC_APP_DB_PASSWORD")
    }

    /// How the projection workers log in: as [`WORKER_ROLE`].
    pub fn worker_login(&self) -> PgConnectOptions {
        login_as(
            &self.owner_options,
            WORKER_ROLE,
            "CLINIC_WORKER_DB_PASSWORD",
        )
    }
}

/// The owner's connection (same server, database and TLS rules) as `role`, with the password
/// in the environment variable `password_var` (none when it is unset: trust, peer or
/// certificate authentication).
fn login_as(owner: &PgConnectOptions, role: &str, password_var: &str) -> PgConnectOptions {
    let password = std::env::var(password_var).unwrap_or_default();
    owner.clone().username(role).password(&password)
}

pub fn describe(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// True when something accepts TCP connections at `addr` within a short time.
pub fn server_answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Resolves the settings into a database: the URL, a local server, or a private cluster.
pub async fn resolve(settings: &DatabaseSettings) -> Result<Database, DbError> {
    match &settings.source {
        DatabaseSource::Url(options) => Ok(Database {
            owner_options: (**options).clone(),
            cluster: None,
        }),
        DatabaseSource::Auto if server_answers(settings.local_server) => {
            let user = std::env::var("PGUSER").unwrap_or_else(|_| SUPERUSER.to_owned());
            let options = with_tls_rule(
                PgConnectOptions::new()
                    .host(&settings.local_server.ip().to_string())
                    .port(settings.local_server.port())
                    .username(&user)
                    .database(DEFAULT_DATABASE),
                None,
            );
            tracing::info!(server = %settings.local_server, "DATABASE_URL is unset; using the local PostgreSQL server");
            ensure_database(&options).await?;
            Ok(Database {
                owner_options: options,
                cluster: None,
            })
        }
        DatabaseSource::Auto | DatabaseSource::Embedded => {
            if matches!(settings.source, DatabaseSource::Auto) {
                tracing::info!(server = %settings.local_server, "DATABASE_URL is unset and no server answers; starting a private PostgreSQL cluster");
            }
            let dir = settings.pg_dir.clone();
            let cluster = tokio::task::spawn_blocking(move || {
                EmbeddedCluster::start(&dir, StartOptions::default())
            })
            .await
            .map_err(|e| EmbeddedPgError::Command {
                program: "pg_ctl".into(),
                detail: e.to_string(),
            })??;
            let options = cluster.connect_options(DEFAULT_DATABASE);
            ensure_database(&options).await?;
            Ok(Database {
                owner_options: options,
                cluster: Some(cluster),
            })
        }
    }
}

/// Creates the database named in `options` if it does not exist (connecting to `postgres`).
pub async fn ensure_database(options: &PgConnectOptions) -> Result<(), DbError> {
    let name = options
        .get_database()
        .unwrap_or(DEFAULT_DATABASE)
        .to_owned();
    let mut conn = connect_once(&options.clone().database("postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| setup_error(options, e))?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = conn.execute(sql.as_str()).await {
            // Another process may have created it in the meantime.
            if e.as_database_error().and_then(|d| d.code()).as_deref() != Some("42P04") {
                return Err(setup_error(options, e));
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

fn setup_error(options: &PgConnectOptions, e: sqlx::Error) -> DbError {
    DbError::Setup {
        target: describe(options),
        reason: one_line(&e),
    }
}

fn one_line(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string().replace('\n', " "),
    }
}

async fn connect_once(options: &PgConnectOptions) -> Result<PgConnection, DbError> {
    tokio::time::timeout(Duration::from_secs(10), options.connect())
        .await
        .map_err(|_| DbError::Connect {
            target: describe(options),
            reason: "timed out after 10 s".into(),
        })?
        .map_err(|e| DbError::Connect {
            target: describe(options),
            reason: one_line(&e),
        })
}

/// Applies pending migrations, as the owner (never as the app role).
pub async fn migrate(options: &PgConnectOptions) -> Result<(), DbError> {
    let mut conn = connect_once(options).await?;
    MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| DbError::Migrate {
            target: describe(options),
            reason: e.to_string().replace('\n', " "),
        })?;
    let _ = conn.close().await;
    Ok(())
}

/// The service's pool, logged in as [`APP_ROLE`] ([`Database::app_login`]): row-level
/// security applies, and no statement can leave the role.
pub async fn app_pool(options: &PgConnectOptions, max_connections: u32) -> Result<PgPool, DbError> {
    role_pool(options, max_connections).await
}

/// A small pool as [`WORKER_ROLE`] ([`Database::worker_login`]), for LISTEN.
pub async fn worker_pool(options: &PgConnectOptions) -> Result<PgPool, DbError> {
    role_pool(options, 2).await
}

/// How long a request waits for a database connection before it is answered 503 with
/// `Retry-After` (`problem::database_unreachable`). While PostgreSQL is down, this bounds
/// every request that needs it and `/readyz`; under load it sheds what the pool cannot serve
/// in time instead of queueing it.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(800);

/// A pool logged in as its role. A checkout costs no round trip:
/// sqlx would ping each idle connection before handing it out (`test_before_acquire`), which
/// doubles the round trips of a one-statement request; a dead connection shows up as an
/// error of the statement instead. Prepared statements are cached per connection (sqlx's
/// default, 100 statements), so a repeated query is one round trip.
async fn role_pool(options: &PgConnectOptions, max_connections: u32) -> Result<PgPool, DbError> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(|e| DbError::Connect {
            target: describe(options),
            reason: one_line(&e),
        })
}

/// Why the service is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("the database does not answer")]
    Database(#[source] sqlx::Error),
    #[error("{pending} migration(s) not applied; run `clinic migrate`")]
    Migrations { pending: usize },
}

/// Ready means the database answers and every embedded migration is applied with the same
/// checksum.
pub async fn readiness(pool: &PgPool) -> Result<(), NotReady> {
    let applied: Vec<(i64, Vec<u8>)> =
        match sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(rows) => rows,
            // No migrations table yet: the database answers, nothing is applied.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P01") => {
                Vec::new()
            }
            Err(e) => return Err(NotReady::Database(e)),
        };
    let pending = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .filter(|m| {
            !applied
                .iter()
                .any(|(v, sum)| *v == m.version && sum.as_slice() == &*m.checksum)
        })
        .count();
    if pending > 0 {
        return Err(NotReady::Migrations { pending });
    }
    Ok(())
}

/// Used by `clinic migrate`: resolve, migrate, report.
pub async fn open_and_migrate(settings: &DatabaseSettings) -> Result<Database, DbError> {
    let db = resolve(settings).await?;
    migrate(&db.owner_options).await?;
    Ok(db)
}
