//! One run, phase by phase: set up, raw baseline, commands and the mixed load on a small
//! store, then seed the big store, rebuild, and measure reads and commands on it; check the
//! ledger; report. Whatever happens (error, Ctrl-C), the server is stopped and the fresh
//! database dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::client::Api;
use crate::error::{BenchError, Result};
use crate::harness::{log_tail, ClinicBin, Database, Server};
use crate::report::{Rebuild, Report};
use crate::scenarios::{commands, mixed, reads, verify, Ctx};
use crate::{bail, fixture, raw, seed, Args, Plan};

pub(crate) const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server this run started (if any) and the peak RSS of every server it started.
struct Session {
    clinic: ClinicBin,
    db: Database,
    log: PathBuf,
    server: Option<Server>,
    /// The port of the first server, reused by a restart.
    port: u16,
    peak_rss_kib: u64,
}

impl Session {
    async fn start(&mut self) -> Result<String> {
        match self
            .clinic
            .serve(&self.db.url, &self.log, self.port, &[])
            .await
        {
            Ok(server) => {
                self.port = server.port;
                let base = server.base.clone();
                self.server = Some(server);
                Ok(base)
            }
            Err(e) => Err(BenchError(format!("{e}\n{}", log_tail(&self.log)))),
        }
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.peak_rss_kib = self.peak_rss_kib.max(server.stop().await);
        }
    }

    fn sample_rss(&mut self) {
        if let Some(server) = self.server.as_mut() {
            self.peak_rss_kib = self.peak_rss_kib.max(server.sample_rss());
        }
    }
}

pub async fn main(args: Args, plan: Plan) -> Result<bool> {
    let clinic = ClinicBin::locate(args.clinic_bin.clone())?;
    let db = match &args.url {
        Some(_) => match &args.database_url {
            Some(url) => Database::existing(url),
            None => bail!("--url needs --database-url (the service's database)"),
        },
        None => {
            let admin = args
                .database_url
                .clone()
                .unwrap_or(DEFAULT_ADMIN_URL.into());
            Database::fresh(&admin).await?
        }
    };
    let log = std::env::temp_dir().join(format!("clinic-bench-{}.log", std::process::id()));
    let mut session = Session {
        clinic,
        db,
        log,
        server: None,
        port: 0,
        peak_rss_kib: 0,
    };
    let outcome = tokio::select! {
        outcome = phases(&mut session, &args, &plan) => outcome,
        _ = tokio::signal::ctrl_c() => Err(BenchError("interrupted".into())),
    };
    session.stop().await;
    if args.url.is_some() {
        let _ = raw::cleanup(&session.db.url).await;
    }
    if args.keep_database {
        eprintln!("kept database {}", session.db.name);
    } else {
        session.db.drop_now().await;
    }
    let report = outcome?;
    report.print();
    let path = report.save(&args.results_dir)?;
    eprintln!("results: {}", path.display());
    eprintln!("server log: {}", session.log.display());
    Ok(report.passed())
}

