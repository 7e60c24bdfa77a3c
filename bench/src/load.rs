//! A closed-loop load generator: `clients` tasks each send one request after the other for
//! `duration`, and the latencies of the accepted ones give the percentiles.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Outcome;
use crate::cpu;

/// What one measurement gave.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub name: String,
    pub clients: usize,
    pub seconds: f64,
    pub accepted: u64,
    pub refused: u64,
    pub not_yet: u64,
    pub failed: u64,
    /// Accepted requests per second.
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The machine's CPU time per accepted request, by who used it (`None` where two loads
    /// ran at once and shared it).
    pub cpu: Option<cpu::PerRequest>,
}

/// Percentiles of a set of latencies (milliseconds).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut ms: Vec<f64>) -> Percentiles {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if ms.is_empty() {
                return 0.0;
            }
            let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            ms[rank - 1]
        };
        Percentiles {
            samples: ms.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    refused: u64,
    not_yet: u64,
    failed: u64,
}

/// Runs `op(client, iteration)` from `clients` tasks for `duration`.
pub async fn run<F, Fut>(name: &str, clients: usize, duration: Duration, op: F) -> Stats
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let op = Arc::new(op);
    let cpu_before = cpu::Sample::now();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut iteration = 0;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let outcome = op(client, iteration).await;
                    let ms = sent.elapsed().as_secs_f64() * 1000.0;
                    iteration += 1;
                    match outcome {
                        Outcome::Accepted => tally.latencies.push(ms),
                        Outcome::Refused => tally.refused += 1,
                        Outcome::NotYet => tally.not_yet += 1,
                        Outcome::Failed => {
                            tally.failed += 1;
                            // A server that is down refuses at once: do not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Outcome::Skipped => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        if let Ok(tally) = task.await {
            all.latencies.extend(tally.latencies);
            all.refused += tally.refused;
            all.not_yet += tally.not_yet;
            all.failed += tally.failed;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let accepted = all.latencies.len() as u64;
    let cpu = cpu_before.per_request_until_now(accepted);
    let p = Percentiles::of(all.latencies);
    let stats = Stats {
        name: name.to_owned(),
        clients,
        seconds,
        accepted,
        refused: all.refused,
        not_yet: all.not_yet,
        failed: all.failed,
        per_second: accepted as f64 / seconds.max(1e-9),
        p50_ms: p.p50_ms,
        p99_ms: p.p99_ms,
        max_ms: p.max_ms,
        cpu: Some(cpu),
    };
    eprintln!(
        "  {:<34} {:>2} clients: {:>8.1}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  CPU/req {:.3} ms \
         (client {:.3}, server {:.3}, postgres {:.3}; {:.0} % idle){}",
        stats.name,
        clients,
        stats.per_second,
        stats.p50_ms,
        stats.p99_ms,
        cpu.total_ms(),
        cpu.client_ms,
        cpu.server_ms,
        cpu.postgres_ms,
        cpu.idle_percent,
        if stats.refused + stats.failed > 0 {
            format!("  ({} refused, {} failed)", stats.refused, stats.failed)
        } else {
            String::new()
        }
    );
    stats
}
