//! The results of a run: the JSON written to `bench/results/<timestamp>.json`, the table
//! printed at the end, and every figure as a ratio to its baseline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::load::Stats;
use crate::scenarios::mixed::MixedStats;
use crate::scenarios::reads::StreamStats;
use crate::scenarios::verify::Verification;
use crate::{Args, Plan};

#[derive(Debug, Clone, Serialize)]
pub struct Rebuild {
    pub events: i64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub output: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub load_average_before: String,
    pub load_average_after: String,
    pub postgres: String,
    pub git_commit: String,
}

/// One figure against its baseline (`ratio = value / baseline`).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub figure: String,
    pub value: f64,
    pub baseline_name: String,
    pub baseline: f64,
    pub ratio: f64,
    pub target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: String,
    pub machine: Machine,
    pub args: Args,
    pub plan: Plan,
    pub store_events_small: i64,
    pub raw: Vec<Stats>,
    pub commands: Vec<Stats>,
    pub mixed: Option<MixedStats>,
    pub seed_seconds: f64,
    pub store_events_big: i64,
    pub rebuild: Option<Rebuild>,
    pub catch_up_seconds: f64,
    pub reads_small: Vec<Stats>,
    pub reads_large: Vec<Stats>,
    pub big_store_create: Option<Stats>,
    pub audit_stream: Option<StreamStats>,
    pub peak_rss_mib: Option<f64>,
    pub failures: u64,
    pub failure_examples: Vec<String>,
    pub verification: Verification,
    /// What went wrong without stopping the run (projections that did not catch up).
    pub problems: Vec<String>,
    pub ratios: Vec<Ratio>,
    pub total_seconds: f64,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

