//! Configuration: the flags and environment variables the subcommands share (clap `Args`:
//! the database, the server, the projection workers), turned into one typed [`Settings`] tree.
//! Every variable is listed in the README. The subcommands themselves are in [`crate::cli`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Events applied per projection transaction.
    #[arg(long, env = "CLINIC_WORKER_BATCH", default_value_t = 500)]
    pub worker_batch: i64,
    /// Polling interval (ms) when no NOTIFY arrives.
    #[arg(long, env = "CLINIC_WORKER_POLL_MS", default_value_t = 1000)]
    pub worker_poll_ms: u64,
    /// After a batch that caught up, how long (ms) a worker waits before reading again, so
    /// that the events committed meanwhile are applied in one transaction (0: at once).
    #[arg(long, env = "CLINIC_WORKER_SETTLE_MS", default_value_t = 5)]
    pub worker_settle_ms: u64,
}

impl WorkerArgs {
    pub fn config(&self) -> Result<projections::worker::WorkerConfig, ConfigError> {
        if !(1..=10_000).contains(&self.worker_batch) {
            return Err(ConfigError {
                variable: "CLINIC_WORKER_BATCH",
                message: "must be between 1 and 10000".into(),
            });
        }
        if self.worker_poll_ms == 0 {
            return Err(ConfigError {
                variable: "CLINIC_WORKER_POLL_MS",
                message: "must be at least 1".into(),
            });
        }
        if self.worker_settle_ms > 1000 {
            return Err(ConfigError {
                variable: "CLINIC_WORKER_SETTLE_MS",
                message: "must be at most 1000".into(),
            });
        }
        Ok(projections::worker::WorkerConfig {
            batch_size: self.worker_batch,
            poll_interval: Duration::from_millis(self.worker_poll_ms),
            settle: Duration::from_millis(self.worker_settle_ms),
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL. When unset, a server on 127.0.0.1:5432 is used if one answers (database
    /// `clinic`, created if missing), else a private cluster is started under CLINIC_PG_DIR.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Always start the private cluster, even when DATABASE_URL is set or a server answers.
    #[arg(long, env = "CLINIC_EMBEDDED_PG", action = ArgAction::Set, value_parser = BoolishValueParser::new(), default_value = "false", default_missing_value = "true", num_args = 0..=1)]
    pub embedded_pg: bool,
    /// Data directory of the private cluster.
    #[arg(long, env = "CLINIC_PG_DIR", default_value = ".clinic/pg")]
    pub pg_dir: PathBuf,
    /// Size of the connection pool.
    #[arg(long, env = "CLINIC_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// The local server probed when DATABASE_URL is unset.
    #[arg(long, env = "CLINIC_LOCAL_PG", default_value = "127.0.0.1:5432")]
    pub local_pg: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "CLINIC_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Apply pending migrations before serving.
    #[arg(long, env = "CLINIC_MIGRATE_ON_START", action = ArgAction::Set, value_parser = BoolishValueParser::new(), default_value = "true", default_missing_value = "true", num_args = 0..=1)]
    pub migrate_on_start: bool,
    /// Requests running longer than this many seconds are answered 408; a connection whose
    /// request line and headers take longer is closed.
    #[arg(long, env = "CLINIC_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// HS256 secret for access tokens (at least 32 bytes). Unset: a random one per process
    /// (tokens then die with the process, and several processes cannot share them).
    #[arg(long, env = "CLINIC_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Run the projection workers inside this process.
    /// A bearer token that may read `GET /metrics` (for the Prometheus scraper); without it
    /// only the platform admin's access token may.
    #[arg(long, env = "CLINIC_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    #[arg(long, env = "CLINIC_WORKERS", action = ArgAction::Set, value_parser = BoolishValueParser::new(), default_value = "true", default_missing_value = "true", num_args = 0..=1)]
    pub workers: bool,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// A configuration error. Its message is one line and names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

/// Where the database comes from.
#[derive(Clone, Debug)]
pub enum DatabaseSource {
    /// `DATABASE_URL`.
    Url(Box<PgConnectOptions>),
    /// No URL: a local server if one answers on 127.0.0.1:5432, else the private cluster.
    Auto,
    /// `CLINIC_EMBEDDED_PG=1`: the private cluster.
    Embedded,
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub source: DatabaseSource,
    /// `HOST:PORT` of the local server tried when there is no URL.
    pub local_server: SocketAddr,
    pub pg_dir: PathBuf,
    pub max_connections: u32,
}

#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The audit exports' connections and deadlines.
    pub streams: crate::audit_streams::StreamSettings,
}

/// Token settings. The secret is never printed (`Debug` hides it).
#[derive(Clone)]
pub struct AuthSettings {
    /// `None`: generate a random secret at start (and warn).
    pub jwt_secret: Option<Vec<u8>>,
    pub access_ttl: Duration,
    /// `CLINIC_METRICS_TOKEN`: a bearer token that may read `/metrics`.
    pub metrics_token: Option<Vec<u8>>,
    /// Password checks that may run or wait at once (log-ins beyond are a 429).
    pub password_checks: usize,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("access_ttl", &self.access_ttl)
            .field("password_checks", &self.password_checks)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The shortest accepted `CLINIC_JWT_SECRET`, in bytes (HS256 wants a 256-bit key).
pub const MIN_JWT_SECRET_LEN: usize = 32;
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

#[derive(Clone, Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub migrate_on_start: bool,
    /// `None`: no in-process projection workers.
    pub workers: Option<projections::worker::WorkerConfig>,
    /// The clock of every business rule. Always the system clock when read from the
    /// environment; only code (the test harness) can hand in another.
    pub clock: domain::clock::Services,
}

impl DatabaseSettings {
    pub fn from_args(args: &DatabaseArgs) -> Result<Self, ConfigError> {
        let source = if args.embedded_pg {
            DatabaseSource::Embedded
        } else {
            match args.database_url.as_deref().map(str::trim) {
                None | Some("") => DatabaseSource::Auto,
                Some(url) => DatabaseSource::Url(Box::new(parse_database_url(url)?)),
            }
        };
        if args.db_max_connections == 0 {
            return Err(ConfigError {
                variable: "CLINIC_DB_MAX_CONNECTIONS",
                message: "must be at least 1".into(),
            });
        }
        let local_server = SocketAddr::from_str(args.local_pg.trim()).map_err(|_| ConfigError {
            variable: "CLINIC_LOCAL_PG",
            message: format!("`{}` is not IP:PORT", args.local_pg),
        })?;
        Ok(DatabaseSettings {
            source,
            local_server,
            pg_dir: args.pg_dir.clone(),
            max_connections: args.db_max_connections,
        })
    }
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let bind = SocketAddr::from_str(args.bind.trim()).map_err(|_| ConfigError {
            variable: "CLINIC_BIND",
            message: format!(
                "`{}` is not an address to listen on (expected IP:PORT, e.g. 127.0.0.1:8080)",
                args.bind
            ),
        })?;
        if args.request_timeout_secs == 0 {
            return Err(ConfigError {
                variable: "CLINIC_REQUEST_TIMEOUT_SECS",
                message: "must be at least 1".into(),
            });
        }
        let jwt_secret = secret(
            args.jwt_secret.as_deref(),
            MIN_JWT_SECRET_LEN,
            "CLINIC_JWT_SECRET",
        )?;
        let metrics_token = secret(
            args.metrics_token.as_deref(),
            MIN_METRICS_TOKEN_LEN,
            "CLINIC_METRICS_TOKEN",
        )?;
        Ok(Settings {
            database: DatabaseSettings::from_args(&args.database)?,
            auth: AuthSettings {
                jwt_secret,
                access_ttl: Duration::from_secs(15 * 60),
                metrics_token,
                password_checks: default_password_checks(),
            },
            http: HttpSettings {
                bind,
                request_timeout: Duration::from_secs(args.request_timeout_secs),
                body_limit: 64 * 1024,
                streams: crate::audit_streams::StreamSettings::default(),
            },
            migrate_on_start: args.migrate_on_start,
            workers: if args.workers {
                Some(args.worker.config()?)
            } else {
                None
            },
            clock: domain::clock::Services::system(),
        })
    }
}

/// Parses a `postgres://` URL. The error never echoes the URL, which may hold a password.
/// A secret setting: unset or empty is `None`; a set one must be at least `min` bytes long.
fn secret(
    raw: Option<&str>,
    min: usize,
    variable: &'static str,
) -> Result<Option<Vec<u8>>, ConfigError> {
    match raw {
        None | Some("") => Ok(None),
        Some(value) if value.len() < min => Err(ConfigError {
            variable,
            message: format!("must be at least {min} bytes long"),
        }),
        Some(value) => Ok(Some(value.as_bytes().to_vec())),
    }
}

pub fn parse_database_url(url: &str) -> Result<PgConnectOptions, ConfigError> {
    let bad = |why: String| {
        ConfigError {
        variable: "DATABASE_URL",
        message: format!("not a valid PostgreSQL URL ({why}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"),
    }
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad("it must start with postgres:// or postgresql://".into()));
    }
    let options = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
    Ok(with_tls_rule(options, Some(url)))
}

/// TLS to the database follows `DATABASE_URL`: an `sslmode` named in the URL, or else in
/// `PGSSLMODE`, is used as given. Otherwise a database on this machine (a loopback address,
/// `localhost`, a Unix socket; the private cluster is one) is reached over plain TCP
/// (`sslmode=disable`: encrypting loopback traffic only costs CPU on both ends), and any other
/// host keeps `prefer`.
pub fn with_tls_rule(options: PgConnectOptions, url: Option<&str>) -> PgConnectOptions {
    let env = std::env::var("PGSSLMODE").ok();
    let local = options.get_socket().is_some() || is_local_host(options.get_host());
    if plain_tcp(url, env.as_deref(), local) {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    }
}

/// Whether to impose `sslmode=disable`; if not, the mode parsed stays (the URL's,
/// `PGSSLMODE`'s, or `prefer`).
fn plain_tcp(url: Option<&str>, env: Option<&str>, local: bool) -> bool {
    let named =
        url.is_some_and(url_names_ssl_mode) || env.is_some_and(|mode| !mode.trim().is_empty());
    !named && local
}

/// Whether the URL's query string has `sslmode` (or sqlx's `ssl-mode`).
fn url_names_ssl_mode(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            key == "sslmode" || key == "ssl-mode"
        })
    })
}

