//! The smoke test's second half: once the projections have caught up, every command the
//! service accepted must be in the read models. Each created patient is found by
//! `GET /v1/patients/{id}`, and each booked appointment by `GET /v1/appointments/{id}` with
//! the start time of its last reschedule, or cancelled.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use crate::bail;
use crate::client::Outcome;
use crate::error::Result;
use crate::scenarios::Ctx;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub patients: usize,
    pub appointments: usize,
    /// Appointments whose last reschedule or cancel got no clear answer (state not checked).
    pub uncertain: usize,
    pub missing: Vec<String>,
    pub catch_up_seconds: f64,
}

/// Waits until `/v1/ops/projections` shows no lag (up to `timeout`); returns how long.
pub async fn caught_up(ctx: &Ctx, timeout: Duration) -> Result<f64> {
    let started = Instant::now();
    loop {
        let reply = ctx
            .api
            .get("/v1/ops/projections", &ctx.fixture.platform())
            .await;
        let all = reply.body.as_array().cloned().unwrap_or_default();
        if let Some(failed) = all.iter().find(|p| !p["failed_position"].is_null()) {
            bail!("projection stopped: {failed}");
        }
        let behind: i64 = all
            .iter()
            .map(|p| p["lag_events"].as_i64().unwrap_or(0))
            .sum();
        if reply.outcome == Outcome::Accepted && !all.is_empty() && behind == 0 {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > timeout {
            bail!("projections still {behind} events behind after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the ledger once the projections have caught up (or `wait` has passed: then the
/// lag is reported as missing too, and the records are checked anyway).
pub async fn run(ctx: &Ctx, wait: Duration) -> Result<Verification> {
    let (catch_up_seconds, behind) = match caught_up(ctx, wait).await {
        Ok(seconds) => (seconds, None),
        Err(e) => (wait.as_secs_f64(), Some(e.to_string())),
    };
    let patients = ctx
        .ledger
        .patients
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let appointments = ctx
        .ledger
        .appointments
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let patient_checks = futures::stream::iter(patients.iter().map(|(clinic, id)| {
        let ctx = ctx.clone();
        let (clinic, id) = (*clinic, *id);
        async move {
            let token = ctx.fixture.clinics[clinic].admin.token();
            let reply = ctx.api.get(&format!("/v1/patients/{id}"), &token).await;
            (reply.outcome != Outcome::Accepted)
                .then(|| format!("patient {id}: HTTP {}", reply.status))
        }
    }))
    .buffer_unordered(16)
    .filter_map(|missing| async move { missing });
    let appointment_checks = futures::stream::iter(appointments.iter().map(|booked| {
        let ctx = ctx.clone();
        let booked = booked.clone();
        async move {
            let token = ctx.fixture.clinics[booked.clinic].admin.token();
            let reply = ctx
                .api
                .get(&format!("/v1/appointments/{}", booked.id), &token)
                .await;
            let body = &reply.body;
            let status_ok = booked.uncertain || (body["status"] == "cancelled") == booked.cancelled;
            let start_ok =
                booked.uncertain || booked.cancelled || same_instant(&body["start"], &booked.start);
            (reply.outcome != Outcome::Accepted || !status_ok || !start_ok).then(|| {
                format!(
                    "appointment {}: HTTP {} status {} start {} (expected {} at {})",
                    booked.id,
                    reply.status,
                    body["status"],
                    body["start"],
                    if booked.cancelled {
                        "cancelled"
                    } else {
                        "booked"
                    },
                    booked.start
                )
            })
        }
    }))
    .buffer_unordered(16)
    .filter_map(|missing| async move { missing });
    let mut missing: Vec<String> = behind.into_iter().collect();
    missing.extend(patient_checks.collect::<Vec<_>>().await);
    missing.extend(appointment_checks.collect::<Vec<_>>().await);
    Ok(Verification {
        patients: patients.len(),
        appointments: appointments.len(),
        uncertain: appointments.iter().filter(|a| a.uncertain).count(),
        missing,
        catch_up_seconds,
    })
}

fn same_instant(value: &serde_json::Value, expected: &str) -> bool {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (value.as_str().and_then(parse), parse(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}
