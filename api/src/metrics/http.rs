//! Request count and latency by method, matched route template and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::Metrics;

/// The route label of a request no route matched (404s of unknown paths, 405s).
pub const UNMATCHED: &str = "unmatched";

/// The status label of a request whose answer was never produced: the timeout layer answered
/// 408, or the client went away.
pub const CANCELLED: &str = "cancelled";

/// Middleware: counts `clinic_http_requests_total` and observes
/// `clinic_http_request_duration_seconds`, labelled `method`, `route` (the template, e.g.
/// `/v1/patients/{id}`, never the raw path) and `status`.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned());
    let mut guard = Observation {
        metrics,
        method: method_label(request.method()),
        route,
        status: None,
        start: Instant::now(),
    };
    let response = next.run(request).await;
    guard.status = Some(response.status().as_u16());
    response
}

/// A request being observed; recorded when dropped, so a request dropped mid-way (timeout,
/// disconnect) is counted too.
struct Observation {
    metrics: Metrics,
    method: &'static str,
    route: String,
    status: Option<u16>,
    start: Instant,
}

impl Drop for Observation {
    fn drop(&mut self) {
        let status = self
            .status
            .map_or_else(|| CANCELLED.to_owned(), |s| s.to_string());
        let labels = [
            ("method", self.method.to_owned()),
            ("route", std::mem::take(&mut self.route)),
            ("status", status),
        ];
        let elapsed = self.start.elapsed().as_secs_f64();
        self.metrics.record(|| {
            ::metrics::counter!("clinic_http_requests_total", &labels).increment(1);
            ::metrics::histogram!("clinic_http_request_duration_seconds", &labels).record(elapsed);
        });
    }
}

/// The method as a label: the standard ones by name, anything else as `other` (a client
/// can send any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
