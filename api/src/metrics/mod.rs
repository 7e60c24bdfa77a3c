//! Prometheus metrics at `GET /metrics`: requests by route template and status
//! ([`http`]), commands by name ([`commands`]), projection progress (recorded by the workers,
//! and lag read from the checkpoints at scrape time) and the database pool (sampled at scrape
//! time). Labels are bounded: route templates, command names, projection names; never a
//! path with ids in it, never a clinic.
//!
//! Each [`Metrics`] owns its recorder rather than installing a process-wide one, so two
//! applications in one process (the tests run many) keep their figures apart. Code records
//! through the `metrics` macros inside [`Metrics::record`].

pub mod commands;
pub mod http;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::{ApiError, Problem};
use crate::roles;
use crate::state::AppState;

/// Latency buckets, in seconds (1 ms to 10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Events per projection batch (the batch limit is 500 by default, at most 10,000).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0, 10000.0,
];

/// The metrics of one application: its recorder, and the static token a scraper may present.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// SHA-256 of `CLINIC_METRICS_TOKEN`, compared in constant time.
    token_hash: Option<[u8; 32]>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("token", &self.token_hash.map(|_| "<redacted>"))
            .finish()
    }
}

impl Metrics {
    /// A fresh recorder; `token` (if set) lets a scraper read `/metrics` without a JWT.
    pub fn new(token: Option<&[u8]>) -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("clinic_projection_batch_events".into()),
                    BATCH_BUCKETS,
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Metrics {
            recorder: Arc::new(recorder),
            handle,
            token_hash: token.map(|t| Sha256::digest(t).into()),
        }
    }

    /// Runs `f`, whose `::metrics::counter!`/`gauge!`/`histogram!` calls go to this recorder.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        ::metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    /// The recorder, for the projection workers of this application.
    pub fn worker_recorder(&self) -> projections::worker::Recorder {
        projections::worker::Recorder(self.recorder.clone())
    }

    /// Folds buffered histogram samples into their buckets. Scrapes do it too; a periodic
    /// call bounds memory when nobody scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Runs [`Metrics::upkeep`] every `every` until the returned task is aborted.
    pub fn spawn_upkeep(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                metrics.upkeep();
            }
        })
    }

    /// True when `token` is the configured scrape token.
    fn token_matches(&self, token: &str) -> bool {
        let Some(expected) = self.token_hash else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Constant time over the digests: no early exit on the first differing byte.
        given
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// Who may scrape: the configured `CLINIC_METRICS_TOKEN`, or the platform admin's JWT.
struct Scraper;

impl FromRequestParts<AppState> for Scraper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if token.is_some_and(|t| state.metrics.token_matches(t)) {
            return Ok(Scraper);
        }
        Principal::from_request_parts(parts, state)
            .await?
            .require(roles::PLATFORM)?;
        Ok(Scraper)
    }
}

/// Prometheus metrics (text exposition format 0.0.4). For the platform operator: send
/// `CLINIC_METRICS_TOKEN` as a bearer token, or a platform admin's access token.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(("bearer" = [])),
    responses(
        (status = 200, description = "The metrics, in the Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the platform admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn scrape(State(state): State<AppState>, _: Scraper) -> Result<Response, ApiError> {
    let metrics = &state.metrics;
    let status = projections::checkpoint::status(&state.pool).await?;
    metrics.record(|| {
        sample_pool(&state.pool);
        for s in &status {
            let name = s.projection.name;
            ::metrics::gauge!("clinic_projection_checkpoint_position", "projection" => name)
                .set(s.position as f64);
            ::metrics::gauge!("clinic_projection_lag_events", "projection" => name)
                .set(s.lag_events as f64);
            ::metrics::gauge!("clinic_projection_lag_seconds", "projection" => name)
                .set(s.lag_ms as f64 / 1000.0);
            ::metrics::gauge!("clinic_projection_failed", "projection" => name).set(
                if s.failed_position.is_some() {
                    1.0
                } else {
                    0.0
                },
            );
        }
    });
    metrics.upkeep();
    let mut response = metrics.handle.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// The pool's connections now: open, idle, in use, and the configured maximum.
fn sample_pool(pool: &sqlx::PgPool) {
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
    ::metrics::gauge!("clinic_db_pool_connections", "state" => "idle").set(f64::from(idle));
    ::metrics::gauge!("clinic_db_pool_connections", "state" => "in_use")
        .set(f64::from(size - idle));
    ::metrics::gauge!("clinic_db_pool_max_connections")
        .set(f64::from(pool.options().get_max_connections()));
}
