//! `clinic-bench --faults`: the benchmark's mixed load on `clinic serve` (its own workers off)
//! and two `clinic work`, and during it, at fixed fractions of `--faults-seconds`:
//!
//! | when | fault |
//! | --- | --- |
//! | 15 % | `kill -9` of `clinic serve`, restarted at once on the same port |
//! | 35 % | `kill -9` of the first `clinic work` (restarted at 47 %; the second takes over) |
//! | 60 % | `--pg-restart-cmd` (`scripts/faults` passes `pg_ctl restart -m fast`) |
//! | 75 % | `--pg-stop-cmd` (`pg_ctl stop -m fast`), 5 s down, then `--pg-start-cmd` |
//!
//! A fast restart is over in a fraction of a second, less than the 800 ms a request waits for
//! a connection, so it mostly shows as slow answers; the stop keeps the database away long
//! enough for every request to meet the outage.
//!
//! A probe reads `GET /v1/patients?limit=1` every 20 ms throughout. Then, with the load
//! stopped and the projections caught up, it checks:
//!
//! 1. every command answered 2xx is in the store: the event at the answer's `position` is of
//!    the answer's record (`id`) at the answer's `version` (the client journals each one);
//! 2. every accepted command shows in the read models (the smoke test's check, over HTTP);
//! 3. no event was applied twice: each clinic's hash chain has one link per event;
//! 4. `clinic verify` answers intact and `clinic replay --check` finds no difference, for
//!    every clinic;
//! 5. the read models equal a rebuild from zero (`clinic rebuild`), row by row;
//! 6. while PostgreSQL was away (each restart, and the stop), every answer was a 200 or a 503
//!    problem+json with `Retry-After` within 2 s; the stop was seen as 503s; and the service
//!    answered 200 again by itself;
//! 7. no process logged a panic;
//! 8. while one `clinic work` was dead, every projection moved on (the other took its leases).
//!
//! Any failed check fails the run (exit status 1). See `docs/security.md` for the figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgConnection;
use tokio::process::Child;

use crate::client::{Accepted, Api, Journal};
use crate::error::{BenchError, Result};
use crate::fixture::Role;
use crate::harness::{self, ClinicBin, Database, Server};
use crate::load::{self, Stats};
use crate::scenarios::commands::reschedule_or_cancel;
use crate::scenarios::mixed::{self, MixedStats};
use crate::scenarios::verify::{self, Verification};
use crate::scenarios::Ctx;
use crate::{bail, fixture, Args};

/// `clinic serve` runs no projection workers: the two `clinic work` do.
const SERVE_ENV: &[(&str, &str)] = &[("CLINIC_WORKERS", "false")];
/// The longest a request may take while PostgreSQL is away (the issue: "at once").
const OUTAGE_ANSWER_LIMIT_MS: f64 = 2_000.0;
/// How long the service may take to answer 200 again after PostgreSQL is back.
const RECOVERY_LIMIT_SECONDS: f64 = 30.0;
/// How often the probe reads.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long the database stays stopped.
const PG_DOWN: Duration = Duration::from_secs(5);
const PG_RESTART: &str = "PostgreSQL restart (pg_ctl restart -m fast)";
const PG_STOP: &str = "PostgreSQL stopped (pg_ctl stop -m fast), started 5 s later";

/// The shell commands that drive the database server.
struct PgControl {
    restart: String,
    stop: String,
    start: String,
}

/// The processes under test.
struct Rig {
    clinic: ClinicBin,
    db_url: String,
    dir: PathBuf,
    server: Option<Server>,
    port: u16,
    workers: [Option<Child>; 2],
}

