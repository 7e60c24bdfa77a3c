//! `clinic-bench`: measures the clinic service from outside, as a new user would, in one run.
//!
//! ```text
//! cargo run --release -p clinic-bench            # full run (fresh database, ~15 minutes)
//! cargo run --release -p clinic-bench -- --quick # smoke test (< 2 minutes): fails on any
//!                                                # 5xx or a command missing from the read models
//! ```
//!
//! See `docs/performance.md` for what it measures and the figures of a full run.

mod client;
mod cpu;
mod error;
mod faults;
mod fixture;
mod harness;
mod load;
mod raw;
mod report;
mod run;
mod scenarios;
mod seed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "clinic-bench",
    about = "End-to-end benchmark of the clinic service"
)]
pub struct Args {
    /// Small sizes and short durations (< 2 minutes); CI's smoke test.
    #[arg(long)]
    pub quick: bool,
    /// Benchmark the service at this URL instead of starting `clinic serve` (then
    /// --database-url must name the service's own database: the raw baseline and the seeding
    /// run there, and nothing is dropped).
    #[arg(long)]
    pub url: Option<String>,
    /// PostgreSQL URL of an admin database, on which a fresh `clinic_bench_*` database is
    /// created and dropped. Default as the project: DATABASE_URL, else
    /// postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Client counts, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub clients: Option<Vec<usize>>,
    /// Seconds of each command and raw measurement (reads get half).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Patients of the large clinic.
    #[arg(long)]
    pub patients: Option<u64>,
    /// Events in the store for the large-store measurements.
    #[arg(long)]
    pub events: Option<i64>,
    /// Clinics (at least 3: a small one, a large one, and the ones taking commands).
    #[arg(long)]
    pub clinics: Option<usize>,
    /// Where the JSON results go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub results_dir: PathBuf,
    /// Keep the fresh database when the run ends (for a post-mortem); it is dropped otherwise.
    #[arg(long)]
    pub keep_database: bool,
    /// The `clinic` binary; default: `cargo build --release --bin clinic` and use it.
    #[arg(long)]
    pub clinic_bin: Option<PathBuf>,
    /// Instead of the benchmark: the mixed load with faults (kill -9 of the API, of one of
    /// two workers, a PostgreSQL restart), then checks that nothing was lost. `scripts/faults`
    /// runs it on a private cluster.
    #[arg(long)]
    pub faults: bool,
    /// Seconds of the load under faults.
    #[arg(long, default_value_t = 75.0)]
    pub faults_seconds: f64,
    /// A shell command that restarts the PostgreSQL server of --database-url (`--faults`).
    #[arg(long)]
    pub pg_restart_cmd: Option<String>,
    /// A shell command that stops that server (`--faults`: it stays down 5 s).
    #[arg(long)]
    pub pg_stop_cmd: Option<String>,
    /// A shell command that starts it again (`--faults`).
    #[arg(long)]
    pub pg_start_cmd: Option<String>,
}

/// Sizes and durations of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub clients: Vec<usize>,
    pub command_seconds: f64,
    pub read_seconds: f64,
    pub mixed_seconds: f64,
    pub mixed_clients: usize,
    pub small_patients: u64,
    pub large_patients: u64,
    /// Events in the store before the commands (the "10k store").
    pub base_events: i64,
    /// Events in the store after seeding (the "1M store").
    pub events: i64,
    pub clinics: usize,
    pub doctors: usize,
    /// How long to wait for the projections to catch up (five times that after a restart on
    /// the big store).
    pub wait_seconds: f64,
}

impl Plan {
    fn from_args(args: &Args) -> Plan {
        let quick = args.quick;
        let command_seconds = args.duration.unwrap_or(pick(quick, 1.5, 10.0));
        Plan {
            clients: args.clients.clone().unwrap_or(vec![1, 8, 32]),
            command_seconds,
            read_seconds: (command_seconds / 2.0).max(0.5),
            mixed_seconds: pick(quick, 3.0, 15.0),
            mixed_clients: 8,
            small_patients: pick(quick, 200, 1_000),
            large_patients: args.patients.unwrap_or(pick(quick, 2_000, 100_000)),
            base_events: pick(quick, 2_000, 10_000),
            events: args.events.unwrap_or(pick(quick, 8_000, 1_000_000)),
            clinics: args.clinics.unwrap_or(pick(quick, 3, 10)).max(3),
            doctors: pick(quick, 2, 4),
            wait_seconds: pick(quick, 30.0, 120.0),
        }
    }

    pub fn seconds(value: f64) -> Duration {
        Duration::from_secs_f64(value)
    }
}

/// The quick value or the full one.
fn pick<T>(quick: bool, quick_value: T, full_value: T) -> T {
    if quick {
        quick_value
    } else {
        full_value
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("clinic-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = Plan::from_args(&args);
    let outcome = if args.faults {
        runtime.block_on(faults::main(args))
    } else {
        runtime.block_on(run::main(args, plan))
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("clinic-bench: {e}");
            ExitCode::from(2)
        }
    }
}
