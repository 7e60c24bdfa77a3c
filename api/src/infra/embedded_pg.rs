//! A private PostgreSQL cluster, started from the installed server binaries when no server is
//! configured or reachable (or when `CLINIC_EMBEDDED_PG=1` forces it).
//!
//! The cluster lives in a data directory (default `./.clinic/pg`), listens on 127.0.0.1 on a
//! free port (TCP only, no Unix socket) with trust authentication, and is stopped when the
//! owning process stops it, drops it, or dies: a small watchdog process stops the cluster once
//! its owner's pid is gone, so a killed `clinic serve` or test run leaves no server behind.
//! When run as root, PostgreSQL refuses to start, so the binaries run as the `postgres` OS user.

use std::ffi::CString;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use sqlx::postgres::PgConnectOptions;

/// Where Debian and Ubuntu install the server binaries.
const BINARY_ROOT: &str = "/usr/lib/postgresql";
/// The superuser the cluster is initialised with.
pub const SUPERUSER: &str = "postgres";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb and pg_ctl under {BINARY_ROOT}/*/bin and on PATH); \
         install them (Debian/Ubuntu: `apt-get install postgresql`) or set DATABASE_URL to a running server"
    )]
    BinariesNotFound,
    #[error("running as root, but there is no `postgres` OS user to run PostgreSQL as; create it (`useradd -r postgres`) or set DATABASE_URL")]
    NoPostgresUser,
    #[error("CLINIC_PG_DIR {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {detail}")]
    Command { program: String, detail: String },
}

/// How to run the server binaries.
#[derive(Clone, Debug)]
struct Runner {
    bin_dir: PathBuf,
    /// `Some((uid, gid))` of the `postgres` OS user when we are root.
    as_user: Option<(u32, u32)>,
}

impl Runner {
    fn detect() -> Result<Self, EmbeddedPgError> {
        let bin_dir = find_bin_dir().ok_or(EmbeddedPgError::BinariesNotFound)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_user = if unsafe { libc::geteuid() } == 0 {
            Some(lookup_user(SUPERUSER).ok_or(EmbeddedPgError::NoPostgresUser)?)
        } else {
            None
        };
        Ok(Runner { bin_dir, as_user })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.as_user {
            cmd.uid(uid).gid(gid);
            cmd.env("HOME", "/tmp");
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), EmbeddedPgError> {
        let output =
            self.command(program)
                .args(args)
                .output()
                .map_err(|e| EmbeddedPgError::Command {
                    program: program.to_owned(),
                    detail: e.to_string(),
                })?;
        if output.status.success() {
            return Ok(());
        }
        let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        Err(EmbeddedPgError::Command {
            program: program.to_owned(),
            detail: format!("{} ({})", detail.replace('\n', "; "), output.status),
        })
    }

    fn chown(&self, path: &Path) -> Result<(), EmbeddedPgError> {
        if let Some((uid, gid)) = self.as_user {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                EmbeddedPgError::DataDir {
                    path: path.to_owned(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`, else a
/// directory on `PATH` holding both.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(BINARY_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| has_tools(dir))
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: getpwnam reads a static buffer; we copy the two ids out before any other call.
    let pw = unsafe { libc::getpwnam(c_name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-null and points at a valid passwd entry.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn free_port() -> Result<u16, EmbeddedPgError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| EmbeddedPgError::Command {
            program: "bind 127.0.0.1:0".into(),
            detail: e.to_string(),
        })
}

/// Options for [`EmbeddedCluster::start`].
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Trade durability for speed (fsync off): for throw-away test clusters.
    pub ephemeral: bool,
    /// Delete the data directory once the cluster is stopped.
    pub remove_on_stop: bool,
}

/// A running private cluster. Stopped on [`EmbeddedCluster::stop`] or drop.
#[derive(Debug)]
pub struct EmbeddedCluster {
    runner: Runner,
    data_dir: PathBuf,
    port: u16,
    options: StartOptions,
    stopped: Mutex<bool>,
}

impl EmbeddedCluster {
    /// Initialises `data_dir` if it holds no cluster yet, then starts the server and waits
    /// until it accepts connections. Blocking: call it from `spawn_blocking` in async code.
    pub fn start(data_dir: &Path, options: StartOptions) -> Result<Self, EmbeddedPgError> {
        let runner = Runner::detect()?;
        let data_err = |source| EmbeddedPgError::DataDir {
            path: data_dir.to_owned(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(data_err)?;
        let data_dir = data_dir.canonicalize().map_err(data_err)?;
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700)).map_err(data_err)?;
        runner.chown(&data_dir)?;
        let dir = data_dir.to_string_lossy().into_owned();

        if !data_dir.join("PG_VERSION").exists() {
            tracing::info!(data_dir = %dir, "initialising a private PostgreSQL cluster");
            let mut args = vec![
                "-D",
                &dir,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ];
            if options.ephemeral {
                args.push("--no-sync");
            }
            runner.run("initdb", &args)?;
        }

        let port = free_port()?;
        let mut server_opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c max_connections=200"
        );
        if options.ephemeral {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = data_dir.join("server.log").to_string_lossy().into_owned();
        runner.run(
            "pg_ctl",
            &[
                "-D",
                &dir,
                "-l",
                &log,
                "-o",
                &server_opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        let cluster = EmbeddedCluster {
            runner,
            data_dir,
            port,
            options,
            stopped: Mutex::new(false),
        };
        cluster.spawn_watchdog();
        tracing::info!(port, data_dir = %dir, "private PostgreSQL cluster started");
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Connection options for `database` as the cluster's superuser.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .database(database)
            // Our own cluster on loopback: plain TCP (it has no certificate anyway).
            .ssl_mode(sqlx::postgres::PgSslMode::Disable)
    }

    /// Stops the server (fast shutdown: open sessions are ended). Idempotent.
    pub fn stop(&self) -> Result<(), EmbeddedPgError> {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return Ok(());
        }
        *stopped = true;
        let dir = self.data_dir.to_string_lossy().into_owned();
        let result = self
            .runner
            .run("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"]);
        if self.options.remove_on_stop {
            let _ = fs::remove_dir_all(&self.data_dir);
        }
        tracing::info!(data_dir = %dir, "private PostgreSQL cluster stopped");
        result
    }

    /// A detached shell that waits for this process to end, then stops the cluster (and
    /// removes it, if asked). It covers exits that skip `Drop`: a panic that aborts, a kill,
    /// or a test binary's statics.
    fn spawn_watchdog(&self) {
        let pg_ctl = self.runner.bin_dir.join("pg_ctl");
        let quote = |p: &Path| format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"));
        let as_postgres = if self.runner.as_user.is_some() {
            format!("setpriv --reuid={SUPERUSER} --regid={SUPERUSER} --init-groups ")
        } else {
            String::new()
        };
        let mut script = format!(
            "while [ -e /proc/{pid} ]; do sleep 0.5; done; \
             if [ -e {dir}/postmaster.pid ]; then {as_postgres}{pg_ctl} -D {dir} -m immediate -w stop >/dev/null 2>&1; fi",
            pid = std::process::id(),
            dir = quote(&self.data_dir),
            pg_ctl = quote(&pg_ctl),
        );
        if self.options.remove_on_stop {
            script.push_str(&format!("; rm -rf {}", quote(&self.data_dir)));
        }
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "could not start the PostgreSQL watchdog; the cluster is stopped only on a clean exit");
        }
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            tracing::warn!(error = %err, "stopping the private PostgreSQL cluster failed");
        }
    }
}