async fn postgres_version(url: &str) -> String {
    match crate::harness::connect(url).await {
        Ok(mut conn) => sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut conn)
            .await
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

impl Report {
    pub async fn begin(args: &Args, plan: &Plan, db_url: &str) -> Report {
        Report {
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: Machine {
                cpus: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0),
                load_average_before: load_average(),
                load_average_after: String::new(),
                postgres: postgres_version(db_url).await,
                git_commit: git_commit(),
            },
            args: args.clone(),
            plan: plan.clone(),
            store_events_small: 0,
            raw: Vec::new(),
            commands: Vec::new(),
            mixed: None,
            seed_seconds: 0.0,
            store_events_big: 0,
            rebuild: None,
            catch_up_seconds: 0.0,
            reads_small: Vec::new(),
            reads_large: Vec::new(),
            big_store_create: None,
            audit_stream: None,
            peak_rss_mib: None,
            failures: 0,
            failure_examples: Vec::new(),
            verification: Verification::default(),
            problems: Vec::new(),
            ratios: Vec::new(),
            total_seconds: 0.0,
        }
    }

    pub fn finish(&mut self, started: Instant) {
        self.machine.load_average_after = load_average();
        self.total_seconds = started.elapsed().as_secs_f64();
        self.ratios = self.compute_ratios();
    }

    /// The smoke test: no 5xx or transport error, every accepted command in the read models.
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.verification.missing.is_empty() && self.problems.is_empty()
    }

    /// Waits for the projections (up to `seconds`); a timeout is a problem of the run, not
    /// its end. Returns the seconds waited.
    pub async fn wait_caught_up(&mut self, ctx: &crate::scenarios::Ctx, seconds: f64) -> f64 {
        let wait = Plan::seconds(seconds);
        match crate::scenarios::verify::caught_up(ctx, wait).await {
            Ok(waited) => waited,
            Err(e) => {
                eprintln!("  {e}");
                self.problems.push(e.to_string());
                seconds
            }
        }
    }

    fn compute_ratios(&self) -> Vec<Ratio> {
        let mut out = Vec::new();
        let mut push =
            |figure: String, value: f64, baseline_name: String, baseline: f64, target: &str| {
                out.push(Ratio {
                    ratio: if baseline > 0.0 {
                        value / baseline
                    } else {
                        f64::NAN
                    },
                    figure,
                    value,
                    baseline_name,
                    baseline,
                    target: target.to_owned(),
                })
            };
        for c in &self.commands {
            let Some(raw) = self.raw.iter().find(|r| r.clients == c.clients) else {
                continue;
            };
            let headline = c.name == "POST /v1/patients" && c.clients == 32;
            let figures = [
                ("req/s", c.per_second, "tx/s", raw.per_second, ">= 0.60"),
                ("p99 ms", c.p99_ms, "p99 ms", raw.p99_ms, "<= 2.0"),
            ];
            for (unit, value, raw_unit, raw_value, target) in figures {
                push(
                    format!("{} {unit} @{}", c.name, c.clients),
                    value,
                    format!("raw {raw_unit} @{}", raw.clients),
                    raw_value,
                    if headline { target } else { "" },
                );
            }
        }
        if let (Some(big), Some(small)) = (
            &self.big_store_create,
            self.commands
                .iter()
                .find(|c| c.name == "POST /v1/patients" && c.clients == 1),
        ) {
            push(
                format!("create p50 ms, {} events", self.store_events_big),
                big.p50_ms,
                format!("create p50 ms, {} events", self.store_events_small),
                small.p50_ms,
                "<= 1.3",
            );
        }
        for large in &self.reads_large {
            let small_name = large.name.replace("(large)", "(small)");
            if let Some(small) = self
                .reads_small
                .iter()
                .find(|s| s.name == small_name && s.clients == large.clients)
            {
                push(
                    format!("{} p50 ms @{}", large.name, large.clients),
                    large.p50_ms,
                    format!("small p50 ms @{}", small.clients),
                    small.p50_ms,
                    "<= 1.3",
                );
            }
        }
        if let Some(create32) = self
            .commands
            .iter()
            .find(|c| c.name == "POST /v1/patients" && c.clients == 32)
        {
            for read in self.reads_large.iter().filter(|r| r.clients == 32) {
                push(
                    format!("{} req/s @32", read.name),
                    read.per_second,
                    "create req/s @32".into(),
                    create32.per_second,
                    ">= 3",
                );
            }
        }
        if let Some(m) = &self.mixed {
            push(
                "projection lag p99 ms".into(),
                m.lag.p99_ms,
                "target 100 ms".into(),
                100.0,
                "<= 1",
            );
            push(
                "read-your-writes p50 ms".into(),
                m.read_your_writes.p50_ms,
                "target 50 ms".into(),
                50.0,
                "<= 1",
            );
        }
        if let Some(r) = &self.rebuild {
            push(
                "rebuild events/s".into(),
                r.events_per_second,
                "target 50k events/s".into(),
                50_000.0,
                ">= 1",
            );
        }
        if let Some(s) = &self.audit_stream {
            push(
                "audit stream events/s".into(),
                s.events_per_second,
                "target 100k events/s".into(),
                100_000.0,
                ">= 1",
            );
        }
        if let Some(rss) = self.peak_rss_mib {
            push(
                "server peak RSS MiB".into(),
                rss,
                "target 150 MB".into(),
                150_000_000.0 / 1_048_576.0,
                "<= 1",
            );
        }
        out
    }

    pub fn print(&self) {
        println!(
            "\nclinic-bench {} (commit {}, {} CPUs, load {} -> {}), {:.0} s",
            self.started_at,
            self.machine.git_commit,
            self.machine.cpus,
            self.machine.load_average_before,
            self.machine.load_average_after,
            self.total_seconds
        );
        println!("\n| figure | clients | per s | p50 ms | p99 ms | refused | failed | CPU ms per request: client / server / PostgreSQL / other (idle %) |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        let mut rows: Vec<&Stats> = self.raw.iter().chain(&self.commands).collect();
        rows.extend(self.mixed.iter().flat_map(|m| [&m.commands, &m.reads]));
        rows.extend(
            self.reads_small
                .iter()
                .chain(&self.reads_large)
                .chain(&self.big_store_create),
        );
        for s in rows {
            let cpu = s.cpu.map_or_else(String::new, |c| {
                format!(
                    "{:.3} / {:.3} / {:.3} / {:.3} ({:.0} %)",
                    c.client_ms, c.server_ms, c.postgres_ms, c.other_ms, c.idle_percent
                )
            });
            println!(
                "| {} | {} | {:.1} | {:.2} | {:.2} | {} | {} | {cpu} |",
                s.name, s.clients, s.per_second, s.p50_ms, s.p99_ms, s.refused, s.failed
            );
        }
        println!();
        println!(
            "store: {} events for the commands, {} after seeding ({:.1} s)",
            self.store_events_small, self.store_events_big, self.seed_seconds
        );
        if let Some(r) = &self.rebuild {
            println!(
                "clinic rebuild: {} events in {:.1} s = {:.0} events/s",
                r.events, r.seconds, r.events_per_second
            );
        }
        println!(
            "projections caught up {:.1} s after the restart",
            self.catch_up_seconds
        );
        if let Some(m) = &self.mixed {
            println!("projection lag (commit to visible): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes, {} lost); /v1/ops/projections lag_ms max {}",
                m.lag.p50_ms, m.lag.p99_ms, m.lag.max_ms, m.lag.samples, m.lag_lost, m.ops_max_lag_ms);
            println!("read-your-writes (X-Min-Position): p50 {:.1} ms, p99 {:.1} ms ({} reads, {} answered 503 Retry-After)",
                m.read_your_writes.p50_ms, m.read_your_writes.p99_ms, m.read_your_writes.samples, m.read_your_writes_503);
        }
        if let Some(s) = &self.audit_stream {
            println!(
                "audit export: {} events, {:.1} MiB in {:.2} s = {:.0} events/s",
                s.events,
                s.bytes as f64 / 1_048_576.0,
                s.seconds,
                s.events_per_second
            );
        }
        if let Some(rss) = self.peak_rss_mib {
            println!("server peak RSS (VmHWM): {rss:.1} MiB");
        }
        println!("\n| figure | value | baseline | baseline value | ratio | target |");
        println!("| --- | ---: | --- | ---: | ---: | --- |");
        for r in &self.ratios {
            println!(
                "| {} | {:.2} | {} | {:.2} | {:.2} | {} |",
                r.figure, r.value, r.baseline_name, r.baseline, r.ratio, r.target
            );
        }
        println!("\nsmoke test: {} failures (5xx or transport), {} patients and {} appointments checked, {} missing: {}",
            self.failures, self.verification.patients, self.verification.appointments,
            self.verification.missing.len(), if self.passed() { "PASS" } else { "FAIL" });
        for example in self
            .problems
            .iter()
            .chain(&self.failure_examples)
            .chain(self.verification.missing.iter().take(10))
        {
            println!("  {example}");
        }
    }

    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let path = dir.join(format!("{stamp}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }
}