impl Rig {
    fn server_log(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    fn worker_log(&self, n: usize) -> PathBuf {
        self.dir.join(format!("work-{n}.log"))
    }

    async fn start_server(&mut self) -> Result<()> {
        let log = self.server_log();
        let server = match self
            .clinic
            .serve(&self.db_url, &log, self.port, SERVE_ENV)
            .await
        {
            Ok(server) => server,
            Err(e) => bail!("{e}\n{}", harness::log_tail(&log)),
        };
        self.port = server.port;
        self.server = Some(server);
        Ok(())
    }

    fn start_worker(&mut self, n: usize) -> Result<()> {
        let child = self.clinic.work(&self.db_url, &self.worker_log(n))?;
        self.workers[n] = Some(child);
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        for worker in self.workers.iter_mut() {
            if let Some(mut child) = worker.take() {
                harness::terminate(&mut child).await;
            }
        }
    }

    /// The lines of every log of the run that report a panic.
    fn panics(&self) -> Vec<String> {
        [self.server_log(), self.worker_log(0), self.worker_log(1)]
            .iter()
            .flat_map(|log| {
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|line| line.contains("panicked"))
                    .map(|line| format!("{}: {line}", log.display()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// One fault: when it struck (seconds into the load) and when the service had it behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub fault: String,
    pub at_seconds: f64,
    /// From the fault to the process being back (ready, running, or the restart command done).
    pub back_after_seconds: f64,
}

/// One answer of the probe.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Probe {
    pub at_seconds: f64,
    pub ms: f64,
    /// 0: no answer (connection refused or cut).
    pub status: u16,
    pub problem_json: bool,
    pub retry_after: bool,
}

/// What the probe saw while PostgreSQL was away.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outage {
    pub fault: String,
    /// Answers from the restart's start to the first 200 after it.
    pub answers: usize,
    pub answered_503: usize,
    pub slowest_ms: f64,
    /// Answers that were not a fast 503 problem+json with Retry-After (should be none).
    pub wrong: Vec<String>,
    /// From the restart command's end to the first 200.
    pub recovered_after_seconds: Option<f64>,
}

/// A read model table whose live rows differ from the rebuilt ones.
#[derive(Debug, Clone, Serialize)]
pub struct TableDiff {
    pub table: String,
    pub live_rows: usize,
    pub rebuilt_rows: usize,
    pub only_live: Vec<String>,
    pub only_rebuilt: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultsReport {
    pub seconds: f64,
    pub faults: Vec<Fault>,
    pub mixed: Option<MixedStats>,
    pub reschedule_cancel: Option<Stats>,
    /// 5xx answers (other than a 503 with Retry-After) and requests without an answer during
    /// the load, by status (0: no answer, expected only while the API was down).
    pub failed_requests: u64,
    pub failed_by_status: BTreeMap<u16, u64>,
    pub failure_examples: Vec<String>,
    pub accepted_commands: usize,
    pub journal: PathBuf,
    /// Accepted commands whose event is not in the store as answered.
    pub lost: Vec<String>,
    pub verification: Option<Verification>,
    pub events: i64,
    pub chain_links: i64,
    pub outages: Vec<Outage>,
    pub probes: usize,
    pub clinics_checked: usize,
    pub read_model_tables: usize,
    pub read_model_rows: usize,
    pub rebuild_differences: Vec<TableDiff>,
    pub problems: Vec<String>,
}

pub async fn main(args: Args) -> Result<bool> {
    let (Some(restart), Some(stop), Some(start)) = (
        args.pg_restart_cmd.clone(),
        args.pg_stop_cmd.clone(),
        args.pg_start_cmd.clone(),
    ) else {
        bail!("--faults needs --pg-restart-cmd, --pg-stop-cmd and --pg-start-cmd (scripts/faults passes them)");
    };
    let pg = PgControl {
        restart,
        stop,
        start,
    };
    let admin = args
        .database_url
        .clone()
        .unwrap_or(crate::run::DEFAULT_ADMIN_URL.into());
    let clinic = ClinicBin::locate(args.clinic_bin.clone())?;
    let db = Database::fresh(&admin).await?;
    let dir = std::env::temp_dir().join(format!("clinic-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rig = Rig {
        clinic,
        db_url: db.url.clone(),
        dir,
        server: None,
        port: 0,
        workers: [None, None],
    };
    let seconds = args.faults_seconds.max(10.0);
    let outcome = tokio::select! {
        outcome = run(&mut rig, &args, seconds, &pg) => outcome,
        _ = tokio::signal::ctrl_c() => Err(BenchError("interrupted".into())),
    };
    rig.stop().await;
    if args.keep_database {
        eprintln!("kept database {}", db.name);
    } else {
        db.drop_now().await;
    }
    let report = outcome?;
    std::fs::create_dir_all(&args.results_dir)?;
    let path = args.results_dir.join(format!(
        "faults-{}.json",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    print(&report);
    eprintln!("results: {}", path.display());
    eprintln!("logs: {}", rig.dir.display());
    Ok(report.problems.is_empty())
}

async fn run(rig: &mut Rig, args: &Args, seconds: f64, pg: &PgControl) -> Result<FaultsReport> {
    eprintln!("== setup: clinic serve (workers off) + 2 × clinic work");
    fixture::create_platform_admin(&rig.clinic, &rig.db_url).await?;
    rig.start_server().await?;
    rig.start_worker(0)?;
    rig.start_worker(1)?;
    let base = format!("http://127.0.0.1:{}", rig.port);
    let mut api = Api::new(&base)?;
    let journal = Arc::new(Journal::default());
    api.journal = Some(journal.clone());
    let fixture = Arc::new(fixture::build(&api, 5, 2).await?);
    let ctx = Ctx {
        api: api.clone(),
        fixture: fixture.clone(),
        ledger: Arc::default(),
    };
    let mut report = FaultsReport {
        seconds,
        journal: args.results_dir.join("faults-accepted.ndjson"),
        ..FaultsReport::default()
    };

    eprintln!("== mixed load for {seconds:.0} s, with faults at 15 %, 35 %, 60 % and 75 %");
    let duration = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let deadline = started + duration;
    let movers = {
        let ctx = ctx.clone();
        load::run("reschedule or cancel", 2, duration, move |_, n| {
            let ctx = ctx.clone();
            async move { reschedule_or_cancel(&ctx, Role::Admin, n).await }
        })
    };
    let probe_token = fixture.work()[0].admin.token();
    let (mixed, movers, probes, faults) = tokio::join!(
        mixed::run(&ctx, 8, duration),
        movers,
        probe(&api, &probe_token, started, deadline),
        inject(rig, &ctx, started, duration, pg),
    );
    report.mixed = Some(mixed);
    report.reschedule_cancel = Some(movers);
    report.failed_requests = api.failures.count();
    report.failed_by_status = api.failures.by_status();
    report.failure_examples = api.failures.examples();
    for (status, count) in &report.failed_by_status {
        if *status != 0 {
            report.problems.push(format!(
                "{count} answers were HTTP {status} (only a 503 with Retry-After may answer a fault)"
            ));
        }
    }
    report.probes = probes.len();
    match faults {
        Ok(faults) => report.faults = faults,
        Err(e) => {
            report
                .problems
                .push(format!("a fault could not be injected: {e}"));
            return Ok(report);
        }
    }
    for fault in [PG_RESTART, PG_STOP] {
        let outage = outage(&probes, &report.faults, fault);
        check_outage(&outage, fault == PG_STOP, &mut report.problems);
        report.outages.push(outage);
    }

    eprintln!("== checks");
    // Log in again: a killed server kept no state, but tokens outlive it; refreshing also
    // proves that logging in works after the faults.
    fixture.refresh_tokens(&api).await?;
    let verification = verify::run(&ctx, Duration::from_secs(120)).await?;
    for missing in &verification.missing {
        report
            .problems
            .push(format!("not in the read models: {missing}"));
    }
    report.verification = Some(verification);

    let accepted = journal.all();
    report.accepted_commands = accepted.len();
    write_journal(&report.journal, &accepted)?;
    let mut conn = harness::connect(&rig.db_url).await?;
    report.lost = lost(&mut conn, &accepted).await?;
    for lost in &report.lost {
        report
            .problems
            .push(format!("accepted but not stored: {lost}"));
    }
    rig.stop().await;

    let (events, links, mismatched) = chain_counts(&mut conn).await?;
    report.events = events;
    report.chain_links = links;
    for clinic in mismatched {
        report.problems.push(format!(
            "clinic {clinic}: the hash chain does not have exactly one link per event"
        ));
    }
    let codes: Vec<String> = sqlx::query_scalar("SELECT code FROM clinic_codes ORDER BY code")
        .fetch_all(&mut conn)
        .await?;
    report.clinics_checked = codes.len();
    for code in &codes {
        eprintln!("  clinic verify / replay --check: {code}");
        for check in [
            &["verify", "--clinic", code.as_str()][..],
            &["replay", "--clinic", code.as_str(), "--check"][..],
        ] {
            if let Err(e) = rig.clinic.run(&rig.db_url, check, &[]).await {
                report
                    .problems
                    .push(format!("clinic {}: {e}", check.join(" ")));
            }
        }
    }

    eprintln!("== read models against a rebuild from zero");
    let live = snapshot(&mut conn).await?;
    report.read_model_tables = live.len();
    report.read_model_rows = live.values().map(Vec::len).sum();
    rig.clinic.run(&rig.db_url, &["rebuild"], &[]).await?;
    let rebuilt = snapshot(&mut conn).await?;
    report.rebuild_differences = differences(&live, &rebuilt);
    for diff in &report.rebuild_differences {
        report.problems.push(format!(
            "rm.{} differs from its rebuild ({} live rows, {} rebuilt)",
            diff.table, diff.live_rows, diff.rebuilt_rows
        ));
    }
    for panic in rig.panics() {
        report.problems.push(panic);
    }
    Ok(report)
}

/// Strikes the faults at their times; returns what happened.
async fn inject(
    rig: &mut Rig,
    ctx: &Ctx,
    started: Instant,
    duration: Duration,
    pg: &PgControl,
) -> Result<Vec<Fault>> {
    let at = |fraction: f64| started + duration.mul_f64(fraction);
    let since = |t: Instant| t.duration_since(started).as_secs_f64();
    let mut faults = Vec::new();

    tokio::time::sleep_until(at(0.15).into()).await;
    let struck = Instant::now();
    eprintln!("  {:5.1} s: kill -9 clinic serve", since(struck));
    if let Some(server) = rig.server.take() {
        server.kill9().await;
    }
    rig.start_server().await?;
    faults.push(Fault {
        fault: "kill -9 of clinic serve (restarted at once, same port)".into(),
        at_seconds: since(struck),
        back_after_seconds: struck.elapsed().as_secs_f64(),
    });

    tokio::time::sleep_until(at(0.35).into()).await;
    let struck = Instant::now();
    eprintln!("  {:5.1} s: kill -9 of clinic work #1", since(struck));
    if let Some(mut worker) = rig.workers[0].take() {
        harness::kill9(&mut worker).await;
    }
    // The survivor takes the dead worker's leases: every projection moves on while it is
    // alone (its position read a second after the kill and again before the restart).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alone = projection_positions(ctx).await;
    tokio::time::sleep_until(at(0.46).into()).await;
    let later = projection_positions(ctx).await;
    let stalled: Vec<String> = alone
        .iter()
        .filter(|(name, position)| later.get(*name).is_none_or(|p| p <= *position))
        .map(|(name, position)| format!("{name} at {position}"))
        .collect();
    if alone.is_empty() || !stalled.is_empty() {
        bail!("with one clinic work left, these projections did not move: {stalled:?} (read {alone:?}, then {later:?})");
    }
    eprintln!(
        "  {:5.1} s: with one worker, every projection moved on: {alone:?} -> {later:?}",
        since(Instant::now())
    );
    tokio::time::sleep_until(at(0.47).into()).await;
    rig.start_worker(0)?;
    faults.push(Fault {
        fault: "kill -9 of one of two clinic work (restarted later; the other took over)".into(),
        at_seconds: since(struck),
        back_after_seconds: struck.elapsed().as_secs_f64(),
    });

    tokio::time::sleep_until(at(0.60).into()).await;
    let struck = Instant::now();
    eprintln!("  {:5.1} s: {PG_RESTART}", since(struck));
    shell(&pg.restart).await?;
    faults.push(Fault {
        fault: PG_RESTART.into(),
        at_seconds: since(struck),
        back_after_seconds: struck.elapsed().as_secs_f64(),
    });

    tokio::time::sleep_until(at(0.75).into()).await;
    let struck = Instant::now();
    eprintln!("  {:5.1} s: {PG_STOP}", since(struck));
    shell(&pg.stop).await?;
    tokio::time::sleep(PG_DOWN).await;
    shell(&pg.start).await?;
    faults.push(Fault {
        fault: PG_STOP.into(),
        at_seconds: since(struck),
        back_after_seconds: struck.elapsed().as_secs_f64(),
    });
    Ok(faults)
}

/// Each projection's position, from `GET /v1/ops/projections` (empty if it did not answer).
async fn projection_positions(ctx: &Ctx) -> BTreeMap<String, i64> {
    let reply = ctx
        .api
        .get("/v1/ops/projections", &ctx.fixture.platform())
        .await;
    reply
        .body
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["position"].as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `command` with `sh -c`; an error if it fails.
async fn shell(command: &str) -> Result<()> {
    let output = tokio::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "{command}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Reads `GET /v1/patients?limit=1` every [`PROBE_EVERY`] until `deadline`.
async fn probe(api: &Api, token: &str, started: Instant, deadline: Instant) -> Vec<Probe> {
    let mut probes = Vec::new();
    let url = api.url("/v1/patients?limit=1");
    while Instant::now() < deadline {
        let sent = Instant::now();
        let answer = api
            .http()
            .get(&url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let (status, problem_json, retry_after) = match answer {
            Ok(answer) => {
                let header = |name: &str| {
                    answer
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let problem = header("content-type").starts_with("application/problem+json");
                let retry = !header("retry-after").is_empty();
                let status = answer.status().as_u16();
                let _ = answer.bytes().await;
                (status, problem, retry)
            }
            Err(_) => (0, false, false),
        };
        probes.push(Probe {
            at_seconds: sent.duration_since(started).as_secs_f64(),
            ms: sent.elapsed().as_secs_f64() * 1000.0,
            status,
            problem_json,
            retry_after,
        });
        tokio::time::sleep(PROBE_EVERY).await;
    }
    probes
}

/// The probe's answers from the start of `fault` to the first 200 after it was over.
fn outage(probes: &[Probe], faults: &[Fault], fault: &str) -> Outage {
    let Some(restart) = faults.iter().find(|f| f.fault == fault) else {
        return Outage {
            fault: fault.into(),
            ..Outage::default()
        };
    };
    let (from, back) = (
        restart.at_seconds,
        restart.at_seconds + restart.back_after_seconds,
    );
    let recovered = probes
        .iter()
        .find(|p| p.at_seconds >= back && p.status == 200)
        .map(|p| p.at_seconds);
    let until = recovered.unwrap_or(f64::INFINITY);
    let mut outage = Outage {
        fault: fault.into(),
        recovered_after_seconds: recovered.map(|t| (t - back).max(0.0)),
        ..Outage::default()
    };
    for p in probes
        .iter()
        .filter(|p| p.at_seconds >= from && p.at_seconds < until)
    {
        outage.answers += 1;
        outage.slowest_ms = outage.slowest_ms.max(p.ms);
        match p.status {
            200 => {}
            503 if p.problem_json && p.retry_after && p.ms < OUTAGE_ANSWER_LIMIT_MS => {
                outage.answered_503 += 1
            }
            status => outage.wrong.push(format!(
                "at {:.2} s: HTTP {status} in {:.0} ms (problem+json {}, Retry-After {})",
                p.at_seconds, p.ms, p.problem_json, p.retry_after
            )),
        }
    }
    outage
}

/// The answers around `outage` were 200s or fast 503s, and 200s came back; `must_see_503`:
/// the database was away long enough that the probe must have met it.
fn check_outage(outage: &Outage, must_see_503: bool, problems: &mut Vec<String>) {
    let fault = &outage.fault;
    for wrong in &outage.wrong {
        problems.push(format!(
            "{fault}: not a 200 or a fast 503 problem+json: {wrong}"
        ));
    }
    if must_see_503 && outage.answered_503 == 0 {
        problems.push(format!(
            "{fault}: the probe met no 503: the outage was not observed"
        ));
    }
    match outage.recovered_after_seconds {
        Some(s) if s <= RECOVERY_LIMIT_SECONDS => {}
        Some(s) => problems.push(format!(
            "{fault}: the service answered 200 again only {s:.1} s after PostgreSQL was back"
        )),
        None => problems.push(format!("{fault}: the service never answered 200 again")),
    }
}

fn write_journal(path: &Path, accepted: &[Accepted]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = Vec::new();
    for a in accepted {
        out.extend(serde_json::to_vec(a)?);
        out.push(b'\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// The accepted commands the store does not hold as answered: the event at the answered
/// `position` names the clinic, and the stream `{clinic}:{id}` must hold its event `version`
/// at that position or before (a command that writes several streams, such as a clinic's
/// registration with its first admin, answers the position of its last event). One query
/// for all of them; positions answered twice are listed too.
async fn lost(conn: &mut PgConnection, accepted: &[Accepted]) -> Result<Vec<String>> {
    let positions: Vec<i64> = accepted.iter().map(|a| a.position).collect();
    let ids: Vec<String> = accepted.iter().map(|a| a.id.to_string()).collect();
    let versions: Vec<i64> = accepted.iter().map(|a| a.version).collect();
    let missing: Vec<(i64, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT a.position, a.id, a.version, s.position
           FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS a(position, id, version)
           LEFT JOIN events ans ON ans.position = a.position
           LEFT JOIN events s ON s.aggregate_id = ans.tenant_id::text || ':' || a.id
                             AND s.sequence = a.version
          WHERE s.position IS NULL OR s.position > a.position
          ORDER BY a.position",
    )
    .bind(&positions)
    .bind(&ids)
    .bind(&versions)
    .fetch_all(conn)
    .await?;
    let mut lost: Vec<String> = missing
        .into_iter()
        .map(|(position, id, version, stored)| match stored {
            None => format!("{id} v{version} (answered at position {position}) is not stored"),
            Some(at) => {
                format!("{id} v{version} is at position {at}, after the answered {position}")
            }
        })
        .collect();
    let mut sorted: Vec<(i64, &str)> = accepted
        .iter()
        .map(|a| (a.position, a.path.as_str()))
        .collect();
    sorted.sort_unstable();
    for pair in sorted.windows(2).filter(|w| w[0].0 == w[1].0) {
        lost.push(format!(
            "position {} was answered for two commands: {} and {}",
            pair[0].0, pair[0].1, pair[1].1
        ));
    }
    Ok(lost)
}

/// Events, chain links, and the clinics whose chain does not have one link per event (with
/// links numbered 1..=n).
async fn chain_counts(conn: &mut PgConnection) -> Result<(i64, i64, Vec<String>)> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "WITH e AS (SELECT tenant_id, count(*) AS events FROM events GROUP BY tenant_id),
              c AS (SELECT clinic_id, count(*) AS links, max(link) AS top
                      FROM audit_chain GROUP BY clinic_id)
         SELECT coalesce(e.tenant_id, c.clinic_id)::text, coalesce(e.events, 0),
                coalesce(c.links, 0), coalesce(c.top, 0)
           FROM e FULL JOIN c ON c.clinic_id = e.tenant_id",
    )
    .fetch_all(conn)
    .await?;
    let events = rows.iter().map(|r| r.1).sum();
    let links = rows.iter().map(|r| r.2).sum();
    let mismatched = rows
        .into_iter()
        .filter(|(_, events, links, top)| events != links || links != top)
        .map(|(clinic, ..)| clinic)
        .collect();
    Ok((events, links, mismatched))
}

/// Every row of every table in schema `rm`, as text, sorted.
async fn snapshot(conn: &mut PgConnection) -> Result<BTreeMap<String, Vec<String>>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'rm' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut all = BTreeMap::new();
    for table in tables {
        let sql = format!(
            "SELECT r::text FROM rm.\"{}\" r ORDER BY 1",
            table.replace('"', "\"\"")
        );
        let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut *conn).await?;
        all.insert(table, rows);
    }
    Ok(all)
}

/// The tables whose rows differ (as multisets), with up to three rows of each side.
fn differences(
    live: &BTreeMap<String, Vec<String>>,
    rebuilt: &BTreeMap<String, Vec<String>>,
) -> Vec<TableDiff> {
    let empty = Vec::new();
    let tables: std::collections::BTreeSet<&String> = live.keys().chain(rebuilt.keys()).collect();
    let mut diffs = Vec::new();
    for table in tables {
        let a = live.get(table).unwrap_or(&empty);
        let b = rebuilt.get(table).unwrap_or(&empty);
        if a == b {
            continue;
        }
        let (only_a, only_b) = sorted_difference(a, b);
        diffs.push(TableDiff {
            table: table.clone(),
            live_rows: a.len(),
            rebuilt_rows: b.len(),
            only_live: only_a.into_iter().take(3).collect(),
            only_rebuilt: only_b.into_iter().take(3).collect(),
        });
    }
    diffs
}

/// The rows of `a` not in `b` and of `b` not in `a`, both sorted (as multisets).
fn sorted_difference(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(x.clone());
                i += 1;
            }
            (Some(_), Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (Some(x), None) => {
                only_a.push(x.clone());
                i += 1;
            }
            (None, Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (only_a, only_b)
}

fn print(report: &FaultsReport) {
    println!(
        "\n# clinic-bench --faults ({:.0} s of mixed load)\n",
        report.seconds
    );
    println!("| fault | at | back after |");
    println!("| --- | ---: | ---: |");
    for f in &report.faults {
        println!(
            "| {} | {:.1} s | {:.2} s |",
            f.fault, f.at_seconds, f.back_after_seconds
        );
    }
    if let Some(m) = &report.mixed {
        println!(
            "\nload: {} commands accepted ({:.0}/s), {} reads ({:.0}/s); {} answered 503 with Retry-After; {} failed (by status, 0 = no answer: {:?})",
            m.commands.accepted, m.commands.per_second, m.reads.accepted, m.reads.per_second,
            m.commands.not_yet + m.reads.not_yet,
            report.failed_requests, report.failed_by_status
        );
    }
    for o in &report.outages {
        println!(
            "{}: {} probe answers, {} were 503 problem+json with Retry-After, slowest {:.0} ms; 200 again {} after",
            o.fault,
            o.answers,
            o.answered_503,
            o.slowest_ms,
            o.recovered_after_seconds
                .map(|s| format!("{s:.2} s"))
                .unwrap_or("never".into())
        );
    }
    println!(
        "accepted commands: {} (journal {}), lost: {}",
        report.accepted_commands,
        report.journal.display(),
        report.lost.len()
    );
    if let Some(v) = &report.verification {
        println!(
            "read models: {} patients and {} appointments checked ({} with an unanswered last change), {} missing",
            v.patients,
            v.appointments,
            v.uncertain,
            v.missing.len()
        );
    }
    println!(
        "store: {} events, {} chain links; {} clinics verified and replayed",
        report.events, report.chain_links, report.clinics_checked
    );
    println!(
        "rebuild: {} tables, {} rows, {} tables differ",
        report.read_model_tables,
        report.read_model_rows,
        report.rebuild_differences.len()
    );
    if report.problems.is_empty() {
        println!("\nPASSED: nothing lost, nothing applied twice");
    } else {
        println!("\nFAILED:");
        for p in &report.problems {
            println!("- {p}");
        }
    }
}
