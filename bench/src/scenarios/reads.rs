//! Reads at the small clinic and at the large one: list, search, the appointment list, the
//! dashboard and a doctor's availability; and the audit export stream.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Result;
use crate::fixture::Clinic;
use crate::load::{self, Stats};
use crate::scenarios::Ctx;

/// The reads measured, by name and path (for a clinic).
fn reads(clinic: &Clinic) -> Vec<(&'static str, String)> {
    let week_ago = (chrono::Utc::now() - chrono::Duration::days(7))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    vec![
        ("list patients", "/v1/patients?limit=20".to_owned()),
        ("search q=famil", "/v1/patients?q=famil&limit=20".to_owned()),
        (
            "appointment list",
            format!("/v1/appointments?from={week_ago}&limit=20"),
        ),
        ("dashboard", "/v1/dashboard".to_owned()),
        (
            "availability 14 days",
            format!(
                "/v1/doctors/{}/availability?duration=30",
                clinic.doctors[0].id
            ),
        ),
    ]
}

/// Each read at the small clinic and then at the large one, with `clients` clients (admins
/// and receptionists alternating): `(small, large)`. The two measurements of a read run one
/// right after the other, so that the ratio of their p50s compares the two clinics at the
/// same moment of the machine. Measured clinic by clinic (all five reads at the small one,
/// then all five at the large one), the two of a read were about ten seconds apart, and a
/// machine that slowed in between made the large clinic look 1.4–1.8× dearer at one client,
/// the benchmark's own client included (whose work is the same for both).
pub async fn at_both(
    ctx: &Ctx,
    small: &Clinic,
    large: &Clinic,
    clients: usize,
    duration: Duration,
) -> (Vec<Stats>, Vec<Stats>) {
    let (mut at_small, mut at_large) = (Vec::new(), Vec::new());
    for ((name, small_path), (_, large_path)) in reads(small).into_iter().zip(reads(large)) {
        let name_at = |label: &str| format!("{name} ({label})");
        at_small.push(one(ctx, small, &name_at("small"), small_path, clients, duration).await);
        at_large.push(one(ctx, large, &name_at("large"), large_path, clients, duration).await);
    }
    (at_small, at_large)
}

/// `path` at `clinic` with `clients` clients (admins and receptionists alternating).
async fn one(
    ctx: &Ctx,
    clinic: &Clinic,
    name: &str,
    path: String,
    clients: usize,
    duration: Duration,
) -> Stats {
    let api = ctx.api.clone();
    let tokens = [clinic.admin.token(), clinic.receptionist.token()];
    load::run(name, clients, duration, move |client, _| {
        let api = api.clone();
        let token = tokens[client % 2].clone();
        let path = path.clone();
        async move { api.get_outcome(&path, &token).await }
    })
    .await
}

/// `GET /healthz` (no database, no token): what the HTTP stack alone costs.
pub async fn healthz(ctx: &Ctx, clients: usize, duration: Duration) -> Stats {
    let api = ctx.api.clone();
    load::run("GET /healthz", clients, duration, move |_, _| {
        let api = api.clone();
        async move {
            api.send(reqwest::Method::GET, "/healthz", None, None, &[])
                .await
                .outcome
        }
    })
    .await
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamStats {
    pub events: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// `GET /v1/audit/events` of `clinic` as its admin, read to the end.
pub async fn audit_stream(ctx: &Ctx, clinic: &Clinic) -> Result<StreamStats> {
    let started = Instant::now();
    let mut answer = ctx
        .api
        .http()
        .get(ctx.api.url("/v1/audit/events"))
        .bearer_auth(clinic.admin.token())
        .send()
        .await?;
    if !answer.status().is_success() {
        let status = answer.status();
        if status.is_server_error() {
            ctx.api.failures.record(
                status.as_u16(),
                format!("GET /v1/audit/events: HTTP {status}"),
            );
        }
        crate::bail!("GET /v1/audit/events: HTTP {status}");
    }
    let (mut events, mut bytes) = (0u64, 0u64);
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                bytes += chunk.len() as u64;
                events += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            }
            Ok(None) => break,
            Err(e) => {
                ctx.api
                    .failures
                    .record(0, format!("GET /v1/audit/events: {e}"));
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = StreamStats {
        events,
        bytes,
        seconds,
        events_per_second: events as f64 / seconds.max(1e-9),
    };
    eprintln!(
        "  audit export stream: {events} events, {:.1} MiB in {seconds:.2} s = {:.0} events/s",
        bytes as f64 / 1048576.0,
        stats.events_per_second
    );
    Ok(stats)
}