/// `localhost`, a loopback address (`127.0.0.0/8`, `::1`), or a Unix socket directory.
fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// [`commands::accounts::credentials::CHECKS_WAITING_PER_CORE`] per core.
pub fn default_password_checks() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
        * commands::accounts::credentials::CHECKS_WAITING_PER_CORE
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        Serve::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn a_short_metrics_token_names_the_variable() {
        let err = Settings::from_args(&serve(&["--metrics-token", "short"])).unwrap_err();
        assert_eq!(err.variable, "CLINIC_METRICS_TOKEN");
        let ok = Settings::from_args(&serve(&["--metrics-token", "0123456789abcdef"])).unwrap();
        assert_eq!(
            ok.auth.metrics_token.as_deref(),
            Some(&b"0123456789abcdef"[..])
        );
        assert!(!format!("{:?}", ok.auth).contains("0123456789abcdef"));
    }

    #[test]
    fn tls_follows_the_url_and_is_off_for_this_machine_by_default() {
        // Named in the URL (either spelling) or in PGSSLMODE: used as given.
        for url in [
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@localhost/db?application_name=x&ssl-mode=verify-full",
            "postgres://u@127.0.0.1/db?sslmode=prefer",
        ] {
            assert!(!plain_tcp(Some(url), None, true), "{url}");
        }
        assert!(!plain_tcp(
            Some("postgres://u@127.0.0.1/db"),
            Some("require"),
            true
        ));
        // Not named: plain TCP on this machine, `prefer` elsewhere.
        assert!(plain_tcp(Some("postgres://u@127.0.0.1/db"), None, true));
        assert!(plain_tcp(
            Some("postgres://u@127.0.0.1/db?sslmodes=x"),
            Some(" "),
            true
        ));
        assert!(plain_tcp(None, None, true));
        assert!(!plain_tcp(
            Some("postgres://u@db.example.com/db"),
            None,
            false
        ));

        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "/run/postgresql",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in [
            "db.example.com",
            "10.0.0.5",
            "192.168.1.2",
            "::2",
            "localhost.example.com",
        ] {
            assert!(!is_local_host(host), "{host}");
        }
    }

    #[test]
    fn a_parsed_url_carries_the_tls_rule() {
        // PGSSLMODE is unset in the test environment unless a developer sets it.
        if std::env::var_os("PGSSLMODE").is_some() {
            return;
        }
        // The mode each URL ends with, by its name (PgSslMode has no PartialEq).
        let cases = [
            ("postgres://u@127.0.0.1:54400/db", "Disable"),
            ("postgres://u@localhost/db", "Disable"),
            ("postgres://u@%2Frun%2Fpostgresql/db", "Disable"),
            ("postgres://u@127.0.0.1/db?sslmode=require", "Require"),
            ("postgres://u@db.example.com/db", "Prefer"),
            ("postgres://u@db.example.com/db?sslmode=disable", "Disable"),
        ];
        for (url, expected) in cases {
            let mode = parse_database_url(url).unwrap().get_ssl_mode();
            assert_eq!(format!("{mode:?}"), expected, "{url}");
        }
    }

    #[test]
    fn a_bad_bind_address_names_the_variable() {
        let err = Settings::from_args(&serve(&["--bind", "nonsense"])).unwrap_err();
        assert_eq!(err.variable, "CLINIC_BIND");
        assert!(err.to_string().starts_with("CLINIC_BIND: "));
    }

    #[test]
    fn a_bad_database_url_names_the_variable_and_hides_the_url() {
        let err =
            Settings::from_args(&serve(&["--database-url", "mysql://u:secret@h/db"])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("secret"));
        let err = parse_database_url("postgres://u:secret@h:notaport/db").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn embedded_flag_wins_over_a_url() {
        let s = Settings::from_args(&serve(&[
            "--database-url",
            "postgres://x@127.0.0.1/db",
            "--embedded-pg",
            "1",
        ]))
        .unwrap();
        assert!(matches!(s.database.source, DatabaseSource::Embedded));
    }

    #[test]
    fn a_short_jwt_secret_names_the_variable() {
        let err = Settings::from_args(&serve(&["--jwt-secret", "short"])).unwrap_err();
        assert_eq!(err.variable, "CLINIC_JWT_SECRET");
        assert!(!err.to_string().contains("short"));
        let ok = Settings::from_args(&serve(&["--jwt-secret", &"k".repeat(32)])).unwrap();
        assert!(!format!("{:?}", ok.auth).contains("kkkk"));
    }

    #[test]
    fn the_worker_settle_is_5_ms_and_at_most_a_second() {
        let workers = |args: &[&str]| Settings::from_args(&serve(args)).map(|s| s.workers);
        let default = workers(&[]).unwrap().unwrap();
        assert_eq!(default.settle, projections::worker::DEFAULT_SETTLE);
        assert_eq!(default.settle, Duration::from_millis(5));
        let off = workers(&["--worker-settle-ms", "0"]).unwrap().unwrap();
        assert!(off.settle.is_zero());
        let most = workers(&["--worker-settle-ms", "1000"]).unwrap().unwrap();
        assert_eq!(most.settle, Duration::from_secs(1));
        let err = workers(&["--worker-settle-ms", "1001"]).unwrap_err();
        assert_eq!(err.variable, "CLINIC_WORKER_SETTLE_MS");
    }

    #[test]
    fn defaults_are_sane() {
        let s = Settings::from_args(&serve(&[])).unwrap();
        assert_eq!(s.http.bind.to_string(), "127.0.0.1:8080");
        assert!(s.migrate_on_start);
        assert_eq!(s.http.body_limit, 65536);
    }
}
