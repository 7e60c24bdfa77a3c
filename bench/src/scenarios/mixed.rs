//! The mixed load: commands and reads at the same time, with two probes beside them.
//!
//! - **Projection lag**: a probe creates a patient, then polls `GET /v1/patients/{id}` (no
//!   `X-Min-Position`) every 2 ms; commit-to-visible is the time from the command's answer to
//!   the first 200. A sampler also reads `lag_ms` of `GET /v1/ops/projections` (the age of
//!   the oldest unapplied event, from the events' timestamps) every 250 ms.
//! - **Read-your-writes**: a probe creates a patient and reads it back at once with
//!   `X-Min-Position: <position of the answer>`; a 503 with `Retry-After` is counted apart.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Serialize;

use crate::client::Outcome;
use crate::fixture::Role;
use crate::load::{self, Percentiles, Stats};
use crate::scenarios::commands::{book, create_patient};
use crate::scenarios::Ctx;

#[derive(Debug, Clone, Serialize)]
pub struct MixedStats {
    pub commands: Stats,
    pub reads: Stats,
    /// Commit (command answered) to visible in the read model.
    pub lag: Percentiles,
    /// Probes whose record never showed up within 30 s.
    pub lag_lost: u64,
    /// The largest `lag_ms` `/v1/ops/projections` reported during the load.
    pub ops_max_lag_ms: i64,
    /// Reads with `X-Min-Position` right after the command.
    pub read_your_writes: Percentiles,
    pub read_your_writes_503: u64,
}

pub async fn run(ctx: &Ctx, clients: usize, duration: Duration) -> MixedStats {
    let deadline = Instant::now() + duration;
    let writers = {
        let ctx = ctx.clone();
        load::run(
            "mixed: create + book",
            clients,
            duration,
            move |client, n| {
                let ctx = ctx.clone();
                async move {
                    let work = ctx.fixture.work();
                    let clinic = &work[client % work.len()];
                    if n % 2 == 0 {
                        create_patient(&ctx, clinic.index, Role::Receptionist, client, n)
                            .await
                            .outcome
                    } else {
                        book(&ctx, clinic, Role::Admin).await
                    }
                }
            },
        )
    };
    let readers = {
        let ctx = ctx.clone();
        load::run(
            "mixed: list patients",
            clients,
            duration,
            move |client, _| {
                let ctx = ctx.clone();
                async move {
                    let work = ctx.fixture.work();
                    let token = work[client % work.len()].admin.token();
                    ctx.api.get_outcome("/v1/patients?limit=20", &token).await
                }
            },
        )
    };
    let (mut commands, mut reads, (lag, lag_lost), (ryw, ryw_503), ops_max_lag_ms) = tokio::join!(
        writers,
        readers,
        lag_probe(ctx, deadline),
        ryw_probe(ctx, deadline),
        ops_sampler(ctx, deadline)
    );
    // Each load saw the CPU time of both: neither's share is its own.
    commands.cpu = None;
    reads.cpu = None;
    let stats = MixedStats {
        commands,
        reads,
        lag: Percentiles::of(lag),
        lag_lost,
        ops_max_lag_ms,
        read_your_writes: Percentiles::of(ryw),
        read_your_writes_503: ryw_503,
    };
    eprintln!(
        "  projection lag (commit to visible): p50 {:.1} ms, p99 {:.1} ms ({} probes, {} lost); ops lag_ms max {}",
        stats.lag.p50_ms, stats.lag.p99_ms, stats.lag.samples, stats.lag_lost, stats.ops_max_lag_ms
    );
    eprintln!(
        "  read-your-writes (X-Min-Position): p50 {:.1} ms, p99 {:.1} ms ({} reads, {} answered 503)",
        stats.read_your_writes.p50_ms,
        stats.read_your_writes.p99_ms,
        stats.read_your_writes.samples,
        stats.read_your_writes_503
    );
    stats
}

/// The probes act in the first work clinic, as its admin.
async fn probe_patient(ctx: &Ctx, n: u64) -> Option<(uuid::Uuid, i64)> {
    let clinic = ctx.fixture.work()[0].index;
    let reply = create_patient(ctx, clinic, Role::Admin, 99, n).await;
    Some((reply.id()?, reply.position())).filter(|_| reply.outcome == Outcome::Accepted)
}

async fn lag_probe(ctx: &Ctx, deadline: Instant) -> (Vec<f64>, u64) {
    let token = ctx.fixture.work()[0].admin.token();
    let (mut lags, mut lost) = (Vec::new(), 0);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let Some((id, _)) = probe_patient(ctx, n).await else {
            continue;
        };
        let committed = Instant::now();
        let path = format!("/v1/patients/{id}");
        loop {
            if ctx.api.get_outcome(&path, &token).await == Outcome::Accepted {
                lags.push(committed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if committed.elapsed() > Duration::from_secs(30) {
                lost += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (lags, lost)
}

async fn ryw_probe(ctx: &Ctx, deadline: Instant) -> (Vec<f64>, u64) {
    let token = ctx.fixture.work()[0].admin.token();
    let (mut waits, mut unavailable) = (Vec::new(), 0);
    let mut n = 1_000_000;
    while Instant::now() < deadline {
        n += 1;
        let Some((id, position)) = probe_patient(ctx, n).await else {
            continue;
        };
        let sent = Instant::now();
        let reply = ctx
            .api
            .send(
                Method::GET,
                &format!("/v1/patients/{id}"),
                Some(&token),
                None,
                &[("x-min-position", position.to_string())],
            )
            .await;
        match reply.outcome {
            Outcome::Accepted => waits.push(sent.elapsed().as_secs_f64() * 1000.0),
            Outcome::NotYet => unavailable += 1,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (waits, unavailable)
}

async fn ops_sampler(ctx: &Ctx, deadline: Instant) -> i64 {
    let mut max = 0;
    while Instant::now() < deadline {
        let reply = ctx
            .api
            .get("/v1/ops/projections", &ctx.fixture.platform())
            .await;
        if let Some(all) = reply.body.as_array() {
            for p in all {
                max = max.max(p["lag_ms"].as_i64().unwrap_or(0));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    max
}
