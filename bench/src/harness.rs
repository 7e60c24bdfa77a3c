//! The things a run stands on: a fresh database (created, then dropped), the `clinic` release
//! binary (built by cargo), the server process it starts, and that process's peak RSS.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

use crate::bail;
use crate::error::Result;

/// The JWT secret of the server the bench starts (tokens survive its restart).
const JWT_SECRET: &str = "clinic-bench-secret-clinic-bench-secret";

/// A database of this run: created empty, dropped by [`Database::drop_now`].
pub struct Database {
    admin_url: String,
    pub name: String,
    /// The URL of the database itself (for the server and the SQL of the bench).
    pub url: String,
    /// Whether this run created it (and so drops it).
    owned: bool,
}

impl Database {
    /// Creates `clinic_bench_<pid>_<random>` on the server `admin_url` points at.
    pub async fn fresh(admin_url: &str) -> Result<Database> {
        let name = format!(
            "clinic_bench_{}_{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut url = reqwest::Url::parse(admin_url)
            .map_err(|e| crate::error::BenchError(format!("--database-url: {e}")))?;
        url.set_path(&format!("/{name}"));
        let mut conn = connect(admin_url).await?;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        let _ = conn.close().await;
        Ok(Database {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
            owned: true,
        })
    }

    /// The service's own database (`--url` mode): never dropped.
    pub fn existing(url: &str) -> Database {
        Database {
            admin_url: url.to_owned(),
            name: String::new(),
            url: url.to_owned(),
            owned: false,
        }
    }

    pub async fn drop_now(&self) {
        if !self.owned {
            return;
        }
        match connect(&self.admin_url).await {
            Ok(mut conn) => {
                let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
                if let Err(e) = conn.execute(sql.as_str()).await {
                    eprintln!("could not drop database {}: {e}", self.name);
                }
            }
            Err(e) => eprintln!("could not drop database {}: {e}", self.name),
        }
    }
}

pub async fn connect(url: &str) -> Result<sqlx::PgConnection> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| crate::error::BenchError(format!("database URL: {e}")))?;
    Ok(options.connect().await?)
}

/// The `clinic` binary.
pub struct ClinicBin {
    pub path: PathBuf,
}

impl ClinicBin {
    /// `--clinic-bin`, or `cargo build --release --bin clinic` (a no-op when up to date) and
    /// the binary next to this one.
    pub fn locate(given: Option<PathBuf>) -> Result<ClinicBin> {
        if let Some(path) = given {
            return Ok(ClinicBin { path });
        }
        eprintln!("building the server: cargo build --release --bin clinic");
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["build", "--release", "--bin", "clinic"])
            .status()?;
        if !status.success() {
            bail!("`cargo build --release --bin clinic` failed; build it, or pass --clinic-bin");
        }
        let exe = std::env::current_exe()?;
        let path = exe
            .parent()
            .map(|dir| dir.join("clinic"))
            .unwrap_or_else(|| PathBuf::from("target/release/clinic"));
        if !path.exists() {
            bail!(
                "{} not found: run `cargo build --release --bin clinic` or pass --clinic-bin",
                path.display()
            );
        }
        Ok(ClinicBin { path })
    }

    /// Runs `clinic <args>` on `database_url` and returns its standard output.
    pub async fn run(
        &self,
        database_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<String> {
        let output = tokio::process::Command::new(&self.path)
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "clinic {}: {}\n{}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts `clinic serve` on `port` of 127.0.0.1 (0: a free one), with `env` added to its
    /// environment, and waits until `/readyz` answers. A restart passes the first server's
    /// port, so clients keep their URL.
    pub async fn serve(
        &self,
        database_url: &str,
        log: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> Result<Server> {
        let port = match port {
            0 => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            port => port,
        };
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = tokio::process::Command::new(&self.path)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("CLINIC_BIND", format!("127.0.0.1:{port}"))
            .env("CLINIC_JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()?;
        let server = Server {
            pid: child.id().unwrap_or(0),
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            peak_rss_kib: 0,
        };
        server.wait_ready(log).await?;
        Ok(server)
    }

    /// Starts `clinic work` (the projection workers, no HTTP), its output appended to `log`.
    pub fn work(&self, database_url: &str, log: &Path) -> Result<tokio::process::Child> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        Ok(tokio::process::Command::new(&self.path)
            .arg("work")
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()?)
    }
}

/// `kill -9` of a child process, then reaps it.
pub async fn kill9(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let _ = child.wait().await;
}

/// SIGTERM, then SIGKILL after 15 s.
pub async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// A running `clinic serve`.
pub struct Server {
    child: tokio::process::Child,
    pub pid: u32,
    pub base: String,
    pub port: u16,
    /// The highest VmHWM read so far.
    pub peak_rss_kib: u64,
}

impl Server {
    async fn wait_ready(&self, log: &Path) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "clinic serve did not become ready in 120 s (log: {})",
            log.display()
        )
    }

    /// Reads VmHWM (peak resident set) from /proc and remembers the highest value.
    pub fn sample_rss(&mut self) -> u64 {
        if let Some(kib) = vm_hwm_kib(self.pid) {
            self.peak_rss_kib = self.peak_rss_kib.max(kib);
        }
        self.peak_rss_kib
    }

    /// SIGTERM, then SIGKILL after 15 s. Returns the peak RSS (KiB).
    pub async fn stop(mut self) -> u64 {
        let peak = self.sample_rss();
        terminate(&mut self.child).await;
        peak
    }

    /// `kill -9`: no graceful shutdown, requests in flight are cut.
    pub async fn kill9(mut self) {
        kill9(&mut self.child).await;
    }
}

/// VmHWM of a process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The last lines of the server's log, for an error message.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
