//! Building and running the application: database, pool, router, listener.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use commands::EventStore;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use std::sync::Arc;

use rand::RngCore;

use crate::auth::JwtKeys;
use crate::infra::config::{AuthSettings, ConfigError, Settings};
use crate::infra::db::{self, Database, DbError};
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::state::{AppState, REQUEST_ID_HEADER};
use projections::worker::WorkerConfig;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Clinic API",
        description = "Multi-tenant clinic management backend. Errors are RFC 9457 `application/problem+json` bodies. Every answer carries `Cache-Control: no-store` (answers carry patient data: no browser or proxy may keep them).",
    ),
    tags(
        (name = "operations", description = "Health and readiness"),
        (name = "auth", description = "Log in, refresh, log out, who am I"),
        (name = "clinics", description = "Clinics of the platform (platform admin)"),
        (name = "plans", description = "Plans and their limits"),
        (name = "reports", description = "A clinic's monthly report (clinic admin)"),
        (name = "clinic", description = "The caller's own clinic and its departments (clinic admin)"),
        (name = "staff", description = "Staff members and their accounts (clinic admin)"),
        (name = "patients", description = "Patients"),
        (name = "appointments", description = "Appointments"),
        (name = "invoices", description = "Invoices, payments, refunds and a patient's balance"),
        (name = "ops", description = "Projection progress and lag (platform admin)"),
        (name = "audit", description = "Event history, state as of an instant, access log (auditor, clinic admin)"),
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the protected operations name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// A startup failure; its message is one line naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("CLINIC_BIND: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The router with its OpenAPI document, without state or middleware.
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::health::router())
        .merge(crate::routes::router())
        .merge(crate::ops::router())
        .merge(crate::metrics::router())
        .split_for_parts()
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().1
}