async fn phases(session: &mut Session, args: &Args, plan: &Plan) -> Result<Report> {
    let started = Instant::now();
    let mut report = Report::begin(args, plan, &session.db.url).await;
    let db_url = session.db.url.clone();
    eprintln!(
        "== setup ({} database {})",
        if args.url.is_some() {
            "existing"
        } else {
            "fresh"
        },
        session.db.name
    );
    fixture::create_platform_admin(&session.clinic, &db_url).await?;
    let base = match &args.url {
        Some(url) => url.clone(),
        None => session.start().await?,
    };
    let api = Api::new(&base)?;
    let fixture = Arc::new(fixture::build(&api, plan.clinics, plan.doctors).await?);
    let ctx = Ctx {
        api: api.clone(),
        fixture: fixture.clone(),
        ledger: Arc::default(),
    };
    let mut conn = crate::harness::connect(&db_url).await?;
    let work: Vec<uuid::Uuid> = fixture.work().iter().map(|c| c.id).collect();
    seed::fill(&mut conn, &work, plan.base_events).await?;
    report.wait_caught_up(&ctx, plan.wait_seconds).await;
    report.store_events_small = seed::event_count(&mut conn).await?;

    eprintln!("== raw baseline: read a stream + append, in one transaction");
    raw::prepare(&db_url).await?;
    for &clients in &plan.clients {
        report
            .raw
            .push(raw::run(&db_url, clients, Plan::seconds(plan.command_seconds)).await?);
    }
    raw::cleanup(&db_url).await?;

    eprintln!(
        "== commands ({} events in the store)",
        report.store_events_small
    );
    report.commands = commands::run(&ctx, &plan.clients, Plan::seconds(plan.command_seconds)).await;
    session.sample_rss();
    eprintln!(
        "== mixed load: commands and reads at {} + {} clients",
        plan.mixed_clients, plan.mixed_clients
    );
    report.mixed =
        Some(mixed::run(&ctx, plan.mixed_clients, Plan::seconds(plan.mixed_seconds)).await);
    session.sample_rss();
    report.wait_caught_up(&ctx, plan.wait_seconds).await;

    eprintln!(
        "== seeding: {} + {} patients, store to {} events",
        plan.small_patients, plan.large_patients, plan.events
    );
    let restart = args.url.is_none();
    if restart {
        session.stop().await;
    }
    let seeding = Instant::now();
    for (clinic, patients) in [
        (fixture.small(), plan.small_patients),
        (fixture.large(), plan.large_patients),
    ] {
        let doctors: Vec<uuid::Uuid> = clinic.doctors.iter().map(|d| d.id).collect();
        let spec = seed::ClinicSeed {
            clinic: clinic.id,
            patients,
            doctors: &doctors,
            future: 100,
        };
        seed::clinic(&mut conn, &spec).await?;
    }
    seed::fill(&mut conn, &work, plan.events).await?;
    report.seed_seconds = seed::timed_analyze(&mut conn, seeding).await?;
    report.store_events_big = seed::event_count(&mut conn).await?;
    eprintln!(
        "  {} events in the store after {:.1} s",
        report.store_events_big, report.seed_seconds
    );
    if restart {
        // A failed rebuild fails the run, but the rest is still measured: the server's own
        // workers then build the read models from the events.
        match rebuild(session, &db_url, report.store_events_big).await {
            Ok(r) => report.rebuild = Some(r),
            Err(e) => {
                eprintln!("  rebuild failed: {e}");
                report.problems.push(format!("clinic rebuild failed: {e}"));
            }
        }
        session.start().await?;
    }
    fixture.refresh_tokens(&api).await?;
    report.catch_up_seconds = report.wait_caught_up(&ctx, plan.wait_seconds * 5.0).await;
    eprintln!(
        "  projections caught up {:.1} s after the server started",
        report.catch_up_seconds
    );

    eprintln!(
        "== reads: small clinic ({} patients) vs large clinic ({})",
        plan.small_patients, plan.large_patients
    );
    let read_time = Plan::seconds(plan.read_seconds);
    for clients in [1, 32] {
        let (small, large) =
            reads::at_both(&ctx, fixture.small(), fixture.large(), clients, read_time).await;
        report.reads_small.extend(small);
        report.reads_large.extend(large);
        report
            .reads_small
            .push(reads::healthz(&ctx, clients, read_time).await);
        session.sample_rss();
    }
    eprintln!(
        "== commands with {} events in the store",
        report.store_events_big
    );
    report.big_store_create = Some(
        commands::create_load(
            &ctx,
            "POST /v1/patients (big store)",
            1,
            Plan::seconds(plan.command_seconds),
        )
        .await,
    );
    report.audit_stream = Some(reads::audit_stream(&ctx, fixture.large()).await?);
    session.sample_rss();

    eprintln!("== checking every accepted command against the read models");
    fixture.refresh_tokens(&api).await?;
    report.verification = verify::run(&ctx, Plan::seconds(plan.wait_seconds)).await?;
    session.sample_rss();
    session.stop().await;
    report.peak_rss_mib = (session.peak_rss_kib > 0).then(|| session.peak_rss_kib as f64 / 1024.0);
    report.failures = api.failures.count();
    report.failure_examples = api.failures.examples();
    report.finish(started);
    Ok(report)
}

/// `clinic rebuild` of every read model, timed from outside (server stopped).
async fn rebuild(session: &Session, db_url: &str, events: i64) -> Result<Rebuild> {
    eprintln!("== clinic rebuild ({events} events)");
    let started = Instant::now();
    let output = session.clinic.run(db_url, &["rebuild"], &[]).await?;
    let seconds = started.elapsed().as_secs_f64();
    eprint!("{output}");
    eprintln!(
        "  rebuild: {events} events in {seconds:.1} s = {:.0} events/s",
        events as f64 / seconds
    );
    Ok(Rebuild {
        events,
        seconds,
        events_per_second: events as f64 / seconds.max(1e-9),
        output,
    })
}