/// The full application: routes, docs, middleware and state.
pub fn app(state: AppState, settings: &Settings) -> Router {
    let (router, api) = api_router();
    let metrics = state.metrics.clone();
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()).into_response() })
        .method_not_allowed_fallback(|| async {
            let mut problem = ApiError::NotFound(String::new()).problem();
            problem.type_uri = format!("{}method-not-allowed", crate::problem::PROBLEM_BASE);
            problem.title = "Method not allowed".into();
            problem.status = 405;
            problem.detail = "This path does not accept this method.".into();
            crate::problem::problem_response(problem)
        })
        .with_state(state)
        // Inside the router, so the matched route template is known.
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::http::track,
        ))
        .layer(DefaultBodyLimit::max(settings.http.body_limit))
        .layer(
            ServiceBuilder::new()
                .map_request(drop_unusable_request_id)
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<_>| {
                            let request_id = req
                                .headers()
                                .get(REQUEST_ID_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            tracing::info_span!(
                                "request",
                                method = %req.method(),
                                path = %req.uri().path(),
                                request_id = %request_id,
                                clinic_id = tracing::field::Empty,
                                actor_id = tracing::field::Empty,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO))
                        .on_failure(DefaultOnFailure::new().level(Level::ERROR)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                // Every answer, errors included: API answers carry patient data and must not
                // be kept by browsers or proxies. A handler may set another value.
                .layer(SetResponseHeaderLayer::if_not_present(
                    CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                .layer(axum::middleware::from_fn_with_state(
                    settings.http.request_timeout,
                    time_limit,
                ))
                .layer(CorsLayer::permissive()),
        )
}

/// Answers a request still running after `limit` with a 408 problem and drops it (its
/// transaction, if any, rolls back). tower-http's `TimeoutLayer` would answer an empty 408.
async fn time_limit(
    State(limit): State<Duration>,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// Whether a client's `X-Request-Id` may be kept: a short token, 1 to 64 of `[A-Za-z0-9._-]`
/// (a hyphenated UUID is one). It goes into event metadata, the hash chain, the access log and
/// every log line, so anything else is replaced.
pub fn usable_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Removes a client's `X-Request-Id` that is not [`usable_request_id`] (or given more than
/// once), so that the next layer gives the request a fresh UUID instead.
fn drop_unusable_request_id<B>(mut req: Request<B>) -> Request<B> {
    let headers = req.headers_mut();
    let values = headers.get_all(REQUEST_ID_HEADER).iter().count();
    let usable = values == 1
        && headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(usable_request_id);
    if values > 0 && !usable {
        headers.remove(REQUEST_ID_HEADER);
    }
    req
}

/// The token keys: the configured secret, or a random one (with a warning).
pub fn jwt_keys(auth: &AuthSettings) -> JwtKeys {
    match &auth.jwt_secret {
        Some(secret) => JwtKeys::new(secret, auth.access_ttl),
        None => {
            tracing::warn!(
                "CLINIC_JWT_SECRET is unset: using a random secret; tokens will not survive a restart \
                 and other API processes will not accept them"
            );
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            JwtKeys::new(&secret, auth.access_ttl)
        }
    }
}

/// A built application, listening but not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// How long a client may take to send a request's line and headers.
    head_timeout: Duration,
    database: Database,
    state: AppState,
    workers: Option<Workers>,
    upkeep: tokio::task::JoinHandle<()>,
}

/// Running projection workers.
pub struct Workers {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Workers {
    /// Starts the projection workers against `database`.
    pub async fn start(database: &Database, config: WorkerConfig) -> Result<Self, DbError> {
        let pool = db::worker_pool(&database.worker_login()).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let handle = projections::worker::spawn(pool, database.worker_login(), config, stopped);
        Ok(Workers { stop, handle })
    }

    /// Stops the workers after their current batch.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

impl Application {
    /// Binds the listener, resolves the database (starting a private cluster if needed),
    /// migrates it if configured to, and builds the router. Bind to port 0 for a free port.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let addr = settings.http.bind;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let database = db::resolve(&settings.database).await?;
        tracing::info!(database = %database.describe(), "database resolved");
        if settings.migrate_on_start {
            db::migrate(&database.owner_options).await?;
            tracing::info!("migrations applied");
        }
        // The owner only migrates; the service logs in as clinic_app.
        let pool = db::app_pool(&database.app_login(), settings.database.max_connections).await?;
        let store = EventStore::new(pool.clone(), settings.clock.clone());
        let metrics = Metrics::new(settings.auth.metrics_token.as_deref());
        let upkeep = metrics.spawn_upkeep(std::time::Duration::from_secs(5));
        let stream_pool =
            db::app_pool(&database.app_login(), settings.http.streams.pool_size).await?;
        let streams = crate::audit_streams::StreamGate::new(stream_pool, &settings.http.streams);
        let access = projections::audit::AccessWriter::spawn(pool.clone());
        let accounts = commands::accounts::lookups::AccountLookups::spawn(pool.clone());
        let (applied, applied_rx) = tokio::sync::watch::channel(0u64);
        let state = AppState {
            applied: applied_rx,
            pool,
            access,
            accounts,
            store,
            jwt: Arc::new(jwt_keys(&settings.auth)),
            clock: settings.clock.clone(),
            metrics: metrics.clone(),
            idempotency_lease: settings.http.request_timeout + crate::idempotency::LEASE_MARGIN,
            streams: Arc::new(streams),
            password_checks: Arc::new(commands::accounts::credentials::CheckGate::new(
                settings.auth.password_checks,
            )),
        };
        tokio::task::spawn_blocking(commands::accounts::credentials::warm_up);
        let router = app(state.clone(), &settings);
        let workers = match settings.workers.clone() {
            Some(config) => {
                // The billing process manager runs beside the projections, deciding with
                // the service clock (a test may bring its own, with a hook).
                let billing = config
                    .billing
                    .clone()
                    .or_else(|| Some(crate::billing::config(settings.clock.clone())));
                let config = WorkerConfig {
                    recorder: Some(metrics.worker_recorder()),
                    applied: Some(Arc::new(applied)),
                    billing,
                    ..config
                };
                Some(Workers::start(&database, config).await?)
            }
            None => None,
        };
        Ok(Application {
            listener,
            router,
            head_timeout: settings.http.request_timeout,
            database,
            state,
            workers,
            upkeep,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains, closes the pool and stops the private
    /// cluster, if any.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        if let Some(addr) = self.local_addr() {
            tracing::info!(address = %addr, "listening on http://{addr}");
        }
        let served = serve(self.listener, self.router, self.head_timeout, shutdown).await;
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        self.upkeep.abort();
        self.state.pool.close().await;
        if let Some(cluster) = self.database.cluster {
            let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
        }
        served
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the open connections
/// finish their requests. As `axum::serve` (HTTP/1.1, `ConnectInfo<SocketAddr>` on each
/// request), plus a deadline on the request's head: a connection whose next request line and
/// headers have not all arrived `head_timeout` after it opened or after its last answer is
/// closed, so a slowloris sending a byte now and then, and an idle kept-alive connection, are
/// both let go. `axum::serve` gives hyper no timer, so it has no such deadline. A slow body is
/// the request timeout's (`time_limit`), as the handler reads it.
async fn serve(
    listener: TcpListener,
    router: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartupError> {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use tower::ServiceExt;

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::error!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(req)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// An accept error that concerns one connection only (as `axum::serve` tells them apart).
fn connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_plain_tokens() {
        for ok in [
            "6f0174ee-ec9a-4505-b0f2-a4f988c9a057",
            "frontdesk.42_retry-1",
            &"a".repeat(64),
        ] {
            assert!(usable_request_id(ok), "{ok}");
        }
        for bad in [
            "",
            &"a".repeat(65),
            "{6f0174ee-ec9a-4505-b0f2-a4f988c9a057}",
            "with space",
            "new\nline",
            "quote\"",
            "caf\u{e9}",
            "{\"json\": 1}",
            "a/b",
        ] {
            assert!(!usable_request_id(bad), "{bad}");
        }
    }
}
